"""Hardware tiers as the cost model sees them: plain frozen dataclasses in SI units.

A tier has three memory levels, far to near: ``offchip`` (DRAM), ``global`` (the
on-chip global buffer, GLB) and ``pe`` (the scratchpad inside each PE).  Sizes are
in bytes, bandwidths in bytes per second, energies in joules (per byte for levels,
per multiply-accumulate for ``mac_energy_j``).  The ``pe`` level's size and
bandwidth are *per PE*.

The compiler converts source units (``2 B/cycle``, ``108 KiB``, ``6 pJ/B``) before
calling in; :func:`hardware_from_dict` builds a tier from such already-converted
numbers and validates them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

__all__ = ["DATAFLOWS", "LEVEL_KINDS", "OPERANDS", "PRESETS", "Hardware", "HardwareError", "Level", "as_hardware",
           "hardware_from_dict"]

LEVEL_KINDS = ("offchip", "global", "pe")
OPERANDS = ("input", "weight", "output")
DATAFLOWS = ("any", "row_stationary", "weight_stationary", "output_stationary", "input_stationary")
RLC_RUN_BITS = 5  # Eyeriss run-length coding: a 5-bit run of zeros before each 16-bit value [E17]

# Area defaults (m^2), for a tier that gives none.  Assumptions in the class of a 65 nm
# process, stated in docs/cost-model.md section 14: SRAM about 1.2 um^2 per bit with its
# periphery (6T cell ~0.5 um^2), register files / small scratchpads ~4x that per bit, and a
# 16-bit fixed-point MAC with its PE control ~0.02 mm^2 (scaled by (word/16)^2).
AREA_PER_BYTE = {"global": 10e-12, "pe": 40e-12}
MAC_AREA_16BIT = 0.02e-6


class HardwareError(ValueError):
    """An impossible or incomplete hardware description."""


class _CachedHash:
    """A frozen dataclass whose hash is computed once (tiers and levels key every cache of
    the mapping search; hashing them field by field on each look-up cost more than the
    look-up).  The cached value is not pickled: string hashes differ between processes."""

    def __hash__(self) -> int:
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash(tuple(getattr(self, f.name) for f in fields(self)))
            object.__setattr__(self, "_hash", h)
        return h

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}


def _pos(value: Any, what: str, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise HardwareError(f"{what} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise HardwareError(f"{what} must be positive and finite, got {value!r}")
    return v


@dataclass(frozen=True)
class Level(_CachedHash):
    """One memory level.

    kind:               "offchip" | "global" | "pe"
    name:               display name (``DRAM``, ``GLB``, ``Spad``)
    size_bytes:         capacity in bytes (per PE for ``pe``); None = unbounded (offchip only)
    bandwidth_bps:      bytes per second (per PE for ``pe``)
    energy_per_byte_j:  joules per byte read from or written to this level
    """

    kind: str
    name: str
    size_bytes: float | None
    bandwidth_bps: float
    energy_per_byte_j: float
    holds: tuple[str, ...] = OPERANDS          # operands kept at this level; the others bypass it
    split: tuple[tuple[str, float], ...] = ()  # per-operand capacities in bytes; () = one shared size
    area_per_byte_m2: float | None = None      # None: AREA_PER_BYTE[kind]
    read_bandwidth_bps: float | None = None    # global only: reads (to the PEs) on their own buses; None: no limit
    write_bandwidth_bps: float | None = None   # beyond bandwidth_bps; writes (from the PEs) likewise

    __hash__ = _CachedHash.__hash__  # (a dataclass keeps a __hash__ defined in its own body)
    __getstate__ = _CachedHash.__getstate__

    def __post_init__(self) -> None:
        if self.kind not in LEVEL_KINDS:
            raise HardwareError(f"unknown level kind {self.kind!r}; levels are offchip, global and pe")
        holds = tuple(self.holds)
        if not holds or any(h not in OPERANDS for h in holds) or len(set(holds)) != len(holds):
            raise HardwareError(f"the {self.kind} level holds {holds!r}; operands are input, weight and output")
        object.__setattr__(self, "holds", tuple(h for h in OPERANDS if h in holds))
        if self.kind == "offchip" and self.holds != OPERANDS:
            raise HardwareError("the off-chip level holds every operand")
        split = tuple((str(r), float(v)) for r, v in self.split)
        for r, v in split:
            if r not in self.holds:
                raise HardwareError(f"the {self.kind} level splits its capacity for '{r}', which it does not hold")
            _pos(v, f"{self.kind} {r} size")
        if split:
            if self.kind == "offchip":
                raise HardwareError("the off-chip level has no per-operand split")
            if {r for r, _ in split} != set(self.holds):
                raise HardwareError(f"the {self.kind} level's split must give a size for each operand it holds")
            split = tuple(sorted(split, key=lambda rv: OPERANDS.index(rv[0])))
            if self.size_bytes is None:
                object.__setattr__(self, "size_bytes", sum(v for _, v in split))
            elif sum(v for _, v in split) > self.size_bytes * (1 + 1e-12):
                raise HardwareError(f"the {self.kind} level's split ({sum(v for _, v in split):g} B) exceeds "
                                    f"its size ({self.size_bytes:g} B)")
        object.__setattr__(self, "split", split)
        if self.area_per_byte_m2 is not None:
            a = self.area_per_byte_m2
            if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a) or a < 0:
                raise HardwareError(f"{self.kind} area per byte must be a non-negative number, got {a!r}")
        if self.size_bytes is None and self.kind != "offchip":
            raise HardwareError(f"the {self.kind} level '{self.name}' needs a size (only offchip may be unbounded)")
        _pos(self.size_bytes, f"{self.kind} size", allow_none=True)
        _pos(self.bandwidth_bps, f"{self.kind} bandwidth")
        for what in ("read", "write"):
            v = getattr(self, f"{what}_bandwidth_bps")
            if v is not None:
                if self.kind != "global":
                    raise HardwareError(f"only the global level has a {what} bandwidth (the port to the PE array)")
                _pos(v, f"global {what} bandwidth")
        e = self.energy_per_byte_j
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not math.isfinite(e) or e < 0:
            raise HardwareError(f"{self.kind} energy must be a non-negative number, got {e!r}")

    def capacity(self, role: str) -> float:
        """Bytes this level can give operand `role` (0 if it bypasses the level)."""
        if role not in self.holds:
            return 0.0
        for r, v in self.split:
            if r == role:
                return v
        return math.inf if self.size_bytes is None else self.size_bytes

    @property
    def area_m2(self) -> float:
        if self.kind == "offchip" or self.size_bytes is None:
            return 0.0
        per = AREA_PER_BYTE[self.kind] if self.area_per_byte_m2 is None else self.area_per_byte_m2
        return self.size_bytes * per

    def extra_dict(self) -> dict:
        """The attributes that differ from their defaults (as_dict lists only those)."""
        d: dict = {}
        if self.holds != OPERANDS:
            d["holds"] = list(self.holds)
        if self.split:
            d["split"] = {r: v for r, v in self.split}
        if self.area_per_byte_m2 is not None:
            d["area_per_byte_m2"] = self.area_per_byte_m2
        for key in ("read_bandwidth_bps", "write_bandwidth_bps"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d

    @property
    def split_port(self) -> bool:
        """Reads and writes have limits of their own (on top of the total bandwidth)."""
        return self.read_bandwidth_bps is not None or self.write_bandwidth_bps is not None

    @property
    def read_port_bps(self) -> float:
        """The bandwidth the port's reads may use: their own limit, else the total."""
        return self.read_bandwidth_bps or self.bandwidth_bps

    @property
    def write_port_bps(self) -> float:
        """The bandwidth the port's writes may use: their own limit, else the total."""
        return self.write_bandwidth_bps or self.bandwidth_bps


