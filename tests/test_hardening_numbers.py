"""Numbers at the extremes: every value a later stage could not handle is refused by the
checker, once, with a diagnostic at the value; limits name themselves and how to raise
them; JSON output never contains Infinity or NaN."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import evo
from conftest import evoc_batch
from evo import limits

ROOT = Path(__file__).resolve().parents[1]
QUICK = (ROOT / "examples" / "quickstart.evo").read_text(encoding="utf-8")


def _error(src: str) -> evo.EvoError:
    with pytest.raises(evo.EvoError) as info:
        evo.compile(src, "n.evo")
    return info.value


def _at(e: evo.EvoError, src: str, text: str) -> None:
    """The first diagnostic points at `text` in `src`."""
    line = src[:src.index(text)].count("\n") + 1
    col = src.index(text) - (src.rfind("\n", 0, src.index(text)) + 1) + 1
    assert (e.line, e.column) == (line, col), (str(e), line, col)


HARDWARE = [
    ("frequency = 500 MHz", "frequency = 1e300 MHz", "1e300"),
    ("frequency = 500 MHz", "frequency = 1e-300 MHz", "1e-300"),
    ("mac_energy = 0.2 pJ", "mac_energy = 4e-320 pJ", "4e-320"),    # a denormal
    ("mac_energy = 0.2 pJ", "mac_energy = 1e30 pJ", "1e30"),
    ("pes = 256", "pes = 1e18", "1e18"),
    ("macs_per_pe = 1", "macs_per_pe = 1e12", "1e12"),
    ("word = 8 bit", "word = 1e12 bit", "1e12"),
    ("bandwidth = 12.8 GB/s", "bandwidth = 1e-300 GB/s", "1e-300"),
    ("bandwidth = 4 B/cycle", "bandwidth = 1e300 B/cycle", "1e300"),
    ("size = 512 KiB", "size = 1e300 KiB", "1e300"),
    ("energy = 100 pJ/B", "energy = 1e-310 pJ/B", "1e-310"),
]


@pytest.mark.parametrize("old,new,value", HARDWARE)
def test_absurd_hardware_figures_are_refused_at_the_value(old, new, value):
    assert old in QUICK
    src = QUICK.replace(old, new, 1)
    e = _error(src)
    # out of range; a value that underflows to zero in base units is "not positive"
    assert e.code in ("E0203", "E0404") and len(e.diagnostics) == 1, str(e)
    _at(e, src, value)


def test_infinite_literals_are_refused():
    src = QUICK.replace("frequency = 500 MHz", "frequency = 1e999 MHz")
    e = _error(src)
    _at(e, src, "1e999")


OPS = [
    ("conv2d(16, 3, padding=1, bias=false)", "conv2d(16, 3, padding=100000000, bias=false)", "100000000"),
    ("conv2d(16, 3, padding=1, bias=false)", "conv2d(16, 3, padding=10000000000000000000000, bias=false)",
     "10000000000000000000000"),
    ("conv2d(64, 3, padding=1, bias=false)", "conv2d(99999999, 3, padding=1, bias=false)", "99999999"),
    ("maxpool2d(2)", "maxpool2d(2, stride=5000000)", "5000000"),
    ("adaptive_avgpool2d(features, 1)", "adaptive_avgpool2d(features, 123456789)", "123456789"),
]


@pytest.mark.parametrize("old,new,value", OPS)
def test_integer_arguments_beyond_the_limit_are_refused_at_the_argument(old, new, value):
    src = QUICK.replace(old, new, 1)
    e = _error(src)
    assert e.code == "E0203", str(e)
    _at(e, src, value)
    assert "EVO_LIMIT_INT_ARGUMENT" in str(e)


def test_input_dimensions_parameters_and_activations_have_budgets():
    src = QUICK.replace("Tensor[N, 3, 64, 64]", "Tensor[N, 3, 64, 2000000]")
    e = _error(src)
    assert e.code == "E0203" and "dimension 3 of the input" in str(e)
    # each dimension allowed, the activations too large (one sample, float32)
    src = QUICK.replace("Tensor[N, 3, 64, 64]", "Tensor[N, 3, 100000, 100000]")
    e = _error(src)
    assert e.code == "E0202" and "activation bytes" in str(e) and "EVO_LIMIT_ACTIVATION_BYTES" in str(e)
    _at(e, src, "QuickNet(")
    # parameters: a huge linear head
    src = QUICK.replace("adaptive_avgpool2d(features, 1)", "adaptive_avgpool2d(features, 1000)") \
               .replace("linear(flatten(pool), classes)", "linear(flatten(pool), 1000)")
    e = _error(src)
    assert e.code == "E0202" and "parameters" in str(e) and "EVO_LIMIT_PARAMS" in str(e)
    # the count is exact: 64 * 1000 * 1000 inputs -> 1000 outputs, plus the rest of the network
    assert f"{64_000_000 * 1000 + 1000 + 16 * 27 + 32 * 144 + 64 * 288 + 2 * (16 + 32 + 64):,}" in str(e)


def test_target_and_evolve_sizes_are_bounded():
    src = QUICK.replace("batch = 1", "batch = 1000000000000")
    e = _error(src)
    assert e.code == "E0203" and "EVO_LIMIT_BATCH" in str(e)
    _at(e, src, "1000000000000")
    src = QUICK.replace("fps = 30", "fps = 1e300")
    _at(_error(src), src, "1e300")
    evolve = (ROOT / "examples" / "evolve.evo").read_text(encoding="utf-8")
    assert "generations = " in evolve
    import re
    src = re.sub(r"generations = \d+", "generations = 10000000000", evolve)
    e = _error(src)
    assert "EVO_LIMIT_GENERATIONS" in str(e)
    _at(e, src, "10000000000")
    src = re.sub(r"population = \d+", "population = 10000000000", evolve)
    assert "EVO_LIMIT_POPULATION" in str(_error(src))


def test_search_space_is_bounded():
    src = QUICK + """
