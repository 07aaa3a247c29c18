"""The one source reader: program files, `import`ed files, stdin and strings.

Everything that turns a path into program text goes through `read_path`:
`evo.compile_file`, `evo.compile` (for its imports), `import` resolution in
`evo.check.program` and the command line.  It refuses, before reading a byte,
anything that is not a regular file of a bounded size (directories, devices,
FIFOs, sockets, symlink loops, paths with NUL bytes): the file is checked with
`os.stat` and opened with O_NONBLOCK, so a FIFO or a terminal never blocks it.
Text that is not UTF-8 is a program error (E0001) at the first bad byte, the
same diagnostic for the API and for `evoc`.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from evo.diagnostics import Diagnostic, EvoError, SourceMap, Span
from evo import codes as C
from evo import limits

# The largest program file read (bytes).  Real programs are a few kilobytes.
MAX_SOURCE_BYTES = limits.value("source_bytes")


class UnreadableSource(Exception):
    """A path that is not a readable program file (why: a short phrase)."""

    def __init__(self, path: str, why: str):
        super().__init__(f"cannot read {path}: {why}")
        self.path = path
        self.why = why


@dataclass(frozen=True)
class Source:
    """Program text, the name diagnostics show, and the directory its imports are relative to."""

    text: str
    name: str
    base_dir: Path | None


def _why(e: OSError) -> str:
    if isinstance(e, FileNotFoundError):
        return "no such file"
    if isinstance(e, IsADirectoryError):
        return "it is a directory"
    if e.errno == errno.ELOOP:
        return "too many levels of symbolic links"
    if isinstance(e, PermissionError):
        return "permission denied"
    return (e.strerror or type(e).__name__).lower()


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "it is a directory"
    if stat.S_ISFIFO(mode):
        return "it is a FIFO, not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "it is a device, not a regular file"
    if stat.S_ISSOCK(mode):
        return "it is a socket, not a regular file"
    return "it is not a regular file"


def not_regular_file(path: str | os.PathLike) -> str | None:
    """Why `path` cannot be read as a regular file (missing, a FIFO, a device, a symlink loop,
    a NUL byte...), or None when it is one.  Never opens the path, so it never blocks."""
    try:
        st = os.stat(path)
    except ValueError:
        return "the path contains a NUL byte"
    except OSError as e:
        return _why(e)
    return None if stat.S_ISREG(st.st_mode) else _kind(st.st_mode)


def read_bytes(path: str | os.PathLike, limit: int = MAX_SOURCE_BYTES, env: str = "EVO_LIMIT_SOURCE_BYTES") -> bytes:
    """The bytes of a regular file of at most `limit` bytes (`env`: the variable that raises
    the limit, named in the message); raises UnreadableSource."""
    shown = os.fspath(path)
    if isinstance(shown, bytes):
        raise TypeError("a path is a str or a pathlib.Path, not bytes")
    if "\0" in shown:
        raise UnreadableSource(repr(shown), "the path contains a NUL byte")
    if shown == "":
        raise UnreadableSource("''", "the path is empty")
    try:
        st = os.stat(shown)
    except (OSError, ValueError) as e:
        raise UnreadableSource(shown, _why(e) if isinstance(e, OSError) else str(e)) from None
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableSource(shown, _kind(st.st_mode))
    if st.st_size > limit:
        raise UnreadableSource(shown, f"it is larger than the limit of {limit:,} bytes (set {env} to raise it)")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(shown, flags)
    except OSError as e:
        raise UnreadableSource(shown, _why(e)) from None
    try:
        st = os.fstat(fd)  # the file opened may not be the file stat-ed (a swapped path)
        if not stat.S_ISREG(st.st_mode):
            raise UnreadableSource(shown, _kind(st.st_mode))
        chunks, size = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise UnreadableSource(shown, f"it is larger than the limit of {limit:,} bytes (set {env} to raise it)")
        return b"".join(chunks)
    except OSError as e:
        raise UnreadableSource(shown, _why(e)) from None
    finally:
        os.close(fd)


def decode_error(name: str, data: bytes, e: UnicodeDecodeError) -> Diagnostic:
    """E0001 at the first byte that is not UTF-8."""
    before = data[: e.start]
    line = before.count(b"\n") + 1
    col = e.start - (before.rfind(b"\n") + 1) + 1
    return Diagnostic(C.UNEXPECTED_CHARACTER, f"the file is not valid UTF-8 (byte 0x{data[e.start]:02x})",
                      Span(name, line, col, line, col + 1, e.start, e.start + 1), "save the file as UTF-8")


def decode(data: bytes, name: str) -> str:
    """UTF-8 text of a program; raises EvoError (E0001) for other bytes."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        # the line is shown up to the bad byte only
        shown = data[: e.start].decode("utf-8", "replace")
        raise EvoError(decode_error(name, data, e), SourceMap({name: shown})) from None


def read_path(path: str | os.PathLike, name: str | None = None) -> Source:
    """A program file: its text (UTF-8), display name (default: the path as given) and directory.
    Raises UnreadableSource (not a readable regular file) or EvoError (not UTF-8)."""
    data = read_bytes(path)
    shown = name if name is not None else os.fspath(path)
    return Source(decode(data, shown), shown, Path(path).parent)


def read_stdin(stream=None, limit: int = MAX_SOURCE_BYTES) -> Source:
    """A program from standard input; its imports are relative to the current directory."""
    stream = stream if stream is not None else sys.stdin
    buf = getattr(stream, "buffer", None)
    if buf is not None:
        data = buf.read(limit + 1)
    else:
        text = stream.read(limit + 1)
        data = text.encode("utf-8", "surrogateescape")
    if len(data) > limit:
        raise UnreadableSource("<stdin>", f"it is larger than the limit of {limit:,} bytes (set EVO_LIMIT_SOURCE_BYTES to raise it)")
    return Source(decode(data, "<stdin>"), "<stdin>", Path.cwd())


def read_argument(arg: str) -> Source:
    """A FILE argument of the command line: a path, or `-` for stdin."""
    if arg == "-":
        return read_stdin()
    return read_path(arg)


def from_string(text: str, filename: str = "<string>", base_dir: str | os.PathLike | None = None) -> Source:
    """A program given as text: imports are relative to `base_dir`, else the current directory."""
    if not isinstance(text, str):
        raise TypeError(f"the source must be a str, not {type(text).__name__}"
                        + ("; decode it first or use evo.compile_file" if isinstance(text, (bytes, bytearray))
                           else ""))
    if not isinstance(filename, str):
        raise TypeError(f"filename must be a str, not {type(filename).__name__}")
    if base_dir is not None and not isinstance(base_dir, (str, os.PathLike)):
        raise TypeError(f"base_dir must be a str or a path, not {type(base_dir).__name__}")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
        raise ValueError(f"the source is larger than the limit of {MAX_SOURCE_BYTES:,} bytes "
                         "(set EVO_LIMIT_SOURCE_BYTES to raise it)")
    return Source(text, filename, Path(base_dir) if base_dir is not None else Path.cwd())
