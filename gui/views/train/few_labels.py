"""The Train view's few-label panel: the shown run's label-efficiency curve and the button
that measures it.

The curve is read from the run's ``label_eff/`` metrics (see :mod:`gui.label_curves`), so
it shows whatever was measured, here, from the command line or by an earlier session.
"Measure with few labels…" runs ``engine.label_efficiency.label_efficiency`` on a worker
(a :class:`~gui.tasks.Task`) with a progress bar and Cancel, then redraws. It is offered
for a finished image run while no run trains; text methods have no few-label evaluation.

Reads from the view: ``project``, ``run_id``, ``_run_method``, ``busy`` and
``runs_changed`` (emitted once new metrics are stored).
"""
from __future__ import annotations

from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFormLayout, QHBoxLayout, QLabel,
                               QLineEdit, QProgressBar, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from ...label_curves import MODE_COLOURS, MODE_TITLES, Curve, LabelCurvesPlot, label_curves, selections
from ...tasks import Task
from ...widgets import ElidedLabel, read_only_note

MEASURE_TIP = ("Train on 1, 10 and 100 labels per class (seeded, class-balanced subsets of the training "
               "split) and score on the test split: a linear probe on the frozen features, the fine-tuned "
               "encoder, the same network from scratch and a raw-pixel probe. The numbers are stored as "
               "metrics of the run (the Compare view draws them too).")
SELECTIONS = ("random", "kcenter", "typiclust")


def measure(project, run_id: int, per_class: tuple[int, ...], seeds: int, select: str,
            progress=None, cancel=None) -> dict:
    """The engine's measurement, on the worker. The engine is imported here, when asked for
    (it loads torch's training code); its ``progress(done, total, text)`` becomes the
    worker's ``(fraction, text)``, and its own cancellation the worker's."""
    from engine.label_efficiency import label_efficiency

    from ...workers import WorkCancelled

    def report(done, total, text=""):
        if progress is not None:
            progress(done / total if total else -1.0, f"{text} ({done} of {total})" if total else text)

    try:
        return label_efficiency(project, run_id, per_class=per_class, seeds=seeds, select=select,
                                progress=report, cancel=cancel)
    except Exception as exc:
        if cancel is not None and cancel():
            raise WorkCancelled() from exc
        raise


def parse_counts(text: str) -> tuple[int, ...] | None:
    """"1, 10, 100" → (1, 10, 100); None unless every part is a positive whole number."""
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        return None
    return tuple(sorted({int(p) for p in parts}))


def ask_settings(parent: QWidget) -> dict | None:
    """The measurement's settings from a small dialog (None: cancelled)."""
    dialog = QDialog(parent)
    dialog.setWindowTitle("Measure with few labels")
    form = QFormLayout(dialog)
    counts = QLineEdit("1, 10, 100")
    counts.setToolTip("Labelled training images per class, separated by commas")
    seeds = QSpinBox()
    seeds.setRange(1, 20)
    seeds.setValue(5)
    seeds.setToolTip("Labelled subsets drawn per count: the curve shows their mean and standard deviation")
    select = QComboBox()
    for s in SELECTIONS:
        select.addItem(s, s)
    select.setToolTip("How the labelled images are chosen: at random, covering the embedding (k-center "
                      "greedy), or the most typical image of each cluster (TypiClust)")
    form.addRow("Labels per class:", counts)
    form.addRow("Seeds:", seeds)
    form.addRow("Labels chosen:", select)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
    buttons.accepted.connect(dialog.accept)
    buttons.rejected.connect(dialog.reject)
    counts.textChanged.connect(lambda t: buttons.button(QDialogButtonBox.StandardButton.Ok)
                               .setEnabled(parse_counts(t) is not None))
    form.addRow(buttons)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    return {"per_class": parse_counts(counts.text()), "seeds": seeds.value(), "select": select.currentData()}


