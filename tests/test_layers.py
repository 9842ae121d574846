"""The import picture of src/deit (docs/architecture.md, "Layers"): no circle, nothing imports upward.

Every `import` counts, function-level ones included: a lazy import still ties two modules together. Imports by
string (`importlib.import_module`) are not seen; only the package root's lazy re-exports use one, and it sits at the
top, where every edge points down. cli's subcommand table imports the command modules by name, so it is seen.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "src" / "deit"

# Lowest first; a module may import its own layer and the ones below it, never one above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "runtime primitives",
        (
            "deit.cpu_info",
            "deit.errors",
            "deit.flag_bounds",
            "deit.io",
            "deit.integrity",
            "deit.perf",
            "deit.precision",
            "deit.version",
            "deit.yaml_load",
        ),
    ),
    ("models", ("deit.models",)),
    ("distill, data", ("deit.distill", "deit.data")),
    ("engine", ("deit.engine",)),
    ("inference, export", ("deit.inference", "deit.export")),
    ("demo", ("deit.demo",)),
    ("commands", ("deit.commands",)),
    ("front doors", ("deit.cli", "deit.__main__", "deit")),  # `deit` itself: the public facade, lazy re-exports
]

# Known upward edges, each with the reason it is tolerated. Keep this empty when you can.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE_ROOT.rglob("*.py"))}


def resolve(name: str) -> str | None:
    """The deit module that `name` (a module or a module attribute) lives in."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    """Every deit module that `module` imports, at any depth of its code."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(target for name in names if (target := resolve(name)) and target != module)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def layer_of(module: str) -> int:
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + ".") and prefix != "deit":
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    if best is None:
        raise AssertionError(f"{module}: in no layer; add it to LAYERS in tests/test_layers.py")
    return best[0]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle in `graph` (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_scan_sees_function_level_imports() -> None:
    # models/__init__ re-exports the registry at module level; engine.builders imports the factory in a function.
    assert "deit.models.registry" in GRAPH["deit.models"]
    assert "deit.models.factory" in GRAPH["deit.engine.builders"]


def test_the_subcommand_table_is_real_imports() -> None:
    # cli imports each command module itself (no strings), so the scan and "go to definition" both follow it.
    assert {"deit.commands.train", "deit.commands.eval", "deit.commands.demo"} <= GRAPH["deit.cli"]


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


def test_no_import_circle() -> None:
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_cycle_finder_finds_a_planted_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_nothing_imports_upward() -> None:
    upward = sorted(
        f"{source} ({LAYERS[layer_of(source)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for source, targets in GRAPH.items()
        for target in targets
        if layer_of(target) > layer_of(source) and (source, target) not in ALLOWED_UPWARD
    )
    assert not upward, "upward import(s):\n" + "\n".join(upward)


@pytest.mark.parametrize(
    "forbidden", ["deit", "deit.engine", "deit.inference", "deit.export", "deit.demo", "deit.commands", "deit.cli"]
)
def test_models_never_imports_the_root_or_anything_above(forbidden: str) -> None:
    offenders = sorted(
        source
        for source, targets in GRAPH.items()
        if source.startswith("deit.models")
        for target in targets
        if target == forbidden or target.startswith(forbidden + ".") and forbidden != "deit"
    )
    assert not offenders, f"{offenders} import {forbidden}"


def reachable(module: str) -> set[str]:
    """Every module that importing `module` may load, through any chain of imports."""
    seen: set[str] = set()
    stack = [module]
    while stack:
        for target in GRAPH[stack.pop()] - seen:
            seen.add(target)
            stack.append(target)
    return seen


@pytest.mark.parametrize(
    "module, never",
    [
        ("deit.models.registry", {"deit.models.vit", "deit.models.factory", "deit.models.checkpoint"}),  # data only
        ("deit.models.checkpoint", {"deit.models.vit", "deit.models.factory"}),  # state dicts only, builds nothing
        ("deit.models.meta_check", {"deit.models.vit", "deit.models.factory"}),
    ],
)
def test_only_the_factory_builds_models(module: str, never: set[str]) -> None:
    assert not reachable(module) & never, f"{module} reaches {sorted(reachable(module) & never)}"


def test_allowed_upward_edges_still_exist() -> None:
    stale = [edge for edge in ALLOWED_UPWARD if edge[1] not in GRAPH.get(edge[0], set())]
    assert not stale, f"remove these from ALLOWED_UPWARD, they are gone: {stale}"
