"""The estimate under Start: the time (training + evaluation = total) and the memory of a run.

It comes from a few dry-run steps (:func:`engine.estimate.estimate_run`) on a worker thread,
recomputed shortly after the settings change (the latest settings win; a stale estimate is
cancelled), only while the view is visible, and never beside a training run.
"""
from __future__ import annotations

import json
import math

from PySide6.QtCore import QTimer

from ...workers import FunctionWorker

#: Settings that change a run's length but not the time of one step: an estimate is reused across them.
ESTIMATE_IGNORES = ("epochs", "eval_every", "checkpoint_every", "log_every", "linear_probe_every_eval",
                    "knn_k", "timeline_items", "seed")
#: How long the settings must rest before a new estimate starts.
ESTIMATE_DELAY_MS = 700
#: What the estimate label says while a dry run is on its way (only then).
ESTIMATING = "estimating…"


def _fmt_span(seconds: float) -> str:
    """A rough duration: "0.4 s", "12 s", "3 min", "1.5 h"."""
    if not math.isfinite(seconds) or seconds < 0:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 600:
        return f"{seconds / 60:.1f} min"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _fmt_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}" if n < 10 * size else f"{n / size:.0f} {unit}"
    return f"{n:.0f} B"


def _estimate_in_background(project, dataset_id: int, run_config, cancel, steps: int, max_seconds: float):
    """The dry run, on a worker thread that yields the CPU to the GUI thread."""
    from engine.estimate import estimate_run

    from ...workers import lower_priority
    lower_priority()
    return estimate_run(project, dataset_id, run_config=run_config, steps=steps, cancel=cancel,
                        max_seconds=max_seconds)


