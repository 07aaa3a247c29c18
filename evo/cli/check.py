"""`evoc check FILE...`: check programs for errors."""

from __future__ import annotations

import sys

from evo.cli import common
from evo.cli.common import EXIT_OK, EXIT_PROGRAM
from evo.diagnostics import EvoError


def add_parser(sub) -> None:
    c = sub.add_parser("check", help="check programs for errors")
    c.add_argument("files", nargs="+", metavar="FILE", help="evo source files (- for stdin)")
    c.add_argument("-q", "--quiet", action="store_true", help="print nothing for programs without errors")


def print_warnings(prog) -> None:
    """The compilation's warning diagnostics (explainers of more than 10x inference) on stderr."""
    from evo.cam_work import warnings_text

    text = warnings_text(prog)
    if text:
        print(text, file=sys.stderr)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def main(args) -> int:
    status = EXIT_OK
    for f in args.files:
        try:
            prog = common.compile_program(f)
            c = prog.compilation.checked
            print_warnings(prog)
            if not args.quiet:
                parts = [_plural(len(c.graphs), "network"), f"{len(c.hardware)} hardware",
                         _plural(len(c.cams), "cam"), _plural(len(c.targets), "target")]
                if c.evolves:
                    parts.append(f"{len(c.evolves)} evolve")
                print(f"{f}: ok ({', '.join(parts)})")
        except EvoError as e:
            print(str(e), file=sys.stderr)
            status = EXIT_PROGRAM
    return status
