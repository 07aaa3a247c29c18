"""The one safe writer: every file evo writes (the library's and `evoc`'s) goes through
`write_atomic`, atomically and never anywhere but where it was asked.

`write_atomic(path, data)` writes `data` (text as UTF-8, or bytes) to a fresh temporary
file created exclusively (``tempfile.mkstemp``) in the output's own directory, then
renames it over the output, so a reader sees the old file or the new one, never half of
one, and nothing is ever written through a link evo did not create (a planted
``OUT.tmp`` symlink is just another name).  What it refuses raises `OutputError` (a
ValueError; `evoc` reports it as a usage error, exit 2) with one clear line:

* the output's directory is created when missing (as `mkdir -p`); a path component that
  is not a directory is refused;
* an output that is a directory, a device, a FIFO or a socket is refused (only regular
  files are replaced);
* an output that is a symbolic link is refused: replacing the link would silently turn
  it into a regular file and writing through it would write somewhere else;
* an output with other hard links is refused: replacing it would separate the names
  (the others would keep the old text);
* an output that is one of `inputs` (the same file, by device and inode, whatever the
  path) is refused;
* a replaced file keeps its permission bits; a new file gets the usual ``0666 & ~umask``.

`output_dir(path)` prepares a directory for several outputs with the same rules.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

__all__ = ["OutputError", "output_dir", "same_file", "umask", "write_atomic"]


class OutputError(ValueError):
    """An output that must not or cannot be written (the message says why)."""


def umask() -> int:
    """The process's file-creation mask."""
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
        raise OutputError(f"cannot write {label}: {parent} is not a directory") from None
    except NotADirectoryError:
        raise OutputError(f"cannot write {label}: a part of {parent} is not a directory") from None
    except OSError as e:
        raise OutputError(f"cannot create the directory {parent}: {e.strerror}") from None
    if not parent.is_dir():
        raise OutputError(f"cannot write {label}: {parent} is not a directory")


def _check_target(p: Path, label: str, inputs: Iterable) -> int | None:
    """The mode to keep (None for a new file); OutputError for what must not be replaced."""
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise OutputError(f"cannot write {label}: a part of its path is not a directory") from None
    except OSError as e:
        raise OutputError(f"cannot write {label}: {e.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise OutputError(f"{label} is a symbolic link; evo does not write through links "
                          "(give the link's target, or remove the link)")
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{label} is a directory; give a file name")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
        raise OutputError(f"{label} is {kind}; evo only writes regular files (use -o - for stdout)")
    for inp in inputs:
        if inp not in (None, "-") and same_file(p, inp):
            raise OutputError(f"{label} is the input {inp}; refusing to overwrite it (choose another output)")
    if st.st_nlink > 1:
        raise OutputError(f"{label} has {st.st_nlink - 1} other hard link(s); replacing it would separate them "
                          "(remove the other links, or write elsewhere)")
    return stat.S_IMODE(st.st_mode)


def write_atomic(path: str | os.PathLike, data: str | bytes, *, inputs: Iterable = (),
                 label: str | None = None) -> Path:
    """Write `data` to `path` atomically (see the module's rules).  `inputs`: paths the
    caller read, which `path` may not be; `label`: how messages name the output
    (default: the path).  Returns the path written."""
    blob = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    with stream_atomic(path, inputs=inputs, label=label) as f:
        f.write(blob)
    return Path(path)


@contextlib.contextmanager
def stream_atomic(path: str | os.PathLike, *, inputs: Iterable = (), label: str | None = None):
    """Write the file `path` piece by piece, with `write_atomic`'s rules: yields a binary
    file (a fresh temporary file in the output's directory, created exclusively) that is
    renamed over `path` when the block ends without an error, and removed otherwise."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"write_atomic: expected a path, got {type(path).__name__}")
    p = Path(path)
    label = label or str(path)
    if "\0" in str(p):
        raise OutputError("an output path cannot contain a NUL byte")
    if not p.name or p.name in (".", ".."):
        raise OutputError(f"{label} is a directory; give a file name")
    if str(path).endswith((os.sep, "/")):
        raise OutputError(f"{label} ends with '/', a directory; give a file name")
    _make_parent(p, label)
    mode = _check_target(p, label, inputs)
    if mode is None:
        mode = 0o666 & ~umask()
    try:
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    except OSError as e:
        raise OutputError(f"cannot write {label}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), mode)
        os.replace(tmp, p)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise OutputError(f"cannot write {label}: {e.strerror or e}") from None
        raise


def output_dir(path: str | os.PathLike, label: str | None = None) -> Path:
    """`path` as a directory to write into, created when missing; OutputError when it is a file."""
    p = Path(path)
    label = label or str(path)
    if "\0" in str(p):
        raise OutputError("an output path cannot contain a NUL byte")
    if p.exists() and not p.is_dir():
        raise OutputError(f"{label} is not a directory (it is a file); give a directory for the outputs")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"cannot create the directory {label}: a part of its path is not a directory") from None
    except OSError as e:
        raise OutputError(f"cannot create the directory {label}: {e.strerror}") from None
    return p
