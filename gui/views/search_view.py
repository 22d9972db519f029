"""The Search view: open-vocabulary queries with a trained CLIP run.

* **Text → images**: type a caption, press Enter: the top-k images of a data set
  ranked by cosine similarity to the text's embedding, with their scores. The
  held-out (test) images are searched by default, the ones the run never
  trained on; the training images or all of them on request. The view says
  which were searched.
* **Image → captions**: click a result (or pick an item number): the captions of
  the run's training set that describe it best.
* **Zero-shot classification**: classify a labelled data set (its labels or any
  attribute, e.g. shapes' colour) by comparing each image with one text per
  class; the class texts and the prompt templates ("a picture of a {}", several
  averaged) are editable. Shows the accuracy, the per-class accuracy and the
  confusion matrix as a heat map; the engine stores them as metrics of the run.

Everything that touches torch runs on a worker thread, one job at a time (the
latest request of each kind wins while one runs). A :class:`SearchSession`
keeps the rebuilt model, the image embeddings and the caption embeddings
between queries, so a query after the first is a matrix product. The session, the
job dispatcher and their results live in :mod:`engine.explore.search`, Qt-free.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QIcon, QKeySequence, QPalette, QShortcut
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QFormLayout, QHBoxLayout, QHeaderView,
                               QLabel, QLineEdit, QListView, QListWidget, QListWidgetItem,
                               QPlainTextEdit, QPushButton, QSizePolicy, QSpinBox, QSplitter, QTableWidget,
                               QTableWidgetItem, QTabWidget, QVBoxLayout, QWidget)

from engine.explore.search import CaptionMatches, SearchHits, SessionHolder, label_sets, run_job, run_templates

from ..images import thumbnail
from ..run_view import RunView
from ..widgets import ElidedLabel, error_dialog
from ..tasks import Task
from ..workers import FunctionWorker

THUMB = 96
DEFAULT_K = 24
CAPTION_K = 10
#: The images a search ranks: the data set's split, in words.
SPLITS = {"test": "held-out (test) images", "train": "training images", "all": "images"}
#: How the Search view says why a CLIP run cannot be searched (yet).
STATUS_WORDS = {"running": "is training", "paused": "is paused", "interrupted": "was interrupted",
                "stopped": "was stopped", "failed": "failed", "created": "has not started",
                "damaged": "is damaged"}


def searches(method_name: str) -> bool:
    """Whether a method pairs images with text (CLIP): its runs can be searched."""
    from engine.methods import METHODS
    cls = METHODS.get(method_name)
    return cls is not None and cls.encodes_text


def unsearchable_note(runs) -> str:
    """What to say when CLIP runs exist but none can be searched: which runs, in what
    state, and what to do (a run that was interrupted is resumed in the Train view)."""
    from engine.store import RESUMABLE_STATUSES
    listed = "; ".join(f"#{r.id} {r.name or r.method} {STATUS_WORDS.get(r.status, r.status)}" for r in runs)
    text = f"No CLIP run can be searched yet ({listed}): a run can be searched once it has saved a checkpoint."
    if any(r.status in RESUMABLE_STATUSES or r.status == "paused" for r in runs):
        text += " Resume it in the Train view (Resume, or Run → Resume)."
    elif any(r.status == "running" for r in runs):
        text += " Wait for it to finish, or stop it in the Train view."
    elif any(r.status == "created" for r in runs):
        text += " Start it in the Train view."
    return text


# --------------------------------------------------------------------------------- widgets


def heat_colour(fraction: float, palette: QPalette) -> QColor:
    """The base colour blended towards the highlight colour by ``fraction`` (0–1)."""
    base, hi = palette.color(QPalette.ColorRole.Base), palette.color(QPalette.ColorRole.Highlight)
    f = max(0.0, min(1.0, float(fraction)))
    return QColor(round(base.red() + (hi.red() - base.red()) * f),
                  round(base.green() + (hi.green() - base.green()) * f),
                  round(base.blue() + (hi.blue() - base.blue()) * f))


def _read_only(text: str, align=Qt.AlignmentFlag.AlignCenter) -> QTableWidgetItem:
    it = QTableWidgetItem(text)
    it.setFlags(it.flags() & ~Qt.ItemFlag.ItemIsEditable)
    it.setTextAlignment(align | Qt.AlignmentFlag.AlignVCenter)
    return it


class ConfusionTable(QTableWidget):
    """A confusion matrix as a heat map: rows are the true classes, columns the predicted
    ones; a cell shows its count, coloured by its share of the row; the last column is
    the class's accuracy."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.confusion = np.zeros((0, 0), dtype=np.int64)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)

    def set_matrix(self, confusion, names: list[str], per_class: dict[str, float]) -> None:
        cm = np.asarray(confusion, dtype=np.int64)
        self.confusion = cm
        k = len(names)
        self.clear()
        self.setRowCount(k)
        self.setColumnCount(k + 1)
        self.setHorizontalHeaderLabels(list(names) + ["accuracy"])
        self.setVerticalHeaderLabels(list(names))
        rows = np.maximum(cm.sum(axis=1), 1)
        pal = self.palette()
        hi_text = pal.color(QPalette.ColorRole.HighlightedText)
        for r in range(k):
            for c in range(k):
                share = cm[r, c] / rows[r]
                it = _read_only(str(int(cm[r, c])))
                it.setBackground(QBrush(heat_colour(share, pal)))
                if share > 0.55:
                    it.setForeground(QBrush(hi_text))
                it.setToolTip(f"true {names[r]}, predicted {names[c]}: {int(cm[r, c])} "
                              f"({share:.0%} of the {names[r]} images)")
                self.setItem(r, c, it)
            acc = per_class.get(names[r], float("nan"))
            self.setItem(r, k, _read_only(f"{acc:.0%}" if np.isfinite(acc) else "—"))
        # A few classes: the heat map fills the panel; many: compact cells and scroll bars.
        mode = QHeaderView.ResizeMode.Stretch if k <= 20 else QHeaderView.ResizeMode.ResizeToContents
        self.horizontalHeader().setSectionResizeMode(mode)
        self.verticalHeader().setSectionResizeMode(mode)


