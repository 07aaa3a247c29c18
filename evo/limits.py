"""Every resource limit of the compiler and its tools, in one table.

A limit bounds the work one input can cause, so that an absurd program, image or
command line is refused before the work starts, with a diagnostic that names the
limit and how to raise it.  Each limit has a default and can be changed with an
environment variable, `EVO_LIMIT_<NAME>` (an integer; `_` and `,` separators are
allowed), read when evo is imported.  docs/limits.md lists them all; its table is
checked against this one by the tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    name: str
    default: int
    what: str       # what is counted, for messages and docs
    unit: str = ""  # "bytes", "" for counts

    @property
    def env(self) -> str:
        return f"EVO_LIMIT_{self.name.upper()}"

    def how(self) -> str:
        """How to raise this limit (a hint)."""
        return f"set {self.env} to raise the limit of {fmt(self.value, self.unit)} (see docs/limits.md)"

    @property
    def value(self) -> int:
        return _values.get(self.name, self.default)


def fmt(n: int | float, unit: str = "") -> str:
    if unit == "bytes":
        for size, name in ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if n >= size and n % size == 0:
                return f"{n // size:,} {name}"
        return f"{n:,} bytes"
    return f"{n:,}"


_TABLE = (
    Limit("source_bytes", 8 << 20, "bytes of one program file (and of each imported file)", "bytes"),
    Limit("nesting", 200, "levels of syntax nesting"),
    Limit("layers", 100_000, "layers (IR operations) of one instantiated network"),
    Limit("block_depth", 200, "nested block instances"),
    Limit("int_argument", 1_000_000, "magnitude of an integer op argument or input dimension (channels, "
          "kernel, padding, stride, sizes)"),
    Limit("params", 2_000_000_000, "parameters of one network"),
    Limit("activation_bytes", 16 << 30, "bytes of all activations of one network for one sample (float32)",
          "bytes"),
    Limit("batch", 65_536, "batch size (targets, evoc cost --batch, evoc run --batch)"),
    Limit("gene_values", 1_000_000, "values of one gene's domain"),
    Limit("search_space", 10 ** 15, "candidates in an evolve search space (product of the gene domains)"),
    Limit("generations", 100_000, "generations of evolve"),
    Limit("population", 100_000, "population of evolve"),
    Limit("image_pixels", 100_000_000, "pixels of one input image (decompression bombs are refused)"),
    Limit("image_bytes", 256 << 20, "bytes of one input image or weights file", "bytes"),
    Limit("images", 100_000, "input images of one evoc run"),
)
LIMITS: dict[str, Limit] = {lim.name: lim for lim in _TABLE}


def _read_env() -> dict[str, int]:
    out = {}
    for lim in _TABLE:
        raw = os.environ.get(lim.env)
        if raw is None:
            continue
        try:
            v = int(raw.replace("_", "").replace(",", "").strip())
        except ValueError:
            continue  # an unreadable override is ignored (the default stands)
        if v > 0:
            out[lim.name] = v
    return out


_values: dict[str, int] = _read_env()


def value(name: str) -> int:
    """The current value of limit `name`."""
    return LIMITS[name].value


def exceeded(name: str, got: int | float, what: str | None = None) -> str:
    """A message for a value past limit `name`."""
    lim = LIMITS[name]
    return f"{what or lim.what}: {fmt(int(got), lim.unit)} is more than the limit of {fmt(lim.value, lim.unit)}"
