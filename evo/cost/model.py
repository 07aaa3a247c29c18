"""The cost of one op (:func:`cost_op`) and of a network of ops (:func:`cost_network`).

Latency overlaps compute and every level's transfers (double-buffered, decoupled
engines)::

    latency = max(compute_cycles / f,
                  offchip_bytes / offchip_bw,        # off-chip <-> GLB
                  glb_bytes / glb_bw,                # GLB <-> PE array, multicast counted once
                  pe_fill_bytes / (active_pes * pe_bw))

and names the bounding term.  Energy is per level plus MACs::

    E = offchip_bytes * e_offchip
      + (offchip_bytes + glb_bytes) * e_glb          # GLB fills/drains and reads/writes by the PEs
      + (pe_fill_bytes + macs * words_per_mac * word) * e_pe
      + macs * mac_energy

Two bounds are computed for every op and asserted (an estimate below one is a
bug): the *compulsory* off-chip traffic (every element the op touches crosses
off-chip exactly once, fused tensors excepted) and the *roofline* latency
``max(macs / peak, compulsory / offchip_bw)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

from evo.cost.hardware import Hardware, as_hardware
from evo.cost.mapping import (
    OBJECTIVES,
    ConstraintError,
    Mapping,
    MappingConstraints,
    clear_search_cache,
    compulsory_elements,
    nest_for,
    search,
    window_cap,
)
from evo.cost.workload import CopyWorkload, Workload, output_elements

__all__ = [
    "BOUNDS",
    "Energy",
    "NetworkCost",
    "NetworkOp",
    "OpCost",
    "Traffic",
    "clear_cache",
    "cost_network",
    "cost_op",
]

BOUNDS = ("compute", "offchip", "global", "pe")
_REL_TOL = 1e-9


@dataclass(frozen=True)
class Traffic:
    """Bytes across one level boundary, per tensor.  Reads move toward the PEs, writes away."""

    input: float = 0.0
    weight: float = 0.0
    output: float = 0.0       # final outputs written
    psum_read: float = 0.0    # partial sums read back
    psum_write: float = 0.0   # partial sums spilled (written before they are final)

    @property
    def psum(self) -> float:
        return self.psum_read + self.psum_write

    @property
    def reads(self) -> float:
        return self.input + self.weight + self.psum_read

    @property
    def writes(self) -> float:
        return self.output + self.psum_write

    @property
    def total(self) -> float:
        return self.reads + self.writes

    def __add__(self, o: Traffic) -> Traffic:
        return Traffic(self.input + o.input, self.weight + o.weight, self.output + o.output,
                       self.psum_read + o.psum_read, self.psum_write + o.psum_write)

    def as_dict(self) -> dict:
        return {"input": self.input, "weight": self.weight, "output": self.output, "psum_read": self.psum_read,
                "psum_write": self.psum_write, "total": self.total}


@dataclass(frozen=True)
class Energy:
    """Joules per level plus MACs."""

    offchip: float = 0.0
    glb: float = 0.0
    pe: float = 0.0
    mac: float = 0.0
    static: float = 0.0   # the tier's static power over the op's latency

    @property
    def total(self) -> float:
        return self.offchip + self.glb + self.pe + self.mac + self.static

    def __add__(self, o: Energy) -> Energy:
        return Energy(self.offchip + o.offchip, self.glb + o.glb, self.pe + o.pe, self.mac + o.mac,
                      self.static + o.static)

    def as_dict(self) -> dict:
        d = {"offchip": self.offchip, "global": self.glb, "pe": self.pe, "mac": self.mac}
        if self.static:
            d["static"] = self.static
        d["total"] = self.total
        return d


@dataclass(frozen=True)
class OpCost:
    kind: str                       # conv | matmul | eltwise | pool | copy | reduce
    objective: str
    hardware: str
    frequency_hz: float
    word_bits: float
    macs: int
    offchip: Traffic                # off-chip <-> global
    onchip: Traffic                 # global <-> PE array (at the GLB; a multicast counts once)
    pe_fill_bytes: float            # into / out of the PE scratchpads (each multicast copy counts)
    mac_operand_bytes: float        # scratchpad reads/writes by the MACs themselves
    compute_cycles: int
    offchip_cycles: float
    global_cycles: float
    pe_cycles: float
    latency_s: float
    bound: str                      # compute | offchip | global | pe
    energy: Energy
    utilization: float              # macs / (compute_cycles * pes * macs_per_pe)
    active_pes: int
    mapping: Mapping | None         # None for pure data movement (copy)
    compulsory_offchip_bytes: float
    roofline_latency_s: float
    fused_input_on_chip: bool
    fused_output_on_chip: bool
    notes: tuple[str, ...] = ()
    bypass_offchip_bytes: float = 0.0   # of `offchip`, moved between off-chip memory and the PEs directly

    @property
    def energy_j(self) -> float:
        return self.energy.total

    @property
    def cycles(self) -> float:
        return self.latency_s * self.frequency_hz

    @property
    def offchip_bytes(self) -> float:
        return self.offchip.total

    @property
    def onchip_bytes(self) -> float:
        return self.onchip.total

    @property
    def edp(self) -> float:
        return self.energy_j * self.latency_s

    @property
    def power_w(self) -> float:
        """Average power while the op runs (its energy over its latency)."""
        return self.energy_j / self.latency_s if self.latency_s else 0.0

    def metric(self, objective: str | None = None) -> float:
        o = objective or self.objective
        return {"latency": self.latency_s, "energy": self.energy_j, "edp": self.edp}[o]

    @property
    def level_bytes(self) -> dict:
        """Bytes read from or written to each level by transfers: off-chip (DRAM reads + writes),
        global (fills/drains from off-chip + reads/writes by the PEs), pe (scratchpad fills and
        drains, every multicast copy counted).  MAC operand accesses are `mac_operand_bytes`."""
        return {"offchip": self.offchip.total,
                "global": self.offchip.total - self.bypass_offchip_bytes + self.onchip.total,
                "pe": self.pe_fill_bytes}


# ---------------------------------------------------------------------------
def clear_cache() -> None:
    """Forget every cached op cost and mapping search."""
    _cost_cached.cache_clear()
    _fits_need.cache_clear()
    clear_search_cache()


def _resolve_word(w: Workload, hw: Hardware) -> Workload:
    return w if w.word_bits is not None else _with_word(w, hw.word_bits)


@lru_cache(maxsize=8192)
def _with_word(w: Workload, word_bits: float) -> Workload:
    return replace(w, word_bits=word_bits)


def cost_op(workload: Workload, hw: Hardware, objective: str = "latency", fused_input_on_chip: bool = False,
            fused_output_on_chip: bool = False, *, fused_input_elements: int | None = None,
            sparsity: tuple[float, float] = (0.0, 0.0), constraints: MappingConstraints | None = None) -> OpCost:
    """Cost of one op on `hw`, with the best mapping for `objective` (latency | energy | edp).

    ``fused_input_on_chip``: the input made by the previous op is already in the GLB
    (``fused_input_elements`` of it; default: one whole input tensor), so it is not
    read from off-chip and occupies GLB space throughout.  ``fused_output_on_chip``:
    the output stays in the GLB for the next op (never written off-chip).  A fused
    tensor that does not fit in the GLB next to the op's smallest tiles is costed
    unfused, with a note.

    ``sparsity`` = (zero fraction of the input activation, of the output activation), e.g.
    measured by ``evoc cost --calibrate``: the tier's ``zero_gating`` saves the MAC and
    operand energy of zero inputs, ``zero_skipping`` also their cycles, ``compression``
    shrinks both activations' off-chip bytes (run-length coding).

    ``constraints`` (:class:`~evo.cost.mapping.MappingConstraints`) fixes parts of the mapping,
    e.g. ``MappingConstraints.of(spatial={"P": 13}, glb_tile={"C": 1})`` to cost a published
    chip's own choice; the rest is searched.  A constraint naming a dim the op lacks, or one
    that no mapping satisfies, is a ``ConstraintError`` (a ValueError)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    hw = as_hardware(hw)
    w = _resolve_word(workload, hw)
    fin_el = None if not fused_input_on_chip or fused_input_elements is None else int(fused_input_elements)
    sp = _sparsity(sparsity, hw)
    fix = constraints if constraints else None
    return _cost_cached(w, hw, objective, bool(fused_input_on_chip), bool(fused_output_on_chip), fin_el, sp, fix)


