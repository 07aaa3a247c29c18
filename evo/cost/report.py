"""Formatting of costs: a fixed-width text table, plain dicts / JSON, CSV.

All three are deterministic (fixed key and column order, no timestamps).  Sizes use
powers of 1000 (KB, MB), as in the language's unit table.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence

from evo.cost.mapping import LevelMapping, Mapping
from evo.cost.model import NetworkCost, NetworkOp, OpCost
from evo.cost.si import format_area, format_si

__all__ = [
    "CSV_COLUMNS",
    "fmt_bytes",
    "fmt_count",
    "fmt_cycles",
    "fmt_energy",
    "fmt_time",
    "format_op",
    "format_table",
    "op_to_dict",
    "to_csv",
    "to_dict",
    "to_json",
]


def fmt_count(n: float, unit: str = "MAC") -> str:
    """1.23 GMAC, 118 MMAC, 512 MAC."""
    return format_si(n, unit, smallest="")


def fmt_bytes(b: float) -> str:
    return format_si(b, "B", smallest="")


def fmt_time(s: float) -> str:
    return format_si(s, "s", smallest="p")


def fmt_energy(j: float) -> str:
    return format_si(j, "J", smallest="f")


def fmt_power(w: float) -> str:
    return format_si(w, "W", smallest="n", kilo="k")


def fmt_area(m2: float) -> str:
    return format_area(m2)


def fmt_cycles(c: float) -> str:
    return format_si(c, "", smallest="")


# ---------------------------------------------------------------------------
_COLS = [("op", "<"), ("kind", "<"), ("MACs", ">"), ("off-chip", ">"), ("global", ">"), ("PE", ">"),
         ("cycles", ">"), ("latency", ">"), ("energy", ">"), ("power", ">"), ("util", ">"), ("bound", "<"),
         ("fused", "<"),
         ("saved off-chip", ">")]


def _row(name: str, c: OpCost, saved: float) -> list[str]:
    fused = ("in" if c.fused_input_on_chip else "") + ("+" if c.fused_input_on_chip and c.fused_output_on_chip
                                                       else "") + ("out" if c.fused_output_on_chip else "")
    lb = c.level_bytes
    return [name, c.kind, fmt_count(c.macs), fmt_bytes(lb["offchip"]), fmt_bytes(lb["global"]),
            fmt_bytes(lb["pe"]), fmt_cycles(c.cycles), fmt_time(c.latency_s), fmt_energy(c.energy_j),
            fmt_power(c.power_w) if c.latency_s else "-", f"{c.utilization * 100:.0f}%" if c.macs else "-", c.bound + ("*" if c.mapping and c.mapping.streaming
                                                                       else ""),
            fused or "-", fmt_bytes(saved) if saved else "-"]


def _render(rows: list[list[str]], total: list[str] | None) -> list[str]:
    allrows = [[h for h, _ in _COLS]] + rows + ([total] if total else [])
    widths = [max(len(r[i]) for r in allrows) for i in range(len(_COLS))]

    def line(r):
        return "  ".join(f"{v:{a}{w}}" for v, (_, a), w in zip(r, _COLS, widths)).rstrip()

    sep = "  ".join("-" * w for w in widths)
    out = [line(allrows[0]), sep] + [line(r) for r in rows]
    if total:
        out += [sep, line(total)]
    return out


def format_op(c: OpCost, name: str = "op") -> str:
    """One op as a small table plus its mapping and bounds."""
    lines = _render([_row(name, c, 0.0)], None)
    lines.append(f"mapping: {c.mapping.describe() if c.mapping else 'data movement only'}")
    lines.append(f"bounds: compulsory off-chip {fmt_bytes(c.compulsory_offchip_bytes)}, roofline "
                 f"{fmt_time(c.roofline_latency_s)}")
    lines += [f"note: {n}" for n in c.notes]
    return "\n".join(lines)


def _port(glb) -> str:
    """A global level's split port (reads and writes on buses of their own), else nothing."""
    if not glb.split_port:
        return ""
    parts = [f"{what} {fmt_bytes(v)}/s" for what, v in (("reads", glb.read_bandwidth_bps),
                                                          ("writes", glb.write_bandwidth_bps)) if v is not None]
    return f" (port {fmt_bytes(glb.bandwidth_bps)}/s: {', '.join(parts)})"


