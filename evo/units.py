"""Units of measure: every quantity is a value in SI base units with a dimension."""

from __future__ import annotations

from dataclasses import dataclass

# dimension names
FREQUENCY = "frequency"
SIZE = "size"
BANDWIDTH = "bandwidth"            # bytes per second
BANDWIDTH_CYCLE = "bandwidth/cycle"  # bytes per cycle (converted with the tier's frequency)
ENERGY = "energy"
ENERGY_PER_SIZE = "energy/size"    # joules per byte
TIME = "time"
COUNT = "count"
AREA = "area"                      # square metres
AREA_PER_SIZE = "area/size"        # square metres per byte
POWER = "power"                    # watts

FREQ_UNITS = {"Hz": 1.0, "kHz": 1e3, "MHz": 1e6, "GHz": 1e9}
SIZE_UNITS = {"bit": 1 / 8, "B": 1.0, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
              "KiB": 1024.0, "MiB": 1024.0 ** 2, "GiB": 1024.0 ** 3, "TiB": 1024.0 ** 4}
ENERGY_UNITS = {"J": 1.0, "mJ": 1e-3, "uJ": 1e-6, "nJ": 1e-9, "pJ": 1e-12, "fJ": 1e-15}
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
COUNT_UNITS = {"K": 1e3, "M": 1e6, "G": 1e9}
AREA_UNITS = {"mm2": 1e-6, "um2": 1e-12}
POWER_UNITS = {"W": 1.0, "mW": 1e-3, "uW": 1e-6}

# A dimension as a noun phrase, for messages.
NOUN = {FREQUENCY: "a frequency", SIZE: "a size", BANDWIDTH: "a bandwidth", BANDWIDTH_CYCLE: "a bandwidth per cycle",
        ENERGY: "an energy", ENERGY_PER_SIZE: "an energy per byte", TIME: "a time", COUNT: "a plain count",
        AREA: "an area", AREA_PER_SIZE: "an area per byte", POWER: "a power"}

# How a user would write one unit of each dimension (for messages).
EXAMPLE = {FREQUENCY: "200 MHz", SIZE: "108 KiB", BANDWIDTH: "25.6 GB/s", BANDWIDTH_CYCLE: "2 B/cycle",
           ENERGY: "1 pJ", ENERGY_PER_SIZE: "6 pJ/B", TIME: "33 ms", COUNT: "12M", AREA: "4 mm2",
           AREA_PER_SIZE: "10 um2/B", POWER: "250 mW"}


@dataclass(frozen=True)
class Quantity:
    value: float        # in base units: Hz, bytes, bytes/s, bytes/cycle, J, J/B, s
    dim: str
    text: str = ""      # as written, for messages and write-back

    def __str__(self) -> str:
        return self.text or format_quantity(self.value, self.dim)


def parse_unit(unit: str) -> tuple[float, str] | None:
    """'GB/s' -> (1e9, BANDWIDTH).  None for an unknown unit."""
    if "/" in unit:
        num, den = unit.split("/", 1)
        if num in SIZE_UNITS and den == "s":
            return SIZE_UNITS[num], BANDWIDTH
        if num in SIZE_UNITS and den == "cycle":
            return SIZE_UNITS[num], BANDWIDTH_CYCLE
        if num in ENERGY_UNITS and den in ("B", "bit"):
            return ENERGY_UNITS[num] / SIZE_UNITS[den], ENERGY_PER_SIZE
        if num in AREA_UNITS and den in ("B", "bit"):
            return AREA_UNITS[num] / SIZE_UNITS[den], AREA_PER_SIZE
        return None
    for table, dim in ((FREQ_UNITS, FREQUENCY), (SIZE_UNITS, SIZE), (ENERGY_UNITS, ENERGY),
                       (TIME_UNITS, TIME), (COUNT_UNITS, COUNT), (AREA_UNITS, AREA), (POWER_UNITS, POWER)):
        if unit in table:
            return table[unit], dim
    if unit == "cycle":
        return 1.0, "cycles"
    return None


_PREFERRED = {
    FREQUENCY: [("GHz", 1e9), ("MHz", 1e6), ("kHz", 1e3), ("Hz", 1)],
    SIZE: [("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3),
           ("B", 1)],
    BANDWIDTH: [("TB/s", 1e12), ("GB/s", 1e9), ("MB/s", 1e6), ("KB/s", 1e3), ("B/s", 1)],
    BANDWIDTH_CYCLE: [("B/cycle", 1)],
    ENERGY: [("J", 1), ("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9), ("pJ", 1e-12), ("fJ", 1e-15)],
    ENERGY_PER_SIZE: [("nJ/B", 1e-9), ("pJ/B", 1e-12), ("fJ/B", 1e-15)],
    TIME: [("s", 1), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)],
    AREA: [("mm2", 1e-6), ("um2", 1e-12)],
    AREA_PER_SIZE: [("um2/B", 1e-12)],
    POWER: [("W", 1), ("mW", 1e-3), ("uW", 1e-6)],
}


def format_quantity(value: float, dim: str) -> str:
    """A round-trippable spelling of a quantity (used when writing programs back)."""
    units = _PREFERRED.get(dim)
    if not units:
        return _num(value)
    for name, scale in units:
        v = value / scale
        if v >= 1 and _is_clean(v):
            return f"{_num(v)} {name}"
    for name, scale in units:
        v = value / scale
        if v >= 1:
            return f"{_num(v)} {name}"
    name, scale = units[-1]
    return f"{_num(value / scale)} {name}"


def _is_clean(v: float) -> bool:
    return abs(v - round(v, 6)) < 1e-9 * max(1.0, abs(v))


def _num(v: float) -> str:
    if v != v or v in (float("inf"), float("-inf")):
        return "infinity" if v > 0 else "-infinity" if v < 0 else "not a number"
    if abs(v - round(v)) < 1e-9 * max(1.0, abs(v)):
        return str(int(round(v)))
    return repr(round(v, 9))