def _sparsity(sparsity, hw: Hardware) -> tuple[float, float]:
    """Zero fractions clamped to [0, 1]; (0, 0) when the tier exploits no zeros (one cache entry)."""
    if not (hw.zero_gating or hw.zero_skipping or hw.compression) or sparsity is None:
        return (0.0, 0.0)
    z = tuple(min(1.0, max(0.0, float(x))) for x in sparsity)
    if len(z) != 2:
        raise ValueError("sparsity is (input zero fraction, output zero fraction)")
    return z  # type: ignore[return-value]


# scratchpad accesses per iteration point, per operand (conv: a weight and an input read, a
# partial sum read and written [E16]; elementwise: each input read, the output written)
def _operand_words(nest) -> dict[str, float]:
    if nest.kind == "conv":
        return {"input": 1.0, "weight": 1.0, "output": 2.0}
    n_in = sum(t.count for t in nest.tensors if t.role == "input")
    return {"input": float(n_in), "weight": 0.0, "output": float(nest.spad_words_per_point - n_in)}


@lru_cache(maxsize=8192)
def _cost_cached(w: Workload, hw: Hardware, objective: str, fin: bool, fout: bool, fin_el: int | None,
                 sparsity: tuple[float, float] = (0.0, 0.0),
                 constraints: MappingConstraints | None = None) -> OpCost:
    word = w.word_bits / 8.0
    if isinstance(w, CopyWorkload):
        if constraints:
            raise ConstraintError(f"mapping constraints given for a {w.kind}: it moves data and has no "
                                  "mapping to constrain")
        return _cost_copy(w, hw, objective, fin, fout, fin_el, word, sparsity)
    nest = nest_for(w)
    notes: list[str] = []
    resident = _resident(nest, w, fin, fout, fin_el)
    if resident and not _fits(nest, hw, word, resident):
        notes.append("fused tensor does not fit in the global buffer next to the op's smallest tiles; "
                     "costed unfused")
        resident, fin, fout = {}, False, False
    macs = w.macs
    z_in = sparsity[0]
    gate = z_in if (nest.kind == "conv" and (hw.zero_gating or hw.zero_skipping)) else 0.0
    skip = z_in if (nest.kind == "conv" and hw.zero_skipping) else 0.0
    words = _operand_words(nest)
    wpp = sum(v * (1.0 - gate if r != "input" else 1.0) for r, v in words.items() if r in hw.pe.holds)
    e_pe_ops = macs // nest.ops_per_point * wpp * word
    mac_e = macs * (1.0 - gate) * hw.mac_energy_j
    e_const = mac_e + e_pe_ops * hw.operand_energy
    r = search(nest, hw, word, objective, resident, e_const, sparsity, constraints)
    if r.mapping.glb.streaming:
        notes.append(f"no tile fits the global buffer ({hw.glb.size_bytes:g} B): streaming from off-chip")
    if r.mapping.pe.streaming:
        notes.append(f"no tile fits the PE memory ({hw.pe.size_bytes:g} B): streaming from the global buffer")
    off = Traffic(**r.offchip)
    onc = Traffic(**r.onchip)
    f = hw.frequency_hz
    times = {"compute": r.t_compute, "offchip": r.t_offchip, "global": r.t_global, "pe": r.t_pe}
    bound = max(BOUNDS, key=lambda k: (times[k], -BOUNDS.index(k)))
    latency = times[bound]
    energy = Energy(offchip=r.e_offchip, glb=r.e_global, pe=r.e_pe + e_pe_ops * hw.operand_energy, mac=mac_e,
                    static=hw.static_power_w * latency)
    ratios = (hw.compression_ratio(sparsity[0]), hw.compression_ratio(sparsity[1]))
    compulsory = sum(compulsory_elements(nest, resident, ratios).values()) * word
    roof = max(macs * (1.0 - skip) / hw.peak_macs_per_s, compulsory / hw.offchip.bandwidth_bps)
    # MACs actually executed (zero-skipped ones are not) over the array's capacity
    util = macs * (1.0 - skip) / (r.compute_cycles * hw.pes * hw.macs_per_pe) if r.compute_cycles else 0.0
    cost = OpCost(
        kind=w.kind, objective=objective, hardware=hw.name, frequency_hz=f, word_bits=w.word_bits, macs=macs,
        offchip=off, onchip=onc, pe_fill_bytes=r.pe_fill_bytes, mac_operand_bytes=e_pe_ops,
        compute_cycles=r.compute_cycles, offchip_cycles=r.t_offchip * f, global_cycles=r.t_global * f,
        pe_cycles=r.t_pe * f, latency_s=latency, bound=bound, energy=energy, utilization=util,
        active_pes=r.active_pes, mapping=r.mapping, compulsory_offchip_bytes=compulsory,
        roofline_latency_s=roof, fused_input_on_chip=fin, fused_output_on_chip=fout, notes=tuple(notes),
        bypass_offchip_bytes=r.bypass_bytes)
    _check_bounds(cost)
    return cost


