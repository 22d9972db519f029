"""Worker threads that wrap the engine's long operations.

The pattern is napari's ``thread_worker`` and Orange3's runner: the engine
side is a Qt-free generator or function that reports progress and polls for
interruption; the worker runs it on its own ``QThread`` and turns what it
reports into Qt signals; the widget only reacts to those signals.

* :class:`TrainWorker` iterates :func:`engine.workbench.run_training` and
  emits every event (frozen dataclasses of numbers, strings and dicts) through
  ``event``. ``stop()``, ``pause()`` and ``resume()`` go straight to the
  engine's thread-safe :class:`~engine.train.RunControl`.
* :class:`FunctionWorker` runs any function (a dataset import, a UMAP map)
  and reports ``progress(fraction, message)``, ``result(value)``,
  ``errored(message, details)`` or ``cancelled()``.

The worker *object* lives in the GUI thread and its code runs on another
thread (a QThread for training; a daemon Python thread for function workers,
whose work, like a UMAP fit, may not be interruptible and must never keep the
app from quitting). Every signal it emits from there reaches GUI-thread
receivers as a queued call: slots never run on the worker thread, and the GUI
thread never runs the engine. A running worker keeps itself alive (a
module-level set) until its thread has finished, so dropping the last
reference never destroys a running QThread. :func:`stop_all` (connected to
``QApplication.aboutToQuit``) stops training cleanly before the app exits.
"""
from __future__ import annotations

import inspect
import os
import sys
import threading
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QThread, Signal

__all__ = ["Worker", "TrainWorker", "FunctionWorker", "WorkCancelled", "readable_error", "live_workers",
           "stop_all"]

_LIVE: set["Worker"] = set()


def live_workers() -> list["Worker"]:
    """Workers whose thread has not finished yet."""
    return [w for w in _LIVE if w.is_running()]


def stop_all(timeout_ms: int = 120_000) -> None:
    """Stop every running TrainWorker and wait for it (its checkpoint is saved);
    cancel the other workers (daemon threads, which never hold up quitting)."""
    for w in list(_LIVE):
        if isinstance(w, TrainWorker):
            w.stop()
        elif isinstance(w, FunctionWorker):
            w.cancel()
    for w in list(_LIVE):
        if isinstance(w, TrainWorker):
            w.wait(timeout_ms)


def readable_error(exc: BaseException) -> str:
    """One line a person can read: the message, with the type when it helps."""
    text = str(exc).strip()
    name = type(exc).__name__
    if not text:
        return name
    if name in ("ProjectError", "DataError", "ConfigError", "UserError"):
        return text
    return f"{name}: {text}"


class WorkCancelled(Exception):
    """Raised inside a worker's progress callback once cancel() was asked for."""


class _Thread(QThread):
    def __init__(self, target: Callable[[], None], name: str):
        super().__init__()
        self._target = target
        self.setObjectName(name)

    def run(self) -> None:  # runs on the new thread
        self._target()


class Worker(QObject):
    """Base class: subclasses implement :meth:`work` (runs on the worker thread)."""

    started = Signal()
    errored = Signal(str, str)        # readable message, traceback
    finished = Signal()               # always last, after errored/result/cancelled
    _done = Signal()                  # internal: releases a daemon worker on the GUI thread

    def __init__(self, name: str = "pretext-worker"):
        super().__init__()
        self._name = name
        self._thread: _Thread | None = None
        self._finished = False

    #: Run on a daemon Python thread instead of a QThread: for work that cannot be
    #: interrupted (a UMAP fit) and must not keep the app from quitting.
    daemon = False

    # -- called from the GUI thread ----------------------------------------------------
    def start(self) -> "Worker":
        if self._thread is not None:
            raise RuntimeError("a worker runs once; make a new one")
        _LIVE.add(self)
        if self.daemon:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._done.connect(self._release)
        else:
            self._thread = _Thread(self._run, self._name)
            self._thread.finished.connect(self._release)
        self._thread.start()
        return self

    def is_running(self) -> bool:
        return self._thread is not None and not self._finished

    def wait(self, timeout_ms: int = -1) -> bool:
        """Block until the thread ends (True) or ``timeout_ms`` passes (False)."""
        if self._thread is None:
            return True
        if isinstance(self._thread, threading.Thread):
            self._thread.join(None if timeout_ms < 0 else timeout_ms / 1000)
            return not self._thread.is_alive()
        if timeout_ms < 0:
            return self._thread.wait()
        return self._thread.wait(timeout_ms)

    def _release(self) -> None:
        # ``finished`` is emitted just before the thread ends; let it end, so the
        # QThread object is never destroyed while its thread is still running.
        self.wait()
        _LIVE.discard(self)

    # -- on the worker thread ------------------------------------------------------------
    def _run(self) -> None:
        self.started.emit()
        try:
            self.work()
        except WorkCancelled:
            self._on_cancelled()
        except BaseException as exc:  # noqa: BLE001 - every failure is reported to the window
            self.errored.emit(readable_error(exc), traceback.format_exc())
        finally:
            self._finished = True
            self.finished.emit()
            self._done.emit()

    def _on_cancelled(self) -> None:
        pass

    def work(self) -> None:
        raise NotImplementedError


