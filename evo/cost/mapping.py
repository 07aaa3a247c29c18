"""Mapping search: tile sizes, loop orders and the spatial unrolling of one op.

Every workload is first turned into a :class:`Nest`: named loop dimensions, and
for each tensor the dimensions it depends on (``rel``), with sliding windows
(output rows x filter rows -> input rows) counted exactly.  A mapping then has two
independent halves, searched jointly for the stated objective:

* the **GLB side**: a tile size per dimension held in the global buffer and the
  order of the loops over those tiles.  It decides the off-chip traffic.
* the **PE side**: a spatial unrolling over the PE array (at most two dims, a 2-D
  array), a tile per PE held in its scratchpad, and the order of the loops over
  array tiles.  It decides the compute cycles and the global <-> PE traffic.

Traffic across a boundary follows the standard analytic reuse rule: with tiles
``t`` and trip counts ``T = ceil(D / t)``, a tensor is re-fetched once per
iteration of every loop it does not depend on that sits *outside* the innermost
loop it does depend on (and has more than one iteration); a tensor whose tile
covers all its dims is fetched exactly once.  Per tensor::

    traffic(X) = sum over tiles of the tile footprint of X      (= |X| touched, + halos)
                 * prod_{d not in rel(X), d outside X's innermost relevant loop} T_d

Outputs re-visited ``V`` times are written ``V`` times and read back ``V - 1``
times as partial sums.

The candidate set is pruned but *monotone*: candidate tiles, unrollings and loop
orders are generated from the workload alone and only then filtered by the
capacities and the PE count, so a larger buffer / more PEs can only add
candidates; traffic never grows with a tile, so only maximal feasible tiles are
kept (an exact pruning).  Both halves are evaluated vectorised with numpy, and
the joint minimum is exact: latency is the max, and energy the sum, of the two
halves (EDP: exact over the product of the two Pareto fronts).

If not even the smallest tile fits a level, that level *streams*: every operand
is fetched for every use (no reuse) and the mapping says so.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache

import numpy as np

from evo.cost.hardware import Hardware, Level, _CachedHash
from evo.cost.workload import (
    ConvWorkload,
    EltwiseWorkload,
    MatmulWorkload,
    PoolWorkload,
    ReduceWorkload,
    Workload,
)

__all__ = [
    "OBJECTIVES",
    "LevelMapping",
    "Mapping",
    "Nest",
    "SearchResult",
    "TensorSpec",
    "Window",
    "axis_rows",
    "clear_search_cache",
    "compulsory_elements",
    "nest_for",
    "search",
    "share_pe_halves",
    "window_cap",
]

OBJECTIVES = ("latency", "energy", "edp")
ROLES = ("input", "weight", "output")


# ---------------------------------------------------------------------------
# loop nests
@dataclass(frozen=True)
class Window:
    """Input rows touched by output dim `out` through filter dim `k` (rows = out*stride + k*dil - pad)."""

    out: str
    k: str
    stride: int
    dil: int
    pad: int
    in_len: int


@dataclass(frozen=True)
class TensorSpec:
    name: str
    role: str                      # input | weight | output
    plain: tuple[str, ...]         # dims the tensor is indexed by directly
    windows: tuple[Window, ...] = ()
    count: int = 1                 # identical copies (n inputs of an elementwise op)
    const: int = 0                 # >0: a fixed-size tensor (batchnorm params), fetched once

    @cached_property
    def rel(self) -> frozenset[str]:
        return frozenset(self.plain) | frozenset(x for w in self.windows for x in (w.out, w.k))


@dataclass(frozen=True)
class Nest:
    kind: str
    dims: tuple[tuple[str, int], ...]
    tensors: tuple[TensorSpec, ...]
    ops_per_point: int = 1          # MAC-equivalent operations per iteration point
    spad_words_per_point: int = 4   # scratchpad accesses per point (Eyeriss: 3 reads + 1 write per MAC)
    glb_dims: tuple[str, ...] = ()  # tiled at the GLB (others: whole)
    pe_dims: tuple[str, ...] = ()   # tiled in the PE (others: 1)
    k_dims: tuple[str, ...] = ()    # filter dims: PE tile is 1 or the whole dim
    spatial_dims: tuple[str, ...] = ()

    __hash__ = _CachedHash.__hash__  # a nest keys the search caches
    __getstate__ = _CachedHash.__getstate__

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.dims)

    @cached_property
    def sizes(self) -> tuple[int, ...]:
        return tuple(s for _, s in self.dims)

    @cached_property
    def points(self) -> int:
        return math.prod(self.sizes)

    @cached_property
    def output(self) -> TensorSpec:
        return next(t for t in self.tensors if t.role == "output")

    def reduction_passes(self, tile: Sequence[int]) -> int:
        """How many tiles of extents `tile` cover the output's reduction dims (the dims it does not
        depend on): the partial sums of each output value leave and come back between them."""
        rel = self.output.rel
        return math.prod(-(-d // max(1, min(e, d))) for n, d, e in zip(self.names, self.sizes, tile) if n not in rel)


def nest_for(w: Workload) -> Nest:
    """The loop nest of a workload (one instance per workload: its hash is computed once)."""
    return _nest_for(w)


@lru_cache(maxsize=8192)
def _nest_for(w: Workload) -> Nest:
    if isinstance(w, MatmulWorkload):
        w = ConvWorkload(w.M, w.N * w.batch, w.K * w.batch, 1, 1, groups=w.batch, word_bits=w.word_bits)
    if isinstance(w, ConvWorkload):
        g = w.groups
        dims = (("N", w.N), ("G", g), ("K", w.K // g), ("C", w.C // g), ("P", w.P), ("Q", w.Q), ("R", w.R),
                ("S", w.S))
        wins = (Window("P", "R", w.stride_h, w.dil_h, w.pad_h, w.H_in),
                Window("Q", "S", w.stride_w, w.dil_w, w.pad_w, w.W_in))
        if w.transposed:  # input gradient: the output-sized gradient in, the windowed tensor out
            tensors = [TensorSpec("input", "input", ("N", "G", "K", "P", "Q")),
                       TensorSpec("weight", "weight", ("G", "K", "C", "R", "S"))]
        else:
            tensors = [TensorSpec("input", "input", ("N", "G", "C"), wins),
                       TensorSpec("weight", "weight", ("G", "K", "C", "R", "S"))]
        if w.bias:
            tensors.append(TensorSpec("bias", "weight", ("G", "K")))
        tensors.append(TensorSpec("output", "output", ("N", "G", "C"), wins) if w.transposed
                       else TensorSpec("output", "output", ("N", "G", "K", "P", "Q")))
        return Nest("conv", dims, tuple(tensors), 1, 4,
                    glb_dims=("N", "G", "K", "C", "P", "Q"), pe_dims=("N", "G", "K", "C", "Q", "R", "S"),
                    k_dims=("R", "S"), spatial_dims=("N", "G", "K", "C", "P", "Q", "R"))
    if isinstance(w, EltwiseWorkload):
        tensors = [TensorSpec("input", "input", ("E",), count=w.n_inputs)]
        if w.params:
            tensors.append(TensorSpec("params", "weight", (), const=w.params))
        tensors.append(TensorSpec("output", "output", ("E",)))
        return Nest("eltwise", (("E", w.elements),), tuple(tensors), w.ops_per_element, w.n_inputs + 1,
                    glb_dims=("E",), pe_dims=("E",), spatial_dims=("E",))
    if isinstance(w, PoolWorkload):
        dims = (("N", w.N), ("C", w.C), ("P", w.P), ("Q", w.Q), ("R", w.R), ("S", w.S))
        wins = (Window("P", "R", w.stride_h, 1, w.pad_h, w.H_in), Window("Q", "S", w.stride_w, 1, w.pad_w, w.W_in))
        tensors = (TensorSpec("input", "input", ("N", "C"), wins), TensorSpec("output", "output", ("N", "C", "P", "Q")))
        return Nest("pool", dims, tensors, 1, 2, glb_dims=("N", "C", "P", "Q"), pe_dims=("N", "C", "Q", "R", "S"),
                    k_dims=("R", "S"), spatial_dims=("N", "C", "P", "Q"))
    if isinstance(w, ReduceWorkload):
        out = ("ROW", "L") if w.out_per_row == w.length and w.length > 1 else ("ROW",)
        tensors = (TensorSpec("input", "input", ("ROW", "L")), TensorSpec("output", "output", out))
        return Nest("reduce", (("ROW", w.rows), ("L", w.length)), tensors, w.ops_per_element, 2,
                    glb_dims=("ROW", "L"), pe_dims=("ROW", "L"), spatial_dims=("ROW", "L"))
    raise TypeError(f"no loop nest for {type(w).__name__}")


# ---------------------------------------------------------------------------
# exact sliding-window row counts
@lru_cache(maxsize=1 << 16)
def axis_rows(out_len: int, t_out: int, k_len: int, t_k: int, stride: int, dil: int, pad: int,
              in_len: int) -> tuple[int, int]:
    """Input rows fetched along one spatial axis when `out_len` outputs are tiled by `t_out` and
    the `k_len` filter taps by `t_k`: (sum over all (output tile, tap tile) pairs of the distinct
    in-range rows each touches, the largest such count).  Padding rows are never fetched.

    The work does not grow with the extents beyond one vector over the output tiles (or the
    taps): one tap per tap tile is counted in closed form over all outputs; a window of taps
    with a stride or dilation that leaves gaps is split into residue classes, each a union of
    evenly spaced runs counted in closed form (:func:`_window_rows`)."""
    t_out, t_k = min(t_out, out_len), min(t_k, k_len)
    if t_k == 1 and k_len > 1:
        return _single_taps(out_len, t_out, k_len, stride, dil, pad, in_len)
    starts = np.arange(0, out_len, t_out)
    ends = np.minimum(starts + t_out, out_len) - 1
    total, biggest = 0, 0
    for j0 in range(0, k_len, t_k):
        j1 = min(k_len, j0 + t_k) - 1
        w = j1 - j0 + 1
        if dil == 1 and (stride <= w or t_out == 1):
            lo = starts * stride + j0 - pad
            hi = ends * stride + j1 - pad
            cnt = np.maximum(0, np.minimum(hi, in_len - 1) - np.maximum(lo, 0) + 1)
        else:
            cnt = _window_rows(starts, ends - starts + 1, w, stride, dil, starts * stride + j0 * dil - pad, in_len)
        total += int(cnt.sum())
        biggest = max(biggest, int(cnt.max()))
    return total, biggest


def _single_taps(out_len: int, t_out: int, k_len: int, stride: int, dil: int, pad: int,
                 in_len: int) -> tuple[int, int]:
    """axis_rows with one tap per tap tile: for tap j the in-range outputs p (0 <= p*stride +
    j*dil - pad < in_len) form one interval, whatever the output tiling; the largest count of
    one (output tile, tap) pair is that interval's largest overlap with an aligned tile."""
    j = np.arange(k_len, dtype=np.int64)
    off = j * dil - pad
    p_lo = np.maximum(0, -(off // stride))  # ceil(-off / stride)
    p_hi = np.minimum(out_len - 1, (in_len - 1 - off) // stride)
    n = np.maximum(0, p_hi - p_lo + 1)
    total = int(n.sum())
    live = n > 0
    if not live.any():
        return 0, 0
    lo, hi = p_lo[live], p_hi[live]
    k1, k2 = lo // t_out, hi // t_out
    first = np.minimum(hi, k1 * t_out + t_out - 1) - lo + 1
    last = hi - np.maximum(lo, k2 * t_out) + 1
    best = np.where(k2 - k1 >= 2, t_out, np.maximum(first, last))
    return total, int(best.max())


def _window_rows(starts: np.ndarray, lens: np.ndarray, w: int, stride: int, dil: int, base: np.ndarray,
                 in_len: int) -> np.ndarray:
    """Per output tile (first output `starts`, `lens` outputs, first row `base`), the distinct
    rows in [0, in_len) of {base + i*stride + j*dil : i < len, j < w}.

    With g = gcd(stride, dil), s = stride/g, d = dil/g, a row is base + g*(i0*s + d*x) where
    i0 = i mod d picks one of min(len, d) residue classes (distinct classes, distinct rows)
    and x runs over the union of the runs [m*s, m*s + w - 1] for the m = 0..M-1 outputs of
    the class: one run when w >= s, else M runs of w with period s.  Clipping to the input
    bounds x to an interval, counted in closed form.  Work: tiles x min(len, d)."""
    g = math.gcd(stride, dil)
    s, d = stride // g, dil // g
    n_cls = int(min(int(lens.max()), d))
    i0 = np.arange(n_cls, dtype=np.int64)[None, :]
    L = lens.astype(np.int64)[:, None]
    M = np.where(i0 < L, -(-(L - i0) // d), 0)  # outputs of the tile in class i0
    first_row = base.astype(np.int64)[:, None] + g * i0 * s
    x_lo = np.maximum(0, -(first_row // (g * d)))  # ceil(-first_row / (g*d))
    x_hi = (in_len - 1 - first_row) // (g * d)
    if w >= s:
        top = (M - 1) * s + w - 1
        cnt = np.minimum(x_hi, top) - x_lo + 1
    else:
        def runs(X):  # elements of the union below X (X >= 0)
            X = np.minimum(X, M * s)
            return (X // s) * w + np.minimum(X % s, w)

        cnt = runs(np.maximum(x_hi + 1, 0)) - runs(x_lo)
    cnt = np.where(M > 0, np.maximum(cnt, 0), 0)
    return cnt.sum(axis=1)


# ---------------------------------------------------------------------------
# results
@dataclass(frozen=True)
class LevelMapping:
    level: str                              # "global" | "pe"
    tiles: tuple[tuple[str, int], ...]      # per dim (per PE for "pe")
    loop_order: tuple[str, ...]             # outer -> inner, dims with more than one iteration
    stationary: str                         # the tensor fetched once at this level: input|weight|output|none
    streaming: bool = False                 # no tile fits: every operand fetched per use

    def describe(self) -> str:
        if self.streaming:
            return f"{self.level}: streaming (no tile fits)"
        t = " ".join(f"{d}{v}" for d, v in self.tiles if v > 1) or "1"
        order = ">".join(self.loop_order) or "-"
        return f"{self.level}: tile {t}; loops {order} ({self.stationary}-stationary)"


@dataclass(frozen=True)
class Mapping:
    glb: LevelMapping
    pe: LevelMapping
    spatial: tuple[tuple[str, int], ...]    # unrolled dims over the PE array
    candidates: int                         # mappings evaluated

    @property
    def streaming(self) -> bool:
        return self.glb.streaming or self.pe.streaming

    def describe(self) -> str:
        sp = " x ".join(f"{d}{v}" for d, v in self.spatial) or "none"
        return f"spatial {sp}; {self.glb.describe()}; {self.pe.describe()}"


@dataclass(frozen=True)
class MappingConstraints:
    """Parts of a mapping fixed by the caller, the rest searched (as a Timeloop mapspace
    constraint does): ``spatial`` the factor the array unrolls a dim by, ``glb_tile`` the
    extent of a dim in each global-buffer tile (for a convolution's C: the input channels
    whose partial sums a processing pass accumulates before they return to the buffer).
    A value above the dim's extent means the whole dim.  Build with :meth:`of`."""

    spatial: tuple[tuple[str, int], ...] = ()
    glb_tile: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(cls, spatial: dict[str, int] | None = None,
           glb_tile: dict[str, int] | None = None) -> "MappingConstraints":
        def norm(what: str, d: dict[str, int] | None) -> tuple[tuple[str, int], ...]:
            out = []
            for k, v in sorted((d or {}).items()):
                if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                    raise ValueError(f"mapping constraint {what}[{k!r}] must be a positive integer; got {v!r}")
                out.append((str(k), int(v)))
            return tuple(out)

        return cls(norm("spatial", spatial), norm("glb_tile", glb_tile))

    def __bool__(self) -> bool:
        return bool(self.spatial or self.glb_tile)

    def check(self, nest: "Nest") -> None:
        """A :class:`ConstraintError` naming the dims a constraint may name, for a dim the nest
        lacks or does not tile at the global buffer."""
        for what, pairs, allowed in (("spatial", self.spatial, nest.names),
                                     ("glb_tile", self.glb_tile, nest.glb_dims)):
            for d, _ in pairs:
                if d not in allowed:
                    raise ConstraintError(f"mapping constraint {what}[{d!r}]: this {nest.kind} nest's "
                                          f"{'dims' if what == 'spatial' else 'global-buffer tiled dims'} are "
                                          f"{', '.join(allowed)}")


class ConstraintError(ValueError):
    """The caller's mapping constraints cannot be met: they name a dim or an op that is not there
    (or an op with no mapping), or no mapping on this tier satisfies them."""


def _pairs(fix: tuple) -> str:
    """Constrained dims as a mapping prints them: 'C1, P13'."""
    return ", ".join(f"{d}{v}" for d, v in fix)


def _no_unrolling(fix: tuple, where: str = "") -> ConstraintError:
    return ConstraintError(f"no unrolling over the PE array satisfies the spatial constraint {_pairs(fix)}{where}")


def _fix_spatial(sp: np.ndarray, ctx: "_Ctx", fix: tuple) -> np.ndarray:
    """The spatial candidates that unroll each constrained dim by its factor (by the whole
    extent where that is smaller)."""
    for d, v in fix:
        i = ctx.idx[d]
        sp = sp[sp[:, i] == min(v, int(ctx.D[i]))]
    if not len(sp):
        raise _no_unrolling(fix)
    return sp


@dataclass(frozen=True)
class SearchResult:
    mapping: Mapping
    offchip: dict        # role -> bytes across offchip<->global: input, weight, output, psum_read, psum_write
    onchip: dict         # same, across global<->pe, counted at the GLB (multicast counted once)
    pe_fill_bytes: float  # bytes into / out of PE scratchpads (every multicast copy counted)
    compute_cycles: int
    active_pes: int
    t_compute: float
    t_offchip: float
    t_global: float
    t_pe: float
    e_offchip: float
    e_global: float
    e_pe: float
    bypass_bytes: float = 0.0  # off-chip bytes moved straight to / from the PEs (GLB bypassed)


# ---------------------------------------------------------------------------
# candidate values
@lru_cache(maxsize=4096)
def _halvings(D: int) -> tuple[int, ...]:
    vals, v = set(), D
    i = 0
    while True:
        v = -(-D // (1 << i))
        vals.add(v)
        if v == 1:
            break
        i += 1
    return tuple(sorted(vals))


@lru_cache(maxsize=4096)
def _spatial_values(D: int) -> tuple[int, ...]:
    """Spatial factors for a dimension of size D: the smallest factor for each of the first
    _PARTIAL_TRIPS trip counts (``ceil(D / t)``: partial tiles, a factor need not divide D), the halvings
    ``ceil(D / 2^i)`` and the divisors of D."""
    vals = set(_halvings(D))
    vals.update(-(-D // t) for t in range(1, min(D, _PARTIAL_TRIPS) + 1))
    r = 1
    while r * r <= D and r <= 4096:
        if D % r == 0:
            vals.add(r)
            if D // r <= 4096:
                vals.add(D // r)
        r += 1
    vals.discard(1)
    return tuple(sorted(vals))


_PARTIAL_TRIPS = 8


def _priority(dim: str, tensors) -> tuple[int, ...]:
    """Sort key putting the dims of the first tensor outermost, then those of the second..."""
    return tuple(-(dim in t.rel) for t in tensors)


@lru_cache(maxsize=1024)
def _orders(nest: Nest, pe: bool = False) -> list[tuple[tuple[int, ...], str]]:
    """Loop orders (outer -> inner, as dim indices) from tensor stationarity priorities:
    the dims of the first tensor outermost (it is fetched once), then those of the
    second...  All permutations at the GLB; at the PE, one order per stationary tensor
    (with the output, else the input, second: psums accumulate in place)."""
    names = nest.names
    main = []
    for role in ROLES:
        for t in nest.tensors:
            if t.role == role and not t.const:
                main.append(t)
                break
    out, seen = [], set()
    for perm in itertools.permutations(main):
        if pe and len(perm) > 2 and perm[1].role != ("input" if perm[0].role == "output" else "output"):
            continue
        order = tuple(sorted(range(len(names)), key=lambda i, perm=perm: _priority(names[i], perm) + (i,)))
        if order not in seen:
            seen.add(order)
            out.append((order, perm[0].role))
    return out


# ---------------------------------------------------------------------------
# vectorised pieces
class _Ctx:
    """Per-(nest, word) precomputation shared by both sides."""

    def __init__(self, nest: Nest, word: float):
        self.nest = nest
        self.word = word
        self.names = nest.names
        self.idx = {n: i for i, n in enumerate(self.names)}
        self.D = np.array(nest.sizes, dtype=np.int64)
        self.rel_mask = {t.name: np.array([n in t.rel for n in self.names]) for t in nest.tensors}


def _window_lookup(win: Window, t_out: np.ndarray, t_k: np.ndarray, D_out: int, D_k: int, which: int) -> np.ndarray:
    """axis_rows(...)[which] for arrays of tile sizes (few distinct values: cached)."""
    t_out = np.minimum(t_out, D_out).astype(np.int64, copy=False)
    t_k = np.minimum(t_k, D_k).astype(np.int64, copy=False)
    key = t_out * (D_k + 1) + t_k
    size = (D_out + 1) * (D_k + 1)
    if size <= _DENSE_LOOKUP:  # a table per window and extents, filled as keys appear (no sort)
        global _WIN_TABLE_ELEMENTS
        tkey = (win, D_out, D_k, which)
        table = _WIN_TABLES.get(tkey)
        if table is None:
            if _WIN_TABLE_ELEMENTS + size > _WIN_TABLE_MAX:
                _WIN_TABLES.clear()
                _WIN_TABLE_ELEMENTS = 0
            table = _WIN_TABLES[tkey] = np.full(size, np.nan)
            _WIN_TABLE_ELEMENTS += size
        vals = table[key]
        miss = np.isnan(vals)
        if miss.any():
            seen = np.zeros(size, dtype=bool)
            seen[key[miss]] = True
            uniq = np.flatnonzero(seen)
            table[uniq] = [axis_rows(D_out, int(u // (D_k + 1)), D_k, int(u % (D_k + 1)), win.stride, win.dil,
                                     win.pad, win.in_len)[which] for u in uniq]
            vals = table[key]
        return vals
    uniq, inv = np.unique(key, return_inverse=True)
    vals = np.array([axis_rows(D_out, int(u // (D_k + 1)), D_k, int(u % (D_k + 1)), win.stride, win.dil, win.pad,
                               win.in_len)[which] for u in uniq], dtype=np.float64)
    return vals[inv.reshape(-1)]


_DENSE_LOOKUP = 1 << 16
_WIN_TABLES: dict = {}  # (window, output extent, tap extent, which) -> axis_rows(...)[which] by key; NaN: not yet
_WIN_TABLE_ELEMENTS = 0
_WIN_TABLE_MAX = 1 << 23  # entries over all tables (64 MiB) before they are dropped


def _footprint(ctx: _Ctx, t: TensorSpec, tiles: np.ndarray, which: int) -> np.ndarray:
    """which=1: elements of the largest tile of t; which=0: sum of tile footprints over all tiles."""
    M = tiles.shape[0]
    if t.const:
        return np.full(M, float(t.const))
    if which == 1:
        f = np.full(M, float(t.count))
        for d in t.plain:
            i = ctx.idx[d]
            f *= np.minimum(tiles[:, i], ctx.D[i])
    else:  # whole extents: one number (products of integers, exact in any order)
        c = float(t.count)
        for d in t.plain:
            c *= float(ctx.D[ctx.idx[d]])
        f = np.full(M, c)
    for win in t.windows:
        io, ik = ctx.idx[win.out], ctx.idx[win.k]
        if which == 1:
            f = f * window_cap(win, np.minimum(tiles[:, io], ctx.D[io]), np.minimum(tiles[:, ik], ctx.D[ik]))
        else:
            f = f * _window_lookup(win, tiles[:, io], tiles[:, ik], int(ctx.D[io]), int(ctx.D[ik]), which)
    return f


def window_cap(win: Window, t_out, t_k):
    """Input rows a buffer must hold for a (t_out outputs x t_k taps) tile: an upper bound of
    the distinct rows any such tile touches, monotone in both tile sizes (capacity checks)."""
    span = (t_out - 1) * win.stride + (t_k - 1) * win.dil + 1
    return np.minimum(np.minimum(t_out * t_k, span), win.in_len).astype(np.float64)


_GRIDS: dict = {}  # (nest, tile values) -> (lattice rows, {tensor name: largest-tile footprint})
_GRIDS_MAX = 2048


def _lattice(ctx: _Ctx, values: list[np.ndarray]) -> tuple[np.ndarray, dict]:
    """The rows of values[0] x values[1] x ... and a memo of their footprints: a nest's lattice
    is the same for every capacity, so tiers differing in a buffer size share it."""
    key = (ctx.nest, tuple(tuple(int(x) for x in v) for v in values))
    hit = _GRIDS.get(key)
    if hit is None:
        if len(_GRIDS) >= _GRIDS_MAX:
            _GRIDS.clear()
        shape = tuple(len(v) for v in values)
        grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
        tiles = np.stack([values[k][g.ravel()] for k, g in enumerate(grids)], axis=1)
        hit = _GRIDS[key] = (tiles, {})
    return hit


def _maximal_grid(values: list[np.ndarray], feasible_fn, lattice: tuple | None = None) -> np.ndarray:
    """All maximal feasible points of the lattice values[0] x values[1] x ... (rows of tile values);
    `lattice`: its rows from :func:`_lattice`, and `feasible_fn(tiles, footprints)`."""
    shape = tuple(len(v) for v in values)
    if lattice is None:
        grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
        tiles = np.stack([values[k][g.ravel()] for k, g in enumerate(grids)], axis=1)
        feas = feasible_fn(tiles).reshape(shape)
    else:
        tiles = lattice[0]
        feas = feasible_fn(tiles, lattice[1]).reshape(shape)
    maximal = feas.copy()
    for ax in range(len(shape)):
        if shape[ax] == 1:
            continue
        nxt = np.zeros_like(feas)
        sl_dst = [slice(None)] * len(shape)
        sl_src = [slice(None)] * len(shape)
        sl_dst[ax] = slice(0, shape[ax] - 1)
        sl_src[ax] = slice(1, shape[ax])
        nxt[tuple(sl_dst)] = feas[tuple(sl_src)]
        maximal &= ~nxt
    return tiles[maximal.ravel()]


def _refetch(Tcols: list[np.ndarray], order: tuple[int, ...], rel: np.ndarray, M: int,
             alt: list[np.ndarray] | None = None, inside: list[np.ndarray] | None = None,
             big: list[tuple] | None = None):
    """Loops `order` (outer -> inner, dim indices) with trip-count columns Tcols[d].

    Returns the product over the dims the tensor does not depend on that sit outside its
    innermost relevant loop with more than one iteration (the re-fetch multiplier), and,
    when `alt`/`inside` are given, also prod over irrelevant dims of (alt[d] if outside else
    inside[d]) (the multicast-copy count of the PE side).  `big[d]`: (any, all, mask) of
    ``Tcols[d] > 1``, computed once per set of candidates.  The "outside" flag is kept as a
    scalar while it is the same for every candidate (products of integers: exact in any order)."""
    flag: bool | np.ndarray = False
    mult = np.ones(M)
    copies = np.ones(M) if alt is not None else None
    for d in reversed(order):
        if rel[d]:
            if flag is True:
                continue
            anyb, allb, gt = big[d] if big is not None else _bigness(Tcols[d])
            if allb:
                flag = True
            elif anyb:
                flag = gt if flag is False else (flag | gt)  # (a new array: `gt` may be shared)
        elif flag is False:
            if copies is not None:
                copies *= inside[d]
        elif flag is True:
            mult *= Tcols[d]
            if copies is not None:
                copies *= alt[d]
        else:  # in place where the flag says (x * 1.0 == x: the same values as a full product)
            np.multiply(mult, Tcols[d], out=mult, where=flag)
            if copies is not None:
                np.multiply(copies, alt[d], out=copies, where=flag)
                np.multiply(copies, inside[d], out=copies, where=~flag)
    return mult, copies


def _bigness(col: np.ndarray) -> tuple[bool, bool, np.ndarray]:
    gt = col > 1
    anyb = bool(gt.any())
    return anyb, anyb and bool(gt.all()), gt


# ---------------------------------------------------------------------------
# GLB side: off-chip traffic
@lru_cache(maxsize=1024)
def _glb_side_cached(nest: Nest, hw: Hardware, word: float, resident_items: tuple, ratios: tuple = (1.0, 1.0),
                     fix: tuple = ()):
    """`hw` is a :func:`_glb_view`: tiers that differ only in what the GLB half does not
    read (the PE array, the PE memory's size, the off-chip bandwidth) share an entry."""
    lp, eb, db, streaming, Ab = _memo_detail(_glb_side(_Ctx(nest, word), hw, dict(resident_items), ratios,
                                                       fix=fix))[:5]
    return lp, eb, db, streaming, Ab, {}


def _glb_half(side: tuple, bw: float) -> _Half:
    """The GLB half's latencies for an off-chip bandwidth (max of the link and the GLB's
    fill port), with its _Half, remembered per bandwidth."""
    lp, eb, db, _, Ab, memo = side
    h = memo.get(bw)
    if h is None:
        h = memo[bw] = _Half(np.maximum(Ab / bw, lp), eb, None, db)
    return h


def _memo_detail(res: tuple) -> tuple:
    """The same half with its detail(i) remembered (a chosen candidate recurs across tiers)."""
    return (res[0], res[1], lru_cache(maxsize=None)(res[2]), *res[3:])


class _Half:
    """One half's candidates (latency, energy, tie-break, detail) with what picking needs:
    the minimum latency, and picks remembered per bound.  ``pick(bound)`` equals
    ``_pick(lat, en, "latency", bound, tert)`` and ``pick()`` equals ``_pick(lat, en,
    "energy", tert=tert)``, found by successive minima (linear, no sort)."""

    def __init__(self, lat, en, tert, detail, keep=None):
        self.lat, self.en, self.tert, self.detail = lat, en, tert, detail
        self.keep = keep  # a boolean mask of the candidates in play (None: all), kept in their order
        self.size = len(lat) if keep is None else int(keep.sum())
        self.min_lat = float(lat.min() if keep is None else np.min(lat, where=keep, initial=np.inf))
        self._least_energy: int | None = None
        self._within: dict[float, int] = {}

    def _first(self, ok: np.ndarray | None) -> int:
        """Among candidates `ok` (ascending indices; None: all) the least (energy, latency,
        tie-break, index)."""
        en = self.en if ok is None else self.en[ok]
        c = np.flatnonzero(en == en.min())
        if ok is not None:
            c = ok[c]
        for key in (self.lat, self.tert):
            if len(c) > 1 and key is not None:
                v = key[c]
                c = c[v == v.min()]
        return int(c[0])

    def pick(self, bound: float | None = None) -> int:
        """An index into the whole arrays (masked candidates are never picked)."""
        if bound is None:
            if self._least_energy is None:
                self._least_energy = self._first(None if self.keep is None else np.flatnonzero(self.keep))
            return self._least_energy
        i = self._within.get(bound)
        if i is None:
            if len(self._within) > 64:
                self._within.clear()
            within = self.lat <= bound * (1 + 1e-12)
            if self.keep is not None:
                within &= self.keep
            i = self._within[bound] = self._first(np.flatnonzero(within))
        return i


# Views of a tier holding only what one half of the search reads, so that tiers which
# differ elsewhere (an evolve gene: PEs, a buffer size, a bandwidth) share that half.
@lru_cache(maxsize=512)
def _glb_view(hw: Hardware) -> Hardware:
    """What the GLB half reads: the global level and the off-chip and PE energies."""
    return Hardware("", 1.0, 1, 1, hw.word_bits, 0.0,
                    Level("offchip", "", None, 1.0, hw.offchip.energy_per_byte_j), replace(hw.glb, name=""),
                    Level("pe", "", min(1.0, hw.glb.size_bytes), 1.0, hw.pe.energy_per_byte_j))


@lru_cache(maxsize=512)
def _pe_view(hw: Hardware, pes: int) -> Hardware:
    """What the PE half reads: the array, the PE level, the GLB's operands, bandwidth and
    energy and the off-chip energy (bypass); `pes` is the array size to enumerate."""
    glb = Level("global", "", hw.pe.size_bytes, hw.glb.bandwidth_bps, hw.glb.energy_per_byte_j, hw.glb.holds,
                read_bandwidth_bps=hw.glb.read_bandwidth_bps, write_bandwidth_bps=hw.glb.write_bandwidth_bps)
    return Hardware("", hw.frequency_hz, pes, hw.macs_per_pe, hw.word_bits, 0.0,
                    Level("offchip", "", None, 1.0, hw.offchip.energy_per_byte_j), glb, replace(hw.pe, name=""),
                    rows=hw.rows, cols=hw.cols, dataflow=hw.dataflow, psum_cycles=hw.psum_cycles)


_PE_CACHE: dict = {}
_PE_CACHE_MAX = 4096
_PE_SHARE = 1  # enumerate free-shaped PE halves for at least this many PEs (see share_pe_halves)


def share_pe_halves(pes: int) -> None:
    """Enumerate the PE half of a free-shaped array for at least `pes` PEs from now on, so
    that tiers with up to `pes` PEs share one entry per op (an evolve over a PE-count gene
    passes its largest value).  The figures do not change: a half enumerated for more PEs and
    masked to a tier's count is that tier's half.  A single network is costed fastest with
    the default (each tier's own count)."""
    global _PE_SHARE
    _PE_SHARE = max(1, int(pes))


def _pe_side_for(nest: Nest, hw: Hardware, word: float, skip: float, ratios: tuple, fix: tuple = ()):
    """The PE half for `hw`.  Candidates are generated from the workload alone and only then
    filtered by the PE count, so a half enumerated for more PEs, masked to `hw.pes`, is the
    same half (same candidates, same order): a free-shaped array shares one entry across PE
    counts.  Returns (latency, energy, detail, streaming, compute time, bypass bytes)."""
    shaped = hw.rows is not None
    key = (nest, _pe_view(hw, hw.pes if shaped else 1), word, skip, ratios, fix)
    entries = _PE_CACHE.get(key)
    hit = None
    if entries:
        for cap, res, masked in entries:
            if cap >= hw.pes:
                hit = masked.get(hw.pes)
                if hit is None:
                    hit = masked[hw.pes] = _mask(res, hw.pes)
                return hit
    cap = hw.pes if shaped else max(hw.pes, _PE_SHARE)
    res = _memo_detail(_pe_side(_Ctx(nest, word), _pe_view(hw, cap), skip, ratios, fix))
    if len(_PE_CACHE) >= _PE_CACHE_MAX:
        _PE_CACHE.clear()
    hit = _mask(res, hw.pes)
    _PE_CACHE.setdefault(key, []).append((cap, res, {hw.pes: hit}))
    _PE_CACHE[key].sort(key=lambda e: e[0])
    return hit


class _Remap:
    """detail(i) of a masked half: the i-th kept candidate of the whole half."""

    def __init__(self, detail, idx):
        self.detail, self.idx = detail, idx

    def __call__(self, i: int):
        return self.detail(int(self.idx[i]))


def _mask(res: tuple, pes: int) -> tuple:
    """The candidates of a PE half that fit `pes` PEs, in their order, with a _Half.  When no
    operand bypasses the GLB only the _Half is used: it masks without copying."""
    la, ea, da, streaming, ta, Ba, need = res
    bypass = bool(Ba.any())
    if need.max() <= pes:
        return la, ea, da, streaming, ta, Ba, _Half(la, ea, ta, da), bypass
    keep = need <= pes
    if not bypass:
        return None, None, da, streaming, None, Ba, _Half(la, ea, ta, da, keep), bypass
    idx = np.flatnonzero(keep)
    la, ea, ta, Ba = la[idx], ea[idx], ta[idx], Ba[idx]
    da = _Remap(da, idx)
    return la, ea, da, streaming, ta, Ba, _Half(la, ea, ta, da), bypass


def _held(t: TensorSpec, level) -> bool:
    return t.role in level.holds


def _capacity_ok(ctx: _Ctx, level, tiles: np.ndarray, base: float, which: int = 1,
                 skip: dict[str, float] | None = None, memo: dict | None = None) -> np.ndarray:
    """Do the tiles fit `level`: one shared size, or a size per operand (``split``); operands
    the level does not hold take no space.  `base` bytes are already taken (shared size only).
    `memo`: footprints of these tiles remembered by tensor name (``which`` = 1)."""
    skip = skip or {}
    word = ctx.word
    if memo is not None and which == 1:
        def fp(t, tiles=tiles):
            f = memo.get(t.name)
            if f is None:
                f = memo[t.name] = _footprint(ctx, t, tiles, 1)
            return f
    else:
        def fp(t, tiles=tiles):
            return _footprint(ctx, t, tiles, which)
    if not level.split:
        need = np.full(tiles.shape[0], base)
        for t in ctx.nest.tensors:
            if not _held(t, level) or skip.get(t.name, 0.0) >= 1.0:
                continue
            need = need + fp(t) * word
        return need <= level.size_bytes
    ok = np.ones(tiles.shape[0], dtype=bool)
    for role, cap in level.split:
        need = np.zeros(tiles.shape[0])
        for t in ctx.nest.tensors:
            if t.role == role and skip.get(t.name, 0.0) < 1.0:
                need = need + fp(t) * word
        ok &= need <= cap
    return ok


def _glb_side(ctx: _Ctx, hw: Hardware, resident: dict[str, float], ratios: tuple = (1.0, 1.0), whole: tuple = (),
              fix: tuple = ()):
    """All GLB-half candidates: (port latency, energy, detail(i), streaming, off-chip bytes).  Only
    the per-candidate arrays are kept; detail(i) re-evaluates candidate i alone.  Operands the
    GLB does not hold are left to the PE half (they flow between off-chip and the PEs)."""
    nest, names, D = ctx.nest, ctx.names, ctx.D
    word = ctx.word
    res_bytes = sum(resident.get(t.name, 0.0) * _total_elems(ctx, t) for t in nest.tensors) * word
    tile_vals = [np.array(_halvings(int(D[i])) if n in nest.glb_dims and n not in whole else (int(D[i]),),
                          dtype=np.int64) for i, n in enumerate(names)]
    for d, v in fix:  # a constrained extent is the dim's only tile value
        i = ctx.idx[d]
        tile_vals[i] = np.array([min(v, int(D[i]))], dtype=np.int64)

    def feasible(tiles, memo):
        return _capacity_ok(ctx, hw.glb, tiles, res_bytes, skip=resident, memo=memo)

    tiles = _maximal_grid(tile_vals, feasible, _lattice(ctx, tile_vals))
    streaming = tiles.shape[0] == 0
    if streaming and fix:
        raise ConstraintError(f"the constrained global-buffer tile ({_pairs(fix)}) does not fit the global "
                              f"buffer ({hw.glb.size_bytes:g} B) with any tiles of the other dims")
    orders = _orders(nest)
    if streaming:
        tiles = np.ones((1, len(names)), dtype=np.int64)
        orders = [(tuple(range(len(names))), "none")]
    # Off-chip bytes beyond the compulsory ones are GLB tiles fetched again: each is streamed
    # to the PEs again on top of the PE-level schedule (so GLB->PE traffic always covers the
    # off-chip traffic), through the GLB's fill port.
    held = frozenset(t.name for t in nest.tensors if _held(t, hw.glb))
    comp = {r: v * word for r, v in compulsory_elements(nest, resident, ratios, held).items()}
    comp_total = sum(comp.values())
    M = tiles.shape[0]
    lat_l, en_l, off_l = [], [], []
    prep = _glb_prep(ctx, tiles, streaming)
    for order in orders:
        traffic = _glb_eval(ctx, prep, order[0], resident, streaming, ratios, held)
        total = sum(traffic.values())
        restream = np.maximum(0.0, total - comp_total)
        lat_l.append((total + restream) / hw.glb.bandwidth_bps)
        off_l.append(total)
        en_l.append(total * (hw.offchip.energy_per_byte_j + hw.glb.energy_per_byte_j)
                    + restream * (hw.glb.energy_per_byte_j + hw.pe.energy_per_byte_j))

    def detail(i: int):
        oi, ti = divmod(i, M)
        order, st = orders[oi]
        tl = tiles[ti:ti + 1]
        off = {r: float(v[0]) for r, v in _glb_eval(ctx, _glb_prep(ctx, tl, streaming), order, resident,
                                                    streaming, ratios, held).items()}
        extra = {r: max(0.0, off[r] - comp.get(r, 0.0)) for r in off}
        loop = tuple(names[j] for j in order if -(-D[j] // min(tl[0, j], D[j])) > 1)
        lm = LevelMapping("global", tuple((n, int(min(tl[0, k], D[k]))) for k, n in enumerate(names)), loop,
                          st if not streaming else "none", streaming)
        return lm, off, extra

    return np.concatenate(lat_l), np.concatenate(en_l), detail, streaming, np.concatenate(off_l), (tiles, orders)


_ROLES5 = ("input", "weight", "output", "psum_read", "psum_write")


def _glb_prep(ctx: _Ctx, tiles: np.ndarray, streaming: bool) -> dict:
    """Order-independent arrays for GLB tiles: trip counts and per-tensor tile footprint sums."""
    D = ctx.D
    T = -(-D[None, :] // np.minimum(tiles, D[None, :]))
    dsum = {}
    for t in ctx.nest.tensors:
        if streaming:
            dsum[t.name] = _footprint(ctx, t, tiles, 0)  # all tiles 1: filter taps one by one
        else:
            full_k = tiles.copy()
            for win in t.windows:
                full_k[:, ctx.idx[win.k]] = D[ctx.idx[win.k]]
            dsum[t.name] = _footprint(ctx, t, full_k, 0)
    Tcols = [T[:, i].astype(np.float64) for i in range(len(D))]
    big = [_bigness(c) for c in Tcols]
    return {"M": tiles.shape[0], "T": T, "Tcols": Tcols, "dsum": dsum, "big": big,
            "any": tuple(b[0] for b in big)}


def _glb_eval(ctx: _Ctx, prep: dict, order: tuple[int, ...], resident: dict[str, float],
              streaming: bool, ratios: tuple = (1.0, 1.0), held: frozenset | None = None) -> dict[str, np.ndarray]:
    """Off-chip bytes per role for the prepared GLB tiles under one loop order (activations
    scaled by their compression ratios `ratios` = (input, output); partial sums dense)."""
    D = ctx.D
    M, Tcols, anyb = prep["M"], prep["Tcols"], prep["any"]
    live = tuple(d for d in order if anyb[d])
    acc = {r: np.zeros(M) for r in _ROLES5}
    for t in ctx.nest.tensors:
        if held is not None and t.name not in held:
            continue
        keep = 1.0 - min(1.0, resident.get(t.name, 0.0))
        if keep <= 0.0:
            continue
        rel = ctx.rel_mask[t.name]
        if streaming:
            mult = np.full(M, float(np.prod(np.where(rel, 1, D))))
        else:
            mult = np.ones(M) if t.const else _refetch(Tcols, live, rel, M, big=prep["big"])[0]
        base = prep["dsum"][t.name] * keep
        if t.role == "output":
            acc["output"] += base * ratios[1]
            acc["psum_write"] += base * (mult - 1)
            acc["psum_read"] += base * (mult - 1)
        elif t.role == "input":
            acc["input"] += base * mult * ratios[0]
        else:
            acc[t.role] += base * mult
    return {r: v * ctx.word for r, v in acc.items()}


def compulsory_elements(nest: Nest, resident: dict[str, float] | None = None, ratios: tuple = (1.0, 1.0),
                        only: frozenset | None = None) -> dict[str, float]:
    """Per role, the elements that must cross off-chip once: every element the op touches
    (padding and rows a strided window skips excluded), resident (fused) parts excepted;
    activations scaled by their compression `ratios` (input, output); `only`: those tensors."""
    return dict(_compulsory(nest, tuple(sorted((resident or {}).items())), tuple(ratios), only))


@lru_cache(maxsize=4096)
def _compulsory(nest: Nest, resident_items: tuple, ratios: tuple, only: frozenset | None) -> dict[str, float]:
    resident = dict(resident_items)
    names = nest.names
    out = {"input": 0.0, "weight": 0.0, "output": 0.0}
    scale = {"input": ratios[0], "weight": 1.0, "output": ratios[1]}
    for t in nest.tensors:
        if only is not None and t.name not in only:
            continue
        keep = (1.0 - min(1.0, resident.get(t.name, 0.0))) * scale[t.role]
        if t.const:
            out[t.role] += keep * t.const
            continue
        n = float(t.count)
        for d in t.plain:
            n *= nest.sizes[names.index(d)]
        for win in t.windows:
            out_len = nest.sizes[names.index(win.out)]
            K = nest.sizes[names.index(win.k)]
            n *= axis_rows(out_len, out_len, K, K, win.stride, win.dil, win.pad, win.in_len)[0]
        out[t.role] += keep * n
    return out


def _total_elems(ctx: _Ctx, t: TensorSpec) -> float:
    """Elements of the whole tensor (windows: the whole input, padding excluded)."""
    if t.const:
        return float(t.const)
    n = float(t.count)
    for d in t.plain:
        n *= float(ctx.D[ctx.idx[d]])
    for win in t.windows:
        n *= float(win.in_len)
    return n


# ---------------------------------------------------------------------------
# PE side: spatial unrolling, per-PE tiles, compute and global<->pe traffic
# dims a dataflow may unroll over the array (conv nests; other nests are not constrained)
_DATAFLOW_DIMS = {"weight_stationary": ("G", "K", "C", "R"), "output_stationary": ("N", "G", "K", "P", "Q"),
                  "input_stationary": ("N", "G", "C", "P", "Q")}
_DATAFLOW_ROLE = {"weight_stationary": "weight", "output_stationary": "output", "input_stationary": "input"}


def _dataflow(nest: Nest, hw: Hardware) -> str:
    return hw.dataflow if nest.kind == "conv" else "any"


def _spatial_candidates(ctx: _Ctx, hw: Hardware, fix: tuple = ()) -> np.ndarray:
    sp = _free_spatial_candidates(ctx, hw)
    return _fix_spatial(sp, ctx, fix) if fix else sp


def _free_spatial_candidates(ctx: _Ctx, hw: Hardware) -> np.ndarray:
    """Spatial unrollings: none, one dim or a pair (rows x cols of the array); with the
    array's shape given, one dim per axis; a dataflow restricts the dims (row-stationary:
    filter rows R and another dim down the rows, output rows P across the columns)."""
    nest, D = ctx.nest, ctx.D
    pes, rows, cols = hw.pes, hw.rows, hw.cols
    df = _dataflow(nest, hw)
    if df == "row_stationary":
        return _rs_candidates(ctx, hw)
    allowed = nest.spatial_dims if df == "any" else tuple(d for d in nest.spatial_dims if d in _DATAFLOW_DIMS[df])
    dims = [ctx.idx[d] for d in allowed if D[ctx.idx[d]] > 1]
    single = pes if rows is None else max(rows, cols)
    out = [np.ones(len(D), dtype=np.int64)]
    for i in dims:
        for v in _spatial_values(int(D[i])):
            if v <= single:
                r = np.ones(len(D), dtype=np.int64)
                r[i] = v
                out.append(r)
    for a, b in itertools.combinations(dims, 2):
        va = np.array(_spatial_values(int(D[a])), dtype=np.int64)
        vb = np.array(_spatial_values(int(D[b])), dtype=np.int64)
        A, B = np.meshgrid(va, vb, indexing="ij")
        if rows is None:
            ok = (A * B) <= pes
        else:
            ok = ((A <= rows) & (B <= cols)) | ((A <= cols) & (B <= rows))
        if not ok.any():
            continue
        blk = np.ones((int(ok.sum()), len(D)), dtype=np.int64)
        blk[:, a] = A[ok]
        blk[:, b] = B[ok]
        out.append(blk)
    return np.vstack(out)


def _rs_candidates(ctx: _Ctx, hw: Hardware) -> np.ndarray:
    """Row-stationary [E16]: each PE runs a 1-D convolution of one filter row over one input
    row; a PE set has the filter rows (R) down a column and the output rows (P) across the
    columns, and copies of the set over up to two other dims (filters, channels, images,
    groups) fill the array, stacked down the rows or side by side across the columns (the
    chip's own AlexNet mappings [E17, Table III] put two 11 x 7 sets side by side in CONV1
    and four 3 x 13 sets, two channels by two filters, down the rows in CONV4 and 5); a set
    wider than the columns folds onto further rows (CONV2's 5 x 27)."""
    idx = ctx.idx
    return _rs_rows(tuple(int(v) for v in ctx.D), idx["R"], idx["P"],
                    tuple(idx[d] for d in ("N", "G", "K", "C")), hw.rows, hw.cols)


@lru_cache(maxsize=4096)
def _rs_rows(D: tuple, r_i: int, p_i: int, copy_dims: tuple, rows: int, cols: int) -> np.ndarray:
    """_rs_candidates for the extents `D` (one array per extents: the GLB tiles of a layer share
    them), rows in lexicographic order, each once.  Read-only."""
    nd = len(D)
    r_vals = [v for v in (1,) + _spatial_values(D[r_i]) if v <= rows]
    p_all = (1,) + _spatial_values(D[p_i])
    copy = [(i, _spatial_values(D[i])) for i in copy_dims if D[i] > 1]
    out = set()
    for sr in r_vals:
        # a set wider than the columns folds: its output rows wrap onto further bands of sr rows
        # [E17, Table III: AlexNet CONV2's 5 x 27 set as 5 x 14 above 5 x 13]
        for sp in (v for v in p_all if sr * -(-v // cols) <= rows):
            fold = -(-sp // cols)
            down, across = rows // (sr * fold), cols // min(sp, cols)  # set copies each way
            base = [1] * nd
            base[r_i], base[p_i] = sr, sp
            out.add(tuple(base))
            for k, (i, vi) in enumerate(copy):
                for a in vi:
                    if a > max(down, across):
                        continue
                    r = list(base)
                    r[i] = a
                    out.add(tuple(r))
                    for j, vj in copy[k + 1:]:  # a second dim: the same way as the first or the other
                        for b in vj:
                            if (a * b <= down or a * b <= across or (a <= down and b <= across)
                                    or (a <= across and b <= down)):
                                r[j] = b
                                out.add(tuple(r))
                        r[j] = 1
    arr = np.array(sorted(out), dtype=np.int64).reshape(-1, nd)
    arr.setflags(write=False)
    return arr


def _pe_candidates(ctx: _Ctx, hw: Hardware, fix: tuple = ()):
    """The PE half's candidates: (spatial rows, per-PE tiles, loop orders, streaming)."""
    nest, names, D = ctx.nest, ctx.names, ctx.D
    nd = len(names)
    df = _dataflow(nest, hw)
    tile_vals = []
    for i, n in enumerate(names):
        if n in nest.k_dims:
            v = (1, int(D[i])) if D[i] > 1 else (1,)
            if df == "row_stationary":  # a PE holds one filter row: R spatial, S whole
                v = (1,) if n == "R" else (int(D[i]),)
        elif n in nest.pe_dims:
            v = _halvings(int(D[i]))
        else:
            v = (1,)
        tile_vals.append(np.array(v, dtype=np.int64))

    def feasible(tiles, memo):
        return _capacity_ok(ctx, hw.pe, tiles, 0.0, memo=memo)

    ptiles = _maximal_grid(tile_vals, feasible, _lattice(ctx, tile_vals))
    streaming = ptiles.shape[0] == 0
    orders = _orders(nest, pe=True)
    if df in _DATAFLOW_ROLE:
        orders = [o for o in orders if o[1] == _DATAFLOW_ROLE[df]] or orders
    if streaming:
        ptiles = np.ones((1, nd), dtype=np.int64)
        orders = [(tuple(range(nd)), "none")]
    return _spatial_candidates(ctx, hw, fix), ptiles, orders, streaming


def _pe_side(ctx: _Ctx, hw: Hardware, skip: float = 0.0, ratios: tuple = (1.0, 1.0), fix: tuple = ()):
    """All PE-half candidates: (latency, energy, detail(i), streaming, compute time, off-chip
    bytes of the operands that bypass the GLB)."""
    names = ctx.names
    sp, ptiles, orders, streaming = _pe_candidates(ctx, hw, fix)
    S, Pn = sp.shape[0], ptiles.shape[0]
    M = S * Pn
    lat_l, en_l, tc_l, off_l = [], [], [], []
    need = np.repeat(np.prod(sp, axis=1), Pn)  # PEs a candidate occupies
    prep = _pe_prep(ctx, hw, sp, ptiles, skip)
    for order in orders:
        r = _pe_eval(ctx, hw, prep, order[0], streaming, ratios, full=False)
        lat_l.append(r["lat"])
        en_l.append(r["en"])
        tc_l.append(r["tc"])
        off_l.append(r["off"])

    def detail(i: int):
        oi, mi = divmod(i, M)
        order, st = orders[oi]
        si, pi = divmod(mi, Pn)
        r = _pe_eval(ctx, hw, _pe_prep(ctx, hw, sp[si:si + 1], ptiles[pi:pi + 1], skip), order, streaming, ratios)
        lm = LevelMapping("pe", tuple((n, int(r["p"][0, k])) for k, n in enumerate(names)),
                          tuple(names[j] for j in order if r["T"][0, j] > 1), st if not streaming else "none",
                          streaming)
        spatial = tuple((n, int(sp[si, k])) for k, n in enumerate(names) if sp[si, k] > 1)
        roles = {k: float(v[0]) for k, v in r["roles"].items()}
        off = {k: float(v[0]) for k, v in r["off_roles"].items()}
        return (lm, spatial, roles, float(r["recv"][0]), int(r["cycles"][0]), int(r["active"][0]),
                float(r["tc"][0]), float(r["t_glb"][0]), float(r["t_pe"][0]), off)

    return (np.concatenate(lat_l), np.concatenate(en_l), detail, streaming, np.concatenate(tc_l),
            np.concatenate(off_l), np.tile(need, len(orders)))


def _pe_prep(ctx: _Ctx, hw: Hardware, sp: np.ndarray, ptiles: np.ndarray, skip: float = 0.0,
             passes: int = 1) -> dict:
    """Order-independent arrays for the PE-half candidates ``sp x ptiles`` (every row of
    spatial factors `sp` with every per-PE tile of `ptiles`, spatial-major): effective
    tiles, trip counts, compute, per-tensor footprint sums.  `skip`: the fraction of
    iteration points whose cycle is skipped (zero input activations).  `passes`: where `ctx`
    is one GLB tile, the GLB tiles over the op's reduction (its psums return between them).  What depends on
    the spatial factors alone is computed once per row of `sp`; trip counts are exact
    ceilings in floating point (extents stay far below 2**53)."""
    nest, D = ctx.nest, ctx.D
    nd = len(D)
    S, Pn = sp.shape[0], ptiles.shape[0]
    M = S * Pn
    share = -(-D[None, :] // sp)  # a PE's share of each dim, per spatial row
    # dim-major (one contiguous row per dim; p and a are their transposed views, M x nd)
    pT = np.minimum(ptiles.T[:, None, :], share.T[:, :, None]).reshape(nd, M)  # a PE holds at most its share
    sT = np.broadcast_to(sp.T[:, :, None], (nd, S, Pn)).reshape(nd, M)
    aT = np.minimum(D[:, None], sT * pT)
    p, a = pT.T, aT.T
    Df = D.astype(np.float64)
    Tt = np.ceil(Df[:, None] / aT)  # trip counts over array tiles, one row per dim
    Tpt = np.ceil(Df[:, None] / pT)  # trip counts over PE tiles
    st = np.minimum(sT.astype(np.float64), Tpt)
    work = np.repeat(np.prod(share, axis=1).astype(np.float64), Pn)
    cycles = work * nest.ops_per_point * (1.0 - skip) / hw.macs_per_pe
    if hw.psum_cycles:
        cycles = cycles + hw.psum_cycles * _psums_received(ctx, pT, sT, work, passes)
    cycles = np.ceil(cycles)
    return {"M": M, "p": p, "T": Tt.T, "active": np.prod(st, axis=0),
            "cycles": cycles, "tc": cycles / hw.frequency_hz,
            "Tcols": list(Tt), "Tpcols": list(Tpt), "scols": list(st), "big": [_bigness(c) for c in Tt],
            "dsum_a": {t.name: _footprint(ctx, t, a, 0) for t in nest.tensors},
            "dsum_p": {t.name: _footprint(ctx, t, p, 0) for t in nest.tensors},
            "slide": _sliding_sums(ctx, hw, a, p), "s_eff": st.T, "D": D}


def _psums_received(ctx: _Ctx, pT: np.ndarray, sT: np.ndarray, work: np.ndarray, passes: int = 1) -> np.ndarray:
    """Partial sums each PE adds in (from a neighbour over a reduction dim the array unrolls,
    or back from the buffer when a PE tile leaves part of the reduction to later tiles): one
    per output point of each PE tile, its share's points over the tile's reduction extent.
    Where the PE's tiles hold the whole reduction of `ctx` and the array unrolls none of it,
    only the psums of earlier GLB tiles come back, in all but the first of `passes`.
    `pT`, `sT`: the per-PE tiles and spatial factors, dim-major (nd x M)."""
    red = ~ctx.rel_mask[ctx.nest.output.name]
    if not red.any():
        return np.zeros_like(work)
    p_red = np.prod(pT[red].astype(np.float64), axis=0)
    every = (np.prod(sT[red], axis=0) > 1) | (p_red < float(np.prod(ctx.D[red])))
    return work / p_red * np.where(every, 1.0, (passes - 1) / passes)


_SLIDE = "Q"  # a row-stationary PE slides its ifmap window along the ofmap row [E16]


def _sliding_sums(ctx: _Ctx, hw: Hardware, a: np.ndarray, p: np.ndarray) -> dict:
    """Row stationary [E16]: a PE runs a 1-D convolution of its filter row over an ifmap row,
    the ifmap spad a sliding window: while the ofmap-row loop (Q) runs innermost, each step
    brings in only the new columns, so the row is read once, not once per window.  Per input
    tensor with a window along Q: the footprint sums (array tiles, PE tiles) with Q whole,
    which :func:`_pe_eval` takes where Q is the innermost loop that iterates."""
    if _dataflow(ctx.nest, hw) != "row_stationary" or _SLIDE not in ctx.idx:
        return {}
    qi = ctx.idx[_SLIDE]
    out = {}
    for t in ctx.nest.tensors:
        if t.role == "input" and any(w.out == _SLIDE for w in t.windows):
            wa, wp = a.copy(), p.copy()
            wa[:, qi] = wp[:, qi] = ctx.D[qi]
            out[t.name] = (_footprint(ctx, t, wa, 0), _footprint(ctx, t, wp, 0))
    return out


def _pe_eval(ctx: _Ctx, hw: Hardware, prep: dict, order: tuple[int, ...], streaming: bool,
             ratios: tuple = (1.0, 1.0), full: bool = True) -> dict:
    """Cost of the prepared PE-half candidates under one loop order over array tiles.

    An operand the PE memory does not hold is read from (outputs: accumulated in) the GLB at
    every use, a multicast along the dims it does not depend on counting once.  An operand
    the GLB does not hold moves between off-chip memory and the PEs directly: its traffic
    here is off-chip traffic (returned as ``off``), not GLB traffic.  ``full=False`` leaves
    out the per-role breakdowns (``roles``, ``off_roles``: what `detail` reports), which the
    enumeration does not read; the other figures do not depend on them."""
    nest, D, word = ctx.nest, ctx.D, ctx.word
    M, T, active = prep["M"], prep["T"], prep["active"]
    live = tuple(d for d in order if D[d] > 1)
    uniq = np.zeros(M)
    recv = np.zeros(M)
    off = np.zeros(M)
    acc = {r: np.zeros(M) for r in _ROLES5} if full else {}
    off_acc = {r: np.zeros(M) for r in _ROLES5} if full else {}
    split = hw.glb.split_port  # reads and writes on buses of their own: counted apart
    rd, wr = (np.zeros(M), np.zeros(M)) if split else (None, None)
    points = float(nest.points)
    for t in nest.tensors:
        rel = ctx.rel_mask[t.name]
        dsum_a, dsum_p = prep["dsum_a"][t.name], prep["dsum_p"][t.name]
        in_pe = _held(t, hw.pe)
        if not in_pe:  # every use from the level above; a multicast counts once
            bcast = np.prod(np.where(rel[None, :], 1, prep["s_eff"]), axis=1).astype(np.float64)
            uses = (float(t.const) if t.const else points * t.count) / bcast
            mult, copies = None, np.zeros(M)
            if t.role == "output":
                final = dsum_a
                spill = np.maximum(0.0, uses - final)
                roles = {"output": final, "psum_write": spill, "psum_read": spill}
                u_tot, r_tot = final + 2 * spill, np.zeros(M)
            else:
                roles = {t.role: uses}
                u_tot, r_tot = uses, np.zeros(M)
        else:
            slide = prep["slide"].get(t.name)
            if slide is not None and not streaming:  # Q innermost of the loops that iterate: a sliding window
                qi = ctx.idx[_SLIDE]
                inner = live[live.index(qi) + 1:] if qi in live else ()
                on = np.all(T[:, list(inner)] == 1, axis=1) if inner else np.ones(M, dtype=bool)
                dsum_a, dsum_p = np.where(on, slide[0], dsum_a), np.where(on, slide[1], dsum_p)
            if streaming:
                mult = np.prod(np.where(rel[None, :], 1, T), axis=1).astype(np.float64)
                copies = np.prod(np.where(rel[None, :], 1, D[None, :]), axis=1).astype(np.float64)
            elif t.const:
                mult, copies = np.ones(M), active
            else:
                mult, copies = _refetch(prep["Tcols"], live, rel, M, prep["Tpcols"], prep["scols"], prep["big"])
            if t.role == "output":
                spill = dsum_a * (mult - 1)
                roles = {"output": dsum_a, "psum_write": spill, "psum_read": spill}
                u_tot, r_tot = dsum_a * mult + spill, dsum_p * copies + spill
            else:
                roles = {t.role: dsum_a * mult}
                u_tot, r_tot = dsum_a * mult, dsum_p * copies
        recv += r_tot
        if _held(t, hw.glb):
            if full:
                for k, v in roles.items():
                    acc[k] += v
            uniq += u_tot
            if split:  # outputs: final values and spilled psums written, spilled psums read back
                if t.role == "output":
                    wr += roles["output"] + roles["psum_write"]
                    rd += roles["psum_read"]
                else:
                    rd += u_tot
        else:  # between off-chip memory and the PEs
            scale = ratios[0] if t.role == "input" else 1.0
            for k, v in roles.items():
                f = ratios[1] if (t.role == "output" and k == "output") else scale
                vf = v * f
                if full:
                    off_acc[k] += vf
                off += vf
    uniq_b, recv_b, off_b = uniq * word, recv * word, off * word
    t_glb = t_tot = t_rd = t_wr = uniq_b / hw.glb.bandwidth_bps
    if split:  # the port's total, its reads, its writes: the slowest
        t_rd = rd * word / hw.glb.read_port_bps
        t_wr = wr * word / hw.glb.write_port_bps
        t_glb = np.maximum(np.maximum(t_tot, t_rd), t_wr)
    t_pe = recv_b / (active * hw.pe.bandwidth_bps)
    tc = prep["tc"]
    out = {"lat": np.maximum(np.maximum(tc, t_glb), t_pe),
           "en": uniq_b * hw.glb.energy_per_byte_j + recv_b * hw.pe.energy_per_byte_j
           + off_b * hw.offchip.energy_per_byte_j,
           "tc": tc, "t_glb": t_glb, "t_tot": t_tot, "t_rd": t_rd, "t_wr": t_wr, "t_pe": t_pe, "recv": recv_b,
           "cycles": prep["cycles"], "active": active,
           "off": off_b, "p": prep["p"], "T": T}
    if full:
        out["roles"] = {r: v * word for r, v in acc.items()}
        out["off_roles"] = {r: v * word for r, v in off_acc.items()}
    return out


def clear_search_cache() -> None:
    global _WIN_TABLE_ELEMENTS
    _PE_CACHE.clear()
    _TILE_PE.clear()
    _GRIDS.clear()
    _WIN_TABLES.clear()
    _WIN_TABLE_ELEMENTS = 0
    _glb_side_cached.cache_clear()
    _compulsory.cache_clear()
    _rs_rows.cache_clear()


# ---------------------------------------------------------------------------
# joint selection
def _pick(lat: np.ndarray, en: np.ndarray, primary: str, bound: float | None = None,
          tert: np.ndarray | None = None) -> int:
    """Index minimising (primary, secondary, tert, index); with `bound`, among lat <= bound
    minimise (energy, latency, tert, index).  `tert` (compute time) breaks ties toward
    the better-utilised array."""
    idx = np.arange(len(lat))
    tert = np.zeros(len(lat)) if tert is None else tert
    if primary == "latency" and bound is not None:
        ok = np.flatnonzero(lat <= bound * (1 + 1e-12))
        order = np.lexsort((ok, tert[ok], lat[ok], en[ok]))
        return int(ok[order[0]])
    if primary == "latency":
        return int(np.lexsort((idx, tert, en, lat))[0])
    return int(np.lexsort((idx, tert, lat, en))[0])


def _pareto(lat: np.ndarray, en: np.ndarray, tert: np.ndarray | None = None) -> np.ndarray:
    """Indices of the (latency, energy) Pareto front; among exact ties the smallest `tert`."""
    tert = np.zeros(len(lat)) if tert is None else tert
    order = np.lexsort((np.arange(len(lat)), tert, en, lat))
    e_sorted = en[order]
    best = np.minimum.accumulate(e_sorted)
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = e_sorted[1:] < best[:-1]
    return order[keep]


# ---------------------------------------------------------------------------
# row-stationary tiers: the PE schedule searched inside each GLB tile
def _sub_nest(nest: Nest, ext: tuple[int, ...]) -> Nest:
    """The loop nest of one GLB tile of extents `ext`.  A window whose output dim the tile does
    not cover whole becomes an interior window (no padding: the rows its outputs and all the
    taps touch), so a tile at an edge is priced as an interior one (a halo row at most over)."""
    D = dict(nest.dims)
    e = dict(zip(nest.names, ext))

    def win(w: Window) -> Window:
        if e[w.out] >= D[w.out]:
            return w
        return Window(w.out, w.k, w.stride, w.dil, 0, (e[w.out] - 1) * w.stride + (D[w.k] - 1) * w.dil + 1)

    tensors = tuple(replace(t, windows=tuple(win(w) for w in t.windows)) if t.windows else t for t in nest.tensors)
    return replace(nest, dims=tuple((n, int(v)) for n, v in zip(nest.names, ext)), tensors=tensors)


def _tile_classes(D: np.ndarray, t: np.ndarray) -> list[tuple[tuple[int, ...], int]]:
    """The GLB tile instances of tiles `t` over extents `D` by shape: (extents, how many); a dim
    whose tile does not divide it has floor(D/t) whole tiles and one partial one."""
    per = []
    for d, v in zip(D.tolist(), t.tolist()):
        v = min(v, d)
        opts = [(v, d // v)]
        if d % v:
            opts.append((d % v, 1))
        per.append(opts)
    out = []
    for combo in itertools.product(*per):
        out.append((tuple(x for x, _ in combo), math.prod(n for _, n in combo)))
    return out


_TILE_PE: dict = {}
_TILE_PE_MAX = 4096


def _pe_in_tile(nest: Nest, hw: Hardware, word: float, skip: float, ratios: tuple, t: tuple[int, ...],
                fix: tuple = ()):
    """The PE half run inside every instance of the GLB tile `t` (`hw`: a :func:`_pe_view`):
    candidates (spatial unrolling, per-PE tile, PE loop order) are those of a whole tile, each
    priced on every instance (partial tiles clip it) and summed.  Returns per-candidate arrays
    (compute, GLB-port and PE-link times, energy, bypass bytes, active PEs) and detail(j), or
    None if no per-PE tile fits."""
    key = (nest, hw, word, skip, ratios, t, fix)
    hit = _TILE_PE.get(key)
    if hit is not None:
        return hit
    full = _Ctx(_sub_nest(nest, t), word)
    sp, ptiles, orders, streaming = _pe_candidates(full, hw, fix)
    if streaming:
        hit = None
    else:
        classes = [(full if ext == t else _Ctx(_sub_nest(nest, ext), word), n)
                   for ext, n in _tile_classes(np.array(nest.sizes), np.array(t))]
        passes = nest.reduction_passes(t)
        preps = [(_pe_prep(c, hw, sp, ptiles, skip, passes), c, n) for c, n in classes]
        keys = ("tc", "t_glb", "t_pe", "en", "off") + (("t_tot", "t_rd", "t_wr") if hw.glb.split_port else ())
        acc = {k: [] for k in keys + ("active",)}
        for order in orders:
            sums = dict.fromkeys(keys, 0.0)
            for prep, c, n in preps:
                r = _pe_eval(c, hw, prep, order[0], False, ratios, full=False)
                for k in sums:
                    sums[k] = sums[k] + r[k] * n
                if c is full:
                    act = r["active"]
            for k in sums:
                acc[k].append(sums[k])
            acc["active"].append(act)
        arrays = {k: np.concatenate(v) for k, v in acc.items()}
        M = sp.shape[0] * ptiles.shape[0]
        Pn = ptiles.shape[0]
        names = nest.names

        def detail(j: int):
            oi, mi = divmod(j, M)
            order, st = orders[oi]
            si, pi = divmod(mi, Pn)
            roles = dict.fromkeys(_ROLES5, 0.0)
            off = dict.fromkeys(_ROLES5, 0.0)
            recv = cycles = 0.0
            lm = spatial = None
            for c, n in classes:
                r = _pe_eval(c, hw, _pe_prep(c, hw, sp[si:si + 1], ptiles[pi:pi + 1], skip, passes), order, False,
                             ratios)
                for k in _ROLES5:
                    roles[k] += float(r["roles"][k][0]) * n
                    off[k] += float(r["off_roles"][k][0]) * n
                recv += float(r["recv"][0]) * n
                cycles += float(r["cycles"][0]) * n
                if c is full:
                    lm = LevelMapping("pe", tuple((d, int(r["p"][0, k])) for k, d in enumerate(names)),
                                      tuple(names[i] for i in order if r["T"][0, i] > 1), st)
                    spatial = tuple((d, int(sp[si, k])) for k, d in enumerate(names) if sp[si, k] > 1)
            return lm, spatial, roles, off, recv, int(cycles)

        hit = (arrays, lru_cache(maxsize=None)(detail), int(arrays["tc"].size))
    if len(_TILE_PE) >= _TILE_PE_MAX:
        _TILE_PE.clear()
    _TILE_PE[key] = hit
    return hit


_RS_WHOLE = ("Q",)  # a row-stationary processing pass works on whole ofmap rows [E16, E17]


def _port_time(arr: dict, j, reload: float, glb: Level):
    """The GLB port's time over a tile's instances (`arr` summed over them, `j` the candidates)
    with `reload` bytes of partial sums read back on top: with reads and writes on buses of
    their own, the slowest of the total, the reads and the writes over the whole op."""
    if not glb.split_port:
        return arr["t_glb"][j] + reload / glb.bandwidth_bps
    return np.maximum(np.maximum(arr["t_tot"][j] + reload / glb.bandwidth_bps,
                                 arr["t_rd"][j] + reload / glb.read_port_bps),
                      arr["t_wr"][j])


def _joint_search(nest: Nest, hw: Hardware, word: float, objective: str, resident: dict[str, float],
                  e_const: float, ratios: tuple, skip: float,
                  fix: MappingConstraints = MappingConstraints()) -> SearchResult | None:
    """The mapping of a row-stationary tier: the PE schedule runs inside each GLB tile, so
    the data the PE-level loops revisit is the tile the GLB holds (it fits by construction),
    partial sums leave the PEs at least once per GLB tile (one more GLB read for every
    further tile over the output's reduction dims), and what the GLB cannot keep between
    tiles crosses off-chip under the GLB loop order (the reuse rule).  GLB and PE traffic
    are the sums over the GLB tile instances; off-chip bytes that a GLB tile refetches are
    already re-read by the PEs in that instance, so nothing is re-streamed on top.  Searched
    exactly over every (GLB tile, GLB loop order, PE candidate) triple.  None: no tile fits
    a level (the split search's streaming model then applies)."""
    ctx = _Ctx(nest, word)
    _, _, gdetail, gstream, Ab, (tiles, gorders) = _glb_side(ctx, _glb_view(hw), resident, ratios, _RS_WHOLE,
                                                             fix.glb_tile)
    if gstream:
        return None
    gdetail = lru_cache(maxsize=None)(gdetail)
    pview = _pe_view(hw, hw.pes)
    D = ctx.D
    M, n_o = tiles.shape[0], len(gorders)
    obw, gbw = hw.offchip.bandwidth_bps, hw.glb.bandwidth_bps
    e_off, e_glb, e_pe = hw.offchip.energy_per_byte_j, hw.glb.energy_per_byte_j, hw.pe.energy_per_byte_j
    out_t = nest.output
    out_held = _held(out_t, hw.glb)
    best, best_key, total = None, None, 0
    for ti in range(M):
        t = tuple(int(v) for v in np.minimum(tiles[ti], D))
        res = _pe_in_tile(nest, pview, word, skip, ratios, t, fix.spatial)
        if res is None:
            return None
        arr, _, n_c = res
        total += n_c * n_o
        # partial sums of an output tile revisited by further GLB tiles over its reduction
        # dims are read back into the PEs once per further visit
        t_irr = nest.reduction_passes(t)
        full_k = tiles[ti:ti + 1].copy()
        for win in out_t.windows:
            full_k[:, ctx.idx[win.k]] = D[ctx.idx[win.k]]
        reload = float(_footprint(ctx, out_t, full_k, 0)[0]) * (t_irr - 1) * word
        active = arr["active"]
        t_glb = _port_time(arr, slice(None), reload if out_held else 0.0, hw.glb)
        t_pe = arr["t_pe"] + reload / (active * hw.pe.bandwidth_bps)
        off_pe = arr["off"] + (0.0 if out_held else reload)
        en = arr["en"] + reload * (e_pe + (e_glb if out_held else e_off))
        A = Ab[np.arange(n_o) * M + ti]
        L = np.maximum.reduce([np.broadcast_to(arr["tc"][None, :], (n_o, n_c)), np.broadcast_to(t_glb[None, :], (n_o, n_c)),
                               np.broadcast_to((A / gbw)[:, None], (n_o, n_c)), np.broadcast_to(t_pe[None, :], (n_o, n_c)),
                               (A[:, None] + off_pe[None, :]) / obw])
        E = en[None, :] + (A * (e_off + e_glb))[:, None] + e_const + hw.static_power_w * L
        TC = np.broadcast_to(arr["tc"][None, :], (n_o, n_c))
        if objective == "latency":
            keys = (L, E, TC)
        elif objective == "energy":
            keys = (E, L, TC)
        else:
            keys = (E * L, L, E, TC)
        flat = [k.ravel() for k in keys]
        k = int(np.lexsort(tuple(reversed(flat)))[0])
        key = tuple(float(f[k]) for f in flat)
        if best_key is None or key < best_key:
            best_key, best = key, (ti, k // n_c, k % n_c, reload)
    ti, oi, j, reload = best
    arr, pdetail, _ = _TILE_PE[(nest, pview, word, skip, ratios, tuple(int(v) for v in np.minimum(tiles[ti], D)),
                                fix.spatial)]
    glb_map, off_glb_roles, _ = gdetail(oi * M + ti)
    pe_map, spatial, onchip, off_pe, fill, cycles = pdetail(j)
    onchip = dict(onchip)
    off_pe = dict(off_pe)
    if out_held:
        onchip["psum_read"] += reload
    else:
        off_pe["psum_read"] += reload
    fill += reload
    offchip = {r: off_glb_roles[r] + off_pe.get(r, 0.0) for r in off_glb_roles}
    off_total = sum(offchip.values())
    off_glb = sum(off_glb_roles.values())
    active = int(arr["active"][j])
    tg = max(float(_port_time(arr, j, reload if out_held else 0.0, hw.glb)), off_glb / gbw)
    tp = float(arr["t_pe"][j]) + reload / (active * hw.pe.bandwidth_bps)
    mapping = Mapping(glb_map, pe_map, spatial, total)
    return SearchResult(
        mapping=mapping, offchip=offchip, onchip=onchip, pe_fill_bytes=fill, compute_cycles=cycles,
        active_pes=active, t_compute=float(arr["tc"][j]), t_offchip=off_total / obw, t_global=tg, t_pe=tp,
        e_offchip=off_total * e_off, e_global=(off_glb + sum(onchip.values())) * e_glb, e_pe=fill * e_pe,
        bypass_bytes=sum(off_pe.values()))


def search(nest: Nest, hw: Hardware, word_bytes: float, objective: str = "latency",
           resident: dict[str, float] | None = None, e_const: float = 0.0,
           sparsity: tuple[float, float] = (0.0, 0.0),
           constraints: MappingConstraints | None = None) -> SearchResult:
    """The best mapping of `nest` on `hw` for `objective` (``latency`` | ``energy`` | ``edp``).

    `resident` maps tensor names to the fraction of that tensor already held in the
    GLB (fusion): its off-chip traffic is dropped and the resident part occupies GLB
    capacity.  `e_const` is the mapping-independent energy (MACs, operand accesses),
    used only where the halves interact (EDP; energy on a tier with static power, which is
    drawn over the latency and so part of the energy minimised).  `sparsity` = (zero fraction of the input activation, of the
    output): with the tier's ``zero_skipping`` the input's zeros skip cycles, with its
    ``compression`` both activations cross off-chip run-length coded.  `constraints` fixes
    parts of the mapping (:class:`MappingConstraints`); the rest is searched as usual, and a
    :class:`ConstraintError` says when nothing satisfies them."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    fix = constraints or MappingConstraints()
    fix.check(nest)
    resident = resident or {}
    z_in, z_out = float(sparsity[0]), float(sparsity[1])
    ratios = (hw.compression_ratio(z_in), hw.compression_ratio(z_out))
    skip = z_in if (hw.zero_skipping and nest.kind == "conv") else 0.0
    if _dataflow(nest, hw) == "row_stationary":
        r = _joint_search(nest, hw, float(word_bytes), objective, resident, e_const, ratios, skip, fix)
        if r is not None:
            return r
    la, ea, da, _, ta, Ba, pe_half, bypass = _pe_side_for(nest, hw, float(word_bytes), skip, ratios, fix.spatial)
    if pe_half.size == 0:  # only constraints can empty a half (enumerated for more PEs, masked to hw's)
        raise _no_unrolling(fix.spatial, f" on {hw.pes} PEs")
    side = _glb_side_cached(nest, _glb_view(hw), float(word_bytes), tuple(sorted(resident.items())), ratios,
                            fix.glb_tile)
    lp, eb, db, _, Ab, _ = side
    bw = hw.offchip.bandwidth_bps
    glb_half = _glb_half(side, bw)
    lb = glb_half.lat
    if not bypass:  # the two halves are independent
        if objective == "latency":
            target = max(pe_half.min_lat, glb_half.min_lat)
            ia, ib = pe_half.pick(target), glb_half.pick(target)
        elif objective == "energy" and not hw.static_power_w:
            ia, ib = pe_half.pick(), glb_half.pick()
        else:  # EDP, or energy with a static power (drawn over the latency: the halves interact)
            if pe_half.keep is not None:  # materialise the masked candidates for the EDP product
                idx = np.flatnonzero(pe_half.keep)
                la, ea, ta, da = pe_half.lat[idx], pe_half.en[idx], pe_half.tert[idx], _Remap(pe_half.detail, idx)
            fa, fb = _pareto(la, ea, ta), _pareto(lb, eb)
            L = np.maximum(la[fa][:, None], lb[fb][None, :])
            E = ea[fa][:, None] + eb[fb][None, :] + e_const + hw.static_power_w * L
            T = np.broadcast_to(ta[fa][:, None], L.shape)
            if objective == "energy":
                k = np.lexsort((np.arange(E.size), T.ravel(), L.ravel(), E.ravel()))[0]
            else:
                edp = (E * L).ravel()
                k = np.lexsort((np.arange(edp.size), T.ravel(), E.ravel(), L.ravel(), edp))[0]
            ia, ib = int(fa[k // len(fb)]), int(fb[k % len(fb)])
    else:  # operands bypass the GLB: both halves share the off-chip link
        fa = np.unique(np.concatenate([_pareto(la, Ba, ta), _pareto(la, ea, ta), _pareto(Ba, ea, ta)]))
        fb = np.unique(np.concatenate([_pareto(lp, Ab), _pareto(lp, eb), _pareto(Ab, eb)]))
        L = np.maximum(np.maximum(la[fa][:, None], lp[fb][None, :]), (Ba[fa][:, None] + Ab[fb][None, :]) / bw)
        E = ea[fa][:, None] + eb[fb][None, :] + e_const + hw.static_power_w * L
        T = np.broadcast_to(ta[fa][:, None], L.shape).ravel()
        tie = np.arange(L.size)
        if objective == "latency":
            k = np.lexsort((tie, T, E.ravel(), L.ravel()))[0]
        elif objective == "energy":
            k = np.lexsort((tie, T, L.ravel(), E.ravel()))[0]
        else:
            k = np.lexsort((tie, T, E.ravel(), L.ravel(), (E * L).ravel()))[0]
        ia, ib = int(fa[k // len(fb)]), int(fb[k % len(fb)])
    pe_map, spatial, onchip, fill, cycles, active, tc, tg, tp, off_pe = da(ia)
    glb_map, offchip, extra = db(ib)
    offchip = {r: offchip[r] + off_pe.get(r, 0.0) for r in offchip}
    off_total = sum(offchip.values())
    off_glb = off_total - sum(off_pe.values())
    restream = sum(extra.values())
    onchip = {r: onchip[r] + extra.get(r, 0.0) for r in onchip}
    fill += restream
    tg = max(tg, (off_glb + restream) / hw.glb.bandwidth_bps)
    mapping = Mapping(glb_map, pe_map, spatial, int(pe_half.size + lb.size))
    return SearchResult(
        mapping=mapping, offchip=offchip, onchip=onchip, pe_fill_bytes=fill, compute_cycles=cycles,
        active_pes=active, t_compute=tc, t_offchip=off_total / bw, t_global=tg, t_pe=tp,
        e_offchip=off_total * hw.offchip.energy_per_byte_j,
        e_global=(off_glb + sum(onchip.values())) * hw.glb.energy_per_byte_j,
        e_pe=fill * hw.pe.energy_per_byte_j, bypass_bytes=sum(off_pe.values()),
    )
