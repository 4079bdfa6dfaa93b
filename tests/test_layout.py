"""The layout the README describes: imports go one way, tiles stands alone, modules stay small."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400


def modules() -> dict[str, Path]:
    """Every module of the two packages by dotted name."""
    found = {}
    for package in ("tiles", "vrstyle"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_time_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports when it is imported (not in functions, not TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, (ast.If, ast.Try, ast.With)):
                visit(ast.iter_child_nodes(node))
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
                for alias in node.names:  # a submodule by name, else a name the module defines
                    found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)

    visit(tree.body)
    resolved = set()
    for target in found:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


def test_no_import_cycles():
    known = modules()
    graph = {name: import_time_imports(name, path, set(known)) for name, path in known.items()}
    cycles = [component for component in strongly_connected(graph) if len(component) > 1]
    assert not cycles, f"import cycles: {cycles}"


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in graph:
        if node not in index:
            connect(node)
    return components


def test_the_cycle_check_can_fail():
    assert strongly_connected({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"], ["c"]]


@pytest.mark.parametrize("package,forbidden", [
    ("tiles", ("vrstyle", "zmq", "OpenGL", "torch")),
    ("vrstyle.gl", ("vrstyle.pipeline", "vrstyle.transport", "vrstyle.models", "torch")),
    ("vrstyle.kernels", ("vrstyle.models", "torch")),
    ("vrstyle.models", ("numba",)),  # loaded when a binary layer is first packed: teachers never pay its 50 MB
    ("vrstyle.transport", ("vrstyle.gl", "vrstyle.xr", "vrstyle.pipeline", "torch")),
])
def test_packages_import_only_what_they_are_about(package, forbidden):
    """Imported in a fresh process with every one of its modules: none of the forbidden ones comes along."""
    names = [name for name in modules() if name == package or name.startswith(package + ".")]
    code = (f"import sys\nfor name in {names!r}:\n    __import__(name)\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {[f.split('.')[0] for f in forbidden]!r} "
            f"and any(m == f or m.startswith(f + '.') for f in {list(forbidden)!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    if "ModuleNotFoundError" in done.stderr and "OpenGL" in done.stderr:
        pytest.skip("needs PyOpenGL (vrstyle[gl])")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"{package} pulls in {done.stdout.strip()}"


def test_long_modules_say_why():
    """A module over MAX_LINES states its reason in its docstring (a paragraph starting "Length:")."""
    silent = []
    for name, path in modules().items():
        lines = path.read_text().count("\n")
        if lines > MAX_LINES and "\nLength: " not in (ast.get_docstring(ast.parse(path.read_text())) or ""):
            silent.append(f"{name} ({lines} lines)")
    assert not silent, f"over {MAX_LINES} lines with no reason in the docstring: {', '.join(silent)}"


def test_readme_layout_names_every_package_and_module():
    """The README's Layout section lists each subpackage and top-level module of vrstyle, and no others."""
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):readme.index("## License")]
    present = {p.name + "/" for p in (ROOT / "vrstyle").iterdir() if (p / "__init__.py").exists()}
    present |= {p.name for p in (ROOT / "vrstyle").glob("*.py") if p.name != "__init__.py"}
    named = set(re.findall(r"\b([a-z_]+/|[a-z_]+\.py)(?=[\s,;:)(])", layout.partition("vrstyle/")[2].partition("shaders/")[0]))
    assert named == present, f"missing from the README: {sorted(present - named)}; not in the tree: {sorted(named - present)}"
