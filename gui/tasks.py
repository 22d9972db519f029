"""Background tasks of a view: one function at a time on a :class:`~gui.workers.FunctionWorker`,
its outcome delivered on the GUI thread.

The idea is Orange's ``ConcurrentWidgetMixin``: the view says what to run and what to do
with the outcome; the :class:`Task` owns the worker, its signals and the bookkeeping
every view used to wire by hand:

* ``done(value)``, ``error(message, details)``, ``progress(fraction, message)`` and
  ``finished()`` (always last) are called on the GUI thread;
* an outcome that arrives after the view's project changed is dropped (its run ids
  mean nothing in the new project), as is, with ``supersede=True``, the outcome of
  a task that a newer one replaced (which is asked to cancel);
* :meth:`Task.when_free` keeps the latest request of each kind until the running
  task is over ("the latest request wins").
"""
from __future__ import annotations

from typing import Any, Callable

from .workers import FunctionWorker

__all__ = ["Task"]


class Task:
    """One line of background work of ``view`` (anything with a ``project`` attribute)."""

    def __init__(self, view, thread_name: str, *, done: Callable[[Any], None],
                 error: Callable[[str, str], None] | None = None,
                 progress: Callable[[float, str], None] | None = None,
                 finished: Callable[[], None] | None = None, supersede: bool = False):
        self.view = view
        self.thread_name = thread_name
        self.done, self.error, self.progress, self.finished = done, error, progress, finished
        self.supersede = supersede
        self.worker: FunctionWorker | None = None
        self._outcome_due = False       # the current worker's outcome has not been delivered yet
        self._waiting: dict[Any, tuple[Any, Callable[[], None]]] = {}   # kind → (project, request)

    @property
    def busy(self) -> bool:
        return self.worker is not None and self.worker.is_running()

    def awaits(self, *args: Any) -> bool:
        """Whether the task started with ``args`` is the current one and its outcome is still to
        come (its thread may already have ended: the outcome is a queued call on its way)."""
        return self._outcome_due and self.worker is not None and self.worker.args == args

    def start(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> FunctionWorker:
        """Run ``fn(*args, **kwargs)`` on a worker thread now."""
        if self.supersede and self.busy:
            self.worker.cancel()
        worker = FunctionWorker(fn, *args, thread_name=self.thread_name, **kwargs)
        asked_of = self.view.project

        def wanted() -> bool:
            # Not for a project the view no longer shows, nor (superseding) for a replaced task.
            return self.view.project is asked_of and (not self.supersede or self.worker is worker)

        worker.result.connect(lambda value: self.done(value) if wanted() else None)
        if self.error is not None:
            worker.errored.connect(lambda message, details: self.error(message, details) if wanted() else None)
        if self.progress is not None:
            worker.progress.connect(lambda fraction, message: self.progress(fraction, message)
                                    if wanted() else None)
        worker.finished.connect(lambda: self._on_finished(worker))
        self.worker = worker
        self._outcome_due = True
        worker.start()
        return worker

    def when_free(self, request: Callable[[], None], kind: Any = None) -> None:
        """Call ``request`` (which starts this task) now, or once the running task is over;
        a later request of the same ``kind`` replaces one still waiting."""
        if not self.busy:
            request()
            return
        self._waiting[kind] = (self.view.project, request)

    def forget_waiting(self) -> None:
        self._waiting.clear()

    def cancel(self) -> None:
        """Ask the running task to stop (it drops its outcome) and forget the waiting ones."""
        self._waiting.clear()
        if self.worker is not None and self.worker.is_running():
            self.worker.cancel()

    def _on_finished(self, worker: FunctionWorker) -> None:
        # ``finished`` comes after the outcome: from now on nothing more arrives from this worker.
        if worker is self.worker:
            self._outcome_due = False
        if self.finished is not None:
            self.finished()
        while self._waiting and not self.busy:
            project, request = self._waiting.pop(next(iter(self._waiting)))
            if project is self.view.project:
                request()
