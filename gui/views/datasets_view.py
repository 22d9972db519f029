"""The Datasets view: look at a data set, import new ones, preview augmentations.

* A thumbnail grid of every item with its label (or caption). It is a
  ``QListView`` over :class:`ThumbnailModel`, which draws a thumbnail only
  when the view asks for it (the visible items) and keeps the last few
  thousand, so 60,000 items scroll as smoothly as 60.
* A text corpus shows its sentences instead (a list view over
  :class:`SentenceModel`, virtualised the same way) and corpus statistics:
  tokens, vocabulary, sentence lengths, the most frequent words.
* Statistics of the data set: size, split, class counts, captions, skipped files.
* Import of every kind in :data:`engine.data.DATASET_KINDS` through the shared
  :class:`gui.import_flow.ImportFlow` (a form built from the kind's ``ParamSpec``
  list, a worker thread with a progress bar, Cancel, and a report of the files
  that could not be read); the new data set is then shown.
* Augmentation preview: the pairs of views a method trains on, made by the
  very function the training loop calls (:func:`engine.augment.make_view_pair`
  through :func:`engine.augment.preview`) with the method's default view
  settings for this data set; "Re-roll" draws new images and new views.
"""
from __future__ import annotations

import html
from collections import OrderedDict

import numpy as np
from PySide6.QtCore import QAbstractListModel, QModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QListView, QMenu, QMessageBox, QPushButton,
                               QSplitter, QStackedWidget, QTabWidget, QTextBrowser, QVBoxLayout, QWidget)

from engine.data import picture

from ..images import thumbnail
from ..import_flow import ImportingView
from ..picture_grid import PictureGrid
from ..widgets import ElidedLabel, read_only_note, show_read_only
from ..workers import FunctionWorker

THUMB = 64
CACHE_ITEMS = 3000          # ~50 MB of 64×64 RGB pixmaps at most
PREVIEW_N = 8


# ---------------------------------------------------------------------------------- the grid


class ThumbnailModel(QAbstractListModel):
    """The items of an :class:`~engine.data.ImageData` (or a subset of them), one row each.

    Thumbnails are made lazily from the uint8 array when a row is painted and
    kept in a bounded LRU cache; nothing is precomputed, so setting a data set
    of any size is instant.
    """

    ItemRole = Qt.ItemDataRole.UserRole     # the item's index in the data set

    def __init__(self, parent=None, thumb: int = THUMB):
        super().__init__(parent)
        self.data_set = None
        self.rows = np.zeros(0, np.int64)   # data set indices shown, in order
        self.thumb = thumb
        self._cache: OrderedDict[int, object] = OrderedDict()
        self.thumbnails_made = 0            # for tests and the benchmark: work done so far

    def set_data(self, data, rows: np.ndarray | None = None) -> None:
        self.beginResetModel()
        self.data_set = data
        self.rows = (np.arange(data.n, dtype=np.int64) if data is not None and rows is None
                     else np.asarray(rows if rows is not None else [], np.int64))
        self._cache.clear()
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt naming
        return 0 if parent.isValid() else len(self.rows)

    def label_of(self, i: int) -> str:
        d = self.data_set
        if d.labels is not None:
            lab = int(d.labels[i])
            names = d.class_names or []
            return names[lab] if lab < len(names) else str(lab)
        if d.captions:
            return d.captions[i]
        return d.item_names[i].rsplit("/", 1)[-1]

    def pixmap(self, i: int):
        pm = self._cache.get(i)
        if pm is None:
            pm = thumbnail(picture(self.data_set.images, i), self.thumb)
            self.thumbnails_made += 1
            self._cache[i] = pm
            if len(self._cache) > CACHE_ITEMS:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(i)
        return pm

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or self.data_set is None:
            return None
        i = int(self.rows[index.row()])
        if role == Qt.ItemDataRole.DecorationRole:
            return self.pixmap(i)
        if role == Qt.ItemDataRole.DisplayRole:
            return self.label_of(i)
        if role == Qt.ItemDataRole.ToolTipRole:
            d = self.data_set
            lines = []
            if d.labels is not None:
                lines.append(f"<b>{html.escape(self.label_of(i))}</b>")
            for attr, (ids, names) in d.attributes.items():
                v = int(ids[i])
                lines.append(f"{html.escape(attr)}: {html.escape(names[v] if v < len(names) else str(v))}")
            if d.captions:
                lines.append(f"“{html.escape(d.captions[i])}”")
            lines.append(f"<small>{html.escape(d.item_names[i])} · "
                         f"{'test' if d.split[i] else 'train'} split · #{i}</small>")
            return "<br>".join(lines)
        if role == self.ItemRole:
            return i
        return None


