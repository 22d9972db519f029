"""The Train view's queue: runs waiting to start, each started when the run before it ends.

A Stop holds the queue (Run queue continues it); Stop all empties it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from PySide6.QtWidgets import QAbstractItemView, QGridLayout, QGroupBox, QHBoxLayout, QListWidget, QPushButton


@dataclass
class QueuedRun:
    """A run waiting in the queue: everything ``create_run`` needs, captured when it was added."""
    dataset_id: int
    dataset_name: str
    config: object            # engine.train.RunConfig
    name: str
    summary: str


class TrainQueue:
    """TrainView's queue box and its actions.

    Reads from the view: ``project``, ``busy``, the pickers and forms (``_checked_run_config()``,
    ``_dataset_record()``, ``_defaults()``), ``_start_config()``, ``stop_run()`` and
    ``_update_buttons()``."""

    def _init_queue(self) -> None:
        # The queue, and whether it waits (after a Stop) instead of starting its next run.
        self.queue: list[QueuedRun] = []
        self.queue_held = False

    def _build_queue(self) -> QGroupBox:
        """The queue box (hidden while the queue is empty)."""
        self.queue_box = QGroupBox("Queue")
        qb = QHBoxLayout(self.queue_box)
        qb.setContentsMargins(6, 2, 6, 4)
        self.queue_list = QListWidget()
        self.queue_list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.queue_list.setMaximumHeight(self.fontMetrics().height() * 3 + 12)
        self.queue_list.currentRowChanged.connect(self._update_buttons)
        qb.addWidget(self.queue_list, 1)
        qbuttons = QGridLayout()
        qbuttons.setSpacing(2)
        self.run_queue_button = QPushButton("Run queue")
        self.run_queue_button.setToolTip("Start the first queued run (the others follow)")
        self.up_button = QPushButton("Move up")
        self.remove_button = QPushButton("Remove")
        self.stop_all_button = QPushButton("Stop all")
        self.stop_all_button.setToolTip("Stop the current run (a checkpoint is saved) and empty the queue")
        self.run_queue_button.clicked.connect(self.run_queue)
        self.up_button.clicked.connect(lambda: self.move_queued_up(self.queue_list.currentRow()))
        self.remove_button.clicked.connect(lambda: self.remove_queued(self.queue_list.currentRow()))
        self.stop_all_button.clicked.connect(self.stop_all)
        for i, b in enumerate((self.run_queue_button, self.up_button, self.remove_button, self.stop_all_button)):
            qbuttons.addWidget(b, i // 2, i % 2)
        qb.addLayout(qbuttons)
        self.queue_box.setVisible(False)
        return self.queue_box

    def add_to_queue(self) -> bool:
        """Queue a run with the settings in the forms (it starts when the runs before it end)."""
        if (self.project is None or self.project.read_only or not self._forms_valid
                or self.dataset_combo.currentData() is None):
            return False
        cfg = self._checked_run_config()
        if cfg is None:
            return False
        ds_id = int(self.dataset_combo.currentData())
        rec = self._dataset_record()
        ds_name = rec.name if rec is not None else f"data set {ds_id}"
        name = self.name_edit.text().strip()
        self.queue.append(QueuedRun(ds_id, ds_name, cfg, name, self._summary(cfg, ds_name, name)))
        self._refresh_queue()
        self.queue_list.setCurrentRow(len(self.queue) - 1)
        return True

    def run_queue(self) -> bool:
        """Start the first queued run; the others follow as each run ends."""
        self.queue_held = False
        if self.busy or not self.queue or self.project is None or self.project.read_only:
            return False
        item = self.queue.pop(0)
        self._refresh_queue()
        self._start_config(item.dataset_id, item.config, item.name)
        return True

    def move_queued_up(self, row: int) -> None:
        if 0 < row < len(self.queue):
            self.queue[row - 1], self.queue[row] = self.queue[row], self.queue[row - 1]
            self._refresh_queue()
            self.queue_list.setCurrentRow(row - 1)

    def remove_queued(self, row: int) -> None:
        if 0 <= row < len(self.queue):
            del self.queue[row]
            self._refresh_queue()
            self.queue_list.setCurrentRow(min(row, len(self.queue) - 1))

    def _refresh_queue(self) -> None:
        row = self.queue_list.currentRow()
        self.queue_list.blockSignals(True)
        self.queue_list.clear()
        for i, item in enumerate(self.queue, 1):
            self.queue_list.addItem(f"{i}. {item.summary}")
            self.queue_list.item(i - 1).setToolTip(json.dumps(item.config.to_dict(), indent=1))
        self.queue_list.setCurrentRow(min(row, len(self.queue) - 1))
        self.queue_list.blockSignals(False)
        held = " — held after a Stop: Run queue continues" if self.queue_held and not self.busy else ""
        self.queue_box.setTitle(f"Queue ({len(self.queue)}){held}")
        self.queue_box.setVisible(bool(self.queue))
        self._update_buttons()

    def _summary(self, cfg, ds_name: str, name: str) -> str:
        """The method, the data set and the settings that tell queued runs apart."""
        from engine import config as cfgmod
        from engine.methods import get_method
        m = get_method(cfg.method)
        t = cfg.train
        parts = [f"{m.card.title} on {ds_name}", f"{t.epochs} epoch{'s' if t.epochs != 1 else ''}"]
        if m.iterative:
            parts += [f"batch {t.batch_size}", f"lr {t.lr:g}"]
        # Method settings that differ from the defaults the form offered, e.g. "temperature 0.1".
        defaults = cfgmod.to_dict(self._defaults(cfg.method)[2])
        changed = [f"{k.replace('_', ' ')} {v}" for k, v in cfgmod.to_dict(cfg.method_config).items()
                   if defaults.get(k) != v]
        parts += changed[:3]
        return (f"{name}: " if name else "") + " · ".join(parts)
