"""One home for what several parts share (issue #10): one shape formatter."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVO = ROOT / "evo"


def _sources():
    for p in sorted(EVO.rglob("*.py")):
        yield p, ast.parse(p.read_text(encoding="utf-8"), str(p))


def test_one_shape_formatter():
    from evo.ir.node import fmt_shape

    assert fmt_shape(("N", 3, 224, 224)) == "[N, 3, 224, 224]" and fmt_shape(()) == "[]"
    # the one function that brackets a shape: no second copy anywhere under evo/
    defs = [f"{p.relative_to(ROOT)} {n.name}" for p, tree in _sources() for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef) and "shape" in n.name.lower()
            and any(isinstance(c, ast.Constant) and c.value == "[" for c in ast.walk(n))]
    assert defs == ["evo/ir/node.py fmt_shape"], defs
    # messages show symbolic shapes the same way everywhere ([N, 10], not ['N', 10])
    offenders = []
    for p, tree in _sources():
        for n in ast.walk(tree):
            if isinstance(n, ast.FormattedValue) and isinstance(n.value, ast.Call) \
                    and isinstance(n.value.func, ast.Name) and n.value.func.id == "list" and n.value.args \
                    and isinstance(n.value.args[0], ast.Attribute) and n.value.args[0].attr == "shape":
                offenders.append(f"{p.relative_to(ROOT)}:{n.lineno}")
    assert not offenders, offenders