class TrainEstimate:
    """TrainView's estimate: its label (built with the buttons), its timer, its worker and cache.

    Reads from the view: ``project``, ``busy``, ``dataset_combo``, ``train_form``,
    ``_forms_valid``, ``_building``, ``run_config()``, ``estimate_steps`` and
    ``estimate_max_seconds``."""

    def _init_estimate(self) -> None:
        # Estimates: the worker computing one, its settings' key, results by key.
        self.estimate: dict | None = None        # the estimate shown (for the settings now in the forms)
        self._est_worker: FunctionWorker | None = None
        self._est_pending = False
        self._est_cache: dict[str, dict] = {}
        self._est_text = ""                      # what the estimate label says now
        self._est_timer = QTimer(self)
        self._est_timer.setSingleShot(True)
        self._est_timer.setInterval(ESTIMATE_DELAY_MS)
        self._est_timer.timeout.connect(self._start_estimate)

    def schedule_estimate(self, *_) -> None:
        """(Re)start the quiet period after which the settings in the forms are estimated."""
        if self.project is None or self._building:
            return
        self._est_timer.start()          # restarts: only the settings that rest count

    def _estimate_request(self):
        """(data set id, RunConfig, cache key) for the forms, or None when they cannot run."""
        ds_id = self.dataset_combo.currentData()
        if self.project is None or ds_id is None or not self._forms_valid or self.train_form is None:
            return None
        try:
            cfg = self.run_config()
        except Exception:  # noqa: BLE001 - the forms show what is wrong
            return None
        d = cfg.to_dict()
        for key in ESTIMATE_IGNORES:
            d["train"].pop(key, None)
        return int(ds_id), cfg, json.dumps([str(self.project.path), ds_id, d], sort_keys=True, default=str)

    def _start_estimate(self) -> None:
        if self.project is None or not self.isVisible():
            self.estimate = None         # showEvent asks again
            self._set_estimate_text("", "")
            return
        request = self._estimate_request()
        if request is None:
            self._show_estimate(None)
            return
        ds_id, cfg, key = request
        if key in self._est_cache:
            self._show_estimate(self._est_cache[key])
            return
        if self.busy:
            # A dry run beside a training run would slow it down and time the contention.
            self._est_pending = True
            self._set_estimate_text("estimate: after this run", "")
            return
        if self._est_worker is not None and self._est_worker.is_running():
            # The latest settings win: cancel the stale dry run, start this one when it has stopped.
            self._est_worker.cancel()
            self._est_pending = True
            self._set_estimate_text(ESTIMATING, "")
            return
        self.estimate = None
        self._set_estimate_text(ESTIMATING, "A few dry-run training steps time these settings")
        worker = FunctionWorker(_estimate_in_background, self.project, ds_id, cfg, steps=self.estimate_steps,
                                max_seconds=self.estimate_max_seconds, thread_name="pretext-estimate")
        worker.result.connect(lambda result, key=key: self._on_estimate(key, result))
        worker.errored.connect(lambda message, details, key=key: self._on_estimate_error(key, message))
        worker.finished.connect(lambda w=worker: self._on_estimate_finished(w))
        self._est_worker = worker
        worker.start()

    def _on_estimate(self, key: str, result: dict) -> None:
        self._est_cache[key] = result
        while len(self._est_cache) > 32:
            self._est_cache.pop(next(iter(self._est_cache)))
        request = self._estimate_request()
        if request is not None and request[2] == key:
            self._show_estimate(result)

    def _on_estimate_error(self, key: str, message: str) -> None:
        request = self._estimate_request()
        if request is not None and request[2] == key:
            self._set_estimate_text(f"no estimate: {message}", message)

    def _on_estimate_finished(self, worker: FunctionWorker) -> None:
        """A dry run ended (with a result, an error, or cancelled). "estimating…" must not
        outlive it: a request that waited, or one whose dry run was cancelled without a
        successor (Start cancels it), is answered now, or after the run when one trains."""
        if worker is not self._est_worker:
            return
        self._est_worker = None
        if not (self._est_pending or self._est_text == ESTIMATING):
            return                       # its result or its error is shown
        self._est_pending = False
        if self.busy:
            self._est_pending = True     # _on_worker_finished asks again
            self._set_estimate_text("estimate: after this run", "")
        else:
            self._start_estimate()

    def _cancel_estimate(self) -> None:
        """Drop the waiting request and cancel the dry run in flight (it ends after its step;
        then _on_estimate_finished replaces its "estimating…")."""
        self._est_timer.stop()
        self._est_pending = False
        if self._est_worker is not None:
            self._est_worker.cancel()

    def _show_estimate(self, est: dict | None) -> None:
        self.estimate = est
        if est is None:
            self._set_estimate_text("", "")
            return
        if not est.get("available"):
            self._set_estimate_text("no estimate for text methods", est.get("reason", ""))
            return
        from engine.estimate import time_split
        train = self.train_form.config() if self.train_form is not None else None
        epochs = train.epochs if train is not None else est["epochs"]
        eval_every = train.eval_every if train is not None else 1
        linear_every = bool(train.linear_probe_every_eval) if train is not None else False
        split = time_split(est, epochs, eval_every, linear_every)
        epochs, n_eval = split["epochs"], split["evaluations"]
        # The total as the visible sum of its two parts: training and evaluation.
        if est.get("iterative", True):
            training = f"{epochs} epoch{'s' if epochs != 1 else ''} × {_fmt_span(split['seconds_per_epoch'])}"
        else:
            training = f"fit {_fmt_span(split['training_seconds'])}"
        text = (f"≈ {_fmt_span(split['total_seconds'])} in all = {training} + {n_eval} "
                f"evaluation{'s' if n_eval != 1 else ''} × {_fmt_span(split['seconds_each_evaluation'])} · "
                f"~{_fmt_bytes(est['peak_memory_bytes'])}")
        how = ("measured (torch.cuda.max_memory_allocated)" if est["memory_method"] == "measured" else
               "counted: parameters, gradients, optimiser state, the activations kept for the backward "
               "pass, the loop's image copies and one evaluation's features")
        parts = "\n".join(f"  {k}: {_fmt_bytes(v)}" for k, v in est.get("memory_parts", {}).items())
        if est.get("iterative", True):
            steps = (f"From {est.get('timed_steps', 0)} dry-run training steps on {est['device']} (after a "
                     f"warm-up step), nothing saved: {_fmt_span(est['seconds_per_step'])} per step of "
                     f"{est['batch_size']} images × {est['steps_per_epoch']} steps per epoch.")
        else:
            steps = (f"From a fit on a sample of the training images on {est['device']}, scaled to all "
                     f"{est['n_train']:,}, nothing saved: ≈ {_fmt_span(est['seconds_per_epoch'])}.")
        when = ("every epoch" if eval_every == 1 else f"every {eval_every} epochs" if eval_every else
                "only at the end")
        fixed = ("the untrained network's, " if int(est["fixed_evaluations"]) > 1 else "")
        tip = (f"Training ≈ {_fmt_span(split['training_seconds'])}: {steps}\n"
               f"Evaluation ≈ {_fmt_span(split['evaluation_seconds'])}: {n_eval} evaluation"
               f"{'s' if n_eval != 1 else ''} ({fixed}{when}{', and the final one' if eval_every else ''}"
               f"), ≈ {_fmt_span(split['seconds_each_evaluation'])} each on average: embedding every item "
               f"and the kNN ≈ {_fmt_span(est['seconds_per_evaluation'])} each, the linear probe "
               f"≈ {_fmt_span(est.get('seconds_linear_probe', 0.0))} a fit × {split['linear_probes']}, the "
               f"raw-pixel baselines ≈ {_fmt_span(est.get('seconds_baselines', 0.0))} (a data set's first "
               f"run only).\nMemory {how}:\n{parts}")
        if est.get("warning"):
            text += " · ⚠ loss not finite"
            tip = est["warning"] + "\n\n" + tip
        self._set_estimate_text(text, tip)

    def _set_estimate_text(self, text: str, tip: str) -> None:
        # (an elided label: a long error message does not widen the window)
        self._est_text = text
        self.estimate_label.setText(text)
        self.estimate_label.setToolTip(tip or text)
