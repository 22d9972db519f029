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

import numpy as np
from PySide6.QtCore import QRect, Qt, QTimer, Signal
from PySide6.QtGui import QFontMetrics, QKeySequence, QPainter, QShortcut
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QSlider, QTabWidget,
                               QVBoxLayout, QWidget)

from engine.explore.reconstructions import (ModelCache, Reconstructions, compute_reconstructions, input_title,
                                            load_saved_pictures, reconstructs, redraws, slider_of, setting_of)

from ..images import to_qimage
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


def fitted_columns(n_images: int, n_rows: int, image_w: int, image_h: int, width: float, height: float,
                   gap: int = 3, band_gap: int = 10) -> int:
    """How many columns make the tiles largest when ``n_rows`` rows of ``n_images`` images of
    ``image_w``×``image_h`` wrap into bands in a ``width``×``height`` area (fewer bands on a tie)."""
    best, best_scale = 1, -1.0
    for cols in range(1, max(1, n_images) + 1):
        bands = -(-n_images // cols)
        lines = n_rows * bands
        cell_w = (width - gap * cols) / cols
        cell_h = (height - band_gap * (bands - 1) - gap * lines) / lines
        scale = min(cell_w / image_w, cell_h / image_h)
        if scale > best_scale + 1e-9:
            best, best_scale = cols, scale
    return best


class PictureGrid(QWidget):
    """Rows of same-size images with a title per row, wrapped into as many bands as make
    the tiles largest in the space the widget has (again on every resize), centred.

    ``set_rows([("original", imgs), ("masked input", imgs), ...])`` with uint8 (n, H, W, C)
    arrays. Small images are enlarged with nearest-neighbour sampling: pixels stay crisp."""

    GAP, BAND_GAP = 3, 10

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list[tuple[str, np.ndarray]] = []
        self._images: list[list] = []
        self.message = ""
        self.columns = 1
        self.tile = (0, 0)          # the size the images are drawn at (pixels), after the last paint
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(200, 120)

    def set_rows(self, rows: list[tuple[str, np.ndarray]]) -> None:
        self.rows = [(t, np.asarray(a)) for t, a in rows]
        self._images = [[to_qimage(img) for img in a] for _, a in self.rows]
        self.message = ""
        self.update()

    def set_message(self, text: str) -> None:
        self.message = text
        self.update()

    def n_images(self) -> int:
        return max((len(a) for _, a in self.rows), default=0)

    def layout_for(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(columns, tile width, tile height, title width) for an area of ``width``×``height``."""
        fm = QFontMetrics(self.font())
        label_w = max(fm.horizontalAdvance(t) for t, _ in self.rows) + 10
        n, h0, w0 = self.n_images(), *self.rows[0][1].shape[1:3]
        avail_w, avail_h = width - label_w, height - fm.height()
        cols = fitted_columns(n, len(self.rows), w0, h0, avail_w, avail_h, self.GAP, self.BAND_GAP)
        bands = -(-n // cols)
        lines = len(self.rows) * bands
        cell_w = (avail_w - self.GAP * cols) / cols
        cell_h = (avail_h - self.BAND_GAP * (bands - 1) - self.GAP * lines) / lines
        scale = max(1.0, min(cell_w / w0, cell_h / h0))
        if scale >= 4:
            scale = float(int(scale))      # tiny images: whole factors, every source pixel an even block
        return cols, int(w0 * scale), int(h0 * scale), label_w

    def paintEvent(self, ev) -> None:  # noqa: N802 - Qt naming
        p = QPainter(self)
        pal = self.palette()
        p.setPen(pal.color(pal.ColorRole.WindowText))
        if not self.rows or not self.n_images():
            p.drawText(self.rect(), int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap), self.message)
            return
        fm = QFontMetrics(self.font())
        cols, w, h, label_w = self.layout_for(self.width(), self.height())
        self.columns, self.tile = cols, (w, h)
        n = self.n_images()
        bands = -(-n // cols)
        grid_w = label_w + cols * (w + self.GAP)
        grid_h = bands * len(self.rows) * (h + self.GAP) + (bands - 1) * self.BAND_GAP
        x0 = max(0, (self.width() - grid_w) // 2)
        y = max(fm.height() // 2, (self.height() - grid_h) // 2)
        for b in range(bands):
            for r, (title, _) in enumerate(self.rows):
                p.drawText(QRect(x0, y, label_w - 6, h),
                           int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter), title)
                for c in range(cols):
                    k = b * cols + c
                    if k < len(self._images[r]):
                        p.drawImage(QRect(x0 + label_w + c * (w + self.GAP), y, w, h), self._images[r][k])
                y += h + self.GAP
            y += self.BAND_GAP
        if self.message:
            p.drawText(QRect(0, y, self.width(), fm.height() * 3), int(Qt.TextFlag.TextWordWrap), self.message)


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
        self.result = result
        run_id, _, setting, _ = result.key
        method = self.project.run(run_id).method
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
