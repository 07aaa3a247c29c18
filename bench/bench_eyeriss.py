"""Fidelity against silicon: VGG-16's convolutions on a tier that mirrors the fabricated
Eyeriss chip, beside the chip's measurements.

    python bench/bench_eyeriss.py [--zeros Z] [--objective latency|energy|edp] [--mapping chip|search|both]
                                  [--refit] [--markdown] [--mappings]

Source of the measurements: Y.-H. Chen, T. Krishna, J. Emer, V. Sze, "Eyeriss: An
Energy-Efficient Reconfigurable Accelerator for Deep Convolutional Neural Networks",
IEEE JSSC 52(1), 2017, Table VI (VGG-16, batch 3, 224 x 224, 200 MHz), as transcribed in
/work/shared/reference/eyeriss-vgg16.md (cucapra/fodlam `data/eyeriss-vgg16.csv`).

The tier is `EyerissJSSC` of examples/eyeriss.evo, compiled by evo: the chip's published
array (12 x 14), clock, word, buffers (the 100 kB of the global buffer that hold ifmaps
and psums, spads of 224 / 12 / 24 words), the buffer's port (reads on the 64-bit psum GIN
and the 16-bit ifmap GIN, writes on the 64-bit GON), the 60 MHz link, dataflow (row
stationary, a set wider than the columns folded), the PE's one adder shared by its MACs and
the psums it receives (Fig. 12: ``psum_cycles = 1``), zero gating, compression, and its
static power and energy unit calibrated on the chip's AlexNet measurements (below); no
parameter of the tier is fitted to the VGG-16 table.  Each layer is costed on its own (the
chip runs layer by layer), objective energy by default: the chip's mapping parameters are
chosen by an optimisation of energy over the memory hierarchy [JSSC 2017, section IV-A],
and the static power drawn over the latency is part of the energy the search minimises.

Two tables (``--mapping both``, the default): at the chip's own mapping, as far as Table VI
shows it (``chip_mapping``: the ofmap rows across the columns e and the channels per
processing pass q r, read from the active-PE and GLB-access columns by one rule for every
layer; ``chip_sets``: the PE sets over channels r and filters t that fill the 12 rows, from
the ifmap spad's bound; fixed with ``MappingConstraints``, the rest searched), which tests how the model
evaluates a mapping; and the model's own search, every choice its own.

Columns, per layer and in total:

* processing latency: the paper's "proc." (excludes DRAM transfer time) against the
  model's latency without the off-chip term, max(compute, global buffer, PE links);
* DRAM MB: the chip's measured DRAM traffic against the model's off-chip bytes;
* GLB MB: the chip's global-buffer accesses against the model's (fills from DRAM and
  reads / writes by the PEs);
* power: the chip's measured power against the model's on-chip energy (global buffer,
  spads, MACs) over its processing latency, plus the tier's static power;
* active PEs: the chip's against the mapping's.

Calibration, held out from VGG-16: the two constants the paper does not give, the clock
network's (static) power and the absolute energy of the [E16] unit (one MAC), are the
least-squares fit of the chip's measured power on AlexNet (JSSC 2017 Table V, batch 4) at
the chip's own AlexNet mapping (Table III: m n e p q r t of every layer), and the tier in
examples/eyeriss.evo carries them.  The bench costs the AlexNet layers first, prints them
beside Table V and fits again: the tier is the fit's fixed point, so the fit returns its
own figures (``--refit`` costs VGG-16 on the fitted tier, for a tier someone changed),
and it predicts each AlexNet layer's power from the fit on the other four (``held_out``:
a test on layers the fit did not see).  No VGG-16 figure enters the calibration.

Activations carry, by default, the zero fractions the chip measured in each layer's
ifmaps (Table VI, "Zeros in Ifmaps": 24.8-88.5 % after the image); they gate MACs and
spad reads and shrink the run-length coded DRAM traffic.  ``--zeros Z`` gives every ifmap
and ofmap (after the first layer's input) a zero fraction Z instead (``--zeros 0``:
dense).  Ratios are model / paper.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

import evo
from evo.cost import MappingConstraints, as_hardware, conv2d, cost_op, fit_power

# layer: (C, K, H), and the paper's Table VI row:
# power mW, total ms, proc ms, GMACs, active PEs, GLB MB, DRAM MB
VGG = [
    ("1-1", 3, 64, 224, (247, 76.2, 38.0, 0.26, 156, 112.6, 15.4)),
    ("1-2", 64, 64, 224, (218, 910.3, 810.6, 5.55, 156, 2402.8, 54.0)),
    ("2-1", 64, 128, 112, (242, 470.3, 405.3, 2.77, 156, 1201.4, 33.4)),
    ("2-2", 128, 128, 112, (231, 894.3, 810.8, 5.55, 156, 2402.3, 48.5)),
    ("3-1", 128, 256, 56, (254, 241.1, 204.0, 2.77, 156, 607.4, 20.2)),
    ("3-2", 256, 256, 56, (235, 460.9, 408.1, 5.55, 156, 1214.8, 32.2)),
    ("3-3", 256, 256, 56, (233, 457.7, 408.1, 5.55, 156, 1214.8, 30.8)),
    ("4-1", 256, 512, 28, (278, 135.8, 105.1, 2.77, 168, 321.8, 17.8)),
    ("4-2", 512, 512, 28, (261, 254.8, 210.0, 5.55, 168, 643.7, 20.6)),
    ("4-3", 512, 512, 28, (240, 246.3, 210.0, 5.55, 168, 643.7, 22.8)),
    ("5-1", 512, 512, 14, (258, 54.3, 48.3, 1.39, 168, 90.0, 6.3)),
    ("5-2", 512, 512, 14, (236, 53.7, 48.5, 1.39, 168, 90.0, 5.7)),
    ("5-3", 512, 512, 14, (230, 53.7, 48.5, 1.39, 168, 90.0, 5.6)),
]
PAPER_TOTAL = (236, 4309.5, 3755.2, 46.04, 158, 11035.8, 321.1)
# Table VI's "Zeros in Ifmaps (%)", the chip's measured zero fraction of each layer's input, as
# OCR'd in cucapra/fodlam raw/eyeriss-tableVI.txt ("16%" for 1-1 is read 1.6 %: the image; it is
# not used, the image crosses uncompressed [JSSC 2017 IV-B]); total 58.6 %.
ZEROS_IN = (0.016, 0.477, 0.248, 0.387, 0.397, 0.531, 0.587, 0.743, 0.747, 0.854, 0.794, 0.874, 0.885)
BATCH = 3
TARGETS = {"latency": 0.15, "dram": 0.25, "power": 0.20}

# AlexNet, batch 4 (the calibration set): layer: (C, K, H, R, stride, padding, groups), the chip's
# Table V row (power mW, total ms, proc ms, GMACs, active PEs, GLB MB, DRAM MB), its "Zeros in
# Ifmaps" (CONV1's 0.01 %: the image, costed dense as VGG-16's) and its Table III mapping
# (m n e p q r t).  Source: JSSC 2017 Tables III and V as OCR'd in cucapra/fodlam
# raw/eyeriss-tableIII.txt, raw/eyeriss-tableV.txt, data/eyeriss-alexnet.csv.
ALEXNET = [
    ("CONV1", (3, 96, 227, 11, 4, 0, 1), (332, 20.9, 16.5, 0.42, 154, 18.5, 5.0), 0.0, (96, 1, 7, 16, 1, 1, 2)),
    ("CONV2", (96, 256, 27, 5, 1, 2, 2), (288, 41.9, 39.2, 0.90, 135, 77.6, 4.0), 0.387, (64, 1, 27, 16, 2, 1, 1)),
    ("CONV3", (256, 384, 13, 3, 1, 1, 1), (266, 23.6, 21.3, 0.60, 156, 50.2, 3.0), 0.725, (64, 4, 13, 16, 4, 1, 4)),
    ("CONV4", (384, 384, 13, 3, 1, 1, 2), (235, 18.4, 16.0, 0.45, 156, 37.4, 2.1), 0.793, (64, 4, 13, 16, 3, 2, 2)),
    ("CONV5", (384, 256, 13, 3, 1, 1, 2), (236, 10.5, 10.0, 0.30, 156, 24.9, 1.3), 0.776, (64, 4, 13, 16, 3, 2, 2)),
]
ALEXNET_TOTAL = (278, 115.3, 103.5, 2.66, 143, 208.5, 15.4)
ALEXNET_BATCH = 4


def tier():
    prog = evo.compile_file(os.path.join(ROOT, "examples", "eyeriss.evo"))
    return as_hardware(prog.hardware["EyerissJSSC"])


def layer_zeros(zeros: float | None) -> list[tuple[float, float]]:
    """(input, output) zero fractions per layer.  None: the chip's measured ones (Table VI): a
    layer's output has the next layer's input fraction (after a 2x2 max-pool the fraction can
    only have fallen, so this is a lower bound there), conv5-3's output is taken dense (no
    figure); the image is costed dense (it crosses off-chip uncompressed).  A number Z: every
    activation after the image."""
    if zeros is None:
        zi = (0.0,) + ZEROS_IN[1:]
        return [(zi[i], zi[i + 1] if i + 1 < len(zi) else 0.0) for i in range(len(zi))]
    return [(0.0 if i == 0 else zeros, zeros) for i in range(len(VGG))]


ARRAY_ROWS = 12  # 4 PE sets of R = 3 filter rows down the 12 rows [JSSC 2017, section III]


def chip_mapping(C: int, K: int, H: int, paper: tuple) -> tuple[int, int]:
    """What Table VI says of the chip's own mapping of a layer, read by one rule for every
    layer: (e, q r).  e, the ofmap rows across the array's columns: the active PEs over its
    12 rows (156 -> 13, 168 -> 14).  q r, the ifmap channels a processing pass accumulates
    before its psums return to the global buffer: each ofmap value then crosses the buffer
    about twice per pass (written, read back), 2 C / (q r) times in all, so q r is 2 C ofmap
    values over the buffer's accesses, taken to the nearest power of two (1, 1, 2, 4, 8 for
    conv1 to conv5; the raw quotients are 1.03-1.06, 2.03, 3.83, 6.85)."""
    e = paper[4] // ARRAY_ROWS
    ofmap_words = BATCH * K * H * H
    glb_words = paper[5] * 1e6 / 2  # MB of 16-bit words
    qr = 2 ** round(math.log2(2 * C * ofmap_words / glb_words))
    return e, min(qr, C)


def _row(name: str, c, hw, paper: tuple) -> dict:
    """One layer's figures: processing latency max(compute, global buffer, PE links); the chip's
    supply over it (dynamic on-chip energy, static power drawn over the processing latency; DRAM
    excluded, as on the chip's supply)."""
    proc = max(c.compute_cycles / hw.frequency_hz, c.global_cycles / hw.frequency_hz, c.pe_cycles / hw.frequency_hz)
    dyn_j = c.energy.glb + c.energy.pe + c.energy.mac
    chip_j = dyn_j + hw.static_power_w * proc
    return {"layer": name, "macs": c.macs, "proc_s": proc, "latency_s": c.latency_s,
            "dram_b": c.offchip.total, "glb_b": c.level_bytes["global"], "power_w": chip_j / proc,
            "active": c.active_pes, "bound": c.bound, "mapping": c.mapping.describe(), "paper": paper,
            "chip_j": chip_j, "dyn_j": dyn_j}


IFMAP_SPAD_WORDS = 12  # [JSSC 2017, Table IV]: a PE's ifmap spad holds q S words


def chip_sets(qr: int, R: int = 3) -> tuple[int, int]:
    """(r, t): the PE sets of a pass over channels and over filters.  The 12 rows hold 12 / R = 4
    sets (the active PEs are 12 e); a PE takes q = min(q r, 12 / S) channels (its ifmap spad
    holds q S words), sets over channels the rest, r = q r / q, and the other sets go over
    filters, t = 4 / r: as in the chip's AlexNet mappings (Table III: r = 1 and t = the sets
    wherever the pass's channels fit one PE; CONV4 and 5, q r = 6: q = 3, r = t = 2).  For
    VGG-16: t = 4 for q r = 1, 2, 4; r = t = 2 for q r = 8."""
    q = min(qr, IFMAP_SPAD_WORDS // R)
    r = max(1, qr // q)
    return r, max(1, (ARRAY_ROWS // R) // r)


def chip_constraints(C: int, K: int, H: int, paper: tuple) -> MappingConstraints:
    """The chip's mapping of a VGG-16 layer as far as Table VI shows it: e and q r
    (chip_mapping), the PE sets over channels and filters that fill the 12 rows (chip_sets)."""
    e, qr = chip_mapping(C, K, H, paper)
    r, t = chip_sets(qr)
    spatial = {"P": e, "K": t, **({"C": r} if r > 1 else {})}
    return MappingConstraints.of(spatial=spatial, glb_tile={"P": e, "C": qr})


def model(hw, zeros: float | None, objective: str, chip: bool = False) -> list[dict]:
    """Each layer costed on `hw`; ``chip``: with the chip's own e and q r (chip_mapping) fixed
    and the rest of the mapping searched, else the model's own search."""
    rows = []
    for i, ((name, C, K, H, paper), sp) in enumerate(zip(VGG, layer_zeros(zeros))):
        w = conv2d(BATCH, C, H, H, K, 3, padding=1)
        fix = chip_constraints(C, K, H, paper) if chip else None
        rows.append(_row(name, cost_op(w, hw, objective, sparsity=sp, constraints=fix), hw, paper))
    return rows


def alexnet_constraints(mapping: tuple) -> MappingConstraints:
    """The chip's AlexNet mapping (Table III) as far as the model names its parts: e ofmap rows
    across the columns (CONV2's e = 27 folded over the 14 columns, 5 x 14 above 5 x 13), t and r
    PE sets over filters and channels, and each buffer tile: n images, m filters, q r channels
    per pass, e rows."""
    m, n, e, p, q, r, t = mapping
    spatial = {d: v for d, v in (("K", t), ("C", r)) if v > 1}
    spatial["P"] = e
    return MappingConstraints.of(spatial=spatial, glb_tile={"N": n, "K": m, "C": q * r, "P": e})


def alexnet(hw, objective: str = "energy") -> list[dict]:
    """AlexNet's five convolutions (batch 4) at the chip's own mapping, with its measured zeros
    (an ifmap's fraction; a layer's output the next layer's input, CONV5's dense)."""
    zin = [z for *_, z, _ in ALEXNET] + [0.0]
    rows = []
    for i, (name, shape, paper, _, mapping) in enumerate(ALEXNET):
        C, K, H, R, stride, pad, groups = shape
        w = conv2d(ALEXNET_BATCH, C, H, H, K, R, stride=stride, padding=pad, groups=groups)
        c = cost_op(w, hw, objective, sparsity=(zin[i], zin[i + 1]), constraints=alexnet_constraints(mapping))
        rows.append(_row(name, c, hw, paper))
    return rows


def _power_fit(rows: list[dict]):
    """`evo.cost.fit_power` of the measured power over `rows`' dynamic energy and latency."""
    return fit_power([r["dyn_j"] for r in rows], [r["proc_s"] for r in rows], [r["paper"][0] * 1e-3 for r in rows])


def fit(rows: list[dict]) -> tuple[float, float]:
    """(static power W, scale of the dynamic energy): the least-squares fit over `rows`."""
    f = _power_fit(rows)
    return f.static_power_w, f.energy_scale


def calibrate(hw, rounds: int = 5) -> tuple[float, float, list[dict]]:
    """The fit on AlexNet, to its fixed point (the fitted tier's mapping search can choose
    differently, so fit again on it until the figures hold): (static W, scale of `hw`'s
    energies, the AlexNet rows on `hw`)."""
    first = alexnet(hw)
    static, scale = hw.static_power_w, 1.0
    rows = first
    for _ in range(rounds):
        s, k = fit(rows)
        static, scale = s, scale * k
        if abs(k - 1) < 1e-3:
            break
        rows = alexnet(hw.with_energy_scale(scale, static))
    return static, scale, first


def held_out(rows: list[dict]) -> list[float]:
    """Each row's power (W) predicted by the fit on the other rows (leave one out): a test of the
    calibration on layers it did not see."""
    return [_power_fit(rows[:k] + rows[k + 1:]).power_w(r["dyn_j"], r["proc_s"]) for k, r in enumerate(rows)]


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def table(rows: list[dict], markdown: bool = False, total: tuple = PAPER_TOTAL) -> str:
    head = ["layer", "proc ms (paper)", "proc ms (model)", "ratio", "DRAM MB (paper)", "DRAM MB (model)", "ratio",
            "GLB MB (paper)", "GLB MB (model)", "ratio", "power mW (paper)", "power mW (model)", "ratio",
            "PEs (paper)", "PEs (model)"]
    body = []
    for r in rows:
        p = r["paper"]
        body.append([r["layer"], f"{p[2]:.1f}", f"{r['proc_s'] * 1e3:.1f}", f"{_ratio(r['proc_s'] * 1e3, p[2]):.2f}",
                     f"{p[6]:.1f}", f"{r['dram_b'] / 1e6:.1f}", f"{_ratio(r['dram_b'] / 1e6, p[6]):.2f}",
                     f"{p[5]:.1f}", f"{r['glb_b'] / 1e6:.1f}", f"{_ratio(r['glb_b'] / 1e6, p[5]):.2f}",
                     f"{p[0]}", f"{r['power_w'] * 1e3:.0f}", f"{_ratio(r['power_w'] * 1e3, p[0]):.2f}",
                     f"{p[4]}", f"{r['active']}"])
    proc = sum(r["proc_s"] for r in rows)
    dram = sum(r["dram_b"] for r in rows)
    glb = sum(r["glb_b"] for r in rows)
    power = sum(r["chip_j"] for r in rows) / proc
    t = total
    paper_dram = sum(r["paper"][6] for r in rows)  # the per-layer cells (VGG-16: 313.3 MB; Table VI's total says 321.1)
    body.append(["total", f"{t[2]:.1f}", f"{proc * 1e3:.1f}", f"{_ratio(proc * 1e3, t[2]):.2f}",
                 f"{paper_dram:.1f}", f"{dram / 1e6:.1f}", f"{_ratio(dram / 1e6, paper_dram):.2f}",
                 f"{t[5]:.1f}", f"{glb / 1e6:.1f}", f"{_ratio(glb / 1e6, t[5]):.2f}",
                 f"{t[0]}", f"{power * 1e3:.0f}", f"{_ratio(power * 1e3, t[0]):.2f}", f"{t[4]}", ""])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(x[k]) for x in [head] + body) for k in range(len(head))]
    fmt = lambda row: "  ".join(v.rjust(widths[k]) if k else v.ljust(widths[k]) for k, v in enumerate(row))  # noqa: E731
    return "\n".join([fmt(head)] + [fmt(row) for row in body])


def summary(rows: list[dict]) -> str:
    def within(key, paper_idx, scale, tol):
        rs = [_ratio(r[key] * scale, r["paper"][paper_idx]) for r in rows]
        ok = sum(1 for x in rs if abs(x - 1) <= tol)
        geo = math.exp(sum(math.log(x) for x in rs) / len(rs))
        return f"{ok}/{len(rs)} layers within {tol:.0%} (ratios {min(rs):.2f}-{max(rs):.2f}, geo-mean {geo:.2f})"

    return "\n".join([
        f"processing latency: {within('proc_s', 2, 1e3, TARGETS['latency'])}",
        f"DRAM traffic:       {within('dram_b', 6, 1e-6, TARGETS['dram'])}",
        f"GLB accesses:       {within('glb_b', 5, 1e-6, 1.0)}",
        f"power:              {within('power_w', 0, 1e3, TARGETS['power'])}",
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zeros", type=float, default=None,
                    help="zero fraction of every activation after the image (default: the chip's measured "
                         "per-layer fractions, Table VI)")
    ap.add_argument("--objective", default="energy", choices=("latency", "energy", "edp"))
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown (for the docs)")
    ap.add_argument("--mappings", action="store_true", help="print each layer's mapping")
    ap.add_argument("--mapping", default="both", choices=("chip", "search", "both"),
                    help="chip: the chip's own e and q r read from Table VI (chip_mapping), the rest searched; "
                         "search: the model's own mapping search; both (default): one table each")
    ap.add_argument("--refit", action="store_true",
                    help="cost VGG-16 on the tier refitted to AlexNet (static power and energy scale) instead of "
                         "the tier as written")
    args = ap.parse_args(argv)
    hw = tier()
    t0 = time.perf_counter()
    static, scale, alex = calibrate(hw)
    dt = time.perf_counter() - t0
    print(f"Calibration set: AlexNet CONV layers, batch {ALEXNET_BATCH}, at the chip's own mapping (JSSC 2017 "
          f"Table III) on {hw.name}; model / paper (Table V)")
    print()
    print(table(alex, args.markdown, ALEXNET_TOTAL))
    print()
    print(summary(alex))
    print(f"least-squares fit of the measured power (static + scale x dynamic / latency), to its fixed point: "
          f"static {static * 1e3:.1f} mW, energies x {scale:.3f} of the tier's "
          f"(the tier: static {hw.static_power_w * 1e3:.1f} mW, MAC {hw.mac_energy_j * 1e12:.3g} pJ)")
    at_fit = abs(static - hw.static_power_w) <= 0.002 and abs(scale - 1) <= 0.01
    print("the tier is the fit's fixed point" if at_fit else
          "the tier is NOT at the fit (changed since its calibration?): --refit costs VGG-16 on the fitted tier")
    loo = [_ratio(w * 1e3, r["paper"][0]) for w, r in zip(held_out(alex), alex)]
    print(f"power, each layer held out of the fit (fitted on the other {len(alex) - 1}): "
          f"{sum(abs(x - 1) <= TARGETS['power'] for x in loo)}/{len(loo)} layers within {TARGETS['power']:.0%} "
          f"(ratios {', '.join(r['layer'] + f' {x:.2f}' for r, x in zip(alex, loo))})")
    print(f"costed and fitted in {dt:.2f} s")
    if args.refit:
        hw = hw.with_energy_scale(scale, static)
    print()
    print(f"VGG-16 CONV layers, batch {BATCH}, on {hw.name} ({hw.rows} x {hw.cols} PEs, {hw.dataflow}, "
          f"{hw.frequency_hz / 1e6:g} MHz{', refitted' if args.refit else ''}), activations "
          f"{'with the measured zeros of Table VI' if args.zeros is None else f'{args.zeros:.0%} zeros'}, "
          f"objective {args.objective}; "
          f"model / paper (JSSC 2017 Table VI)")
    modes = ("chip", "search") if args.mapping == "both" else (args.mapping,)
    for mode in modes:
        t0 = time.perf_counter()
        rows = model(hw, args.zeros, args.objective, chip=mode == "chip")
        dt = time.perf_counter() - t0
        print()
        if mode == "chip":
            picks = [(n, *chip_mapping(C, K, H, p)) for n, C, K, H, p in VGG]
            print("The chip's mapping: e ofmap rows across the columns, q r channels per processing pass as "
                  "Table VI shows them, PE sets r over channels and t over filters (e/q r/r/t per layer: "
                  + ", ".join(f"{n} {e}/{qr}/{'/'.join(map(str, chip_sets(qr)))}" for n, e, qr in picks)
                  + "); the rest searched")
        else:
            print("The model's own mapping search (every choice its own)")
        print()
        print(table(rows, args.markdown))
        print()
        print(summary(rows))
        print(f"costed in {dt:.2f} s")
        if args.mappings:
            for r in rows:
                print(f"{r['layer']}: {r['bound']}: {r['mapping']}")
    print()
    print(f"model area {hw.area_m2 * 1e6:.2f} mm2 (the chip's core: 3.5 mm x 3.5 mm = 12.25 mm2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
