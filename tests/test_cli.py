"""The command line as a newcomer uses it, end to end."""
import json
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
