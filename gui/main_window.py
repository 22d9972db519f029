"""The main window: a sidebar of views, menus, shortcuts and a status bar.

Views are added with :meth:`MainWindow.add_view`, so later views (Datasets,
Reconstructions, Words, Search, Compare) plug in the same way as Project,
Train and Map. Every view has ``set_project(project)`` (the run views get it from
gui/run_view.py's RunView); it is called for every view when a project is opened. Ctrl+1, Ctrl+2, … follow the sidebar's
order, and every sidebar item shows its shortcut.

Opening a project happens in two steps on worker threads, so the window never
freezes: first the file is checked and its data sets and runs are read (the
Project view shows them at once), then torch and the engine's methods are
loaded and every other view gets the project. Until then a banner names the
file being opened and what is happening, and the actions that need the
project are disabled.

A project that cannot be written (a read-only file or folder, read-only storage)
opens read-only: a banner says which file, why, and that nothing will be saved,
and every action that would write (training, resuming, queueing, importing) is
disabled with a tooltip saying why.
"""
from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QSettings, QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QCloseEvent, QIcon, QKeySequence, QShortcut
from PySide6.QtWidgets import (QAbstractButton, QFileDialog, QHBoxLayout, QLabel, QListWidget,
                               QListWidgetItem, QMainWindow, QMessageBox, QStackedWidget, QStyle,
                               QStyledItemDelegate, QVBoxLayout, QWidget)

from .views.compare_view import CompareView
from .views.datasets_view import DatasetsView
from .views.map_view import MapView
from .views.project_view import ProjectView
from .views.reconstructions_view import ReconstructionsView
from .views.train_view import TrainView
from .views.search_view import SearchView
from .views.words_view import WordsView
from .banners import OpeningBanner, ReadOnlyBanner
from .help import ShortcutsDialog, VersionsDialog, described_by_a_widget, menu_text, open_url, versions_text
from .runs_watcher import RunsWatcher
from .widgets import read_only_note, show_read_only
from .workers import FunctionWorker

MAX_RECENT = 8
#: The user guide, beside the code.
GUIDE_PATH = Path(__file__).resolve().parents[1] / "docs" / "guide.md"
#: Ctrl+<digit> opens the view at that place in the sidebar (nine at most).
SHORTCUT_ROLE = Qt.ItemDataRole.UserRole + 1


def settings() -> QSettings:
    """The app's settings; ``PRETEXT_SETTINGS`` points them at a file (tests use a temporary one)."""
    path = os.environ.get("PRETEXT_SETTINGS")
    if path:
        return QSettings(path, QSettings.Format.IniFormat)
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "Pretext", "Pretext")


def demo_project_path() -> Path:
    """Where the demo project lives: ``engine.workbench.default_demo_path()``, known here
    without importing the engine (and torch) on the GUI thread; a test keeps the two equal."""
    return Path.home() / ".local" / "share" / "pretext" / "demo.pretext"


def describe_device() -> str:
    """Where training will run by default (imports torch: call it on a worker thread)."""
    import torch
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps (Apple GPU)"
    return f"cpu ({torch.get_num_threads()} threads)"


def open_project_file(path: str | Path | None, *, demo: bool = False, create: bool = False, progress=None):
    """Open (or create) a project file and read its data sets and runs (on a worker thread).

    ``demo``: the demo project at ``path`` or :func:`demo_project_path`, created with the
    built-in digits and shapes on first use. ``progress(-1, message)`` says what is happening.
    A file that cannot be written opens read-only (``project.read_only`` and
    ``project.read_only_reason`` say so and why)."""
    say = progress or (lambda _fraction, _message: None)
    path = Path(path) if path is not None else demo_project_path()
    say(-1, "loading the project store…")
    from engine.store import Project
    if demo and not path.exists():
        say(-1, "creating the demo project (digits and shapes)…")
        from engine.workbench import ensure_demo_project
        path.parent.mkdir(parents=True, exist_ok=True)
        project = ensure_demo_project(path)
    elif create:
        say(-1, "creating the file…")
        project = Project.create(path)
    else:
        say(-1, "checking the file…")
        project = Project.open(path, read_only="auto")
    say(-1, "reading its data sets and runs…")
    try:                      # here, so that a file that cannot be read fails on this thread
        project.datasets()
        project.runs()
    except BaseException:
        project.close()
        raise
    return project