@dataclass(frozen=True)
class Hardware(_CachedHash):
    """A hardware tier (see the module docstring for units)."""

    name: str
    frequency_hz: float
    pes: int
    macs_per_pe: int
    word_bits: float
    mac_energy_j: float
    offchip: Level
    glb: Level
    pe: Level
    rows: int | None = None              # PE array shape (rows x cols = pes); None: any 2-D shape
    cols: int | None = None
    dataflow: str = "any"                # constrains the PE-level mapping (see DATAFLOWS)
    operand_energy_j: float | None = None  # J per byte of the MACs' operand accesses; None: the pe level's
    zero_gating: bool = False            # a zero input activation gates the MAC and its operand reads (energy)
    zero_skipping: bool = False          # ... and skips its cycle
    compression: bool = False            # activations cross off-chip run-length coded
    pe_area_m2: float | None = None      # MAC datapath + control per PE; None: MAC_AREA_16BIT x (word/16)^2
    static_power_w: float = 0.0          # leakage and clock power, drawn whatever the op
    psum_cycles: float = 0.0             # cycles a PE's adder takes per partial sum it receives (0: own adder)

    __hash__ = _CachedHash.__hash__
    __getstate__ = _CachedHash.__getstate__

    def __post_init__(self) -> None:
        _pos(self.frequency_hz, "frequency")
        if (self.rows is None) != (self.cols is None):
            raise HardwareError("give both rows and cols of the PE array, or neither")
        if self.rows is not None:
            for what in ("rows", "cols"):
                v = getattr(self, what)
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise HardwareError(f"{what} must be a positive integer, got {v!r}")
            if self.rows * self.cols != self.pes:
                raise HardwareError(f"rows x cols = {self.rows * self.cols} but pes = {self.pes}")
        if self.dataflow not in DATAFLOWS:
            raise HardwareError(f"unknown dataflow {self.dataflow!r}; dataflows are {', '.join(DATAFLOWS)}")
        if self.dataflow == "row_stationary" and self.rows is None:
            raise HardwareError("the row_stationary dataflow needs the array's rows and cols")
        for what in ("operand_energy_j", "pe_area_m2"):
            v = getattr(self, what)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                                  or v < 0):
                raise HardwareError(f"{what} must be a non-negative number, got {v!r}")
        for what, v in (("static power", self.static_power_w), ("psum_cycles", self.psum_cycles)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise HardwareError(f"{what} must be a finite non-negative number, got {v!r}")
        for what in ("pes", "macs_per_pe"):
            v = getattr(self, what)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise HardwareError(f"{what} must be a positive integer, got {v!r}")
        _pos(self.word_bits, "word size")
        e = self.mac_energy_j
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not math.isfinite(e) or e < 0:
            raise HardwareError(f"mac_energy must be a non-negative number, got {e!r}")
        for attr, kind in (("offchip", "offchip"), ("glb", "global"), ("pe", "pe")):
            lv = getattr(self, attr)
            if not isinstance(lv, Level) or lv.kind != kind:
                raise HardwareError(f"'{attr}' must be a Level of kind {kind!r}")
        if self.pe.size_bytes > self.glb.size_bytes:
            raise HardwareError(f"the PE memory ({self.pe.size_bytes:g} B) is larger than the global memory "
                                f"({self.glb.size_bytes:g} B)")
        if self.offchip.size_bytes is not None and self.offchip.size_bytes < self.glb.size_bytes:
            raise HardwareError("the off-chip memory is smaller than the global memory")

    # ------------------------------------------------------------------ derived
    @property
    def word_bytes(self) -> float:
        return self.word_bits / 8.0

    @property
    def peak_macs_per_cycle(self) -> int:
        return self.pes * self.macs_per_pe

    @property
    def peak_macs_per_s(self) -> float:
        return self.peak_macs_per_cycle * self.frequency_hz

    @property
    def operand_energy(self) -> float:
        """J per byte of a MAC's own operand reads and writes."""
        return self.pe.energy_per_byte_j if self.operand_energy_j is None else self.operand_energy_j

    @property
    def mac_area_m2(self) -> float:
        if self.pe_area_m2 is not None:
            return self.pe_area_m2
        return MAC_AREA_16BIT * (self.word_bits / 16.0) ** 2 * self.macs_per_pe

    @property
    def area_m2(self) -> float:
        """Chip area: every PE (MAC datapath and control, plus its memory) and the global buffer."""
        return self.pes * (self.mac_area_m2 + self.pe.area_m2) + self.glb.area_m2

    @property
    def area_breakdown(self) -> dict:
        return {"pe_logic": self.pes * self.mac_area_m2, "pe_memory": self.pes * self.pe.area_m2,
                "global": self.glb.area_m2}

    def compression_ratio(self, zero_fraction: float) -> float:
        """Off-chip bytes of an activation with this zero fraction over its dense bytes
        (run-length coding: each non-zero value carries a run of zeros, never worse than dense)."""
        if not self.compression:
            return 1.0
        z = min(1.0, max(0.0, float(zero_fraction)))
        return min(1.0, (1.0 - z) * (self.word_bits + RLC_RUN_BITS) / self.word_bits)

    def level(self, kind: str) -> Level:
        return {"offchip": self.offchip, "global": self.glb, "glb": self.glb, "pe": self.pe}[kind]

    def with_energy_scale(self, scale: float, static_power_w: float | None = None) -> Hardware:
        """A copy with every energy (MAC, operand accesses, each level's) times `scale`, and the
        static power `static_power_w` where given (a calibration: :func:`evo.cost.fit_power`)."""
        def plain(v):  # numpy scalars as floats; the checks are _pos's and the tier's own
            return float(v) if isinstance(v, numbers.Real) and not isinstance(v, bool) else v

        scale = _pos(plain(scale), "energy scale")
        levels = {a: replace(getattr(self, a), energy_per_byte_j=getattr(self, a).energy_per_byte_j * scale)
                  for a in ("offchip", "glb", "pe")}
        return replace(self, mac_energy_j=self.mac_energy_j * scale,
                       operand_energy_j=None if self.operand_energy_j is None else self.operand_energy_j * scale,
                       static_power_w=self.static_power_w if static_power_w is None else plain(static_power_w),
                       **levels)

    def with_level(self, kind: str, **changes: Any) -> Hardware:
        """A copy with some attributes of one level changed (``with_level("global", size_bytes=2**20)``)."""
        attr = {"offchip": "offchip", "global": "glb", "glb": "glb", "pe": "pe"}[kind]
        return replace(self, **{attr: replace(getattr(self, attr), **changes)})

    def as_dict(self) -> dict:
        """Plain numbers; attributes added after the first version appear only when not at their default."""
        d = {
            "name": self.name, "frequency_hz": self.frequency_hz, "pes": self.pes,
            "macs_per_pe": self.macs_per_pe, "word_bits": self.word_bits, "mac_energy_j": self.mac_energy_j,
            "levels": {lv.kind: {"name": lv.name, "size_bytes": lv.size_bytes, "bandwidth_bps": lv.bandwidth_bps,
                                 "energy_per_byte_j": lv.energy_per_byte_j, **lv.extra_dict()}
                       for lv in (self.offchip, self.glb, self.pe)},
        }
        for key, default in _EXTRA_DEFAULTS.items():
            v = getattr(self, key)
            if v != default:
                d[key] = v
        return d


_EXTRA_DEFAULTS = {"rows": None, "cols": None, "dataflow": "any", "operand_energy_j": None, "zero_gating": False,
                   "zero_skipping": False, "compression": False, "pe_area_m2": None, "static_power_w": 0.0,
                   "psum_cycles": 0.0}

_TOP_ALIASES = {
    "frequency": ("frequency_hz", "frequency"),
    "pes": ("pes",),
    "macs_per_pe": ("macs_per_pe",),
    "word_bits": ("word_bits", "word"),
    "mac_energy": ("mac_energy_j", "mac_energy"),
}
_LEVEL_ALIASES = {
    "size": ("size_bytes", "size"),
    "bandwidth": ("bandwidth_bps", "bandwidth"),
    "energy": ("energy_per_byte_j", "energy"),
}


def _get(d: Mapping[str, Any], keys: tuple[str, ...], default: Any = KeyError) -> Any:
    for k in keys:
        if k in d:
            return d[k]
    if default is KeyError:
        raise HardwareError(f"missing attribute '{keys[-1]}'")
    return default


def hardware_from_dict(d: Mapping[str, Any]) -> Hardware:
    """Build a :class:`Hardware` from plain, already unit-converted numbers.

    Accepted shapes (key aliases in brackets)::

        {"name": "Eyeriss", "frequency_hz" [frequency]: 200e6, "pes": 168, "macs_per_pe": 1,
         "word_bits" [word]: 16, "mac_energy_j" [mac_energy]: 1e-12,
         "levels": {"offchip": {...}, "global": {...}, "pe": {...}}}

    where the levels may also sit at the top level (``"offchip"``, ``"global"`` or
    ``"glb"``, ``"pe"``) and each level is ``{"name": "DRAM", "size_bytes" [size]: None,
    "bandwidth_bps" [bandwidth]: 25.6e9, "energy_per_byte_j" [energy]: 200e-12}``.
    This is the shape of ``HardwareSpec.as_dict()`` in the checker.  ``word`` is in
    bits.  ``macs_per_pe`` defaults to 1, ``word_bits`` to 16, ``mac_energy_j`` to 1 pJ.
    """
    if not isinstance(d, Mapping):
        raise HardwareError("hardware must be a mapping")
    levels_src = d.get("levels", d)
    levels: dict[str, Level] = {}
    for kind, keys in (("offchip", ("offchip",)), ("global", ("global", "glb")), ("pe", ("pe",))):
        ld = _get(levels_src, keys, None)
        if ld is None:
            raise HardwareError(f"missing the '{kind}' level")
        if isinstance(ld, Level):
            levels[kind] = ld
            continue
        size = _get(ld, _LEVEL_ALIASES["size"], None)
        split = ld.get("split") or {}
        if not isinstance(split, Mapping):
            raise HardwareError(f"the {kind} level's split must map operands to sizes")
        apb = ld.get("area_per_byte_m2")
        rw = {k: _num(ld[k], f"{kind} {k[:-14]} bandwidth") for k in ("read_bandwidth_bps", "write_bandwidth_bps")
              if ld.get(k) is not None}
        levels[kind] = Level(kind=kind, name=str(ld.get("name", kind)), **rw,
                             size_bytes=None if size is None else float(size),
                             bandwidth_bps=_num(_get(ld, _LEVEL_ALIASES["bandwidth"]), f"{kind} bandwidth"),
                             energy_per_byte_j=_num(_get(ld, _LEVEL_ALIASES["energy"]), f"{kind} energy"),
                             holds=tuple(ld.get("holds") or OPERANDS),
                             split=tuple((str(r), _num(v, f"{kind} {r} size")) for r, v in split.items()),
                             area_per_byte_m2=None if apb is None else _num(apb, f"{kind} area per byte"))
    pes = _get(d, _TOP_ALIASES["pes"])
    mpp = _get(d, _TOP_ALIASES["macs_per_pe"], 1)
    for what, v in (("pes", pes), ("macs_per_pe", mpp)):
        if isinstance(v, float) and v.is_integer():
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise HardwareError(f"{what} must be a positive integer, got {v!r}")
    return Hardware(
        name=str(d.get("name", "hardware")),
        frequency_hz=_num(_get(d, _TOP_ALIASES["frequency"]), "frequency"),
        pes=int(pes) if float(pes).is_integer() else pes,
        macs_per_pe=int(mpp) if float(mpp).is_integer() else mpp,
        word_bits=_num(_get(d, _TOP_ALIASES["word_bits"], 16), "word size"),
        mac_energy_j=_num(_get(d, _TOP_ALIASES["mac_energy"], 1e-12), "mac_energy"),
        offchip=levels["offchip"], glb=levels["global"], pe=levels["pe"],
        **_extras(d),
    )


def _extras(d: Mapping[str, Any]) -> dict:
    out: dict = {}
    for key in ("rows", "cols"):
        v = d.get(key)
        if v is not None:
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            out[key] = v
    if d.get("dataflow") is not None:
        out["dataflow"] = str(d["dataflow"])
    for key in ("operand_energy_j", "pe_area_m2"):
        if d.get(key) is not None:
            out[key] = _num(d[key], key)
    for key, what in (("static_power_w", "static_power"), ("psum_cycles", "psum_cycles")):
        if d.get(key) is not None:
            out[key] = _num(d[key], what)
    for key in ("zero_gating", "zero_skipping", "compression"):
        if d.get(key) is not None:
            out[key] = bool(d[key])
    return out


def as_hardware(hw: Any) -> Hardware:
    """`hw` as a :class:`Hardware`: a Hardware, a mapping for :func:`hardware_from_dict`, or any
    object with an ``as_dict()`` method returning one (the checker's ``HardwareSpec``)."""
    if isinstance(hw, Hardware):
        return hw
    if isinstance(hw, Mapping):
        return hardware_from_dict(hw)
    if hasattr(hw, "as_dict"):
        return hardware_from_dict(hw.as_dict())
    raise TypeError(f"expected a Hardware, a mapping or an object with as_dict(), got {type(hw).__name__}")


def _num(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise HardwareError(f"{what} must be a number, got {v!r}")
    return float(v)


# ---------------------------------------------------------------------------
# Presets: the tiers of examples/hardware.evo, already unit-converted (the sources of
# every figure are cited there and in docs/cost-model.md; a test keeps both in step).
KiB = 1024.0
MiB = 1024.0 ** 2
pJ = 1e-12


def _hw(name, f, pes, mpp, word, mac, off, glb, pe) -> Hardware:
    return Hardware(name, f, pes, mpp, word, mac,
                    Level("offchip", *off), Level("global", *glb), Level("pe", *pe))


def _presets() -> dict[str, Hardware]:
    eyeriss = _hw("Eyeriss", 200e6, 168, 1, 16, 1.0 * pJ,
                  ("DRAM", None, 720e6, 100 * pJ),
                  ("GLB", 108 * KiB, 32 * 200e6, 3 * pJ),
                  ("Spad", 520.0, 4 * 200e6, 0.5 * pJ))
    lp = replace(eyeriss, name="EyerissLPDDR4", offchip=Level("offchip", "DRAM", None, 25.6e9, 100 * pJ))
    x4 = replace(lp, name="EyerissX4", pes=672, glb=replace(lp.glb, size_bytes=432 * KiB))
    edge = _hw("EdgeNPU", 500e6, 4096, 1, 8, 0.23 * pJ,
               ("LPDDR4", None, 17e9, 160 * pJ),
               ("SRAM", 8 * MiB, 128 * 500e6, 12.5 * pJ),
               ("Regs", 64.0, 2 * 500e6, 0.25 * pJ))
    tpu = _hw("TPUv1", 700e6, 65536, 1, 8, 0.23 * pJ,
              ("DDR3", None, 34e9, 160 * pJ),
              ("UB", 28 * MiB, 256 * 700e6, 12.5 * pJ),
              ("MacRegs", 8.0, 2 * 700e6, 0.25 * pJ))
    a100 = _hw("A100", 1410e6, 108, 1024, 16, 1.5 * pJ,
               ("HBM2", None, 1555e9, 31 * pJ),
               ("L2", 40e6, 5120 * 1410e6, 12.5 * pJ),
               ("SMEM", 192 * KiB, 128 * 1410e6, 1.25 * pJ))
    a100 = replace(a100, operand_energy_j=0.25 * pJ)
    return {h.name: h for h in (eyeriss, lp, x4, edge, tpu, a100)}


PRESETS: dict[str, Hardware] = _presets()
