"""Noticing runs changed by another process (a CLI run, a second window) without polling
the project on the GUI thread: one daemon thread reads a cheap signature of the runs
every few seconds and hands a change over by a queued signal."""
from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Qt, Signal

#: Seconds between two reads of the runs' signature.
RUNS_POLL_S = 3.0


def runs_signature(project) -> tuple:
    """What changes when a run is added, deleted or changes status, or a live run is evaluated
    (read on a worker thread every few seconds)."""
    runs = project.runs()
    live = tuple(len(project.metrics(r.id, name="knn")) for r in runs if r.status in ("running", "paused"))
    return tuple((r.id, r.status) for r in runs) + live


class RunsWatcher(QObject):
    """Notices runs that another process (the CLI, torchrun) starts, ends or evaluates.

    One daemon thread reads :func:`runs_signature` every few seconds and hands it to the GUI
    thread (a queued signal); ``changed`` is emitted when it differs from the last one. The
    GUI thread neither reads the runs nor starts a thread for this. Keep it without a Qt
    parent: its thread holds a reference, so the object outlives any last emission."""

    changed = Signal()
    _read = Signal(object, object)        # (project, signature), from the watching thread

    def __init__(self, interval_s: float = RUNS_POLL_S):
        super().__init__()
        self.interval_s = interval_s
        self.project = None
        self._signature = None
        self._quiet = False
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._read.connect(self._on_signature)

    def watch(self, project) -> None:
        """Follow ``project`` (None: nothing); its first signature is the baseline."""
        self.project, self._signature = project, None
        if project is not None and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="pretext-runs-watch", daemon=True)
            self._thread.start()
        self._wake.set()

    def rebaseline(self) -> None:
        """A change the window already knows about (its own run): take the next signature as
        the new baseline without emitting ``changed`` for it again."""
        self._quiet = True
        self._wake.set()

    def stop(self) -> None:
        self.project = None
        self._stopped.set()
        self._wake.set()

    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:     # on the watching thread
        while not self._stopped.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            project = self.project
            if project is None or self._stopped.is_set():
                continue
            try:
                signature = runs_signature(project)
            except Exception:  # noqa: BLE001 - closed or gone meanwhile: the next action says so
                continue
            self._read.emit(project, signature)

    def _on_signature(self, project, signature: tuple) -> None:
        if project is not self.project:
            return
        if self._signature is not None and signature != self._signature and not self._quiet:
            self.changed.emit()
        self._signature, self._quiet = signature, False