def _resident(nest, w: Workload, fin: bool, fout: bool, fin_el: int | None) -> dict[str, float]:
    res: dict[str, float] = {}
    if fin:
        first = next(t for t in nest.tensors if t.role == "input")
        whole = next(t.elements for t in w.tensors if t.role == "input")  # one input tensor
        total = whole * first.count
        el = whole if fin_el is None else min(fin_el, total)
        if el > 0:
            res[first.name] = el / total
    if fout:
        for t in nest.tensors:
            if t.role == "output":
                res[t.name] = 1.0
    return res


def _fits(nest, hw: Hardware, word: float, resident: dict[str, float]) -> bool:
    """Do the resident tensors fit in the GLB next to the op's smallest tiles?"""
    return _fits_need(nest, tuple(sorted(resident.items()))) * word <= hw.glb.size_bytes


@lru_cache(maxsize=8192)
def _fits_need(nest, resident_items: tuple) -> float:
    """Elements the GLB must hold for `_fits` (the tier only sets the size they are held against)."""
    resident = dict(resident_items)
    names = nest.names
    need = 0.0
    for t in nest.tensors:
        frac = resident.get(t.name, 0.0)
        whole = _whole(nest, t)
        need += frac * whole
        if frac >= 1.0:
            continue
        if t.const:
            need += t.const
            continue
        n = float(t.count)
        for d in t.plain:
            n *= 1 if d in nest.glb_dims else nest.sizes[names.index(d)]
        for win in t.windows:
            out_len = nest.sizes[names.index(win.out)]
            K = nest.sizes[names.index(win.k)]
            n *= float(window_cap(win, 1 if win.out in nest.glb_dims else out_len, K))
        need += n
    return need


