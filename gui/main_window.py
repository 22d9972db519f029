"""The main window: a sidebar of views, menus, shortcuts and a status bar.

Views are added with :meth:`MainWindow.add_view`, so later views (Datasets,
Reconstructions, Words, Search, Compare) plug in the same way as Project,
Train and Map. A view may define ``set_project(project)``; it is called for
every view when a project is opened.
"""
from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QIcon, QKeySequence
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QListWidget,
                               QListWidgetItem, QMainWindow, QMessageBox, QStackedWidget, QStyle,
                               QWidget)

from .views.compare_view import CompareView
from .views.datasets_view import DatasetsView
from .views.map_view import MapView
from .views.project_view import ProjectView
from .views.reconstructions_view import ReconstructionsView
from .views.train_view import TrainView
from .views.search_view import SearchView
from .views.words_view import WordsView
from .workers import FunctionWorker

MAX_RECENT = 8
#: Ctrl+<digit> per view. Fixed numbers, so a view added later (Words, Search) never shifts
#: the shortcuts people learned; views not listed get the next free digits.
VIEW_SHORTCUTS = {"project": 1, "train": 2, "map": 3, "datasets": 4, "reconstructions": 5, "compare": 6,
                  "words": 7, "search": 8}


def settings() -> QSettings:
    """The app's settings; ``PRETEXT_SETTINGS`` points them at a file (tests use a temporary one)."""
    path = os.environ.get("PRETEXT_SETTINGS")
    if path:
        return QSettings(path, QSettings.Format.IniFormat)
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "Pretext", "Pretext")


def describe_device() -> str:
    """Where training will run by default (imports torch: call it on a worker thread)."""
    import torch
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps (Apple GPU)"
    return f"cpu ({torch.get_num_threads()} threads)"


def open_project_file(path: str | Path | None, *, demo: bool = False, create: bool = False):
    """Open (or create) a project and describe the device (runs on a worker thread).

    ``demo``: the demo project (digits + shapes) at ``path`` or the default place,
    created on first use."""
    if demo:
        from engine.workbench import default_demo_path, ensure_demo_project
        path = Path(path) if path is not None else default_demo_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        project = ensure_demo_project(path)
    else:
        from engine.store import Project
        project = Project.create(path) if create else Project.open(path)
    return project, describe_device()