class SearchView(RunView):
    """Text → images, image → captions and zero-shot classification with a CLIP run."""

    #: a job's result is on screen: its kind ("search", "describe", "zero_shot")
    result_shown = Signal(str)

    no_runs_placeholder = "no CLIP runs"
    loads_when_hidden = True

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.hits: SearchHits | None = None           # the last text → images result
        self.described: CaptionMatches | None = None  # the last image → captions result
        self.zero_shot_result: dict | None = None
        self.last_error_box = None
        self._holder = SessionHolder()
        # One job at a time; the latest request of each kind waits for the worker.
        self.job_task = Task(self, "pretext-search", done=self._on_result, error=self._on_error)
        self._running_job: tuple | None = None    # what the worker does (an error names it)
        self._build()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(6, 6, 6, 6)
        bar = QHBoxLayout()
        self._make_run_combo(22).setToolTip("A finished run of an image–text method (CLIP)")
        self.dataset_combo = QComboBox()
        self.dataset_combo.setMinimumContentsLength(12)
        self.dataset_combo.setToolTip("The images to search and classify: the run's own data set or any "
                                      "other of the same image size")
        self.dataset_combo.currentIndexChanged.connect(self._on_dataset_chosen)
        bar.addWidget(QLabel("Run"))
        bar.addWidget(self.run_combo, 2)
        bar.addWidget(QLabel("Images"))
        bar.addWidget(self.dataset_combo, 1)
        self.status = ElidedLabel("")
        bar.addWidget(self.status, 3)
        root.addLayout(bar)

        self.tabs = QTabWidget()
        self.tabs.addTab(self._build_search_tab(), "Text → images")
        self.tabs.addTab(self._build_zero_shot_tab(), "Zero-shot classification")
        root.addWidget(self.tabs, 1)
        QShortcut(QKeySequence("Ctrl+L"), self, activated=self._focus_query,
                  context=Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self._set_enabled()

    def _build_search_tab(self) -> QWidget:
        page = QWidget()
        lay = QVBoxLayout(page)
        row = QHBoxLayout()
        self.query_edit = QLineEdit()
        self.query_edit.setPlaceholderText("Describe the images, e.g. a small red circle — Enter searches (Ctrl+L)")
        self.query_edit.setClearButtonEnabled(True)
        self.query_edit.returnPressed.connect(self.run_query)
        self.k_spin = QSpinBox()
        self.k_spin.setRange(1, 500)
        self.k_spin.setValue(DEFAULT_K)
        self.k_spin.setPrefix("top ")
        self.k_spin.setToolTip("How many images to show")
        self.split_combo = QComboBox()
        for key in ("test", "train", "all"):
            self.split_combo.addItem("in all images" if key == "all" else f"in the {SPLITS[key]}", key)
        self.split_combo.setToolTip("Which images to rank: the held-out (test) images, which the run never "
                                    "trained on (the default), the training images, or all of them")
        self.split_combo.currentIndexChanged.connect(self._on_split_chosen)
        self.search_button = QPushButton("Search")
        self.search_button.clicked.connect(self.run_query)
        row.addWidget(self.query_edit, 1)
        row.addWidget(self.k_spin)
        row.addWidget(self.split_combo)
        row.addWidget(self.search_button)
        lay.addLayout(row)
        # Which images the results on screen were ranked among (stays while captions are shown).
        # Word-wrapped: it also says, in full, why no run can be searched yet.
        self.results_label = QLabel("")
        self.results_label.setWordWrap(True)
        self.results_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        lay.addWidget(self.results_label)

        split = QSplitter(Qt.Orientation.Horizontal)
        self.results = QListWidget()
        self.results.setViewMode(QListView.ViewMode.IconMode)
        self.results.setIconSize(QSize(THUMB, THUMB))
        self.results.setGridSize(QSize(THUMB + 26, THUMB + 40))
        self.results.setResizeMode(QListView.ResizeMode.Adjust)
        self.results.setMovement(QListView.Movement.Static)
        self.results.setWordWrap(True)
        self.results.setUniformItemSizes(True)
        self.results.currentItemChanged.connect(self._on_result_selected)
        split.addWidget(self.results)

        side = QWidget()
        sv = QVBoxLayout(side)
        sv.setContentsMargins(6, 0, 0, 0)
        head = QHBoxLayout()
        head.addWidget(QLabel("<b>Image → captions</b>"))
        head.addStretch(1)
        head.addWidget(QLabel("item #"))
        self.item_spin = QSpinBox()
        self.item_spin.setRange(0, 0)
        self.item_spin.setToolTip("Any item of the data set: its best-matching captions")
        self.item_spin.setKeyboardTracking(False)
        self.item_spin.valueChanged.connect(self.describe_item)
        head.addWidget(self.item_spin)
        sv.addLayout(head)
        self.item_image = QLabel()
        self.item_image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.item_image.setMinimumHeight(112)
        self.item_text = QLabel("Click an image to see the captions that describe it best.")
        self.item_text.setWordWrap(True)
        self.item_text.setTextFormat(Qt.TextFormat.PlainText)
        sv.addWidget(self.item_image)
        sv.addWidget(self.item_text)
        self.caption_table = QTableWidget(0, 2)
        self.caption_table.setHorizontalHeaderLabels(["score", "caption"])
        self.caption_table.verticalHeader().setVisible(False)
        self.caption_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.caption_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.caption_table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.caption_table.setWordWrap(False)
        sv.addWidget(self.caption_table, 1)
        side.setMinimumWidth(280)
        split.addWidget(side)
        split.setStretchFactor(0, 1)
        split.setSizes([760, 380])
        lay.addWidget(split, 1)
        return page

    def _build_zero_shot_tab(self) -> QWidget:
        page = QWidget()
        lay = QHBoxLayout(page)
        split = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 6, 0)
        form = QFormLayout()
        self.label_combo = QComboBox()
        self.label_combo.setToolTip("What to classify: the data set's labels or one of its attributes")
        self.label_combo.currentIndexChanged.connect(self._fill_classes)
        form.addRow("Classify by", self.label_combo)
        lv.addLayout(form)
        lv.addWidget(QLabel("Class prompts (double-click to edit the text that stands for a class)"))
        self.class_table = QTableWidget(0, 2)
        self.class_table.setHorizontalHeaderLabels(["class", "text in the prompts"])
        self.class_table.verticalHeader().setVisible(False)
        self.class_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.class_table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.class_table.itemChanged.connect(lambda *_: self._update_prompt_preview())
        lv.addWidget(self.class_table, 2)
        lv.addWidget(QLabel("Templates, one per line ({} takes the class text; their embeddings are averaged)"))
        self.templates_edit = QPlainTextEdit()
        self.templates_edit.setMaximumHeight(84)
        self.templates_edit.textChanged.connect(self._update_prompt_preview)
        lv.addWidget(self.templates_edit)
        self.prompt_preview = ElidedLabel("")
        lv.addWidget(self.prompt_preview)
        buttons = QHBoxLayout()
        self.reset_button = QPushButton("Reset prompts")
        self.reset_button.setToolTip("Back to the class names and the run's templates")
        self.reset_button.clicked.connect(self._reset_prompts)
        self.classify_button = QPushButton("Classify")
        self.classify_button.setDefault(True)
        self.classify_button.setToolTip("Classify the test images (all images when the set has no test "
                                        "split); the accuracy is stored with the run")
        self.classify_button.clicked.connect(self.run_zero_shot)
        buttons.addWidget(self.reset_button)
        buttons.addStretch(1)
        buttons.addWidget(self.classify_button)
        lv.addLayout(buttons)
        split.addWidget(left)

        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(6, 0, 0, 0)
        self.accuracy_label = QLabel("Press Classify to run zero-shot classification.")
        self.accuracy_label.setWordWrap(True)
        rv.addWidget(self.accuracy_label)
        rv.addWidget(QLabel("Confusion matrix — rows: true class, columns: predicted class"))
        self.confusion_table = ConfusionTable()
        rv.addWidget(self.confusion_table, 1)
        split.addWidget(right)
        split.setStretchFactor(1, 1)
        split.setSizes([380, 760])
        lay.addWidget(split)
        return page

    def _empty_text(self) -> str:
        if self.project is None:
            return "Open a project to search it."
        clip_runs = [r for r in reversed(self.project.runs()) if searches(r.method)]
        if clip_runs:
            return unsearchable_note(clip_runs)
        return ("No finished CLIP runs yet. Train CLIP on a captioned data set (shapes) in the Train "
                "view: then search its images by text here.")

    def _focus_query(self) -> None:
        self.tabs.setCurrentIndex(0)
        self.query_edit.setFocus()
        self.query_edit.selectAll()

    # ------------------------------------------------------------------ project and run
    def set_project(self, project) -> None:
        self._holder = SessionHolder()
        self.job_task.forget_waiting()
        self._clear_results()
        super().set_project(project)

    def runs_to_list(self, project) -> list:
        return [r for r in reversed(project.runs()) if searches(r.method) and (
                r.status == "finished" or (r.status != "running" and project.checkpoints(r.id)))]

    def show_no_runs(self) -> None:
        self.run_id = None
        self.dataset_combo.clear()
        self._clear_results()
        self.status.setText(self._empty_text())
        self.results_label.setText(self._empty_text())
        self._set_enabled()

    def load_run(self, run_id: int) -> None:
        if run_id == self.run_id:
            return
        self.run_id = int(run_id)
        run = self.project.run(self.run_id)
        own = self.project.dataset(run.dataset_id)
        shape = (own.stats.get("channels"), own.stats.get("size"))
        self.dataset_combo.blockSignals(True)
        self.dataset_combo.clear()
        for d in self.project.datasets():
            # Only images the run's image tower can read: the same channels and size.
            if d.id == own.id or (d.stats.get("channels"), d.stats.get("size")) == shape:
                self.dataset_combo.addItem(d.name + (" (trained on)" if d.id == own.id else ""), d.id)
        self.dataset_combo.setCurrentIndex(max(0, self.dataset_combo.findData(own.id)))
        self.dataset_combo.blockSignals(False)
        self.templates_edit.blockSignals(True)
        self.templates_edit.setPlainText("\n".join(run_templates(run.config)))
        self.templates_edit.blockSignals(False)
        self._on_dataset_chosen()
        note = ""
        if run.status != "finished":
            cks = self.project.checkpoints(self.run_id)
            step = f" (step {cks[-1][1]})" if cks else ""
            note = (f" It {STATUS_WORDS.get(run.status, run.status)}: its last checkpoint{step} is searched; "
                    "resume it in the Train view to train it further.")
        self.status.setText(f"Run #{self.run_id}: type a description and press Enter, or classify a "
                            f"data set zero-shot.{note}")

    def dataset_id(self) -> int | None:
        d = self.dataset_combo.currentData()
        return None if d is None else int(d)

    def _on_dataset_chosen(self, *_) -> None:
        self._clear_results()
        rec = self.project.dataset(self.dataset_id()) if self.dataset_id() is not None else None
        self.item_spin.blockSignals(True)
        self.item_spin.setRange(0, max(0, (rec.n_items if rec else 1) - 1))
        self.item_spin.blockSignals(False)
        current = self.label_combo.currentData()
        self.label_combo.blockSignals(True)
        self.label_combo.clear()
        self._label_sets = label_sets(rec.stats) if rec else {}
        for key, names in self._label_sets.items():
            self.label_combo.addItem(f"{key} ({len(names)} classes)", key)
        i = self.label_combo.findData(current) if current is not None else -1
        self.label_combo.setCurrentIndex(i if i >= 0 else (0 if self.label_combo.count() else -1))
        self.label_combo.blockSignals(False)
        self._fill_classes()
        self._set_enabled()

    def _fill_classes(self, *_) -> None:
        names = self._label_sets.get(self.label_combo.currentData(), []) if hasattr(self, "_label_sets") else []
        self.class_table.blockSignals(True)
        self.class_table.setRowCount(len(names))
        for r, name in enumerate(names):
            self.class_table.setItem(r, 0, _read_only(name, Qt.AlignmentFlag.AlignLeft))
            self.class_table.setItem(r, 1, QTableWidgetItem(name))
        self.class_table.blockSignals(False)
        self._update_prompt_preview()
        self._set_enabled()

    def _reset_prompts(self) -> None:
        self._fill_classes()
        if self.run_id is not None:
            self.templates_edit.setPlainText("\n".join(run_templates(self.project.run(self.run_id).config)))

    def class_texts(self) -> list[str]:
        out = []
        for r in range(self.class_table.rowCount()):
            it = self.class_table.item(r, 1)
            text = it.text().strip() if it is not None else ""
            out.append(text or self.class_table.item(r, 0).text())    # an emptied cell means the name
        return out

    def templates(self) -> list[str]:
        return [t.strip() for t in self.templates_edit.toPlainText().splitlines() if t.strip()]

    def _update_prompt_preview(self) -> None:
        from engine.zero_shot import prompts
        texts, templates = self.class_texts(), self.templates()
        if not texts or not templates:
            self.prompt_preview.setText("Add at least one template." if texts else "")
            return
        self.prompt_preview.setText(f"{texts[0]}: " + " · ".join(f"“{p}”" for p in prompts(texts[0], templates)))

    def _set_enabled(self) -> None:
        has_run = self.run_id is not None and self.dataset_id() is not None
        for w in (self.query_edit, self.search_button, self.k_spin, self.split_combo, self.item_spin):
            w.setEnabled(has_run)
        self.classify_button.setEnabled(has_run and self.class_table.rowCount() > 0)
        self.reset_button.setEnabled(has_run)
        if has_run and not self.label_combo.count():
            self.accuracy_label.setText("This data set has no labels or attributes to classify by.")

    def _clear_results(self) -> None:
        self.hits = self.described = self.zero_shot_result = None
        self.results.clear()
        self.results_label.setText("")
        self.caption_table.setRowCount(0)
        self.item_image.clear()
        self.item_text.setText("Click an image to see the captions that describe it best.")
        self.confusion_table.set_matrix(np.zeros((0, 0)), [], {})
        self.accuracy_label.setText("Press Classify to run zero-shot classification.")

    # ------------------------------------------------------------------ requests
    def run_query(self) -> None:
        text = self.query_edit.text().strip()
        if not text or self.run_id is None or self.dataset_id() is None:
            return
        self._submit(("search", self.run_id, self.dataset_id(), text, int(self.k_spin.value()), self.split()))

    def split(self) -> str:
        """The images a search ranks: "test" (the default), "train" or "all"."""
        return self.split_combo.currentData()

    def _on_split_chosen(self, *_) -> None:
        """Search again among the newly chosen images (when a search is on screen)."""
        if self.hits is not None and self.query_edit.text().strip():
            self.run_query()

    def describe_item(self, index: int | None = None) -> None:
        if self.run_id is None or self.dataset_id() is None:
            return
        index = self.item_spin.value() if index is None else int(index)
        self._submit(("describe", self.run_id, self.dataset_id(), index, CAPTION_K))

    def run_zero_shot(self) -> None:
        if self.run_id is None or self.dataset_id() is None or self.label_combo.currentData() is None:
            return
        templates = self.templates()
        if not templates:
            self.accuracy_label.setText("Add at least one template, e.g. “a picture of a {}”.")
            return
        self._submit(("zero_shot", self.run_id, self.dataset_id(), self.label_combo.currentData(),
                      self.class_texts(), templates))

    @property
    def busy(self) -> bool:
        return self.job_task.busy

    @property
    def _worker(self) -> FunctionWorker | None:       # the main window cancels it when it closes
        return self.job_task.worker

    def _submit(self, job: tuple) -> None:
        """Run ``job`` now, or when the worker is free (a newer request of its kind replaces it)."""
        self.job_task.when_free(lambda: self._start(job), kind=job[0])

    def _start(self, job: tuple) -> None:
        kind = job[0]
        self.status.setText({"search": f"Searching for “{job[3]}”…", "describe": f"Captioning item #{job[3]}…",
                             "zero_shot": "Classifying…"}[kind]
                            + (" (loading the model)" if self._holder.session is None and kind != "zero_shot"
                               else ""))
        self._running_job = job
        self.job_task.start(run_job, self.project, self._holder, job)

    def _current(self, job: tuple) -> bool:
        """Whether a finished job still matches what is chosen (the user may have moved on)."""
        return job[1] == self.run_id and job[2] == self.dataset_id()

    def _on_error(self, message: str, details: str) -> None:
        job = self._running_job
        what = {"search": "search", "describe": "caption the image", "zero_shot": "classify"}[job[0]]
        self.status.setText(f"Cannot {what}: {message}")
        self.last_error_box = error_dialog(self, f"Cannot {what}", message, details)

    def _on_result(self, value) -> None:
        job, res = value
        if not self._current(job):
            return
        kind = job[0]
        if kind == "search":
            self._show_hits(res)
        elif kind == "describe":
            self._show_captions(res)
        else:
            self._show_zero_shot(res)
        self.result_shown.emit(kind)

    # ------------------------------------------------------------------ results
    def _show_hits(self, res: SearchHits) -> None:
        self.hits = res
        self.results.blockSignals(True)
        self.results.clear()
        for rank, (i, s, img, cap) in enumerate(zip(res.index, res.score, res.images, res.captions)):
            it = QListWidgetItem(QIcon(thumbnail(img, THUMB)), f"{s:.3f}\n#{int(i)}")
            it.setData(Qt.ItemDataRole.UserRole, int(i))
            it.setToolTip(f"rank {rank + 1} · item #{int(i)} · score {s:.4f}" + (f"\n{cap}" if cap else ""))
            self.results.addItem(it)
        self.results.blockSignals(False)
        n = len(res.index)
        best = f"; scores {res.score[0]:.3f} … {res.score[-1]:.3f}" if n else ""
        searched = SPLITS[res.searched]
        missing = "held-out (test) split" if res.split == "test" else "training split"
        fallback = (f" (this data set has no {missing}: all its images were searched)"
                    if res.searched != res.split else "")
        self.results_label.setText(f"“{res.text}”: the {n} closest of the {res.pool_size:,} {searched} "
                                   f"of {self.dataset_combo.currentText()}{fallback}{best} (cosine similarity)")
        self.status.setText(self.results_label.text() + ". Click one for its captions.")

    def _on_result_selected(self, item, _previous=None) -> None:
        if item is None:
            return
        index = int(item.data(Qt.ItemDataRole.UserRole))
        self.item_spin.blockSignals(True)
        self.item_spin.setValue(index)
        self.item_spin.blockSignals(False)
        self.describe_item(index)

    def _show_captions(self, res: CaptionMatches) -> None:
        self.described = res
        self.item_image.setPixmap(thumbnail(res.image, 112))
        own = res.caption.replace("\n", " / ")
        self.item_text.setText(f"#{res.index} {res.name}" + (f"\nIts caption: {own}" if own else ""))
        self.caption_table.setRowCount(len(res.texts))
        for r, (text, s, c) in enumerate(zip(res.texts, res.score, res.count)):
            self.caption_table.setItem(r, 0, _read_only(f"{s:.3f}"))
            it = _read_only(text, Qt.AlignmentFlag.AlignLeft)
            it.setToolTip(f"{text}\n(caption of {int(c)} training item{'s' if c != 1 else ''})")
            self.caption_table.setItem(r, 1, it)
        self.status.setText(f"Item #{res.index}: the {len(res.texts)} captions of the run's training "
                            "set closest to it")

    def _show_zero_shot(self, res: dict) -> None:
        self.zero_shot_result = res
        names = res["class_names"]
        per = res["per_class"]
        finite = {n: v for n, v in per.items() if np.isfinite(v)}      # NaN: a class with no image
        worst = min(finite, key=finite.get) if finite else None
        self.accuracy_label.setText(
            f"<b>Accuracy {res['accuracy']:.2%}</b> on {res['n']} images of {res['dataset']} "
            f"by {res['attribute']} ({len(names)} classes; chance {1 / max(1, len(names)):.0%}); "
            f"{len(res['templates'])} template{'s' if len(res['templates']) != 1 else ''} averaged. "
            + (f"Hardest class: {worst} ({per[worst]:.0%}). " if worst else "")
            + "Stored with the run.")
        self.confusion_table.set_matrix(res["confusion"], names, per)
        self.status.setText(f"Zero-shot on {res['dataset']} by {res['attribute']}: {res['accuracy']:.2%}")