evolve S {
    target = Edge
    gene EdgeNPU.pes in 1..1000000
    gene EdgeNPU.macs_per_pe in 1..1000000
    gene EdgeNPU.global.size in 1 KiB..1000001 KiB step 1 KiB
    minimize latency
}
"""
    e = _error(src)
    assert e.code == "E0511" and "EVO_LIMIT_SEARCH_SPACE" in str(e)
    assert f"{999_999 * 999_999 * 1_000_000:,}" in str(e)
    _at(e, src, "S {")


def test_limits_are_raised_by_their_environment_variable():
    src = QUICK.replace("conv2d(16, 3, padding=1, bias=false)", "conv2d(16, 3, padding=2000000, bias=false)")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import evo\n"
            "try:\n    evo.compile(sys.argv[2])\nexcept evo.EvoError as e:\n    print(e.code, e.diagnostics[0].message)\n")
    env = {**os.environ, "EVO_LIMIT_INT_ARGUMENT": "3_000_000"}
    out = subprocess.run([sys.executable, "-c", code, str(ROOT), src], env=env, capture_output=True, text=True,
                         timeout=300).stdout
    # past the argument limit, the activation budget is what refuses it
    assert out.startswith("E0202") and "activation bytes" in out, out
    env["EVO_LIMIT_INT_ARGUMENT"] = "not a number"  # ignored: the default stands
    out = subprocess.run([sys.executable, "-c", code, str(ROOT), src], env=env, capture_output=True, text=True,
                         timeout=300).stdout
    assert out.startswith("E0203"), out


def test_json_output_is_strict():
    from evo.cost.report import dumps

    assert json.loads(dumps({"a": math.inf, "b": [1.0, -math.inf, math.nan], "c": 2.5})) == \
        {"a": None, "b": [1.0, None, None], "c": 2.5}
    examples = ("quickstart.evo", "evolve.evo")  # both in one fresh interpreter
    procs = evoc_batch([{"argv": ["cost", "--format", "json", ROOT / "examples" / ex], "cwd": ROOT} for ex in examples])
    for ex, proc in zip(examples, procs):
        assert proc.returncode == 0, proc.stderr

        def bad(c):
            raise AssertionError(f"{ex}: {c} in JSON")

        json.loads(proc.stdout, parse_constant=bad)


def test_every_limit_is_documented():
    doc = (ROOT / "docs" / "limits.md").read_text(encoding="utf-8")
    for lim in limits.LIMITS.values():
        assert lim.env in doc, lim.env
        assert limits.fmt(lim.default, lim.unit) in doc, (lim.name, limits.fmt(lim.default, lim.unit))


def test_cost_batch_is_bounded():
    prog = evo.compile(QUICK)
    with pytest.raises(ValueError, match="EVO_LIMIT_BATCH"):
        prog.cost("QuickNet", hardware="EdgeNPU", batch=limits.value("batch") + 1)
    import contextlib
    import io

    from evo.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["cost", str(ROOT / "examples" / "quickstart.evo"), "--batch", "10000000000"])
    assert code == 2 and "EVO_LIMIT_BATCH" in err.getvalue()
