"""Hardware tiers: units, required and unknown attributes, positive values,
level order offchip -> global -> pe, PE memory smaller than global memory, extends."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from evo import codes as C
from evo.check.program import Program
from evo.diagnostics import Abort, Collector, Note, Span, did_you_mean
from evo.frontend import ast as A
from evo import units as U

LEVEL_KINDS = ("offchip", "global", "pe")
OPERANDS = ("input", "weight", "output")
DATAFLOWS = ("any", "row_stationary", "weight_stationary", "output_stationary", "input_stationary")
FLAGS = ("zero_gating", "zero_skipping", "compression")
WORD_ATTRS = ("dataflow", "holds")  # values are words (names), not expressions to evaluate

# attribute -> (accepted dimensions, required, default, description)
TOP_ATTRS: dict[str, tuple[tuple[str, ...], bool, Any, str]] = {
    "frequency": ((U.FREQUENCY,), True, None, "clock frequency"),
    "pes": ((U.COUNT,), True, None, "number of processing elements"),
    "macs_per_pe": ((U.COUNT,), False, 1, "multiply-accumulates per PE per cycle"),
    "word": ((U.SIZE,), False, 2.0, "word size (default 16 bit)"),
    "mac_energy": ((U.ENERGY,), False, 1e-12, "energy of one MAC (default 1 pJ)"),
    "rows": ((U.COUNT,), False, None, "rows of the PE array"),
    "cols": ((U.COUNT,), False, None, "columns of the PE array"),
    "operand_energy": ((U.ENERGY_PER_SIZE,), False, None, "energy per byte of a MAC's operand accesses"),
    "pe_area": ((U.AREA,), False, None, "area of one PE's MAC datapath and control"),
    "static_power": ((U.POWER,), False, 0.0, "static (leakage and clock) power"),
    "psum_cycles": ((U.COUNT,), False, 0, "number of cycles a PE's shared adder takes per partial sum it receives"),
}
# non-numeric tier attributes: name -> (description, default)
TOP_WORDS: dict[str, tuple[str, Any]] = {
    "dataflow": ("the dataflow: " + ", ".join(DATAFLOWS), "any"),
    "zero_gating": ("true or false: zero input activations gate the MAC", False),
    "zero_skipping": ("true or false: zero input activations skip their cycle", False),
    "compression": ("true or false: activations cross off-chip run-length coded", False),
}
LEVEL_ATTRS: dict[str, tuple[tuple[str, ...], str]] = {
    "size": ((U.SIZE,), "capacity"),
    "bandwidth": ((U.BANDWIDTH, U.BANDWIDTH_CYCLE), "bandwidth"),
    "energy": ((U.ENERGY_PER_SIZE,), "access energy per byte"),
    "input_size": ((U.SIZE,), "capacity reserved for inputs"),
    "weight_size": ((U.SIZE,), "capacity reserved for weights"),
    "output_size": ((U.SIZE,), "capacity reserved for outputs and partial sums"),
    "area": ((U.AREA_PER_SIZE,), "area per byte"),
    "read_bandwidth": ((U.BANDWIDTH, U.BANDWIDTH_CYCLE), "global level only: bandwidth of its reads into the PE array "
                       "when they travel on buses of their own (within the total bandwidth)"),
    "write_bandwidth": ((U.BANDWIDTH, U.BANDWIDTH_CYCLE), "global level only: bandwidth of the writes it takes "
                        "from the PE array on buses of their own (within the total bandwidth)"),
}
LEVEL_WORDS = ("holds",)
# The values a tier may have, in base units (Hz, count, bytes, J, bytes/s, J/byte): wide
# enough for any real or imagined accelerator, narrow enough that the cost model's
# arithmetic stays finite and exact (no infinities, no denormals, no overflow).  Other
# attributes must lie within GENERIC_RANGE.
RANGES: dict[str, tuple[float, float, str]] = {
    "frequency": (1.0, 1e12, "1 Hz to 1,000 GHz"),
    "pes": (1, 1e9, "1 to 1,000,000,000"),
    "rows": (1, 1e6, "1 to 1,000,000"),
    "cols": (1, 1e6, "1 to 1,000,000"),
    "macs_per_pe": (1, 1e6, "1 to 1,000,000"),
    "psum_cycles": (0, 1e3, "0 to 1,000"),  # 0: an adder of the PE's own
    "word": (1 / 8, 128.0, "1 bit to 1024 bit"),
    "mac_energy": (1e-18, 1e-3, "1e-6 pJ to 1 mJ"),
    "operand_energy": (1e-18, 1e-3, "1e-6 pJ/B to 1 mJ/B"),
    "size": (1.0, 1e18, "1 B to 1,000,000 TB"),
    "bandwidth": (1.0, 1e16, "1 B/s to 10,000 TB/s"),
    "energy": (1e-18, 1e-3, "1e-6 pJ/B to 1 mJ/B"),
}
RANGES["read_bandwidth"] = RANGES["write_bandwidth"] = RANGES["bandwidth"]  # a split port's share of it
GENERIC_RANGE = (1e-24, 1e24, "1e-24 to 1e24 in base units")


def level_attr_excluded(kind: str, key: str) -> str | None:
    """Why level `kind` cannot have attribute `key` (one of LEVEL_ATTRS), or None."""
    if kind != "global" and key in ("read_bandwidth", "write_bandwidth"):
        return (f"the {kind} level has no '{key}': only the global level's port to the PE array splits its "
                "reads and writes")
    if kind == "offchip" and key.endswith("_size"):
        return f"the offchip level has no '{key}' (it holds every operand, unbounded or of one size)"
    return None


def sign_problem(key: str, value: float) -> str | None:
    """Why `value` is too small for attribute `key` whatever its range (0 only where the range
    starts at 0), or None."""
    zero_ok = RANGES.get(key, GENERIC_RANGE)[0] == 0
    if value < 0 or (value == 0 and not zero_ok):
        return "must be 0 or more" if zero_ok else "must be positive"
    return None


def out_of_range(key: str, value: float) -> str | None:
    """Why `value` (base units) is not a plausible value of attribute `key`, or None."""
    lo, hi, text = RANGES.get(key, GENERIC_RANGE)
    if not math.isfinite(value) or not lo <= value <= hi:
        return f"must be from {text}"
    return None


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
    holds: tuple[str, ...] = OPERANDS          # operands kept here; the others bypass the level
    split: tuple[tuple[str, float], ...] = ()  # per-operand capacities (bytes)
    area: float | None = None                  # m^2 per byte; None: the cost model's default
    read_bandwidth: float | None = None        # bytes/s (global only); None: within `bandwidth` alone
    write_bandwidth: float | None = None


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
    rows: int | None = None
    cols: int | None = None
    dataflow: str = "any"
    operand_energy: float | None = None  # J/B; None: the pe level's energy
    zero_gating: bool = False
    zero_skipping: bool = False
    compression: bool = False
    pe_area: float | None = None         # m^2; None: the cost model's default
    static_power: float = 0.0            # W
    psum_cycles: int = 0                 # cycles per partial sum a PE receives (0: an adder of its own)

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
                    "word": self.word_bits / 8, "mac_energy": self.mac_energy, "rows": self.rows,
                    "cols": self.cols, "operand_energy": self.operand_energy, "pe_area": self.pe_area,
                    "static_power": self.static_power, "psum_cycles": self.psum_cycles}[path[0]]
        lv = self.level(path[0])
        if path[1].endswith("_size"):
            return dict(lv.split).get(path[1][:-5])
        return getattr(lv, path[1])

    def with_attr(self, path: tuple[str, ...], value: float) -> "HardwareSpec":
        if len(path) == 1:
            key = {"word": "word_bits"}.get(path[0], path[0])
            if key == "word_bits":
                value = value * 8
            if key in ("pes", "macs_per_pe", "psum_cycles"):
                value = int(value)
            return replace(self, **{key: value})
        levels = tuple(replace(lv, **{path[1]: value}) if lv.kind == path[0] else lv for lv in self.levels)
        return replace(self, levels=levels)

    def as_dict(self) -> dict:
        """The shape evo.cost.hardware_from_dict reads (attributes at their default left out)."""
        levels = {}
        for lv in self.levels:
            d = {"name": lv.name, "size_bytes": lv.size, "bandwidth_bps": lv.bandwidth,
                 "energy_per_byte_j": lv.energy}
            if lv.holds != OPERANDS:
                d["holds"] = list(lv.holds)
            if lv.split:
                d["split"] = dict(lv.split)
            if lv.area is not None:
                d["area_per_byte_m2"] = lv.area
            for key in ("read_bandwidth", "write_bandwidth"):
                if getattr(lv, key) is not None:
                    d[f"{key}_bps"] = getattr(lv, key)
            levels[lv.kind] = d
        out = {"name": self.name, "frequency_hz": self.frequency, "pes": self.pes,
               "macs_per_pe": self.macs_per_pe, "word_bits": self.word_bits, "mac_energy_j": self.mac_energy,
               "levels": levels}
        for key, attr, default in (("rows", "rows", None), ("cols", "cols", None), ("dataflow", "dataflow", "any"),
                                   ("operand_energy_j", "operand_energy", None), ("zero_gating", "zero_gating", False),
                                   ("zero_skipping", "zero_skipping", False), ("compression", "compression", False),
                                   ("pe_area_m2", "pe_area", None), ("static_power_w", "static_power", 0.0),
                                   ("psum_cycles", "psum_cycles", 0)):
            v = getattr(self, attr)
            if v != default:
                out[key] = v
        return out


@dataclass(frozen=True)
class _Words:
    """A word-valued attribute as written (``row_stationary``, ``[input, output]``)."""
    words: tuple[str, ...]
    is_list: bool


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

    def value(self, e, key: str | None = None) -> Any:
        if key in WORD_ATTRS:  # names are words here (dataflow = row_stationary; holds = [input, output])
            if isinstance(e, A.Name):
                return _Words((e.id,), False)
            if isinstance(e, A.ListExpr) and all(isinstance(x, A.Name) for x in e.items):
                return _Words(tuple(x.id for x in e.items), True)
        try:
            return self.evaluate(e)
        except Abort:
            return None

    def resolve(self, name: str, stack: list[str]) -> _Raw | None:
        if name in self.raw:
            return self.raw[name]
        hw: A.Hardware = self.prog.hardware[name]
        if name in stack:
            self.col.error(C.UNKNOWN_BASE_HARDWARE, "hardware tiers extend each other in a cycle: " + " -> ".join(stack + [name]),
                           hw.name_span)
            return None
        if hw.extends is not None:
            base_def = self.prog.hardware.get(hw.extends)
            if base_def is None:
                self.col.error(C.UNKNOWN_BASE_HARDWARE, f"hardware '{name}' extends unknown hardware '{hw.extends}'",
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
                    self.col.error(C.UNKNOWN_MEMORY_LEVEL_KIND, f"unknown memory level kind '{item.kind}'", item.kind_span,
                                   did_you_mean(item.kind, LEVEL_KINDS) or "levels are offchip, global and pe")
                    continue
                if item.kind in own_levels:
                    self.col.error(C.DUPLICATE_MEMORY_LEVEL, f"a second '{item.kind}' level", item.kind_span,
                                   "a tier has exactly one offchip, one global and one pe level",
                                   [Note("first one here", own_levels[item.kind].kind_span)])
                    continue
                own_levels[item.kind] = item
                attrs = {}
                for a in item.attrs:
                    if len(a.path) != 1:
                        self.col.error(C.UNKNOWN_HARDWARE_ATTRIBUTE, f"unknown level attribute '{'.'.join(a.path)}'", a.span)
                        continue
                    if a.path[0] in attrs:
                        self.col.error(C.NAME_BOUND_TWICE, f"attribute '{a.path[0]}' is set twice", a.span)
                    attrs[a.path[0]] = (self.value(a.value, a.path[0]), a)
                r.levels[item.kind] = (item, attrs)  # a level block redefines that level entirely
                if hw.extends is None:
                    r.order.append((item.kind, item.kind_span))
        seen_top: set[str] = set()
        for item in hw.items:
            if not isinstance(item, A.HwAttr):
                continue
            key = ".".join(item.path)
            if key in seen_top:
                self.col.error(C.NAME_BOUND_TWICE, f"attribute '{key}' is set twice", item.span)
            seen_top.add(key)
            if len(item.path) == 1:
                r.top[item.path[0]] = (self.value(item.value, item.path[0]), item)
            elif len(item.path) == 2 and item.path[0] in LEVEL_KINDS:
                kind, attr = item.path
                if kind not in r.levels:
                    self.col.error(C.MISSING_MEMORY_LEVEL, f"'{key}' sets an attribute of a '{kind}' level this tier does not have",
                                   item.span, f"define the level: {kind} NAME {{ ... }}")
                    continue
                lv, attrs = r.levels[kind]
                attrs = dict(attrs)
                attrs[attr] = (self.value(item.value, attr), item)
                r.levels[kind] = (lv, attrs)
            else:
                self.col.error(C.UNKNOWN_HARDWARE_ATTRIBUTE, f"unknown hardware attribute '{key}'", item.span,
                               did_you_mean(key, list(TOP_ATTRS) + list(TOP_WORDS)
                                            + [f"{k}.{a}" for k in LEVEL_KINDS for a in (*LEVEL_ATTRS, *LEVEL_WORDS)]))
        self.raw[name] = r
        return r

    def quantity(self, key: str, v: Any, item: A.HwAttr, dims: tuple[str, ...], what: str):
        """Check the dimension of an attribute value; returns its base-unit value or None."""
        if v is None:
            return None
        want = " or ".join(f"{U.NOUN[d]} (e.g. {U.EXAMPLE[d]})" for d in dims)
        if isinstance(v, U.Quantity):
            if v.dim not in dims:
                self.col.error(C.WRONG_UNIT, f"'{key}' is the {what} and needs {want}, but {v} is {U.NOUN.get(v.dim, v.dim)}",
                               item.value.span)
                return None
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.col.error(C.TYPE_MISMATCH, f"'{key}' needs {want}", item.value.span)
            return None
        if dims == (U.COUNT,):
            if not isinstance(v, int) and not float(v).is_integer():
                self.col.error(C.TYPE_MISMATCH, f"'{key}' must be a whole number, got {v}", item.value.span)
                return None
            return int(v)
        self.col.error(C.MISSING_UNIT, f"'{key}' is the {what} and needs a unit: {want}", item.value.span,
                       f"write e.g. {key} = {U.EXAMPLE[dims[0]]}")
        return None

    def validate(self, hw: A.Hardware, r: _Raw) -> HardwareSpec | None:
        n0 = len(self.col.diagnostics)
        top: dict[str, Any] = {}
        words: dict[str, Any] = {k: d for k, (_, d) in TOP_WORDS.items()}
        for key, (v, item) in r.top.items():
            if key in TOP_WORDS:
                w = self.word_attr(key, v, item)
                if w is not None:
                    words[key] = w
                continue
            spec = TOP_ATTRS.get(key)
            if spec is None:
                known = list(TOP_ATTRS) + list(TOP_WORDS)
                self.col.error(C.UNKNOWN_HARDWARE_ATTRIBUTE, f"unknown hardware attribute '{key}'", item.span,
                               did_you_mean(key, known) or f"attributes are {', '.join(known)}")
                continue
            q = self.quantity(key, v, item, spec[0], spec[3])
            if q is None:
                continue
            val = q.value if isinstance(q, U.Quantity) else q
            why = sign_problem(key, val)
            if why:
                self.col.error(C.VALUE_MUST_BE_POSITIVE, f"'{key}' {why}, got {q}", item.value.span)
                continue
            why = out_of_range(key, val)
            if why:
                self.col.error(C.VALUE_OUT_OF_RANGE, f"'{key}' {why}, got {q}", item.value.span)
                continue
            top[key] = val
        shape = [r.top.get(k) for k in ("rows", "cols")]
        if "pes" not in r.top and "rows" in top and "cols" in top:
            top["pes"] = top["rows"] * top["cols"]  # the array's shape gives the PE count
        for key, (dims, req, default, what) in TOP_ATTRS.items():
            if key not in top and key not in r.top:
                if req:
                    self.col.error(C.MISSING_HARDWARE_ATTRIBUTE, f"hardware '{hw.name}' needs '{key}' ({what})", hw.name_span,
                                   f"add e.g. {key} = {U.EXAMPLE[dims[0]] if dims[0] != U.COUNT else 168}")
                else:
                    top[key] = default
        # level order as written
        order = [k for k, _ in r.order]
        want = [k for k in LEVEL_KINDS if k in order]
        if order != want:
            for (k, sp), w in zip(r.order, want):
                if k != w:
                    self.col.error(C.MEMORY_LEVELS_OUT_OF_ORDER, f"memory level '{k}' is out of order: levels go offchip, global, pe "
                                   "(far to near)", sp)
                    break
        if (shape[0] is None) != (shape[1] is None):
            given, missing = ("rows", "cols") if shape[0] is not None else ("cols", "rows")
            self.col.error(C.MISSING_HARDWARE_ATTRIBUTE, f"hardware '{hw.name}' gives the array's {given} but not its {missing}",
                           r.top[given][1].span, f"add {missing} = ..., or leave both out")
        elif top.get("rows") and top.get("cols") and top.get("pes") and top["rows"] * top["cols"] != top["pes"]:
            item = r.top["pes"][1] if "pes" in r.top else r.top["rows"][1]
            self.col.error(C.VALUE_MUST_BE_POSITIVE, f"the PE array is {top['rows']} x {top['cols']} = {top['rows'] * top['cols']} "
                           f"PEs, but pes = {top['pes']}", item.value.span,
                           "leave pes out (rows x cols gives it) or make them agree")
        if words["dataflow"] == "row_stationary" and not top.get("rows"):
            item = r.top["dataflow"][1]
            self.col.error(C.MISSING_HARDWARE_ATTRIBUTE, "the row_stationary dataflow needs the array's shape", item.value.span,
                           "add rows = ... and cols = ... (e.g. rows = 12; cols = 14)")
        levels = []
        for kind in LEVEL_KINDS:
            if kind not in r.levels:
                self.col.error(C.MISSING_MEMORY_LEVEL, f"hardware '{hw.name}' has no '{kind}' level", hw.name_span,
                               f"add: {kind} NAME {{ ... }}")
                continue
            lv, attrs = r.levels[kind]
            vals: dict[str, Any] = {}
            for key, (v, item) in attrs.items():
                if key in LEVEL_WORDS:
                    w = self.word_attr(key, v, item, kind)
                    if w is not None:
                        vals[key] = w
                    continue
                spec = LEVEL_ATTRS.get(key)
                if spec is None:
                    known = list(LEVEL_ATTRS) + list(LEVEL_WORDS)
                    self.col.error(C.UNKNOWN_HARDWARE_ATTRIBUTE, f"unknown attribute '{key}' of the {kind} level", item.span,
                                   did_you_mean(key, known) or f"level attributes are {', '.join(known)}")
                    continue
                why = level_attr_excluded(kind, key)
                if why:
                    self.col.error(C.UNKNOWN_HARDWARE_ATTRIBUTE, why, item.span)
                    continue
                q = self.quantity(key, v, item, spec[0], spec[1])
                if q is None:
                    vals[key] = None
                    continue
                if q.value <= 0:
                    self.col.error(C.VALUE_MUST_BE_POSITIVE, f"'{key}' of the {kind} level must be positive, got {q}",
                                   item.value.span)
                    vals[key] = None
                    continue
                val = q.value
                if q.dim == U.BANDWIDTH_CYCLE:
                    val = q.value * top.get("frequency", 0)
                why = out_of_range(key, val) if val else None
                if why:
                    self.col.error(C.VALUE_OUT_OF_RANGE, f"'{key}' of the {kind} level {why}, got {q}"
                                   + (f" ({U.format_quantity(val, U.BANDWIDTH)})" if q.dim == U.BANDWIDTH_CYCLE else ""),
                                   item.value.span)
                    vals[key] = None
                    continue
                vals[key] = val
            holds = tuple(o for o in OPERANDS if o in vals.get("holds", OPERANDS))
            split = tuple((o, vals[f"{o}_size"]) for o in OPERANDS if vals.get(f"{o}_size") is not None)
            split_keys = [k for k in attrs if k.endswith("_size")]
            if split_keys and kind != "offchip":
                for o in OPERANDS:
                    k = f"{o}_size"
                    if k in attrs and o not in holds:
                        self.col.error(C.UNKNOWN_HARDWARE_ATTRIBUTE, f"'{k}' reserves space for {o}s, which the {kind} level "
                                       "does not hold", attrs[k][1].span, "add it to holds, or drop the size")
                    elif k not in attrs and o in holds:
                        self.col.error(C.MISSING_HARDWARE_ATTRIBUTE, f"the {kind} level '{lv.name}' splits its capacity but gives "
                                       f"no '{k}'", lv.kind_span,
                                       f"add {k} = ..., or leave {o}s out of holds = [...]")
                total = sum(v for _, v in split)
                if "size" not in attrs:
                    vals["size"] = total
                elif vals.get("size") is not None and total > vals["size"] * (1 + 1e-12):
                    self.col.error(C.VALUE_MUST_BE_POSITIVE, f"the {kind} level's operand sizes add up to "
                                   f"{U.format_quantity(total, U.SIZE)}, more than its size "
                                   f"{U.format_quantity(vals['size'], U.SIZE)}", attrs["size"][1].value.span)
            if "holds" in vals and kind == "offchip" and holds != OPERANDS:
                self.col.error(C.UNKNOWN_HARDWARE_ATTRIBUTE, "the offchip level holds every operand", attrs["holds"][1].value.span)
            for key in LEVEL_REQUIRED[kind]:
                if key not in attrs and not (key == "size" and split_keys):
                    self.col.error(C.MISSING_HARDWARE_ATTRIBUTE, f"the {kind} level '{lv.name}' needs '{key}' "
                                   f"({LEVEL_ATTRS[key][1]})", lv.kind_span,
                                   f"add e.g. {key} = {U.EXAMPLE[LEVEL_ATTRS[key][0][0]]}")
            levels.append(LevelSpec(kind, lv.name, vals.get("size"), vals.get("bandwidth") or 0.0,
                                    vals.get("energy") or 0.0, lv.span, holds, split, vals.get("area"),
                                    vals.get("read_bandwidth"), vals.get("write_bandwidth")))
        required = [k for k, spec in TOP_ATTRS.items() if spec[1] or spec[2] is not None]
        if len(self.col.diagnostics) > n0 or any(k not in top for k in required) or len(levels) != 3:
            return None
        lv = {x.kind: x for x in levels}
        g, pe = lv["global"], lv["pe"]
        if g.size is not None and pe.size is not None and pe.size > g.size:
            self.col.error(C.PE_MEMORY_LARGER_THAN_GLOBAL_MEMORY, f"the PE memory '{pe.name}' ({U.format_quantity(pe.size, U.SIZE)} per PE) is "
                           f"larger than the global memory '{g.name}' ({U.format_quantity(g.size, U.SIZE)})",
                           pe.span, "the per-PE memory must be smaller than the global memory")
            return None
        if lv["offchip"].size is not None and g.size is not None and g.size > lv["offchip"].size:
            self.col.error(C.PE_MEMORY_LARGER_THAN_GLOBAL_MEMORY, f"the global memory '{g.name}' is larger than the off-chip memory",
                           g.span)
            return None
        return HardwareSpec(hw.name, float(top["frequency"]), int(top["pes"]), int(top["macs_per_pe"]),
                            float(top["word"]) * 8, float(top["mac_energy"]), tuple(levels), hw.span,
                            rows=top.get("rows"), cols=top.get("cols"), dataflow=words["dataflow"],
                            operand_energy=top.get("operand_energy"), zero_gating=words["zero_gating"],
                            zero_skipping=words["zero_skipping"], compression=words["compression"],
                            pe_area=top.get("pe_area"), static_power=float(top.get("static_power", 0.0)),
                            psum_cycles=int(top.get("psum_cycles", 0)))

    def word_attr(self, key: str, v: Any, item: A.HwAttr, kind: str | None = None) -> Any:
        """A non-numeric attribute: a dataflow name, a flag, or the list of operands a level holds."""
        if v is None:
            return None
        if key == "dataflow":
            if isinstance(v, _Words) and not v.is_list and v.words[0] in DATAFLOWS:
                return v.words[0]
            got = v.words[0] if isinstance(v, _Words) and not v.is_list else None
            self.col.error(C.INVALID_HARDWARE_WORD, f"'dataflow' must be one of {', '.join(DATAFLOWS)}"
                           + (f", not '{got}'" if got else ""), item.value.span,
                           did_you_mean(got, DATAFLOWS) if got else None)
            return None
        if key == "holds":
            if isinstance(v, _Words):
                bad = [w for w in v.words if w not in OPERANDS]
                if bad:
                    self.col.error(C.INVALID_HARDWARE_WORD, f"'{bad[0]}' is not an operand; a level holds input, weight "
                                   "and output", item.value.span, did_you_mean(bad[0], OPERANDS))
                    return None
                if len(set(v.words)) != len(v.words):
                    self.col.error(C.NAME_BOUND_TWICE, "an operand is listed twice in 'holds'", item.value.span)
                    return None
                return v.words
            self.col.error(C.INVALID_HARDWARE_WORD, f"'holds' of the {kind} level is a list of operands", item.value.span,
                           "e.g. holds = [input, output] (weights bypass this level)")
            return None
        if isinstance(v, bool):
            return v
        self.col.error(C.INVALID_HARDWARE_WORD, f"'{key}' must be true or false", item.value.span, f"write {key} = true")
        return None