def format_table(net: NetworkCost, fps: float | None = None, title: str | None = None,
                 summaries: Sequence = ()) -> str:
    """The network as a fixed-width table: one row per op, then totals, bounds and fusion savings,
    and a line per summary of labelled steps (`summaries`: the op entries' `cost_summary`, e.g.
    attention's, which evo/cost/network.py passes; see :func:`step_summary`).

    Level columns: bytes moved at that level (off-chip: DRAM reads + writes; global:
    GLB fills/drains + PE-side reads/writes; PE: scratchpad fills and drains, each
    multicast copy counted; MAC operand accesses are not data movement and only show in
    the energy).  A ``*`` after the bound marks a streaming (no tile fits) mapping."""
    hw = net.hardware
    rows = [_row(o.name, o.cost, o.saved_offchip_bytes) for o in net.ops]
    lb = net.level_bytes
    util = net.macs / (net.latency_s * hw.peak_macs_per_s) if net.latency_s else 0.0
    total = ["total", "", fmt_count(net.macs), fmt_bytes(lb["offchip"]), fmt_bytes(lb["global"]),
             fmt_bytes(lb["pe"]), fmt_cycles(net.cycles), fmt_time(net.latency_s), fmt_energy(net.energy_j),
             fmt_power(net.power_w), f"{util * 100:.0f}%", _dominant(net), f"{len(net.fused_edges)} edges",
             fmt_bytes(net.saved_offchip_bytes) if net.saved_offchip_bytes else "-"]
    head = title or f"cost of {len(net.ops)} ops on {hw.name} (objective: {net.objective})"
    e = net.energy
    ratio = net.latency_s / net.roofline_latency_s if net.roofline_latency_s else float("nan")
    lines = [head, "", *_render(rows, total), "",
             (f"hardware: {hw.name}: {hw.pes} PEs" + (f" ({hw.rows} x {hw.cols})" if hw.rows else "")
              + f" x {hw.macs_per_pe} MAC at {hw.frequency_hz / 1e6:g} MHz "
              f"({fmt_count(hw.peak_macs_per_s)}/s peak), {hw.word_bits:g}-bit words; "
              f"{hw.offchip.name} {fmt_bytes(hw.offchip.bandwidth_bps)}/s, "
              f"{hw.glb.name} {fmt_bytes(hw.glb.size_bytes)}{_port(hw.glb)}, {hw.pe.name} {fmt_bytes(hw.pe.size_bytes)}/PE"
              + (f"; {hw.dataflow.replace('_', '-')} dataflow" if hw.dataflow != "any" else "")
              + (f"; {hw.psum_cycles:g} cycle{'s' if hw.psum_cycles != 1 else ''} per partial sum received"
                 if hw.psum_cycles else "")),
             (f"energy: off-chip {fmt_energy(e.offchip)}, global {fmt_energy(e.glb)}, PE {fmt_energy(e.pe)}, "
              f"MAC {fmt_energy(e.mac)}" + (f", static {fmt_energy(e.static)}" if e.static else "")),
             (f"area: {fmt_area(hw.area_m2)} (PE logic {fmt_area(hw.area_breakdown['pe_logic'])}, PE memory "
              f"{fmt_area(hw.area_breakdown['pe_memory'])}, {hw.glb.name} {fmt_area(hw.area_breakdown['global'])}); "
              f"average power {fmt_power(net.power_w)}"),
             (f"bounds: compulsory off-chip {fmt_bytes(net.compulsory_offchip_bytes)}, roofline "
              f"{fmt_time(net.roofline_latency_s)} (estimate / roofline = {ratio:.2f})"),
             (f"fusion: {len(net.fused_edges)} intermediate tensor{'s' if len(net.fused_edges) != 1 else ''} kept on chip, saving "
              f"{fmt_bytes(net.saved_offchip_bytes)} off-chip, {fmt_energy(net.saved_energy_j)}, "
              f"{fmt_time(net.saved_latency_s)}")]
    lines += [line for s in summaries if (line := step_summary(net, s))]
    if fps:
        budget = 1.0 / fps
        verdict = "meets" if net.latency_s <= budget else "MISSES"
        lines.append(f"budget: {fps:g} fps = {fmt_time(budget)} per frame; estimate {fmt_time(net.latency_s)} "
                     f"({1 / net.latency_s if net.latency_s else float('inf'):.1f} fps): {verdict} the budget")
    lines += [f"note: {where}: {n}" for where, n in grouped_notes(net)]
    return "\n".join(lines)


def grouped_notes(net: NetworkCost, shown: int = 3) -> list[tuple[str, str]]:
    """The ops' notes, one per distinct text in order of first appearance, each with the ops it
    concerns: 'a', 'a, b', or 'a, b, c and 22 more ops' (a ViT's 25 layer norms share one note)."""
    by_text: dict[str, list[str]] = {}
    for o in net.ops:
        for n in o.cost.notes:
            if not n.startswith("view"):
                by_text.setdefault(n, []).append(o.name)
    out = []
    for n, names in by_text.items():
        where = ", ".join(names[:shown])
        if len(names) > shown:
            rest = len(names) - shown
            where += f" and {rest} more op{'s' if rest != 1 else ''}"
        out.append((where, n))
    return out


