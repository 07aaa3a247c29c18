"""Diagnostics as data, rendered in one place.

Every error the compiler reports for a program is a :class:`Diagnostic` with a
code, a message, a primary :class:`Span`, an optional hint and notes.  Checks
collect them; :class:`EvoError` carries them to the user; :func:`render` turns
them into ``file:line:col: error[CODE]: message`` + source line + caret + hint.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from evo import codes
from evo.codes import CODES

__all__ = ["CODES", "codes", "Span", "Note", "Diagnostic", "EvoError", "SourceMap", "Collector",
           "render", "render_all", "did_you_mean"]


@dataclass(frozen=True)
class Span:
    """A half-open region of a source file (1-based lines and columns)."""

    filename: str
    line: int
    column: int
    end_line: int
    end_column: int
    start: int = 0  # character offsets
    end: int = 0

    def __str__(self) -> str:
        return f"{self.filename}:{self.line}:{self.column}"

    @staticmethod
    def unknown(filename: str = "<unknown>") -> "Span":
        return Span(filename, 1, 1, 1, 1, 0, 0)

    def merge(self, other: "Span") -> "Span":
        if other.filename != self.filename:
            return self
        a, b = (self, other) if self.start <= other.start else (other, self)
        end = self if self.end >= other.end else other
        return Span(self.filename, a.line, a.column, end.end_line, end.end_column, a.start, end.end)


@dataclass(frozen=True)
class Note:
    message: str
    span: Span | None = None


@dataclass(frozen=True)
class Diagnostic:
    code: str
    message: str
    span: Span
    hint: str | None = None
    notes: tuple[Note, ...] = ()
    severity: str = "error"

    @property
    def location(self) -> str:
        return str(self.span)


# Every diagnostic code the compiler can emit: evo/codes.py (named constants and descriptions).


class EvoError(Exception):
    """A program error: one or more diagnostics.

    ``filename``, ``line`` and ``column`` locate the first diagnostic; ``str()``
    is the rendered message (with source line and caret when the source is known).
    """

    def __init__(self, diagnostics: Sequence[Diagnostic] | Diagnostic, sources: "SourceMap | None" = None):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        self.sources = sources or SourceMap()
        first = self.diagnostics[0]
        self.filename = first.span.filename
        self.line = first.span.line
        self.column = first.span.column
        self.code = first.code
        super().__init__(render_all(self.diagnostics, self.sources))

    def __str__(self) -> str:
        return render_all(self.diagnostics, self.sources)


class SourceMap:
    """filename -> source text, to render the offending line."""

    def __init__(self, texts: dict[str, str] | None = None):
        self.texts: dict[str, str] = dict(texts or {})

    def add(self, filename: str, text: str) -> None:
        self.texts[filename] = text

    def line(self, filename: str, line: int) -> str | None:
        text = self.texts.get(filename)
        if text is None:
            return None
        # "\n" only: the lexer counts lines so (str.splitlines also splits at \f, \u2028, ...)
        lines = [ln.rstrip("\r") for ln in text.split("\n")]
        if lines and lines[-1] == "":
            lines.pop()
        if 1 <= line <= len(lines):
            return lines[line - 1]
        if line == len(lines) + 1:
            return ""
        return None


def _sanitize(s: str) -> str:
    # Never print control characters from a program back to a terminal.
    return "".join(ch if (ch == "\t" or ch.isprintable()) else "\ufffd" for ch in s)


def render(d: Diagnostic, sources: SourceMap | None = None) -> str:
    sources = sources or SourceMap()
    out = [f"{d.span}: {d.severity}[{d.code}]: {_sanitize(d.message)}"]
    text = sources.line(d.span.filename, d.span.line)
    if text is not None:
        text = _sanitize(text.expandtabs(1))
        gutter = f"{d.span.line:>4} | "
        out.append(gutter + text)
        start = max(d.span.column - 1, 0)
        if d.span.end_line == d.span.line and d.span.end_column > d.span.column:
            width = d.span.end_column - d.span.column
        else:
            width = max(len(text) - start, 1) if d.span.end_line != d.span.line else 1
        width = max(1, min(width, max(len(text) - start, 1)))
        out.append(" " * (len(gutter) - 2) + "| " + " " * start + "^" + "~" * (width - 1))
    for note in d.notes:
        where = f"{note.span}: " if note.span else ""
        out.append(f"  note: {where}{_sanitize(note.message)}")
    if d.hint:
        out.append(f"  hint: {_sanitize(d.hint)}")
    return "\n".join(out)


def render_all(diags: Iterable[Diagnostic], sources: SourceMap | None = None) -> str:
    diags = list(diags)
    body = "\n".join(render(d, sources) for d in diags)
    if len(diags) > 1:
        body += f"\n{len(diags)} errors"
    return body


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    cands = sorted(set(candidates))
    close = difflib.get_close_matches(name, cands, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in cands}
        if name.lower() in lowered:
            close = [lowered[name.lower()]]
    return f"did you mean '{close[0]}'?" if close else None


@dataclass
class Collector:
    """Collects diagnostics of one phase; `raise_if_any` stops after the phase."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    sources: SourceMap = field(default_factory=SourceMap)

    def error(self, code: str, message: str, span: Span, hint: str | None = None,
              notes: Sequence[Note] = ()) -> None:
        assert code in CODES, code
        d = Diagnostic(code, message, span, hint, tuple(notes))
        if d not in self.diagnostics:
            self.diagnostics.append(d)

    def raise_if_any(self) -> None:
        if self.diagnostics:
            ds = sorted(self.diagnostics, key=lambda d: (d.span.filename, d.span.start, d.code))
            raise EvoError(ds, self.sources)


class Abort(Exception):
    """Raised inside a check to stop evaluating one construct after an error was
    recorded; caught by the check's driver, which carries on with the next one."""
