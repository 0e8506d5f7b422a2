"""The layered architecture (docs/ARCHITECTURE.md), checked on the source: imports point down only, at
module level, with no cycle among first-party modules; no file outside tests/ and bench/ over 450 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("envs", "rllab", "robustness", "explain", "study")
MAX_LINES = 450

# Layer of each module, by longest matching prefix. envs sits below everything (it never imports torch).
LAYERS: dict[str, int] = {
    "envs": -1,
    "rllab.errors": 0,
    "rllab.units": 0,
    "rllab.parsing": 0,
    "rllab.spaces": 0,
    "rllab.checkpoint": 0,
    "rllab.spec": 0,
    "rllab.schema": 0,
    "rllab.files": 0,
    "rllab.environment": 0,
    "rllab.frames": 0,
    "rllab.nn": 1,
    "rllab.agent": 2,
    "rllab.sb3_import": 3,
    "rllab.evaluation": 3,
    "rllab.training": 3,
    "rllab.algos": 3,
    "rllab.hyperparams": 3,
    "rllab.transforms": 4,
    "rllab.defend": 4,
    "rllab.purify": 4,
    "rllab.sweep": 4,
    "robustness": 4,
    "explain": 4,
    "rllab.cli": 5,
    "robustness.commands": 5,
    "robustness.cli": 5,
    "explain.commands": 5,
    "explain.cli": 5,
    "study": 5,  # rllab lab: composes rllab, robustness and explain; nothing imports it
    "rllab": 3,  # the package itself re-exports the public API (rllab.load, rllab.train: L3)
}
# Packages at the same layer that must not know each other (DESIGN.md: envs <- rllab <- robustness, explain).
FORBIDDEN = [("rllab", "robustness"), ("rllab", "explain"), ("robustness", "explain"), ("explain", "robustness")]
FORBIDDEN += [(p, "study") for p in ("envs", "rllab", "robustness", "explain")]  # the study sits above them all


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def layer(module: str) -> int:
    """The layer of a module: the longest prefix of LAYERS that it starts with."""
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def _target(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
            base = base[: len(base) - node.level + 1]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in MODULES else prefix for a in node.names]
    out = []
    for name in names:
        if name.split(".")[0] not in PACKAGES:
            continue
        while name not in MODULES and "." in name:
            name = name.rsplit(".", 1)[0]
        out.append(name)
    return out


def _imports() -> tuple[dict[str, set[str]], list[tuple[str, str, int]]]:
    """(module-level first-party imports per module, function-level ones as (module, target, line))."""
    top: dict[str, set[str]] = {m: set() for m in MODULES}
    nested: list[tuple[str, str, int]] = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())

        def visit(node: ast.AST, inside: bool, module: str = module, path: Path = path) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.Import | ast.ImportFrom):
                    for target in _target(module, path, child):
                        if target == module:
                            continue
                        if inside:
                            nested.append((module, target, child.lineno))
                        else:
                            top[module].add(target)
                is_func = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
                visit(child, inside or is_func)

        visit(tree, False)
    return top, nested


TOP, NESTED = _imports()


def test_first_party_imports_are_at_module_level():
    assert not NESTED, "first-party imports inside functions:\n" + "\n".join(f"{m}:{ln} -> {t}" for m, t, ln in NESTED)


def test_imports_point_down_only():
    upward = [
        f"{m} (L{layer(m)}) -> {t} (L{layer(t)})"
        for m, targets in TOP.items()
        for t in targets
        if layer(t) > layer(m) and not t == m.rsplit(".", 1)[0]  # a package's own __init__ is not a layer jump
    ]
    assert not upward, "upward imports:\n" + "\n".join(sorted(upward))


def test_packages_stay_independent():
    bad = [
        f"{m} -> {t}"
        for m, targets in TOP.items()
        for t in targets
        for a, b in FORBIDDEN
        if m.split(".")[0] == a and t.split(".")[0] == b
    ]
    assert not bad, "imports across independent packages:\n" + "\n".join(sorted(bad))


def test_no_import_cycle():
    graph = {m: set(t) for m, t in TOP.items()}
    for m, t, _ in NESTED:
        graph[m].add(t)
    # a package's __init__ importing its submodules is not a cycle with them importing siblings
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(v: str) -> list[str] | None:
        state[v] = 1
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == 1:
                return stack[stack.index(w) :] + [w]
            if w not in state and (cycle := dfs(w)):
                return cycle
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state and (cycle := dfs(v)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_no_file_over_the_line_limit():
    long = {str(p.relative_to(ROOT)): n for p in MODULES.values() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_every_module_has_a_layer():
    for module in MODULES:
        layer(module)  # raises ValueError (max of nothing) for a module outside every layer
