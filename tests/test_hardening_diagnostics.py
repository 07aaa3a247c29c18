"""Diagnostics at scale: thousands of errors are capped per phase with a summary line,
de-duplication and line lookup are linear, long lines are echoed as a window around
the caret, and a network past the layer limit reports it once."""

from __future__ import annotations

import re
import time

import evo
from evo.diagnostics import MAX_DIAGNOSTICS, MAX_ECHO, MAX_KEPT, Collector, Note, SourceMap, Span, render


def _err(src: str) -> evo.EvoError:
    try:
        evo.compile(src, "big.evo")
    except evo.EvoError as e:
        return e
    raise AssertionError("compiled")


def test_many_errors_are_capped_with_a_summary_line():
    n = 1500
    src = "network N(x: Tensor[N, 3, 8, 8]) {\n" + "".join(f"    b{i} = foo{i % 7}(x)\n" for i in range(n)) \
        + "    return x\n}\n"
    e = _err(src)
    text = str(e)
    assert len(e.diagnostics) == MAX_KEPT and e.omitted == n - MAX_KEPT
    # the first ones in source order are shown, each once
    shown = [int(m) for m in re.findall(r"^big\.evo:(\d+):", text, re.M)]
    assert shown == list(range(2, 2 + MAX_DIAGNOSTICS))
    assert f"... {n - MAX_DIAGNOSTICS:,} more errors not shown" in text
    assert text.endswith(f"{n} errors")
    assert len(text) < 300 * MAX_DIAGNOSTICS


def test_collector_deduplicates_in_linear_time():
    col = Collector()
    span = [Span("f", i + 1, 1, i + 1, 2, i, i + 1) for i in range(60_000)]
    t0 = time.perf_counter()
    for rep in range(2):
        for s in span:
            col.error("E0103", "unknown layer or block 'foo'", s)
    assert time.perf_counter() - t0 < 20  # a list scan per error took hours here
    assert len(col.diagnostics) == MAX_KEPT and col.omitted == 60_000 - MAX_KEPT
    try:
        col.raise_if_any()
    except evo.EvoError as e:
        assert str(e).endswith("60,000 errors")
        assert e.omitted == 60_000 - MAX_KEPT and len(str(e)) < 300 * MAX_DIAGNOSTICS


def test_source_lines_are_split_once():
    text = "".join(f"line {i}\n" for i in range(200_000))
    sm = SourceMap({"f": text})
    t0 = time.perf_counter()
    got = [sm.line("f", i) for i in range(1, 200_001, 7)]
    assert time.perf_counter() - t0 < 20  # splitting the text per lookup took minutes here
    assert got[:3] == ["line 0", "line 7", "line 14"]
    assert sm.line("f", 200_001) == "" and sm.line("f", 200_002) is None


def test_a_long_line_is_echoed_around_the_caret():
    pad = "x + " * 250_000  # a 1 MB line
    src = f"network N(x: Tensor[N, 3, 8, 8]) {{\n    y = relu(x); z = {pad}x; w = bogus(z)\n    return w\n}}\n"
    col = src.split("\n")[1].index("bogus") + 1
    d = evo.Diagnostic("E0103", "unknown layer or block 'bogus'", Span("f", 2, col, 2, col + 5))
    out = render(d, SourceMap({"f": src}))
    lines = out.split("\n")
    assert len(out) < 3 * MAX_ECHO + 200
    echoed, caret = lines[1], lines[2]
    assert len(echoed) <= MAX_ECHO + 10 and echoed.split("| ", 1)[1].startswith("\u2026")
    at = caret.index("^")
    assert echoed[at:at + 5] == "bogus" and caret[at:] == "^~~~~"
    # a caret near the start keeps the start and cuts the end
    d0 = evo.Diagnostic("E0103", "m", Span("f", 2, 5, 2, 6))
    first = render(d0, SourceMap({"f": src})).split("\n")
    assert first[1].endswith("\u2026") and first[1][first[2].index("^")] == "y"


def test_messages_and_notes_are_bounded():
    d = evo.Diagnostic("E0103", "unknown layer or block '" + "q" * 100_000 + "'", Span("f", 1, 1, 1, 2),
                       "h" * 100_000, tuple(Note(f"note {i}") for i in range(5000)))
    out = render(d, SourceMap({"f": "abc\n"}))
    assert len(out) < 100 * MAX_DIAGNOSTICS
    assert "4,900 more notes" in out


def test_past_the_layer_limit_the_error_is_reported_once():
    body = "".join(f"    b{i} = relu(a)\n" for i in range(300))
    src = ("network N(x: Tensor[N, 3, 8, 8]) {\n    a = seq(x) { repeat 99990 { relu() } }\n" + body
           + "    return a\n}\n")
    e = _err(src)
    assert [d.code for d in e.diagnostics] == ["E0202"]
    assert "100,000 layers" in str(e) and "docs/limits.md" in str(e)