def _whole(nest, t) -> float:
    if t.const:
        return float(t.const)
    names = nest.names
    n = float(t.count)
    for d in t.plain:
        n *= nest.sizes[names.index(d)]
    for win in t.windows:
        n *= win.in_len
    return n


def _check_bounds(c: OpCost) -> None:
    if c.offchip.total < c.compulsory_offchip_bytes * (1 - _REL_TOL) - 1e-9:
        raise AssertionError(f"cost model bug: off-chip traffic {c.offchip.total} B is below the compulsory "
                             f"{c.compulsory_offchip_bytes} B ({c.kind})")
    if c.latency_s < c.roofline_latency_s * (1 - _REL_TOL):
        raise AssertionError(f"cost model bug: latency {c.latency_s} s is below the roofline "
                             f"{c.roofline_latency_s} s ({c.kind})")


def _cost_copy(w: CopyWorkload, hw: Hardware, objective: str, fin: bool, fout: bool, fin_el: int | None,
               word: float, sparsity: tuple[float, float] = (0.0, 0.0)) -> OpCost:
    notes: list[str] = []
    if w.view:
        rd = wr = 0.0
        notes.append("view: no data moves")
    else:
        on_chip = 0
        if fin:
            on_chip = w.elements_in if fin_el is None else min(w.elements_in, fin_el)
        need = (on_chip + (w.elements_out if fout else 0)) * word
        if need > hw.glb.size_bytes:
            notes.append("fused tensor does not fit in the global buffer; costed unfused")
            fin, fout, on_chip = False, False, 0
        rd = (w.elements_in - on_chip) * word * hw.compression_ratio(sparsity[0])
        wr = 0.0 if fout else w.elements_out * word * hw.compression_ratio(sparsity[1])
    off = Traffic(input=rd, output=wr)
    total = rd + wr
    t_off = total / hw.offchip.bandwidth_bps
    f = hw.frequency_hz
    energy = Energy(offchip=total * hw.offchip.energy_per_byte_j, glb=total * hw.glb.energy_per_byte_j,
                    static=hw.static_power_w * t_off)
    cost = OpCost(
        kind=w.kind, objective=objective, hardware=hw.name, frequency_hz=f, word_bits=w.word_bits, macs=0,
        offchip=off, onchip=Traffic(), pe_fill_bytes=0.0, mac_operand_bytes=0.0, compute_cycles=0,
        offchip_cycles=t_off * f, global_cycles=0.0, pe_cycles=0.0, latency_s=t_off,
        bound="offchip" if total > 0 else "compute", energy=energy, utilization=0.0, active_pes=0, mapping=None,
        compulsory_offchip_bytes=total, roofline_latency_s=t_off, fused_input_on_chip=fin,
        fused_output_on_chip=fout, notes=tuple(notes))
    _check_bounds(cost)
    return cost


