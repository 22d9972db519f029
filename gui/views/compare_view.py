"""The Compare view: every run of the project side by side.

A runs × metrics table (kNN, linear probe, the raw-pixel and untrained-network
baselines, and whatever else a run has logged: a metric that appears in any
run becomes a column, so zero-shot or analogy scores show up without changes
here), sortable by any column, filterable by text. Selecting runs shows the
settings in which they differ — the question one asks when two runs of the
same method score differently. Beside the differences, "Few labels" draws the runs'
label-efficiency curves (accuracy against labels per class, from their ``label_eff/``
metrics, which the table leaves out) for one mode at a time.

Accuracies, recalls and other rates are shown in per cent with one decimal;
losses, correlations and counts as plain numbers. Headers are written out
("image→text R@1", "zero-shot colour") with a tooltip saying what the metric
is, and numbered metrics come in numeric order (R@1, R@5, R@10).
"""
from __future__ import annotations

import math
import re

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit,
                               QPushButton, QSplitter, QTableView, QTableWidget, QTableWidgetItem,
                               QTabWidget, QVBoxLayout, QWidget)

from ..label_curves import MODE_TITLES, MODES, Curve, LabelCurvesPlot, label_curves, selections
from ..theme import category_colors

#: Evaluation metrics in the order they are worth reading, with their column titles.
KNOWN_METRICS = {
    "knn": "kNN", "linear": "Linear\nprobe",
    "raw_knn": "kNN\nraw pixels", "raw_linear": "Linear\nraw pixels",
    "random_knn": "kNN\nuntrained", "random_linear": "Linear\nuntrained",
}
#: Per-step logs: they describe the last step, not the run, so they are left out.
STEP_ONLY = ("lr", "images_per_s", "words_per_s")
STEP_ONLY_PREFIXES = ("collapse_",)
RUN_COLUMNS = ("#", "Name", "Method", "Data set", "Status")
SORT_ROLE = Qt.ItemDataRole.UserRole


#: What the known metrics measure (the header tooltips).
KNOWN_TIPS = {
    "knn": "kNN accuracy: test images classified by the labels of their nearest training embeddings",
    "linear": "Linear probe accuracy: a linear classifier trained on the frozen embeddings",
    "raw_knn": "kNN accuracy on the raw pixels (the baseline to beat)",
    "raw_linear": "Linear probe accuracy on the raw pixels (the baseline to beat)",
    "random_knn": "kNN accuracy of the untrained network (what training added)",
    "random_linear": "Linear probe accuracy of the untrained network (what training added)",
    "loss": "The training loss at the run's last logged step (lower is better; not comparable "
            "between methods)",
    "neighbour_purity": "Share of the listed words whose nearest neighbour is in the same group "
                        "(colours next to colours, shapes next to shapes)",
    "analogy": "Analogy accuracy by 3CosAdd (a : b :: c : ?, argmax cos(x, b − a + c))",
    "analogy_cosmul": "Analogy accuracy by 3CosMul (Levy & Goldberg 2014)",
    "analogy_coverage": "Share of the analogy questions whose four words are in the vocabulary",
    "masked_accuracy": "Masked-token accuracy: the share of masked tokens predicted exactly (test sentences)",
    "mlm_accuracy": "Masked-token accuracy during training",
    "nsp_accuracy": "Next-sentence prediction accuracy",
    "unigram_accuracy": "Masked-token accuracy of always guessing by word frequency (the baseline to beat)",
    "perplexity": "Perplexity of the masked tokens (lower is better)",
    "unigram_perplexity": "Perplexity of guessing by word frequency (the baseline to beat)",
    "zs_combo": "Zero-shot accuracy on the (colour, shape) combinations",
    "zs_combo_heldout": "Zero-shot accuracy on the (colour, shape) combinations held out of training",
    "zs_combo_seen": "Zero-shot accuracy on the (colour, shape) combinations seen in training",
}
#: Metrics that are rates in [0, 1] (shown in per cent) besides accuracies and recalls.
RATE_NAMES = ("neighbour_purity", "analogy_coverage")
RATE_PREFIXES = ("i2t_r", "t2i_r", "zs_", "zeroshot_", "oov_", "analogy")


