"""One Project shared by a training thread and the GUI thread."""
import threading

import numpy as np

from engine.store import Project


def test_writer_and_reader_threads_share_a_project(project):
    ds = project.add_dataset("d", "digits", {}, 10, "")
    run = project.create_run(ds, "simclr", {}, 0)
    batches, per_batch = 60, 50
    errors: list[BaseException] = []
    done = threading.Event()

    def train() -> None:  # the worker: small metric batches, the odd checkpoint
        try:
            for b in range(batches):
                project.log_metrics(run, [(b * per_batch + i, b, "loss", float(b)) for i in range(per_batch)])
                if b % 20 == 0:
                    project.save_checkpoint(run, b, b, {"w": np.full(100, b)})
        except BaseException as e:
            errors.append(e)
        finally:
            done.set()

    worker = threading.Thread(target=train)
    worker.start()
    # the GUI: follow the curve incrementally, as a live plot does
    seen, last_id, polls = [], 0, 0
    while not done.is_set() or polls == 0:
        new = project.metrics(run, "loss", since_id=last_id)
        if new:
            assert new[0].id > last_id
            last_id = new[-1].id
            seen.extend(new)
        project.latest_metrics(run)
        project.runs()
        polls += 1
    seen.extend(project.metrics(run, "loss", since_id=last_id))
    worker.join(timeout=30)

    assert not errors, errors
    assert polls > 1
    assert [m.step for m in seen] == list(range(batches * per_batch))  # none lost, none twice
    assert project.latest_metrics(run) == {"loss": float(batches - 1)}
    assert [s for _, s, _ in project.checkpoints(run)] == [0, 20, 40]


def test_concurrent_writers_from_many_threads(project):
    ds = project.add_dataset("d", "digits", {}, 10, "")
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(5):
                run = project.create_run(ds, "simclr", {"k": k}, seed=i)
                project.log_metrics(run, [(0, 0.0, "loss", float(k))])
                project.update_run(run, status="finished")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    runs = project.runs()
    assert len(runs) == 20 and {r.status for r in runs} == {"finished"}
    losses = sorted(project.latest_metrics(r.id)["loss"] for r in runs)
    assert losses == sorted(float(k) for k in range(4) for _ in range(5))


def test_two_project_objects_on_one_file(tmp_path):
    """Two processes (a torchrun job and the GUI) look like two Projects: busy_timeout makes them take turns."""
    path = tmp_path / "shared.pretext"
    with Project.create(path) as a, Project.open(path) as b:
        ds = a.add_dataset("d", "digits", {}, 1, "")
        runs = [a.create_run(ds, "simclr", {}, 0), b.create_run(ds, "byol", {}, 0)]
        errors: list[BaseException] = []

        def log(p: Project, run: int) -> None:
            try:
                for i in range(40):
                    p.log_metrics(run, [(i, 0.0, "loss", 1.0)] * 5)
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=log, args=(p, r)) for p, r in zip((a, b), runs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not errors, errors
        assert [len(a.metrics(r)) for r in runs] == [200, 200]
