"""The Map view's colourings: by label, an attribute, a word in the captions (or sentences)
or a k-means cluster (computed on a worker).

All points are one scatter; their brushes are numpy object arrays indexed from a small
palette (one QBrush per colour, never one per point), so recolouring 100,000 points is
a few array operations. Outside a non-empty lasso selection the points fade.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QComboBox, QLabel, QLineEdit, QSpinBox

from engine.explore.map import compute_clusters

from ..theme import category_colors
from ..tasks import Task

#: Alpha of points outside the selection: see-through, so what is selected stays visible.
FADED_ALPHA = 45
#: Points whose caption does not contain the word: grey, and see-through for the same reason.
OTHER_COLOUR = QColor(150, 150, 150, 110)
MATCH_COLOUR = QColor("#f28e2b")
#: Typing a caption word or a k waits this long for the next key before recolouring.
RECOLOUR_DELAY_MS = 250


def _brush_array(colours: list[QColor]) -> np.ndarray:
    """One QBrush per colour, as an object array that per-point brushes index into."""
    out = np.empty(len(colours), dtype=object)
    for i, c in enumerate(colours):
        out[i] = pg.mkBrush(c)
    return out



class MapColours:
    """The colouring part of :class:`~gui.views.map_view.MapView` (a mixin: it works on the
    view's ``info``, ``selection``, ``scatter``, ``legend`` and ``status``)."""

    def _build_colour_controls(self) -> None:
        """The "Colour by" picker and its extras (the view places them), and the palettes."""
        self.labels: np.ndarray | None = None   # colour group per point
        self.group_names: list[str] = []
        self.class_colors: list[QColor] = []
        self.match_count: int | None = None      # points whose caption contains the word
        self.cluster_task = Task(self, "pretext-kmeans", done=self._on_clusters, error=self._on_clusters_error)
        self._clusters: dict[tuple[int, int], np.ndarray] = {}     # (embedding id, k) → labels
        self._palette = _brush_array([QColor("#4e79a7")])
        self._faded = _brush_array([QColor(78, 121, 167, FADED_ALPHA)])
        self._brushes = np.empty(0, dtype=object)     # per point, indexes into the palettes
        self._recolour_timer = QTimer(self)
        self._recolour_timer.setSingleShot(True)
        self._recolour_timer.setInterval(RECOLOUR_DELAY_MS)
        self._recolour_timer.timeout.connect(self._on_colour_chosen)
        self.colour_combo = QComboBox()
        self.colour_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.colour_combo.setToolTip("Colour the points by their label, an attribute, a word in their "
                                     "captions or a k-means cluster of the embeddings")
        self.colour_combo.currentIndexChanged.connect(self._on_colour_chosen)
        self.caption_edit = QLineEdit()
        self.caption_edit.setPlaceholderText("word…")
        self.caption_edit.setClearButtonEnabled(True)
        self.caption_edit.setMaximumWidth(140)
        self.caption_edit.setToolTip("Highlight the points whose caption (or sentence) contains this word "
                                     "or phrase, whole words, any case")
        self.caption_edit.textChanged.connect(lambda _t: self._recolour_timer.start())
        self.caption_edit.returnPressed.connect(self._on_colour_chosen)
        self.k_spin = QSpinBox()
        self.k_spin.setRange(2, 40)
        self.k_spin.setValue(8)
        self.k_spin.setPrefix("k = ")
        self.k_spin.setToolTip("Number of k-means clusters (on the embeddings, cosine geometry)")
        self.k_spin.valueChanged.connect(lambda _v: self._recolour_timer.start())
        self.colour_note = QLabel("")
        for w in (self.caption_edit, self.k_spin, self.colour_note):
            w.setVisible(False)

    def _show_colour_extras(self) -> None:
        key = self.colour_combo.currentData() or "none"
        self.caption_edit.setVisible(key == "caption")
        self.k_spin.setVisible(key == "cluster")
        self.colour_note.setVisible(key in ("caption", "cluster"))

    def _on_colour_chosen(self, *_):
        self._recolour_timer.stop()
        self._show_colour_extras()
        if self.info is not None:
            self._apply_colours()
            self._push_brushes()
            self._update_legend()

    def _apply_colours(self) -> None:
        """Colour groups per point for the chosen colouring, and the per-point brushes."""
        data = self.info.data
        ids = self.info.ids
        key = self.colour_combo.currentData() or "none"
        colours: list[QColor] | None = None
        self.match_count = None
        self.colour_note.setText("")
        if key == "label" and data.labels is not None:
            groups = data.labels[ids]
            names = list(data.class_names or [])
        elif key.startswith("attr:"):
            a_ids, names = data.attributes[key[5:]]
            groups = np.asarray(a_ids)[ids]
            names = list(names)
        elif key == "caption" and self.caption_edit.text().strip():
            from engine.workbench import caption_matches
            query = self.caption_edit.text().strip()
            match = caption_matches(self.info.texts, ids, query)
            m = self.match_count = int(match.sum())
            groups = match.astype(np.int64)
            names = [f"other ({len(ids) - m:,})", f"contains “{query}” ({m:,})"]
            colours = [OTHER_COLOUR, MATCH_COLOUR]
            self.colour_note.setText(f"{m:,} of {len(ids):,}")
        elif key == "cluster":
            k = self.k_spin.value()
            labels = self._clusters.get((self.info.embedding_id, k))
            if labels is None:
                self._start_clusters(k)
                groups = np.zeros(len(ids), np.int64)
                names = ["clustering…"]
                self.colour_note.setText("clustering…")
            else:
                groups = labels
                counts = np.bincount(labels, minlength=k)
                names = [f"cluster {c + 1} ({counts[c]:,})" for c in range(k)]
                self.colour_note.setText(f"{k} clusters")
        else:
            groups = np.zeros(len(ids), np.int64)
            names = ["all items"]
        k = max(int(groups.max()) + 1 if len(groups) else 1, len(names))
        names = names + [str(i) for i in range(len(names), k)]
        self.labels = np.asarray(groups, np.int64)
        self.group_names = names
        self.class_colors = colours or category_colors(k)
        self._palette = _brush_array(self.class_colors)
        faded = []
        for c in self.class_colors:
            f = QColor(c)
            f.setAlpha(min(FADED_ALPHA, c.alpha()))
            faded.append(f)
        self._faded = _brush_array(faded)
        self._compose_brushes()

    def _compose_brushes(self) -> None:
        """Per-point brushes: the group's colour, faded outside a non-empty selection (array
        indexing: the points share the palette's few QBrush objects)."""
        if len(self.selection):
            inside = np.zeros(len(self.labels), bool)
            inside[self.selection] = True
            self._brushes = np.where(inside, self._palette[self.labels], self._faded[self.labels])
        else:
            self._brushes = self._palette[self.labels]

    def _push_brushes(self) -> None:
        """Hand the current brushes to the scatter (all points, or the timeline's sample)."""
        if self.timeline_active and self.timeline is not None:
            self._draw_timeline(self.timeline_slider.value())
        elif len(self.scatter.data) == len(self._brushes):
            self.scatter.set_brushes(self._brushes)

    def _start_clusters(self, k: int) -> None:
        if self.cluster_task.busy:
            args = self.cluster_task.worker.args
            if args[0] == self.info.embedding_id and args[2] == k:
                return          # already on its way
        self.cluster_task.start(compute_clusters, self.info.embedding_id, self.info.vectors, k)

    def _on_clusters(self, result) -> None:
        emb_id, k, labels = result
        self._clusters[(emb_id, k)] = labels
        if (self.info is not None and emb_id == self.info.embedding_id and k == self.k_spin.value()
                and self.colour_combo.currentData() == "cluster"):
            self._on_colour_chosen()

    def _on_clusters_error(self, message: str, details: str) -> None:
        self.colour_note.setText("")
        self.status.setText(f"k-means failed: {message}")

    def _update_legend(self) -> None:
        self.legend.clear()
        if len(self.group_names) <= 1:
            return
        shown = self.group_names[:20]
        for i, name in enumerate(shown):
            sample = pg.ScatterPlotItem(pxMode=True, size=9, pen=None, symbol="o",
                                        brush=pg.mkBrush(self.class_colors[i]))
            self.legend.addItem(sample, name)
        if len(self.group_names) > 20:
            self.legend.addItem(pg.ScatterPlotItem(size=0), f"… {len(self.group_names) - 20} more")