class SentenceModel(QAbstractListModel):
    """The sentences of a :class:`~engine.data.text.TextData` (or a subset), one row each.

    Rows are strings already in memory, so the list view asks only for the
    visible ones (uniform row heights) and a million sentences scroll smoothly."""

    ItemRole = Qt.ItemDataRole.UserRole     # the sentence's index in the corpus

    def __init__(self, parent=None):
        super().__init__(parent)
        self.data_set = None
        self.rows = np.zeros(0, np.int64)

    def set_data(self, data, rows: np.ndarray | None = None) -> None:
        self.beginResetModel()
        self.data_set = data
        self.rows = (np.arange(data.n, dtype=np.int64) if data is not None and rows is None
                     else np.asarray(rows if rows is not None else [], np.int64))
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt naming
        return 0 if parent.isValid() else len(self.rows)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or self.data_set is None:
            return None
        i = int(self.rows[index.row()])
        if role == Qt.ItemDataRole.DisplayRole:
            return self.data_set.sentences[i]
        if role == Qt.ItemDataRole.ToolTipRole:
            d = self.data_set
            n = int(d.offsets[i + 1] - d.offsets[i])
            return (f"<p>{html.escape(d.sentences[i])}</p><small>sentence #{i} · {n} tokens in the vocabulary · "
                    f"{'held-out' if d.split[i] else 'train'} split</small>")
        if role == self.ItemRole:
            return i
        return None


# ---------------------------------------------------------------------------------- helpers


def describe_views(cfg) -> str:
    """The view settings in a line: only what is switched on."""
    parts = [f"crop {cfg.crop_scale_min:.0%}–{cfg.crop_scale_max:.0%} of the area"]
    if cfg.flip_p:
        parts.append(f"flip p={cfg.flip_p:g}")
    if cfg.jitter_p:
        parts.append(f"colour jitter p={cfg.jitter_p:g} (brightness {cfg.brightness:g}, contrast "
                     f"{cfg.contrast:g}, saturation {cfg.saturation:g}, hue {cfg.hue:g})")
    for name, what in (("grayscale_p", "grayscale"), ("blur_p", "blur"), ("solarize_p", "solarize"),
                       ("noise_p", "noise")):
        if getattr(cfg, name):
            parts.append(f"{what} p={getattr(cfg, name):g}")
    return "; ".join(parts)


def make_preview(data, method: str, seed: int, n: int = PREVIEW_N):
    """(originals, view 1, view 2, view config): what ``method`` trains on, for ``n`` images."""
    from engine.augment import preview
    from engine.train import default_run_config
    from engine.methods import get_method
    views = default_run_config(method, data).views
    first, second = get_method(method).views_for(views)      # e.g. BYOL's asymmetric blur and solarize
    originals, v1, v2 = preview(data.images, first, n=n, seed=seed, second=second)
    return originals, v1, v2, views


# ---------------------------------------------------------------------------------- the view


