"""The import graph of the packages, read statically (ast): no cycles, and data flows one way.

    common  ←  connectors  ←  gateway
       ↑                        ↓
       └────────  rules  ←──────┘

- `common` (what everyone shares: error base, backoff, logging, config base, the sample and
  event contracts) imports none of the others;
- `rules` imports only `rules` and `common` — never a connector nor the daemon;
- `connectors` import `connectors` and `common`, never the daemon (`gateway`) nor `rules`.
  The simulator (`connectors.simulator`) is the other side of the wire — PLC servers for the
  demo and tests — and is held to the same rule;
- no module reaches itself through the imports of others when it is loaded: imports at
  module level count, those under `TYPE_CHECKING` too (they name what the module's interface
  depends on); an import inside a function runs when it is called, after both modules are
  loaded, and is the deliberate way to reach back, so it counts for the direction rules
  above but makes no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("common", "connectors", "gateway", "rules")
MAY_IMPORT = {
    "common": {"common"},
    "rules": {"rules", "common"},
    "connectors": {"connectors", "common"},
    "gateway": {"gateway", "connectors", "rules", "common"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def imports_of(name: str, path: Path, known: set[str], *, in_functions: bool = True) -> set[str]:
    """The project modules `name` imports (a `from package import module` names the module);
    `in_functions=False` leaves out the imports inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    late: set[int] = set()
    if not in_functions:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                late.update(id(inner) for inner in ast.walk(node) if inner is not node)
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in late:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" for alias in node.names] + [module]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def graph(*, in_functions: bool = True) -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {
        name: imports_of(name, path, known, in_functions=in_functions)
        for name, path in found.items()
    }


def test_every_package_imports_only_what_it_may() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in sorted(graph().items())
        for target in sorted(targets)
        if target.split(".")[0] not in MAY_IMPORT[module.split(".")[0]]
    ]
    assert not wrong, "imports against the flow of data:\n" + "\n".join(wrong)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan), as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(found)


def test_no_import_cycles() -> None:
    knots = cycles(graph(in_functions=False))
    assert not knots, "import cycles:\n" + "\n".join(" ↔ ".join(k) for k in knots)


# The checker itself: a cycle and a backwards import are found.
@pytest.mark.parametrize(
    ("edges", "want"),
    [
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": set()}, []),
    ],
)
def test_cycles_are_found(edges: dict[str, set[str]], want: list[list[str]]) -> None:
    assert cycles(edges) == want


def test_the_known_knots_are_undone() -> None:
    edges = graph()
    assert "gateway.config" not in edges["connectors.modbus.address"]
    assert "connectors.modbus.address" in edges["gateway.config"]  # the daemon composes it
    assert not {t for t in edges["rules.machine"] if not t.startswith(("rules", "common"))}


def test_imports_inside_functions_make_no_cycle_but_count_for_direction(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import gateway.config\n"
        "if TYPE_CHECKING:\n"
        "    from rules import engine\n"
        "def late():\n"
        "    from connectors.modbus import address\n"
    )
    known = {"gateway.config", "rules.engine", "connectors.modbus.address"}
    assert imports_of("m", source, known) == known
    assert imports_of("m", source, known, in_functions=False) == {"gateway.config", "rules.engine"}