# ---------------------------------------------------------------------------
# networks and fusion
@dataclass(frozen=True)
class NetworkOp:
    name: str
    producers: tuple[str, ...]
    cost: OpCost          # as run, fusion applied
    unfused: OpCost       # every tensor through off-chip memory

    @property
    def saved_offchip_bytes(self) -> float:
        return self.unfused.offchip_bytes - self.cost.offchip_bytes

    @property
    def saved_energy_j(self) -> float:
        return self.unfused.energy_j - self.cost.energy_j

    @property
    def saved_latency_s(self) -> float:
        return self.unfused.latency_s - self.cost.latency_s


@dataclass(frozen=True)
class NetworkCost:
    hardware: Hardware
    objective: str
    ops: tuple[NetworkOp, ...]
    fused_edges: tuple[tuple[str, str], ...] = field(default=())

    def _sum(self, f) -> float:
        return math.fsum(f(o) for o in self.ops)

    @property
    def macs(self) -> int:
        return sum(o.cost.macs for o in self.ops)

    @property
    def latency_s(self) -> float:
        return self._sum(lambda o: o.cost.latency_s)

    @property
    def cycles(self) -> float:
        return self.latency_s * self.hardware.frequency_hz

    @property
    def energy(self) -> Energy:
        e = Energy()
        for o in self.ops:
            e = e + o.cost.energy
        return e

    @property
    def energy_j(self) -> float:
        return self.energy.total

    @property
    def offchip(self) -> Traffic:
        t = Traffic()
        for o in self.ops:
            t = t + o.cost.offchip
        return t

    @property
    def onchip(self) -> Traffic:
        t = Traffic()
        for o in self.ops:
            t = t + o.cost.onchip
        return t

    @property
    def offchip_bytes(self) -> float:
        return self._sum(lambda o: o.cost.offchip_bytes)

    @property
    def level_bytes(self) -> dict:
        out = {"offchip": 0.0, "global": 0.0, "pe": 0.0}
        for o in self.ops:
            for k, v in o.cost.level_bytes.items():
                out[k] += v
        return out

    @property
    def compulsory_offchip_bytes(self) -> float:
        return self._sum(lambda o: o.cost.compulsory_offchip_bytes)

    @property
    def roofline_latency_s(self) -> float:
        return self._sum(lambda o: o.cost.roofline_latency_s)

    @property
    def unfused_latency_s(self) -> float:
        return self._sum(lambda o: o.unfused.latency_s)

    @property
    def unfused_energy_j(self) -> float:
        return self._sum(lambda o: o.unfused.energy_j)

    @property
    def unfused_offchip_bytes(self) -> float:
        return self._sum(lambda o: o.unfused.offchip_bytes)

    @property
    def saved_offchip_bytes(self) -> float:
        return self.unfused_offchip_bytes - self.offchip_bytes

    @property
    def saved_energy_j(self) -> float:
        return self.unfused_energy_j - self.energy_j

    @property
    def saved_latency_s(self) -> float:
        return self.unfused_latency_s - self.latency_s

    @property
    def edp(self) -> float:
        return self.energy_j * self.latency_s

    def metric(self, objective: str | None = None) -> float:
        o = objective or self.objective
        return {"latency": self.latency_s, "energy": self.energy_j, "edp": self.edp}[o]

    @property
    def power_w(self) -> float:
        """Average power over the network (total energy over total latency)."""
        return self.energy_j / self.latency_s if self.latency_s else 0.0

    @property
    def area_m2(self) -> float:
        """The tier's chip area (PEs with their memories and the global buffer)."""
        return self.hardware.area_m2

    @property
    def metrics(self) -> dict:
        """Scalar metrics by name (what `evolve` blocks minimise or `require`)."""
        lb = self.level_bytes
        return {"latency": self.latency_s, "energy": self.energy_j, "edp": self.edp, "area": self.area_m2,
                "power": self.power_w, "macs": self.macs,
                "cycles": self.cycles, "offchip_bytes": self.offchip_bytes, "global_bytes": lb["global"],
                "pe_bytes": lb["pe"], "compulsory_offchip_bytes": self.compulsory_offchip_bytes,
                "roofline_latency": self.roofline_latency_s,
                "utilization": self.macs / (self.latency_s * self.hardware.peak_macs_per_s)
                if self.latency_s else 0.0}

    def op(self, name: str) -> NetworkOp:
        for o in self.ops:
            if o.name == name:
                return o
        raise KeyError(name)


