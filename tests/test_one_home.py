"""One home for what several parts share (issue #10): every diagnostic code is a named
constant of evo/codes.py, documented in docs/language.md's table; one shape formatter."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVO = ROOT / "evo"
CODE = re.compile(r"[EW]\d{4}")


def _sources():
    for p in sorted(EVO.rglob("*.py")):
        yield p, ast.parse(p.read_text(encoding="utf-8"), str(p))


def test_no_literal_diagnostic_code_outside_codes_py():
    found = []
    for p, tree in _sources():
        if p == EVO / "codes.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and CODE.fullmatch(node.value):
                found.append(f"{p.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, "write the named constant of evo/codes.py instead:\n" + "\n".join(found)


def test_every_code_constant_is_catalogued_and_documented():
    from evo import codes

    consts = {k: v for k, v in vars(codes).items() if k.isupper() and isinstance(v, str) and CODE.fullmatch(v)}
    assert len(consts) > 60
    assert len(set(consts.values())) == len(consts), "two constants share a code"
    doc = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    for name, code in consts.items():
        table = codes.CODES if code.startswith("E") else codes.WARNINGS
        assert code in table, f"{name} = {code!r} is missing from codes.{'CODES' if code[0] == 'E' else 'WARNINGS'}"
        assert f"| {code} | {table[code]} |" in doc, f"{code} ({name}) is not in docs/language.md's table"
    assert set(codes.CODES) | set(codes.WARNINGS) == set(consts.values())


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
