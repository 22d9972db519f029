"""The Train view: pick a data set and a method, set the configs, train, watch.

Training runs in a :class:`~gui.workers.TrainWorker`; this widget only reacts to its
events. Runs can be queued: when a run finishes or fails, the next queued one starts.
The view's parts live beside this file (see the package's docstring).
"""
from __future__ import annotations

import functools
import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QMessageBox, QPushButton, QSplitter, QVBoxLayout, QWidget

from engine.explore.collapse import COLLAPSE_KEYS

from ...widgets import ElidedLabel, read_only_note, run_label, show_read_only
from ...workers import TrainWorker
from .estimate import TrainEstimate
from .few_labels import TrainFewLabels
from .plots import TrainPlots
from .queue import TrainQueue
from .settings import TrainSettings


def resumable_statuses() -> tuple[str, ...]:
    """The statuses a run can be resumed from: the store's (stopped, failed, interrupted),
    and "created", a run recorded but stopped before its first step (it starts from scratch).
    "running" and "paused" are left out: another process (the CLI, torchrun) may be training
    that run right now. (Imported here, not at module level: the store imports torch.)"""
    from engine.store import RESUMABLE_STATUSES
    return (*RESUMABLE_STATUSES, "created")


def _device_text(device: str) -> str:
    """"cuda:0" → "cuda:0 (NVIDIA H200)"; "cpu" → "cpu (2 threads)"."""
    try:
        import torch
        if device.startswith("cuda") and torch.cuda.is_available():
            return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
        if device == "cpu":
            return f"cpu ({torch.get_num_threads()} threads)"
    except Exception:  # noqa: BLE001 - the bare name is still worth showing
        pass
    return device