def _normalise(ops: Iterable) -> list[tuple[str, Workload, tuple[str, ...]]]:
    out = []
    for item in ops:
        if len(item) == 2:
            name, w = item
            prods: Sequence[str] = ()
        else:
            name, w, prods = item
        if isinstance(prods, str):
            prods = (prods,)
        out.append((str(name), w, tuple(prods)))
    names = [n for n, _, _ in out]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"op names must be unique: {', '.join(dup)}")
    return out


def cost_network(ops: Iterable, hw: Hardware, objective: str = "latency", fuse: bool = True,
                 sparsity: dict | None = None, constraints: dict | None = None) -> NetworkCost:
    """Cost a network given in execution order as ``(name, workload, producer_names)`` items.

    Ops run one after another (latencies add).  Fusion: the output of op *i* stays
    in the GLB for op *i+1* (no off-chip write and read) when op *i+1* is its only
    consumer, the tensor fits in the GLB next to both ops' other needs, and doing
    so neither increases the off-chip traffic nor worsens the objective.  Views
    (flatten) between the two pass the tensor through.  ``sparsity`` maps op names to
    (input, output) zero fractions, ``constraints`` op names to
    :class:`~evo.cost.mapping.MappingConstraints` (see :func:`cost_op`); a name that is no
    op's is a ValueError."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    hw = as_hardware(hw)
    items = _normalise(ops)
    n = len(items)
    sp = [(sparsity or {}).get(name, (0.0, 0.0)) for name, _, _ in items]
    cons = constraints or {}
    unknown = sorted(set(cons) - {name for name, _, _ in items})
    if unknown:
        raise ConstraintError(f"mapping constraints for {', '.join(map(repr, unknown))}: no op of the network "
                              "has that name")
    fx = [cons.get(name) for name, _, _ in items]
    unfused = [cost_op(w, hw, objective, sparsity=sp[k], constraints=fx[k]) for k, (_, w, _) in enumerate(items)]
    cur = list(unfused)
    fin = [False] * n
    fout = [False] * n
    fin_el: list[int | None] = [None] * n
    edges: list[tuple[str, str]] = []
    consumers: dict[str, int] = {}
    for _, _, prods in items:
        for p in set(prods):
            consumers[p] = consumers.get(p, 0) + 1
    tot_L = math.fsum(c.latency_s for c in cur)
    tot_E = math.fsum(c.energy_j for c in cur)

    def obj(L: float, E: float) -> float:
        return {"latency": L, "energy": E, "edp": L * E}[objective]

    i = 0
    while fuse and i < n - 1:
        name_i, w_i, _ = items[i]
        # the chain i -> (views...) -> j
        chain = [i]
        j = i + 1
        ok = True
        while True:
            name_prev = items[chain[-1]][0]
            if j >= n or name_prev not in items[j][2] or consumers.get(name_prev, 0) != 1:
                ok = False
                break
            chain.append(j)
            wj = items[j][1]
            if isinstance(wj, CopyWorkload) and wj.view:
                j += 1
                continue
            break
        if not ok or len(chain) < 2:
            i += 1
            continue
        out_el = output_elements(_resolve_word(w_i, hw))
        trial = {}
        for k in chain:
            trial[k] = (fin[k] if k == chain[0] else True, True if k != chain[-1] else fout[k],
                        fin_el[k] if k == chain[0] else out_el)
        new = {k: cost_op(items[k][1], hw, objective, a, b, fused_input_elements=c, sparsity=sp[k],
                          constraints=fx[k])
               for k, (a, b, c) in trial.items()}
        honored = all(new[k].fused_output_on_chip == trial[k][1] and new[k].fused_input_on_chip == trial[k][0]
                      for k in chain)
        d_off = sum(new[k].offchip_bytes - cur[k].offchip_bytes for k in chain)
        nL = tot_L + sum(new[k].latency_s - cur[k].latency_s for k in chain)
        nE = tot_E + sum(new[k].energy_j - cur[k].energy_j for k in chain)
        if honored and d_off < 0 and obj(nL, nE) <= obj(tot_L, tot_E) * (1 + 1e-12):
            for k, (a, b, c) in trial.items():
                fin[k], fout[k], fin_el[k] = a, b, c
                cur[k] = new[k]
            tot_L, tot_E = nL, nE
            edges.append((name_i, items[chain[-1]][0]))
            i = chain[-1]
        else:
            i += 1
    result = NetworkCost(hw, objective, tuple(NetworkOp(items[k][0], items[k][2], cur[k], unfused[k])
                                              for k in range(n)), tuple(edges))
    if result.offchip_bytes > result.unfused_offchip_bytes * (1 + 1e-12):
        raise AssertionError("cost model bug: fusion increased off-chip traffic")
    return result
