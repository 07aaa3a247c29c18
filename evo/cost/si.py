"""The one SI-unit formatter of evo's output (`evoc cost`, `evoc evolve`, plots).

Spelling: the SI symbol and prefixes with ``µ`` (U+00B5) for micro -- ``3.20 µs``,
``42.0 µJ``, ``1.23 GMAC`` -- and, as in the language's unit table, ``K`` for kilo
(``KB``, ``KMAC``; ``kilo="k"`` for ``kW``).  Areas: ``mm²`` and ``µm²`` (`format_area`).  Output is for people; programs are written with the language's
own spellings (`evo.units.format_quantity`, where micro is ``us``).
"""

from __future__ import annotations

import math

__all__ = ["format_area", "format_si", "si_prefix"]

# (prefix, scale), ascending
_PREFIXES = (("f", 1e-15), ("p", 1e-12), ("n", 1e-9), ("µ", 1e-6), ("m", 1e-3), ("", 1.0),
             ("K", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12))
_INDEX = {p: i for i, (p, _) in enumerate(_PREFIXES)}


def si_prefix(x: float, digits: int = 3, smallest: str = "f") -> tuple[str, float]:
    """The prefix (and its scale) that shows `x` with 1 to 3 digits before the point:
    the largest scale not above |x| (after rounding to `digits` significant digits),
    never below the prefix `smallest` (``""`` for counts and bytes)."""
    ax = abs(x)
    lo = _INDEX[smallest]
    prefix, scale = _PREFIXES[lo]
    if not math.isfinite(ax):
        return prefix, scale
    keep = 1.0 - 5.0 * 10.0 ** (-digits - 1)  # 999.96 us rounds to 1.000 ms at 4 digits
    for p, s in _PREFIXES[lo:]:
        if ax >= s * keep:
            prefix, scale = p, s
    return prefix, scale


def format_si(x: float, unit: str = "", *, digits: int = 3, smallest: str = "f", sep: str = " ",
              trim: bool = False, kilo: str = "K") -> str:
    """`x` (in the base unit `unit`) with an SI prefix and `digits` significant digits:
    ``format_si(3.2e-6, "s") == "3.20 µs"``; `trim` drops trailing zeros
    (``format_si(306, digits=4, smallest="", sep="", trim=True) == "306"``)."""
    if not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    prefix, scale = si_prefix(x, digits, smallest)
    if x == 0:
        return f"0{sep}{prefix}{unit}".rstrip()
    v = x / scale
    mag = math.floor(math.log10(abs(v))) if v else 0
    decimals = max(0, digits - 1 - max(0, mag))
    text = f"{v:.{decimals}f}"
    if trim and "." in text:
        text = text.rstrip("0").rstrip(".")
    if prefix == "K":
        prefix = kilo
    return f"{text}{sep}{prefix}{unit}".rstrip()


def format_area(m2: float, *, digits: int = 3) -> str:
    """An area given in m²: ``mm²`` down to a hundredth of one, else ``µm²``."""
    if not math.isfinite(m2):
        return format_si(m2)
    mm2 = m2 >= 1e-8 or m2 == 0
    v = m2 * (1e6 if mm2 else 1e12)
    return f"{v:.{digits}g} {'mm²' if mm2 else 'µm²'}"
