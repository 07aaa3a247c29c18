"""The one way `evoc` writes files: atomically, and never anywhere but where it was asked.

`write_output(out, data)` writes `data` (text or bytes) to the file `out`, or to stdout
when `out` is None or ``-``.  A file is written to a fresh temporary file created
exclusively (``tempfile.mkstemp``) in the output's own directory, then renamed over the
output, so a reader sees the old file or the new one, never half of one, and nothing is
ever written through a link that evoc did not create (a planted ``OUT.tmp`` symlink is
just another name).  The rules, each a usage error (exit 2) with one clear line:

* the output's directory is created when missing (as `mkdir -p`); a path component that
  is not a directory is refused;
* an output that is a directory, a device, a FIFO or a socket is refused (only regular
  files are replaced);
* an output that is a symbolic link is refused: replacing the link would silently turn
  it into a regular file and writing through it would write somewhere else; write to
  its target, or remove the link;
* an output with other hard links is refused: replacing it would separate the names
  (the others would keep the old text);
* an output that is one of the command's inputs (the same file, by device and inode,
  whatever the path) is refused, except where the command edits in place (`evoc fmt`);
* a replaced file keeps its permission bits; a new file gets the usual ``0666 & ~umask``.

`output_dir(path)` prepares a directory for several outputs (`evoc run --out`, `evoc
evolve --out`) with the same rules.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from evo.cli.common import UsageError

__all__ = ["output_dir", "plot_format", "same_file", "write_output"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (device and inode), e.g. via another path or a hard link."""
    try:
        sa, sb = os.stat(a), os.stat(b)
    except (OSError, ValueError):
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _make_parent(p: Path, label: str) -> None:
    parent = p.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"cannot write {label}: {parent} is not a directory") from None
    except NotADirectoryError:
        raise UsageError(f"cannot write {label}: a part of {parent} is not a directory") from None
    except OSError as e:
        raise UsageError(f"cannot create the directory {parent}: {e.strerror}") from None
    if not parent.is_dir():
        raise UsageError(f"cannot write {label}: {parent} is not a directory")


def _check_target(p: Path, label: str, inputs: Iterable[str | os.PathLike]) -> int | None:
    """The mode to keep (None for a new file); UsageError for what must not be replaced."""
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise UsageError(f"cannot write {label}: a part of its path is not a directory") from None
    except OSError as e:
        raise UsageError(f"cannot write {label}: {e.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise UsageError(f"{label} is a symbolic link; evoc does not write through links "
                         "(give the link's target, or remove the link)")
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{label} is a directory; give a file name")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
        raise UsageError(f"{label} is {kind}; evoc only writes regular files (use -o - for stdout)")
    for inp in inputs:
        if inp not in (None, "-") and same_file(p, inp):
            raise UsageError(f"{label} is the input {inp}; refusing to overwrite it (choose another output)")
    if st.st_nlink > 1:
        raise UsageError(f"{label} has {st.st_nlink - 1} other hard link(s); replacing it would separate them "
                         "(remove the other links, or write elsewhere)")
    return stat.S_IMODE(st.st_mode)


def write_output(out: str | os.PathLike | None, data: str | bytes, *, inputs: Iterable = (),
                 label: str | None = None) -> Path | None:
    """Write `data` to `out` atomically (see the module's rules); stdout when `out` is None or ``-``.
    `inputs` are the paths the command read: `out` may not be one of them.  Returns the path."""
    if out is None or str(out) == "-":
        if isinstance(data, bytes):
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            sys.stdout.write(data)
        return None
    p = Path(out)
    label = label or str(out)
    if "\0" in str(p):
        raise UsageError("an output path cannot contain a NUL byte")
    if not p.name or p.name in (".", ".."):
        raise UsageError(f"{label} is a directory; give a file name")
    if str(out).endswith(os.sep) or str(out).endswith("/"):
        raise UsageError(f"{label} ends with '/', a directory; give a file name")
    _make_parent(p, label)
    mode = _check_target(p, label, inputs)
    if mode is None:
        mode = 0o666 & ~_umask()
    blob = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    try:
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    except OSError as e:
        raise UsageError(f"cannot write {label}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fchmod(f.fileno(), mode)
        os.replace(tmp, p)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise UsageError(f"cannot write {label}: {e.strerror or e}") from None
        raise
    return p


def output_dir(path: str | os.PathLike, label: str | None = None) -> Path:
    """`path` as a directory to write into, created when missing; UsageError when it is a file."""
    p = Path(path)
    label = label or str(path)
    if "\0" in str(p):
        raise UsageError("an output path cannot contain a NUL byte")
    if p.exists() and not p.is_dir():
        raise UsageError(f"{label} is not a directory (it is a file); give a directory for the outputs")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UsageError(f"cannot create the directory {label}: a part of its path is not a directory") from None
    except OSError as e:
        raise UsageError(f"cannot create the directory {label}: {e.strerror}") from None
    return p


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
