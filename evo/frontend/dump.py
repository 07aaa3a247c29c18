"""A deterministic text dump of the syntax tree (`evoc compile --emit ast`)."""

from __future__ import annotations

from dataclasses import fields

from evo.diagnostics import Span
from evo.frontend import ast as A


def dump(node, indent: int = 0) -> str:
    out: list[str] = []
    _dump(node, indent, out, None)
    return "\n".join(out) + "\n"


def _scalar(v) -> str | None:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return repr(v)
    return None


def _dump(node, indent: int, out: list[str], label: str | None) -> None:
    pad = "  " * indent
    prefix = f"{label}: " if label else ""
    if isinstance(node, A.Node):
        sp = node.span
        head = f"{pad}{prefix}{type(node).__name__} @{sp.line}:{sp.column}"
        scalars, nested = [], []
        for f in fields(node):
            if f.name in ("span", "comments", "filename") or f.name.endswith("_span") or f.name.endswith("_spans"):
                continue
            v = getattr(node, f.name)
            if (f.name in ("training", "is_list") and v is False) or (f.name == "number" and v is None):  # shown only on `training name = ...`, `Tensor[]`
                continue
            s = _scalar(v)
            if s is not None:
                scalars.append(f"{f.name}={s}")
            elif isinstance(v, tuple) and all(_scalar(x) is not None and not isinstance(x, A.Node) for x in v):
                scalars.append(f"{f.name}=[{', '.join(_scalar(x) for x in v)}]")
            else:
                nested.append((f.name, v))
        out.append(head + (" " + " ".join(scalars) if scalars else ""))
        for name, v in nested:
            if isinstance(v, tuple):
                out.append(f"{pad}  {name}:")
                for x in v:
                    _dump(x, indent + 2, out, None)
            else:
                _dump(v, indent + 1, out, name)
    elif isinstance(node, Span):
        out.append(f"{pad}{prefix}@{node.line}:{node.column}")
    else:
        out.append(f"{pad}{prefix}{node!r}")
