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
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["LEVEL_KINDS", "PRESETS", "Hardware", "HardwareError", "Level", "as_hardware", "hardware_from_dict"]

LEVEL_KINDS = ("offchip", "global", "pe")


class HardwareError(ValueError):
    """An impossible or incomplete hardware description."""


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
class Level:
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

    def __post_init__(self) -> None:
        if self.kind not in LEVEL_KINDS:
            raise HardwareError(f"unknown level kind {self.kind!r}; levels are offchip, global and pe")
        if self.size_bytes is None and self.kind != "offchip":
            raise HardwareError(f"the {self.kind} level '{self.name}' needs a size (only offchip may be unbounded)")
        _pos(self.size_bytes, f"{self.kind} size", allow_none=True)
        _pos(self.bandwidth_bps, f"{self.kind} bandwidth")
        e = self.energy_per_byte_j
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not math.isfinite(e) or e < 0:
            raise HardwareError(f"{self.kind} energy must be a non-negative number, got {e!r}")


@dataclass(frozen=True)
class Hardware:
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

    def __post_init__(self) -> None:
        _pos(self.frequency_hz, "frequency")
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

    def level(self, kind: str) -> Level:
        return {"offchip": self.offchip, "global": self.glb, "glb": self.glb, "pe": self.pe}[kind]

    def with_level(self, kind: str, **changes: Any) -> Hardware:
        """A copy with some attributes of one level changed (``with_level("global", size_bytes=2**20)``)."""
        attr = {"offchip": "offchip", "global": "glb", "glb": "glb", "pe": "pe"}[kind]
        return replace(self, **{attr: replace(getattr(self, attr), **changes)})

    def as_dict(self) -> dict:
        return {
            "name": self.name, "frequency_hz": self.frequency_hz, "pes": self.pes,
            "macs_per_pe": self.macs_per_pe, "word_bits": self.word_bits, "mac_energy_j": self.mac_energy_j,
            "levels": {lv.kind: {"name": lv.name, "size_bytes": lv.size_bytes, "bandwidth_bps": lv.bandwidth_bps,
                                 "energy_per_byte_j": lv.energy_per_byte_j}
                       for lv in (self.offchip, self.glb, self.pe)},
        }


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
        levels[kind] = Level(kind=kind, name=str(ld.get("name", kind)),
                             size_bytes=None if size is None else float(size),
                             bandwidth_bps=_num(_get(ld, _LEVEL_ALIASES["bandwidth"]), f"{kind} bandwidth"),
                             energy_per_byte_j=_num(_get(ld, _LEVEL_ALIASES["energy"]), f"{kind} energy"))
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
    )


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
    return {h.name: h for h in (eyeriss, lp, x4, edge, tpu, a100)}


PRESETS: dict[str, Hardware] = _presets()