def metric_title(name: str) -> str:
    """The column header: what the metric is, in words (two short lines)."""
    if name in KNOWN_METRICS:
        return KNOWN_METRICS[name]
    if name == "loss":
        return "Final loss"
    if name.startswith("feature_"):
        return "Features\n" + name[8:].replace("_", " ")
    if m := re.fullmatch(r"(i2t|t2i)_r(\d+)", name):
        return ("image→text" if m[1] == "i2t" else "text→image") + f"\nR@{m[2]}"
    if m := re.fullmatch(r"zs_combo(?:_(heldout|seen))?", name):
        return "zero-shot\ncolour+shape" + {"heldout": ", held out", "seen": ", seen"}.get(m[1] or "", "")
    if m := re.fullmatch(r"zs_(.+?)(_heldout)?", name):
        return f"zero-shot\n{m[1].replace('_', ' ')}" + (", held out" if m[2] else "")
    if name.startswith("zeroshot_"):
        return "zero-shot\n" + name[9:].replace("_", " ")
    if name == "analogy":
        return "analogies\n3CosAdd"
    if name == "analogy_cosmul":
        return "analogies\n3CosMul"
    if name == "analogy_coverage":
        return "analogies\nin vocabulary"
    if name.startswith("spearman_"):
        return "Spearman ρ\n" + name[9:]
    if name.startswith("oov_"):
        return "out of vocab.\n" + name[4:]
    return name.replace("_", " ").replace("-", " ").capitalize()


def metric_tip(name: str) -> str:
    """The header tooltip: what the metric measures, and the name it is stored under."""
    tip = KNOWN_TIPS.get(name)
    if tip is None:
        if m := re.fullmatch(r"(i2t|t2i)_r(\d+)", name):
            tip = (f"Recall@{m[2]}, image → text: the share of test images with one of their own captions "
                   f"among the {m[2]} captions closest to them" if m[1] == "i2t" else
                   f"Recall@{m[2]}, text → image: the share of test captions whose image is among the "
                   f"{m[2]} images closest to them")
        elif m := re.fullmatch(r"zs_(.+?)(_heldout)?", name):
            tip = (f"Zero-shot accuracy on {m[1].replace('_', ' ')}: test images classified by the closest "
                   "class prompt (\"a picture of a …\"), with no labels used in training"
                   + (", on the combinations held out of training" if m[2] else ""))
        elif name.startswith("zeroshot_"):
            tip = "Zero-shot accuracy from the Search view (data set and attribute in the name)"
        elif name.startswith("spearman_"):
            tip = f"Spearman correlation of cosine similarity with the human scores of {name[9:]}"
        elif name.startswith("oov_"):
            tip = f"Share of the {name[4:]} word pairs that are not in the vocabulary"
        elif name.startswith("feature_"):
            tip = "A statistic of the embeddings (collapse shows as a small spread)"
        else:
            tip = "The run's last logged value"
    return f"{tip}\n(stored as “{name}”)"


def is_fraction(name: str) -> bool:
    """Accuracy-like metrics (accuracies, recalls, rates) are shown in per cent."""
    return (name in KNOWN_METRICS or name in RATE_NAMES or name.startswith(RATE_PREFIXES)
            or "acc" in name or "zero" in name
            or name.endswith("_ratio") or name.endswith("_knn") or name.endswith("_linear"))


def format_metric(name: str, value: float) -> str:
    """One number format per kind: rates in per cent with one decimal, the rest plain."""
    if is_fraction(name) and 0 <= value <= 1:
        return f"{value:.1%}"
    return f"{value:.4g}"


