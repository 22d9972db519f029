"""The rules of the layout, checked: the engine never imports Qt or the GUI, nothing
unpickles, engine/ has no import cycle, and the views ask a method's declared
capabilities instead of testing its name."""
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


# ---------------------------------------------------------------------------------------------
# No import cycles in engine/, counting imports inside functions (they hide a cycle, not remove it)

#: Modules whose imports among themselves are left out of the cycle check: none (the one
#: training loop removed the last cycle, train → train_text → train_mlm → train).
KNOWN_CYCLE_MODULES: set[str] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def engine_import_graph() -> dict[str, set[str]]:
    """{engine module: the engine modules it imports anywhere in its file}. ``from a import b``
    counts as importing ``a.b`` when that is a module, else ``a``. Imports under
    ``if TYPE_CHECKING:`` never run and do not count."""
    files = {_module_name(p): p for p in (ROOT / "engine").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        unused = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node)
                  for stmt in node.body for n in ast.walk(stmt)}
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in unused:
                continue
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name in files)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                for a in node.names:
                    if f"{module}.{a.name}" in files:
                        targets.add(f"{module}.{a.name}")
                    elif module in files:
                        targets.add(module)
        targets.discard(name)
        graph[name] = targets
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The cycles a depth-first search meets (each back edge closes one), as [a, b, ..., a];
    empty exactly when the graph is acyclic."""
    cycles: list[list[str]] = []
    finished: set[str] = set()
    for start in sorted(graph):
        if start in finished:
            continue
        path, todo = [start], [iter(sorted(graph[start]))]
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:                       # every import of path[-1] explored
                finished.add(path.pop())
                todo.pop()
            elif nxt in path:                     # a back edge: path[nxt:] imports nxt again
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in finished:
                path.append(nxt)
                todo.append(iter(sorted(graph[nxt])))
    return cycles


def test_import_cycles_finds_a_cycle_hidden_in_a_function():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c", "a"]]
    assert import_cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_the_graph_sees_imports_inside_functions():
    graph = engine_import_graph()
    # zero_shot imports .workbench only inside functions.
    assert "engine.workbench" in graph["engine.zero_shot"]
    assert "engine.retrieval" in graph["engine.methods.clip"]       # from ..retrieval import ...
    assert "engine.methods.clip" in graph["engine.methods"]         # the registry imports each method


def test_no_import_cycle_in_engine():
    graph = engine_import_graph()
    for name in KNOWN_CYCLE_MODULES & set(graph):
        graph[name] = graph[name] - KNOWN_CYCLE_MODULES
    cycles = import_cycles(graph)
    assert not cycles, "import cycles in engine/: " + "; ".join(" → ".join(c) for c in cycles)


def test_a_method_never_reaches_persistence_or_zero_shot():
    """Zero-shot and retrieval depend on the methods, not the other way round (issue 12, item 3)."""
    graph = engine_import_graph()
    reached, todo = set(), ["engine.methods.clip"]
    while todo:
        for nxt in graph[todo.pop()] - reached:
            reached.add(nxt)
            todo.append(nxt)
    assert not reached & {"engine.zero_shot", "engine.workbench", "engine.store"}, sorted(reached)


# ---------------------------------------------------------------------------------------------
# The views ask what a method can do (Method.reconstructs, fills_masks, ...), never its name

#: Where the rule holds: the GUI and the view logic it drives.
CAPABILITY_ASKERS = ("gui", "engine/explore")
#: Names that hold a method's name in the front ends.
METHOD_NAME_HOLDERS = {"method", "method_name"}


def _strings(node: ast.AST) -> list[str]:
    """The string literals a comparison operand is: "mae" → ["mae"], ("mae", "clip") → both."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return []


def _names_a_method(node: ast.AST) -> bool:
    """``run.method``, ``method``, ``method_name``, ``cls.name``/``m.name``: a method's name."""
    if isinstance(node, ast.Attribute):
        return node.attr == "method" or (node.attr == "name" and isinstance(node.value, ast.Name)
                                          and node.value.id in ("cls", "m", "m_cls", "method"))
    return isinstance(node, ast.Name) and node.id in METHOD_NAME_HOLDERS


def _method_attributes() -> set[str]:
    """Every attribute a registered method class defines beyond nn.Module's: what a
    ``hasattr`` on a method would probe for."""
    from torch import nn

    from engine.methods import METHODS
    return {a for cls in METHODS.values() for k in cls.__mro__ if k.__module__.startswith("engine.")
            for a in vars(k)} - set(dir(nn.Module))


def name_branches(source: str, method_attributes: set[str]) -> list[tuple[int, str]]:
    """(line, code) of each comparison of a method's name with a string literal, and each
    ``hasattr(x, "attr")`` whose attribute a method class defines, in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_names_a_method(o) for o in operands) and any(_strings(o) for o in operands):
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "hasattr" \
                and len(node.args) == 2 and isinstance(node.args[1], ast.Constant) \
                and node.args[1].value in method_attributes:
            found.append((node.lineno, ast.unparse(node)))
    return found


def test_name_branches_are_found_in_code_only():
    attrs = _method_attributes()
    assert {"fill_mask", "from_state", "encode_text", "reconstruct"} <= attrs
    code = """
# run.method == "mae" in a comment is fine
note = 'run.method == "mae" in a string is fine'
if run.method == "mae": pass
if method in ("mae", "channel-prediction"): pass
if "clip" != method_name: pass
if cls.name == "word2vec": pass
if hasattr(cls, "fill_mask"): pass
if hasattr(widget, "set_project"): pass
if run.method == other.method: pass
if key == "input": pass
"""
    assert [line for line, _ in name_branches(code, attrs)] == [4, 5, 6, 7, 8]


def test_the_gui_and_explore_never_branch_on_a_method_name_or_probe_it():
    attrs = _method_attributes()
    bad = [f"{p.relative_to(ROOT)}:{line}: {code}" for folder in CAPABILITY_ASKERS
           for p in sorted((ROOT / folder).rglob("*.py"))
           for line, code in name_branches(p.read_text(encoding="utf-8"), attrs)]
    assert not bad, "ask the method's declared capabilities instead: " + "; ".join(bad)