class TrainFewLabels:
    """TrainView's few-label curve, its Measure button, progress and Cancel."""

    def _init_few_labels(self) -> None:
        self.few_labels_task = Task(self, "pretext-label-efficiency", done=self._on_few_labels_done,
                                    error=self._on_few_labels_error, progress=self._on_few_labels_progress,
                                    finished=self._on_few_labels_finished)
        self._few_labels_run: int | None = None      # the run being measured
        self._few_labels_answered = False            # its outcome (a result or an error) came

    def _build_few_labels(self) -> QWidget:
        box = QWidget()
        lay = QVBoxLayout(box)
        lay.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.few_labels_button = QPushButton("Measure with few labels…")
        self.few_labels_button.clicked.connect(self.ask_and_measure_few_labels)
        self.few_labels_cancel = QPushButton("Cancel")
        self.few_labels_cancel.setToolTip("Stop the measurement (nothing is stored)")
        self.few_labels_cancel.clicked.connect(self.few_labels_task.cancel)
        self.few_labels_cancel.setVisible(False)
        self.few_labels_progress = QProgressBar()
        self.few_labels_progress.setRange(0, 100)
        self.few_labels_progress.setMaximumWidth(160)
        self.few_labels_progress.setVisible(False)
        self.few_labels_status = ElidedLabel("")
        row.addWidget(self.few_labels_button)
        row.addWidget(self.few_labels_progress)
        row.addWidget(self.few_labels_cancel)
        row.addWidget(self.few_labels_status, 1)
        lay.addLayout(row)
        # A short plot: the legend is in its title, as in the evaluation plot above it.
        self.few_labels_plot = LabelCurvesPlot(legend_in_title=True)
        lay.addWidget(self.few_labels_plot, 1)
        self._update_few_labels_button()
        return box

    # ------------------------------------------------------------------ state
    def _few_labels_blocker(self) -> str:
        """Why the shown run cannot be measured now ("" when it can)."""
        if self.project is None:
            return "No project open"
        if note := read_only_note(self.project):
            return note
        if self.few_labels_task.busy:
            return "Measuring…"
        if self.busy:
            return "A run is training: measure once it is over"
        if self.run_id is None:
            return "No run yet: train one, then measure how it does with few labels"
        from engine.methods import METHODS
        cls = METHODS.get(self._run_method or "")
        if cls is None or cls.modality != "images":
            return "Few-label accuracy is measured for image methods (text runs have no labelled classes)"
        from engine.store import ProjectError
        try:
            status = self.project.run(self.run_id).status
        except ProjectError:          # not (or no longer) recorded in this project
            return f"Run #{self.run_id} is not in this project"
        if status != "finished":
            return "The run has not finished: measure it once it has"
        return ""

    def _update_few_labels_button(self) -> None:
        why = self._few_labels_blocker()
        self.few_labels_button.setEnabled(not why)
        self.few_labels_button.setToolTip(why or MEASURE_TIP)

    def refresh_few_labels(self) -> None:
        """Draw the shown run's stored curve (none: an empty plot) and update the button."""
        metrics = {}
        if self.project is not None and self.run_id is not None:
            metrics = self.project.latest_metrics(self.run_id)
        found = selections(metrics)
        # Random selection when measured; else the first strategy that was.
        select = found[0] if found else "random"
        curves = [Curve(MODE_TITLES.get(mode, mode), MODE_COLOURS.get(mode, "#59a14f"), points)
                  for mode, points in label_curves(metrics, select).items()]
        self.few_labels_plot.set_curves(curves)
        self.few_labels_plot.set_title(f"Accuracy with few labels, run #{self.run_id}"
                                       + ("" if select == "random" else f" ({select} labels)")
                                       if curves else "Accuracy with few labels (not measured)")
        if not self.few_labels_task.busy:
            self.few_labels_status.setText(
                "error bars: ± one standard deviation over the seeds" if curves else
                "Not measured yet" if self.run_id is not None else "")
        self._update_few_labels_button()

    # ------------------------------------------------------------------ measuring
    def ask_and_measure_few_labels(self) -> bool:
        settings = ask_settings(self)
        return settings is not None and self.measure_few_labels(**settings)

    def measure_few_labels(self, per_class=(1, 10, 100), seeds: int = 5, select: str = "random") -> bool:
        """Measure the shown run on a worker; the curve is redrawn when it is done."""
        if self._few_labels_blocker():
            return False
        self._few_labels_run = self.run_id
        self._few_labels_answered = False
        self.few_labels_status.setToolTip("")
        self.few_labels_task.start(measure, self.project, self.run_id, tuple(per_class), int(seeds), select)
        self.few_labels_progress.setRange(0, 0)          # busy until the first progress report
        self.few_labels_progress.setVisible(True)
        self.few_labels_cancel.setVisible(True)
        self.few_labels_status.setText(f"Measuring run #{self.run_id} with {', '.join(map(str, per_class))} "
                                       f"labels per class, {seeds} seed{'s' if seeds != 1 else ''}…")
        self._update_few_labels_button()
        return True

    def _on_few_labels_progress(self, fraction: float, message: str) -> None:
        if fraction >= 0:
            self.few_labels_progress.setRange(0, 100)
            self.few_labels_progress.setValue(int(round(100 * fraction)))
        if message:
            self.few_labels_status.setText(message)

    def _on_few_labels_done(self, _result) -> None:
        self._few_labels_answered = True
        if self._few_labels_run == self.run_id:
            self.refresh_few_labels()
        self.runs_changed.emit()           # new metrics: the Compare view re-reads them

    def _on_few_labels_error(self, message: str, details: str) -> None:
        self._few_labels_answered = True
        self.few_labels_status.setText(f"Measuring failed: {message}")
        self.few_labels_status.setToolTip(details or message)

    def _on_few_labels_finished(self) -> None:
        self.few_labels_progress.setVisible(False)
        self.few_labels_cancel.setVisible(False)
        self._few_labels_run = None
        if not self._few_labels_answered:          # cancelled: no outcome is delivered
            self.few_labels_status.setText("Cancelled")
        self._update_few_labels_button()


__all__ = ["TrainFewLabels", "ask_settings", "measure", "parse_counts"]
