"""`evoc fmt FILE...`: format programs canonically, in place."""

from __future__ import annotations

import sys

from evo.cli.common import EXIT_OK, EXIT_PROGRAM, _read
from evo.cli.output import write_output
from evo.diagnostics import EvoError


def add_parser(sub) -> None:
    f = sub.add_parser("fmt", help="format programs canonically (in place)")
    f.add_argument("files", nargs="+", metavar="FILE")
    f.add_argument("--check", action="store_true", help="only report files that would change (exit 1)")
    f.add_argument("--stdout", action="store_true", help="print the formatted program instead of writing it")


def main(args) -> int:
    from evo.frontend.fmt import format_source

    status = EXIT_OK
    for f in args.files:
        text, name, _ = _read(f)
        try:
            out = format_source(text, name)
        except EvoError as e:
            print(str(e), file=sys.stderr)
            status = EXIT_PROGRAM
            continue
        if args.check:
            if out != text:
                print(f"{f}: would reformat", file=sys.stderr)
                status = EXIT_PROGRAM
        elif f == "-" or args.stdout:
            sys.stdout.write(out)
        elif out != text:
            write_output(f, out)  # in place: the one command whose output is its input
            print(f"{f}: formatted")
    return status
