"""Start-up, command routing, the generic worker and the Project view."""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]


def test_main_routes_arguments(monkeypatch, tmp_path):
    sys.path.insert(0, str(ROOT))
    import main as entry
    import gui.app
    import engine.cli

    opened = []
    monkeypatch.setattr(gui.app, "run", lambda project=None: opened.append(project) or 0)
    assert entry.main([]) == 0
    assert entry.main(["--project", str(tmp_path / "a.pretext")]) == 0
    assert entry.main([f"--project={tmp_path / 'b.pretext'}"]) == 0
    assert opened == [None, str(tmp_path / "a.pretext"), str(tmp_path / "b.pretext")]
    assert entry.main(["--project"]) == 2

    cli = []
    monkeypatch.setattr(engine.cli, "main", lambda argv: cli.append(argv) or 7)
    assert entry.main(["train", "--epochs", "1"]) == 7
    assert cli == [["train", "--epochs", "1"]]


def test_window_appears_without_heavy_imports(tmp_path):
    """Building and showing the window imports neither torch nor umap nor sklearn."""
    code = (
        "import sys, time; t = time.perf_counter()\n"
        "from gui.app import make_app\n"
        "app = make_app()\n"
        "from gui.main_window import MainWindow\n"
        "w = MainWindow(); w.show(); app.processEvents()\n"
        "print(round(time.perf_counter() - t, 2))\n"
        "print(sorted(m for m in ('torch', 'umap', 'sklearn', 'numba') if m in sys.modules))\n")
    env = {"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "PRETEXT_SETTINGS": str(tmp_path / "s.ini")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    seconds, heavy = out.stdout.strip().splitlines()[-2:]
    print(f"\nwindow shown after {seconds} s")
    assert heavy == "[]"


def test_function_worker_result_progress_error_cancel(qtbot):
    from gui.workers import FunctionWorker

    def work(n, progress=None):
        for i in range(n):
            progress(i + 1, n)
        return threading.current_thread().name

    w = FunctionWorker(work, 4, thread_name="test-worker")
    seen = []
    w.progress.connect(lambda f, m: seen.append((f, m)))
    with qtbot.waitSignal(w.finished, timeout=10_000):
        with qtbot.waitSignal(w.result, timeout=10_000) as res:
            w.start()
    assert res.args == ["test-worker"]                  # ran off the GUI thread
    assert [f for f, _ in seen] == [0.25, 0.5, 0.75, 1.0]
    assert seen[-1][1] == "4 of 4"

    def fails():
        raise ValueError("bad input")

    w = FunctionWorker(fails)
    with qtbot.waitSignal(w.errored, timeout=10_000) as err:
        w.start()
    assert err.args[0] == "ValueError: bad input" and "Traceback" in err.args[1]

    gate = threading.Event()

    def slow(progress=None, cancel=None):
        while True:
            gate.wait(0.01)
            progress(0.5, "halfway")

    w = FunctionWorker(slow)
    results = []
    w.result.connect(results.append)
    with qtbot.waitSignal(w.cancelled, timeout=10_000):
        w.start()
        qtbot.wait(50)
        w.cancel()
    assert results == []
    qtbot.waitUntil(lambda: not w.is_running())


def test_train_worker_emits_events_off_the_gui_thread(qtbot, project):
    from engine.train import Finished, Started, Step
    from engine.workbench import create_run
    from gui.workers import TrainWorker

    run_id = create_run(project, "digits", "pca")
    w = TrainWorker(project, run_id)
    events = []
    w.event.connect(events.append)
    with qtbot.waitSignal(w.finished, timeout=60_000):
        w.start()
    kinds = [type(e) for e in events]
    assert kinds[0] is Started and kinds[-1] is Finished and Step in kinds
    assert events[-1].status == "finished"
    assert project.run(run_id).status == "finished"


def test_project_view_imports_with_progress_and_lists_runs(window, project, qtbot):
    pv = window.project_view
    window.show_view("project")
    assert pv.datasets_table.rowCount() == 1
    assert [pv.datasets_table.item(0, c).text() for c in range(4)] == ["digits", "digits", "1,797", "8×8 gray"]
    assert pv.runs_empty.isVisible()
    with qtbot.waitSignal(pv.datasets_changed, timeout=60_000):
        assert pv.import_dataset("shapes", n=300)
        assert pv.import_progress.isVisible()
    assert [d.name for d in project.datasets()] == ["digits", "shapes"]
    assert pv.datasets_table.rowCount() == 2
    assert pv.datasets_table.item(1, 3).text() == "32×32 RGB"
    assert window.train_view.dataset_combo.count() == 2
    qtbot.waitUntil(lambda: not pv.import_progress.isVisible())

    from engine.workbench import create_run
    run_id = create_run(project, "digits", "simclr", {"epochs": "1"}, name="made elsewhere")
    project.log_metrics(run_id, [(5, 1.0, "knn", 0.875), (5, 1.0, "linear", 0.5)])
    project.update_run(run_id, status="stopped")
    pv.refresh()
    assert [pv.runs_table.item(0, c).text() for c in range(7)] == [
        str(run_id), "made elsewhere", "simclr", "digits", "stopped", "87.5%", "50.0%"]
    pv.select_run(run_id)
    assert pv.resume_button.isEnabled() and not pv.map_button.isEnabled()


def test_recent_projects_and_open(window, project, qtbot, tmp_path):
    from engine.store import Project
    from gui.main_window import recent_projects
    assert recent_projects()[0] == str(project.path.resolve())
    other = tmp_path / "other.pretext"
    Project.create(other).close()
    with qtbot.waitSignal(window.project_opened, timeout=60_000):
        window.open_project_async(other)
    assert window.project.path == other
    assert window.windowTitle() == "other.pretext — Pretext"
    assert recent_projects()[:2] == [str(other.resolve()), str(project.path.resolve())]
    assert window.train_view.dataset_combo.count() == 0
    assert not window.train_view.start_button.isEnabled()
    assert window.project_view.datasets_empty.isVisible()
    assert "cpu" in window.device_label.text() or "cuda" in window.device_label.text()
