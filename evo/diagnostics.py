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

__all__ = ["CODES", "codes", "Span", "Note", "Diagnostic", "EvoError", "SourceMap", "Collector", "Abort",
           "Fatal", "render", "render_all", "did_you_mean", "MAX_DIAGNOSTICS", "MAX_ECHO", "MAX_KEPT"]


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

    def __init__(self, diagnostics: Sequence[Diagnostic] | Diagnostic, sources: "SourceMap | None" = None,
                 omitted: int = 0):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        diagnostics = tuple(diagnostics)
        # at most MAX_KEPT are kept (MAX_DIAGNOSTICS of them rendered); `omitted` counts the others
        self.diagnostics: tuple[Diagnostic, ...] = diagnostics[:MAX_KEPT]
        self.omitted = omitted + len(diagnostics) - len(self.diagnostics)
        self.sources = sources or SourceMap()
        first = self.diagnostics[0]
        self.filename = first.span.filename
        self.line = first.span.line
        self.column = first.span.column
        self.code = first.code
        super().__init__(render_all(self.diagnostics, self.sources, self.omitted))

    def __str__(self) -> str:
        return render_all(self.diagnostics, self.sources, self.omitted)


class SourceMap:
    """filename -> source text, to render the offending line."""

    def __init__(self, texts: dict[str, str] | None = None):
        self.texts: dict[str, str] = dict(texts or {})
        self._lines: dict[str, tuple[str, list[str]]] = {}  # filename -> (text, its lines), split once

    def add(self, filename: str, text: str) -> None:
        self.texts[filename] = text

    def line(self, filename: str, line: int) -> str | None:
        text = self.texts.get(filename)
        if text is None:
            return None
        cached = self._lines.get(filename)
        if cached is None or cached[0] is not text:
            # "\n" only: the lexer counts lines so (str.splitlines also splits at \f, \u2028, ...)
            lines = text.split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            cached = self._lines[filename] = (text, lines)
        lines = cached[1]
        if 1 <= line <= len(lines):
            return lines[line - 1].rstrip("\r")
        if line == len(lines) + 1:
            return ""
        return None


def _sanitize(s: str) -> str:
    # Never print control characters from a program back to a terminal.
    return "".join(ch if (ch == "\t" or ch.isprintable()) else "\ufffd" for ch in s)


# An echoed source line longer than this is cut to a window around the caret.
MAX_ECHO = 160
# At most this many diagnostics of one phase are kept and rendered; a summary line counts the rest.
MAX_DIAGNOSTICS = 100
# Messages, hints and notes are cut to this length (they may quote program text).
MAX_MESSAGE = 500
# At most this many diagnostics of one phase are kept as data (`EvoError.diagnostics`):
# enough to show the first MAX_DIAGNOSTICS in source order whatever order the checks find them in.
MAX_KEPT = 10 * MAX_DIAGNOSTICS


def _clip(s: str, n: int = MAX_MESSAGE) -> str:
    return s if len(s) <= n else s[:n - 1] + "\u2026"


def _window(text: str, start: int, width: int) -> tuple[str, int, int]:
    """(text, start, width) cut to about MAX_ECHO characters around the caret."""
    if len(text) <= MAX_ECHO:
        return text, start, width
    width = min(width, MAX_ECHO // 2)
    lo = max(0, min(start - MAX_ECHO // 3, len(text) - MAX_ECHO))
    hi = min(len(text), lo + MAX_ECHO)
    cut = text[lo:hi]
    if lo > 0:
        cut = "\u2026" + cut[1:]
    if hi < len(text):
        cut = cut[:-1] + "\u2026"
    return cut, start - lo, max(1, min(width, hi - start))


def render(d: Diagnostic, sources: SourceMap | None = None) -> str:
    sources = sources or SourceMap()
    out = [f"{d.span}: {d.severity}[{d.code}]: {_sanitize(_clip(d.message))}"]
    text = sources.line(d.span.filename, d.span.line)
    if text is not None:
        start = max(d.span.column - 1, 0)
        if len(text) > MAX_ECHO:  # cut before expanding tabs and sanitizing: a 1 MB line costs nothing
            text, start, _ = _window(text, start, 1)
        text = _sanitize(text.expandtabs(1))
        gutter = f"{d.span.line:>4} | "
        if d.span.end_line == d.span.line and d.span.end_column > d.span.column:
            width = d.span.end_column - d.span.column
        else:
            width = max(len(text) - start, 1) if d.span.end_line != d.span.line else 1
        width = max(1, min(width, max(len(text) - start, 1)))
        out.append(gutter + text)
        out.append(" " * (len(gutter) - 2) + "| " + " " * start + "^" + "~" * (width - 1))
    for note in d.notes[:MAX_DIAGNOSTICS]:
        where = f"{note.span}: " if note.span else ""
        out.append(f"  note: {where}{_sanitize(_clip(note.message))}")
    if len(d.notes) > MAX_DIAGNOSTICS:
        out.append(f"  note: ... and {len(d.notes) - MAX_DIAGNOSTICS:,} more notes")
    if d.hint:
        out.append(f"  hint: {_sanitize(_clip(d.hint))}")
    return "\n".join(out)


def render_all(diags: Iterable[Diagnostic], sources: SourceMap | None = None, omitted: int = 0) -> str:
    """The diagnostics (at most MAX_DIAGNOSTICS of them) and a count line; `omitted`
    more were found but not kept."""
    diags = list(diags)
    shown = diags[:MAX_DIAGNOSTICS]
    total = len(diags) + omitted
    body = "\n".join(render(d, sources) for d in shown)
    if total > len(shown):
        body += (f"\n... {total - len(shown):,} more errors not shown (the first {len(shown)} are listed; "
                 "fix these and compile again)")
    if total > 1:
        body += f"\n{total:,} errors" if total >= 10_000 else f"\n{total} errors"
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
    omitted: int = 0   # distinct diagnostics past the cap (counted, not kept)
    _seen: set = field(default_factory=set, repr=False)

    def error(self, code: str, message: str, span: Span, hint: str | None = None,
              notes: Sequence[Note] = ()) -> None:
        assert code in CODES, code
        d = Diagnostic(code, message, span, hint, tuple(notes))
        if d in self._seen:  # de-duplication in constant time
            return
        self._seen.add(d)
        if len(self.diagnostics) < MAX_KEPT:
            self.diagnostics.append(d)
        else:
            self.omitted += 1

    def raise_if_any(self) -> None:
        if self.diagnostics:
            ds = sorted(self.diagnostics, key=lambda d: (d.span.filename, d.span.start, d.code))
            raise EvoError(ds, self.sources, self.omitted)


class Abort(Exception):
    """Raised inside a check to stop evaluating one construct after an error was
    recorded; caught by the check's driver, which carries on with the next one."""


class Fatal(Abort):
    """An Abort that ends the whole construct (a network past a resource limit):
    the statement-by-statement recovery re-raises it instead of carrying on."""
