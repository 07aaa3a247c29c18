"""`evoc`: the command line.  Exit 0 ok, 1 program errors, 2 usage errors."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from evo.diagnostics import EvoError
from evo.version import __version__

EXIT_OK, EXIT_PROGRAM, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    pass


def _read(path: str) -> tuple[str, str, Path | None]:
    """(text, display name, base dir) for a FILE argument; `-` reads stdin.  Through the
    one source reader: not a readable regular file is a usage error, not UTF-8 a
    program error (E0001)."""
    from evo.frontend.source import UnreadableSource, read_argument

    try:
        src = read_argument(path)
    except UnreadableSource as e:
        raise UsageError(str(e)) from None
    return src.text, src.name, src.base_dir


def _compile(path: str):
    from evo.api import compile_source
    from evo.frontend.source import Source

    return compile_source(Source(*_read(path)))


def _write(out: str | None, text: str) -> None:
    if out is None or out == "-":
        sys.stdout.write(text)
        return
    p = Path(out)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, p)  # never leave a half-written file


# ---------------------------------------------------------------------- commands

def cmd_check(args) -> int:
    status = EXIT_OK
    for f in args.files:
        try:
            prog = _compile(f)
            c = prog.compilation.checked
            if not args.quiet:
                parts = [f"{len(c.graphs)} network{'s' if len(c.graphs) != 1 else ''}",
                         f"{len(c.hardware)} hardware", f"{len(c.cams)} cam{'s' if len(c.cams) != 1 else ''}",
                         f"{len(c.targets)} target{'s' if len(c.targets) != 1 else ''}"]
                if c.evolves:
                    parts.append(f"{len(c.evolves)} evolve")
                print(f"{f}: ok ({', '.join(parts)})")
        except EvoError as e:
            print(str(e), file=sys.stderr)
            status = EXIT_PROGRAM
    return status


def cmd_fmt(args) -> int:
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
            _write(f, out)
            print(f"{f}: formatted")
    return status


def cmd_compile(args) -> int:
    prog = _compile(args.file)
    comp = prog.compilation
    if args.emit == "ast":
        text = comp.ast_text
    elif args.emit == "ir":
        text = comp.ir_text
    else:
        text = comp.python
    _write(args.output, text)
    return EXIT_OK


COMMANDS = {"check": cmd_check, "fmt": cmd_fmt, "compile": cmd_compile}


def _extra_commands() -> dict:
    """Commands that live in their own modules (registered if present)."""
    out = {}
    for name, modname in (("run", "evo.runtime.cli"), ("cost", "evo.cost.cli"),
                          ("evolve", "evo.evolution"), ("import", "evo.importer")):
        out[name] = modname
    return out


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors exit 2 with one clear line
        self.print_usage(sys.stderr)
        print(f"evoc: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="evoc", description="The evo compiler: networks, CAM explainers and hardware cost.")
    p.add_argument("--version", action="version", version=f"evoc {__version__}")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks (for compiler developers)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    c = sub.add_parser("check", help="check programs for errors")
    c.add_argument("files", nargs="+", metavar="FILE", help="evo source files (- for stdin)")
    c.add_argument("-q", "--quiet", action="store_true", help="print nothing for programs without errors")

    f = sub.add_parser("fmt", help="format programs canonically (in place)")
    f.add_argument("files", nargs="+", metavar="FILE")
    f.add_argument("--check", action="store_true", help="only report files that would change (exit 1)")
    f.add_argument("--stdout", action="store_true", help="print the formatted program instead of writing it")

    k = sub.add_parser("compile", help="compile to PyTorch (or show the AST / IR)")
    k.add_argument("file", metavar="FILE", help="evo source file (- for stdin)")
    k.add_argument("-o", "--output", metavar="OUT", help="output file (default: stdout)")
    k.add_argument("--emit", choices=("ast", "ir", "py"), default="py", help="what to emit (default: py)")

    import importlib

    for name, modname in _extra_commands().items():
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            continue
        if hasattr(mod, "add_parser"):
            mod.add_parser(sub)
            COMMANDS[name] = mod.main
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except EvoError as e:
        if args.debug:
            raise
        print(str(e), file=sys.stderr)
        return EXIT_PROGRAM
    except UsageError as e:
        print(f"evoc: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("evoc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # a compiler bug: never a traceback for users
        if args.debug:
            raise
        print(f"evoc: internal error: {type(e).__name__}: {e}\n"
              "This is a bug in evoc, not in your program; rerun with --debug for details.", file=sys.stderr)
        return 3


if __name__ == "__main__":
    # run the imported module's main, so that `python -m evo.cli` and the subcommand
    # modules share one set of classes (UsageError) with `evo.cli`
    from evo.cli import main as _main

    sys.exit(_main())