class DatasetsView(QWidget, ImportingView):
    """Browse, import and preview data sets."""

    #: a data set was imported (the Train and Project views re-read the list)
    datasets_changed = Signal()
    #: the shown data set finished loading: its id
    dataset_loaded = Signal(int)
    #: (message, timeout ms) for the status bar
    message = Signal(str, int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = None
        self.dataset_id: int | None = None
        self.data = None
        self.preview_seed = 0
        self.preview_arrays = None
        self.last_error: QMessageBox | None = None
        self._load_worker: FunctionWorker | None = None
        self._make_import_flow(self._update_import_button)
        self.import_flow.failed.connect(lambda text: self.count_label.setText(text))
        self._build()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(6, 6, 6, 6)
        bar = QHBoxLayout()
        self.dataset_combo = QComboBox()
        self.dataset_combo.setMinimumContentsLength(18)
        self.dataset_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.dataset_combo.currentIndexChanged.connect(self._on_dataset_chosen)
        self.show_combo = QComboBox()
        self.show_combo.setToolTip("Show every item, one class, or one split")
        self.show_combo.setMinimumContentsLength(12)
        self.show_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.show_combo.currentIndexChanged.connect(self._apply_filter)
        self.count_label = ElidedLabel("")
        self.import_button = QPushButton("Import…")
        self.import_button.setToolTip("Add a data set to the project (Ctrl+I)")
        self.import_menu = QMenu(self.import_button)
        self.import_button.setMenu(self.import_menu)
        self.import_progress = self.import_flow.progress
        self.cancel_button = self.import_flow.cancel_button
        bar.addWidget(QLabel("Data set"))
        bar.addWidget(self.dataset_combo, 1)
        bar.addWidget(QLabel("Show"))
        bar.addWidget(self.show_combo)
        bar.addWidget(self.count_label, 1)
        bar.addWidget(self.import_progress)
        bar.addWidget(self.cancel_button)
        bar.addWidget(self.import_button)
        root.addLayout(bar)

        split = QSplitter(Qt.Orientation.Horizontal)
        self.model = ThumbnailModel(self)
        self.grid = QListView()
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setUniformItemSizes(True)          # no per-item size queries: 60,000 items lay out at once
        self.grid.setLayoutMode(QListView.LayoutMode.Batched)
        self.grid.setBatchSize(2000)
        self.grid.setIconSize(QSize(THUMB, THUMB))
        self.grid.setGridSize(QSize(THUMB + 22, THUMB + 24))
        self.grid.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.grid.setWordWrap(False)
        self.grid.setSelectionMode(QListView.SelectionMode.SingleSelection)
        self.grid.setModel(self.model)
        self.grid.selectionModel().currentChanged.connect(self._on_item_chosen)
        # A text corpus: its sentences, one per row (uniform heights: only visible rows are asked for).
        self.sentence_model = SentenceModel(self)
        self.sentences = QListView()
        self.sentences.setUniformItemSizes(True)
        self.sentences.setLayoutMode(QListView.LayoutMode.Batched)
        self.sentences.setBatchSize(5000)
        self.sentences.setAlternatingRowColors(True)
        self.sentences.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.sentences.setWordWrap(False)
        self.sentences.setModel(self.sentence_model)
        self.sentences.selectionModel().currentChanged.connect(self._on_sentence_chosen)
        self.items_stack = QStackedWidget()
        self.items_stack.addWidget(self.grid)
        self.items_stack.addWidget(self.sentences)
        split.addWidget(self.items_stack)

        self.tabs = QTabWidget()
        self.stats = QTextBrowser()
        self.stats.setOpenLinks(False)
        self.tabs.addTab(self.stats, "Statistics")

        prev = QWidget()
        pv = QVBoxLayout(prev)
        pv.setContentsMargins(4, 4, 4, 4)
        row = QHBoxLayout()
        self.method_combo = QComboBox()
        self.method_combo.setToolTip("The views this method trains on, with its default settings for "
                                     "this data set")
        self.method_combo.currentIndexChanged.connect(lambda *_: self.update_preview())
        self.reroll_button = QPushButton("Re-roll")
        self.reroll_button.setToolTip("New images and new random views (Ctrl+R)")
        self.reroll_button.clicked.connect(self.reroll)
        row.addWidget(QLabel("Method"))
        row.addWidget(self.method_combo, 1)
        row.addWidget(self.reroll_button)
        pv.addLayout(row)
        self.preview_grid = PictureGrid()
        pv.addWidget(self.preview_grid, 1)
        self.views_label = QLabel()
        self.views_label.setWordWrap(True)
        self.views_label.setStyleSheet("color: gray;")
        pv.addWidget(self.views_label)
        self.preview_tab = self.tabs.addTab(prev, "Augmentation preview")
        split.addWidget(self.tabs)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 0)
        split.setSizes([760, 440])
        root.addWidget(split, 1)

        reroll = QShortcut(QKeySequence("Ctrl+R"), self, activated=self.reroll,
                           context=Qt.ShortcutContext.WidgetWithChildrenShortcut)
        reroll.setWhatsThis("Re-roll the augmentation preview")     # named in Help → Keyboard shortcuts
        self._fill_import_menu()
        self.import_button.setEnabled(False)         # until a project is open
        self.preview_grid.set_message("Pick a data set to see the views a method trains on.")

    def _fill_import_menu(self) -> None:
        from engine.data import DATASET_KINDS
        self.import_menu.clear()
        for kind in DATASET_KINDS.values():
            a = self.import_menu.addAction(kind.title, lambda k=kind.name: self.open_import_dialog(k))
            a.setToolTip(kind.description)
        self.import_menu.setToolTipsVisible(True)

    # ------------------------------------------------------------------ project
    def set_project(self, project) -> None:
        self.project = project
        self.dataset_id = None
        self.data = None
        self.model.set_data(None)
        self.sentence_model.set_data(None)
        self.method_combo.blockSignals(True)
        self.method_combo.clear()
        from engine.methods import METHODS
        for name, cls in METHODS.items():
            # Image methods that train on pairs of views (text methods have no views to show).
            if cls.uses_views and getattr(cls, "modality", "images") == "images" and cls.card.family != "text":
                self.method_combo.addItem(cls.card.title, name)
        self.method_combo.setCurrentIndex(max(0, self.method_combo.findData("simclr")))
        self.method_combo.blockSignals(False)
        self.refresh()

    def refresh(self) -> None:
        """Re-list the project's data sets (keeps the current one)."""
        current = self.dataset_combo.currentData()
        self.dataset_combo.blockSignals(True)
        self.dataset_combo.clear()
        if self.project is not None:
            from engine.workbench import kind_modality
            for d in self.project.datasets():
                unit = "sentences" if kind_modality(d.kind) == "text" else "items"
                self.dataset_combo.addItem(f"{d.name}  ({d.n_items:,} {unit})", d.id)
        i = self.dataset_combo.findData(current) if current is not None else -1
        self.dataset_combo.setCurrentIndex(i if i >= 0 else (0 if self.dataset_combo.count() else -1))
        self.dataset_combo.setPlaceholderText("no data sets: Import… one")
        self.dataset_combo.blockSignals(False)
        self._update_import_button()
        if self.isVisible() and self.dataset_combo.currentData() != self.dataset_id:
            self._on_dataset_chosen()
        if self.project is None or not self.dataset_combo.count():
            self.stats.setHtml("<p>No data set yet. <b>Import…</b> adds one: the built-in digits and shapes, "
                               "a folder or .zip of your images, IDX files, a torchvision set, or a text "
                               "corpus (.txt, a folder or .zip of them, or the built-in shapes captions).</p>")

    def showEvent(self, ev) -> None:  # noqa: N802 - Qt naming
        super().showEvent(ev)
        if self.dataset_combo.currentData() is not None and self.dataset_combo.currentData() != self.dataset_id:
            self._on_dataset_chosen()

    def _on_dataset_chosen(self, *_):
        ds = self.dataset_combo.currentData()
        if ds is not None:
            self.show_dataset(int(ds))

    def show_dataset(self, dataset_id: int) -> None:
        """Load and show a data set (on a worker thread; ``dataset_loaded`` says when)."""
        if self.project is None:
            return
        i = self.dataset_combo.findData(dataset_id)
        if i < 0:                      # added to the project by someone else (the CLI, a script)
            self.refresh()
            i = self.dataset_combo.findData(dataset_id)
        if i >= 0 and i != self.dataset_combo.currentIndex():
            self.dataset_combo.blockSignals(True)
            self.dataset_combo.setCurrentIndex(i)
            self.dataset_combo.blockSignals(False)
        if dataset_id == self.dataset_id and (self.data is not None or self._loading()):
            return
        self.dataset_id = dataset_id
        self.data = None
        self.count_label.setText("Loading…")
        from engine.workbench import load_dataset
        worker = FunctionWorker(load_dataset, self.project, dataset_id, thread_name="pretext-dataset-load")
        worker.result.connect(lambda data, d=dataset_id: self._on_loaded(d, data))
        worker.errored.connect(lambda m, det: self._show_error("Cannot load the data set", m, det))
        self._load_worker = worker
        worker.start()

    def _loading(self) -> bool:
        return self._load_worker is not None and self._load_worker.is_running()

    def _on_loaded(self, dataset_id: int, data) -> None:
        if dataset_id != self.dataset_id:
            return            # another data set was picked meanwhile
        self.data = data
        text = self.is_text
        # Images show as a thumbnail grid, a corpus as its sentences; the preview is for image views.
        self.model.set_data(None if text else data)
        self.sentence_model.set_data(data if text else None)
        self.items_stack.setCurrentWidget(self.sentences if text else self.grid)
        self.tabs.setTabEnabled(self.preview_tab, not text)
        self.tabs.setTabToolTip(self.preview_tab, "Text methods train on sentences, not on augmented views"
                                if text else "")
        if text and self.tabs.currentIndex() == self.preview_tab:
            self.tabs.setCurrentIndex(0)
        self.show_combo.blockSignals(True)
        self.show_combo.clear()
        self.show_combo.addItem("all sentences" if text else "all items", ("all", None))
        self.show_combo.addItem("train split", ("split", 0))
        self.show_combo.addItem("held-out split" if text else "test split", ("split", 1))
        if data.labels is not None:
            counts = np.bincount(data.labels, minlength=len(data.class_names or []))
            for k, c in enumerate(counts):
                names = data.class_names or []
                self.show_combo.addItem(f"{names[k] if k < len(names) else k} ({c:,})", ("class", k))
        self.show_combo.blockSignals(False)
        self._update_count()
        self._show_stats()
        self.update_preview()
        self.dataset_loaded.emit(dataset_id)

    def _apply_filter(self, *_):
        if self.data is None:
            return
        what, value = self.show_combo.currentData() or ("all", None)
        if what == "split":
            rows = np.flatnonzero(self.data.split == value)
        elif what == "class":
            rows = np.flatnonzero(self.data.labels == value)
        else:
            rows = None
        (self.sentence_model if self.is_text else self.model).set_data(self.data, rows)
        self._update_count()

    def _update_count(self) -> None:
        d = self.data
        if d is None:
            return
        if self.is_text:
            shown = self.sentence_model.rowCount()
            what = f"{shown:,} of {d.n:,} sentences" if shown != d.n else f"{d.n:,} sentences"
            self.count_label.setText(f"{what} · {d.n_tokens:,} tokens · {len(d.vocab):,} words")
            return
        shown = self.model.rowCount()
        what = f"{shown:,} of {d.n:,} items" if shown != d.n else f"{d.n:,} items"
        self.count_label.setText(f"{what} · {d.height}×{d.width} "
                                 f"{'RGB' if d.channels == 3 else 'grayscale'}")

    def _on_item_chosen(self, current, _previous) -> None:
        if current.isValid() and self.data is not None:
            i = self.model.data(current, ThumbnailModel.ItemRole)
            self.message.emit(f"#{i}: {self.model.label_of(i)} — {self.data.item_names[i]}", 6000)

    @property
    def is_text(self) -> bool:
        """The shown data set is a text corpus."""
        return getattr(self.data, "modality", "images") == "text"

    def _on_sentence_chosen(self, current, _previous) -> None:
        if current.isValid() and self.is_text:
            i = self.sentence_model.data(current, SentenceModel.ItemRole)
            ids = self.data.sentence_ids(i)
            self.message.emit(f"#{i}: {len(ids)} tokens: " + " ".join(self.data.vocab[t] for t in ids[:40]), 8000)

    def _show_text_stats(self) -> None:
        """Corpus statistics: tokens, vocabulary, sentence lengths, the most frequent words."""
        d = self.data
        rec = self.project.dataset(self.dataset_id)
        s = d.stats()
        stored = rec.stats if isinstance(rec.stats, dict) else {}
        e = html.escape
        lengths = s["sentence_length"]
        rows = [("Kind", rec.kind), ("Sentences", f"{d.n:,}"),
                ("Tokens", f"{s['n_tokens']:,}" + (f" (of {stored['n_tokens_raw']:,} before min_count)"
                                                   if stored.get("n_tokens_raw", s["n_tokens"]) != s["n_tokens"]
                                                   else "")),
                ("Vocabulary", f"{s['n_types']:,} words"),
                ("Sentence length", f"mean {lengths['mean']:.1f}, median {lengths['median']:.0f}, "
                                    f"95 % ≤ {lengths['p95']:.0f}, longest {lengths['max']:,} tokens"),
                ("Split", f"{s['split']['train']:,} train / {s['split']['heldout']:,} held out")]
        if rec.params:
            rows.append(("Imported with", ", ".join(f"{k}={v}" for k, v in rec.params.items())))
        if stored.get("storage"):
            rows.append(("Stored as", stored["storage"]))
        parts = ["<table cellspacing=2>"] + [f"<tr><td><b>{e(k)}</b>&nbsp;</td><td>{e(str(v))}</td></tr>"
                                             for k, v in rows] + ["</table>"]
        n_top = min(25, len(d.vocab))
        top = int(d.counts[0]) if n_top else 1
        parts.append(f"<p><b>The {n_top} most frequent words</b></p><table cellspacing=1>")
        for w, c in zip(d.vocab[:n_top], d.counts[:n_top]):
            bar = "█" * max(1, round(20 * int(c) / top))
            parts.append(f"<tr><td>{e(w)}&nbsp;</td><td align=right>{int(c):,}&nbsp;</td>"
                         f"<td><span style='color:#4e79a7'>{bar}</span></td></tr>")
        parts.append("</table>")
        skipped = stored.get("skipped_files") or []
        if skipped:
            parts.append(f"<p><b>{len(skipped)} files were skipped</b> at import:</p><ul>"
                         + "".join(f"<li>{e(f)}</li>" for f in skipped[:30]) + "</ul>")
        self.stats.setHtml("".join(parts))

    def _show_stats(self) -> None:
        if self.is_text:
            self._show_text_stats()
            return
        d = self.data
        rec = self.project.dataset(self.dataset_id)
        s = d.stats()
        stored = rec.stats if isinstance(rec.stats, dict) else {}
        e = html.escape
        rows = [("Kind", rec.kind), ("Items", f"{d.n:,}"),
                ("Image size", f"{d.height}×{d.width}, {'RGB' if d.channels == 3 else 'grayscale'}"),
                ("Split", f"{s['split']['train']:,} train / {s['split']['test']:,} test")]
        if rec.params:
            rows.append(("Imported with", ", ".join(f"{k}={v}" for k, v in rec.params.items())))
        if stored.get("storage"):
            rows.append(("Stored as", stored["storage"]))
        # At most 256 images, spread over the set: stored images are decoded on demand.
        sample = np.asarray(d.images[np.unique(np.linspace(0, d.n - 1, min(d.n, 256)).astype(int))])
        mean = sample.reshape(-1, d.channels).mean(axis=0)
        rows.append(("Mean pixel", " / ".join(f"{m:.0f}" for m in mean)))
        if d.captions is not None:
            rows.append(("Captions", f"{s['n_captions']:,}"))
        parts = ["<table cellspacing=2>"] + [f"<tr><td><b>{e(k)}</b>&nbsp;</td><td>{e(str(v))}</td></tr>"
                                             for k, v in rows] + ["</table>"]
        if s["class_counts"]:
            counts = s["class_counts"]
            top = max(counts.values()) or 1
            parts.append(f"<p><b>{len(counts)} classes</b></p><table cellspacing=1>")
            for name, c in list(counts.items())[:50]:
                bar = "█" * max(1, round(20 * c / top))
                parts.append(f"<tr><td>{e(name)}&nbsp;</td><td align=right>{c:,}&nbsp;</td>"
                             f"<td><span style='color:#4e79a7'>{bar}</span></td></tr>")
            parts.append("</table>")
            if len(counts) > 50:
                parts.append(f"<p>… and {len(counts) - 50} more classes</p>")
        for attr, counts in s["attributes"].items():
            parts.append(f"<p><b>{e(attr)}</b>: " + ", ".join(f"{e(k)} {v:,}" for k, v in counts.items()) + "</p>")
        skipped = stored.get("skipped_files") or []
        if skipped:
            parts.append(f"<p><b>{len(skipped)} files were skipped</b> at import:</p><ul>"
                         + "".join(f"<li>{e(f)}</li>" for f in skipped[:30]) + "</ul>")
            if len(skipped) > 30:
                parts.append(f"<p>… and {len(skipped) - 30} more</p>")
        self.stats.setHtml("".join(parts))

    # ------------------------------------------------------------------ augmentation preview
    def reroll(self) -> None:
        self.preview_seed += 1
        self.update_preview()

    def update_preview(self) -> None:
        """Draw the pairs of views for the chosen method (fast: a few images, on this thread)."""
        method = self.method_combo.currentData()
        if self.data is None or method is None:
            return
        if self.is_text:
            self.preview_arrays = None
            self.preview_grid.set_rows([])
            self.preview_grid.set_message("A text corpus has no augmented views: text methods train on "
                                          "its sentences.")
            self.views_label.setText("")
            return
        try:
            originals, v1, v2, views = make_preview(self.data, method, self.preview_seed)
        except Exception as exc:  # noqa: BLE001 - shown, never raised into Qt
            from ..workers import readable_error
            self.preview_grid.set_message(f"Cannot make views: {readable_error(exc)}")
            return
        self.preview_arrays = (originals, v1, v2)
        self.preview_grid.set_rows([("image", originals), ("view 1", v1), ("view 2", v2)])
        self.views_label.setText(f"Draw {self.preview_seed + 1}. {describe_views(views)}. "
                                 "The same function makes the views during training.")

    # ------------------------------------------------------------------ import
    # The import itself is the shared ImportFlow (ImportingView); this view then shows the new data set.
    def _on_imported(self, dataset_id: int, data) -> None:
        self.refresh()
        self.datasets_changed.emit()
        self.dataset_id = None
        self.dataset_combo.setCurrentIndex(self.dataset_combo.findData(dataset_id))
        self.dataset_id = dataset_id
        self._on_loaded(dataset_id, data)

    def _update_import_button(self, *_) -> None:
        """Import… works on an open project that can be written (a read-only one says why)."""
        read_only = read_only_note(self.project)
        self.import_button.setEnabled(self.project is not None and not read_only and not self.importing)
        show_read_only(self.import_button, read_only)

    def _show_error(self, title: str, message: str, details: str) -> None:
        from ..widgets import error_dialog
        self.count_label.setText(message)
        self.last_error = error_dialog(self, title, message, details)
