"""The house's shape, read from the source (nothing imported): no import circle between the
product's modules (imports inside functions count), no module over 500 lines, no function
over 80, no class over 300; packages import only downwards, and the control plane never
imports torch, transformers or the compute plane."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Where each package's files live: the compute plane installs as xstilts_tui.compute from
# the folder backends/.
PACKAGES = {"xstilts_tui.compute": ROOT / "backends", "xstilts_tui": ROOT / "xstilts_tui"}
LIMITS = {"module": 500, "function": 80, "class": 300}
# The control plane's packages, lowest first: a package imports only from those below it
# (and from the package-level modules errors and __init__).
LAYERS = ["tasks", "data", "scoring", "protocol", "recipe", "plan", "results", "run", "dashboard", "cli"]
HEAVY = ("torch", "transformers", "deepspeed", "peft", "datasets")


def product_modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("").parts
            if rel[-1] == "__init__":
                rel = rel[:-1]
            name = ".".join((package, *rel))
            if package == "xstilts_tui" and name.startswith("xstilts_tui.compute"):
                continue
            found.setdefault(name, path)
    return found


MODULES = product_modules()


def imports_of(name: str, path: Path) -> set[str]:
    """The modules (of any project) that ``name`` imports, at any depth of its code."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def project_edges(name: str, path: Path) -> set[str]:
    out = set()
    for target in imports_of(name, path):
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target and target != name and not name.startswith(target + "."):
            out.add(target)
    return out


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_checker_finds_a_circle_and_a_long_function(tmp_path):
    """The checks can fail: a two-module circle through a function-level import, and an
    81-line function, are found."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("def f():\n    from pkg import b\n")
    b.write_text("from pkg import a\n")
    graph = {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}}
    assert "pkg.b" in imports_of("pkg.a", a) and "pkg.a" in imports_of("pkg.b", b)
    assert circles(graph) == [["pkg.a", "pkg.b"]]
    long = ast.parse("def g():\n" + "    x = 1\n" * 80)
    assert long.body[0].end_lineno - long.body[0].lineno + 1 > LIMITS["function"]


def test_every_package_is_found():
    assert "xstilts_tui.compute.worker" in MODULES and "xstilts_tui.recipe.parse" in MODULES
    assert "xstilts_tui.compute.engines.loop" in MODULES
    assert len(MODULES) > 80


def test_no_import_circle():
    graph = {name: project_edges(name, path) for name, path in MODULES.items()}
    assert circles(graph) == []


@pytest.mark.parametrize("kind", ["module", "function", "class"])
def test_sizes_within_the_limits(kind):
    over = []
    for name, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        if kind == "module" and text.count("\n") > LIMITS["module"]:
            over.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            wanted = (ast.FunctionDef, ast.AsyncFunctionDef) if kind == "function" else ast.ClassDef
            if kind != "module" and isinstance(node, wanted):
                size = node.end_lineno - node.lineno + 1
                if size > LIMITS[kind]:
                    over.append(f"{name}:{node.lineno} {node.name}: {size} lines")
    assert over == []


def _layer(name: str) -> int | None:
    parts = name.split(".")
    if len(parts) < 2 or parts[1] not in LAYERS:
        return None
    return LAYERS.index(parts[1])


def test_packages_import_only_downwards():
    upward = []
    for name, path in MODULES.items():
        if name.startswith("xstilts_tui.compute"):
            continue
        own = _layer(name)
        for target in project_edges(name, path):
            other = _layer(target)
            if own is not None and other is not None and other > own:
                upward.append(f"{name} -> {target}")
    assert upward == []


def test_the_control_plane_never_imports_the_compute_plane_or_torch():
    found = []
    for name, path in MODULES.items():
        if name.startswith("xstilts_tui.compute"):
            continue
        for target in imports_of(name, path):
            if target.startswith("xstilts_tui.compute") or target.split(".")[0] in HEAVY:
                found.append(f"{name} -> {target}")
    assert found == []


def test_the_compute_plane_imports_only_the_layers_workers_share():
    """Workers read tasks, data, scoring and the protocol; never a recipe, a plan, a run,
    results or a view."""
    shared = {"tasks", "data", "scoring", "protocol"}
    found = []
    for name, path in MODULES.items():
        if not name.startswith("xstilts_tui.compute"):
            continue
        for target in project_edges(name, path):
            parts = target.split(".")
            if parts[1] != "compute" and len(parts) > 1 and parts[1] in LAYERS and parts[1] not in shared:
                found.append(f"{name} -> {target}")
    assert found == []
