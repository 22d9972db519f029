"""The Map view's timeline: how the map formed, replayed.

The run stores the embeddings of a fixed sample at every evaluation; :func:`compute_timeline`
maps each with PCA and aligns it onto the previous frame (orthogonal Procrustes), so frames
differ only by what training changed. A slider and a play button step through them, the
points gliding between frames.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSlider, QStyle, QToolButton, QWidget

from engine.explore.map import Timeline, compute_timeline

from ..tasks import Task
from ..workers import FunctionWorker

#: Slider positions between two timeline frames (the points glide from one to the next).
TIMELINE_SUBSTEPS = 10
TIMELINE_TICK_MS = 40


class MapTimeline:
    """The timeline part of :class:`~gui.views.map_view.MapView` (a mixin: it works on the
    view's map, ``info``, ``scatter``, ``status`` and brushes)."""

    def _build_timeline(self) -> None:
        """The Timeline button (the view places it), the bar under the plot and its state."""
        self.timeline: Timeline | None = None    # compute_timeline's result for the shown run
        self.timeline_points = np.zeros(0, np.int64)   # map points (rows of info.ids) in the timeline
        self.timeline_task = Task(self, "pretext-timeline", done=self._on_timeline, error=self._on_timeline_error)
        self._timeline_run_id: int | None = None
        self._play_timer = QTimer(self)
        self._play_timer.setInterval(TIMELINE_TICK_MS)
        self._play_timer.timeout.connect(self._play_tick)
        self.timeline_button = QPushButton("Timeline")
        self.timeline_button.setCheckable(True)
        self.timeline_button.setToolTip("Replay how the map formed: the embedding at every evaluated epoch, "
                                        "aligned frame to frame (Ctrl+T)")
        self.timeline_button.toggled.connect(self.set_timeline)
        self.timeline_bar = QWidget()
        tb = QHBoxLayout(self.timeline_bar)
        tb.setContentsMargins(0, 2, 0, 0)
        self.play_button = QToolButton()
        self.play_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay))
        self.play_button.setToolTip("Play the timeline from its first frame")
        self.play_button.setCheckable(True)
        self.play_button.toggled.connect(self._on_play)
        self.timeline_slider = QSlider(Qt.Orientation.Horizontal)
        self.timeline_slider.valueChanged.connect(self._on_timeline_slider)
        self.timeline_label = QLabel("")
        self.timeline_label.setMinimumWidth(130)
        tb.addWidget(self.play_button)
        tb.addWidget(self.timeline_slider, 1)
        tb.addWidget(self.timeline_label)
        self.timeline_bar.setVisible(False)

    @property
    def timeline_active(self) -> bool:
        return self.timeline_button.isChecked()

    @property
    def _timeline_worker(self) -> FunctionWorker | None:     # the main window cancels it when it closes
        return self.timeline_task.worker

    def _reset_timeline(self, n_sets: int) -> None:
        self._play_timer.stop()
        self.timeline = None
        self.timeline_points = np.zeros(0, np.int64)
        self.timeline_button.blockSignals(True)
        self.timeline_button.setChecked(False)
        self.timeline_button.blockSignals(False)
        self.timeline_bar.setVisible(False)
        self.timeline_button.setEnabled(n_sets >= 1)
        self.timeline_button.setToolTip(
            "Replay how the map formed: the embedding at every evaluated epoch, aligned frame to frame "
            "(Ctrl+T)" if n_sets else "This run stored no timeline (it evaluated only at the end)")

    def set_timeline(self, on: bool) -> None:
        """Show (compute on a worker the first time) or leave the timeline of the shown run."""
        if self.timeline_button.isChecked() != on:
            self.timeline_button.setChecked(on)      # comes back here through toggled
            return
        self.timeline_bar.setVisible(on)
        if not on:
            self.play_button.setChecked(False)
            if self.info is not None:
                kind = self.kind_combo.currentData() or "pca"
                self._draw(kind if kind in self.info.projections else "pca")
            return
        if self.info is None:
            self.timeline_button.setChecked(False)
            return
        if self.timeline is not None and self.timeline.run_id == self.run_id:
            self._show_timeline()
            return
        if self.timeline_task.busy:
            return
        self._timeline_run_id = self.run_id
        self.status.setText("Aligning the timeline's frames…")
        self.timeline_task.start(compute_timeline, self.project, self.run_id)

    def _on_timeline(self, result: Timeline) -> None:
        if self.info is None or result.run_id != self.run_id:
            return
        pos = {int(i): k for k, i in enumerate(self.info.ids)}
        self.timeline = result
        self.timeline_points = np.array([pos[int(i)] for i in result.ids], np.int64)
        if self.timeline_active:
            self._show_timeline()

    def _on_timeline_error(self, message: str, details: str) -> None:
        self.timeline_button.setChecked(False)
        self.status.setText(f"No timeline: {message}")

    def _show_timeline(self) -> None:
        frames = self.timeline.frames
        self.timeline_slider.blockSignals(True)
        self.timeline_slider.setRange(0, (len(frames) - 1) * TIMELINE_SUBSTEPS)
        self.timeline_slider.setPageStep(TIMELINE_SUBSTEPS)
        self.timeline_slider.setValue(0)
        self.timeline_slider.blockSignals(False)
        # One fixed view for all frames, so the camera does not jump while the points move.
        lo, hi = np.nanmin(frames.reshape(-1, 2), axis=0), np.nanmax(frames.reshape(-1, 2), axis=0)
        self.vb.setRange(xRange=(float(lo[0]), float(hi[0])),
                                            yRange=(float(lo[1]), float(hi[1])), padding=0.05)
        self._draw_timeline(0)
        n = len(self.timeline_points)
        self.status.setText(f"Timeline of {n:,} items over {len(frames)} evaluations · PCA, each frame "
                            "aligned to the previous one")

    def _on_timeline_slider(self, value: int) -> None:
        if self.timeline is not None and self.timeline_active:
            self._draw_timeline(value)

    def _draw_timeline(self, value: int) -> None:
        """Draw slider position ``value``: between two frames the points are interpolated."""
        frames, epochs = self.timeline.frames, self.timeline.epochs
        t = value / TIMELINE_SUBSTEPS
        i = min(int(t), len(frames) - 2)
        f = t - i
        c = ((1 - f) * frames[i] + f * frames[i + 1]).astype(np.float32)
        pts = self.timeline_points
        coords = np.full((len(self.info.ids), 2), np.nan, np.float32)
        coords[pts] = c
        self.coords = coords
        n = len(pts)
        size = 7 if n < 2000 else 5 if n < 20000 else 3
        self.scatter.setData(x=c[:, 0], y=c[:, 1], size=size, pen=None, data=pts)
        self.scatter.set_brushes(self._brushes[pts])
        k = int(round(t))
        self.timeline_label.setText(f"epoch {epochs[k]} · frame {k + 1} of {len(frames)}")
        self._update_highlight()

    def _on_play(self, playing: bool) -> None:
        icon = QStyle.StandardPixmap.SP_MediaPause if playing else QStyle.StandardPixmap.SP_MediaPlay
        self.play_button.setIcon(self.style().standardIcon(icon))
        if playing:
            if self.timeline_slider.value() >= self.timeline_slider.maximum():
                self.timeline_slider.setValue(0)
            self._play_timer.start()
        else:
            self._play_timer.stop()

    def _play_tick(self) -> None:
        v = self.timeline_slider.value() + 1
        if v > self.timeline_slider.maximum():
            self.play_button.setChecked(False)
        else:
            self.timeline_slider.setValue(v)
