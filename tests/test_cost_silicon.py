"""Hardware as it is built: PE array shape, dataflows, bypassed and split buffers, zero
gating / skipping, compression, area and power, partial spatial tiles.

Hand-computed cases with round numbers (toy tiers at 1 GHz, 1 GB/s, 100/10/1 pJ per byte),
and property tests of the bounds and monotonicity for dataflow-constrained and sparse
mappings."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evo.cost import (
    PRESETS,
    ConstraintError,
    ConvWorkload,
    CopyWorkload,
    Hardware,
    Level,
    conv2d,
    cost_network,
    cost_op,
    fit_power,
    format_table,
    hardware_from_dict,
    MappingConstraints,
    linear,
)
from evo.cost.hardware import HardwareError
from evo.cost.mapping import compulsory_elements, nest_for

pJ = 1e-12
REL = 1e-9
HYP = settings(max_examples=25, deadline=None, derandomize=True, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def toy(*, pes=1, word=16, glb=1 << 20, pe=1024, glb_holds=("input", "weight", "output"), glb_split=(),
        pe_holds=("input", "weight", "output"), pe_split=(), bw=1e9, **extra) -> Hardware:
    return Hardware("Toy", 1e9, pes, 1, word, 1 * pJ, Level("offchip", "DRAM", None, bw, 100 * pJ),
                    Level("global", "GLB", glb, bw, 10 * pJ, glb_holds, glb_split),
                    Level("pe", "Spad", pe, bw, 1 * pJ, pe_holds, pe_split), **extra)


def close(a, b, rel=1e-12):
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-30)


# ---------------------------------------------------------------------------
# descriptions
def test_defaults_keep_todays_tiers():
    e = PRESETS["Eyeriss"]
    assert (e.rows, e.cols, e.dataflow, e.zero_gating, e.compression) == (None, None, "any", False, False)
    assert e.glb.holds == ("input", "weight", "output") and e.glb.split == ()
    assert "dataflow" not in e.as_dict() and "holds" not in e.as_dict()["levels"]["global"]
    assert hardware_from_dict(e.as_dict()) == e


def test_round_trip_of_the_new_attributes():
    hw = toy(pes=12, rows=3, cols=4, dataflow="row_stationary", zero_gating=True, compression=True,
             glb_holds=("input", "output"), pe_split=(("input", 24.0), ("weight", 448.0), ("output", 48.0)),
             pe=520, static_power_w=0.05, pe_area_m2=1e-8)
    d = hw.as_dict()
    assert d["levels"]["global"]["holds"] == ["input", "output"]
    assert d["levels"]["pe"]["split"] == {"input": 24.0, "weight": 448.0, "output": 48.0}
    assert hardware_from_dict(d) == hw
    assert hw.pe.capacity("weight") == 448.0 and hw.glb.capacity("weight") == 0.0
    port = replace(hw, glb=replace(hw.glb, read_bandwidth_bps=5e9, write_bandwidth_bps=4e9))
    d = port.as_dict()["levels"]["global"]
    assert (d["read_bandwidth_bps"], d["write_bandwidth_bps"]) == (5e9, 4e9) and hardware_from_dict(port.as_dict()) == port
    with pytest.raises(HardwareError, match="only the global level has a read bandwidth"):
        replace(hw.pe, read_bandwidth_bps=1e9)
    with pytest.raises(HardwareError, match="global write bandwidth must be positive"):
        replace(hw.glb, write_bandwidth_bps=0.0)


@pytest.mark.parametrize("kw, words", [
    (dict(pes=12, rows=3, cols=5), "rows x cols"),
    (dict(pes=12, rows=3), "both rows and cols"),
    (dict(dataflow="diagonal"), "unknown dataflow"),
    (dict(dataflow="row_stationary"), "needs the array's rows"),
    (dict(pe_split=(("input", 8.0),)), "for each operand"),
    (dict(glb_holds=("input", "output"), glb_split=(("weight", 8.0), ("input", 8.0), ("output", 8.0))),
     "does not hold"),
])
def test_impossible_descriptions(kw, words):
    with pytest.raises(HardwareError, match=words):
        toy(**kw)


# ---------------------------------------------------------------------------
# hand-computed mappings
def test_row_stationary_small_conv_on_a_3x4_array():
    """A 6x6 single-channel image, a 3x3 filter: 4x4 outputs, 144 MACs.  Row-stationary on
    a 3 x 4 array puts the 3 filter rows down the columns and the 4 output rows across: all
    12 PEs busy, each PE a 1-D convolution of one filter row (3 taps) over 4 outputs =
    12 MACs = 12 cycles."""
    w = conv2d(1, 1, 6, 6, 1, 3)
    hw = toy(pes=12, rows=3, cols=4, dataflow="row_stationary", bw=1e13)  # compute bound
    c = cost_op(w, hw)
    assert c.macs == 144
    assert dict(c.mapping.spatial) == {"R": 3, "P": 4}
    pe_tile = dict(c.mapping.pe.tiles)
    assert pe_tile["R"] == 1 and pe_tile["S"] == 3  # one filter row held in each PE
    assert c.compute_cycles == 12 and c.active_pes == 12 and close(c.utilization, 1.0)
    # two filters: copies of the 3-row PE set down a 6 x 4 array (rows = R x K)
    c2 = cost_op(conv2d(1, 1, 6, 6, 2, 3), toy(pes=24, rows=6, cols=4, dataflow="row_stationary", bw=1e13))
    assert dict(c2.mapping.spatial) == {"K": 2, "R": 3, "P": 4}
    assert c2.compute_cycles == 12 and close(c2.utilization, 1.0)
    # a dataflow narrows the search: free search is never slower on the same array
    free = cost_op(w, toy(pes=12, rows=3, cols=4, bw=1e13))
    assert free.latency_s <= c.latency_s * (1 + REL)


def test_psums_received_take_the_shared_adder():
    """A PE whose one adder takes both its products and the partial sums it receives [E17, Fig.
    12] (``psum_cycles``) spends that many cycles on each psum beside its MACs.  The 3 x 4
    array of the small conv above: each PE runs 3 taps x 4 outputs = 12 MACs and adds in the
    psum of the PE below it once per output: 12 + 4 x 1 = 16 cycles (2 cycles each: 20).  A
    PE that holds the whole reduction (one PE, a 3 x 3 filter on a 3 x 3 image: one output of
    9 MACs) receives nothing: 9 cycles whatever the adder."""
    w = conv2d(1, 1, 6, 6, 1, 3)
    for k, cycles in ((0, 12), (1, 16), (2, 20)):
        c = cost_op(w, toy(pes=12, rows=3, cols=4, dataflow="row_stationary", bw=1e13, psum_cycles=k))
        assert dict(c.mapping.spatial) == {"R": 3, "P": 4} and c.compute_cycles == cycles, k
        assert close(c.latency_s, cycles / 1e9)  # compute bound
    one = conv2d(1, 1, 3, 3, 1, 3)
    assert [cost_op(one, toy(bw=1e13, psum_cycles=k)).compute_cycles for k in (0, 3)] == [9, 9]
    # psums back from the buffer: a 1 x 1 conv over 4 channels on a 1 x 4 array (P4 across),
    # each PE 4 outputs x 4 channels = 16 MACs.  One pass over all channels receives nothing
    # (16 cycles); passes of 2 channels add in each output's psum once, in the second pass
    # (16 + 4 = 20); of 1 channel, in passes 2 to 4 (16 + 3 x 4 = 28).
    w1 = conv2d(1, 4, 4, 4, 1, 1)
    hw1 = toy(pes=4, rows=1, cols=4, dataflow="row_stationary", bw=1e13, psum_cycles=1)
    got = [cost_op(w1, hw1, constraints=MappingConstraints.of(glb_tile={"C": qr})).compute_cycles for qr in (4, 2, 1)]
    assert got == [16, 20, 28]
    with pytest.raises(HardwareError, match="psum_cycles must be a finite non-negative"):
        toy(psum_cycles=-1)
    hw = toy(pes=12, rows=3, cols=4, dataflow="row_stationary", psum_cycles=2.0)
    assert hw.as_dict()["psum_cycles"] == 2.0 and hardware_from_dict(hw.as_dict()) == hw
    assert "psum_cycles" not in toy().as_dict()


@HYP
@given(w=st.sampled_from([conv2d(1, 4, 8, 8, 8, 3, padding=1), conv2d(2, 16, 6, 6, 16, 1), linear(4, 32, 16)]),
       k=st.integers(1, 3), objective=st.sampled_from(["latency", "energy"]))
def test_a_shared_adder_never_speeds_an_op_up(w, k, objective):
    """Cycles spent adding in received psums can only add latency, and never drop below the
    compute roofline."""
    base = toy(pes=12, rows=3, cols=4, dataflow="row_stationary", glb=16384, pe=256)
    free, shared = cost_op(w, base, objective), cost_op(w, replace(base, psum_cycles=float(k)), objective)
    if objective == "latency":
        assert shared.latency_s >= free.latency_s * (1 - REL)
    assert shared.compute_cycles * 12 >= w.macs * (1 - REL)


def test_row_stationary_sets_side_by_side_and_over_two_dims():
    """The chip's own AlexNet mappings [JSSC 2017, Table III] place PE sets two ways: CONV1 puts
    two 11 x 7 sets (two filters) side by side across the 14 columns, CONV4 and 5 stack four
    3 x 13 sets (two channels by two filters) down the 12 rows.  Small versions, by hand:
      a 4x4 image, two 3x3 filters: 2 x 2 outputs per filter, 72 MACs.  On 3 x 4 PEs a set is
      R3 x P2 (6 PEs) and the second filter's set sits beside it: 12 PEs, 6 MACs (3 taps x Q2)
      each, 6 cycles;
      two channels and two filters (144 MACs) on 12 x 2 PEs: sets R3 x P2, four of them down
      the rows (C2 x K2): 24 PEs, 6 cycles."""
    hw = toy(pes=12, rows=3, cols=4, dataflow="row_stationary", bw=1e13)  # compute bound
    c = cost_op(conv2d(1, 1, 4, 4, 2, 3), hw)
    assert c.macs == 72 and dict(c.mapping.spatial) == {"K": 2, "R": 3, "P": 2}
    assert c.active_pes == 12 and c.compute_cycles == 6
    c = cost_op(conv2d(1, 2, 4, 4, 2, 3), toy(pes=24, rows=12, cols=2, dataflow="row_stationary", bw=1e13))
    assert c.macs == 144 and dict(c.mapping.spatial) == {"K": 2, "C": 2, "R": 3, "P": 2}
    assert c.active_pes == 24 and c.compute_cycles == 6


def test_row_stationary_set_wider_than_the_columns_folds():
    """[E17, Table III]: AlexNet CONV2's 5 x 27 set on the 12 x 14 array is folded, 5 x 14 above
    5 x 13 (135 PEs).  Small version, by hand: a 9 x 9 image, one 3 x 3 filter: 7 x 7 outputs,
    441 MACs.  On 6 x 4 PEs the whole set (R3 x P7) folds onto two bands of 3 rows, 4 + 3
    columns: 21 PEs, each 3 taps x Q7 = 21 MACs, 21 cycles; without the fold the array could
    unroll P by at most 4 (two trips of P: 42 cycles at best)."""
    w = conv2d(1, 1, 9, 9, 1, 3)
    hw = toy(pes=24, rows=6, cols=4, dataflow="row_stationary", bw=1e13)  # compute bound
    c = cost_op(w, hw)
    assert c.macs == 441 and dict(c.mapping.spatial) == {"R": 3, "P": 7}
    assert c.active_pes == 21 and c.compute_cycles == 21
    # a band of rows too few to take the fold: 3 x 4 PEs (P at most 4, 2 trips of P)
    c = cost_op(w, toy(pes=12, rows=3, cols=4, dataflow="row_stationary", bw=1e13))
    assert dict(c.mapping.spatial)["P"] <= 4 and c.compute_cycles >= 42


def test_row_stationary_ifmap_window_slides_along_the_row():
    """[E16]: a row-stationary PE's ifmap spad is a sliding window.  A 3 x 8 image, one 3 x 3
    filter: 1 x 6 outputs on 3 x 1 PEs (one filter row each), spads of 3 ifmap, 3 filter and
    1 psum words, so a PE steps along the row one output at a time.  Each PE reads its ifmap
    row once, 8 words (not 6 windows of 3 = 18): 3 x 8 = 24 words = 48 B from the GLB;
    filters 3 x 3 words = 18 B; outputs 6 words = 12 B.  A free dataflow re-reads the windows."""
    w = conv2d(1, 1, 3, 8, 1, 3)
    spads = (("input", 6.0), ("weight", 6.0), ("output", 2.0))
    hw = toy(pes=3, rows=3, cols=1, dataflow="row_stationary", pe_split=spads, pe=14.0, bw=1e13)
    c = cost_op(w, hw)
    assert dict(c.mapping.spatial) == {"R": 3} and dict(c.mapping.pe.tiles).get("Q", 1) == 1
    assert c.onchip.input == 48 and c.onchip.weight == 18 and c.onchip.output == 12
    free = cost_op(w, replace(hw, rows=None, cols=None, dataflow="any"))
    assert free.onchip.input > 48


def test_split_port_reads_and_writes_on_their_own_buses():
    """A GLB port whose reads and writes travel on buses of their own (Eyeriss: psum and ifmap
    GINs, GON).  conv 3 -> 1 channel, 6 x 6, 3 x 3: 4 x 4 outputs on R3 x P4 = 12 PEs, one
    channel per pass (glb_tile C1), so by hand:
      writes  every output leaves the array once per channel: 3 x 16 = 48 words = 96 B
      reads   psums read back for channels 2 and 3: 32 words = 64 B; ifmap rows read once
              each (the window slides): 3 channels x 6 rows x 6 = 108 words = 216 B
      compute 3 x 16 x 9 MACs / 12 PEs = 36 cycles
    With 16 B/cycle in all, 10 B/cycle of reads and 2 B/cycle of writes, the writes bind:
    96 / 2 = 48 cycles (reads 280 / 10 = 28, total 376 / 16 = 23.5); with one 16 B/cycle
    port, 23.5 cycles and the op is compute bound at 36."""
    w = conv2d(1, 3, 6, 6, 1, 3)
    hw = toy(pes=12, rows=3, cols=4, dataflow="row_stationary", glb_holds=("input", "output"), bw=1e13)
    hw = replace(hw, glb=replace(hw.glb, bandwidth_bps=16e9, read_bandwidth_bps=10e9, write_bandwidth_bps=2e9))
    fix = MappingConstraints.of(spatial={"P": 4}, glb_tile={"C": 1})
    c = cost_op(w, hw, constraints=fix)
    assert (c.onchip.output, c.onchip.psum_read, c.onchip.input) == (96, 64, 216)
    assert c.compute_cycles == 36 and close(c.global_cycles, 48) and close(c.latency_s, 48e-9)
    one = cost_op(w, replace(hw, glb=replace(hw.glb, read_bandwidth_bps=None, write_bandwidth_bps=None)),
                  constraints=fix)
    assert close(one.global_cycles, 23.5) and close(one.latency_s, 36e-9)
    # the report says so
    ops = [("conv", w, ())]
    assert "GLB 1.05 MB (port 16.0 GB/s: reads 10.0 GB/s, writes 2.00 GB/s)" in format_table(cost_network(ops, hw))
    assert "(port" not in format_table(cost_network(ops, replace(hw, glb=replace(hw.glb, read_bandwidth_bps=None,
                                                                                  write_bandwidth_bps=None))))
    # the split-search path (a free dataflow) charges the port the same way
    free = replace(hw, rows=None, cols=None, dataflow="any")
    a = cost_op(w, free)
    b = cost_op(w, replace(free, glb=replace(free.glb, read_bandwidth_bps=None, write_bandwidth_bps=None)))
    assert a.global_cycles >= b.global_cycles


def test_row_stationary_psums_that_do_not_fit_the_glb_spill_off_chip():
    """Row stationary searches the PE schedule inside each GLB tile (docs/cost-model.md,
    section 17).  conv 2 -> 2 channels, 4 x 4, 3 x 3 pad 1, 16-bit, on a 3 x 4 array whose
    32 B (16-word) GLB holds ifmaps and psums (filters bypass it).  A pass works on whole
    ofmap rows (Q = 4): the only tile that fits is one channel, one filter, one ofmap row
    (ifmap 3 rows x 4 = 12 words + psums 4 words = 16); K, C and P take 2, 2 and 4 trips.
    Either the ifmap is fetched again for the second filter (2 x 80 words) or the psums of
    the first channel go back to DRAM and return (32 words each way): the spill is cheaper.
      ifmap  80 words (rows 2 + 3 + 3 + 2 of 4 columns, 2 channels)     160 B
      ofmap  32 words, psum writes 32, psum reads 32                      64 B each
      filters: each of the 16 tile instances fetches its own 9 weights   288 B
    The psums that leave the array between GLB tiles over C are read back into it once:
    32 words = 64 B of psum reads at the GLB."""
    w = conv2d(1, 2, 4, 4, 2, 3, padding=1, bias=False)
    hw = toy(pes=12, rows=3, cols=4, dataflow="row_stationary", glb=32.0, glb_holds=("input", "output"), pe=32)
    for objective in ("latency", "energy"):
        c = cost_op(w, hw, objective)
        g = dict(c.mapping.glb.tiles)
        assert (g["K"], g["C"], g["P"], g["Q"]) == (1, 1, 1, 4)
        assert c.offchip.input == 160 and c.offchip.output == 64 and c.offchip.weight == 288
        assert c.offchip.psum_write == 64 and c.offchip.psum_read == 64
        assert c.bypass_offchip_bytes == 288
        assert c.onchip.psum_read == 64 and c.onchip.weight == 0
        # every word the GLB takes from DRAM is read by the PEs (nothing re-streamed on top)
        assert c.onchip.input >= c.offchip.input and c.onchip.output >= c.offchip.output
    # the split search (free dataflow) prices the PE half as if the GLB kept whatever it revisits
    free = cost_op(w, replace(hw, dataflow="any"))
    assert free.offchip.psum_write < c.offchip.psum_write or free.offchip.input < 2 * c.offchip.input


def test_weight_stationary_unrolls_weight_dims_only():
    w = conv2d(2, 8, 6, 6, 8, 3, padding=1)
    c = cost_op(w, toy(pes=64, rows=8, cols=8, dataflow="weight_stationary"))
    assert set(dict(c.mapping.spatial)) <= {"G", "K", "C", "R"}
    assert c.mapping.pe.stationary == "weight"
    o = cost_op(w, toy(pes=64, rows=8, cols=8, dataflow="output_stationary"))
    assert set(dict(o.mapping.spatial)) <= {"N", "G", "K", "P", "Q"} and o.mapping.pe.stationary == "output"


def test_array_shape_limits_each_axis():
    """On 2 x 8 PEs a 1-D unrolling uses at most one axis (8 PEs); without a shape all 16."""
    w = linear(1, 1, 16)  # 16 outputs, one input: only K can be unrolled
    shaped = cost_op(w, toy(pes=16, rows=2, cols=8, bw=1e13))
    free = cost_op(w, toy(pes=16, bw=1e13))
    assert free.compute_cycles == 1 and shaped.compute_cycles == 2


def test_weights_bypass_every_on_chip_level():
    """Weights held neither in the GLB nor in the PEs: each MAC reads its weight from DRAM.
    linear(4, 8 -> 8) on one PE: 256 MACs, so 256 weight reads of 2 B = 512 B off chip,
    nothing at the GLB; the spad serves only the input read and the psum read + write."""
    w = linear(4, 8, 8, bias=False)
    hw = toy(glb_holds=("input", "output"), pe_holds=("input", "output"))
    c = cost_op(w, hw)
    assert c.macs == 256
    assert c.offchip.weight == 256 * 2
    assert c.onchip.weight == 0.0
    assert (c.offchip.input, c.offchip.output) == (32 * 2, 32 * 2)  # fit on chip: compulsory
    assert c.mac_operand_bytes == 256 * 3 * 2
    off = c.offchip.total
    assert close(c.energy.offchip, off * 100 * pJ)
    assert close(c.energy.mac, 256 * pJ)


def test_weights_bypass_the_glb_into_the_spads():
    """Weights skip the GLB but fit the spad: fetched once from DRAM straight into the PE."""
    w = linear(4, 8, 8, bias=False)
    c = cost_op(w, toy(glb_holds=("input", "output")))
    assert c.offchip.weight == 64 * 2 and c.onchip.weight == 0.0
    assert c.mac_operand_bytes == 256 * 4 * 2
    # the GLB is charged only for inputs and outputs: off-chip fills + PE-side traffic
    assert close(c.energy.glb, (c.offchip.input + c.offchip.output + c.onchip.total) * 10 * pJ)
    assert c.bypass_offchip_bytes == c.offchip.weight
    assert c.level_bytes["global"] == c.offchip.input + c.offchip.output + c.onchip.total


def test_split_global_buffer():
    """A 4x4 image, a 3x3 filter, 2x2 outputs.  A shared 100 B GLB holds all of it
    (16 + 9 + 4 words = 58 B: compulsory traffic).  Split 64 / 16 / 20 B, the 9-word
    (18 B) filter fits nowhere: the GLB streams, every operand fetched for every use:
    inputs 2x3 rows x 2x3 cols = 36 words, weights 9 x 4 outputs = 36 words, outputs 4
    words written plus 4 x 8 partial sums spilled and read back = 280 B in all."""
    w = conv2d(1, 1, 4, 4, 1, 3)
    shared = cost_op(w, toy(glb=100.0, pe=64.0))
    assert shared.offchip.total == 58.0 and not shared.mapping.streaming
    split = cost_op(w, toy(glb=100.0, pe=64.0, glb_split=(("input", 64.0), ("weight", 16.0), ("output", 20.0))))
    assert split.mapping.glb.streaming
    assert (split.offchip.input, split.offchip.weight, split.offchip.output) == (72.0, 72.0, 8.0)
    assert (split.offchip.psum_write, split.offchip.psum_read) == (64.0, 64.0)
    assert split.offchip.total == 280.0


def test_split_pe_memory_bounds_each_operand():
    """Per-PE weight space of one word: a PE never holds two weights at once."""
    w = linear(2, 4, 4)
    c = cost_op(w, toy(pe=520.0, pe_split=(("input", 256.0), ("weight", 2.0), ("output", 256.0))))
    tile = dict(c.mapping.pe.tiles)
    assert tile["K"] * tile["C"] == 1


def test_zero_gating_and_skipping():
    """Half the inputs zero: gating saves half the MAC energy and, of the 4 spad accesses of
    a MAC (input, weight, psum read + write), the 3 after the input read; skipping also
    halves the cycles.  A 6x6 image, 3x3 filter on one PE: 144 MACs."""
    w = conv2d(1, 1, 6, 6, 1, 3)
    dense = cost_op(w, toy())
    gated = cost_op(w, toy(zero_gating=True), sparsity=(0.5, 0.0))
    skipped = cost_op(w, toy(zero_skipping=True), sparsity=(0.5, 0.0))
    assert dense.compute_cycles == 144 and gated.compute_cycles == 144 and skipped.compute_cycles == 72
    assert close(gated.energy.mac, 72 * pJ)
    assert gated.mac_operand_bytes == 144 * (1 + 3 * 0.5) * 2
    assert close(dense.energy.pe - gated.energy.pe, 144 * 1.5 * 2 * pJ)
    assert gated.offchip == dense.offchip
    # sparsity without gating or skipping changes nothing
    assert cost_op(w, toy(), sparsity=(0.5, 0.5)) == dense


def test_compression():
    """Run-length coding of 16-bit activations, 5-bit runs: a value costs 21 bits, zeros are
    free.  Input half zeros -> 0.5 x 21/16; output three quarters zeros -> 0.25 x 21/16;
    weights dense."""
    w = conv2d(1, 2, 6, 6, 2, 3, padding=1)
    dense = cost_op(w, toy())
    c = cost_op(w, toy(compression=True), sparsity=(0.5, 0.75))
    assert close(c.offchip.input, dense.offchip.input * 0.5 * 21 / 16)
    assert close(c.offchip.output, dense.offchip.output * 0.25 * 21 / 16)
    assert c.offchip.weight == dense.offchip.weight
    assert close(c.compulsory_offchip_bytes, (72 * 0.5 * 21 / 16 + 36 + 72 * 0.25 * 21 / 16) * 2)
    # no worse than dense even when nothing is zero
    assert cost_op(w, toy(compression=True), sparsity=(0.0, 0.0)).offchip == dense.offchip


def test_partial_spatial_tiles_fill_the_array():
    """128 channels on 168 PEs: with factors that divide 128 (or halve it) at most 128 PEs
    work (76 %); partial tiles reach 89 % (e.g. 22 channels x 7 rows: 6 x 2 passes)."""
    w = conv2d(1, 128, 14, 14, 128, 3, padding=1)
    c = cost_op(w, PRESETS["EyerissLPDDR4"])
    assert c.utilization > 0.85
    # a dimension of 13 on 12 PEs: 2 passes of 7 (ceil(13/2)) rather than 13 of 1
    c13 = cost_op(linear(1, 1, 13), toy(pes=12, bw=1e13))
    assert c13.compute_cycles == 2


def test_strided_conv_grad_input_writes_the_input_sized_gradient():
    """The input gradient of a stride-2 3x3 convolution (8x8 -> 4x4): the forward's MACs,
    the 4x4 output gradient read, the 8x8 input gradient written (4x the output)."""
    fwd = conv2d(1, 4, 8, 8, 6, 3, stride=2, padding=1)
    t = replace(fwd, transposed=True)
    assert t.macs == fwd.macs
    roles = {x.role: x.elements for x in t.tensors}
    assert roles["input"] == 1 * 6 * 4 * 4 and roles["output"] == 1 * 4 * 8 * 8
    comp = compulsory_elements(nest_for(t))
    assert comp["output"] == 4 * 8 * 8 and comp["input"] == 6 * 4 * 4
    c = cost_op(t, toy())
    assert c.offchip.output == 4 * 8 * 8 * 2


def test_strided_conv_grad_input_through_the_compiler():
    from evo.cost.rules import workload as rule
    from evo.ops.gradient import CONV2D_T

    node = SimpleNamespace(op=CONV2D_T, shape=(1, 4, 8, 8), attr_dict={
        "kernel": (3, 3), "stride": (2, 2), "padding": (1, 1), "dilation": (1, 1), "groups": 1,
        "output_padding": (1, 1)})
    w = rule(node, [(1, 6, 4, 4)], 1)
    assert isinstance(w, ConvWorkload) and w.transposed
    assert w.macs == conv2d(1, 4, 8, 8, 6, 3, stride=2, padding=1).macs


# ---------------------------------------------------------------------------
# area and power
def test_area_and_power():
    hw = toy(pes=4, glb=1000.0, pe=100.0, pe_area_m2=1e-9, static_power_w=0.5)
    hw = replace(hw, glb=replace(hw.glb, area_per_byte_m2=2e-12), pe=replace(hw.pe, area_per_byte_m2=5e-12))
    assert close(hw.area_m2, 4 * (1e-9 + 100 * 5e-12) + 1000 * 2e-12)
    net = cost_network([("c", conv2d(1, 2, 6, 6, 2, 3), ())], hw)
    c = net.ops[0].cost
    assert close(c.energy.static, 0.5 * c.latency_s)
    assert close(net.power_w, net.energy_j / net.latency_s)
    assert net.metrics["area"] == hw.area_m2 and net.metrics["power"] == net.power_w
    # defaults: 16-bit MAC 0.02 mm2 per PE, spads 40 um2/B, SRAM 10 um2/B
    e = PRESETS["Eyeriss"]
    assert close(e.area_m2, 168 * (0.02e-6 + 520 * 40e-12) + 108 * 1024 * 10e-12)


# ---------------------------------------------------------------------------
# properties for constrained and sparse mappings
@st.composite
def convs(draw):
    C = draw(st.integers(1, 8))
    K = draw(st.integers(1, 8))
    k = draw(st.sampled_from([1, 3]))
    H = draw(st.integers(k, 9))
    return conv2d(draw(st.integers(1, 2)), C, H, H, K, k, stride=draw(st.sampled_from([1, 2])),
                  padding=draw(st.integers(0, k // 2)))


@st.composite
def built(draw):
    rows, cols = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    glb = float(draw(st.integers(256, 1 << 14)))
    pe = float(draw(st.integers(8, 256)))
    glb_holds = draw(st.sampled_from([("input", "weight", "output"), ("input", "output")]))
    pe_split = draw(st.sampled_from([(), (("input", pe / 4), ("weight", pe / 2), ("output", pe / 4))]))
    return toy(pes=rows * cols, rows=rows, cols=cols, glb=glb, pe=pe, glb_holds=glb_holds, pe_split=pe_split,
               dataflow=draw(st.sampled_from(["any", "row_stationary", "weight_stationary", "output_stationary",
                                              "input_stationary"])),
               zero_gating=draw(st.booleans()), zero_skipping=draw(st.booleans()), compression=draw(st.booleans()))


@HYP
@given(convs(), built(), st.sampled_from(["latency", "energy", "edp"]), st.floats(0, 0.9), st.floats(0, 0.9))
def test_constrained_sparse_never_below_bounds(w, hw, objective, z_in, z_out):
    c = cost_op(w, hw, objective, sparsity=(z_in, z_out))  # cost_op asserts both bounds itself
    assert c.offchip.total >= c.compulsory_offchip_bytes * (1 - REL)
    assert c.latency_s >= c.roofline_latency_s * (1 - REL)
    assert c.latency_s >= c.offchip.total / hw.offchip.bandwidth_bps * (1 - REL)
    assert 0 <= c.utilization <= 1 + REL
    if "weight" not in hw.glb.holds:
        assert c.onchip.weight == 0.0


@HYP
@given(convs(), built(), st.sampled_from(["cols", "glb", "pe"]), st.sampled_from(["latency", "energy"]),
       st.floats(0, 0.9))
def test_constrained_more_resources_never_worse(w, hw, what, objective, z):
    if what == "cols":
        big = replace(hw, cols=hw.cols * 2, pes=hw.rows * hw.cols * 2)
    elif what == "glb":
        big = hw.with_level("global", size_bytes=hw.glb.size_bytes * 2)
    else:
        split = tuple((r, v * 2) for r, v in hw.pe.split)
        big = hw.with_level("pe", size_bytes=min(hw.glb.size_bytes, hw.pe.size_bytes * 2),
                            split=split if hw.pe.size_bytes * 2 <= hw.glb.size_bytes else hw.pe.split)
    small = cost_op(w, hw, objective, sparsity=(z, z))
    large = cost_op(w, big, objective, sparsity=(z, z))
    assert large.metric() <= small.metric() * (1 + 1e-6)


@st.composite
def row_stationary(draw):
    rows, cols = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    return toy(pes=rows * cols, rows=rows, cols=cols, glb=float(draw(st.integers(64, 4096))),
               pe=float(draw(st.integers(8, 64))), dataflow="row_stationary",
               glb_holds=draw(st.sampled_from([("input", "weight", "output"), ("input", "output")])),
               compression=draw(st.booleans()), zero_gating=draw(st.booleans()))


@HYP
@given(convs(), row_stationary(), st.sampled_from(["latency", "energy", "edp"]), st.floats(0, 0.9))
def test_row_stationary_joint_search_bounds(w, hw, objective, z):
    """The PE schedule searched inside each GLB tile (small GLBs: tiles and spills): never
    below compulsory traffic or the roofline, and the PEs read at least what the GLB fetches."""
    c = cost_op(w, hw, objective, sparsity=(z, z))
    assert c.offchip.total >= c.compulsory_offchip_bytes * (1 - REL)
    assert c.latency_s >= c.roofline_latency_s * (1 - REL)
    assert 0 <= c.utilization <= 1 + REL
    if not c.mapping.streaming:
        for role in ("input", "output"):
            assert getattr(c.onchip, role) >= getattr(c.offchip, role) * (1 - REL) - 1e-9


@HYP
@given(convs(), row_stationary(), st.sampled_from(["cols", "rows", "glb", "bw", "read", "write"]),
       st.sampled_from(["latency", "energy"]), st.booleans())
def test_row_stationary_joint_search_more_resources_never_worse(w, hw, what, objective, split):
    if split:  # the GLB's reads and writes on buses of their own (a quarter and a third of the port)
        g = hw.glb
        hw = replace(hw, glb=replace(g, read_bandwidth_bps=g.bandwidth_bps / 4, write_bandwidth_bps=g.bandwidth_bps / 3))
    if what in ("read", "write"):
        key = f"{what}_bandwidth_bps"
        big = replace(hw, glb=replace(hw.glb, **{key: (getattr(hw.glb, key) or hw.glb.bandwidth_bps) * 2}))
    elif what in ("cols", "rows"):
        rows, cols = (hw.rows, hw.cols * 2) if what == "cols" else (hw.rows * 2, hw.cols)
        big = replace(hw, rows=rows, cols=cols, pes=rows * cols)
    elif what == "glb":
        big = hw.with_level("global", size_bytes=hw.glb.size_bytes * 2)
    else:
        big = hw.with_level("offchip", bandwidth_bps=hw.offchip.bandwidth_bps * 2)
    assert cost_op(w, big, objective).metric() <= cost_op(w, hw, objective).metric() * (1 + 1e-6)


@HYP
@given(convs(), st.sampled_from(["any", "row_stationary", "weight_stationary"]), st.booleans(),
       st.sampled_from([1e-4, 0.05, 5.0]), st.sampled_from(["energy", "edp"]))
def test_energy_objective_counts_static_power(w, dataflow, narrow_glb, static, objective):
    """Static power is drawn over the latency, so it is part of the energy the search minimises:
    the pick with it is never worse, on the total energy (EDP), than the pick that ignores it."""
    hw = toy(pes=12, rows=3, cols=4, dataflow=dataflow, glb=512.0 if narrow_glb else 1 << 14, pe=64,
             glb_holds=("input", "output"), bw=1e8)
    blind = cost_op(w, hw, objective)
    seen = cost_op(w, replace(hw, static_power_w=static), objective)
    assert close(seen.energy.static, static * seen.latency_s)
    e_blind = blind.energy_j + static * blind.latency_s
    assert seen.energy_j >= blind.energy_j * (1 - REL)
    if objective == "energy":
        assert seen.energy_j <= e_blind * (1 + REL)
    else:
        assert seen.energy_j * seen.latency_s <= e_blind * blind.latency_s * (1 + REL)


@pytest.mark.parametrize("dataflow", ["any", "row_stationary"])
def test_static_power_changes_the_least_energy_mapping(dataflow):
    """A 4 -> 8 channel 14x14 convolution on 3 x 4 PEs behind a 100 MB/s link: the mapping of
    least dynamic energy is slow, and with 50 mW drawn over its latency it is not the least energy."""
    w = conv2d(1, 4, 14, 14, 8, 3, padding=1)
    hw = toy(pes=12, rows=3, cols=4, dataflow=dataflow, glb=512.0, pe=64, glb_holds=("input", "output"), bw=1e8)
    blind = cost_op(w, hw, "energy")
    seen = cost_op(w, replace(hw, static_power_w=0.05), "energy")
    assert seen.energy_j < 0.95 * (blind.energy_j + 0.05 * blind.latency_s)
    assert seen.latency_s < blind.latency_s and seen.energy_j - seen.energy.static > blind.energy_j


@HYP
@given(convs(), st.floats(0, 0.95))
def test_sparsity_never_costs_more(w, z):
    hw = toy(pes=4, zero_gating=True, zero_skipping=True, compression=True)
    dense = cost_op(w, hw, "energy")
    sparse = cost_op(w, hw, "energy", sparsity=(z, z))
    assert sparse.energy_j <= dense.energy_j * (1 + REL)
    assert sparse.offchip.total <= dense.offchip.total * (1 + REL)


def test_fusion_never_adds_offchip_traffic_on_a_built_tier():
    ops = [("a", conv2d(1, 4, 8, 8, 4, 3, padding=1), ()), ("b", conv2d(1, 4, 8, 8, 4, 3, padding=1), ("a",)),
           ("c", conv2d(1, 4, 8, 8, 8, 1), ("b",))]
    hw = toy(pes=12, rows=3, cols=4, dataflow="row_stationary", glb=8192.0, glb_holds=("input", "output"),
             compression=True, zero_gating=True)
    sp = {"a": (0.0, 0.5), "b": (0.5, 0.6), "c": (0.6, 0.0)}
    fused = cost_network(ops, hw, sparsity=sp)
    plain = cost_network(ops, hw, fuse=False, sparsity=sp)
    assert fused.offchip_bytes <= plain.offchip_bytes * (1 + REL)


# ---------------------------------------------------------------------------
# measured sparsity
def test_calibrate_measures_each_activation_and_saves_energy():
    from pathlib import Path

    import torch

    import evo
    from evo.cost.network import cost_graph
    from evo.cost.sparsity import calibrate
    from evo.cli.run import load_weights
    from evo.runtime.images import list_images, load_images

    root = Path(__file__).resolve().parent.parent
    prog = evo.compile_file(root / "examples" / "quickstart.evo")
    g = prog.graph("QuickNet")
    model = prog.build("QuickNet")
    load_weights(model, root / "evo" / "data" / "quickstart.pt")
    x, _ = load_images(list_images(root / "examples" / "images")[:2], g.nodes[0].shape, (0.5,) * 3, (0.25,) * 3)
    sp = calibrate(prog, "QuickNet", x, model=model)
    # reference: the layers run by hand
    with torch.no_grad():
        a = model.features[2](model.features[1](model.features[0](x)))   # conv -> bn -> relu
        b = model.features[3](a)                                           # maxpool
        c = model.features[6](model.features[5](model.features[4](b)))
    frac = lambda t: float((t == 0).sum()) / t.numel()  # noqa: E731
    assert sp["features.0"] == (frac(x), frac(a)) and 0.3 < frac(a) < 0.99
    assert sp["features.3"] == (frac(a), frac(b))
    assert sp["features.4"] == (frac(b), frac(c))
    assert sp["pool"][1] == 0.0  # not a module: not measured, counted dense
    # a tier that gates zeros and compresses: less energy and off-chip traffic than dense
    hw = toy(pes=16, glb=1 << 14, pe=256, zero_gating=True, compression=True)
    dense = cost_graph(g, hw)
    sparse = cost_graph(g, hw, sparsity=sp)
    assert sparse.energy_j < dense.energy_j and sparse.offchip_bytes < dense.offchip_bytes
    assert sparse.latency_s <= dense.latency_s * (1 + REL)


# ---------------------------------------------------------------------------
# evolution caches never change a figure
def test_shared_search_caches_give_the_figures_of_a_cold_search():
    """Tiers that differ in one gene share cached halves of the search (a PE half enumerated
    for more PEs and masked, a GLB half shared across PE counts): every cost, mapping and
    candidate count equals a search from an empty cache."""
    from evo.cost import clear_cache

    ws = [conv2d(1, 16, 16, 16, 32, 3, padding=1), conv2d(1, 32, 16, 16, 32, 3, stride=2, padding=1),
          linear(1, 64, 10)]
    tiers = [toy(pes=p, glb=g, pe=s, bw=b) for p, g, s, b in
             [(32, 32768.0, 128.0, 3.2e9), (96, 32768.0, 256.0, 3.2e9), (300, 131072.0, 128.0, 25.6e9),
              (512, 65536.0, 512.0, 6.4e9), (64, 65536.0, 128.0, 25.6e9)]]
    clear_cache()
    warm = [cost_op(w, hw, obj) for hw in tiers for w in ws for obj in ("latency", "energy", "edp")]
    cold = []
    for hw in tiers:
        for w in ws:
            for obj in ("latency", "energy", "edp"):
                clear_cache()
                cold.append(cost_op(w, hw, obj))
    assert warm == cold


# ---------------------------------------------------------------------------
# co-design: area makes the front trade PEs and memories
CODESIGN = """\
evo 0.1
network Tiny(x: Tensor[N, 3, 16, 16], width: int = 16) {
    body = seq(x) { conv2d(width, 3, padding=1); relu(); conv2d(width, 3, padding=1); relu() }
    return linear(flatten(adaptive_avgpool2d(body, 1)), 10)
}
hardware Chip {
    frequency = 200 MHz
    pes = 64
    word = 8 bit
    offchip DRAM { bandwidth = 4 GB/s; energy = 100 pJ/B }
    global GLB { size = 16 KiB; bandwidth = 16 B/cycle; energy = 3 pJ/B }
    pe Spad { size = 128 B; bandwidth = 4 B/cycle; energy = 0.5 pJ/B }
}
target T { network = Tiny; hardware = Chip }
evolve S {
    target = T
    gene Chip.pes in [16, 64, 256]
    gene Chip.global.size in [4 KiB, 16 KiB, 64 KiB]
    gene Chip.pe.size in [64 B, 256 B]
    minimize latency, area
    require area <= 20 mm2
    population = 6
    generations = 10
}
"""


def test_minimize_latency_and_area_trades_pes_and_buffers(tmp_path):
    import evo
    from evo.evolve import Gene, Space, exhaustive
    from evo.evolve.driver import evaluator

    f = tmp_path / "codesign.evo"
    f.write_text(CODESIGN, encoding="utf-8")
    prog = evo.compile_file(f)
    ev = evaluator(prog, "S")
    spec = prog.evolves["S"]
    space = Space([Gene(g.name, ev.domains[g.name]) for g in spec.genes])
    res = exhaustive(space, ev, spec.objectives, spec.constraints)
    front = res.front
    pes = {p.values["Chip.pes"] for p in front}
    glb = {p.values["Chip.global.size"] for p in front}
    assert len(front) >= 3 and len(pes) >= 2
    # not the largest of everything: the smallest chip is on the front (least area) ...
    assert min(p.metrics["area"] for p in front) == min(p.metrics["area"] for p in res.evaluated if p.feasible)
    assert any(p.values["Chip.pes"] < 256 or p.values["Chip.global.size"] < 65536 for p in front)
    # ... and area is the cost model's: PEs x (MAC + spad) + GLB, 8-bit MACs at a quarter of 0.02 mm2
    for p in front:
        n, g, s = p.values["Chip.pes"], p.values["Chip.global.size"], p.values["Chip.pe.size"]
        assert math.isclose(p.metrics["area"], n * (0.005e-6 + s * 40e-12) + g * 10e-12, rel_tol=1e-12)
    # latency alone would take the most PEs
    fastest = min((p for p in res.evaluated if p.feasible), key=lambda p: p.metrics["latency"])
    assert fastest.values["Chip.pes"] == 256 and len(glb | pes) >= 3


def test_psum_cycles_in_the_language(tmp_path):
    """``psum_cycles`` is a whole number of cycles, 0 (an adder of the PE's own, the default) or
    more; a gene may range over it, 0 included, and each value reaches the cost model: the
    shared adder's cycles make the costed network slower, never faster."""
    import evo
    from evo.cost import as_hardware
    from evo.evolve import Gene, Space, exhaustive
    from evo.evolve.driver import evaluator

    text = (CODESIGN.replace("    pes = 64\n", "    rows = 8\n    cols = 8\n    dataflow = row_stationary\n"
                             "    psum_cycles = 0\n")
            .replace("    gene Chip.pes in [16, 64, 256]\n", "    gene Chip.psum_cycles in [0, 1, 2]\n")
            .replace("    gene Chip.global.size in [4 KiB, 16 KiB, 64 KiB]\n    gene Chip.pe.size in [64 B, 256 B]\n", "")
            .replace("minimize latency, area", "minimize latency"))
    f = tmp_path / "adder.evo"
    f.write_text(text, encoding="utf-8")
    prog = evo.compile_file(f)
    assert as_hardware(prog.hardware["Chip"]).psum_cycles == 0
    ev = evaluator(prog, "S")
    spec = prog.evolves["S"]
    res = exhaustive(Space([Gene(g.name, ev.domains[g.name]) for g in spec.genes]), ev, spec.objectives,
                     spec.constraints)
    lat = {p.values["Chip.psum_cycles"]: p.metrics["latency"] for p in res.evaluated}
    assert set(lat) == {0, 1, 2} and lat[0] < lat[1] < lat[2]
    assert [p.values["Chip.psum_cycles"] for p in res.front] == [0]


def test_evoc_cost_calibrate(tmp_path, capsys):
    import json
    from pathlib import Path

    from evo.cli import main as evoc

    root = Path(__file__).resolve().parent.parent
    prog = tmp_path / "q.evo"
    prog.write_text(f'evo 0.1\nimport "{root / "examples" / "quickstart.evo"}"\n'
                    "hardware Gated {\n    frequency = 200 MHz\n    pes = 64\n    zero_gating = true\n"
                    "    compression = true\n    offchip DRAM { bandwidth = 1 GB/s; energy = 100 pJ/B }\n"
                    "    global GLB { size = 64 KiB; bandwidth = 16 B/cycle; energy = 3 pJ/B }\n"
                    "    pe Spad { size = 256 B; bandwidth = 4 B/cycle; energy = 0.5 pJ/B }\n}\n", encoding="utf-8")
    base = ["cost", str(prog), "--network", "QuickNet", "--hardware", "Gated", "--format", "json"]
    weights = ["--weights", str(root / "evo" / "data" / "quickstart.pt")]
    assert evoc(base) == 0
    dense = json.loads(capsys.readouterr().out)
    assert evoc(base + ["--calibrate", str(root / "examples" / "images")] + weights) == 0
    sparse = json.loads(capsys.readouterr().out)
    assert sparse["cost"]["totals"]["energy_j"]["total"] < dense["cost"]["totals"]["energy_j"]["total"]
    assert sparse["cost"]["totals"]["offchip_bytes"]["total"] < dense["cost"]["totals"]["offchip_bytes"]["total"]
    # usage errors: exit 2, one line, no traceback
    assert evoc(base + ["--calibrate", str(tmp_path / "missing.png")]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "Traceback" not in err
    assert evoc(base + weights) == 2
    assert "--weights is for --calibrate" in capsys.readouterr().err


def test_eyeriss_example_tier_is_the_chip_as_published():
    from pathlib import Path

    import evo
    from evo.cost import as_hardware

    root = Path(__file__).resolve().parent.parent
    hw = as_hardware(evo.compile_file(root / "examples" / "eyeriss.evo").hardware["EyerissJSSC"])
    assert (hw.rows, hw.cols, hw.pes, hw.frequency_hz, hw.word_bits) == (12, 14, 168, 200e6, 16)
    assert hw.dataflow == "row_stationary" and hw.zero_gating and hw.compression and not hw.zero_skipping
    # [E17] V-A: 100 kB of the 108 kB buffer hold ifmaps and psums (8 kB: the next pass's filters)
    assert hw.glb.holds == ("input", "output") and hw.glb.size_bytes == 100 * 1024
    # [E17] V-B: reads on the 64-bit psum GIN and the 16-bit ifmap GIN, writes on the 64-bit GON
    assert (hw.glb.bandwidth_bps, hw.glb.read_bandwidth_bps, hw.glb.write_bandwidth_bps) == (18 * 200e6, 10 * 200e6,
                                                                                              8 * 200e6)
    assert hw.offchip.bandwidth_bps == 8 * 60e6  # 64-bit link at 60 MHz in the measurements
    # clock network and control, calibrated on AlexNet (Table V) [C]: within the paper's bound, >= 45 % of 278 mW
    assert close(hw.static_power_w, 0.1708) and hw.static_power_w >= 0.45 * 0.278
    # [E17] Fig. 12: the PE's one adder takes the psums it receives, a cycle each [P]
    assert hw.psum_cycles == 1
    # the [E16] ratios on the calibrated unit: DRAM 200x, GLB 6x, spad 1x a 16-bit MAC
    unit = hw.mac_energy_j
    assert (close(hw.offchip.energy_per_byte_j * 2, 200 * unit) and close(hw.glb.energy_per_byte_j * 2, 6 * unit)
            and close(hw.pe.energy_per_byte_j * 2, unit))
    assert hw.pe.split == (("input", 24.0), ("weight", 448.0), ("output", 48.0)) and hw.pe.size_bytes == 520
    # VGG-16 conv1-2 (batch 3) maps row-stationary: PE sets of the filter rows down a column and
    # output rows across, copied over at most two other dims down the rows or across the columns
    c = cost_op(conv2d(3, 64, 224, 224, 64, 3, padding=1), hw)
    sp = dict(c.mapping.spatial)
    copies = [sp[d] for d in "NGKC" if d in sp]
    assert sp["R"] == 3 and sp.get("P", 1) <= 14 and len(copies) <= 2
    assert math.prod(copies) <= (12 // 3) * (14 // sp.get("P", 1))
    assert c.offchip.weight >= 64 * 64 * 9 * 2 and c.onchip.weight == 0.0  # filters bypass the GLB
    # the chip's mapper minimises energy [E17]; with the clock drawn over the latency the
    # least-energy mapping keeps more of the array busy than the least dynamic energy does
    w = conv2d(3, 64, 224, 224, 64, 3, padding=1)
    dyn = cost_op(w, replace(hw, static_power_w=0.0), "energy")
    tot = cost_op(w, hw, "energy")
    assert tot.active_pes > dyn.active_pes
    assert tot.energy_j < dyn.energy_j + hw.static_power_w * dyn.latency_s


def _bench_eyeriss():
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("bench_eyeriss", root / "bench" / "bench_eyeriss.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_fit_power_recovers_known_constants_and_refuses_what_it_cannot_fit():
    """power = 0.1 W + 2 x dynamic / latency exactly: the fit returns 0.1 and 2 with no residual;
    with noise it is the least-squares line (numpy.polyfit on the dynamic powers, as reference)."""
    dyn, lat = [1.0, 3.0, 2.0, 0.5], [10.0, 10.0, 5.0, 1.0]
    f = fit_power(dyn, lat, [0.1 + 2 * d / t for d, t in zip(dyn, lat)])
    assert close(f.static_power_w, 0.1, 1e-9) and close(f.energy_scale, 2.0, 1e-9)
    assert all(abs(r) < 1e-12 for r in f.residuals) and close(f.power_w(4.0, 8.0), 1.1, 1e-9)
    measured = [0.33, 0.71, 0.88, 1.02]
    slope, icpt = np.polyfit([d / t for d, t in zip(dyn, lat)], measured, 1)
    f = fit_power(dyn, lat, measured)
    assert close(f.static_power_w, icpt, 1e-9) and close(f.energy_scale, slope, 1e-9)
    assert all(close(r, m - f.power_w(d, t), 1e-9) for r, d, t, m in zip(f.residuals, dyn, lat, measured))
    assert fit_power(np.array(dyn), np.array(lat, dtype=np.float32), np.array(measured)) == f
    with pytest.raises(ValueError, match="at least two ops"):
        fit_power([1.0], [1.0], [1.0])
    with pytest.raises(ValueError, match="one dynamic energy, latency and measured power per op"):
        fit_power([1.0, 2.0], [1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="latency must be a finite positive"):
        fit_power([1.0, 2.0], [1.0, 0.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="cannot be told apart"):
        fit_power([1.0, 2.0], [1.0, 2.0], [1.0, 2.0])


def test_with_energy_scale_scales_every_energy_and_sets_the_static_power():
    hw = replace(toy(pes=12, rows=3, cols=4, dataflow="row_stationary"), operand_energy_j=0.3e-12)
    s = hw.with_energy_scale(0.5, 0.2)
    assert s.static_power_w == 0.2 and hw.with_energy_scale(0.5).static_power_w == hw.static_power_w
    assert close(s.mac_energy_j, hw.mac_energy_j / 2) and close(s.operand_energy_j, 0.15e-12)
    for a in ("offchip", "glb", "pe"):
        assert close(getattr(s, a).energy_per_byte_j, getattr(hw, a).energy_per_byte_j / 2)
        assert replace(getattr(s, a), energy_per_byte_j=0.0) == replace(getattr(hw, a), energy_per_byte_j=0.0)
    # energies scale, nothing else: same mapping, traffic and cycles, half the energy
    w = conv2d(1, 4, 8, 8, 4, 3, padding=1)
    a, b = cost_op(w, hw, "latency"), cost_op(w, hw.with_energy_scale(0.5), "latency")
    assert a.mapping == b.mapping and a.offchip == b.offchip and a.compute_cycles == b.compute_cycles
    assert close(b.energy_j, a.energy_j / 2, 1e-9)
    with pytest.raises(HardwareError, match="energy scale"):
        hw.with_energy_scale(0.0)
    with pytest.raises(HardwareError, match="static power"):
        hw.with_energy_scale(1.0, -1.0)


def test_eyeriss_at_the_chips_own_mapping_meets_the_latency_and_power_targets():
    """bench/bench_eyeriss.py: the chip's e and q r read from JSSC 2017 Table VI by one rule
    (active PEs over the 12 rows; 2 C ofmap values over the GLB accesses, to a power of two),
    the rest searched.  The rule gives the values the chip's figures imply, and at them the
    model's processing latency is within 15 % and its power within 20 % of the measured ones
    in every layer (the power on the tier calibrated on AlexNet, no VGG-16 figure used)."""
    bench = _bench_eyeriss()
    picks = [bench.chip_mapping(C, K, H, paper) for _, C, K, H, paper in bench.VGG]
    assert [e for e, _ in picks] == [13] * 7 + [14] * 6  # 156 and 168 active PEs
    assert [qr for _, qr in picks] == [1, 1, 1, 1, 2, 2, 2, 4, 4, 4, 8, 8, 8]
    # the 4 PE sets of the 12 rows: over filters while a pass's channels fit one PE's ifmap spad
    # (q S <= 12 words), then over channels too (q r = 8: q = 4, r = t = 2)
    assert [bench.chip_sets(qr) for _, qr in picks] == [(1, 4)] * 10 + [(2, 2)] * 3
    rows = bench.model(bench.tier(), None, "energy", chip=True)
    assert [r["active"] for r in rows] == [r["paper"][4] for r in rows]  # 156 and 168, as measured
    for r, (e, qr) in zip(rows, picks):
        spatial, glb = re.match(r"spatial (.*?); global: tile (.*?);", r["mapping"]).groups()
        assert f"P{e} x R3" in spatial
        tile = {d: int(v) for d, v in re.findall(r"([A-Z])(\d+)", glb)}
        assert (tile.get("C", 1), tile["P"]) == (qr, e)
        assert abs(r["proc_s"] * 1e3 / r["paper"][2] - 1) <= 0.15, r["layer"]
        assert abs(r["power_w"] * 1e3 / r["paper"][0] - 1) <= 0.20, r["layer"]


def test_eyeriss_calibration_is_the_least_squares_fixed_point_on_alexnet():
    """The tier's static power and energy unit are the least-squares fit of the chip's AlexNet
    power (Table V) at the chip's AlexNet mapping (Table III): fitting again on the tier returns
    its own figures, and the fit from the uncalibrated tier (the paper's 125 mW bound, a 1 pJ
    unit) reaches the same point."""
    bench = _bench_eyeriss()
    hw = bench.tier()
    static, scale, rows = bench.calibrate(hw)
    assert abs(static - hw.static_power_w) <= 0.002 and abs(scale - 1) <= 0.01
    raw = hw.with_energy_scale(1e-12 / hw.mac_energy_j, 0.125)  # the [E16] ratios on 1 pJ, 125 mW
    s2, k2, _ = bench.calibrate(raw)
    assert close(raw.mac_energy_j * k2, hw.mac_energy_j, 0.01) and abs(s2 - static) <= 0.002
    # not knife-edge: fitted on any four AlexNet layers, the fifth is within 20 % and so is every
    # VGG-16 layer's power at the chip's mapping
    vgg = bench.model(hw, None, "energy", chip=True)
    held = bench.held_out(rows)
    for k in range(len(rows)):
        some = [r for i, r in enumerate(rows) if i != k]
        f = fit_power([r["dyn_j"] for r in some], [r["proc_s"] for r in some], [r["paper"][0] / 1e3 for r in some])
        assert close(held[k], f.power_w(rows[k]["dyn_j"], rows[k]["proc_s"]))
        for r in [rows[k]] + vgg:
            assert abs(f.power_w(r["dyn_j"], r["proc_s"]) * 1e3 / r["paper"][0] - 1) <= 0.20, (k, r["layer"])
    # the calibration set is a second published per-layer table (Table V) the model meets at the
    # chip's mapping: latency within 15 % (the psums each PE adds in take its adder [P]: without
    # them CONV1 and 2 run 16 % fast) and DRAM within 25 % in every layer; power is fitted here,
    # so its test is the held-out prediction above
    for r in rows:
        assert abs(r["proc_s"] * 1e3 / r["paper"][2] - 1) <= 0.15, r["layer"]
        assert abs(r["dram_b"] / 1e6 / r["paper"][6] - 1) <= 0.25, r["layer"]
    fast = bench.alexnet(replace(hw, psum_cycles=0.0))
    assert all(r["proc_s"] * 1e3 / r["paper"][2] < 0.85 for r in fast[:2])
    # the chip's AlexNet mapping is the model's: its PE sets as Table III places them
    assert [r["active"] for r in rows] == [154, 135, 156, 156, 156]  # CONV2: the 5 x 27 set folded
    assert "K2 x P7 x R11" in rows[0]["mapping"] and "K2 x C2 x P13 x R3" in rows[3]["mapping"]


def test_measured_zeros_pass_through_the_ops_that_keep_them(monkeypatch):
    """A functional op whose entry says `keeps_zeros` (transpose, permute, flatten) has its input's
    zero fraction; one that computes (scale_by: no flag) is counted dense; the flag, not a name
    list in evo.cost, decides."""
    import dataclasses

    import torch

    import evo
    from evo.cost.sparsity import measure
    from evo.ops import REGISTRY

    src = ("evo 0.1\nnetwork T(x: Tensor[N, 3, 8, 8]) {\n    features = seq(x) {\n        conv2d(4, 3, padding=1)\n"
           "        relu()\n    }\n    t = transpose(features, 2, 3)\n    p = permute(t, [0, 1, 3, 2])\n"
           "    s = scale_by(p, 2.0)\n    return linear(flatten(s), 2)\n}\n")
    prog = evo.compile(src)
    g, model = prog.graph("T"), prog.build("T")
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        relu = model.features(x)
    frac = float((relu == 0).sum()) / relu.numel()  # by hand: the relu's zeros
    assert 0.2 < frac < 0.8
    zeros = measure(model, g, x)
    by_op = {n.op: zeros[n.id] for n in g.nodes}
    assert by_op["transpose"] == by_op["permute"] == frac
    assert by_op["scale_by"] == 0.0 and by_op["flatten"] == 0.0  # after a computing op: dense
    monkeypatch.setitem(REGISTRY, "transpose", dataclasses.replace(REGISTRY["transpose"], keeps_zeros=False))
    zeros = measure(model, g, x)
    assert zeros[g.nodes[3].id] == 0.0 and g.nodes[3].op == "transpose"
    assert {n.op: zeros[n.id] for n in g.nodes}["permute"] == 0.0


# ---------------------------------------------------------------------------
# mapping constraints (a published chip's own choice, the rest searched)
def test_constraints_pin_a_row_stationary_pass():
    """conv 4 -> 2 channels, 4 x 4, 3 x 3 pad 1, on a 3 x 4 row-stationary array whose GLB holds
    ifmaps and psums.  Free, the least-energy mapping takes all 4 channels in one pass (no psum
    comes back to the array).  Pinned to one channel per pass (glb_tile C1) and 2 output rows
    across the columns (spatial P2), by hand:
      PEs     R3 x P2 = 6 active; 2 x 4 x 16 x 9 = 1152 MACs / 6 = 192 cycles
      psums   every output (2 x 16) leaves the array once per pass (4 passes): 128 words written
              to the GLB, and is read back for the 3 passes after the first: 96 words
      ifmaps  per channel, the 2 output-row trips read rows 0-2 and 1-3 (padding is not read):
              6 rows x 4 columns x 4 channels = 96 words"""
    w = conv2d(1, 4, 4, 4, 2, 3, padding=1, bias=False)
    hw = toy(pes=12, rows=3, cols=4, dataflow="row_stationary", glb_holds=("input", "output"), pe=64, bw=1e13)
    free = cost_op(w, hw, "energy")
    assert dict(free.mapping.glb.tiles)["C"] == 4 and free.onchip.psum_read == 0
    c = cost_op(w, hw, "energy", constraints=MappingConstraints.of(spatial={"P": 2}, glb_tile={"C": 1}))
    assert dict(c.mapping.spatial) == {"R": 3, "P": 2}
    assert dict(c.mapping.glb.tiles)["C"] == 1
    assert c.active_pes == 6 and c.compute_cycles == 192
    assert c.onchip.output == 128 * 2 and c.onchip.psum_read == 96 * 2
    assert c.onchip.input == 96 * 2
    # off-chip traffic is the compulsory one either way (everything fits the GLB)
    assert c.offchip.total == free.offchip.total
    assert c.energy_j > free.energy_j and c.latency_s > free.latency_s


def test_constraint_errors_are_clear():
    w = conv2d(1, 8, 8, 8, 8, 3, padding=1)
    hw = toy(pes=12, rows=3, cols=4, dataflow="row_stationary", glb=4096.0, glb_holds=("input", "output"), pe=64)
    with pytest.raises(ValueError, match=r"spatial\['Z'\]: this conv nest's dims are N, G, K, C, P, Q, R, S"):
        cost_op(w, hw, constraints=MappingConstraints.of(spatial={"Z": 2}))
    with pytest.raises(ValueError, match=r"glb_tile\['R'\].*global-buffer tiled dims are N, G, K, C, P, Q$"):
        cost_op(w, hw, constraints=MappingConstraints.of(glb_tile={"R": 2}))
    with pytest.raises(ValueError, match="positive integer"):
        MappingConstraints.of(glb_tile={"C": 0})
    with pytest.raises(ConstraintError, match="spatial constraint P5"):
        cost_op(w, hw, constraints=MappingConstraints.of(spatial={"P": 5}))  # 4 columns
    # psums 8 x 8 x 8 words = 1024 B, and the ifmap rows beside them
    with pytest.raises(ConstraintError, match=r"does not fit the global buffer \(1024 B\)"):
        cost_op(w, hw.with_level("global", size_bytes=1024.0),
                constraints=MappingConstraints.of(glb_tile={"C": 8, "K": 8, "P": 8}))
    with pytest.raises(ValueError, match="no mapping to constrain"):
        cost_op(CopyWorkload(64, 64), hw, constraints=MappingConstraints.of(spatial={"E": 2}))
    # no constraint is no constraint
    assert cost_op(w, hw, constraints=MappingConstraints()) == cost_op(w, hw)


@HYP
@given(convs(), st.one_of(row_stationary(), built()), st.sampled_from(["latency", "energy", "edp"]))
def test_constraining_to_the_searched_choice_changes_nothing(w, hw, objective):
    """Pinning every dim's spatial factor and GLB tile to what the free search chose leaves
    that mapping the best one: the same figures, by an independent search over the
    narrowed space."""
    free = cost_op(w, hw, objective)
    if free.mapping.streaming:
        return
    names = nest_for(w).names
    spatial = {d: dict(free.mapping.spatial).get(d, 1) for d in names}
    glb = {d: v for d, v in free.mapping.glb.tiles if d in nest_for(w).glb_dims}
    c = cost_op(w, hw, objective, constraints=MappingConstraints.of(spatial=spatial, glb_tile=glb))
    assert c.mapping.spatial == free.mapping.spatial and c.mapping.glb.tiles == free.mapping.glb.tiles
    assert close(c.latency_s, free.latency_s) and close(c.energy_j, free.energy_j)
    assert c.offchip == free.offchip


def test_network_constraints_reach_their_op_and_no_other():
    """cost_network passes an op's constraints to that op, unfused and in the fusion trials; the
    other ops are searched freely; a name no op has is refused."""
    hw = toy(pes=12, rows=3, cols=4, dataflow="row_stationary", glb_holds=("input", "output"), pe=64, bw=1e13)
    a, b = conv2d(1, 4, 4, 4, 4, 3, padding=1, bias=False), conv2d(1, 4, 4, 4, 2, 3, padding=1, bias=False)
    ops = [("a", a, ()), ("b", b, ("a",))]
    fix = MappingConstraints.of(spatial={"P": 2}, glb_tile={"C": 1})
    free = cost_network(ops, hw, "energy")
    pinned = cost_network(ops, hw, "energy", constraints={"b": fix})
    fa, fb = (o.cost for o in free.ops)
    pa, pb = (o.cost for o in pinned.ops)
    assert pa == fa  # a: as free
    assert dict(pb.mapping.spatial)["P"] == 2 and dict(pb.mapping.glb.tiles)["C"] == 1
    assert pb.fused_input_on_chip == fb.fused_input_on_chip
    alone = cost_op(b, hw, "energy", pb.fused_input_on_chip, pb.fused_output_on_chip,
                    fused_input_elements=16 * 4 if pb.fused_input_on_chip else None, constraints=fix)
    assert close(alone.energy_j, pb.energy_j) and close(alone.latency_s, pb.latency_s)
    with pytest.raises(ValueError, match="'c': no op of the network has that name"):
        cost_network(ops, hw, constraints={"c": fix})
