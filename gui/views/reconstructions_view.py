"""The Reconstructions view: what a reconstructing method makes of its input.

For every method that declares it reconstructs (``Method.reconstructs``: PCA, the
autoencoders, MAE, channel prediction): rows of original images, what the network was
shown (noisy, masked, a channel removed) and what it drew back (plus, for MAE, the
visible patches pasted over the prediction). The pictures come from the method's own
``reconstruct``, computed on a worker thread from the chosen checkpoint. Moving the
slider the method declares (mask ratio, noise level) recomputes them live: requests are debounced and only the
latest one is computed once the worker is free. A second tab shows the
pictures the training loop stored at every checkpoint, with the same row
titles, and says the mask ratio (or noise level) they were made with: the
run's own, which the loop uses, not the live slider's.

Both grids choose how many columns to use so the tiles are as large as the
view allows, and lay the pictures out again when the view is resized. What is computed
lives in :mod:`engine.explore.reconstructions`, Qt-free.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QPushButton, QSlider, QTabWidget, QVBoxLayout,
                               QWidget)

from engine.explore.reconstructions import (ModelCache, Reconstructions, compute_reconstructions, input_title,
                                            load_saved_pictures, reconstructs, redraws, slider_of, setting_of)
from engine.store import ProjectError

from ..picture_grid import PictureGrid, fitted_columns  # noqa: F401 - fitted_columns: tests import it here
from ..run_view import RunView
from ..widgets import ElidedLabel, error_dialog
from ..tasks import Task
from ..workers import FunctionWorker

DEBOUNCE_MS = 120

#: What each picture row is called; "input" depends on the method's corruption (its declared title).
ROW_TITLES = {"original": "original", "reconstruction": "reconstruction", "pasted": "visible + predicted"}


def row_title(method_name: str, key: str) -> str:
    """What a picture row shows, in words ("input" depends on the method's corruption)."""
    return input_title(method_name) if key == "input" else ROW_TITLES.get(key, key)


class ReconstructionsView(RunView):
    """Original / input / reconstruction rows for the runs of reconstructing methods."""

    #: new pictures are on screen: the request key (run, checkpoint, setting, seed)
    pictures_ready = Signal(object)

    no_runs_placeholder = "no runs that reconstruct"
    loads_when_hidden = True

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.seed = 0
        self.result: Reconstructions | None = None
        self.last_error_box = None
        self._cache = ModelCache()
        # One drawing at a time; a request made meanwhile is drawn next (the latest wins).
        self.draw_task = Task(self, "pretext-reconstruct", done=self._on_result, error=self._on_error)
        self._drawing: tuple | None = None       # the request being drawn (an error names it)
        self._error_shown_for = None
        self._artifacts: list = []
        self._live_status = ""
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self.recompute)
        self._build()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(6, 6, 6, 6)
        bar = QHBoxLayout()
        self._make_run_combo(20)
        self.checkpoint_combo = QComboBox()
        self.checkpoint_combo.setToolTip("The saved weights to draw with (a run keeps its last checkpoints)")
        self.checkpoint_combo.currentIndexChanged.connect(lambda *_: self.schedule())
        self.slider_label = QLabel("Mask ratio")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 95)
        self.slider.setMinimumWidth(160)
        self.slider.valueChanged.connect(self._on_slider)
        self.value_label = QLabel("")
        self.value_label.setMinimumWidth(90)
        self.sample_button = QPushButton("New masks")
        self.sample_button.setToolTip("Draw new random masks / noise for the same images (Ctrl+R)")
        self.sample_button.clicked.connect(self.reroll)
        bar.addWidget(QLabel("Run"))
        bar.addWidget(self.run_combo, 2)
        bar.addWidget(QLabel("Checkpoint"))
        bar.addWidget(self.checkpoint_combo)
        bar.addWidget(self.slider_label)
        bar.addWidget(self.slider, 1)
        bar.addWidget(self.value_label)
        bar.addWidget(self.sample_button)
        root.addLayout(bar)
        self.status = ElidedLabel("")
        root.addWidget(self.status)

        self.tabs = QTabWidget()
        self.grid = PictureGrid()
        self.tabs.addTab(self.grid, "Live")
        saved = QWidget()
        sv = QVBoxLayout(saved)
        row = QHBoxLayout()
        self.saved_slider = QSlider(Qt.Orientation.Horizontal)
        self.saved_slider.valueChanged.connect(self._show_artifact)
        self.saved_label = QLabel("")
        row.addWidget(QLabel("Saved at"))
        row.addWidget(self.saved_slider, 1)
        row.addWidget(self.saved_label)
        sv.addLayout(row)
        self.saved_view = PictureGrid()
        sv.addWidget(self.saved_view, 1)
        self.tabs.addTab(saved, "Saved during training")
        # The slider, the checkpoint and "New masks" make the live pictures only.
        self.tabs.currentChanged.connect(self._on_tab_changed)
        root.addWidget(self.tabs, 1)
        QShortcut(QKeySequence("Ctrl+R"), self, activated=self.reroll,
                  context=Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self._set_controls()

    def _empty_text(self) -> str:
        if self.project is None:
            return "Open a project to see reconstructions."
        return ("No runs of a reconstructing method yet.\n\nTrain an autoencoder, a denoising autoencoder, "
                "a masked autoencoder (MAE) or channel prediction in the Train view: their reconstructions "
                "appear here, live for any mask ratio or noise level.")

    # ------------------------------------------------------------------ project
    def set_project(self, project) -> None:
        self.result = None
        self._cache = ModelCache() if not self.busy else self._cache
        super().set_project(project)

    def runs_to_list(self, project) -> list:
        return [r for r in reversed(project.runs()) if reconstructs(r.method) and r.status != "created"]

    def refresh(self) -> None:
        """Re-list the runs that can draw reconstructions (keeps the current one and, when it
        stays, its chosen checkpoint: new ones may have been saved)."""
        shown = self.run_id
        super().refresh()
        if self.run_combo.count() and self.run_id == shown:
            self._fill_checkpoints(keep=True)

    def show_no_runs(self) -> None:
        self.run_id = None
        self.grid.set_rows([])
        self.grid.set_message(self._empty_text())
        self.saved_view.set_rows([])
        self.saved_view.set_message(self._empty_text())
        self._set_controls()

    def load_run(self, run_id: int) -> None:
        if run_id == self.run_id:
            return
        self.run_id = int(run_id)
        run = self.project.run(self.run_id)
        setting = setting_of(run.method, run.config)
        self.slider.blockSignals(True)
        if setting is not None:
            slider = slider_of(run.method)
            self.slider.setRange(int(round(slider.low * 100)), int(round(slider.high * 100)))
            self.slider_label.setText(setting[0])
            self.slider.setValue(int(round(setting[1] * 100)))
        self.slider.blockSignals(False)
        self._set_controls()
        self._update_value_label()
        self._fill_checkpoints(keep=False)
        self._load_artifacts()
        self.schedule()

    def _fill_checkpoints(self, keep: bool) -> None:
        current = self.checkpoint_combo.currentData() if keep else None
        self.checkpoint_combo.blockSignals(True)
        self.checkpoint_combo.clear()
        cks = self.project.checkpoints(self.run_id) if self.run_id is not None else []
        for ck_id, step, epoch in reversed(cks):
            self.checkpoint_combo.addItem(f"step {step} · epoch {epoch}", ck_id)
        self.checkpoint_combo.setPlaceholderText("no checkpoint yet")
        i = self.checkpoint_combo.findData(current) if current is not None else -1
        self.checkpoint_combo.setCurrentIndex(i if i >= 0 else (0 if cks else -1))
        self.checkpoint_combo.blockSignals(False)
        if keep and self.checkpoint_combo.currentData() != current:
            self.schedule()

    def _set_controls(self) -> None:
        run = self.project.run(self.run_id) if (self.project is not None and self.run_id is not None) else None
        has = run is not None and setting_of(run.method, run.config) is not None
        for w in (self.slider_label, self.slider, self.value_label):
            w.setVisible(has)
        live = self.tabs.currentIndex() == 0
        for w in (self.slider_label, self.slider, self.value_label, self.checkpoint_combo):
            w.setEnabled(live)
        why = "" if live else "For the Live tab: the saved pictures were drawn by the training loop"
        for w in (self.slider, self.value_label):
            w.setToolTip(why or "Redraw the live pictures at another setting")
        self.sample_button.setEnabled(run is not None and live)
        self.sample_button.setText(f"New {redraws(run.method) if run is not None else 'noise'}")

    def _on_tab_changed(self, *_) -> None:
        """The controls and the status line speak of the pictures on screen."""
        self._set_controls()
        if self.run_id is None:
            return
        if self.tabs.currentIndex() == 0:
            self.status.setText(self._live_status)
        else:
            made = self.saved_setting()
            self.status.setText(f"Run #{self.run_id}: the pictures the training loop saved with its checkpoints"
                                + (f", made at {made} (the run's own; the slider redraws the Live tab)"
                                   if made else ""))

    # ------------------------------------------------------------------ live pictures
    def _on_slider(self, _value: int) -> None:
        self._update_value_label()
        self.schedule()

    def _update_value_label(self) -> None:
        self.value_label.setText(f"{self.slider.value()} %")

    def reroll(self) -> None:
        self.seed += 1
        self.schedule()

    def schedule(self) -> None:
        """Ask for new pictures soon (slider drags come in bursts: wait for a pause)."""
        self._debounce.start()

    @property
    def busy(self) -> bool:
        return self.draw_task.busy

    @property
    def _worker(self) -> FunctionWorker | None:
        return self.draw_task.worker

    def current_request(self) -> tuple | None:
        ck = self.checkpoint_combo.currentData()
        if self.project is None or self.run_id is None or ck is None:
            return None
        run = self.project.run(self.run_id)
        setting = self.slider.value() / 100 if setting_of(run.method, run.config) is not None else None
        return self.run_id, int(ck), setting, self.seed

    def recompute(self) -> None:
        """Compute the pictures for the current controls; if a computation is running, do it next."""
        req = self.current_request()
        if req is None:
            return
        if self.busy:
            self.draw_task.when_free(self.recompute)   # asks again then: the controls may have moved on
            return
        if self.result is not None and self.result.key == req:
            return
        if self.tabs.currentIndex() == 0:
            self.status.setText("Drawing…")
        self._drawing = req
        self.draw_task.start(compute_reconstructions, self.project, self._cache, *req)

    def _on_result(self, result: Reconstructions) -> None:
        run_id, _, setting, _ = result.key
        try:
            method = self.project.run(run_id).method
        except ProjectError:
            return      # the project closed (or the run went) while the pictures were drawn: stale
        self.result = result
        rows = [(row_title(method, k), a) for k, a in result.rows]
        self.grid.set_rows(rows)
        what = "" if setting is None else f" at {self.slider_label.text().lower()} {round(setting * 100)} %"
        self._live_status = (f"Run #{run_id}, checkpoint {self.checkpoint_combo.currentText()}{what}: "
                             f"{len(result.items)} test images")
        if self.tabs.currentIndex() == 0:
            self.status.setText(self._live_status)
        self.pictures_ready.emit(result.key)

    def _on_error(self, message: str, details: str) -> None:
        req = self._drawing
        self.status.setText(f"Cannot draw reconstructions: {message}")
        if self._error_shown_for != req[:2]:        # one dialog per checkpoint, not per slider move
            self._error_shown_for = req[:2]
            self.last_error_box = error_dialog(self, "Cannot draw reconstructions", message, details)

    # ------------------------------------------------------------------ stored pictures
    def _load_artifacts(self) -> None:
        self._artifacts = self.project.artifacts(self.run_id, "reconstructions") if self.run_id else []
        self.saved_slider.blockSignals(True)
        self.saved_slider.setRange(0, max(0, len(self._artifacts) - 1))
        self.saved_slider.setValue(max(0, len(self._artifacts) - 1))
        self.saved_slider.setEnabled(len(self._artifacts) > 1)
        self.saved_slider.blockSignals(False)
        self._show_artifact()
        if self.tabs.currentIndex() == 1:
            self._on_tab_changed()

    def saved_setting(self) -> str:
        """The setting the stored pictures were made with: the run's own (the training loop
        draws at the trained mask ratio or noise level), e.g. "mask ratio 75 %"."""
        run = self.project.run(self.run_id) if self.run_id is not None else None
        setting = setting_of(run.method, run.config) if run is not None else None
        return "" if setting is None else f"{setting[0].lower()} {setting[1]:.0%}".replace("%", " %")

    def _show_artifact(self, *_):
        if not self._artifacts:
            self.saved_label.setText("")
            self.saved_view.set_rows([])
            self.saved_view.set_message("This run has no stored reconstructions yet: the training loop saves "
                                        "them at every checkpoint.")
            return
        a = self._artifacts[self.saved_slider.value()]
        saved = load_saved_pictures(self.project, a)
        method = self.project.run(self.run_id).method
        if saved.rows is None:     # not a grid this view knows: the picture whole, its rows named
            self.saved_view.set_rows([(" / ".join(row_title(method, k) for k in saved.keys) or "pictures",
                                       saved.picture[None])])
        else:
            self.saved_view.set_rows([(row_title(method, k), r) for k, r in zip(saved.keys, saved.rows)])
        made = self.saved_setting()
        self.saved_label.setText(f"step {a.step} ({self.saved_slider.value() + 1} of {len(self._artifacts)})"
                                 + (f" · made at {made}, as trained" if made else ""))
