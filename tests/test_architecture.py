"""The rules of the layout, checked: the engine never imports Qt or the GUI, and
nothing unpickles."""
import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("PySide6", "PyQt5", "PyQt6", "pyqtgraph", "gui")


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_engine_source_never_imports_qt_or_gui():
    bad = [f"{p.relative_to(ROOT)}: {name}" for p in (ROOT / "engine").rglob("*.py")
           for name in _imports(p) if name.split(".")[0] in FORBIDDEN]
    assert not bad, bad


def test_training_and_the_cli_load_without_qt():
    code = ("import sys, engine.train, engine.cli, engine.workbench, engine.methods, engine.maps;"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'gui')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_nothing_unpickles():
    # safetensors.torch.load is fine (no code runs); torch.load, pickle and np.load with
    # pickles allowed are not, on any file a user may hand us.
    pattern = re.compile(r"(?<![\w.])(torch\.load|pickle\.loads?|cPickle\.loads?)\(|allow_pickle\s*=\s*True")
    bad = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
           for p in list((ROOT / "engine").rglob("*.py")) + list((ROOT / "gui").rglob("*.py"))
           for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert not bad, bad