def load_engine(progress=None) -> str:
    """Import what the views compute with (torch, the methods, the workbench) and describe
    the device (on a worker thread: this takes seconds the first time in a process)."""
    say = progress or (lambda _fraction, _message: None)
    say(-1, "loading torch…")
    import torch  # noqa: F401 - imported here so that the GUI thread never waits for it
    say(-1, "loading the methods…")
    import engine.methods  # noqa: F401
    import engine.train  # noqa: F401
    import engine.workbench  # noqa: F401
    say(-1, "finding the device…")
    return describe_device()


class SidebarDelegate(QStyledItemDelegate):
    """Draws a sidebar item with its shortcut (e.g. "Ctrl+3") dimmed on its right."""

    def paint(self, painter, option, index) -> None:
        super().paint(painter, option, index)
        keys = index.data(SHORTCUT_ROLE)
        if not keys:
            return
        painter.save()
        font = option.font
        font.setPointSizeF(max(6.0, font.pointSizeF() * 0.78))
        painter.setFont(font)
        painter.setPen(option.palette.color(option.palette.ColorRole.PlaceholderText))
        painter.drawText(option.rect.adjusted(0, 0, -6, 0),
                         int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter), keys)
        painter.restore()


class MainWindow(QMainWindow):
    #: every view has the project (emitted after the second step of opening)
    project_opened = Signal(object)
    #: the Project view shows the file's data sets and runs (first step of opening)
    project_shown = Signal(object)
    #: a run was added, started, evaluated, ended or deleted (here or in another process)
    runs_changed = Signal()

    def __init__(self, project=None, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = None
        self.device_text = ""
        #: the file being opened (None when no opening is under way)
        self.opening_path: Path | None = None
        self._open_worker: FunctionWorker | None = None
        self._engine_worker: FunctionWorker | None = None
        self._close_when_stopped = False
        #: the Map's auto_umap while a read-only project is open (None: no such project)
        self._map_auto_umap: bool | None = None
        self._views: dict[str, QWidget] = {}
        #: Warm up UMAP's numba compilation when a map is about to be wanted (the app sets
        #: it; tests leave it off so that no compilation competes with their runs).
        self.warm_up_maps = False
        self.setWindowTitle("Pretext")
        self.resize(1280, 760)

        central = QWidget()
        outer = QVBoxLayout(central)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)
        self.opening_banner = OpeningBanner()
        outer.addWidget(self.opening_banner)
        self.read_only_banner = ReadOnlyBanner()
        outer.addWidget(self.read_only_banner)
        lay = QHBoxLayout()
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        self.sidebar = QListWidget()
        self.sidebar.setObjectName("sidebar")
        self.sidebar.setFixedWidth(150)
        self.sidebar.setIconSize(QSize(20, 20))
        self.sidebar.setSpacing(2)
        self.sidebar.setFrameShape(QListWidget.Shape.NoFrame)
        self.sidebar.setItemDelegate(SidebarDelegate(self.sidebar))
        self.stack = QStackedWidget()
        self.sidebar.currentRowChanged.connect(self.stack.setCurrentIndex)
        lay.addWidget(self.sidebar)
        lay.addWidget(self.stack, 1)
        outer.addLayout(lay, 1)
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
        self.project_view.set_train_shortcut(self.view_shortcut("train"))

        self.runs_watcher = RunsWatcher()
        self.runs_watcher.changed.connect(self.runs_changed)
        self.runs_changed.connect(self._on_runs_changed)
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
        self.train_view.runs_changed.connect(self.runs_changed)
        self.train_view.runs_changed.connect(self.runs_watcher.rebaseline)
        self.train_view.run_finished.connect(self._on_run_finished)
        self.sidebar.currentRowChanged.connect(self._on_view_changed)

        self._build_menus()
        self._build_status_bar()
        self.show_view("project")
        if project is not None:
            self.set_project(project)
        else:
            self._update_title()
            self._sync_actions()

    # ------------------------------------------------------------------ views
    def add_view(self, key: str, title: str, widget: QWidget, icon: QIcon | None = None) -> None:
        """Add ``widget`` (a view: it has ``set_project(project)``) to the sidebar and the stack."""
        item = QListWidgetItem(icon or QIcon(), title)
        item.setData(Qt.ItemDataRole.UserRole, key)
        item.setSizeHint(QSize(140, 36))
        self.sidebar.addItem(item)
        self.stack.addWidget(widget)
        self._views[key] = widget
        keys = self.view_shortcut(key)
        if keys:
            item.setData(SHORTCUT_ROLE, keys)
            item.setToolTip(f"{title} ({keys})")
        if self.project is not None:
            widget.set_project(self.project)

    def view_shortcut(self, key: str) -> str:
        """The shortcut of a view: Ctrl+ its place in the sidebar ("" past the ninth)."""
        n = list(self._views).index(key) + 1
        return f"Ctrl+{n}" if n <= 9 else ""

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
        if self.project is not None and self.project.read_only:
            self._explain("Nothing to resume", read_only_note(self.project) + ": a run cannot be resumed.")
            return
        self.show_view("train")
        if self.train_view.busy:
            self.statusBar().showMessage("A run is training: stop it first", 5000)
            return
        self.train_view.select_resumable(run_id)
        self.train_view.resume_run(run_id)

    def resume(self) -> int | None:
        """Run → Resume: continue the paused run; else resume the run selected in the Project
        view or the Train view when it can be resumed, else the most recent one that can; else
        say why nothing can be resumed. Returns the run resumed (None when none was)."""
        tv = self.train_view
        if tv.busy:
            if tv.state == "paused":
                tv.resume()
                return tv.run_id
            self._explain("Nothing to resume", f"Run #{tv.run_id} is training; Resume continues a "
                                               "paused run, or a stored one once this run has stopped.")
            return None
        if self.project is None:
            self._explain("Nothing to resume", "No project is open.")
            return None
        if self.project.read_only:
            self._explain("Nothing to resume", read_only_note(self.project) + ": a run cannot be resumed.")
            return None
        from engine.store import RESUMABLE_STATUSES
        resumable = [r.id for r in self.project.runs() if r.status in RESUMABLE_STATUSES]
        if not resumable:
            self._explain("Nothing to resume",
                          f"No run of {self.project.path.name} can be resumed: only "
                          f"{', '.join(RESUMABLE_STATUSES[:-1])} or {RESUMABLE_STATUSES[-1]} runs continue "
                          "from their last checkpoint. Start a new run in the Train view.")
            return None
        choices = (self.project_view.selected_run_id(), tv.resume_combo.currentData(), resumable[-1])
        run_id = next(int(r) for r in choices if r is not None and int(r) in resumable)
        self._resume_from_project_view(run_id)
        return run_id

    def _explain(self, title: str, text: str) -> None:
        """Say why an action did nothing: in the status bar and in a box that does not block."""
        self.statusBar().showMessage(text, 8000)
        box = QMessageBox(QMessageBox.Icon.Information, title, text, QMessageBox.StandardButton.Ok, self)
        box.open()
        self._info_box = box

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
        self.resume_action = QAction("&Resume", self, triggered=self.resume)
        self.stop_action = QAction("S&top", self, triggered=tv.stop_run)
        self.stop_action.setShortcuts([QKeySequence("Ctrl+."), QKeySequence(Qt.Key.Key_Escape)])
        for a in (self.start_action, self.pause_action, self.resume_action, self.stop_action):
            run_menu.addAction(a)

        view_menu = mb.addMenu("&View")
        self.view_actions: dict[str, QAction] = {}
        for row, key in enumerate(self._views):
            a = QAction(self.sidebar.item(row).text(), self)
            if self.view_shortcut(key):
                a.setShortcut(QKeySequence(self.view_shortcut(key)))
            a.triggered.connect(lambda _=False, k=key: self.show_view(k))
            view_menu.addAction(a)
            self.view_actions[key] = a
        view_menu.addSeparator()
        self.import_action = QAction("&Import data set…", self, shortcut=QKeySequence("Ctrl+I"),
                                     triggered=self._import_shortcut)
        view_menu.addAction(self.import_action)

        help_menu = mb.addMenu("&Help")
        self.guide_action = QAction("User &guide", self, shortcut=QKeySequence(QKeySequence.StandardKey.HelpContents),
                                    triggered=self.show_guide)
        self.shortcuts_action = QAction("&Keyboard shortcuts", self, shortcut=QKeySequence("Ctrl+/"),
                                        triggered=self.show_shortcuts)
        self.versions_action = QAction("&Versions and device", self, triggered=self.show_versions)
        self.about_action = QAction("&About Pretext", self, triggered=self._about)
        self.about_action.setMenuRole(QAction.MenuRole.AboutRole)
        for a in (self.guide_action, self.shortcuts_action, self.versions_action):
            help_menu.addAction(a)
        help_menu.addSeparator()
        help_menu.addAction(self.about_action)

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

    @property
    def ready(self) -> bool:
        """A project is open in every view (not merely on its way)."""
        return self.project is not None and self.opening_path is None

    def _sync_actions(self) -> None:
        # Start and Resume stay enabled once a project is open (they check for themselves, and
        # a disabled action's shortcut would not come back when the form becomes valid).
        tv = self.train_view
        opening = self.opening_path is not None
        for a in (self.new_action, self.open_action, self.recent_menu.menuAction()):
            a.setEnabled(not opening)
        read_only = read_only_note(self.project) if self.ready else ""
        for a in (self.start_action, self.resume_action, self.import_action):
            a.setEnabled(self.ready and not read_only)
            show_read_only(a, read_only)
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
        self.statusBar().showMessage(
            f"Run #{run_id} finished: its map is in the Map view ({self.view_shortcut('map')})", 8000)

    def _on_view_changed(self, row: int) -> None:
        if row >= 0 and list(self._views)[row] == "map":
            self._warm_up_maps()

    def _warm_up_maps(self) -> None:
        if self.warm_up_maps and not self.train_view.busy and self.ready:
            from engine.maps import warm_up_umap_in_background
            warm_up_umap_in_background()

    def _on_runs_changed(self) -> None:
        # Only the visible view re-reads the project now; the others do when shown.
        if not self.ready:
            return
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
        self._set_opening(None)
        if device_text is not None:
            self.device_text = device_text
        self._show_read_only(project)
        for widget in self._views.values():
            widget.set_project(project)
        if old is not None and old is not project:
            old.close()
        self.runs_watcher.watch(project)
        if project is not None:
            add_recent(project.path)
            if any(r.status == "finished" for r in project.runs()):
                QTimer.singleShot(3000, self._warm_up_maps)
        self.device_label.setText(f"Device: {self.device_text or '—'}")
        self._update_title()
        self._sync_actions()
        self.project_opened.emit(project)

    def _show_read_only(self, project) -> None:
        """The read-only banner, and what the views must not store on a read-only project
        (set before the views get the project)."""
        note = read_only_note(project)
        self.read_only_banner.show_project(project)
        # The Map would compute a UMAP map and then fail to store it: on a read-only project it
        # shows the maps the file holds (PCA at once) and starts no UMAP by itself.
        mv = self.map_view
        if note and self._map_auto_umap is None:
            self._map_auto_umap, mv.auto_umap = mv.auto_umap, False
        elif not note and self._map_auto_umap is not None:
            mv.auto_umap, self._map_auto_umap = self._map_auto_umap, None
        show_read_only(mv.kind_combo, note and f"{note}: only the maps it holds are shown (a new UMAP "
                                              "map could not be stored)")
        show_read_only(self.search_view.classify_button,
                       note and f"{note}: zero-shot results are stored with the run, so Classify cannot run")

    def _update_title(self) -> None:
        if self.opening_path is not None:
            self.setWindowTitle(f"Opening {self.opening_path.name} — Pretext")
        elif self.project is None:
            self.setWindowTitle("Pretext")
        else:
            lock = " (read-only)" if self.project.read_only else ""
            self.setWindowTitle(f"{self.project.path.name}{lock} — Pretext")

    def open_project_async(self, path: str | Path | None, *, demo: bool = False, create: bool = False) -> None:
        """Open a project without freezing the window: the file on one worker thread (the
        Project view shows it as soon as it is read), then torch and the engine on another
        (every other view gets the project after that). ``path=None`` with ``demo``: the demo
        project."""
        if self.train_view.busy:
            QMessageBox.information(self, "A run is training",
                                    "Stop the current run before opening another project.")
            return
        if self.opening_path is not None:
            self.statusBar().showMessage(f"Still opening {self.opening_path}", 4000)
            return
        path = Path(path).expanduser() if path is not None else demo_project_path()
        what = "Creating" if create or (demo and not path.exists()) else "Opening"
        self._set_opening(path, what)
        self.statusBar().showMessage(f"{what} {path}…")
        worker = FunctionWorker(open_project_file, path, demo=demo, create=create, thread_name="pretext-open")
        worker.progress.connect(lambda _f, message: self.opening_banner.set_step(message))
        worker.result.connect(self._on_project_file_read)
        worker.errored.connect(self._on_open_error)
        self._open_worker = worker
        worker.start()

    def _set_opening(self, path: Path | None, what: str = "Opening") -> None:
        """Enter (``path``) or leave (None) the state of opening a project: the banner, the
        title, and the actions that need the project disabled meanwhile. The Train view waits
        too: a run started in the previous project would hold up the switch."""
        self.opening_path = path
        if path is None:
            self.opening_banner.setVisible(False)
        else:
            self.opening_banner.show_opening(path, what)
        self.project_view.set_opening(path, what)
        self.train_view.setEnabled(path is None)
        self._update_title()
        self._sync_actions()

    def _on_project_file_read(self, project) -> None:
        # The Project view shows the new file now; the other views keep the previous project
        # (or none) until the engine has loaded, then all switch together.
        self.project_view.set_project(project)
        self.read_only_banner.show_project(project)
        self.project_shown.emit(project)
        worker = FunctionWorker(load_engine, thread_name="pretext-load-engine")
        worker.progress.connect(lambda _f, message: self.opening_banner.set_step(message))
        worker.result.connect(lambda device: self._on_engine_loaded(project, device))
        worker.errored.connect(lambda message, details: self._on_engine_error(project, message, details))
        self._engine_worker = worker
        worker.start()

    def _on_engine_loaded(self, project, device_text: str) -> None:
        self.set_project(project, device_text)
        self.statusBar().showMessage(f"Opened {project.path}", 4000)

    def _on_engine_error(self, project, message: str, details: str) -> None:
        project.close()
        self.project_view.set_project(self.project)
        self.read_only_banner.show_project(self.project)
        self._on_open_error(f"Could not load the engine: {message}", details)

    def _on_open_error(self, message: str, details: str) -> None:
        self._set_opening(None)
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

    # ------------------------------------------------------------------ help
    def show_guide(self) -> bool:
        """Open docs/guide.md with the desktop's viewer; where that fails, say where it is."""
        if GUIDE_PATH.is_file() and open_url(QUrl.fromLocalFile(str(GUIDE_PATH))):
            self.statusBar().showMessage(f"Opened the user guide, {GUIDE_PATH}", 5000)
            return True
        where = (f"The user guide is the Markdown file {GUIDE_PATH}; open it with any text editor or "
                 "Markdown viewer." if GUIDE_PATH.is_file() else
                 f"The user guide ({GUIDE_PATH.name}) is not installed here; it is docs/guide.md in "
                 "Pretext's source.")
        self._explain("User guide", where)
        return False

    def shortcut_rows(self) -> list[tuple[str, str, str]]:
        """(where, what, keys) for every shortcut, read from the menus' actions and from the
        views' buttons and shortcuts, so the list cannot drift from what the keys do."""
        def keys_of(seqs) -> str:
            return ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in seqs if not s.isEmpty())

        rows: list[tuple[str, str, str]] = []
        for menu_action in self.menuBar().actions():
            menu = menu_action.menu()
            for a in (menu.actions() if menu is not None else []):
                if keys_of(a.shortcuts()):
                    rows.append((menu_text(menu_action.text()), menu_text(a.text()), keys_of(a.shortcuts())))
        for row, (key, view) in enumerate(self._views.items()):
            title = self.sidebar.item(row).text()
            for b in view.findChildren(QAbstractButton):
                if not b.shortcut().isEmpty():
                    what = menu_text(b.text()) or b.toolTip().split(".")[0].split("(")[0].strip()
                    rows.append((title, what, keys_of([b.shortcut()])))
            for s in view.findChildren(QShortcut):
                keys = keys_of([s.key()])
                if keys:
                    rows.append((title, s.whatsThis() or described_by_a_widget(view, keys), keys))
        return rows

    def show_shortcuts(self) -> ShortcutsDialog:
        dialog = ShortcutsDialog(self.shortcut_rows(), self)
        dialog.open()
        self._shortcuts_dialog = dialog
        return dialog

    def show_versions(self) -> VersionsDialog:
        dialog = VersionsDialog(versions_text(self.device_text), self)
        dialog.open()
        self._versions_dialog = dialog
        return dialog

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
        self.runs_watcher.stop()
        for w in (self.map_view._umap_worker, self.map_view._load_worker, self._open_worker,
                  self._engine_worker,
                  self.project_view._import_worker, self.datasets_view._import_worker,
                  self.datasets_view._load_worker, getattr(self.map_view, "_timeline_worker", None),
                  self.map_view.pick_task.worker,
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
