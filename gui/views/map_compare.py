"""The Map view's side-by-side comparison: a second, compact map of another finished run on
the same data beside the first, linked to it: hovering, clicking or lassoing in one shows
the same items in the other.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QComboBox


class MapCompare:
    """The comparison part of :class:`~gui.views.map_view.MapView` (a mixin: the first map
    owns the picker and the second map, ``partner``, a MapView with ``compact=True``)."""

    def _build_compare_picker(self) -> None:
        """The "Compare with" picker (the view places it)."""
        self.partner = None                      # the second map of a comparison
        self._partner_fresh = False
        self.compare_combo = QComboBox()
        self.compare_combo.setMinimumContentsLength(18)
        self.compare_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.compare_combo.setToolTip("Open a second map of another finished run on the same data beside "
                                      "this one; hovering, clicking and lassoing show the same items in both")
        self.compare_combo.currentIndexChanged.connect(self._on_compare_chosen)

    def _fill_compare(self) -> None:
        """List the finished runs a second map can show: same data set, same kind of items."""
        if self.compact:
            return
        current = self.partner.run_id if self.partner is not None and self.partner.isVisible() else None
        self.compare_combo.blockSignals(True)
        self.compare_combo.clear()
        self.compare_combo.addItem("no second map", None)
        # Only once a map is loaded: its worker has imported the engine by then (importing it
        # here first would stall the window for seconds).
        if self.info is not None and self.project is not None:
            from engine.workbench import final_embeddings
            for r in reversed(self.project.runs(self.info.run.dataset_id)):
                if r.status != "finished" or r.id == self.run_id:
                    continue
                emb = final_embeddings(self.project, r.id)
                if emb is not None and emb.split == self.info.split:
                    self.compare_combo.addItem(f"#{r.id} {r.name or r.method}", r.id)
        i = self.compare_combo.findData(current) if current is not None else 0
        self.compare_combo.setCurrentIndex(max(i, 0))
        self.compare_combo.setEnabled(self.compare_combo.count() > 1)
        self.compare_combo.blockSignals(False)
        if current is not None and i < 0:
            self.close_compare()

    def _on_compare_chosen(self, *_):
        run_id = self.compare_combo.currentData()
        if run_id is None:
            self.close_compare()
        else:
            self.open_compare(int(run_id))

    def open_compare(self, run_id: int):
        """Show ``run_id``'s map beside this one, linked to it; returns the second map."""
        if self.partner is None:
            p = self.partner = type(self)(compact=True)
            self.hovered.connect(p.show_linked_hover)
            p.hovered.connect(self.show_linked_hover)
            self.item_clicked.connect(p.select_item)
            p.item_clicked.connect(self.select_item)
            self.selection_changed.connect(p.select_items)
            p.selection_changed.connect(self.select_items)
            p.map_ready.connect(self._on_partner_ready)
            p.close_requested.connect(self.close_compare)
            self.split.insertWidget(1, p)
        p = self.partner
        p.vb.lasso_mode = self.lasso_button.isChecked()
        p.auto_umap = self.auto_umap
        if p.project is not self.project:
            p.set_project(self.project)
        self._partner_fresh = True
        p.setVisible(True)
        QTimer.singleShot(0, self._share_width)
        p.show_run(run_id)
        i = self.compare_combo.findData(run_id)
        if i >= 0 and i != self.compare_combo.currentIndex():
            self.compare_combo.blockSignals(True)
            self.compare_combo.setCurrentIndex(i)
            self.compare_combo.blockSignals(False)
        return p

    def _share_width(self) -> None:
        """The two maps get equal widths; the neighbour panel keeps its own."""
        sizes = self.split.sizes()
        if len(sizes) == 3:
            half = max(0, sum(sizes) - sizes[2]) // 2
            self.split.setSizes([half, half, sizes[2]])

    def close_compare(self) -> None:
        if self.partner is not None and self.partner.isVisible():
            self.partner.setVisible(False)
            self.partner.hide_hover()
            self.link_marker.setData([], [])
        if self.compare_combo.currentIndex() > 0:
            self.compare_combo.blockSignals(True)
            self.compare_combo.setCurrentIndex(0)
            self.compare_combo.blockSignals(False)

    def _on_partner_ready(self, kind: str) -> None:
        """The second map is drawn: the first time, give it this map's colouring and selection."""
        p = self.partner
        if p is None or p.info is None:
            return
        if self._partner_fresh:
            self._partner_fresh = False
            key = self.colour_combo.currentData()
            i = p.colour_combo.findData(key)
            if i >= 0:
                p.caption_edit.setText(self.caption_edit.text())
                p.k_spin.setValue(self.k_spin.value())
                if i != p.colour_combo.currentIndex():
                    p.colour_combo.setCurrentIndex(i)        # recolours through the signal
                else:
                    p._on_colour_chosen()
        p.select_items(self.selected_items())
        if self.selected_index is not None and self.info is not None:
            p.select_item(int(self.info.ids[self.selected_index]))
    def show_linked_hover(self, item: int) -> None:
        """Ring item ``item`` (hovered in the linked map) on this one; -1 clears the ring."""
        rows = self.rows_of([item]) if item >= 0 else np.zeros(0, np.int64)
        self.plot.set_rings(self.link_marker, rows[:1])

    def select_item(self, item: int) -> None:
        """Select item id ``item`` if it is on this map (a click in the linked map)."""
        rows = self.rows_of([item])
        if len(rows):
            self.select_point(int(rows[0]), emit=False)
