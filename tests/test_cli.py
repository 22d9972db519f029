"""The command line as a newcomer uses it, end to end."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_end_to_end_simclr_on_digits_then_reopen(tmp_path, capsys):
    p = tmp_path / "demo.pretext"
    code, out, _ = run_cli("new", p, capsys=capsys)
    assert code == 0 and p.exists()
    code, out, err = run_cli("train", "--project", p, "--dataset", "digits", "--method", "simclr",
                             "width=8", "--epochs", "2", "batch_size=128", capsys=capsys)
    assert code == 0, err
    code, out, _ = run_cli("runs", "--project", p, "--json", capsys=capsys)
    runs = json.loads(out)
    assert len(runs) == 1 and runs[0]["status"] == "finished"
    knn = runs[0]["metrics"]["knn"]
    assert 0.3 < knn <= 1.0 and "raw_knn" in runs[0]["metrics"]

    code, out, _ = run_cli("map", "--project", p, "--run", 1, "--kind", "pca", capsys=capsys)
    assert code == 0 and "projection" in out
    code, out, _ = run_cli("eval", "--project", p, "--run", 1, "--json", capsys=capsys)
    assert json.loads(out)["knn"] == pytest.approx(knn, abs=1e-9)

    # Close, reopen: the same numbers come back.
    from engine.store import Project
    with Project.open(p) as project:
        assert project.latest_metrics(1)["knn"] == knn
        config = project.run(1).config          # overrides before and after an option both count
        assert config["method_config"]["width"] == 8 and config["train"]["batch_size"] == 128
        emb = [e for e in project.embedding_sets(1) if e.split == "all"][0]
        assert {pr.kind for pr in project.projections(emb.id)} == {"pca"}

    for fmt, name in (("npy", "e.npy"), ("csv", "e.csv"), ("tsv", "e.tsv"), ("weights", "w.safetensors")):
        code, out, err = run_cli("export", "--project", p, "--run", 1, "--format", fmt, "--out",
                                 tmp_path / name, capsys=capsys)
        assert code == 0, err
    vectors = np.load(tmp_path / "e.npy")
    assert vectors.shape[0] == 1797
    meta = (tmp_path / "e_metadata.tsv").read_text().splitlines()
    assert meta[0] == "name\tlabel" and len(meta) == 1798
    from safetensors.torch import load_file
    assert any(k.startswith("backbone.") for k in load_file(tmp_path / "w.safetensors"))


@pytest.mark.parametrize("args,needle", [
    (["runs", "--project", "missing.pretext"], "no such project file"),
    (["train", "--project", "{p}", "--dataset", "nope", "--method", "simclr"], "no dataset 'nope'"),
    (["train", "--project", "{p}", "--dataset", "digits", "--method", "simclr", "lr=abc"], "lr"),
    (["train", "--project", "{p}", "--dataset", "digits", "--method", "nonsense"], "unknown method"),
    (["train", "--project", "{p}", "--dataset", "digits", "--method", "simclr", "bogus=1"], "bogus"),
    (["train", "--project", "{p}", "--dataset", "digits", "--method", "simclr", "notkeyvalue"], "key=value"),
    (["resume", "--project", "{p}", "--run", "99"], "99"),
    (["datasets", "add", "--project", "{p}", "image-folder", "path=/nonexistent/folder"], "nonexistent"),
])
def test_bad_input_gives_one_clear_line(tmp_path, capsys, args, needle):
    p = tmp_path / "x.pretext"
    main(["new", str(p), "--empty"])
    capsys.readouterr()
    code = main([a.replace("{p}", str(p)) for a in args])
    out, err = capsys.readouterr()
    assert code != 0
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err


def test_not_a_project_file_is_left_alone(tmp_path, capsys):
    f = tmp_path / "notes.txt"
    f.write_text("hello")
    code = main(["runs", "--project", str(f)])
    _, err = capsys.readouterr()
    assert code != 0 and str(f) in err and f.read_text() == "hello"


def test_help_on_every_command(capsys):
    for cmd in ("new", "datasets", "train", "resume", "eval", "embed", "map", "runs", "export", "methods"):
        with pytest.raises(SystemExit) as done:
            main([cmd, "--help"])
        assert done.value.code == 0
        assert "usage:" in capsys.readouterr().out
    # The entry point itself answers --help without loading torch.
    out = subprocess.run([sys.executable, "-X", "importtime", "main.py", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "train" in out.stdout
    assert " torch" not in out.stderr


def test_methods_lists_every_registered_method(capsys):
    from engine.methods import METHODS
    assert main(["methods", "-v"]) == 0
    out = capsys.readouterr().out
    for name, m in METHODS.items():
        assert name in out and m.card.paper in out


# --- issue 11: damaged rows, damaged schema, read-only storage, the smaller items --------------

W2V_FAST = ["epochs=3", "dim=16", "words_per_step=2000", "threads=1", "min_count=2", "sample=0"]


@pytest.fixture(scope="module")
def word_project(tmp_path_factory):
    """A project with one finished word2vec run on the shapes captions, made by the CLI;
    tests copy it. Returns (path, what train printed)."""
    import contextlib
    import io
    path = tmp_path_factory.mktemp("words") / "w.pretext"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main(["new", str(path), "--empty"]) == 0
        assert main(["datasets", "add", "-p", str(path), "shapes-captions", "n=600", "--name", "captions"]) == 0
        assert main(["train", "-p", str(path), "-d", "captions", "-m", "word2vec", "--quiet", *W2V_FAST]) == 0
    return path, out.getvalue()


def _copy(src: Path, folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    dst = folder / src.name
    dst.write_bytes(src.read_bytes())
    return dst


def _sidecars(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(("-wal", "-shm", "-journal")))


def _error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_word2vec_run_reports_metrics_and_exports_a_headerless_single_column_tsv(word_project, tmp_path, capsys):
    path, trained = word_project
    # The run's last line gives its numbers (it ended "run 1 finished at step 90: " with nothing).
    assert re.search(r"^run 1 finished at step \d+: neighbour_purity=\d\.\d{4}$", trained, re.M), trained
    code, out, _ = run_cli("runs", "-p", path, capsys=capsys)
    assert code == 0 and re.search(r"finished\s+word2vec .* neighbour_purity=\d\.\d{4}", out), out
    code, out, _ = run_cli("runs", "-p", path, "--json", capsys=capsys)
    metrics = json.loads(out)[0]["metrics"]
    assert set(metrics) == {"neighbour_purity", "loss"} and metrics["loss"] > 0
    code, _, err = run_cli("export", "-p", path, "-r", 1, "-f", "tsv", "-o", tmp_path / "w.tsv", capsys=capsys)
    assert code == 0, err
    vectors = (tmp_path / "w.tsv").read_text().splitlines()
    names = (tmp_path / "w_metadata.tsv").read_text().splitlines()
    # One column: no header row (TensorBoard's projector reads one only for 2+ columns).
    assert len(names) == len(vectors) == 30 and names[0] == "a" and "name" not in names


def test_damaged_run_is_listed_and_refused_by_name(word_project, tmp_path, capsys):
    import sqlite3
    path = _copy(word_project[0], tmp_path / "p")
    conn = sqlite3.connect(path)
    conn.execute("UPDATE runs SET config = '{bad' WHERE id = 1")
    conn.commit()
    conn.close()
    code, out, _ = run_cli("runs", "-p", path, capsys=capsys)
    assert code == 0 and re.match(r"\s*1\s+damaged\s+word2vec", out) and "not valid JSON" in out, out
    code, out, _ = run_cli("runs", "-p", path, "--json", capsys=capsys)
    assert [(r["id"], r["status"]) for r in json.loads(out)] == [(1, "damaged")]
    for command in (["export", "-o", tmp_path / "x.npy"], ["map", "--kind", "pca"], ["resume"]):
        code, _, err = run_cli(command[0], "-p", path, "-r", 1, *command[1:], capsys=capsys)
        line = _error_line(err)
        assert code == 2 and line.startswith(f"error: {path}: run 1 is damaged: its config is not valid JSON"), line
        assert "JSONDecodeError" not in line
    # Everything else keeps working: a new run trains and is listed beside the damaged one.
    code, out, err = run_cli("train", "-p", path, "-d", "captions", "-m", "word2vec", "--quiet", *W2V_FAST,
                             capsys=capsys)
    assert code == 0, err
    code, out, _ = run_cli("runs", "-p", path, "--json", capsys=capsys)
    assert [(r["id"], r["status"]) for r in json.loads(out)] == [(1, "damaged"), (2, "finished")]


def test_dropped_runs_table_is_refused_before_any_write(word_project, tmp_path, capsys):
    import hashlib
    import sqlite3
    path = _copy(word_project[0], tmp_path / "p")
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE runs")
    conn.commit()
    conn.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    for command in (["map", "-r", 1, "--kind", "pca"], ["runs"], ["train", "-d", "captions", "-m", "word2vec"]):
        code, _, err = run_cli(command[0], "-p", path, *command[1:], capsys=capsys)
        assert code == 2 and _error_line(err) == f"error: {path}: is damaged (table 'runs' is missing)"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert _sidecars(path.parent) == []


READ_COMMANDS = [["runs"], ["runs", "--json"], ["datasets"], ["datasets", "list", "--json"],
                 ["words", "-r", 1, "red", "-k", "2"], ["export", "-r", 1, "-f", "tsv", "-o", "{out}/e.tsv"]]


def _read_commands_leave_the_folder_alone(path: Path, out: Path, capsys) -> None:
    import hashlib
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    listing = sorted(p.name for p in path.parent.iterdir())
    for command in READ_COMMANDS:
        args = [str(a).replace("{out}", str(out)) for a in command]
        if args[0] == "datasets" and len(args) > 1:
            args = args[:2] + ["-p", str(path)] + args[2:]   # the subcommand takes -p after "list"
        else:
            args = args[:1] + ["-p", str(path)] + args[1:]
        code, _, err = run_cli(*args, capsys=capsys)
        assert code == 0, (args, err)
        assert sorted(p.name for p in path.parent.iterdir()) == listing, args   # no -wal/-shm left
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_read_commands_leave_nothing_beside_the_project(word_project, tmp_path, capsys):
    path = _copy(word_project[0], tmp_path / "p")
    out = tmp_path / "out"
    out.mkdir()
    _read_commands_leave_the_folder_alone(path, out, capsys)


def test_project_in_a_read_only_folder_can_be_listed_and_read(word_project, tmp_path, capsys):
    """Root ignores chmod, so the folder is made immutable (chattr +i) instead."""
    path = _copy(word_project[0], tmp_path / "p")
    out = tmp_path / "out"
    out.mkdir()
    made = subprocess.run(["chattr", "+i", str(path.parent)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"chattr +i not permitted here: {made.stderr.decode().strip()}")
    try:
        with pytest.raises(OSError):
            (path.parent / "probe").write_bytes(b"")
        _read_commands_leave_the_folder_alone(path, out, capsys)
        code, _, err = run_cli("map", "-p", path, "-r", 1, "--kind", "pca", capsys=capsys)
        assert code == 2 and "cannot be opened for writing (its folder is read-only)" in _error_line(err)
    finally:
        subprocess.run(["chattr", "-i", str(path.parent)], check=True)


@pytest.mark.parametrize("args,needle", [
    (["map", "-p", "{p}", "--run", 999, "--kind", "pca"], "{p}: has no run 999"),
    (["export", "-p", "{p}", "--run", 999, "--out", "{tmp}/x.npy"], "{p}: has no run 999"),
    (["export", "-p", "{p}", "--run", 1, "--out", "{tmp}/missing_dir/x.npy"],
     "cannot write {tmp}/missing_dir/x.npy: there is no folder {tmp}/missing_dir (create it first)"),
])
def test_smaller_cli_errors(word_project, tmp_path, capsys, args, needle):
    path = word_project[0]
    fill = lambda a: str(a).replace("{p}", str(path)).replace("{tmp}", str(tmp_path))  # noqa: E731
    code, _, err = run_cli(*map(fill, args), capsys=capsys)
    assert code == 2 and _error_line(err) == f"error: {fill(needle)}"
    assert not (tmp_path / "missing_dir").exists() and not (tmp_path / "x.npy").exists()


@pytest.mark.parametrize("command", ["train", "resume"])
def test_nproc_below_one_is_refused(tmp_path, capsys, command):
    p = tmp_path / "x.pretext"
    main(["new", str(p), "--empty"])
    capsys.readouterr()
    extra = ["-d", "digits", "-m", "simclr"] if command == "train" else ["-r", "1"]
    with pytest.raises(SystemExit) as done:
        main([command, "-p", str(p), *extra, "--nproc", "0"])
    assert done.value.code == 2
    assert "argument --nproc: must be at least 1, got 0" in capsys.readouterr().err


def test_errors_are_the_message_alone(tmp_path, capsys, monkeypatch):
    from engine import cli
    p = tmp_path / "x.pretext"
    main(["new", str(p), "--empty"])
    capsys.readouterr()
    for exc in (json.JSONDecodeError("Expecting value", "{", 1), ValueError("n_neighbors must be at least 2")):
        def fail(args, exc=exc):
            raise exc
        monkeypatch.setattr(cli, "cmd_runs", fail)
        code, _, err = run_cli("runs", "-p", p, capsys=capsys)
        assert code == 2 and _error_line(err) == f"error: {exc}"
        assert type(exc).__name__ not in err


def test_image_import_names_the_ignored_files(tmp_path, capsys):
    from PIL import Image
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("red.png", ".hidden.jpg"):
        Image.new("RGB", (8, 8), (200, 0, 0)).save(folder / name)
    (folder / "notes.txt").write_text("a note")
    p = tmp_path / "x.pretext"
    main(["new", str(p), "--empty"])
    capsys.readouterr()
    code, out, err = run_cli("datasets", "add", "-p", p, "image-folder", f"path={folder}", "size=8", capsys=capsys)
    assert code == 0, err
    assert "1 images 8x8x3, 2 files ignored" in out
    assert "  ignored .hidden.jpg: hidden\n" in out and "  ignored notes.txt: not an image\n" in out


def test_light_commands_do_not_import_torch(tmp_path):
    """new, runs and datasets compute nothing with torch: they must not load it (importing
    torch takes seconds), nor scikit-learn for the digits `new` adds. A check of imports,
    not of time (bench/cli_startup.py times them)."""
    p = tmp_path / "x.pretext"
    probe = ("import json, sys, main\n"
             "code = main.main(sys.argv[1:])\n"
             "print(json.dumps({'code': code, 'heavy': sorted(m for m in ('torch', 'safetensors.torch', "
             "'engine.train', 'engine.methods', 'sklearn') if m in sys.modules)}))\n")
    for command in (["new", str(p)], ["runs", "-p", str(p)], ["datasets", "-p", str(p)],
                    ["datasets", "list", "-p", str(p), "--json"]):
        done = subprocess.run([sys.executable, "-c", probe, *command], cwd=ROOT, capture_output=True,
                              text=True, timeout=300)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result == {"code": 0, "heavy": []}, (command, done.stderr)


@pytest.mark.parametrize("args,needle", [
    (["--method", "simclr", "--device", "cuda"], "device: device=cuda was asked for, but no CUDA GPU"),
    (["--method", "simclr", "--device", "mps"], "device: device=mps was asked for, but Apple's MPS"),
    (["--method", "simclr", "lr=nan"], "lr: must be a finite number, not nan"),
    (["--method", "simclr", "lr=inf"], "lr: must be a finite number, not inf"),
    (["--method", "simclr", "temperature=nan"], "temperature: must be a finite number, not nan"),
    (["--method", "simclr", "views.flip_p=nan"], "views.flip_p: must be a finite number, not nan"),
    (["--method", "word2vec"], "word2vec trains on text, and dataset 'digits' holds images"),
    (["--method", "mlm"], "mlm trains on text, and dataset 'digits' holds images"),
    (["--method", "clip"], "clip learns from image–caption pairs, and dataset 'digits' has no captions"),
    (["--dataset", "shapes-captions", "--method", "simclr"], "simclr trains on images, and dataset "
                                                             "'shapes-captions' holds text"),
    (["--dataset", "shapes-captions", "--method", "word2vec", "--device", "cuda"],
     "word2vec trains on the CPU only (device=cuda was asked for)"),
])
def test_a_run_that_cannot_start_leaves_no_row(tmp_path, capsys, args, needle):
    """Issue #11: checked before the run row exists, in one line; the file keeps no failed run."""
    from engine.store import Project
    p = tmp_path / "x.pretext"
    main(["new", str(p), "--empty"])
    capsys.readouterr()
    dataset = [] if "--dataset" in args else ["--dataset", "digits"]
    code = main(["train", "--project", str(p), *dataset, *args, "--epochs", "1"])
    _, err = capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: bad setting: ") and needle in lines[0], err
    with Project.open(p, read_only=True) as project:
        assert project.runs() == []
        assert len(project.datasets()) == 1       # the dataset was added; no run was


