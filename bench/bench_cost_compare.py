"""Our cost model beside an independent reference, layer by layer, and its speed on whole networks.

    python bench/bench_cost_compare.py [--reference auto|zigzag|closed-form] [--hardware Eyeriss ...]
                                       [--objective latency|energy|edp] [--lpf 3] [--mappings 3] [--no-speed]

1. ResNet-18's convolutions and its fc layer (compiled from examples/resnet18.evo,
   batch 1) are costed by our model (each layer on its own, no fusion, objective
   latency by default) and by a reference on the same tier (default: Eyeriss); per
   layer it prints latency and off-chip traffic of both and the ratio
   ours / reference.  ZigZag takes about 30 s per distinct layer (6 minutes for
   ResNet-18's 12 shapes); the closed-form reference is instant.

   References:

   * ``zigzag``: ZigZag (KU Leuven, https://github.com/KULeuven-MICAS/zigzag), an
     independent analytic DSE framework with its own temporal-mapping search (LOMA).
     It is an optional extra, never a dependency of evo; install it, e.g. in a venv
     that sees evo::

         python -m venv --system-site-packages /tmp/zz && /tmp/zz/bin/pip install zigzag-dse
         /tmp/zz/bin/python bench/bench_cost_compare.py

     The architecture handed to ZigZag is built from the evo tier: the same PE
     array (as a near-square 2-D array), word size and frequency; per-PE register
     files for inputs, weights and outputs splitting the PE memory like Eyeriss's
     spads (12 : 224 : 24 words); one global buffer of the tier's size and
     bandwidth shared by all operands; DRAM of the tier's bandwidth (rounded to
     whole bits per cycle: ZigZag wants integers); the same energies per byte.
   * ``closed-form``: a simple analytic model written in this file (it uses nothing
     from evo.cost): an output-stationary array where each PE computes whole
     outputs, ``ceil(N K P Q / PEs) * (C/groups) R S / macs_per_pe`` cycles, and
     DRAM traffic "weights + inputs + outputs once if they fit in the global buffer,
     else the cheaper of weight chunks of half the buffer (inputs re-read per
     chunk) and input bands of half the buffer (weights re-read per band)";
     latency = max(compute, traffic / DRAM bandwidth).

   ``auto`` (default) uses ZigZag when it can be imported, else the closed-form model,
   and prints the closed-form comparison too when ZigZag ran.  The output says which
   reference was used.

2. The wall time (and CPU time) of costing whole networks (ResNet-18/50, VGG-16,
   MobileNetV2, batch 1, fusion included) from a cold cache on each tier of
   examples/hardware.evo.

Not a unit test: no assertions on the numbers, run it by hand.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

import evo
from evo.cost import as_hardware, clear_cache, cost_op
from evo.cost.network import graph_ops
from evo.cost.report import fmt_bytes, fmt_time

EX = os.path.join(ROOT, "examples")
NETS = {"ResNet18": "resnet18.evo", "ResNet50": "resnet50.evo", "VGG16": "vgg16.evo", "MobileNetV2": "mobilenet.evo"}


def program(net: str) -> evo.Program:
    return evo.compile(f'evo 0.1\nimport "{NETS[net]}"\nimport "hardware.evo"\n', f"<{net}>", base_dir=EX)


def conv_layers(prog: evo.Program, net: str) -> list[tuple[str, object]]:
    return [(name, w) for name, w, _ in graph_ops(prog.graph(net), 1) if w.kind == "conv"]


def shape(w) -> str:
    k = f" {w.R}x{w.S}" + (f"/{w.stride_h}" if w.stride_h > 1 else "") if w.R * w.S > 1 or w.stride_h > 1 else ""
    return f"K{w.K} C{w.C}{k} {w.P}x{w.Q}"


# ---------------------------------------------------------------------------
# the closed-form reference (independent of evo.cost)

def closed_form(w, hw) -> tuple[float, float]:
    """(latency s, DRAM bytes) of one convolution: see the module docstring."""
    wb = hw.word_bits / 8
    cg = w.C // w.groups
    i_b = w.N * w.C * w.H_in * w.W_in * wb
    w_b = (w.K * cg * w.R * w.S + (w.K if w.bias else 0)) * wb
    o_b = w.N * w.K * w.P * w.Q * wb
    glb = hw.glb.size_bytes
    if i_b + w_b + o_b <= glb:
        traffic = i_b + w_b + o_b
    else:
        half = glb / 2
        weight_chunks = w_b + o_b + i_b * math.ceil(w_b / half)
        input_bands = i_b + o_b + w_b * math.ceil(i_b / half)
        traffic = min(weight_chunks, input_bands)
    cycles = math.ceil(w.N * w.K * w.P * w.Q / hw.pes) * math.ceil(cg * w.R * w.S / hw.macs_per_pe)
    return max(cycles / hw.frequency_hz, traffic / hw.offchip.bandwidth_bps), traffic


# ---------------------------------------------------------------------------
# ZigZag

def zigzag_available() -> str | None:
    try:
        import zigzag.api  # noqa: F401
    except Exception:  # noqa: BLE001 -- any failure to import means "not available"
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("zigzag-dse")
    except PackageNotFoundError:
        return "?"


def _array_dims(pes: int) -> tuple[int, int]:
    a = max(d for d in range(1, math.isqrt(pes) + 1) if pes % d == 0)
    return pes // a, a


def zigzag_accelerator(hw) -> tuple[dict, list[str]]:
    """A ZigZag accelerator description of an evo tier, and notes on what was rounded."""
    notes = []
    word = int(hw.word_bits)
    f = hw.frequency_hz

    def port(name, kind, bw, alloc):
        return {"name": name, "type": kind, "bandwidth_min": bw, "bandwidth_max": bw, "allocation": alloc}

    def mem(size_bytes, bw_bits, e_per_byte, ops, ports, served):
        cost = e_per_byte * 1e12 * bw_bits / 8        # pJ per access of one port width
        return {"size": int(size_bytes * 8), "r_cost": cost, "w_cost": cost, "area": 0, "latency": 1,
                "operands": ops, "ports": ports, "served_dimensions": served}

    def rf(op, words):
        hi = [f"{op}, tl", f"{op}, th"] if op == "O" else [f"{op}, tl"]
        lo = [f"{op}, fh", f"{op}, fl"] if op == "O" else [f"{op}, fh"]
        return mem(words * word / 8, word, hw.pe.energy_per_byte_j, [op],
                   [port("r_port_1", "read", word, hi), port("w_port_1", "write", word, lo)], [])

    pe_words = int(hw.pe.size_bytes * 8 // word)
    split = {"I1": 12, "I2": 224, "O": 24}
    words = {k: max(1, pe_words * v // sum(split.values())) for k, v in split.items()}
    alloc = ["I1, fh", "I1, tl", "I2, fh", "I2, tl", "O, fh", "O, tl", "O, fl", "O, th"]
    glb_bits = hw.glb.bandwidth_bps * 8 / f
    dram_bits = hw.offchip.bandwidth_bps * 8 / f
    for what, v in (("global buffer", glb_bits), ("DRAM", dram_bits)):
        if abs(v - round(v)) > 1e-9:
            notes.append(f"{what} bandwidth {v:g} bit/cycle rounded to {max(1, round(v))}")
    glb_bits, dram_bits = max(1, round(glb_bits)), max(1, round(dram_bits))
    rows, cols = _array_dims(hw.pes)
    acc = {
        "name": f"evo_{hw.name}",
        "memories": {
            "spad_I": rf("I1", words["I1"]), "spad_W": rf("I2", words["I2"]), "spad_O": rf("O", words["O"]),
            "glb": mem(hw.glb.size_bytes, glb_bits, hw.glb.energy_per_byte_j, ["I1", "I2", "O"],
                       [port("rw_port_1", "read_write", glb_bits, alloc)], ["D1", "D2"]),
            "dram": mem(1e12, dram_bits, hw.offchip.energy_per_byte_j, ["I1", "I2", "O"],
                        [port("rw_port_1", "read_write", dram_bits, alloc)], ["D1", "D2"]),
        },
        "operational_array": {"unit_energy": hw.mac_energy_j * 1e12 * hw.macs_per_pe, "unit_area": 0,
                              "dimensions": ["D1", "D2"], "sizes": [rows, cols]},
    }
    if hw.macs_per_pe != 1:
        notes.append(f"macs_per_pe = {hw.macs_per_pe} is not modelled by the ZigZag array (1 MAC per PE)")
    return acc, notes


MAPPING = [{"name": "default", "spatial_mapping_hint": {"D1": ["K", "OX"], "D2": ["C", "OY", "FY"]},
            "memory_operand_links": {"O": "O", "W": "I2", "I": "I1"}}]


def zigzag_layer(w, hw, folder: str, lpf: int, mappings: int, opt: str = "latency") -> tuple[float, float]:
    """(latency s, DRAM bytes) of one convolution by ZigZag (`opt`: latency, energy or EDP)."""
    from zigzag.api import get_hardware_performance_zigzag
    from zigzag.mapping.data_movement import DataMoveAttr

    if w.groups != 1 or w.dil_h != 1 or w.dil_w != 1:
        raise ValueError("grouped / dilated convolutions are not driven here")
    word = int(hw.word_bits)
    layer = {
        "id": 0, "name": "layer", "operator_type": "Conv",
        "equation": "O[b][k][oy][ox]+=W[k][c][fy][fx]*I[b][c][iy][ix]",
        "dimension_relations": [f"ix={w.stride_w}*ox+1*fx", f"iy={w.stride_h}*oy+1*fy"],
        "loop_dims": ["B", "K", "C", "OY", "OX", "FY", "FX"],
        "loop_sizes": [w.N, w.K, w.C, w.P, w.Q, w.R, w.S],
        "operand_precision": {"W": word, "I": word, "O": word, "O_final": word},
        "operand_source": {"I": 0},
        "pr_loop_dims": ["IX", "IY"], "pr_loop_sizes": [w.W_in, w.H_in],
        "padding": [[w.pad_w, w.pad_w], [w.pad_h, w.pad_h]],
    }
    acc, _ = zigzag_accelerator(hw)
    acc_path = os.path.join(folder, "accelerator.yaml")
    map_path = os.path.join(folder, "mapping.yaml")
    with open(acc_path, "w") as fh:        # JSON is YAML
        json.dump(acc, fh)
    with open(map_path, "w") as fh:
        json.dump(MAPPING, fh)
    _, _, cmes = get_hardware_performance_zigzag(
        [layer], acc_path, map_path, opt=opt, dump_folder=os.path.join(folder, "out"),
        loma_show_progress_bar=False, lpf_limit=lpf, nb_spatial_mappings_generated=mappings)
    cme = cmes[0][1][0][0]
    bits = 0.0
    for levels in cme.mapping.unit_mem_data_movement.values():
        top = levels[-1]                     # the DRAM boundary
        count = top.get_attribute(DataMoveAttr.DATA_ELEM_MOVE_COUNT)
        prec = top.get_attribute(DataMoveAttr.DATA_PRECISION)
        for d, n in count.data.items():      # reads to / writes from the buffer below (and above: none)
            bits += n * prec.get(d)
    return cme.latency_total2 / hw.frequency_hz, bits / 8


# ---------------------------------------------------------------------------

def compare(layers, hw, reference: str, ref_fn, objective: str = "latency") -> None:
    print(f"\nResNet-18 conv/linear layers on {hw.name} (batch 1): our model (each layer alone, no fusion, "
          f"objective {objective}) vs {reference}")
    head = (f"{'layer':22s} {'shape':21s} {'ours lat':>9s} {'ref lat':>9s} {'ratio':>6s}   "
            f"{'ours DRAM':>9s} {'ref DRAM':>9s} {'ratio':>6s}")
    print(head)
    print("-" * len(head))
    tot = [0.0, 0.0, 0.0, 0.0]
    rl, rb = [], []
    for name, w in layers:
        c = cost_op(w, hw, objective)
        lat, byt = ref_fn(w)
        ol, ob = c.latency_s, c.offchip_bytes
        tot = [tot[0] + ol, tot[1] + lat, tot[2] + ob, tot[3] + byt]
        rl.append(ol / lat)
        rb.append(ob / byt)
        print(f"{name:22s} {shape(w):21s} {fmt_time(ol):>9s} {fmt_time(lat):>9s} {ol / lat:6.2f}   "
              f"{fmt_bytes(ob):>9s} {fmt_bytes(byt):>9s} {ob / byt:6.2f}")
    print("-" * len(head))
    print(f"{'total':22s} {'':21s} {fmt_time(tot[0]):>9s} {fmt_time(tot[1]):>9s} {tot[0] / tot[1]:6.2f}   "
          f"{fmt_bytes(tot[2]):>9s} {fmt_bytes(tot[3]):>9s} {tot[2] / tot[3]:6.2f}")

    def gm(v):
        return math.exp(sum(math.log(x) for x in v) / len(v))

    print(f"ratio ours / reference per layer: latency geo-mean {gm(rl):.2f} (min {min(rl):.2f}, max {max(rl):.2f}); "
          f"DRAM bytes geo-mean {gm(rb):.2f} (min {min(rb):.2f}, max {max(rb):.2f})")


def speed(tiers: list[str]) -> None:
    print("\nwall time of costing whole networks (batch 1, fusion included, cold cache), seconds: wall / cpu")
    progs = {net: program(net) for net in NETS}
    print(f"{'network':12s} {'ops':>4s} " + " ".join(f"{t:>14s}" for t in tiers))
    for net, prog in progs.items():
        cells = []
        n_ops = 0
        for t in tiers:
            clear_cache()
            w0, c0 = time.perf_counter(), time.process_time()
            rep = prog.cost(net, hardware=t)
            w1, c1 = time.perf_counter(), time.process_time()
            n_ops = len(rep.cost.ops)
            cells.append(f"{w1 - w0:6.2f} / {c1 - c0:5.2f}")
        print(f"{net:12s} {n_ops:4d} " + " ".join(f"{c:>14s}" for c in cells))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference", choices=("auto", "zigzag", "closed-form"), default="auto")
    ap.add_argument("--hardware", nargs="+", default=["Eyeriss"],
                    help="tiers of examples/hardware.evo for the layer comparison (default: Eyeriss)")
    ap.add_argument("--objective", choices=("latency", "energy", "edp"), default="latency",
                    help="what both models minimise (default latency)")
    ap.add_argument("--lpf", type=int, default=3, help="ZigZag LOMA lpf_limit (default 3; ZigZag's own is 6)")
    ap.add_argument("--mappings", type=int, default=3, help="ZigZag spatial mappings generated per layer")
    ap.add_argument("--no-speed", action="store_true", help="skip the whole-network timing")
    args = ap.parse_args()

    prog = program("ResNet18")
    layers = conv_layers(prog, "ResNet18")
    zz = zigzag_available() if args.reference in ("auto", "zigzag") else None
    if args.reference == "zigzag" and zz is None:
        print("ZigZag is not installed (pip install zigzag-dse); use --reference closed-form", file=sys.stderr)
        return 2
    zz_opt = {"latency": "latency", "energy": "energy", "edp": "EDP"}[args.objective]
    if zz is None:
        why = "" if args.reference == "closed-form" else " (ZigZag not installed)"
        print(f"reference: the closed-form model of this file{why}")
    else:
        print(f"reference: ZigZag {zz} (zigzag-dse, LOMA temporal mapping, lpf_limit {args.lpf}, "
              f"{args.mappings} spatial mappings per layer, opt={zz_opt}); the closed-form model of this "
              "file follows it")
    for name in args.hardware:
        hw = as_hardware(prog.hardware[name])
        if zz is not None:
            logging.getLogger().setLevel(logging.ERROR)
            logging.basicConfig(level=logging.ERROR)
            for n in zigzag_accelerator(hw)[1]:
                print(f"note: {n}")
            cache: dict = {}
            with tempfile.TemporaryDirectory() as d:
                t0 = time.perf_counter()

                def ref(w, hw=hw, d=d, cache=cache):
                    key = (w.N, w.K, w.C, w.P, w.Q, w.R, w.S, w.stride_h, w.H_in, w.pad_h)
                    if key not in cache:
                        print(f"  zigzag: {shape(w)} ...", file=sys.stderr, flush=True)
                        cache[key] = zigzag_layer(w, hw, d, args.lpf, args.mappings, zz_opt)
                    return cache[key]

                compare(layers, hw, f"ZigZag {zz}", ref, args.objective)
                print(f"(ZigZag took {time.perf_counter() - t0:.0f} s for {len(cache)} distinct layers)")
        compare(layers, hw, "the closed-form model of this file (NOT ZigZag)", lambda w, hw=hw: closed_form(w, hw),
                args.objective)
    if not args.no_speed:
        speed(list(prog.hardware))
    return 0


if __name__ == "__main__":
    sys.exit(main())