def _natural(name: str) -> list:
    """A sort key that orders numbers by value: r1, r5, r10 (not r1, r10, r5)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


#: Reading order of the metric groups after the kNN / linear evaluations.
GROUPS = (("zs_",), ("zeroshot_", "zero"), ("i2t_", "t2i_"), ("neighbour_", "analogy", "spearman_", "oov_"))


def _group(name: str) -> int:
    for i, prefixes in enumerate(GROUPS):
        if name.startswith(prefixes):
            return i
    return len(GROUPS)


def metric_columns(all_names) -> list[str]:
    """The metric columns in reading order: evaluations, other scores (zero-shot, retrieval,
    word scores, the rest; numbers in numeric order), the loss, feature statistics.
    Per-class and per-section details ("zeroshot_shapes_colour/red") are left out."""
    names = {n for n in all_names if n not in STEP_ONLY and not n.startswith(STEP_ONLY_PREFIXES)
             and "/" not in n}
    known = [n for n in KNOWN_METRICS if n in names]
    features = sorted((n for n in names if n.startswith("feature_")), key=_natural)
    loss = ["loss"] if "loss" in names else []
    others = sorted(names - set(known) - set(features) - set(loss), key=lambda n: (_group(n), _natural(n)))
    return known + others + loss + features


def flatten_config(config: dict) -> dict[str, object]:
    """A run's stored config as flat keys named as on the command line's overrides:
    ``lr``, ``width``, ``views.flip_p`` (with ``method`` and nothing nested)."""
    out: dict[str, object] = {"method": config.get("method")}
    if "dataset" in config:          # the GUI adds the data set's name beside the stored config
        out["data set"] = config["dataset"]
    for section, prefix in (("train", ""), ("method_config", ""), ("views", "views.")):
        for key, value in (config.get(section) or {}).items():
            out[prefix + key] = value
    return out


def config_difference(configs: list[dict]) -> list[tuple[str, list[object]]]:
    """(key, values per config) for every key whose value is not the same in all of them
    (a key missing from a config counts as different; its value is shown as None)."""
    flat = [flatten_config(c) for c in configs]
    keys: list[str] = []
    for f in flat:
        keys.extend(k for k in f if k not in keys)
    rows = []
    for k in keys:
        values = [f.get(k) for f in flat]
        if any(v != values[0] for v in values[1:]):
            rows.append((k, values))
    return rows


def _fmt_value(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "—" if v is None else str(v)


class RunsModel(QAbstractTableModel):
    """Rows: runs; columns: run facts then metrics. Sorting uses ``SORT_ROLE`` values."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.runs: list = []                 # RunRecord
        self.dataset_names: dict[int, str] = {}
        self.metrics: list[dict[str, float]] = []
        self.metric_names: list[str] = []

    def set_rows(self, runs, dataset_names, metrics) -> None:
        self.beginResetModel()
        self.runs, self.dataset_names, self.metrics = list(runs), dict(dataset_names), list(metrics)
        seen: list[str] = []
        for m in self.metrics:
            seen.extend(k for k in m if k not in seen)
        self.metric_names = metric_columns(seen)
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt naming
        return 0 if parent.isValid() else len(self.runs)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt naming
        return 0 if parent.isValid() else len(RUN_COLUMNS) + len(self.metric_names)

    def metric_of(self, column: int) -> str | None:
        i = column - len(RUN_COLUMNS)
        return self.metric_names[i] if 0 <= i < len(self.metric_names) else None

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation != Qt.Orientation.Horizontal:
            return None
        name = self.metric_of(section)
        if role == Qt.ItemDataRole.DisplayRole:
            return RUN_COLUMNS[section] if name is None else metric_title(name)
        if role == Qt.ItemDataRole.ToolTipRole and name is not None:
            return metric_tip(name)
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        run, col = self.runs[index.row()], index.column()
        name = self.metric_of(col)
        if name is not None:
            v = self.metrics[index.row()].get(name)
            missing = v is None or (isinstance(v, float) and math.isnan(v))
            if role == Qt.ItemDataRole.DisplayRole:
                if missing:
                    return "—"
                return format_metric(name, v)
            if role == SORT_ROLE:
                return -math.inf if missing else float(v)     # missing values sort below every number
            if role == Qt.ItemDataRole.TextAlignmentRole:
                return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            return None
        values = (run.id, run.name, run.method, self.dataset_names.get(run.dataset_id, "?"), run.status)
        if role == Qt.ItemDataRole.DisplayRole:
            return str(values[col])
        if role == SORT_ROLE:
            return values[col] if col == 0 else str(values[col]).lower()
        if role == Qt.ItemDataRole.ToolTipRole and col == 4 and run.status == "failed" and run.error:
            return run.error.split("\n\n")[0]
        if role == Qt.ItemDataRole.TextAlignmentRole and col == 0:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


