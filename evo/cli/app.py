"""The `evoc` parser, its subcommand registry and `main` (exit codes, errors)."""

from __future__ import annotations

import argparse
import importlib
import sys

from evo.version import __version__
from evo.cli.common import EXIT_INTERNAL, EXIT_OK, EXIT_PROGRAM, EXIT_USAGE, CommandError, UsageError
from evo.diagnostics import EvoError

# The subcommands, in the order `evoc --help` lists them: name -> module.  Each module
# defines ``add_parser(subparsers)`` and ``main(args) -> int``.  A module that fails to
# import is an error (`SubcommandError`), never silently dropped.
SUBCOMMANDS: dict[str, str] = {
    "check": "evo.cli.check",
    "fmt": "evo.cli.fmt",
    "compile": "evo.cli.compile",
    "run": "evo.cli.run",
    "eval": "evo.cli.eval",
    "export": "evo.cli.export",
    "cost": "evo.cli.cost",
    "evolve": "evo.cli.evolve",
    "import": "evo.cli.importer",
}


class SubcommandError(Exception):
    """A registered subcommand's module failed to import or lacks add_parser/main (a bug in evoc)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors exit 2 with one clear line
        self.print_usage(sys.stderr)
        print(f"evoc: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def load_subcommands(registry: dict[str, str] | None = None) -> dict[str, object]:
    """name -> imported module, for every registered subcommand (SubcommandError if one fails)."""
    mods = {}
    for name, modname in (SUBCOMMANDS if registry is None else registry).items():
        try:
            mod = importlib.import_module(modname)
        except Exception as e:  # noqa: BLE001 - reported, with the module, as a bug
            raise SubcommandError(f"subcommand '{name}' ({modname}) failed to import: "
                                  f"{type(e).__name__}: {e}") from e
        if not (callable(getattr(mod, "add_parser", None)) and callable(getattr(mod, "main", None))):
            raise SubcommandError(f"subcommand '{name}' ({modname}) defines no add_parser() and main()")
        mods[name] = mod
    return mods


def build_parser(commands: dict[str, object] | None = None) -> argparse.ArgumentParser:
    commands = load_subcommands() if commands is None else commands
    p = _Parser(prog="evoc", description="The evo compiler: networks, CAM explainers and hardware cost.")
    p.add_argument("--version", action="version", version=f"evoc {__version__}")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks (for compiler developers)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for mod in commands.values():
        mod.add_parser(sub)
    return p


def _internal(e: BaseException) -> int:
    print(f"evoc: internal error: {type(e).__name__}: {e}\n"
          "This is a bug in evoc, not in your program; rerun with --debug for details.", file=sys.stderr)
    return EXIT_INTERNAL


def main(argv: list[str] | None = None) -> int:
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        commands = load_subcommands()
    except SubcommandError as e:
        if debug:
            raise
        print(f"evoc: internal error: {e}\n"
              "This is a bug in evoc, not in your program; rerun with --debug for details.", file=sys.stderr)
        return EXIT_INTERNAL
    parser = build_parser(commands)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return commands[args.command].main(args)
    except EvoError as e:
        if args.debug:
            raise
        print(str(e), file=sys.stderr)
        return EXIT_PROGRAM
    except UsageError as e:
        print(f"evoc: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except CommandError as e:
        print(f"evoc: error: {e}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return EXIT_PROGRAM
    except KeyboardInterrupt:
        print("evoc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # a compiler bug: never a traceback for users
        if args.debug:
            raise
        return _internal(e)
