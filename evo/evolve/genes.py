"""Gene domains and search spaces for ``evoc evolve``.

A *domain* is a finite, indexed list of options. Every domain has

* ``size`` – the number of options (always >= 1; empty domains are rejected),
* ``value(index)`` – the option at ``0 <= index < size``,
* ``index_of(value)`` – the inverse (``ValueError`` when the value is not an option),
* ``ordered`` – whether neighbouring indices are "close" options, so that the
  search may take small steps (``IntRange``/``FloatRange`` always; ``Choice`` when
  its values are numbers listed in increasing or decreasing order).

A *genome* is a tuple of indices, one per gene, in the order of ``Space.genes``.
The search works on genomes only; values are produced by ``Space.values``.

This module has no dependency on the rest of the compiler.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

__all__ = ["Choice", "Domain", "FloatRange", "Gene", "Genome", "IntRange", "Space"]

Genome = tuple  # tuple[int, ...]


def _same(a: Any, b: Any) -> bool:
    """Option equality: ``==``, but bools never equal numbers (``True != 1`` here)."""
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - opaque values may refuse comparison
        return False


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_index(index: int, size: int) -> int:
    if isinstance(index, bool) or not isinstance(index, int):
        try:
            import operator

            index = operator.index(index)  # numpy integers
        except TypeError:
            raise TypeError(f"gene index must be an int, got {type(index).__name__}") from None
    if not 0 <= index < size:
        raise IndexError(f"gene index {index} out of range for a domain of size {size}")
    return index


@dataclass(frozen=True)
class Choice:
    """An explicit list of options (``gene x in [10, 100]``).

    Values are opaque (ints, floats, bools, quantities, strings ...): they are only
    compared with ``==`` (by ``index_of``) and, to decide ``ordered``, with ``<``/``>``
    (a list of non-bool, non-string values in strictly increasing or decreasing order
    is ordered; values that cannot be compared make it unordered).
    Duplicated options are rejected.
    """

    values: tuple

    def __post_init__(self) -> None:
        vals = tuple(self.values)
        object.__setattr__(self, "values", vals)
        if not vals:
            raise ValueError("a gene needs at least one value")
        for i, a in enumerate(vals):
            for b in vals[:i]:
                if _same(a, b):
                    raise ValueError(f"duplicate gene value {a!r}")
        object.__setattr__(self, "_ordered", self._compute_ordered())  # cached, not a field

    def _compute_ordered(self) -> bool:
        vals = self.values
        if len(vals) <= 2:
            return True
        if any(isinstance(v, (bool, str)) for v in vals):
            return False
        try:  # numbers, or quantities that compare with <
            inc = all(bool(a < b) for a, b in itertools.pairwise(vals))
            dec = all(bool(a > b) for a, b in itertools.pairwise(vals))
        except Exception:  # noqa: BLE001 - not comparable: unordered
            return False
        return inc or dec

    @property
    def size(self) -> int:
        return len(self.values)

    @property
    def ordered(self) -> bool:
        """True when small index steps are small value steps (numbers in monotonic order)."""
        return self._ordered

    def value(self, index: int) -> Any:
        return self.values[_check_index(index, self.size)]

    def index_of(self, value: Any) -> int:
        for i, v in enumerate(self.values):
            if v is value:
                return i
        for i, v in enumerate(self.values):
            if _same(v, value):
                return i
        raise ValueError(f"{value!r} is not one of {list(self.values)!r}")

    def __iter__(self) -> Iterator[Any]:
        return iter(self.values)

    def __len__(self) -> int:
        return self.size


@dataclass(frozen=True)
class IntRange:
    """Half-open integer range ``start..stop step step`` (like Python's ``range``)."""

    start: int
    stop: int
    step: int = 1

    def __post_init__(self) -> None:
        for name in ("start", "stop", "step"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                try:
                    import operator

                    v = operator.index(v)
                except TypeError:
                    raise TypeError(f"IntRange {name} must be an int, got {v!r}") from None
                object.__setattr__(self, name, v)
        if self.step == 0:
            raise ValueError("range step must not be zero")
        if len(self._range) == 0:
            raise ValueError(f"empty range {self.start}..{self.stop} step {self.step}")

    @property
    def _range(self) -> range:
        return range(self.start, self.stop, self.step)

    @property
    def size(self) -> int:
        return len(self._range)

    ordered = True

    def value(self, index: int) -> int:
        return self.start + _check_index(index, self.size) * self.step

    def index_of(self, value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not in {self}")  # noqa: TRY004 - index_of raises ValueError
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"{value!r} is not in {self}")
            value = int(value)
        if not isinstance(value, int):
            raise ValueError(f"{value!r} is not in {self}")  # noqa: TRY004
        r = self._range
        if value not in r:
            raise ValueError(f"{value!r} is not in {self}")
        return r.index(value)

    def __iter__(self) -> Iterator[int]:
        return iter(self._range)

    def __len__(self) -> int:
        return self.size

    def __str__(self) -> str:
        return f"{self.start}..{self.stop} step {self.step}"


def _dec(x: Any) -> Decimal:
    """The decimal a user wrote: ``Decimal(repr(0.1)) == Decimal('0.1')``."""
    if isinstance(x, Decimal):
        return x
    if isinstance(x, bool):
        raise TypeError("FloatRange bounds must be numbers")
    if isinstance(x, int):
        return Decimal(x)
    f = float(x)
    if not math.isfinite(f):
        raise ValueError(f"FloatRange bounds must be finite, got {x!r}")
    return Decimal(repr(f))


@dataclass(frozen=True)
class FloatRange:
    """Half-open float range: values ``start + i*step`` for ``i = 0, 1, ...`` while ``< stop``.

    The arithmetic is done in decimal on the shortest representations of the
    bounds (``repr``), so ``FloatRange(0.7, 1.0, 0.1)`` is ``0.7, 0.8, 0.9`` and
    ``value(2) == 0.9`` exactly (no ``0.30000000000000004`` drift). A negative
    step counts down (values ``> stop``).
    """

    start: float
    stop: float
    step: float

    def __post_init__(self) -> None:
        for name in ("start", "stop", "step"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if not all(math.isfinite(getattr(self, n)) for n in ("start", "stop", "step")):
            raise ValueError("range bounds and step must be finite")
        if self.step == 0:
            raise ValueError("range step must not be zero")
        dstart, dstep = _dec(self.start), _dec(self.step)
        n = (_dec(self.stop) - dstart) / dstep
        # values start + i*step for i < n (strict), i.e. i <= ceil(n) - 1
        size = max(0, int(n.to_integral_value(rounding=ROUND_CEILING)))
        if size == 0:
            raise ValueError(f"empty range {self.start}..{self.stop} step {self.step}")
        # cached, not dataclass fields (equality/hash use start, stop, step only)
        object.__setattr__(self, "_dstart", dstart)
        object.__setattr__(self, "_dstep", dstep)
        object.__setattr__(self, "_size", size)

    @property
    def size(self) -> int:
        return self._size

    ordered = True

    def value(self, index: int) -> float:
        i = _check_index(index, self.size)
        return float(self._dstart + i * self._dstep)

    def index_of(self, value: Any) -> int:
        if isinstance(value, bool) or not _is_number(value):
            raise ValueError(f"{value!r} is not in {self}")
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"{value!r} is not in {self}")
        i = round((v - self.start) / self.step)
        for j in (i, i - 1, i + 1):
            if 0 <= j < self.size:
                w = self.value(j)
                if math.isclose(w, v, rel_tol=1e-9, abs_tol=abs(self.step) * 1e-9):
                    return j
        raise ValueError(f"{value!r} is not in {self}")

    def __iter__(self) -> Iterator[float]:
        return (self.value(i) for i in range(self.size))

    def __len__(self) -> int:
        return self.size

    def __str__(self) -> str:
        return f"{self.start!r}..{self.stop!r} step {self.step!r}"


Domain = Choice | IntRange | FloatRange


@dataclass(frozen=True)
class Gene:
    """A named search dimension (``name`` is what ``evaluate`` sees, e.g. ``"Eyeriss.pes"``)."""

    name: str
    domain: Any  # Choice | IntRange | FloatRange, or anything with size/value/index_of

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("a gene needs a non-empty name")
        d = self.domain
        if isinstance(d, (list, tuple)):
            object.__setattr__(self, "domain", Choice(tuple(d)))
        elif isinstance(d, range):
            object.__setattr__(self, "domain", IntRange(d.start, d.stop, d.step))
        for attr in ("size", "value", "index_of"):
            if not hasattr(self.domain, attr):
                raise TypeError(f"gene {self.name!r}: domain has no {attr!r}")

    @property
    def size(self) -> int:
        return self.domain.size

    @property
    def ordered(self) -> bool:
        return bool(getattr(self.domain, "ordered", False))


class Space:
    """The cartesian product of some genes.

    Genomes are tuples of indices in gene order. Flat indices ``0 <= k < size``
    enumerate genomes in lexicographic order (the last gene varies fastest), the
    same order as ``iter_all()``.
    """

    __slots__ = ("_names", "_ordered", "_sizes", "genes")

    def __init__(self, genes: Sequence[Gene]):
        genes = tuple(genes)
        if not genes:
            raise ValueError("an evolve block needs at least one gene")
        names: list[str] = []
        for g in genes:
            if not isinstance(g, Gene):
                raise TypeError(f"expected Gene, got {type(g).__name__}")
            if g.name in names:
                raise ValueError(f"gene {g.name!r} declared twice")
            names.append(g.name)
        self.genes: tuple[Gene, ...] = genes
        self._sizes = tuple(g.size for g in genes)
        self._names = tuple(names)
        self._ordered = tuple(g.ordered for g in genes)

    # -- basic properties -------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    @property
    def sizes(self) -> tuple[int, ...]:
        return self._sizes

    @property
    def ordered(self) -> tuple[bool, ...]:
        """Per gene: whether its domain is ordered (see ``Choice.ordered``)."""
        return self._ordered

    @property
    def size(self) -> int:
        return math.prod(self._sizes)

    def __len__(self) -> int:
        return len(self.genes)

    def __repr__(self) -> str:
        inner = ", ".join(f"{g.name}[{g.size}]" for g in self.genes)
        return f"Space({inner}; size={self.size})"

    # -- genomes ----------------------------------------------------------
    def contains(self, genome: Sequence[int]) -> bool:
        if len(genome) != len(self._sizes):
            return False
        return all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n for i, n in zip(genome, self._sizes)
        )

    def check(self, genome: Sequence[int]) -> Genome:
        g = tuple(int(i) for i in genome)
        if not self.contains(g):
            raise ValueError(f"genome {tuple(genome)!r} is not in {self!r}")
        return g

    def values(self, genome: Sequence[int]) -> dict[str, Any]:
        """``{gene name: value}`` for a genome (a fresh dict, in gene order)."""
        if len(genome) != len(self.genes):
            raise ValueError(f"genome has {len(genome)} indices, space has {len(self.genes)} genes")
        return {g.name: g.domain.value(i) for g, i in zip(self.genes, genome)}

    def genome_of(self, values: Mapping[str, Any]) -> Genome:
        """Inverse of ``values``; every gene must be given; unknown names are errors."""
        unknown = [k for k in values if k not in self._names]
        if unknown:
            raise ValueError(f"unknown gene(s): {', '.join(map(str, unknown))}")
        missing = [n for n in self._names if n not in values]
        if missing:
            raise ValueError(f"missing gene(s): {', '.join(missing)}")
        return tuple(g.domain.index_of(values[g.name]) for g in self.genes)

    def flat_index(self, genome: Sequence[int]) -> int:
        k = 0
        for i, n in zip(genome, self._sizes):
            k = k * n + i
        return k

    def genome_at(self, k: int) -> Genome:
        if not 0 <= k < self.size:
            raise IndexError(f"flat index {k} out of range for a space of size {self.size}")
        out = []
        for n in reversed(self._sizes):
            k, r = divmod(k, n)
            out.append(r)
        return tuple(reversed(out))

    def iter_all(self) -> Iterator[Genome]:
        """Every genome, in flat-index (lexicographic) order."""
        return itertools.product(*(range(n) for n in self._sizes))

    def iter_values(self) -> Iterator[dict[str, Any]]:
        for g in self.iter_all():
            yield self.values(g)

    def sample(self, rng: random.Random) -> Genome:
        """One uniformly random genome."""
        return tuple(rng.randrange(n) for n in self._sizes)

    def sample_distinct(self, rng: random.Random, k: int) -> list[Genome]:
        """``min(k, size)`` distinct uniformly random genomes (in random order)."""
        k = min(k, self.size)
        return [self.genome_at(i) for i in rng.sample(range(self.size), k)]