class CompareView(QWidget):
    """Runs × metrics, sortable, with the settings that differ between the selected runs."""

    map_requested = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = None
        self._signature = None
        self._build()
        # Runs that start or finish (here or in another process: the CLI, torchrun) reach this
        # view through the main window's runs_changed, which refreshes it while visible.

    def _build(self) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(6, 6, 6, 6)
        bar = QHBoxLayout()
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter runs: method, name, data set, status…")
        self.filter_edit.setClearButtonEnabled(True)
        self.map_button = QPushButton("Show map")
        self.map_button.setToolTip("Open the selected finished run in the Map view")
        self.map_button.clicked.connect(self._map_selected)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        self.summary = QLabel("")
        bar.addWidget(self.filter_edit, 2)
        bar.addWidget(self.summary, 1)
        bar.addWidget(self.map_button)
        bar.addWidget(self.refresh_button)
        root.addLayout(bar)

        split = QSplitter(Qt.Orientation.Vertical)
        self.model = RunsModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setFilterKeyColumn(-1)           # match any column
        self.filter_edit.textChanged.connect(self.proxy.setFilterFixedString)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.DescendingOrder)       # newest run first
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.selectionModel().selectionChanged.connect(self._on_selection)
        self.table.doubleClicked.connect(lambda _i: self._map_selected())
        split.addWidget(self.table)

        diff_box = QWidget()
        dl = QVBoxLayout(diff_box)
        dl.setContentsMargins(0, 4, 0, 0)
        self.diff_title = QLabel()
        self.diff_title.setWordWrap(True)
        self.diff_table = QTableWidget(0, 0)
        self.diff_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.diff_table.setAlternatingRowColors(True)
        self.diff_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.diff_table.horizontalHeader().setStretchLastSection(True)
        self.diff_table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        dl.addWidget(self.diff_title)
        dl.addWidget(self.diff_table, 1)
        self.lower_tabs = QTabWidget()
        self.lower_tabs.addTab(diff_box, "Settings")
        self.lower_tabs.addTab(self._build_few_labels(), "Few labels")
        split.addWidget(self.lower_tabs)
        split.setSizes([380, 260])
        root.addWidget(split, 1)
        QShortcut(QKeySequence.StandardKey.Find, self, activated=self.filter_edit.setFocus,
                  whatsThis="Filter the runs")     # named in Help → Keyboard shortcuts
        self._on_selection()

    def _build_few_labels(self) -> QWidget:
        """The runs' label-efficiency curves, one per run, for the mode picked."""
        box = QWidget()
        lay = QVBoxLayout(box)
        lay.setContentsMargins(0, 4, 0, 0)
        row = QHBoxLayout()
        self.mode_combo = QComboBox()
        for mode in MODES:
            self.mode_combo.addItem(MODE_TITLES[mode], mode)
        self.mode_combo.setToolTip("What was trained on the few labels: a linear probe on the frozen "
                                   "features, the fine-tuned encoder, the same network from scratch, or a "
                                   "probe on the raw pixels")
        self.select_combo = QComboBox()
        self.select_combo.addItem("random", "random")
        self.select_combo.setToolTip("How the labelled images were chosen")
        self.few_labels_note = QLabel("")
        self.few_labels_note.setWordWrap(True)
        self.mode_combo.currentIndexChanged.connect(self._draw_few_labels)
        self.select_combo.currentIndexChanged.connect(self._draw_few_labels)
        row.addWidget(QLabel("Mode:"))
        row.addWidget(self.mode_combo)
        row.addWidget(QLabel("Labels chosen:"))
        row.addWidget(self.select_combo)
        row.addWidget(self.few_labels_note, 1)
        lay.addLayout(row)
        self.label_plot = LabelCurvesPlot(title="")
        lay.addWidget(self.label_plot, 1)
        return box

    def _draw_few_labels(self, *_) -> None:
        """One curve per run (the selected runs, or every run when none is selected) that has
        label-efficiency metrics for the mode and the selection strategy picked."""
        runs = [(r, m) for r, m in zip(self.model.runs, self.model.metrics)]
        with_curves = [(r, m) for r, m in runs if selections(m)]
        # The strategies measured in any run (the combo keeps the one picked).
        wanted = self.select_combo.currentData() or "random"
        found = sorted({s for _, m in with_curves for s in selections(m)} | {"random"},
                       key=lambda s: (s != "random", s))
        if found != [self.select_combo.itemData(i) for i in range(self.select_combo.count())]:
            self.select_combo.blockSignals(True)
            self.select_combo.clear()
            for s in found:
                self.select_combo.addItem(s, s)
            self.select_combo.setCurrentIndex(max(0, self.select_combo.findData(wanted)))
            self.select_combo.blockSignals(False)
        mode = self.mode_combo.currentData()
        select = self.select_combo.currentData() or "random"
        chosen = set(self.selected_run_ids())
        shown = [(r, m) for r, m in with_curves if not chosen or r.id in chosen]
        colours = category_colors(max(1, len(shown)))
        curves = []
        for (r, m), colour in zip(shown, colours):
            points = label_curves(m, select).get(mode, [])
            if points:
                curves.append(Curve(f"#{r.id} {r.name or r.method}", colour.name(), points))
        self.label_plot.set_curves(curves)
        scope = "the selected runs" if chosen else "all runs"
        if curves:
            self.few_labels_note.setText(f"{MODE_TITLES[mode]} accuracy of {scope}; error bars: ± one "
                                         "standard deviation over the seeds")
        else:
            self.few_labels_note.setText(f"No {MODE_TITLES[mode]} curves for {scope} yet: measure a finished "
                                         "run in the Train view (Measure with few labels…) or with "
                                         "main.py eval --labels-per-class 1,10,100")
        self.label_plot.set_title(f"Accuracy with few labels ({MODE_TITLES[mode]}, {select} labels)")

    def few_label_points(self, run_id: int) -> list[tuple[int, float, float]]:
        """(labels per class, accuracy %, std %) of ``run_id``'s drawn curve (for tests)."""
        for c in self.label_plot.curves:
            if c.name.startswith(f"#{run_id} "):
                return self.label_plot.points_of(c.name)
        return []

    # ------------------------------------------------------------------ data
    def set_project(self, project) -> None:
        self.project = project
        self.refresh()

    def showEvent(self, ev) -> None:  # noqa: N802 - Qt naming
        super().showEvent(ev)
        self.refresh()

    def refresh(self) -> None:
        """Re-read runs and their latest metrics (keeps the selection)."""
        selected = self.selected_run_ids()
        if self.project is None:
            self.model.set_rows([], {}, [])
            self.summary.setText("No project open")
            return
        runs = self.project.runs()
        self._signature = tuple((r.id, r.status) for r in runs)
        names = {d.id: d.name for d in self.project.datasets()}
        metrics = [self.project.latest_metrics(r.id) for r in runs]
        self.model.set_rows(runs, names, metrics)
        n_done = sum(r.status == "finished" for r in runs)
        self.summary.setText(f"{len(runs)} runs, {n_done} finished · select two or more to compare "
                             "their settings" if runs else "No runs yet: train one in the Train view")
        if selected:
            self.select_runs(selected)
        else:
            self._on_selection()

    # ------------------------------------------------------------------ selection
    def selected_run_ids(self) -> list[int]:
        sm = self.table.selectionModel()
        if sm is None:
            return []
        rows = sorted(self.proxy.mapToSource(i).row() for i in sm.selectedRows())
        return [self.model.runs[r].id for r in rows if r < len(self.model.runs)]

    def select_runs(self, run_ids) -> None:
        from PySide6.QtCore import QItemSelection, QItemSelectionModel
        want = set(run_ids)
        sel = QItemSelection()
        for r, run in enumerate(self.model.runs):
            if run.id in want:
                i = self.proxy.mapFromSource(self.model.index(r, 0))
                if i.isValid():
                    sel.select(i, i)
        flags = (QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)
        self.table.selectionModel().select(sel, flags)
        self._on_selection()

    def row_of(self, run_id: int) -> int:
        """The table row (as sorted) showing run ``run_id``, or -1."""
        for r, run in enumerate(self.model.runs):
            if run.id == run_id:
                return self.proxy.mapFromSource(self.model.index(r, 0)).row()
        return -1

    def cell_text(self, run_id: int, metric: str) -> str | None:
        """What the table shows for ``run_id`` in ``metric``'s column (None: no such column)."""
        if metric not in self.model.metric_names:
            return None
        col = len(RUN_COLUMNS) + self.model.metric_names.index(metric)
        r = [run.id for run in self.model.runs].index(run_id)
        return self.model.data(self.model.index(r, col))

    def _on_selection(self, *_):
        ids = self.selected_run_ids()
        by_id = {r.id: r for r in self.model.runs}
        runs = [by_id[i] for i in ids if i in by_id]
        self.map_button.setEnabled(len(runs) == 1 and runs[0].status == "finished")
        self._draw_few_labels()
        t = self.diff_table
        t.clear()
        if not runs:
            self.diff_title.setText("Select runs in the table (Ctrl+click, Shift+click) to see how their "
                                    "settings differ.")
            t.setRowCount(0)
            t.setColumnCount(0)
            return
        configs = [dict(r.config, dataset=self.model.dataset_names.get(r.dataset_id, "?")) for r in runs]
        if len(runs) == 1:
            rows = [(k, [v]) for k, v in flatten_config(configs[0]).items()]
            self.diff_title.setText(f"<b>Settings of run #{runs[0].id}</b> (select more runs to see only "
                                    "what differs)")
        else:
            rows = config_difference(configs)
            self.diff_title.setText(f"<b>{len(rows)} setting{'s' if len(rows) != 1 else ''} differ</b> "
                                    f"between runs {', '.join('#' + str(r.id) for r in runs)}"
                                    if rows else "<b>These runs have the same settings</b>")
        t.setRowCount(len(rows))
        t.setColumnCount(len(runs))
        t.setHorizontalHeaderLabels([f"#{r.id} {r.name or r.method}" for r in runs])
        t.setVerticalHeaderLabels([k for k, _ in rows])
        for i, (_, values) in enumerate(rows):
            for j, v in enumerate(values):
                it = QTableWidgetItem(_fmt_value(v))
                t.setItem(i, j, it)

    def difference_keys(self) -> list[str]:
        """The setting names the difference table lists (for tests and scripting)."""
        return [self.diff_table.verticalHeaderItem(i).text() for i in range(self.diff_table.rowCount())]

    def _map_selected(self) -> None:
        ids = self.selected_run_ids()
        by_id = {r.id: r for r in self.model.runs}
        if len(ids) == 1 and by_id[ids[0]].status == "finished":
            self.map_requested.emit(ids[0])
