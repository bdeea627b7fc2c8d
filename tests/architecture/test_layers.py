"""The layer rule of spec/architecture.md, kept true: the table there is
parsed, every module of the package is placed in it, and no import runs
up a layer.  Also: no import cycles, no module over 500 lines, and every
function-level import says why in a comment."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "dicompack"
MAX_LINES = 500


def _layers() -> dict[str, int]:
    """module prefix -> layer number, from spec/architecture.md's table."""
    table = (ROOT / "spec" / "architecture.md").read_text()
    layers: dict[str, int] = {}
    for row in re.findall(r"^\| (\d+) [^|]*\| ([^|]+) \|", table, re.M):
        for module in re.findall(r"`([\w.]+)`", row[1]):
            layers[module] = int(row[0])
    assert layers, "no layer table found in spec/architecture.md"
    return layers


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _layer_of(module: str, layers: dict[str, int]) -> int | None:
    """The layer of the longest table entry naming ``module`` or a package
    holding it; the root package's own entry covers its __init__ only, so a
    module left out of the table has no layer."""
    holders = [p for p in layers if module == p or (module.startswith(p + ".") and p != "dicompack")]
    best = max(holders, key=len, default=None)
    return layers[best] if best is not None else None


def _imports(path: Path, module: str):
    """(imported module, line, at module level?) for every dicompack import."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    for stmt in tree.body:          # imports under module-level if/try count as module level
        if isinstance(stmt, (ast.If, ast.Try)):
            top_level |= {id(n) for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            base = node.module or ""
            names = [f"{base}.{a.name}" for a in node.names] if base == "dicompack" else [base]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name == "dicompack" or name.startswith("dicompack."):
                yield name, node.lineno, id(node) in top_level
            elif id(node) not in top_level:
                yield None, node.lineno, False


LAYERS = _layers()
MODULES = _modules()


def _resolve(name: str) -> str:
    """The module an import names (``from dicompack.x import y``: y may be a name in x)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def test_every_module_has_a_layer():
    assert [m for m in MODULES if _layer_of(m, LAYERS) is None] == []


def test_a_module_missing_from_the_table_has_no_layer():
    assert _layer_of("dicompack.not_in_the_table", LAYERS) is None
    assert _layer_of("dicompack", LAYERS) == max(LAYERS.values())


def test_no_import_runs_up_a_layer():
    upward = []
    for module, path in MODULES.items():
        mine = _layer_of(module, LAYERS)
        for name, line, _ in _imports(path, module):
            if name is None:
                continue
            target = _resolve(name)
            theirs = _layer_of(target, LAYERS)
            if theirs is not None and mine is not None and theirs > mine:
                upward.append(f"{path.relative_to(ROOT)}:{line}: layer {mine} imports {target} (layer {theirs})")
    assert upward == []


def test_no_import_cycles():
    # Function-level imports count too: deferring an import does not make a cycle one-way.
    graph = {m: {_resolve(n) for n, _, _top in _imports(p, m) if n} - {m} for m, p in MODULES.items()}
    # A package's __init__ importing its own submodules is not a cycle of meaning.
    for m in graph:
        graph[m] = {t for t in graph[m] if not (t.startswith(m + ".") and MODULES[m].name == "__init__.py")}
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_size(module):
    lines = MODULES[module].read_text().count("\n")
    assert lines <= MAX_LINES, f"{module}: {lines} lines (split it by concern)"


def _commented(source: list[str], line: int) -> bool:
    """A comment on the import's line, or above the block of imports it is
    in, that gives a reason (a bare ``# noqa`` is none)."""
    here = source[line - 1]
    if "#" in here:
        return bool(here.split("#", 1)[1].replace("noqa", "").strip(" :"))
    above = line - 2
    while above >= 0 and (source[above].strip().startswith(("import ", "from ")) or not source[above].strip()):
        above -= 1
    return above >= 0 and source[above].strip().startswith("#")


def test_function_level_imports_say_why():
    silent = []
    for module, path in MODULES.items():
        source = path.read_text().splitlines()
        for _, line, top in _imports(path, module):
            if top:
                continue
            if not _commented(source, line):
                silent.append(f"{path.relative_to(ROOT)}:{line}: {source[line - 1].strip()}")
    assert silent == []


# Packages whose __init__ is their public interface: code outside them
# imports the package, never one of its modules.
INTERFACES = ("dicompack.container.zip", "dicompack.container.cms")


def test_containers_are_reached_through_their_interface():
    reaching_in = []
    for module, path in MODULES.items():
        for name, line, _ in _imports(path, module):
            if name is None:
                continue
            target = _resolve(name)
            for package in INTERFACES:
                inside = module == package or module.startswith(package + ".")
                if target.startswith(package + ".") and not inside:
                    reaching_in.append(f"{path.relative_to(ROOT)}:{line}: imports {target}")
    assert reaching_in == []