def step_summary(net: NetworkCost, s) -> str:
    """A summary line ('' without such steps) of `s` (label, what, traffic: an op entry's
    `cost_summary`, evo.ops.CostSummary): the share of the steps labelled `s.label` (for
    attention: the projections, Q K^T, softmax, P V, and their gradients in an explainer) in
    latency, energy and MACs, and the traffic of `s.what` on each memory level (for attention the
    T x T score matrices: the output of Q K^T, softmax's input and output, the P operand of P V)."""
    marker = f"[{s.label}: "
    steps = [o for o in net.ops if f" {marker}" in o.name]
    if not steps:
        return ""
    lat = sum(o.cost.latency_s for o in steps)
    en = sum(o.cost.energy_j for o in steps)
    macs = sum(o.cost.macs for o in steps)
    traffic = dict(s.traffic)
    off = glb = pe = 0.0
    for o in steps:
        step = o.name.rsplit(marker, 1)[1].rstrip("]")
        c = o.cost
        if step not in traffic:
            continue
        fields = traffic[step]
        part = (_fields(c.offchip, fields), _fields(c.onchip, fields))
        off, glb = off + part[0], glb + part[1]
        pe += c.level_bytes["pe"] * (part[1] / c.onchip.total if c.onchip.total else 0.0)

    def pct(a, b):
        return f"{100 * a / b:.0f}%" if b else "-"

    return (f"{s.label}: {pct(lat, net.latency_s)} of the latency, {pct(en, net.energy_j)} of the energy, "
            f"{pct(macs, net.macs)} of the MACs ({len(steps)} steps); {s.what}: off-chip "
            f"{fmt_bytes(off)}, global {fmt_bytes(glb)}, PE {fmt_bytes(pe)}")


def _fields(traffic, fields: tuple[str, ...]) -> float:
    """The sum of some fields of a traffic record, in order (`output` + `psum`)."""
    total = getattr(traffic, fields[0])
    for f in fields[1:]:
        total = total + getattr(traffic, f)
    return total


def _dominant(net: NetworkCost) -> str:
    acc: dict[str, float] = {}
    for o in net.ops:
        acc[o.cost.bound] = acc.get(o.cost.bound, 0.0) + o.cost.latency_s
    return max(sorted(acc), key=lambda k: acc[k]) if acc else "-"


# ---------------------------------------------------------------------------
def _level_mapping(m: LevelMapping) -> dict:
    return {"tiles": {d: v for d, v in m.tiles}, "loop_order": list(m.loop_order), "stationary": m.stationary,
            "streaming": m.streaming}


def _mapping(m: Mapping | None) -> dict | None:
    if m is None:
        return None
    return {"spatial": {d: v for d, v in m.spatial}, "global": _level_mapping(m.glb), "pe": _level_mapping(m.pe),
            "candidates": m.candidates, "description": m.describe()}


def op_to_dict(c: OpCost) -> dict:
    return {
        "kind": c.kind,
        "macs": c.macs,
        "latency_s": c.latency_s,
        "cycles": c.cycles,
        "bound": c.bound,
        "energy_j": c.energy.as_dict(),
        "power_w": c.power_w,
        "offchip_bytes": c.offchip.as_dict(),
        "onchip_bytes": c.onchip.as_dict(),
        "pe_fill_bytes": c.pe_fill_bytes,
        "mac_operand_bytes": c.mac_operand_bytes,
        "level_bytes": c.level_bytes,
        "compute_cycles": c.compute_cycles,
        "offchip_cycles": c.offchip_cycles,
        "global_cycles": c.global_cycles,
        "pe_cycles": c.pe_cycles,
        "utilization": c.utilization,
        "active_pes": c.active_pes,
        "compulsory_offchip_bytes": c.compulsory_offchip_bytes,
        "roofline_latency_s": c.roofline_latency_s,
        "fused_input_on_chip": c.fused_input_on_chip,
        "fused_output_on_chip": c.fused_output_on_chip,
        "mapping": _mapping(c.mapping),
        "notes": list(c.notes),
    }


def _net_op(o: NetworkOp) -> dict:
    d = {"name": o.name, "producers": list(o.producers)}
    d.update(op_to_dict(o.cost))
    d["saved"] = {"offchip_bytes": o.saved_offchip_bytes, "energy_j": o.saved_energy_j,
                  "latency_s": o.saved_latency_s}
    return d


