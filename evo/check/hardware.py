"""Hardware tiers: units, required and unknown attributes, positive values,
level order offchip -> global -> pe, PE memory smaller than global memory, extends."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from evo.check.program import Program
from evo.diagnostics import Abort, Collector, Note, Span, did_you_mean
from evo.frontend import ast as A
from evo import units as U

LEVEL_KINDS = ("offchip", "global", "pe")

# attribute -> (accepted dimensions, required, default, description)
TOP_ATTRS: dict[str, tuple[tuple[str, ...], bool, Any, str]] = {
    "frequency": ((U.FREQUENCY,), True, None, "clock frequency"),
    "pes": ((U.COUNT,), True, None, "number of processing elements"),
    "macs_per_pe": ((U.COUNT,), False, 1, "multiply-accumulates per PE per cycle"),
    "word": ((U.SIZE,), False, 2.0, "word size (default 16 bit)"),
    "mac_energy": ((U.ENERGY,), False, 1e-12, "energy of one MAC (default 1 pJ)"),
}
LEVEL_ATTRS: dict[str, tuple[tuple[str, ...], str]] = {
    "size": ((U.SIZE,), "capacity"),
    "bandwidth": ((U.BANDWIDTH, U.BANDWIDTH_CYCLE), "bandwidth"),
    "energy": ((U.ENERGY_PER_SIZE,), "access energy per byte"),
}
LEVEL_REQUIRED = {"offchip": ("bandwidth", "energy"), "global": ("size", "bandwidth", "energy"),
                  "pe": ("size", "bandwidth", "energy")}


@dataclass(frozen=True)
class LevelSpec:
    kind: str
    name: str
    size: float | None            # bytes (per PE for `pe`); None = unbounded
    bandwidth: float              # bytes/s (per PE for `pe`)
    energy: float                 # J per byte
    span: Span


@dataclass(frozen=True)
class HardwareSpec:
    name: str
    frequency: float              # Hz
    pes: int
    macs_per_pe: int
    word_bits: float
    mac_energy: float             # J
    levels: tuple[LevelSpec, ...]  # offchip, global, pe
    span: Span
    attr_spans: tuple[tuple[str, Span], ...] = field(default=())

    def level(self, kind: str) -> LevelSpec:
        for lv in self.levels:
            if lv.kind == kind:
                return lv
        raise KeyError(kind)

    @property
    def word_bytes(self) -> float:
        return self.word_bits / 8

    def get(self, path: tuple[str, ...]) -> float:
        """An attribute by gene path: ('pes',) or ('global', 'size')."""
        if len(path) == 1:
            return {"frequency": self.frequency, "pes": self.pes, "macs_per_pe": self.macs_per_pe,
                    "word": self.word_bits / 8, "mac_energy": self.mac_energy}[path[0]]
        return getattr(self.level(path[0]), path[1])

    def with_attr(self, path: tuple[str, ...], value: float) -> "HardwareSpec":
        if len(path) == 1:
            key = {"word": "word_bits"}.get(path[0], path[0])
            if key == "word_bits":
                value = value * 8
            if key in ("pes", "macs_per_pe"):
                value = int(value)
            return replace(self, **{key: value})
        levels = tuple(replace(lv, **{path[1]: value}) if lv.kind == path[0] else lv for lv in self.levels)
        return replace(self, levels=levels)

    def as_dict(self) -> dict:
        return {"name": self.name, "frequency_hz": self.frequency, "pes": self.pes,
                "macs_per_pe": self.macs_per_pe, "word_bits": self.word_bits, "mac_energy_j": self.mac_energy,
                "levels": {lv.kind: {"name": lv.name, "size_bytes": lv.size, "bandwidth_bps": lv.bandwidth,
                                     "energy_per_byte_j": lv.energy} for lv in self.levels}}


@dataclass
class _Raw:
    """Attributes of a tier after `extends` is resolved, before validation."""
    top: dict[str, tuple[Any, A.HwAttr]] = field(default_factory=dict)
    levels: dict[str, tuple[A.HwLevel, dict[str, tuple[Any, A.HwAttr]]]] = field(default_factory=dict)
    order: list[tuple[str, Span]] = field(default_factory=list)


class HardwareChecker:
    def __init__(self, prog: Program, col: Collector, evaluate):
        self.prog = prog
        self.col = col
        self.evaluate = evaluate  # expr -> value (constant expressions)
        self.raw: dict[str, _Raw | None] = {}
        self.specs: dict[str, HardwareSpec] = {}

    def check_all(self) -> dict[str, HardwareSpec]:
        for name in self.prog.hardware:
            self.resolve(name, [])
        for name, hw in self.prog.hardware.items():
            r = self.raw.get(name)
            if r is None:
                continue
            spec = self.validate(hw, r)
            if spec is not None:
                self.specs[name] = spec
        return self.specs

    def value(self, e) -> Any:
        try:
            return self.evaluate(e)
        except Abort:
            return None

    def resolve(self, name: str, stack: list[str]) -> _Raw | None:
        if name in self.raw:
            return self.raw[name]
        hw: A.Hardware = self.prog.hardware[name]
        if name in stack:
            self.col.error("E0409", "hardware tiers extend each other in a cycle: " + " -> ".join(stack + [name]),
                           hw.name_span)
            return None
        if hw.extends is not None:
            base_def = self.prog.hardware.get(hw.extends)
            if base_def is None:
                self.col.error("E0409", f"hardware '{name}' extends unknown hardware '{hw.extends}'",
                               hw.extends_span, did_you_mean(hw.extends, self.prog.hardware))
                self.raw[name] = None
                return None
            base = self.resolve(hw.extends, stack + [name])
            if base is None:
                self.raw[name] = None
                return None
            r = _Raw(dict(base.top), {k: (lv, dict(a)) for k, (lv, a) in base.levels.items()}, list(base.order))
        else:
            r = _Raw()
        own_levels: dict[str, A.HwLevel] = {}
        for item in hw.items:
            if isinstance(item, A.HwLevel):
                if item.kind not in LEVEL_KINDS:
                    self.col.error("E0407", f"unknown memory level kind '{item.kind}'", item.kind_span,
                                   did_you_mean(item.kind, LEVEL_KINDS) or "levels are offchip, global and pe")
                    continue
                if item.kind in own_levels:
                    self.col.error("E0408", f"a second '{item.kind}' level", item.kind_span,
                                   "a tier has exactly one offchip, one global and one pe level",
                                   [Note("first one here", own_levels[item.kind].kind_span)])
                    continue
                own_levels[item.kind] = item
                attrs = {}
                for a in item.attrs:
                    if len(a.path) != 1:
                        self.col.error("E0403", f"unknown level attribute '{'.'.join(a.path)}'", a.span)
                        continue
                    if a.path[0] in attrs:
                        self.col.error("E0102", f"attribute '{a.path[0]}' is set twice", a.span)
                    attrs[a.path[0]] = (self.value(a.value), a)
                r.levels[item.kind] = (item, attrs)  # a level block redefines that level entirely
                if hw.extends is None:
                    r.order.append((item.kind, item.kind_span))
        seen_top: set[str] = set()
        for item in hw.items:
            if not isinstance(item, A.HwAttr):
                continue
            key = ".".join(item.path)
            if key in seen_top:
                self.col.error("E0102", f"attribute '{key}' is set twice", item.span)
            seen_top.add(key)
            if len(item.path) == 1:
                r.top[item.path[0]] = (self.value(item.value), item)
            elif len(item.path) == 2 and item.path[0] in LEVEL_KINDS:
                kind, attr = item.path
                if kind not in r.levels:
                    self.col.error("E0410", f"'{key}' sets an attribute of a '{kind}' level this tier does not have",
                                   item.span, f"define the level: {kind} NAME {{ ... }}")
                    continue
                lv, attrs = r.levels[kind]
                attrs = dict(attrs)
                attrs[attr] = (self.value(item.value), item)
                r.levels[kind] = (lv, attrs)
            else:
                self.col.error("E0403", f"unknown hardware attribute '{key}'", item.span,
                               did_you_mean(key, list(TOP_ATTRS) + [f"{k}.{a}" for k in LEVEL_KINDS
                                                                    for a in LEVEL_ATTRS]))
        self.raw[name] = r
        return r

    def quantity(self, key: str, v: Any, item: A.HwAttr, dims: tuple[str, ...], what: str):
        """Check the dimension of an attribute value; returns its base-unit value or None."""
        if v is None:
            return None
        want = " or ".join(f"{U.NOUN[d]} (e.g. {U.EXAMPLE[d]})" for d in dims)
        if isinstance(v, U.Quantity):
            if v.dim not in dims:
                self.col.error("E0400", f"'{key}' is the {what} and needs {want}, but {v} is {U.NOUN.get(v.dim, v.dim)}",
                               item.value.span)
                return None
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.col.error("E0200", f"'{key}' needs {want}", item.value.span)
            return None
        if dims == (U.COUNT,):
            if not isinstance(v, int) and not float(v).is_integer():
                self.col.error("E0200", f"'{key}' must be a whole number, got {v}", item.value.span)
                return None
            return int(v)
        self.col.error("E0401", f"'{key}' is the {what} and needs a unit: {want}", item.value.span,
                       f"write e.g. {key} = {U.EXAMPLE[dims[0]]}")
        return None

    def validate(self, hw: A.Hardware, r: _Raw) -> HardwareSpec | None:
        n0 = len(self.col.diagnostics)
        top: dict[str, Any] = {}
        for key, (v, item) in r.top.items():
            spec = TOP_ATTRS.get(key)
            if spec is None:
                self.col.error("E0403", f"unknown hardware attribute '{key}'", item.span,
                               did_you_mean(key, TOP_ATTRS) or f"attributes are {', '.join(TOP_ATTRS)}")
                continue
            q = self.quantity(key, v, item, spec[0], spec[3])
            if q is None:
                continue
            val = q.value if isinstance(q, U.Quantity) else q
            if val <= 0:
                self.col.error("E0404", f"'{key}' must be positive, got {q}", item.value.span)
                continue
            top[key] = val
        for key, (dims, req, default, what) in TOP_ATTRS.items():
            if key not in top and key not in r.top:
                if req:
                    self.col.error("E0402", f"hardware '{hw.name}' needs '{key}' ({what})", hw.name_span,
                                   f"add e.g. {key} = {U.EXAMPLE[dims[0]] if dims[0] != U.COUNT else 168}")
                else:
                    top[key] = default
        # level order as written
        order = [k for k, _ in r.order]
        want = [k for k in LEVEL_KINDS if k in order]
        if order != want:
            for (k, sp), w in zip(r.order, want):
                if k != w:
                    self.col.error("E0405", f"memory level '{k}' is out of order: levels go offchip, global, pe "
                                   "(far to near)", sp)
                    break
        levels = []
        for kind in LEVEL_KINDS:
            if kind not in r.levels:
                self.col.error("E0410", f"hardware '{hw.name}' has no '{kind}' level", hw.name_span,
                               f"add: {kind} NAME {{ ... }}")
                continue
            lv, attrs = r.levels[kind]
            vals: dict[str, float | None] = {}
            for key, (v, item) in attrs.items():
                spec = LEVEL_ATTRS.get(key)
                if spec is None:
                    self.col.error("E0403", f"unknown attribute '{key}' of the {kind} level", item.span,
                                   did_you_mean(key, LEVEL_ATTRS) or f"level attributes are {', '.join(LEVEL_ATTRS)}")
                    continue
                q = self.quantity(key, v, item, spec[0], spec[1])
                if q is None:
                    vals[key] = None
                    continue
                if q.value <= 0:
                    self.col.error("E0404", f"'{key}' of the {kind} level must be positive, got {q}",
                                   item.value.span)
                    vals[key] = None
                    continue
                val = q.value
                if q.dim == U.BANDWIDTH_CYCLE:
                    val = q.value * top.get("frequency", 0)
                vals[key] = val
            for key in LEVEL_REQUIRED[kind]:
                if key not in attrs:
                    self.col.error("E0402", f"the {kind} level '{lv.name}' needs '{key}' "
                                   f"({LEVEL_ATTRS[key][1]})", lv.kind_span,
                                   f"add e.g. {key} = {U.EXAMPLE[LEVEL_ATTRS[key][0][0]]}")
            levels.append(LevelSpec(kind, lv.name, vals.get("size"), vals.get("bandwidth") or 0.0,
                                    vals.get("energy") or 0.0, lv.span))
        if len(self.col.diagnostics) > n0 or any(k not in top for k in TOP_ATTRS) or len(levels) != 3:
            return None
        lv = {x.kind: x for x in levels}
        g, pe = lv["global"], lv["pe"]
        if g.size is not None and pe.size is not None and pe.size > g.size:
            self.col.error("E0406", f"the PE memory '{pe.name}' ({U.format_quantity(pe.size, U.SIZE)} per PE) is "
                           f"larger than the global memory '{g.name}' ({U.format_quantity(g.size, U.SIZE)})",
                           pe.span, "the per-PE memory must be smaller than the global memory")
            return None
        if lv["offchip"].size is not None and g.size is not None and g.size > lv["offchip"].size:
            self.col.error("E0406", f"the global memory '{g.name}' is larger than the off-chip memory",
                           g.span)
            return None
        return HardwareSpec(hw.name, float(top["frequency"]), int(top["pes"]), int(top["macs_per_pe"]),
                            float(top["word"]) * 8, float(top["mac_energy"]), tuple(levels), hw.span)