class TrainView(TrainSettings, TrainQueue, TrainEstimate, TrainPlots, TrainFewLabels, QWidget):
    """Configure and run training."""

    #: state ("idle", "starting", "running", "paused", "stopping"), human text
    state_changed = Signal(str, str)
    #: a run was created, changed status or got new metrics
    runs_changed = Signal()
    #: a run finished with embeddings: its id
    run_finished = Signal(int)

    #: Timed dry-run steps per estimate (after one warm-up step), and the most seconds they may take.
    estimate_steps = 3
    estimate_max_seconds = 8.0

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = None
        self.worker: TrainWorker | None = None
        self.run_id: int | None = None
        self.state = "idle"
        self.last_error_box: QMessageBox | None = None
        self._run_method: str | None = None      # the method of the run shown (started or resumed)
        self._init_settings()
        self._init_queue()
        self._init_estimate()
        self._init_plots()
        self._init_few_labels()
        self._build()
        self._set_state("idle", "No run")

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        root = QHBoxLayout(self)
        root.setContentsMargins(6, 6, 6, 6)
        split = QSplitter(Qt.Orientation.Horizontal)
        root.addWidget(split)

        # Left: what to train.
        split.addWidget(self._build_settings())

        # Right: controls and curves.
        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(4, 0, 0, 0)
        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("Start a new run with these settings (Ctrl+Return)")
        self.start_button.setDefault(True)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setToolTip("Pause the run after the current step")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop the run after the current step and save a checkpoint (Esc)")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue a paused run, or the stopped, failed or interrupted run "
                                      "chosen on the right from its last checkpoint")
        self.resume_combo = QComboBox()
        self.resume_combo.setToolTip("A stopped, failed or interrupted run (its program ended while it "
                                     "trained) to resume from its last checkpoint")
        self.resume_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.resume_combo.setMinimumContentsLength(18)
        self.queue_button = QPushButton("Add to queue")
        self.queue_button.setToolTip("Queue a run with these settings: it starts when the runs before it "
                                     "end (Ctrl+Shift+Return)")
        # Its own row under Start and Add to queue: the sum it shows needs the width
        # (elided when narrow; the whole text and the details are in its tooltip).
        self.estimate_label = ElidedLabel("")
        self.start_button.clicked.connect(self.start_run)
        self.queue_button.clicked.connect(self.add_to_queue)
        self.pause_button.clicked.connect(self.pause_run)
        self.stop_button.clicked.connect(self.stop_run)
        self.resume_button.clicked.connect(self.resume)
        self.resume_combo.currentIndexChanged.connect(self._update_buttons)
        for b in (self.start_button, self.queue_button, self.pause_button, self.stop_button,
                  self.resume_button):
            buttons.addWidget(b)
        buttons.addWidget(self.resume_combo, 1)
        rv.addLayout(buttons)
        rv.addWidget(self.estimate_label)
        shortcut = QShortcut(QKeySequence("Ctrl+Shift+Return"), self, self.add_to_queue)
        shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)

        # The queue: shown while it holds runs.
        rv.addWidget(self._build_queue())

        # The progress, the facts and the curves; under them, the run's few-label curve.
        plots = self._build_plots(rv)
        plots.addWidget(self._build_few_labels())
        plots.setSizes([250, 160, 110, 240])
        rv.addWidget(plots, 1)
        split.addWidget(right)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([440, 900])
        self._style_plots()

    def showEvent(self, ev) -> None:  # noqa: N802 - Qt naming
        super().showEvent(ev)
        # Estimates are computed only for a visible view (they cost a few seconds of CPU).
        if self.estimate is None and self._est_worker is None:
            self.schedule_estimate()

    # ------------------------------------------------------------------ project
    def set_project(self, project) -> None:
        if self.busy:
            raise RuntimeError("cannot switch projects while a run is training")
        self.project = project
        self.run_id = None
        self._run_method = None
        self._clear_curves()
        self.few_labels_task.cancel()
        self.refresh_few_labels()
        self.queue.clear()          # queued runs name data sets of the previous project
        self.queue_held = False
        self._refresh_queue()
        self._est_cache.clear()
        self._cancel_estimate()
        self.run_label.setText("No run yet: pick a data set and a method, then press Start.")
        self._building = True
        try:
            self.method_combo.clear()
            from engine.methods import METHODS
            for name, cls in METHODS.items():
                self.method_combo.addItem(f"{cls.card.title}  ({cls.card.family})", name)
            i = self.method_combo.findData("simclr")
            self.method_combo.setCurrentIndex(max(i, 0))
        finally:
            self._building = False
        self.refresh()
        self._rebuild_forms()

    def refresh(self) -> None:
        """Re-read data sets and resumable runs from the project."""
        if self.project is None:
            return
        current = self.dataset_combo.currentData()
        self._building = True
        try:
            self.dataset_combo.clear()
            from engine.workbench import kind_modality
            modality = self.method_modality()
            others = 0
            for d in self.project.datasets():
                # Only data sets the chosen method can train on (images or text).
                if kind_modality(d.kind) != modality:
                    others += 1
                    continue
                size = d.stats.get("size") if isinstance(d.stats, dict) else None
                extra = f", {size[0]}×{size[1]}" if size else ""
                unit = "sentences" if modality == "text" else "items"
                self.dataset_combo.addItem(f"{d.name}  ({d.n_items:,} {unit}{extra})", d.id)
            i = self.dataset_combo.findData(current) if current is not None else -1
            self.dataset_combo.setCurrentIndex(i if i >= 0 else (0 if self.dataset_combo.count() else -1))
        finally:
            self._building = False
        if self.dataset_combo.count() == 0:
            self.dataset_combo.setPlaceholderText(
                "No text data sets: import a corpus (or Shapes captions) in the Datasets view"
                if modality == "text" and others else
                "No image data sets: import one in the Datasets view" if others else
                "No data sets: add one in the Datasets view")
        self.dataset_combo.setToolTip(
            f"The {modality} data set to train on (this method trains on {modality}; add more in the "
            "Datasets view)")
        self._refresh_resumable()
        self._update_buttons()

    def _refresh_resumable(self) -> None:
        """The runs Resume can continue: stopped, failed, interrupted (their process died while
        they trained) or never started, with their status."""
        current = self.resume_combo.currentData()
        self.resume_combo.blockSignals(True)
        self.resume_combo.clear()
        if self.project is not None:
            statuses = resumable_statuses()
            datasets = {d.id: d.name for d in self.project.datasets()}
            for r in reversed(self.project.runs()):
                if r.status in statuses and not (self.busy and r.id == self.run_id):
                    self.resume_combo.addItem(run_label(r, datasets.get(r.dataset_id, '?')), r.id)
        # (a combo with a placeholder text does not select its first item by itself)
        i = self.resume_combo.findData(current) if current is not None else -1
        self.resume_combo.setCurrentIndex(i if i >= 0 else (0 if self.resume_combo.count() else -1))
        self.resume_combo.setPlaceholderText("no runs to resume")
        self.resume_combo.blockSignals(False)

    def select_resumable(self, run_id: int) -> bool:
        self._refresh_resumable()
        i = self.resume_combo.findData(run_id)
        if i >= 0:
            self.resume_combo.setCurrentIndex(i)
        return i >= 0

    # ------------------------------------------------------------------ state
    @property
    def busy(self) -> bool:
        return self.worker is not None and self.worker.is_running()

    def _set_state(self, state: str, text: str) -> None:
        self.state = state
        self._update_buttons()
        self.state_changed.emit(state, text)

    def _update_buttons(self, *_):
        busy = self.busy
        idle = not busy
        # A read-only project can be looked at, not trained in: what would record a run is off.
        read_only = read_only_note(self.project)
        has_project = self.project is not None and not read_only
        has_data = self.dataset_combo.count() > 0
        self.start_button.setEnabled(idle and has_project and has_data and self._forms_valid)
        # The forms stay editable during a run: set up the next runs and queue them.
        self.queue_button.setEnabled(has_project and has_data and self._forms_valid)
        self.pause_button.setEnabled(busy and self.state == "running")
        self.stop_button.setEnabled(busy and self.state in ("running", "paused", "starting"))
        can_resume_paused = busy and self.state == "paused"
        can_resume_stored = idle and has_project and self.resume_combo.currentData() is not None
        self.resume_button.setEnabled(can_resume_paused or can_resume_stored)
        self.resume_combo.setEnabled(idle)
        row = self.queue_list.currentRow()
        self.run_queue_button.setEnabled(idle and has_project and bool(self.queue))
        for b in (self.start_button, self.queue_button, self.resume_button, self.run_queue_button):
            show_read_only(b, read_only)
        self.up_button.setEnabled(row > 0)
        self.remove_button.setEnabled(0 <= row < len(self.queue))
        self.stop_all_button.setEnabled(busy or bool(self.queue))
        self._update_few_labels_button()

    # ------------------------------------------------------------------ actions
    def start_run(self) -> bool:
        """Create a run from the forms and train it in a worker thread."""
        if self.busy or self.project is None or self.project.read_only or not self._forms_valid:
            return False
        ds_id = self.dataset_combo.currentData()
        if ds_id is None:
            return False
        cfg = self._checked_run_config()
        if cfg is None:
            return False
        self._start_config(ds_id, cfg, self.name_edit.text().strip())
        return True

    def _start_config(self, ds_id: int, cfg, name: str) -> None:
        from engine.workbench import create_run
        create = functools.partial(create_run, self.project, ds_id, cfg.method, run_config=cfg, name=name)
        self._clear_curves()
        self.run_id = None
        self._run_method = cfg.method
        self.run_label.setText(f"Preparing {cfg.method}…")
        self.refresh_few_labels()
        self._launch(create)

    def resume_run(self, run_id: int) -> bool:
        """Continue a stored run from its last checkpoint."""
        if self.busy or self.project is None or self.project.read_only:
            return False
        self._clear_curves()
        self.run_id = run_id
        rec = self.project.run(run_id)
        self._run_method = rec.method
        self._load_history(run_id)
        self.refresh_few_labels()
        self.run_label.setText(f"Resuming run #{run_id} {rec.name}…")
        self._launch(lambda: run_id)
        return True

    def resume(self) -> bool:
        """The Resume button: continue a paused run, else resume the chosen stored run."""
        if self.busy:
            if self.state == "paused":
                self.worker.resume()
                self._set_state("running", f"Training run #{self.run_id}")
                return True
            return False
        run_id = self.resume_combo.currentData()
        return self.resume_run(int(run_id)) if run_id is not None else False

    def pause_run(self) -> None:
        if self.busy and self.state == "running":
            self.worker.pause()
            self.pause_button.setEnabled(False)

    def stop_run(self) -> None:
        """Stop the current run at a checkpoint. The queue stays, held: Run queue continues it."""
        if self.busy:
            self.queue_held = True
            self.worker.stop()
            self._set_state("stopping", f"Stopping run #{self.run_id} (saving a checkpoint)…")

    def stop_all(self) -> None:
        """Stop the current run and empty the queue."""
        self.queue.clear()
        self._refresh_queue()
        self.stop_run()
        self._update_buttons()

    def stop_and_wait(self, timeout_ms: int = 120_000) -> bool:
        """Stop the run and block until its checkpoint is saved (used when quitting)."""
        if not self.busy:
            return True
        self.worker.stop()
        return self.worker.wait(timeout_ms)

    def _launch(self, create) -> None:
        """Train the run ``create()`` records (or returns) in a worker thread."""
        # A dry run still in flight shares torch's global RNG with the new run's seeded
        # initialisation: cancel it, and have the worker wait for it before creating the run.
        estimating = self._est_worker
        # No estimate for the settings in the forms yet (none computed, or they changed and the
        # quiet period is still running): it comes after this run, and the label says so.
        unanswered = self.estimate is None or self._est_timer.isActive()
        self._cancel_estimate()
        if unanswered:
            self._est_pending = True
            self._set_estimate_text("estimate: after this run", "")

        def create_after_estimate() -> int:
            if estimating is not None:
                estimating.wait(120_000)
            return int(create())

        worker = TrainWorker(self.project, create=create_after_estimate)
        self.worker = worker
        self._rate = "words/s" if self._run_is_text else "img/s"
        self.collapse_plot.setVisible(self._shows_collapse_monitor())
        self._eval_name = "evaluation" if self._run_is_text else "kNN"
        self._set_knn_title()
        worker.run_created.connect(self._on_run_created)
        worker.event.connect(self._on_event)
        worker.errored.connect(self._on_worker_error)
        worker.finished.connect(self._on_worker_finished)
        self._total_steps = 0
        self.progress.setRange(0, 0)  # busy indicator until Started says how many steps
        self.eta_label.setText("ETA —")
        worker.start()
        self._set_state("starting", "Starting a run…")
        self._update_hint()              # a run is on its way: no "press Start" over its plot
        self._redraw_timer.start()

    # ------------------------------------------------------------------ events
    def _on_run_created(self, run_id: int) -> None:
        self.run_id = run_id
        self.runs_changed.emit()

    def _on_event(self, ev) -> None:
        from engine import train as T
        if isinstance(ev, T.Step):
            # Only recorded here: the next redraw (a few times a second) shows it. Each widget
            # update per step cost more than the step's data (QProgressBar.setValue repaints
            # at once when its text changes).
            self.loss.append(ev.step, ev.loss)
            self.step_events.append(ev)
            if len(self.step_events) > 10_000:
                del self.step_events[:5_000]
            self._last_step = ev.step
            self._dirty = True
            if ev.images_per_s:
                # The median of recent steps: a step right after an evaluation or a
                # checkpoint counts that time too and would read as a slump.
                self._ips.append(ev.images_per_s)
                del self._ips[:-20]
            if "collapse_std_ratio" in ev.logs or "collapse_rank_ratio" in ev.logs:
                self.add_collapse_metrics(ev.step, ev.logs)
        elif isinstance(ev, T.Started):
            self.run_id = ev.run_id
            self._drop_after(ev.start_step)
            self._total_steps, self._start_step = ev.total_steps, ev.start_step
            self._epochs_total = ev.total_steps / max(1, ev.steps_per_epoch)
            self._last_step = None
            self._axes_stale = self._dirty = True
            self._t_started = time.monotonic()
            self.progress.setRange(0, max(1, ev.total_steps))
            self.progress.setValue(ev.start_step)
            self._rate = ev.rate
            self.device_label.setText(f"on {_device_text(ev.device)}")
            self.device_label.setToolTip("Where this run trains")
            self.throughput_label.setToolTip(f"Training throughput ({ev.rate}), the median of the last "
                                             "20 logged steps")
            what = "Resumed" if ev.start_step else "Training"
            items = "words" if self._run_is_text else "images"
            self.run_label.setText(f"{what} run #{ev.run_id}: {ev.n_train:,} training {items}, "
                                   f"{ev.steps_per_epoch} steps/epoch")
            self._set_state("running", f"Training run #{ev.run_id}")
            self.runs_changed.emit()
        elif isinstance(ev, T.Evaluation):
            self._add_evaluation(ev.epoch, ev.metrics)
            if any(k in ev.metrics for k in COLLAPSE_KEYS[2:]):
                self.add_collapse_metrics(ev.step, ev.metrics)
            self._dirty = True
            self.runs_changed.emit()
        elif isinstance(ev, T.CheckpointSaved):
            self.run_label.setText(f"Run #{ev.run_id}: checkpoint saved at step {ev.step}")
        elif isinstance(ev, T.Paused):
            self._set_state("paused", f"Run #{ev.run_id} paused at step {ev.step}")
            self.runs_changed.emit()
        elif isinstance(ev, T.EmbeddingsSaved):
            self.runs_changed.emit()
        elif isinstance(ev, T.Finished):
            self._dirty = True
            self._show_progress()        # the last steps first, so their ETA does not replace "done"
            if ev.status == "finished":
                self.run_label.setText(f"Run #{ev.run_id} finished at step {ev.step}")
                self.progress.setValue(self.progress.maximum())
                self.eta_label.setText("done")
            else:
                self.run_label.setText(f"Run #{ev.run_id} stopped at step {ev.step}; "
                                       "Resume continues it from its checkpoint")
                self.eta_label.setText("stopped")
        elif isinstance(ev, T.Failed):
            self._show_progress()
            self.run_label.setText(f"Run #{ev.run_id} failed: {ev.error}")
            self._show_error("Training failed", ev.error, ev.details)

    def _on_worker_error(self, message: str, details: str) -> None:
        # Failures before training started (e.g. the data set cannot be loaded).
        if self.run_id is not None and self.project is not None:
            try:
                if self.project.run(self.run_id).status not in ("failed", "finished", "stopped"):
                    self.project.update_run(self.run_id, status="failed", error=f"{message}\n\n{details}")
            except Exception:  # noqa: BLE001 - the file may be the problem; the dialog says so
                pass
        self.run_label.setText(f"Run failed: {message}")
        self._show_error("Training failed", message, details)

    def _on_worker_finished(self) -> None:
        worker = self.sender() if isinstance(self.sender(), TrainWorker) else self.worker
        if worker is not self.worker:
            return
        self._redraw_timer.stop()
        self._redraw()
        last = worker.last_event
        from engine import train as T
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
        self.worker = None
        self._update_hint()
        self._refresh_resumable()
        self.refresh_few_labels()
        self._set_state("idle", "No run" if last is None else {
            T.Finished: f"Run #{self.run_id} {getattr(last, 'status', '')}",
            T.Failed: f"Run #{self.run_id} failed"}.get(type(last), "No run"))
        self.runs_changed.emit()
        # The queue moves on after a finished or failed run; after a Stop it waits (it is held).
        # The next run starts before run_finished is announced, so the window sees a run
        # training and starts no background work (the UMAP warm-up) beside it.
        stopped = isinstance(last, T.Finished) and last.status == "stopped"
        if stopped or worker.control.stop_requested:
            self.queue_held = True
        if self.queue and not self.queue_held:
            self.run_queue()
        else:
            self._refresh_queue()
            if self._est_pending:
                self._est_pending = False
                self.schedule_estimate()
        if isinstance(last, T.Finished) and last.status == "finished":
            self.run_finished.emit(last.run_id)

    # ------------------------------------------------------------------ errors
    def _show_error(self, title: str, message: str, details: str) -> None:
        """A non-blocking dialog with the readable message and the traceback under Details."""
        box = QMessageBox(QMessageBox.Icon.Critical, title, message, QMessageBox.StandardButton.Ok, self)
        box.setInformativeText("The run is marked failed; fix the cause and press Resume to continue it "
                               "from its last checkpoint, or start a new run.")
        if details:
            box.setDetailedText(details)
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
        self.last_error_box = box
        box.open()