def to_dict(net: NetworkCost) -> dict:
    """Plain dicts and lists only (JSON-ready), keys in a fixed order."""
    return {
        "hardware": net.hardware.as_dict(),
        "objective": net.objective,
        "totals": {
            "macs": net.macs,
            "latency_s": net.latency_s,
            "cycles": net.cycles,
            "energy_j": net.energy.as_dict(),
            "offchip_bytes": net.offchip.as_dict(),
            "onchip_bytes": net.onchip.as_dict(),
            "level_bytes": net.level_bytes,
            "compulsory_offchip_bytes": net.compulsory_offchip_bytes,
            "roofline_latency_s": net.roofline_latency_s,
            "area_m2": net.area_m2,
            "power_w": net.power_w,
            "unfused": {"latency_s": net.unfused_latency_s, "energy_j": net.unfused_energy_j,
                        "offchip_bytes": net.unfused_offchip_bytes},
            "saved": {"offchip_bytes": net.saved_offchip_bytes, "energy_j": net.saved_energy_j,
                      "latency_s": net.saved_latency_s},
            "fused_edges": [list(e) for e in net.fused_edges],
        },
        "ops": [_net_op(o) for o in net.ops],
    }


def finite(obj):
    """`obj` with every non-finite float (an unbounded budget, a rate of nothing) as None:
    JSON has no Infinity or NaN, and strict readers refuse them."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj, indent: int | None = 2, ensure_ascii: bool = False) -> str:
    """Strict JSON (no Infinity/NaN) of a report dict."""
    return json.dumps(finite(obj), indent=indent, ensure_ascii=ensure_ascii, allow_nan=False, default=float)


def to_json(net: NetworkCost, indent: int | None = 2) -> str:
    return dumps(to_dict(net), indent)


CSV_COLUMNS = ("name", "kind", "macs", "latency_s", "cycles", "bound", "energy_j", "energy_offchip_j",
               "energy_global_j", "energy_pe_j", "energy_mac_j", "offchip_bytes", "offchip_input_bytes",
               "offchip_weight_bytes", "offchip_output_bytes", "offchip_psum_bytes", "onchip_bytes", "pe_bytes",
               "compute_cycles", "offchip_cycles", "global_cycles", "pe_cycles", "utilization",
               "compulsory_offchip_bytes", "roofline_latency_s", "fused_input", "fused_output",
               "saved_offchip_bytes", "saved_energy_j", "mapping", "power_w", "area_m2")


def _csv_row(name: str, c: OpCost, saved_b: float, saved_e: float) -> list:
    e = c.energy
    return [name, c.kind, c.macs, repr(c.latency_s), repr(c.cycles), c.bound, repr(c.energy_j), repr(e.offchip),
            repr(e.glb), repr(e.pe), repr(e.mac), repr(c.offchip.total), repr(c.offchip.input),
            repr(c.offchip.weight), repr(c.offchip.output), repr(c.offchip.psum), repr(c.onchip.total),
            repr(c.level_bytes["pe"]), c.compute_cycles, repr(c.offchip_cycles), repr(c.global_cycles),
            repr(c.pe_cycles), repr(c.utilization), repr(c.compulsory_offchip_bytes), repr(c.roofline_latency_s),
            int(c.fused_input_on_chip), int(c.fused_output_on_chip), repr(saved_b), repr(saved_e),
            c.mapping.describe() if c.mapping else "", repr(c.power_w), ""]


def to_csv(net: NetworkCost) -> str:
    """One row per op and a final ``total`` row; floats written exactly (repr)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for o in net.ops:
        w.writerow(_csv_row(o.name, o.cost, o.saved_offchip_bytes, o.saved_energy_j))
    e = net.energy
    off = net.offchip
    lb = net.level_bytes
    w.writerow(["total", "", net.macs, repr(net.latency_s), repr(net.cycles), _dominant(net), repr(net.energy_j),
                repr(e.offchip), repr(e.glb), repr(e.pe), repr(e.mac), repr(off.total), repr(off.input),
                repr(off.weight), repr(off.output), repr(off.psum), repr(net.onchip.total), repr(lb["pe"]),
                sum(o.cost.compute_cycles for o in net.ops),
                repr(math.fsum(o.cost.offchip_cycles for o in net.ops)),
                repr(math.fsum(o.cost.global_cycles for o in net.ops)),
                repr(math.fsum(o.cost.pe_cycles for o in net.ops)), "", repr(net.compulsory_offchip_bytes),
                repr(net.roofline_latency_s), "", "", repr(net.saved_offchip_bytes), repr(net.saved_energy_j), "",
                repr(net.power_w), repr(net.area_m2)])
    return buf.getvalue()
