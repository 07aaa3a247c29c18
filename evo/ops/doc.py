"""The op table of docs/language.md (section 4), generated from the registry.

    python3 -m evo.ops.doc           # rewrite the table in docs/language.md
    python3 -m evo.ops.doc --check   # exit 1 if it is stale

`tests/test_ops.py` fails when the document is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from evo.ops.base import REGISTRY, OpDef

BEGIN = "<!-- op table: generated from evo/ops by `python3 -m evo.ops.doc`; do not edit by hand -->"
END = "<!-- end of the op table -->"
DOC = Path(__file__).resolve().parents[2] / "docs" / "language.md"


def _row(d: OpDef) -> str:
    call = d.doc_call or f"{d.name}(x)"
    torch = f"`{d.torch}`"
    return f"| `{call}` | {d.doc_args or '—'} | {torch} | {d.doc_shape or d.doc} |"


FAMILIES = ("conv", "norm", "activation", "pool", "shape", "dims", "arith", "window", "einsum", "attention")


def _family(d: OpDef) -> int:
    """The family module that defines the op (where its rules are written)."""
    for f in (d.shape, d.module, d.functional, d.grad):
        mod = getattr(f, "__module__", "").rpartition(".")[2]
        if mod in FAMILIES:
            return FAMILIES.index(mod)
    return len(FAMILIES)


def op_table() -> str:
    """The markdown table of the built-in ops a program can use, by family, in registration order."""
    lines = ["| layer | arguments after the input (default) | PyTorch | output shape and checks |",
             "|---|---|---|---|"]
    ds = [d for d in REGISTRY.values() if d.builtin and d.shape is not None]
    for d in sorted(ds, key=_family):
        lines.append(_row(d))
    return "\n".join(lines)


def render(text: str) -> str:
    """`text` (docs/language.md) with the generated table between the markers."""
    a, b = text.index(BEGIN), text.index(END)
    return text[:a] + BEGIN + "\n" + op_table() + "\n" + text[b:]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = DOC.read_text(encoding="utf-8")
    new = render(text)
    if "--check" in argv:
        if new != text:
            print(f"{DOC} is stale: run `python3 -m evo.ops.doc`", file=sys.stderr)
            return 1
        return 0
    if new != text:
        from evo.fileio import write_atomic

        write_atomic(DOC, new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
