"""Printing values as evo literals: the one literal printer of the formatter
(`evoc fmt`) and of everything that writes evo source (the importer)."""

from __future__ import annotations

from typing import Any


def quote(s: str) -> str:
    """A string literal that reads back as `s`: evo knows the escapes \\n, \\t, \\" and \\\\
    (any other character, control characters included, stands for itself)."""
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{out}"'


def float_text(v: float) -> str:
    """The shortest text that reads back as `v` (Python's repr, exponent without padding:
    `1e-05` -> `1e-5`)."""
    s = repr(float(v))
    if "e" in s:
        m, e = s.split("e")
        s = f"{m}e{int(e)}"
    return s


def literal(v: Any) -> str:
    """`v` as an evo literal: true/false, integers, floats, strings, and pairs as one
    value when equal (`3` for (3, 3)) or a list (`[3, 5]`)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return float_text(v)
    if isinstance(v, str):
        return quote(v)
    if isinstance(v, tuple):
        if len(v) == 2 and v[0] == v[1]:
            return str(v[0])
        return "[" + ", ".join(str(x) for x in v) + "]"
    raise TypeError(type(v))
