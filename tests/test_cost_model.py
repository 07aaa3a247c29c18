"""The cost model (evo/cost): hand-computed small layers, bounds, monotonicity, fusion, reports.

Every expected number in the hand-computed tests is derived in the comment next to it
from the equations in docs/cost-model.md.  No test measures time (see
bench/bench_cost_speed.py for speed), except one generous bound on the CPU time of the
most extreme shapes the checker allows (the work must not grow with tensor extents)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evo.cost import (
    OBJECTIVES,
    PRESETS,
    ConvWorkload,
    CopyWorkload,
    EltwiseWorkload,
    Hardware,
    HardwareError,
    Level,
    MatmulWorkload,
    PoolWorkload,
    ReduceWorkload,
    WorkloadError,
    adaptive_pool,
    clear_cache,
    conv2d,
    cost_network,
    cost_op,
    hardware_from_dict,
    linear,
)
from evo.cost.mapping import axis_rows
from evo.cost.report import fmt_bytes, fmt_energy, fmt_time, format_op, format_table, to_csv, to_dict, to_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pJ = 1e-12
REL = 1e-9

# EVO_COST_EXAMPLES=2000 runs a longer, randomised search (default: 30-50 examples, derandomised)
_N = int(os.environ.get("EVO_COST_EXAMPLES", "0"))
HYP = settings(max_examples=_N or 30, deadline=None, derandomize=not _N, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HYP_MORE = settings(HYP, max_examples=_N or 50)


def toy(*, pes=1, mpp=1, word=8, f=1e9, off_bw=1e9, glb=1 << 20, glb_bw=1e9, pe=1024, pe_bw=1e9,
        e_off=100 * pJ, e_glb=10 * pJ, e_pe=1 * pJ, e_mac=1 * pJ) -> Hardware:
    """Round numbers for hand computation: 1 GHz, 1 GB/s everywhere, 100/10/1 pJ per byte."""
    return Hardware("Toy", f, pes, mpp, word, e_mac, Level("offchip", "DRAM", None, off_bw, e_off),
                    Level("global", "GLB", glb, glb_bw, e_glb), Level("pe", "Spad", pe, pe_bw, e_pe))


def close(a, b, rel=1e-12):
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-30)


# ---------------------------------------------------------------------------
# hardware descriptions
def test_hardware_from_dict_checker_shape_and_aliases():
    d = {"name": "X", "frequency_hz": 2e8, "pes": 168, "macs_per_pe": 1, "word_bits": 16.0, "mac_energy_j": 1e-12,
         "levels": {"offchip": {"name": "DRAM", "size_bytes": None, "bandwidth_bps": 25.6e9,
                                "energy_per_byte_j": 200e-12},
                    "global": {"name": "GLB", "size_bytes": 108 * 1024.0, "bandwidth_bps": 64e9,
                               "energy_per_byte_j": 6e-12},
                    "pe": {"name": "Spad", "size_bytes": 512.0, "bandwidth_bps": 4e8, "energy_per_byte_j": 1e-12}}}
    hw = hardware_from_dict(d)
    assert hw.pes == 168 and hw.glb.size_bytes == 110592 and hw.offchip.size_bytes is None
    assert hw.peak_macs_per_s == 168 * 2e8 and hw.word_bytes == 2
    flat = {"name": "X", "frequency": 2e8, "pes": 168.0, "word": 16, "mac_energy": 1e-12,
            "offchip": {"name": "DRAM", "bandwidth": 25.6e9, "energy": 200e-12},
            "glb": {"name": "GLB", "size": 108 * 1024.0, "bandwidth": 64e9, "energy": 6e-12},
            "pe": {"name": "Spad", "size": 512.0, "bandwidth": 4e8, "energy": 1e-12}}
    assert hardware_from_dict(flat) == hw
    assert hardware_from_dict(hw.as_dict()) == hw

    class Spec:  # the checker's HardwareSpec exposes as_dict()
        def as_dict(self):
            return d
    w = EltwiseWorkload(10)
    assert cost_op(w, d) == cost_op(w, Spec()) == cost_op(w, hw)


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d["levels"]["pe"].update(size_bytes=1e9), "larger than the global"),
    (lambda d: d["levels"]["global"].update(size_bytes=0), "positive"),
    (lambda d: d["levels"]["global"].update(size_bytes=None), "needs a size"),
    (lambda d: d.update(pes=0), "positive integer"),
    (lambda d: d.update(pes=1.5), "positive integer"),
    (lambda d: d["levels"].pop("pe"), "missing the 'pe' level"),
    (lambda d: d["levels"]["offchip"].update(bandwidth_bps=-1), "positive"),
])
def test_hardware_errors(mutate, words):
    d = PRESETS["Eyeriss"].as_dict()
    mutate(d)
    with pytest.raises(HardwareError, match=words):
        hardware_from_dict(d)


_UNITS = {"Hz": 1, "kHz": 1e3, "MHz": 1e6, "GHz": 1e9, "bit": 1 / 8, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9,
          "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3, "J": 1, "mJ": 1e-3, "uJ": 1e-6, "nJ": 1e-9, "pJ": 1e-12,
          "fJ": 1e-15}


def _parse_example(path: str) -> dict[str, Hardware]:
    """A tiny reader for the hardware subset of the language (enough for examples/hardware.evo)."""
    with open(path, encoding="utf-8") as fh:
        text = re.sub(r"#[^\n]*", "", fh.read())
    raw: dict[str, dict] = {}
    for m in re.finditer(r"hardware\s+(\w+)(?:\s+extends\s+(\w+))?\s*\{((?:[^{}]|\{[^{}]*\})*)\}", text):
        name, base, body = m.groups()
        r = {"top": {}, "levels": {}} if base is None else {"top": dict(raw[base]["top"]),
                                                            "levels": {k: (n, dict(a)) for k, (n, a)
                                                                       in raw[base]["levels"].items()}}
        for lm in re.finditer(r"(offchip|global|pe)\s+(\w+)\s*\{([^{}]*)\}", body):
            r["levels"][lm.group(1)] = (lm.group(2), dict(re.findall(r"(\w+)\s*=\s*([^;\n]+)", lm.group(3))))
        body_top = re.sub(r"(offchip|global|pe)\s+\w+\s*\{[^{}]*\}", "", body)
        for k, v in re.findall(r"([\w.]+)\s*=\s*([^;\n]+)", body_top):
            if "." in k:
                lvl, attr = k.split(".")
                r["levels"][lvl][1][attr] = v
            else:
                r["top"][k] = v
        raw[name] = r

    def q(v: str, f: float) -> float:
        num, unit = re.fullmatch(r"\s*([\d.eE_+-]+)\s*([\w/]*)\s*", v).groups()
        x = float(num.replace("_", ""))
        if not unit:
            return x
        if unit.endswith("/cycle"):
            return x * _UNITS[unit.split("/")[0]] * f
        if unit.endswith("/s"):
            return x * _UNITS[unit.split("/")[0]]
        if "/" in unit:
            a, b = unit.split("/")
            return x * _UNITS[a] / _UNITS[b]
        return x * _UNITS[unit]

    out = {}
    for name, r in raw.items():
        t = r["top"]
        f = q(t["frequency"], 0)
        lv = {k: {"name": n, "size": q(a["size"], f) if "size" in a else None, "bandwidth": q(a["bandwidth"], f),
                  "energy": q(a["energy"], f)} for k, (n, a) in r["levels"].items()}
        out[name] = hardware_from_dict({"name": name, "frequency": f, "pes": q(t["pes"], f),
                                        "macs_per_pe": q(t.get("macs_per_pe", "1"), f),
                                        "word": q(t.get("word", "16 bit"), f) * 8,
                                        "mac_energy": q(t.get("mac_energy", "1 pJ"), f), "levels": lv,
                                        "operand_energy_j": q(t["operand_energy"], f) if "operand_energy" in t
                                        else None})
    return out


def _same_hw(a: Hardware, b: Hardware) -> bool:
    da, db = a.as_dict(), b.as_dict()

    def eq(x, y):
        if isinstance(x, dict):
            return x.keys() == y.keys() and all(eq(x[k], y[k]) for k in x)
        if isinstance(x, float) or isinstance(y, float):
            return (x is None and y is None) or (x is not None and y is not None and math.isclose(x, y, rel_tol=1e-9))
        return x == y
    return eq(da, db)


def test_presets_mirror_examples_hardware_evo():
    tiers = _parse_example(os.path.join(ROOT, "examples", "hardware.evo"))
    assert len(tiers) >= 3
    assert set(tiers) == set(PRESETS)
    for name, hw in tiers.items():
        assert _same_hw(hw, PRESETS[name]), name
    e = PRESETS["Eyeriss"]
    assert (e.pes, e.frequency_hz, e.glb.size_bytes, e.word_bits) == (168, 200e6, 108 * 1024, 16)
    # Eyeriss ratios: DRAM 200x, GLB 6x, spad 1x of a MAC per 16-bit access
    per_access = [lv.energy_per_byte_j * e.word_bytes / e.mac_energy_j for lv in (e.offchip, e.glb, e.pe)]
    assert [round(x, 9) for x in per_access] == [200, 6, 1]


def test_example_compiles_with_the_compiler_when_available():
    try:
        import evo
        prog = evo.compile_file(os.path.join(ROOT, "examples", "hardware.evo"))
        tiers = prog.hardware
    except Exception as exc:  # noqa: BLE001  (the compiler is developed alongside; check it when it works)
        pytest.skip(f"compiler not usable here: {exc}")
    for name, d in tiers.items():
        hw = hardware_from_dict(d if isinstance(d, dict) else d.as_dict())
        assert _same_hw(hw, PRESETS[name]), name


# ---------------------------------------------------------------------------
# workloads
def test_workload_shapes_and_macs():
    c = conv2d(1, 3, 224, 224, 64, 7, stride=2, padding=3)
    assert (c.P, c.Q, c.pad_h, c.H_in) == (112, 112, 3, 224)
    assert c.macs == 64 * 3 * 112 * 112 * 49
    assert ConvWorkload(1, 64, 3, 112, 112, 7, 7, 2, 2, H_in=224, W_in=224).pad_h == 3  # inferred
    dw = conv2d(2, 32, 10, 10, 32, 3, padding=1, groups=32)
    assert dw.macs == 2 * 32 * 1 * 10 * 10 * 9
    assert {t.name: t.elements for t in dw.tensors} == {"input": 6400, "weight": 288, "output": 6400}
    fc = linear(4, 2048, 1000)
    assert fc.macs == 4 * 2048 * 1000 and fc.bias
    assert MatmulWorkload(3, 5, 7, batch=2).macs == 210
    assert EltwiseWorkload(100, 2).macs == 100
    assert adaptive_pool(1, 8, 7, 7, 1, 1).macs == 8 * 49
    assert ReduceWorkload(4, 1000, 4, 1000).macs == 16000
    assert CopyWorkload(10, 10, view=True).macs == 0
    with pytest.raises(WorkloadError):
        ConvWorkload(1, 6, 4, 2, 2, groups=4)
    with pytest.raises(WorkloadError):
        EltwiseWorkload(0)


def test_axis_rows_by_hand():
    # 4 output rows, 3x1 filter, stride 1, no padding, 6 input rows
    assert axis_rows(4, 4, 3, 3, 1, 1, 0, 6) == (6, 6)      # one tile: rows 0..5
    assert axis_rows(4, 2, 3, 3, 1, 1, 0, 6) == (8, 4)      # tiles [0,1] -> rows 0..3, [2,3] -> rows 2..5
    # padding 1 on 4 rows: per output row 2, 3, 3, 2 in-range rows
    assert axis_rows(4, 1, 3, 3, 1, 1, 1, 4) == (10, 3)
    # 1x1 stride 2 touches rows 0 and 2 only
    assert axis_rows(2, 2, 1, 1, 2, 1, 0, 4) == (2, 2)
    # taps tiled one by one: every (row, tap) pair once, padding excluded
    assert axis_rows(4, 4, 3, 1, 1, 1, 1, 4) == (10, 4)


def _rows_by_enumeration(out_len, t_out, k_len, t_k, stride, dil, pad, in_len):
    """axis_rows by listing every row of every (output tile, tap tile) pair (the reference)."""
    total = biggest = 0
    for a in range(0, out_len, t_out):
        for j0 in range(0, k_len, t_k):
            rows = {p * stride + j * dil - pad for p in range(a, min(out_len, a + t_out))
                    for j in range(j0, min(k_len, j0 + t_k))}
            n = sum(1 for r in rows if 0 <= r < in_len)
            total += n
            biggest = max(biggest, n)
    return total, biggest


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 7), st.integers(1, 5), st.integers(1, 7), st.integers(0, 9), st.integers(1, 40),
       st.integers(1, 45), st.integers(1, 7))
def test_axis_rows_closed_form_equals_enumeration(k, dil, stride, pad, in_len, t_out, t_k):
    out_len = (in_len + 2 * pad - dil * (k - 1) - 1) // stride + 1
    if out_len < 1:
        return
    t_k = min(t_k, k)
    assert axis_rows(out_len, t_out, k, t_k, stride, dil, pad, in_len) == \
        _rows_by_enumeration(out_len, t_out, k, t_k, stride, dil, pad, in_len)


def test_extreme_extents_cost_without_work_growing_with_them():
    """Shapes at the checker's limits (1,000,000 wide, 100,000-tap and dilated kernels): the
    mapping search counts rows in closed form, so each costs in well under a second (these
    took seconds to minutes when rows were enumerated).  The figures are checked against
    what the extents imply: every input row read at least once, every output written."""
    import time

    cases = [conv2d(1, 1, 1, 1_000_000, 1, (1, 100_000), padding=(0, 1000)),
             conv2d(1, 1, 1, 1_000_000, 1, (1, 5), stride=(1, 7), dilation=(1, 3), padding=(0, 1000)),
             conv2d(1, 1, 1, 1_000_000, 1, (1, 1000), dilation=(1, 999), padding=(0, 999))]
    for w in cases:
        for hw in (PRESETS["Eyeriss"], PRESETS["EdgeNPU"]):
            clear_cache()
            t0 = time.process_time()
            c = cost_op(w, hw)
            assert time.process_time() - t0 < 2.0
            word = hw.word_bits / 8
            assert c.offchip.output >= w.P * w.Q * word
            assert c.offchip.total >= c.compulsory_offchip_bytes * (1 - 1e-9)
            assert c.macs == w.P * w.Q * w.R * w.S


# ---------------------------------------------------------------------------
# hand-computed costs
def test_relu_by_hand():
    hw = toy(pes=10)
    c = cost_op(EltwiseWorkload(1000), hw)
    # off-chip: read 1000 B + write 1000 B (8-bit words) = compulsory
    assert (c.offchip.input, c.offchip.output, c.offchip.psum) == (1000, 1000, 0)
    assert c.compulsory_offchip_bytes == 2000
    # 1000 ops over 10 PEs: 100 cycles; off-chip 2000 B at 1 GB/s = 2 us; GLB 2000 B / 1 GB/s = 2 us
    assert c.compute_cycles == 100 and c.utilization == 1.0
    assert close(c.latency_s, 2e-6) and c.bound == "offchip"
    assert close(c.offchip_cycles, 2000) and close(c.global_cycles, 2000)
    assert close(c.pe_cycles, 200)  # 2000 B into/out of 10 PEs at 1 B/ns each
    # energy: DRAM 2000 B x 100 pJ; GLB (2000 fill/drain + 2000 to/from PEs) x 10 pJ;
    # spad (2000 fill + 1000 ops x 2 operand words) x 1 pJ; 1000 ops x 1 pJ
    assert close(c.energy.offchip, 200e-9)
    assert close(c.energy.glb, 40e-9)
    assert close(c.energy.pe, 4e-9)
    assert close(c.energy.mac, 1e-9)
    assert close(c.energy_j, 245e-9)
    assert close(c.roofline_latency_s, 2e-6)


def test_small_conv_that_fits_everywhere_by_hand():
    hw = toy()
    w = ConvWorkload(1, 4, 2, 1, 4, 3, 3)  # N1 K4 C2 P1 Q4 R3 S3, valid: 3 x 6 input
    assert (w.H_in, w.W_in, w.macs) == (3, 6, 288)
    c = cost_op(w, hw)
    # input 2*3*6 = 36 B, weights 4*2*3*3 = 72 B, output 4*1*4 = 16 B: each once
    assert (c.offchip.input, c.offchip.weight, c.offchip.output, c.offchip.psum) == (36, 72, 16, 0)
    assert (c.onchip.input, c.onchip.weight, c.onchip.output) == (36, 72, 16)
    assert c.pe_fill_bytes == 124 and c.compulsory_offchip_bytes == 124
    # one PE, one MAC per cycle: 288 cycles = 288 ns > 124 ns for any transfer
    assert c.compute_cycles == 288 and c.bound == "compute" and close(c.latency_s, 288e-9)
    assert close(c.cycles, 288)
    assert close(c.energy.offchip, 124 * 100 * pJ)
    assert close(c.energy.glb, (124 + 124) * 10 * pJ)
    assert close(c.energy.pe, (124 + 288 * 4) * 1 * pJ)  # 3 reads + 1 write per MAC (Eyeriss)
    assert close(c.energy.mac, 288 * pJ)
    assert not c.mapping.streaming and c.notes == ()


def test_matmul_tiling_refetch_by_hand():
    # C[4x4] = A[4x4] B[4x4], 1-byte words, 12-byte GLB: the best tiles are 2x2x2 with the
    # reduction loop innermost (output stationary): A and B are each fetched twice
    # (once per tile of the dim they do not use), C once: 32 + 32 + 16 = 80 B.
    hw = toy(glb=12, pe=12)
    c = cost_op(MatmulWorkload(4, 4, 4), hw, "energy")
    assert (c.offchip.input, c.offchip.weight, c.offchip.output, c.offchip.psum) == (32, 32, 16, 0)
    assert c.compulsory_offchip_bytes == 48
    assert dict(c.mapping.glb.tiles)["C"] == 2 and c.mapping.glb.stationary == "output"
    # with room for everything it is compulsory traffic only
    big = cost_op(MatmulWorkload(4, 4, 4), toy(glb=48, pe=12), "energy")
    assert big.offchip.total == 48


def test_weights_streamed_once_when_they_do_not_fit():
    # linear 8 -> 8 on a 40 B buffer: the 64 weights never fit, yet every tensor crosses once
    c = cost_op(linear(1, 8, 8, bias=False), toy(glb=40, pe=8), "energy")
    assert c.offchip.total == c.compulsory_offchip_bytes == 8 + 64 + 8


def test_streaming_fallback_by_hand():
    # 2 -> 2 linear, 2-byte GLB and spad: no tile fits. Streaming: every MAC fetches its
    # input and weight (4 + 4 B) and reads/writes its partial sum: out 2, psum w 2, r 2.
    hw = toy(glb=2, pe=2)
    c = cost_op(linear(1, 2, 2, bias=False), hw, "energy")
    assert c.mapping.glb.streaming and c.mapping.pe.streaming
    assert (c.offchip.input, c.offchip.weight, c.offchip.output, c.offchip.psum_read, c.offchip.psum_write) == \
        (4, 4, 2, 2, 2)
    assert any("streaming" in n for n in c.notes)
    assert "streaming" in c.mapping.describe()


def test_compulsory_counts_touched_input_only():
    hw = toy()
    # 1x1 stride 2 on 4x4: only a 2x2 lattice of the input is read
    c = cost_op(conv2d(1, 1, 4, 4, 1, 1, stride=2), hw)
    assert c.compulsory_offchip_bytes == 4 + 1 + 4 and c.offchip.input == 4
    # 3x3 pad 1: all 16 input elements, no padding fetched
    c = cost_op(conv2d(1, 1, 4, 4, 1, 3, padding=1), hw)
    assert c.offchip.input == 16 and c.compulsory_offchip_bytes == 16 + 9 + 16


def test_word_size_from_hardware_or_workload():
    w = EltwiseWorkload(100)
    assert cost_op(w, toy(word=16)).offchip.total == 400
    assert cost_op(replace(w, word_bits=8), toy(word=16)).offchip.total == 200


def test_fused_flags_drop_offchip_traffic():
    hw = toy()
    w = EltwiseWorkload(1000, n_inputs=2)
    base = cost_op(w, hw)
    assert base.offchip.input == 2000 and base.offchip.output == 1000
    fin = cost_op(w, hw, fused_input_on_chip=True)        # one of the two inputs is on chip
    assert fin.offchip.input == 1000 and fin.compulsory_offchip_bytes == 2000 and fin.fused_input_on_chip
    both = cost_op(w, hw, fused_input_on_chip=True, fused_output_on_chip=True)
    assert both.offchip.total == 1000
    # a resident tensor that cannot fit is ignored, with a note
    tiny = toy(glb=1500, pe=64)
    c = cost_op(EltwiseWorkload(2000), tiny, fused_input_on_chip=True)
    assert not c.fused_input_on_chip and c.offchip.input == 2000 and c.notes


def test_copy_and_view():
    hw = toy()
    v = cost_op(CopyWorkload(1000, 1000, view=True), hw)
    assert v.offchip.total == 0 and v.latency_s == 0 and v.energy_j == 0
    cat = cost_op(CopyWorkload(3000, 3000), hw)
    assert (cat.offchip.input, cat.offchip.output) == (3000, 3000)
    assert close(cat.latency_s, 6e-6) and cat.bound == "offchip"
    part = cost_op(CopyWorkload(3000, 3000), hw, fused_input_on_chip=True, fused_input_elements=1000)
    assert part.offchip.input == 2000


def test_pool_and_reduce_costs():
    hw = toy(pes=4)
    mp = cost_op(PoolWorkload(1, 2, 2, 2, 2, 2, 4, 4), hw)  # 2x2/2 max pool on 2 x 4 x 4
    assert (mp.offchip.input, mp.offchip.output) == (32, 8) and mp.macs == 32
    gap = cost_op(adaptive_pool(1, 2, 4, 4, 1, 1), hw)
    assert (gap.offchip.input, gap.offchip.output) == (32, 2)
    sm = cost_op(ReduceWorkload(2, 10, 4, 10), hw)
    assert (sm.offchip.input, sm.offchip.output) == (20, 20) and sm.macs == 80


def test_eyeriss_preset_sanity():
    hw = PRESETS["Eyeriss"]
    c = cost_op(conv2d(1, 3, 224, 224, 64, 7, stride=2, padding=3), hw)
    assert c.macs == 118013952
    # 168 PEs at 200 MHz: at least macs / 168 cycles
    assert c.compute_cycles >= c.macs / 168
    assert c.latency_s >= c.roofline_latency_s
    assert c.bound in ("compute", "offchip", "global", "pe")
    assert 0 < c.utilization <= 1
    assert c.mapping.describe().startswith("spatial")


def test_eyeriss_alexnet_calibration():
    """AlexNet's conv layers, batch 4, on the Eyeriss tier against the chip [E17]: 35 fps and
    0.0029 DRAM accesses per MAC (with run-length compression, which the model lacks).
    The model must land within a factor of two of both."""
    N = 4
    alex = [("conv1", conv2d(N, 3, 227, 227, 96, 11, stride=4), ()),
            ("conv2", conv2d(N, 96, 27, 27, 256, 5, padding=2, groups=2), ()),
            ("conv3", conv2d(N, 256, 13, 13, 384, 3, padding=1), ()),
            ("conv4", conv2d(N, 384, 13, 13, 384, 3, padding=1, groups=2), ()),
            ("conv5", conv2d(N, 384, 13, 13, 256, 3, padding=1, groups=2), ())]
    net = cost_network(alex, PRESETS["Eyeriss"], fuse=False)
    assert net.macs == 4 * 665784864
    fps = N / net.latency_s
    dram_per_mac = net.offchip_bytes / 2 / net.macs  # 16-bit accesses
    assert 35 / 2 <= fps <= 35 * 2
    assert 0.0029 / 2 <= dram_per_mac <= 0.0029 * 2


# ---------------------------------------------------------------------------
# property tests
@st.composite
def workloads(draw):
    kind = draw(st.sampled_from(["conv", "conv", "dw", "linear", "matmul", "eltwise", "pool", "reduce"]))
    if kind in ("conv", "dw"):
        C = draw(st.integers(1, 12))
        K = C if kind == "dw" else draw(st.integers(1, 12))
        k = draw(st.sampled_from([1, 2, 3]))
        H = draw(st.integers(k, 10))
        W = draw(st.integers(k, 10))
        s = draw(st.sampled_from([1, 2]))
        pad = draw(st.integers(0, k // 2))
        dil = draw(st.sampled_from([1, 1, 2])) if H >= 2 * k and W >= 2 * k else 1
        return conv2d(draw(st.integers(1, 2)), C, H, W, K, k, stride=s, padding=pad, dilation=dil,
                      groups=C if kind == "dw" else 1, bias=draw(st.booleans()))
    if kind == "linear":
        return linear(draw(st.integers(1, 3)), draw(st.integers(1, 64)), draw(st.integers(1, 64)),
                      bias=draw(st.booleans()))
    if kind == "matmul":
        return MatmulWorkload(draw(st.integers(1, 16)), draw(st.integers(1, 16)), draw(st.integers(1, 16)),
                              batch=draw(st.integers(1, 2)))
    if kind == "eltwise":
        return EltwiseWorkload(draw(st.integers(1, 3000)), draw(st.integers(1, 3)), draw(st.integers(1, 3)),
                               draw(st.sampled_from([0, 0, 8])))
    if kind == "pool":
        k = draw(st.integers(1, 3))
        H = draw(st.integers(k, 9))
        s = draw(st.integers(1, k))
        P = (H - k) // s + 1
        return PoolWorkload(draw(st.integers(1, 2)), draw(st.integers(1, 8)), P, P, k, k, H, H, s, s)
    L = draw(st.integers(1, 50))
    return ReduceWorkload(draw(st.integers(1, 8)), L, draw(st.integers(1, 4)), draw(st.sampled_from([1, L])))


@st.composite
def hardwares(draw):
    word = draw(st.sampled_from([8, 16]))
    glb = float(draw(st.integers(16, 1 << 15)))
    pe = float(draw(st.integers(2, int(min(glb, 512)))))
    return Hardware(
        "H", 1e9, draw(st.integers(1, 64)), draw(st.sampled_from([1, 2, 4])), word,
        draw(st.sampled_from([0.2, 1.0, 2.0])) * pJ,
        Level("offchip", "D", None, draw(st.sampled_from([1e8, 1e9, 1e10, 1e11])), draw(st.sampled_from([50, 200])) * pJ),
        Level("global", "G", glb, draw(st.sampled_from([1e9, 1e10, 1e11])), draw(st.sampled_from([2, 6, 12])) * pJ),
        Level("pe", "P", pe, draw(st.sampled_from([1e8, 1e9, 4e9])), draw(st.sampled_from([0.5, 1.0])) * pJ))


@HYP
@given(workloads(), hardwares(), st.sampled_from(OBJECTIVES))
def test_never_below_compulsory_traffic_or_roofline(w, hw, objective):
    c = cost_op(w, hw, objective)
    assert c.offchip.total >= c.compulsory_offchip_bytes * (1 - REL)
    assert c.latency_s >= c.roofline_latency_s * (1 - REL)
    assert c.latency_s >= c.macs / hw.peak_macs_per_s * (1 - REL)
    assert c.latency_s >= c.offchip.total / hw.offchip.bandwidth_bps * (1 - REL)
    # inclusion: whatever crosses off-chip also crosses global <-> PE (per tensor)
    for role in ("input", "weight", "psum_read", "psum_write"):
        assert getattr(c.onchip, role) >= getattr(c.offchip, role) * (1 - REL) - 1e-9, role
    assert c.onchip.total >= c.compulsory_offchip_bytes * (1 - REL)
    assert c.pe_fill_bytes >= c.onchip.total * (1 - REL) - 1e-9
    assert 0 <= c.utilization <= 1 + REL
    assert c.energy_j > 0
    assert c.bound in ("compute", "offchip", "global", "pe")
    times = {"compute": c.compute_cycles, "offchip": c.offchip_cycles, "global": c.global_cycles, "pe": c.pe_cycles}
    assert close(max(times.values()), c.cycles, 1e-9) and close(times[c.bound], c.cycles, 1e-9)


def _bigger(hw: Hardware, what: str, factor: float) -> Hardware:
    if what == "glb":
        return hw.with_level("global", size_bytes=hw.glb.size_bytes * factor)
    if what == "pe_size":
        return hw.with_level("pe", size_bytes=min(hw.glb.size_bytes, hw.pe.size_bytes * factor))
    if what == "pes":
        return replace(hw, pes=int(hw.pes * factor) + 1)
    if what == "offchip_bw":
        return hw.with_level("offchip", bandwidth_bps=hw.offchip.bandwidth_bps * factor)
    if what == "glb_bw":
        return hw.with_level("global", bandwidth_bps=hw.glb.bandwidth_bps * factor)
    if what == "pe_bw":
        return hw.with_level("pe", bandwidth_bps=hw.pe.bandwidth_bps * factor)
    raise AssertionError(what)


RESOURCES = ["glb", "pe_size", "pes", "offchip_bw", "glb_bw", "pe_bw"]


@HYP_MORE
@given(workloads(), hardwares(), st.sampled_from(RESOURCES), st.sampled_from([1.5, 2.0, 4.0]),
       st.sampled_from(OBJECTIVES))
def test_more_resources_never_worse(w, hw, what, factor, objective):
    small = cost_op(w, hw, objective)
    big = cost_op(w, _bigger(hw, what, factor), objective)
    # the objective itself never gets worse ...
    assert big.metric() <= small.metric() * (1 + REL)
    # ... and bandwidth never changes what an energy-optimal mapping costs in energy
    if objective == "energy":
        assert big.energy_j <= small.energy_j * (1 + REL)
        if what.endswith("_bw"):
            assert close(big.energy_j, small.energy_j, 1e-9)
    if objective == "latency":
        assert big.latency_s <= small.latency_s * (1 + REL)
    assert big.offchip.total >= big.compulsory_offchip_bytes * (1 - REL)


@HYP
@given(workloads(), hardwares(), st.sampled_from(OBJECTIVES))
def test_deterministic(w, hw, objective):
    clear_cache()
    a = cost_op(w, hw, objective)
    clear_cache()
    b = cost_op(w, hw, objective)
    assert a == b
    assert cost_op(w, hw, objective) is b  # cached


@st.composite
def chains(draw):
    """A small network in execution order: a chain with optional skip connections."""
    n = draw(st.integers(2, 6))
    C = draw(st.integers(1, 8))
    H = draw(st.integers(2, 8))
    ops = [("in0", conv2d(1, C, H, H, C, 3, padding=1), ("x",))]
    for i in range(1, n):
        k = draw(st.sampled_from(["conv", "relu", "add", "pool", "view"]))
        prev = ops[-1][0]
        name = f"op{i}"
        if k == "conv":
            k = draw(st.sampled_from([1, 3]))
            ops.append((name, conv2d(1, C, H, H, C, k, padding=k // 2), (prev,)))
        elif k == "relu":
            ops.append((name, EltwiseWorkload(C * H * H), (prev,)))
        elif k == "add":
            other = draw(st.sampled_from([o[0] for o in ops]))
            ops.append((name, EltwiseWorkload(C * H * H, 2), (prev, other)))
        elif k == "pool":
            ops.append((name, PoolWorkload(1, C, H, H, 1, 1, H, H), (prev,)))
        else:
            ops.append((name, CopyWorkload(C * H * H, C * H * H, view=True), (prev,)))
    return ops


@HYP
@given(chains(), hardwares(), st.sampled_from(OBJECTIVES))
def test_fusion_never_increases_offchip_traffic(ops, hw, objective):
    net = cost_network(ops, hw, objective)
    assert net.offchip_bytes <= net.unfused_offchip_bytes * (1 + REL)
    assert net.metric() <= cost_network(ops, hw, objective, fuse=False).metric() * (1 + REL)
    for o in net.ops:
        assert o.cost.offchip.total >= o.cost.compulsory_offchip_bytes * (1 - REL)
    for a, b in net.fused_edges:
        assert net.op(a).cost.fused_output_on_chip and net.op(b).cost.fused_input_on_chip


def test_fusion_by_hand():
    hw = toy(pes=10, glb_bw=1e10, pe_bw=1e10)
    ops = [("a", EltwiseWorkload(1000), ("x",)), ("b", EltwiseWorkload(1000), ("a",))]
    net = cost_network(ops, hw)
    # a: read 1000, keeps its output on chip; b: reads it from the GLB, writes 1000
    assert net.fused_edges == (("a", "b"),)
    assert net.op("a").cost.offchip.total == 1000 and net.op("b").cost.offchip.total == 1000
    assert net.saved_offchip_bytes == 2000 and net.op("a").saved_offchip_bytes == 1000
    # both ops are off-chip bound: 2 us each unfused, 1 us each fused; the 2000 B no longer
    # cross DRAM (100 pJ/B) nor the GLB's off-chip side (10 pJ/B)
    assert close(net.unfused_latency_s, 4e-6) and close(net.saved_latency_s, 2e-6)
    assert close(net.saved_energy_j, 2000 * (100 + 10) * pJ)
    # a second consumer of `a` later on needs it off-chip: no fusion
    ops3 = ops + [("c", EltwiseWorkload(1000, 2), ("b", "a"))]
    net3 = cost_network(ops3, hw)
    assert ("a", "b") not in net3.fused_edges and ("b", "c") in net3.fused_edges
    # views pass the tensor through
    opsv = [("a", EltwiseWorkload(1000), ()), ("f", CopyWorkload(1000, 1000, view=True), ("a",)),
            ("b", EltwiseWorkload(1000), ("f",))]
    netv = cost_network(opsv, hw)
    assert netv.fused_edges == (("a", "b"),) and netv.offchip_bytes == 2000
    # too big for the buffer: nothing fused
    assert cost_network(ops, toy(glb=1024, pe=64)).fused_edges == (("a", "b"),)  # 1000 B + 1 B tiles fit
    assert cost_network(ops, toy(glb=1000, pe=64)).fused_edges == ()


def test_network_totals_and_validation():
    hw = PRESETS["EdgeNPU"]
    ops = [("c1", conv2d(1, 3, 32, 32, 16, 3, padding=1), ["x"]), ("r1", EltwiseWorkload(16 * 32 * 32), "c1"),
           ("fc", linear(1, 16 * 32 * 32, 10), ("r1",))]
    net = cost_network(ops, hw, "energy")
    assert net.macs == sum(o.cost.macs for o in net.ops)
    assert close(net.latency_s, sum(o.cost.latency_s for o in net.ops))
    assert close(net.energy_j, sum(o.cost.energy_j for o in net.ops))
    assert close(net.energy.total, net.energy_j)
    assert net.offchip_bytes >= net.compulsory_offchip_bytes
    m = net.metrics
    assert m["latency"] == net.latency_s and m["energy"] == net.energy_j and m["offchip_bytes"] == net.offchip_bytes
    assert 0 < m["utilization"] <= 1
    with pytest.raises(ValueError, match="unique"):
        cost_network(ops + [ops[0]], hw)
    with pytest.raises(ValueError, match="objective"):
        cost_op(ops[0][1], hw, "speed")


# ---------------------------------------------------------------------------
# reports and plots
def _net():
    hw = PRESETS["Eyeriss"]
    ops = [("conv1", conv2d(1, 3, 32, 32, 16, 3, padding=1), ("x",)),
           ("relu1", EltwiseWorkload(16 * 32 * 32), ("conv1",)),
           ("pool", PoolWorkload(1, 16, 16, 16, 2, 2, 32, 32), ("relu1",)),
           ("flat", CopyWorkload(16 * 256, 16 * 256, view=True), ("pool",)),
           ("fc", linear(1, 16 * 256, 10), ("flat",))]
    return cost_network(ops, hw)


def test_human_units():
    assert fmt_bytes(1536) == "1.54 KB" and fmt_bytes(0) == "0 B" and fmt_bytes(2.5e6) == "2.50 MB"
    assert fmt_time(3.2e-6) == "3.20 µs" and fmt_time(0.0125) == "12.5 ms"
    assert fmt_energy(4.2e-5) == "42.0 µJ" and fmt_energy(1.5e-3) == "1.50 mJ"


def test_table_json_csv():
    net = _net()
    table = format_table(net, fps=30)
    for name in ("conv1", "relu1", "pool", "flat", "fc", "total", "bound", "fps"):
        assert name in table
    assert "MAC" in table and ("µs" in table or "ms" in table) and "J" in table
    lines = table.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.startswith("op "))
    widths = {len(ln) for ln in lines[header + 1:header + 1 + len(net.ops) + 1]}
    assert len(widths) <= 2  # fixed width (a trailing column may be blank)
    d = json.loads(to_json(net))
    assert list(d) == ["hardware", "objective", "totals", "ops"]
    assert [o["name"] for o in d["ops"]] == ["conv1", "relu1", "pool", "flat", "fc"]
    assert d["totals"]["macs"] == net.macs
    assert to_json(net) == to_json(_net())  # deterministic
    assert d == to_dict(net) or json.loads(json.dumps(to_dict(net))) == d
    rows = list(csv.DictReader(io.StringIO(to_csv(net))))
    assert len(rows) == len(net.ops) + 1 and rows[-1]["name"] == "total"
    assert math.isclose(float(rows[-1]["latency_s"]), net.latency_s)
    assert "mapping" in format_op(net.ops[0].cost, "conv1")


def test_plot_png():
    from PIL import Image

    from evo.cost.plot import plot_levels, plot_network, plot_roofline
    net = _net()
    for fn, name in ((plot_roofline, "roof.png"), (plot_levels, "levels.png"), (plot_network, "both.png")):
        img = Image.open(io.BytesIO(fn(net)))
        assert img.format == "PNG" and img.size[0] >= 800
        # something was drawn: more than two colours
        assert len(img.convert("RGB").getcolors(1 << 20)) > 3
    assert Image.open(io.BytesIO(plot_levels(net, metric="bytes"))).format == "PNG"


def test_library_is_standalone():
    """The cost library imports nothing from evo outside evo/cost (compiler glue such as
    evo/cost/network.py, which maps IR graphs to workloads, may)."""
    import ast
    for mod in ("__init__", "hardware", "workload", "mapping", "model", "report", "plot", "si"):
        path = os.path.join(ROOT, "evo", "cost", mod + ".py")
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
        for node in ast.walk(tree):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            for m in mods:
                assert not (m == "evo" or m.startswith("evo.")) or m.startswith("evo.cost"), (path, m)


# ---------------------------------------------------------------------------
# the search's shortcuts (evolution speed, docs/cost-model.md section 18) against direct forms
def test_refetch_equals_its_definition():
    """_refetch (in-place products under a per-candidate flag) against the definition: a
    dim the tensor does not depend on multiplies the fetches when it sits outside the
    innermost relevant dim with more than one trip; the PE side's copies take `alt` there
    and `inside` elsewhere."""
    import numpy as np

    from evo.cost.mapping import _refetch

    rng = np.random.default_rng(5)
    for _ in range(40):
        nd, M = int(rng.integers(2, 6)), 12
        T = [rng.integers(1, 4, M).astype(float) for _ in range(nd)]
        alt = [rng.integers(1, 5, M).astype(float) for _ in range(nd)]
        ins = [rng.integers(1, 5, M).astype(float) for _ in range(nd)]
        order = tuple(int(d) for d in rng.permutation(nd))
        rel = rng.random(nd) < 0.5
        mult, copies = _refetch(T, order, rel, M, alt, ins)
        for m in range(M):
            inner = max([k for k, d in enumerate(order) if rel[d] and T[d][m] > 1], default=-1)
            want_m = want_c = 1.0
            for k, d in enumerate(order):
                if not rel[d]:
                    want_m *= T[d][m] if k < inner else 1.0
                    want_c *= alt[d][m] if k < inner else ins[d][m]
            assert mult[m] == want_m and copies[m] == want_c


def test_window_tables_equal_axis_rows():
    """The remembered per-window tables give axis_rows for every key, filled in any order."""
    import numpy as np

    from evo.cost.mapping import Window, _window_lookup

    win = Window("P", "R", 2, 1, 1, 15)
    rng = np.random.default_rng(1)
    for _ in range(3):  # later calls find part of the table filled
        t_out, t_k = rng.integers(1, 10, 20), rng.integers(1, 4, 20)
        for which in (0, 1):
            got = _window_lookup(win, t_out, t_k, 8, 3, which)
            want = [axis_rows(8, min(int(a), 8), 3, min(int(b), 3), 2, 1, 1, 15)[which] for a, b in zip(t_out, t_k)]
            assert got.tolist() == want


def test_enumerated_pe_half_equals_each_candidates_detail():
    """The PE half's arrays (enumerated without the per-role breakdown, on dim-major arrays)
    against each candidate re-evaluated alone: latency = max(compute, GLB, PE port) times."""
    import numpy as np

    from evo.cost.mapping import _Ctx, _pe_side, nest_for

    clear_cache()
    w = conv2d(1, 6, 4, 7, 7, 3, stride=2, padding=1)
    for hw in (toy(pes=12, pe=96, glb_bw=8e9), replace(toy(pes=12, pe=96), rows=3, cols=4, dataflow="row_stationary")):
        la, ea, detail, streaming, ta, Ba, need = _pe_side(_Ctx(nest_for(w), 1.0), hw)
        assert not streaming and len(la) > 20
        for i in np.linspace(0, len(la) - 1, 25).astype(int):
            lm, spatial, roles, recv, cycles, active, tc, tg, tp, off = detail(int(i))
            assert la[i] == max(tc, tg, tp) and ta[i] == tc and cycles / hw.frequency_hz == tc
            assert math.prod(v for _, v in spatial) == need[i]
            e = (tg * hw.glb.bandwidth_bps) * hw.glb.energy_per_byte_j + recv * hw.pe.energy_per_byte_j
            assert close(ea[i], e)
