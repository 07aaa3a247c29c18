"""`evoc compile FILE [-o OUT] [--emit ast|ir|py]`: compile to PyTorch (or show the AST / IR)."""

from __future__ import annotations

from evo.cli.common import EXIT_OK, compile_program
from evo.cli.output import write_output


def add_parser(sub) -> None:
    k = sub.add_parser("compile", help="compile to PyTorch (or show the AST / IR)")
    k.add_argument("file", metavar="FILE", help="evo source file (- for stdin)")
    k.add_argument("-o", "--output", metavar="OUT", help="output file (default: stdout)")
    k.add_argument("--emit", choices=("ast", "ir", "py"), default="py", help="what to emit (default: py)")


def main(args) -> int:
    from evo.cli.check import print_warnings

    prog = compile_program(args.file)
    print_warnings(prog)
    comp = prog.compilation
    if args.emit == "ast":
        text = comp.ast_text
    elif args.emit == "ir":
        text = comp.ir_text
    else:
        text = comp.python
    write_output(args.output, text, inputs=[args.file])
    return EXIT_OK
