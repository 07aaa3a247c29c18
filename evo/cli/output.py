"""How `evoc` writes its outputs: through the library's one safe writer (`evo.fileio`:
atomic, exclusive temporary file, no writing through links, modes kept, inputs never
overwritten), plus what only the command line has: ``-o -`` (or no ``-o``) is standard
output, and a refused output is a usage error (exit 2) with the writer's one-line reason.

`write_output(out, data)` writes `data` (text or bytes) to the file `out`, or to stdout
when `out` is None or ``-``; `output_dir(path)` prepares a directory for several outputs
(`evoc run --out`, `evoc evolve --out`).  The rules: see `evo.fileio`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from evo import fileio
from evo.cli.common import UsageError
from evo.fileio import same_file

__all__ = ["output_dir", "plot_format", "same_file", "stream_output", "write_output"]


def write_output(out: str | os.PathLike | None, data: str | bytes, *, inputs: Iterable = (),
                 label: str | None = None) -> Path | None:
    """Write `data` to `out` atomically (`evo.fileio.write_atomic`); stdout when `out` is None
    or ``-``.  `inputs` are the paths the command read: `out` may not be one of them.
    Returns the path (None for stdout)."""
    if out is None or str(out) == "-":
        if isinstance(data, bytes):
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            sys.stdout.write(data)
        return None
    try:
        return fileio.write_atomic(out, data, inputs=inputs, label=label)
    except fileio.OutputError as e:
        raise UsageError(str(e)) from None


@contextlib.contextmanager
def stream_output(out: str | os.PathLike, *, inputs: Iterable = (), label: str | None = None):
    """Write the file `out` piece by piece (evo.fileio.stream_atomic's rules): yields a binary
    file renamed over `out` when the block ends without an error; bad outputs are usage errors."""
    try:
        with fileio.stream_atomic(out, inputs=inputs, label=label) as f:
            yield f
    except fileio.OutputError as e:
        raise UsageError(str(e)) from None


def output_dir(path: str | os.PathLike, label: str | None = None) -> Path:
    """`path` as a directory to write into, created when missing; UsageError when it is a file."""
    try:
        return fileio.output_dir(path, label)
    except fileio.OutputError as e:
        raise UsageError(str(e)) from None


def plot_format(out: str | os.PathLike, option: str = "--plot") -> str:
    """The format of a plot written to `out` (png, svg or pdf, by its suffix): check it
    before any work, as a usage error; then render the bytes and `write_output` them."""
    from evo.cost.plot import PLOT_FORMATS

    if os.path.isdir(out):
        raise UsageError(f"{option} {out} is a directory; give a file name (.png, .svg or .pdf)")
    suffix = Path(out).suffix.lower().lstrip(".")
    if suffix not in PLOT_FORMATS:
        shown = f"its suffix is '.{suffix}'" if suffix else "it has no suffix"
        raise UsageError(f"{option} {out}: a plot is written as .png, .svg or .pdf, chosen by the file's "
                         f"suffix; {shown}")
    return suffix
