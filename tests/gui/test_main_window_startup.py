"""Start-up: the window names the project it is opening, says what is happening, and
keeps the actions that need the project disabled until every view has it."""
from __future__ import annotations

from pathlib import Path


def actions_state(w) -> dict[str, bool]:
    return {"new": w.new_action.isEnabled(), "open": w.open_action.isEnabled(),
            "recent": w.recent_menu.menuAction().isEnabled(), "start": w.start_action.isEnabled(),
            "resume": w.resume_action.isEnabled(), "import": w.import_action.isEnabled(),
            "add data set": w.project_view.add_button.isEnabled(),
            "datasets import": w.datasets_view.import_button.isEnabled(),
            "train start": w.train_view.start_button.isEnabled(), "train view": w.train_view.isEnabled()}


def test_launch_names_the_file_and_disables_actions_until_open(qtbot, project, monkeypatch):
    """``gui.app.run`` as ``main.py --project FILE`` calls it: the first frame already shows
    FILE and the busy banner, with every project action disabled; they work once it is open."""
    import gui.app
    from gui.main_window import MainWindow
    path = project.path
    project.close()
    app = gui.app.make_app()
    seen = {}

    def exec_():               # in place of the event loop: look at the window as it first shows
        w = next(x for x in app.topLevelWidgets() if isinstance(x, MainWindow) and x.opening_path == path)
        seen["title"] = w.windowTitle()
        seen["banner"] = w.opening_banner.isVisible()
        seen["banner text"] = w.opening_banner.title.text()
        seen["project view"] = w.project_view.title.text()
        seen["status"] = w.statusBar().currentMessage()
        seen["busy"] = (w.opening_banner.busy.minimum(), w.opening_banner.busy.maximum())
        seen["before"] = actions_state(w)
        steps = []
        with qtbot.waitSignal(w.project_opened, timeout=120_000):
            qtbot.waitUntil(lambda: steps.append(w.opening_banner.step.text()) or w.project is not None,
                            timeout=120_000)
        seen["steps"] = steps
        seen["after"] = actions_state(w)
        seen["banner after"] = w.opening_banner.isVisible()
        seen["title after"] = w.windowTitle()
        w.close()
        w.deleteLater()
        return 0

    monkeypatch.setattr(app, "exec", exec_)
    assert gui.app.run(str(path)) == 0
    assert seen["title"] == f"Opening {path.name} — Pretext"
    assert seen["banner"] and str(path) in seen["banner text"] and path.name in seen["banner text"]
    assert str(path) in seen["project view"] and "No project open" not in seen["project view"]
    assert seen["status"] == f"Opening {path}…"
    assert seen["busy"] == (0, 0)                     # an indeterminate busy bar
    assert not any(seen["before"].values()), seen["before"]
    assert any(s for s in seen["steps"]), seen["steps"]   # it said what it was doing
    after = seen["after"]
    assert after["new"] and after["open"] and after["start"] and after["resume"] and after["import"]
    assert after["add data set"] and after["datasets import"]
    assert after["train start"] and after["train view"]   # digits are there: Start works now
    assert not seen["banner after"] and seen["title after"] == f"{path.name} — Pretext"


def test_demo_opening_names_the_demo_file(qtbot, tmp_path, monkeypatch):
    """The demo project (no --project) is named by its path, never "Opening None…"."""
    from engine.store import Project
    from engine.workbench import default_demo_path
    from gui.app import make_app
    from gui.main_window import MainWindow, demo_project_path
    monkeypatch.setenv("HOME", str(tmp_path))
    assert demo_project_path() == default_demo_path()
    demo = demo_project_path()
    demo.parent.mkdir(parents=True)
    Project.create(demo).close()
    make_app()
    w = MainWindow()
    qtbot.addWidget(w)
    with qtbot.waitSignal(w.project_opened, timeout=120_000):
        w.open_project_async(None, demo=True)
        assert w.statusBar().currentMessage() == f"Opening {demo}…"
        assert "None" not in w.project_view.title.text() and str(demo) in w.project_view.title.text()
        assert not w.opening_banner.isHidden() and str(demo) in w.opening_banner.title.text()
    assert w.project.path == demo
    assert w.statusBar().currentMessage() == f"Opened {demo}"


def test_project_view_shows_the_file_before_the_engine_has_loaded(window, project, qtbot, tmp_path):
    """First the file (the Project view lists its data sets), then every other view."""
    from engine.store import Project
    from engine.workbench import import_dataset
    other = tmp_path / "other.pretext"
    p = Project.create(other)
    import_dataset(p, "digits", "mine")
    p.close()
    order = []
    window.project_shown.connect(lambda pr: order.append(("shown", window.project_view.project.path,
                                                          window.train_view.project.path)))
    window.project_opened.connect(lambda pr: order.append(("opened", window.project_view.project.path,
                                                           window.train_view.project.path)))
    with qtbot.waitSignal(window.project_opened, timeout=120_000):
        window.open_project_async(other)
    assert order == [("shown", other, project.path), ("opened", other, other)]
    assert window.project_view.datasets_table.item(0, 0).text() == "mine"


def test_a_file_that_cannot_be_opened_says_so_and_frees_the_actions(window, project, qtbot, tmp_path):
    bad = tmp_path / "not-a-project.pretext"
    bad.write_bytes(b"hello, I am not SQLite" * 10)
    window.open_project_async(bad)
    assert not window.new_action.isEnabled()
    qtbot.waitUntil(lambda: getattr(window, "_error_box", None) is not None, timeout=60_000)
    assert bad.name in window._error_box.text()
    window._error_box.close()
    assert window.project is project and window.opening_path is None
    assert window.new_action.isEnabled() and window.start_action.isEnabled()
    assert not window.opening_banner.isVisible()
    assert window.windowTitle() == f"{project.path.name} — Pretext"


def test_views_and_main_window_import_no_torch(tmp_path):
    """Opening the window on a project file reads it without torch on the GUI thread: the
    modules torch needs are loaded on a worker (checked: the Project view is filled first)."""
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys\n"
        "from gui.app import make_app\n"
        "app = make_app()\n"
        "import gui.main_window, gui.views.project_view, gui.views.map_view, gui.views.datasets_view\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'umap', 'sklearn') if m in sys.modules))\n")
    env = {"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
