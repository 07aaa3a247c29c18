"""What every subcommand shares: exit codes, `UsageError`, reading a program, picking by name."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

EXIT_OK, EXIT_PROGRAM, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


class UsageError(Exception):
    """A problem with the command line or the files it names: `evoc: error: ...`, exit 2."""


class CommandError(Exception):
    """Well-formed inputs the command cannot do its work with, other than an evo program's
    own diagnostics (`EvoError`): a model that fails or cannot be converted, an exported
    model that onnxruntime disagrees with.  `evoc: error: ...` and an optional
    `hint: ...` line, exit 1 (like a program error)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


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


def compile_program(path: str):
    """The `evo.Program` of a FILE argument (EvoError for program errors, UsageError for bad paths)."""
    from evo.api import compile_source
    from evo.frontend.source import Source

    return compile_source(Source(*_read(path)))


def pick(what: str, given: str | None, pool: Mapping | Iterable[str], *, option: str | None = None,
         none_hint: str = "", list_defined: bool = True) -> str:
    """The name chosen among `pool`: `given` when it names one (else a did-you-mean usage
    error), the only one when `given` is None, else a usage error asking to choose with
    `option` (default ``--<what>``)."""
    from evo.diagnostics import did_you_mean

    names = list(pool)
    option = option or f"--{what}"
    if given is not None:
        if given not in names:
            hint = did_you_mean(given, names)
            raise UsageError(f"no {what} named '{given}'" + (f"; {hint}" if hint else "") +
                             (f" (defined: {', '.join(sorted(names))})" if names and list_defined else ""))
        return given
    if len(names) == 1:
        return names[0]
    if not names:
        raise UsageError(f"the program declares no {what}{none_hint}")
    raise UsageError(f"the program declares several {what}s ({', '.join(sorted(names))}); choose one with {option}")
