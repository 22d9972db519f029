"""A run's life across real processes (issue #11): kill -9, Ctrl+C, SIGTERM, two
trainers on one run. Each test starts ``main.py train`` as a child process on the
built-in digits with one thread, waits until it has taken a few steps, and
checks what the project file says afterwards."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import workbench
from engine.store import Project, RunBusyError
from engine.train import Finished, RunControl, Step

ROOT = Path(__file__).resolve().parents[1]
# Long enough never to finish during a test (it is always stopped or killed),
# with no per-epoch evaluation so that a stop lands between two steps.
TRAIN = ["--dataset", "digits", "--method", "simclr", "--epochs", "1000", "threads=1", "eval_every=0",
         "timeline_items=0", "width=8", "checkpoint_every=1000"]


@pytest.fixture
def project_file(tmp_path) -> Path:
    path = tmp_path / "p.pretext"
    with Project.create(path) as p:
        workbench.import_dataset(p, "digits", "digits")
    return path


def main_py(*args) -> subprocess.Popen:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen([sys.executable, "main.py", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def cli(*args, timeout=120) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "main.py", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def read(path: Path):
    """(status, owner, loss steps, checkpoint steps) of run 1, as another process sees them."""
    with Project.open(path, read_only=True) as p:
        runs = p.runs()
        if not runs:
            return None, None, [], []
        r = runs[0]
        return (r.status, r.owner, [m.step for m in p.metrics(r.id, "loss")],
                [step for _, step, _ in p.checkpoints(r.id)])


def wait_for_steps(path: Path, proc: subprocess.Popen, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if len(read(path)[2]) >= n:
            return
        time.sleep(0.2)
    raise AssertionError(f"no {n} steps within {timeout} s")


def wait_for_status(path: Path, proc: subprocess.Popen, status: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if read(path)[0] == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"not {status} within {timeout} s")


@pytest.fixture
def children():
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:          # never leave a trainer behind, whatever the test did
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_kill_9_leaves_an_interrupted_run_that_can_be_resumed(project_file, children):
    trainer = main_py("train", "-p", project_file, *TRAIN)
    children.append(trainer)
    wait_for_steps(project_file, trainer, 3)
    status, owner, _, _ = read(project_file)
    assert (status, owner) == ("running", f"pid {trainer.pid} on host {socket.gethostname()}")

    trainer.send_signal(signal.SIGKILL)
    assert trainer.wait(30) == -signal.SIGKILL
    status, owner, losses, _ = read(project_file)
    assert (status, owner) == ("interrupted", None)
    listed = json.loads(cli("runs", "-p", project_file, "--json").stdout)
    assert [(r["id"], r["status"]) for r in listed] == [(1, "interrupted")]

    # Resumable: here in this process, stopped after one more step.
    with Project.open(project_file) as p:
        control = RunControl()
        events = []
        for ev in workbench.run_training(p, 1, control):
            events.append(ev)
            if isinstance(ev, Step):
                control.stop()
        assert isinstance(events[-1], Finished) and events[-1].status == "stopped"
        assert p.run(1).status == "stopped" and p.run(1).owner is None
        # Whatever the killed process had logged past its last checkpoint is logged once, not twice.
        logged = [m.step for m in p.metrics(1, "loss")]
        assert logged == list(range(1, events[-1].step + 1))
        names_at_0 = [m.name for m in p.metrics(1) if m.step == 0]
        assert "raw_knn" in names_at_0 and len(names_at_0) == len(set(names_at_0))


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_at_the_next_step_with_a_checkpoint(project_file, children, sig, code):
    trainer = main_py("train", "-p", project_file, *TRAIN)
    children.append(trainer)
    wait_for_steps(project_file, trainer, 3)
    trainer.send_signal(sig)
    _, err = trainer.communicate(timeout=60)
    assert trainer.returncode == code, err
    status, owner, losses, checkpoints = read(project_file)
    assert (status, owner) == ("stopped", None)
    # The checkpoint is the last step taken: a resume continues exactly there.
    assert checkpoints[-1] == losses[-1] >= 3
    assert losses == list(range(1, losses[-1] + 1))
    assert "stopping at the next step" in err and "resume with: main.py resume" in err
    assert "Traceback" not in err


def test_a_second_ctrl_c_aborts_and_leaves_the_run_interrupted(project_file, children):
    # The run is claimed ("running") before it loads its data and computes its raw-pixel and
    # untrained baselines, which on the 32×32 colour shapes (a linear probe on 3,072 pixels)
    # take seconds even on a quiet machine and end with the first step: two Ctrl+C 0.2 s
    # apart both land before the loop could stop at a step. (On the 8×8 digits the baselines
    # took under 0.2 s on a quiet machine, and the second Ctrl+C met a run already stopped.)
    with Project.open(project_file) as p:
        workbench.import_dataset(p, "shapes", "shapes")
    on_shapes = ["shapes" if a == "digits" else a for a in TRAIN]
    trainer = main_py("train", "-p", project_file, *on_shapes)
    children.append(trainer)
    wait_for_status(project_file, trainer, "running")
    trainer.send_signal(signal.SIGINT)
    time.sleep(0.2)
    trainer.send_signal(signal.SIGINT)
    _, err = trainer.communicate(timeout=60)
    assert trainer.returncode == 130, err
    status, owner, losses, checkpoints = read(project_file)
    assert (status, owner, losses, checkpoints) == ("interrupted", None, [], [])
    assert "aborted: run 1 is left interrupted" in err and "Traceback" not in err


def test_a_second_trainer_is_refused_until_the_first_one_ends(project_file, children):
    first = main_py("train", "-p", project_file, *TRAIN)
    children.append(first)
    wait_for_steps(project_file, first, 3)
    holder = f"pid {first.pid} on host {socket.gethostname()}"

    # From the command line: one clear line naming the holder; nothing written.
    second = cli("resume", "-p", project_file, "--run", 1)
    assert second.returncode == 2
    assert [line for line in second.stderr.splitlines() if line.startswith("error:")] == [
        f"error: {project_file}: run 1 is being trained by {holder}; stop it there first (Ctrl+C, or Stop in the app)"]
    deleted = cli("delete", "-p", project_file, "--run", 1)
    assert deleted.returncode == 2 and holder in deleted.stderr

    # The claim itself (what a racing second process meets after the quick check):
    with Project.open(project_file) as p:
        with pytest.raises(RunBusyError, match=f"run 1 is being trained by {holder}"):
            next(iter(workbench.run_training(p, 1)))
        assert p.run(1).status == "running" and p.run(1).owner == holder
    assert first.poll() is None

    first.send_signal(signal.SIGINT)
    first.communicate(timeout=60)
    assert first.returncode == 130
    status, owner, losses, _ = read(project_file)
    assert (status, owner) == ("stopped", None)

    # Now the second one may resume: it continues from the first one's checkpoint.
    with Project.open(project_file) as p:
        control = RunControl()
        steps = []
        for ev in workbench.run_training(p, 1, control):
            if isinstance(ev, Step):
                steps.append(ev.step)
                control.stop()
        assert steps == [losses[-1] + 1] and p.run(1).status == "stopped"
        # One row per step: nothing was logged twice.
        logged = [m.step for m in p.metrics(1, "loss")]
        assert logged == list(range(1, losses[-1] + 2))


def test_two_processes_claiming_one_run_at_once_one_wins(project_file, tmp_path):
    """SQLite's write lock makes the check and the claim one step: of two processes that
    claim together, exactly one wins and the other is told who holds the run."""
    with Project.open(project_file) as p:
        run_id = workbench.create_run(p, "digits", "simclr", {"epochs": "1"})
    go, end = tmp_path / "go", tmp_path / "end"
    code = (f"import pathlib, time; from engine.store import Project, RunBusyError\n"
            f"p = Project.open({str(project_file)!r}); print('ready', flush=True)\n"
            f"while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.001)\n"
            f"try:\n    p.claim_run({run_id}); print('won', flush=True)\n"
            f"except RunBusyError as e:\n    print('refused:', e.reason, flush=True)\n"
            f"while not pathlib.Path({str(end)!r}).exists(): time.sleep(0.01)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        assert [proc.stdout.readline().strip() for proc in procs] == ["ready", "ready"]
        go.touch()                                  # both claim now, while both are alive
        outs = [proc.stdout.readline().strip() for proc in procs]
    finally:
        end.touch()
        for proc in procs:
            proc.communicate(timeout=60)
    assert sorted(o.split()[0] for o in outs) == ["refused:", "won"], outs
    winner = procs[[o == "won" for o in outs].index(True)]
    assert f"being trained by pid {winner.pid} on host" in next(o for o in outs if o.startswith("refused"))