class MainWindow(QMainWindow):
    project_opened = Signal(object)

    def __init__(self, project=None, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = None
        self.device_text = ""
        self._open_worker: FunctionWorker | None = None
        self._close_when_stopped = False
        self._views: dict[str, QWidget] = {}
        #: Warm up UMAP's numba compilation when a map is about to be wanted (the app sets
        #: it; tests leave it off so that no compilation competes with their runs).
        self.warm_up_maps = False
        self.setWindowTitle("Pretext")
        self.resize(1280, 760)

        central = QWidget()
        lay = QHBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        self.sidebar = QListWidget()
        self.sidebar.setObjectName("sidebar")
        self.sidebar.setFixedWidth(118)
        self.sidebar.setIconSize(QSize(20, 20))
        self.sidebar.setSpacing(2)
        self.sidebar.setFrameShape(QListWidget.Shape.NoFrame)
        self.stack = QStackedWidget()
        self.sidebar.currentRowChanged.connect(self.stack.setCurrentIndex)
        lay.addWidget(self.sidebar)
        lay.addWidget(self.stack, 1)
        self.setCentralWidget(central)

        style = self.style()
        self.project_view = ProjectView()
        self.train_view = TrainView()
        self.map_view = MapView()
        self.datasets_view = DatasetsView()
        self.reconstructions_view = ReconstructionsView()
        self.compare_view = CompareView()
        self.words_view = WordsView()
        self.search_view = SearchView()
        self.add_view("project", "Project", self.project_view,
                      style.standardIcon(QStyle.StandardPixmap.SP_DirHomeIcon))
        self.add_view("datasets", "Datasets", self.datasets_view,
                      style.standardIcon(QStyle.StandardPixmap.SP_DirIcon))
        self.add_view("train", "Train", self.train_view,
                      style.standardIcon(QStyle.StandardPixmap.SP_MediaPlay))
        self.add_view("map", "Map", self.map_view,
                      style.standardIcon(QStyle.StandardPixmap.SP_FileDialogContentsView))
        self.add_view("reconstructions", "Reconstruct", self.reconstructions_view,
                      style.standardIcon(QStyle.StandardPixmap.SP_FileDialogDetailedView))
        self.add_view("compare", "Compare", self.compare_view,
                      style.standardIcon(QStyle.StandardPixmap.SP_FileDialogListView))
        self.add_view("words", "Words", self.words_view,
                      style.standardIcon(QStyle.StandardPixmap.SP_FileDialogInfoView))
        self.add_view("search", "Search", self.search_view,
                      style.standardIcon(QStyle.StandardPixmap.SP_FileDialogContentsView))

        self.project_view.resume_requested.connect(self._resume_from_project_view)
        self.project_view.map_requested.connect(self.show_map)
        self.project_view.datasets_changed.connect(self.train_view.refresh)
        self.project_view.datasets_changed.connect(self.datasets_view.refresh)
        self.datasets_view.datasets_changed.connect(self.train_view.refresh)
        self.datasets_view.datasets_changed.connect(self.project_view.refresh)
        self.datasets_view.message.connect(lambda text, ms: self.statusBar().showMessage(text, ms))
        self.compare_view.map_requested.connect(self.show_map)
        self.project_view.message.connect(lambda text, ms: self.statusBar().showMessage(text, ms))
        self.train_view.state_changed.connect(self._on_run_state)
        self.train_view.runs_changed.connect(self._on_runs_changed)
        self.train_view.run_finished.connect(self._on_run_finished)
        self.sidebar.currentRowChanged.connect(self._on_view_changed)

        self._build_menus()
        self._build_status_bar()
        self.show_view("project")
        if project is not None:
            self.set_project(project)
        else:
            self._update_title()

    # ------------------------------------------------------------------ views
    def add_view(self, key: str, title: str, widget: QWidget, icon: QIcon | None = None) -> None:
        item = QListWidgetItem(icon or QIcon(), title)
        item.setData(Qt.ItemDataRole.UserRole, key)
        item.setSizeHint(QSize(110, 36))
        self.sidebar.addItem(item)
        self.stack.addWidget(widget)
        self._views[key] = widget
        if self.project is not None and hasattr(widget, "set_project"):
            widget.set_project(self.project)

    def view(self, key: str) -> QWidget:
        return self._views[key]

    def show_view(self, key: str) -> None:
        keys = list(self._views)
        self.sidebar.setCurrentRow(keys.index(key))

    def current_view(self) -> str:
        return list(self._views)[self.stack.currentIndex()]

    def show_map(self, run_id: int) -> None:
        self.show_view("map")
        self.map_view.show_run(run_id)

    def _resume_from_project_view(self, run_id: int) -> None:
        self.show_view("train")
        if self.train_view.busy:
            self.statusBar().showMessage("A run is training: stop it first", 5000)
            return
        self.train_view.select_resumable(run_id)
        self.train_view.resume_run(run_id)

    # ------------------------------------------------------------------ menus
    def _build_menus(self) -> None:
        mb = self.menuBar()
        file_menu = mb.addMenu("&File")
        self.new_action = QAction("&New project…", self, shortcut=QKeySequence.StandardKey.New,
                                  triggered=self.new_project)
        self.open_action = QAction("&Open…", self, shortcut=QKeySequence.StandardKey.Open,
                                   triggered=self.open_project)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self.quit_action = QAction("&Quit", self, shortcut=QKeySequence("Ctrl+Q"), triggered=self.close)
        self.quit_action.setMenuRole(QAction.MenuRole.QuitRole)
        file_menu.insertAction(self.recent_menu.menuAction(), self.new_action)
        file_menu.insertAction(self.recent_menu.menuAction(), self.open_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)

        run_menu = mb.addMenu("&Run")
        tv = self.train_view
        self.start_action = QAction("&Start training", self, triggered=self._start_shortcut)
        self.start_action.setShortcuts([QKeySequence("Ctrl+Return"), QKeySequence("Ctrl+Enter")])
        self.pause_action = QAction("&Pause", self, triggered=tv.pause_run)
        self.resume_action = QAction("&Resume", self, triggered=tv.resume)
        self.stop_action = QAction("S&top", self, triggered=tv.stop_run)
        self.stop_action.setShortcuts([QKeySequence("Ctrl+."), QKeySequence(Qt.Key.Key_Escape)])
        for a in (self.start_action, self.pause_action, self.resume_action, self.stop_action):
            run_menu.addAction(a)

        view_menu = mb.addMenu("&View")
        free = iter(n for n in range(1, 10) if n not in VIEW_SHORTCUTS.values())
        for row, key in enumerate(self._views):
            n = VIEW_SHORTCUTS.get(key) or next(free, None)
            a = QAction(self.sidebar.item(row).text(), self)
            if n is not None:
                a.setShortcut(QKeySequence(f"Ctrl+{n}"))
            a.triggered.connect(lambda _=False, k=key: self.show_view(k))
            view_menu.addAction(a)
        view_menu.addSeparator()
        self.import_action = QAction("&Import data set…", self, shortcut=QKeySequence("Ctrl+I"),
                                     triggered=self._import_shortcut)
        view_menu.addAction(self.import_action)

        help_menu = mb.addMenu("&Help")
        help_menu.addAction("&About Pretext", self._about)
        self._sync_actions()

    def _import_shortcut(self) -> None:
        self.show_view("datasets")
        self.datasets_view.import_button.showMenu()

    def _start_shortcut(self) -> None:
        self.show_view("train")
        self.train_view.start_run()

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.run_state_label = QLabel("No run")
        self.device_label = QLabel("Device: —")
        self.device_label.setToolTip("Where training runs by default (a run can choose another "
                                     "device in its Training settings)")
        sb.addPermanentWidget(self.run_state_label)
        sb.addPermanentWidget(self.device_label)

    def _sync_actions(self) -> None:
        # Start and Resume stay enabled (they check for themselves, and a disabled
        # action's shortcut would not come back when the form becomes valid).
        tv = self.train_view
        self.pause_action.setEnabled(tv.busy and tv.state == "running")
        self.stop_action.setEnabled(tv.busy)

    def _on_run_state(self, state: str, text: str) -> None:
        self.run_state_label.setText(text)
        self._sync_actions()
        if state == "idle" and self._close_when_stopped:
            self._close_when_stopped = False
            QTimer.singleShot(0, self.close)

    def _on_run_finished(self, run_id: int) -> None:
        self._warm_up_maps()
        self.statusBar().showMessage(f"Run #{run_id} finished: its map is in the Map view (Ctrl+3)", 8000)

    def _on_view_changed(self, row: int) -> None:
        if row >= 0 and list(self._views)[row] == "map":
            self._warm_up_maps()

    def _warm_up_maps(self) -> None:
        if self.warm_up_maps and not self.train_view.busy:
            from engine.maps import warm_up_umap_in_background
            warm_up_umap_in_background()

    def _on_runs_changed(self) -> None:
        # Only the visible view re-reads the project now; the others do when shown.
        for view in (self.project_view, self.map_view, self.compare_view, self.reconstructions_view,
                     self.words_view, self.search_view):
            if view.isVisible():
                view.refresh()
        self._sync_actions()

    # ------------------------------------------------------------------ projects
    def set_project(self, project, device_text: str | None = None) -> None:
        """Show ``project`` in every view (closing the previous one)."""
        if self.train_view.busy:
            raise RuntimeError("cannot switch projects while a run is training")
        old = self.project
        self.project = project
        if device_text is not None:
            self.device_text = device_text
        for widget in self._views.values():
            if hasattr(widget, "set_project"):
                widget.set_project(project)
        if old is not None and old is not project:
            old.close()
        if project is not None:
            add_recent(project.path)
            if any(r.status == "finished" for r in project.runs()):
                QTimer.singleShot(3000, self._warm_up_maps)
        self.device_label.setText(f"Device: {self.device_text or '—'}")
        self._update_title()
        self._sync_actions()
        self.project_opened.emit(project)

    def _update_title(self) -> None:
        if self.project is None:
            self.setWindowTitle("Pretext")
        else:
            self.setWindowTitle(f"{self.project.path.name} — Pretext")

    def open_project_async(self, path: str | Path, *, demo: bool = False, create: bool = False) -> None:
        """Open a project on a worker thread (importing the engine takes seconds the first time)."""
        if self.train_view.busy:
            QMessageBox.information(self, "A run is training",
                                    "Stop the current run before opening another project.")
            return
        what = "Creating" if create else "Opening"
        self.statusBar().showMessage(f"{what} {path}…")
        worker = FunctionWorker(open_project_file, path, demo=demo, create=create, thread_name="pretext-open")
        worker.result.connect(self._on_project_opened)
        worker.errored.connect(self._on_open_error)
        self._open_worker = worker
        worker.start()

    def _on_project_opened(self, result) -> None:
        project, device = result
        self.set_project(project, device)
        self.statusBar().showMessage(f"Opened {project.path}", 4000)

    def _on_open_error(self, message: str, details: str) -> None:
        self.statusBar().clearMessage()
        box = QMessageBox(QMessageBox.Icon.Warning, "Cannot open the project", message,
                          QMessageBox.StandardButton.Ok, self)
        box.setDetailedText(details)
        box.open()
        self._error_box = box

    def new_project(self) -> None:
        start = str(self.project.path.parent) if self.project is not None else str(Path.home())
        path, _ = QFileDialog.getSaveFileName(self, "New project", start, "Pretext projects (*.pretext)")
        if not path:
            return
        if not path.endswith(".pretext"):
            path += ".pretext"
        if Path(path).exists():
            QMessageBox.warning(self, "New project", f"{path} already exists; open it instead, "
                                                     "or choose another name.")
            return
        self.open_project_async(path, create=True)

    def open_project(self) -> None:
        start = str(self.project.path.parent) if self.project is not None else str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self, "Open project", start,
                                              "Pretext projects (*.pretext);;All files (*)")
        if path:
            self.open_project_async(path)

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = [p for p in recent_projects() if Path(p).exists()]
        if not recent:
            a = self.recent_menu.addAction("No recent projects")
            a.setEnabled(False)
            return
        for p in recent:
            self.recent_menu.addAction(p, lambda _=False, path=p: self.open_project_async(path))

    def _about(self) -> None:
        from engine import __version__
        QMessageBox.about(self, "About Pretext",
                          f"<b>Pretext</b> {__version__}<br>A workbench for self-supervised learning: "
                          "train a method point-and-click and explore what it learned.")

    # ------------------------------------------------------------------ closing
    def closeEvent(self, ev: QCloseEvent) -> None:  # noqa: N802 - Qt naming
        tv = self.train_view
        if tv.busy:
            if tv.state != "stopping":
                answer = QMessageBox.question(
                    self, "A run is training",
                    "A run is still training. Stop it (a checkpoint is saved, so it can be resumed "
                    "later) and quit?",
                    QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                    QMessageBox.StandardButton.No)
                if answer != QMessageBox.StandardButton.Yes:
                    ev.ignore()
                    return
                tv.stop_run()
            # Close once the worker has saved its checkpoint and finished; the window stays
            # responsive meanwhile.
            self._close_when_stopped = True
            self.statusBar().showMessage("Stopping the run and saving a checkpoint before quitting…")
            ev.ignore()
            return
        for w in (self.map_view._umap_worker, self.map_view._load_worker, self._open_worker,
                  self.project_view._import_worker, self.datasets_view._import_worker,
                  self.datasets_view._load_worker, getattr(self.map_view, "_timeline_worker", None),
                  *self.words_view.workers(), self.search_view._worker):
            if w is not None and w.is_running() and hasattr(w, "cancel"):
                w.cancel()
        super().closeEvent(ev)


def recent_projects() -> list[str]:
    value = settings().value("recentProjects", [])
    if isinstance(value, str):
        value = [value]
    return [str(v) for v in (value or [])]


def add_recent(path: str | Path) -> None:
    path = str(Path(path).resolve())
    items = [p for p in recent_projects() if p != path]
    s = settings()
    s.setValue("recentProjects", [path] + items[:MAX_RECENT - 1])
    s.sync()
