"""The layering of evo's top-level parts, read from the syntax trees of every module
under evo/ (imports inside functions included):

* no import cycle between top-level parts (evo.api, evo.cli, evo.codegen,
  evo.compilation, evo.cost, evo.check, evo.frontend, evo.ir, evo.ops, evo.passes,
  evo.runtime, evo.evolve, evo.importer, ... and the package `evo` itself);
* nothing outside evo/cli imports evo.cli (the command line sits on top);
* evo/evolve reaches the checker through the public entry points of evo.check only
  (no checker internals, no fabricated syntax-tree nodes).

`importlib.import_module("evo.x")` with a literal name counts as an import.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVO = ROOT / "evo"

# Edges that close a cycle today and are being removed by work in flight (none left:
# the op table, the command line package and the evolve package have landed).
PENDING_EDGES: set[tuple[str, str]] = set()
# Modules outside evo/cli that import it today (none).
PENDING_CLI_IMPORTERS: set[str] = set()


def modules() -> dict[str, Path]:
    out = {}
    for p in sorted(EVO.rglob("*.py")):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = p
    return out


def part(module: str) -> str:
    """The top-level part of a module: `evo.cost.model` -> `evo.cost`; the package itself is `evo`."""
    return ".".join(module.split(".")[:2])


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every evo module `name` imports, anywhere in the file."""
    out: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                # `from evo import ops` imports the module evo.ops; `from evo import x` the package
                out.add(f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            # importlib.import_module("evo.x") and __import__("evo.x") with a literal name
            f = node.func
            fname = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if fname in ("import_module", "__import__"):
                out.add(node.args[0].value)
    return {m for m in out if m == "evo" or m.startswith("evo.")}


def import_graph() -> tuple[dict[str, set[str]], dict[tuple[str, str], list[str]]]:
    known = modules()
    edges: dict[str, set[str]] = {}
    why: dict[tuple[str, str], list[str]] = {}
    for name, path in known.items():
        for target in imports(name, path, known):
            a, b = part(name), part(target)
            if a != b:
                edges.setdefault(a, set()).add(b)
                why.setdefault((a, b), []).append(f"{name} -> {target}")
    return edges, why


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one part (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_between_top_level_parts():
    edges, why = import_graph()
    kept = {a: {b for b in bs if (a, b) not in PENDING_EDGES} for a, bs in edges.items()}
    found = cycles(kept)
    report = []
    for comp in found:
        report.append(" <-> ".join(comp))
        for a in comp:
            for b in sorted(kept.get(a, ())):
                if b in comp:
                    report.extend(f"    {line}" for line in why[(a, b)])
    assert not found, "import cycles between evo's parts:\n" + "\n".join(report)


def test_only_the_command_line_imports_the_command_line():
    known = modules()
    offenders = sorted(f"{name} imports {t}" for name, path in known.items()
                       if part(name) != "evo.cli" and name not in PENDING_CLI_IMPORTERS
                       for t in imports(name, path, known) if part(t) == "evo.cli")
    assert not offenders, "\n".join(offenders)


def test_the_scanner_sees_function_local_and_relative_imports(tmp_path):
    # the checks above are only as good as the scanner: a cycle made of a function-local
    # import and a relative import must be found
    known = {"evo.a": tmp_path / "a.py", "evo.b": tmp_path / "b" / "__init__.py", "evo.b.c": tmp_path / "b" / "c.py"}
    known["evo.b"].parent.mkdir()
    known["evo.a"].write_text("def f():\n    from evo.b import c\n\n\ndef g():\n"
                              "    import importlib\n    return importlib.import_module('evo.b')\n")
    known["evo.b"].write_text("")
    known["evo.b.c"].write_text("from .. import a\nfrom . import c\n")
    assert imports("evo.a", known["evo.a"], known) == {"evo.b.c", "evo.b"}
    assert imports("evo.b.c", known["evo.b.c"], known) == {"evo.a", "evo.b.c"}
    edges = {"evo.a": {"evo.b"}, "evo.b": {"evo.a"}, "evo.c": {"evo.a"}}
    assert cycles(edges) == [["evo.a", "evo.b"]]
    assert cycles({"evo.a": {"evo.b"}}) == []


def _evolve_checker_uses(path: Path) -> list[str]:
    """What a module imports from evo.check beyond its public entry points, and the evo.frontend.ast
    nodes it constructs."""
    import evo.check

    public = set(evo.check.__all__)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad, ast_names, ast_modules = [], set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [a.name for a in node.names]
            if node.module == "evo.check":
                bad += [f"from evo.check import {n}" for n in names if n.startswith("_") or n not in public]
            elif node.module.startswith("evo.check."):
                bad.append(f"from {node.module} import {', '.join(names)}")
            elif node.module == "evo.frontend":
                ast_modules |= {a.asname or a.name for a in node.names if a.name == "ast"}
            elif node.module == "evo.frontend.ast":
                ast_names |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            bad += [f"import {a.name}" for a in node.names if a.name.startswith("evo.check.")]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in ast_names:
                bad.append(f"constructs {f.id}")
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in ast_modules:
                bad.append(f"constructs {f.value.id}.{f.attr}")
    return bad


def test_evolution_reaches_the_checker_through_its_public_entry_points_only(tmp_path):
    found = {str(p.relative_to(ROOT)): _evolve_checker_uses(p) for p in sorted((EVO / "evolve").rglob("*.py"))}
    assert not any(found.values()), {k: v for k, v in found.items() if v}
    # the scan sees what it forbids
    probe = tmp_path / "probe.py"
    probe.write_text("from evo.check.lower import Lowerer\nfrom evo.check import _x, instantiate_network\n"
                     "from evo.frontend import ast as A\n\ndef f():\n    return A.Num(None, 1, None, '1')\n")
    assert _evolve_checker_uses(probe) == ["from evo.check.lower import Lowerer", "from evo.check import _x",
                                           "constructs A.Num"]