def test_resume_and_delete_of_a_run(tmp_path, capsys):
    from engine.store import Project
    p = tmp_path / "x.pretext"
    main(["new", str(p), "--empty"])
    assert main(["train", "-p", str(p), "-d", "digits", "-m", "pca"]) == 0
    capsys.readouterr()
    assert main(["resume", "-p", str(p), "--run", "1"]) == 2
    assert capsys.readouterr().err.strip() == "error: run 1 already finished"
    assert main(["delete", "-p", str(p), "--run", "1"]) == 0
    assert capsys.readouterr().out.strip() == "deleted run 1 (pca on digits, finished)"
    with Project.open(p, read_only=True) as project:
        assert project.runs() == []
    assert main(["delete", "-p", str(p), "--run", "1"]) == 2
    assert "has no run 1" in capsys.readouterr().err


@pytest.mark.parametrize("option,value,needle", [
    ("--neighbors", "1", "argument --neighbors: must be at least 2, got 1"),
    ("--min-dist", "-0.5", "argument --min-dist: must be at least 0.0, got -0.5"),
    ("--min-dist", "nan", "argument --min-dist: must be at least 0.0, got nan"),
])
def test_map_settings_are_refused_before_any_work(tmp_path, capsys, option, value, needle):
    with pytest.raises(SystemExit) as done:
        main(["map", "-p", str(tmp_path / "none.pretext"), "-r", "1", option, value])
    assert done.value.code == 2 and needle in capsys.readouterr().err


def test_train_notes_when_the_images_do_not_suit_the_method(tmp_path, capsys):
    """MAE on the 8×8 digits says before training why it will learn little; SimCLR does not."""
    p = tmp_path / "p.pretext"
    assert run_cli("new", p, capsys=capsys)[0] == 0
    code, _, err = run_cli("train", "--project", p, "--dataset", "digits", "--method", "mae", "--epochs", "1",
                           "max_train_items=128", "batch_size=64", "eval_every=0", "timeline_items=0",
                           "threads=1", capsys=capsys)
    assert code == 0, err
    assert "note: MAE on 8×8 images" in err
    code, _, err = run_cli("train", "--project", p, "--dataset", "digits", "--method", "simclr", "--epochs", "1",
                           "max_train_items=128", "batch_size=64", "eval_every=0", "timeline_items=0",
                           "width=4", "threads=1", capsys=capsys)
    assert code == 0, err
    assert "note:" not in err