class TrainWorker(Worker):
    """Train (or resume) one run in a worker thread.

    Give ``run_id`` to train or resume a stored run, or ``create`` (a
    function returning a new run id, e.g. a ``create_run`` call) to record the
    run on the worker thread first: creating a run loads the data set and
    reads package versions, which can take seconds the first time.
    """

    run_created = Signal(int)
    event = Signal(object)        # engine.train events: Started, Step, Evaluation, ...

    def __init__(self, project, run_id: int | None = None, *, create: Callable[[], int] | None = None):
        super().__init__("pretext-train")
        if (run_id is None) == (create is None):
            raise ValueError("give exactly one of run_id and create")
        from engine.train import RunControl
        self.project = project
        self.run_id = run_id
        self._create = create
        self.control = RunControl()
        self.last_event = None

    def work(self) -> None:
        from engine.workbench import run_training
        lower_priority()
        if self.run_id is None:
            self.run_id = int(self._create())
            self.run_created.emit(self.run_id)
        if self.control.stop_requested:
            return
        for ev in run_training(self.project, self.run_id, self.control):
            self.last_event = ev
            self.event.emit(ev)

    # Thread-safe controls, callable from the GUI thread at any time.
    def stop(self) -> None:
        self.control.stop()

    def pause(self) -> None:
        self.control.pause()

    def resume(self) -> None:
        self.control.resume()

    @property
    def paused(self) -> bool:
        return self.control.paused


def lower_priority(nice: int = 5) -> None:
    """Make the calling thread (and the torch threads it starts) yield the CPU to the GUI thread
    when the machine is busy: training then never starves the event loop. Linux only (there
    a thread has its own nice value; elsewhere this call would renice the whole process)."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        except OSError:
            pass


class FunctionWorker(Worker):
    """Run ``fn(*args, **kwargs)`` on a worker thread and emit its result.

    When ``fn`` names a ``progress`` or ``cancel`` parameter, the worker passes
    its own callbacks: ``progress`` accepts either ``(done, total)`` integers
    (a data import) or ``(fraction, message)`` (a UMAP fit), and raises
    :class:`WorkCancelled` once :meth:`cancel` was called, which stops
    functions that only report progress; ``cancel()`` returns whether a
    cancel was asked for, for functions that poll.
    """

    progress = Signal(float, str)      # fraction in [0, 1] (or -1: unknown), message
    result = Signal(object)
    cancelled = Signal()
    daemon = True

    def __init__(self, fn: Callable[..., Any], *args: Any, thread_name: str = "pretext-function",
                 **kwargs: Any):
        super().__init__(thread_name)
        self.fn, self.args, self.kwargs = fn, args, dict(kwargs)
        self._cancel = False
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            params = {}
        if "progress" in params and "progress" not in self.kwargs:
            self.kwargs["progress"] = self._report
        if "cancel" in params and "cancel" not in self.kwargs:
            self.kwargs["cancel"] = self.is_cancelled

    def cancel(self) -> None:
        self._cancel = True

    def is_cancelled(self) -> bool:
        return self._cancel

    def _report(self, a: float, b: Any = "") -> None:
        if self._cancel:
            raise WorkCancelled()
        if isinstance(b, str):
            fraction, message = float(a), b
        else:  # (done, total)
            total = float(b or 0)
            fraction = float(a) / total if total > 0 else -1.0
            message = f"{int(a)} of {int(total)}" if total > 0 else f"{int(a)}"
        self.progress.emit(fraction, message)

    def work(self) -> None:
        try:
            value = self.fn(*self.args, **self.kwargs)
        except Exception as exc:
            # A data loader stops with its own "cancelled" error when cancel() polls True.
            if self._cancel and (isinstance(exc, WorkCancelled) or str(exc) == "cancelled"):
                raise WorkCancelled() from exc
            raise
        if self._cancel:
            raise WorkCancelled()
        self.result.emit(value)

    def _on_cancelled(self) -> None:
        self.cancelled.emit()
