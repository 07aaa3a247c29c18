"""NSGA-II (Deb, Pratap, Agarwal & Meyarivan, 2002) over discrete gene spaces.

Genomes are tuples of domain indices (see :mod:`evo.evolve.genes`), so every
operator respects the domains by construction.

Algorithm, as implemented here:

* **Budget.** ``generations`` counts every generation including the first
  (random) one: generation 1 evaluates ``population`` distinct random genomes
  (after any ``initial`` ones), each later generation evaluates up to
  ``population`` new offspring. So at most ``population * generations`` distinct
  genomes are evaluated, and when that is >= ``space.size`` the whole space is
  enumerated (the search stops early once it is, with ``exhausted=True``).
* **Ranking.** Fast non-dominated sorting under Deb's *constraint-domination*:
  a feasible point beats an infeasible one; of two infeasible points the smaller
  total violation wins; two feasible points compare by Pareto dominance.
  Crowding distance is computed per front (boundary points get infinity; points
  whose objectives are not all finite, e.g. ones that raised ``Infeasible``,
  get 0).
* **Selection.** Binary tournament on (rank, crowding); elitist (mu + lambda)
  replacement: parents and offspring are ranked together and the best
  ``population`` kept, the last front truncated by crowding.
* **Crossover.** Uniform crossover on indices with probability 0.9 (each gene
  swapped between the two children with probability 1/2). Chosen over SBX:
  domains are small and discrete, and many are unordered ``Choice`` lists where
  arithmetic on indices means nothing; ordered locality comes from mutation.
* **Mutation.** Each gene mutates with probability ``1/len(genes)``. For an
  ordered domain, half the mutations are a small step (+-1, +-2 ... with a
  geometric tail, reflected at the ends), the rest a uniform reset to a
  *different* index; unordered domains always reset.
* **No re-evaluation.** Results are cached by genome; a child equal to an
  evaluated genome (or to a sibling) is mutated again (up to ``max_retries``
  times), then replaced by a random genome, and, for spaces up to 2**20 points,
  by a random *unvisited* genome. Each distinct genome is evaluated once.
* **Archive.** Every evaluated point is kept; the reported front is the exact
  non-dominated set of all feasible evaluated points, not just of the last
  population.
* **Determinism.** All randomness comes from one ``random.Random(seed)``; no
  global state, no dependence on set or hash order. ``evaluate`` is called in
  a deterministic order.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .front import (
    format_table,
    front_dict,
    front_json,
    normalize_objectives,
    pareto_mask,
    plot_front,
)
from .genes import Gene, Space

__all__ = [
    "Infeasible",
    "Point",
    "SearchResult",
    "constrained_dominates",
    "constraint_violation",
    "crowding_distance",
    "exhaustive",
    "fast_non_dominated_sort",
    "mutate",
    "normalize_constraints",
    "search",
    "tournament",
    "uniform_crossover",
]

CONSTRAINT_OPS = ("<=", "<", ">=", ">", "==")
ENUMERATE_LIMIT = 1 << 20  # spaces up to this size can be searched for unvisited genomes


class Infeasible(Exception):
    """Raised by ``evaluate`` for a candidate that cannot be built (infinite violation)."""

    def __init__(self, reason: str = "infeasible"):
        super().__init__(reason)
        self.reason = str(reason)


@dataclass(frozen=True)
class Point:
    """One evaluated candidate.

    ``values``: ``{gene name: value}`` in gene order; ``metrics``: what ``evaluate``
    returned (empty when it raised ``Infeasible``); ``genome``: the index tuple;
    ``violation``: total normalised constraint violation (0 when feasible,
    ``inf`` when ``Infeasible`` was raised or a needed metric was NaN);
    ``reason``: why it is infeasible (``None`` when feasible).
    """

    values: dict
    metrics: dict
    genome: tuple
    violation: float = 0.0
    reason: str | None = None

    @property
    def feasible(self) -> bool:
        return self.violation == 0.0


@dataclass
class SearchResult:
    """What :func:`search` returns.

    ``front``: the non-dominated feasible points of everything evaluated, sorted by
    the objectives (each best-first, in declaration order) then by genome.
    ``evaluated``: every distinct evaluated point, in evaluation order.
    ``evaluations``: ``len(evaluated)`` (calls to ``evaluate``). ``cache_hits``:
    offspring proposals that were already-evaluated genomes (re-proposed
    instead of re-evaluated). ``generations``: generations run
    (< the requested number when the space was exhausted early). ``exhausted``:
    every genome of the space was evaluated, so ``front`` is the exact Pareto set.
    ``wall_time``: seconds.
    """

    front: list[Point]
    evaluated: list[Point]
    evaluations: int
    generations: int
    wall_time: float
    objectives: list[tuple[str, str]]
    constraints: list[tuple[str, str, float]]
    space: Space
    seed: int
    exhausted: bool = False
    cache_hits: int = 0
    requested_generations: int = 0
    population: int = 0

    @property
    def feasible_count(self) -> int:
        return sum(1 for p in self.evaluated if p.feasible)

    def best_infeasible(self) -> Point | None:
        """The evaluated point with the least violation when nothing was feasible (for diagnostics)."""
        bad = [p for p in self.evaluated if not p.feasible]
        if not bad:
            return None
        return min(bad, key=lambda p: (p.violation, p.genome))

    def table(self, metrics: Sequence[str] | None = None) -> str:
        return format_table(self.front, self.objectives, genes=list(self.space.names), metrics=metrics)

    def meta(self) -> dict[str, Any]:
        """Deterministic summary (no wall time)."""
        return {
            "genes": list(self.space.names),
            "constraints": [{"metric": n, "op": op, "bound": b} for n, op, b in self.constraints],
            "space_size": self.space.size,
            "population": self.population,
            "generations": self.generations,
            "evaluations": self.evaluations,
            "feasible": self.feasible_count,
            "exhausted": self.exhausted,
            "seed": self.seed,
        }

    def to_dict(self) -> dict[str, Any]:
        return front_dict(self.front, self.objectives, meta=self.meta())

    def to_json(self, indent: int | None = 2) -> str:
        return front_json(self.front, self.objectives, meta=self.meta(), indent=indent)

    def plot(self, path: Any = None, **kw: Any) -> Any:
        return plot_front(self.front, self.evaluated, self.objectives, path, **kw)


# ---------------------------------------------------------------------------
# constraints


def normalize_constraints(constraints: Iterable[Any] | None) -> list[tuple[str, str, float]]:
    out = []
    for c in constraints or ():
        name, op, bound = c
        if op == "=":
            op = "=="
        if op not in CONSTRAINT_OPS:
            raise ValueError(f"constraint on {name!r}: operator must be one of {', '.join(CONSTRAINT_OPS)}")
        b = float(bound)
        if math.isnan(b):
            raise ValueError(f"constraint on {name!r}: bound is NaN")
        out.append((str(name), op, b))
    return out


def _satisfied(v: float, op: str, b: float) -> bool:
    if op == "<=":
        return v <= b
    if op == "<":
        return v < b
    if op == ">=":
        return v >= b
    if op == ">":
        return v > b
    return math.isclose(v, b, rel_tol=1e-9, abs_tol=1e-12)


def constraint_violation(
    metrics: Mapping[str, Any], constraints: Sequence[tuple[str, str, float]]
) -> tuple[float, list[str]]:
    """Total violation and the violated constraints (as text).

    Each violated constraint contributes ``|value - bound| / |bound|`` (``/ 1``
    when the bound is 0), at least ``1e-12`` (a strict bound hit exactly); a NaN
    metric contributes ``inf``. ``==`` holds within ``math.isclose(rel_tol=1e-9,
    abs_tol=1e-12)``; the other operators are exact. A missing metric is a
    ``KeyError``.
    """
    total = 0.0
    failed: list[str] = []
    for name, op, b in constraints:
        if name not in metrics:
            raise KeyError(f"evaluate() returned no metric {name!r} needed by a constraint")
        v = float(metrics[name])
        if math.isnan(v):
            amount = math.inf
        elif _satisfied(v, op, b):
            continue
        else:
            scale = abs(b) if b != 0 and math.isfinite(b) else 1.0
            amount = abs(v - b) / scale
            if not amount > 1e-12:
                amount = 1e-12 if math.isfinite(amount) else math.inf
        total += amount
        failed.append(f"{name} {op} {b:g} (got {v:g})")
    return total, failed


# ---------------------------------------------------------------------------
# ranking


def constrained_dominates(a: Sequence[float], va: float, b: Sequence[float], vb: float) -> bool:
    """Deb's constraint-domination of (objectives ``a``, violation ``va``) over (``b``, ``vb``)."""
    fa, fb = va <= 0, vb <= 0
    if fa and not fb:
        return True
    if not fa and not fb:
        return va < vb
    if not fa and fb:
        return False
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    return bool(np.all(a <= b) and np.any(a < b))


def _domination_matrix(F: np.ndarray, viol: np.ndarray) -> np.ndarray:
    feas = viol <= 0
    with np.errstate(invalid="ignore"):
        le = np.all(F[:, None, :] <= F[None, :, :], axis=2)
        lt = np.any(F[:, None, :] < F[None, :, :], axis=2)
    pareto = le & lt
    fi, fj = feas[:, None], feas[None, :]
    return (fi & ~fj) | (~fi & ~fj & (viol[:, None] < viol[None, :])) | (fi & fj & pareto)


def fast_non_dominated_sort(F: Any, violations: Any = None) -> list[list[int]]:
    """Fronts (lists of row indices, ascending) of minimisation matrix ``F`` under constraint-domination.

    ``violations`` (default all zero) is the total violation per row; 0 means feasible.
    """
    F = np.asarray(F, dtype=float)
    n = F.shape[0]
    if n == 0:
        return []
    F = F.reshape(n, -1)
    viol = np.zeros(n) if violations is None else np.asarray(violations, dtype=float).reshape(n)
    D = _domination_matrix(F, viol)
    count = D.sum(axis=0).astype(np.int64)  # how many dominate each row
    done = np.zeros(n, dtype=bool)
    fronts: list[list[int]] = []
    current = np.flatnonzero(count == 0)
    while current.size:
        fronts.append(current.tolist())
        done[current] = True
        count -= D[current].sum(axis=0)
        current = np.flatnonzero((count == 0) & ~done)
    return fronts


def crowding_distance(F: Any) -> np.ndarray:
    """Crowding distance of each row of one front (minimisation matrix ``F``).

    Per objective, rows are sorted (stably) and the two extremes get ``inf``;
    interior rows add ``(next - previous) / (max - min)``. Fronts of <= 2 rows
    are all ``inf``. Rows with non-finite objectives get 0 and are ignored.
    """
    F = np.asarray(F, dtype=float)
    n = F.shape[0]
    d = np.zeros(n)
    if n == 0:
        return d
    F = F.reshape(n, -1)
    idx = np.flatnonzero(np.isfinite(F).all(axis=1))
    if idx.size <= 2:
        d[idx] = math.inf
        return d
    G = F[idx]
    dd = np.zeros(idx.size)
    for m in range(G.shape[1]):
        order = np.argsort(G[:, m], kind="stable")
        vals = G[order, m]
        lo, hi = vals[0], vals[-1]
        dd[order[0]] = math.inf
        dd[order[-1]] = math.inf
        if hi > lo:
            dd[order[1:-1]] += (vals[2:] - vals[:-2]) / (hi - lo)
    d[idx] = dd
    return d


def _rank_and_crowd(F: np.ndarray, viol: np.ndarray) -> tuple[list[list[int]], np.ndarray, np.ndarray]:
    fronts = fast_non_dominated_sort(F, viol)
    rank = np.zeros(F.shape[0], dtype=np.int64)
    crowd = np.zeros(F.shape[0])
    for r, fr in enumerate(fronts):
        rank[fr] = r
        crowd[fr] = crowding_distance(F[fr])
    return fronts, rank, crowd


# ---------------------------------------------------------------------------
# variation


def tournament(rng: random.Random, rank: Sequence[int], crowd: Sequence[float]) -> int:
    """Binary tournament: lower rank wins, then larger crowding, then the first drawn."""
    n = len(rank)
    i = rng.randrange(n)
    if n == 1:
        return i
    j = rng.randrange(n - 1)
    if j >= i:
        j += 1
    if rank[j] < rank[i] or (rank[j] == rank[i] and crowd[j] > crowd[i]):
        return j
    return i


def uniform_crossover(rng: random.Random, a: tuple, b: tuple, rate: float = 0.9) -> tuple[tuple, tuple]:
    """With probability ``rate``, swap each gene between the two children with probability 1/2."""
    if rng.random() >= rate:
        return a, b
    c1, c2 = list(a), list(b)
    for k in range(len(a)):
        if rng.random() < 0.5:
            c1[k], c2[k] = c2[k], c1[k]
    return tuple(c1), tuple(c2)


def _mutate_index(rng: random.Random, i: int, size: int, ordered: bool) -> int:
    if ordered and size > 2 and rng.random() < 0.5:
        k = 1
        while k < size - 1 and rng.random() < 0.5:
            k += 1
        sgn = 1 if rng.random() < 0.5 else -1
        j = i + sgn * k
        if not 0 <= j < size:
            j = i - sgn * k
        if not 0 <= j < size:
            j = min(max(i + sgn * k, 0), size - 1)
        if j != i:
            return j
    r = rng.randrange(size - 1)
    return r if r < i else r + 1


def mutate(
    rng: random.Random, genome: tuple, space: Space, rate: float | None = None, force: bool = False
) -> tuple:
    """Per-gene mutation with probability ``rate`` (default ``1/len(genes)``).

    A mutated gene always changes value (domains of size 1 never mutate). With
    ``force``, at least one gene changes when any gene can.
    """
    sizes = space.sizes
    if rate is None:
        rate = 1.0 / len(sizes)
    ordered = space.ordered
    g = list(genome)
    changed = False
    for k, n in enumerate(sizes):
        if n > 1 and rng.random() < rate:
            g[k] = _mutate_index(rng, g[k], n, ordered[k])
            changed = True
    if force and not changed:
        mutable = [k for k, n in enumerate(sizes) if n > 1]
        if mutable:
            k = mutable[rng.randrange(len(mutable))]
            g[k] = _mutate_index(rng, g[k], sizes[k], ordered[k])
    return tuple(g)


# ---------------------------------------------------------------------------
# the engine


class _Engine:
    def __init__(self, space: Space, evaluate: Callable, objectives, constraints, seed: int,
                 evaluate_many: Callable | None = None):
        self.space = space
        self.evaluate = evaluate
        self.evaluate_many = evaluate_many
        self.prefetched: dict[tuple, Any] = {}  # genome -> metrics dict or Infeasible (from evaluate_many)
        self.objectives = objectives
        self.constraints = constraints
        self.rng = random.Random(seed)
        self.cache: dict[tuple, Point] = {}
        self.vec: dict[tuple, tuple[float, ...]] = {}
        self.visited: set[int] = set()  # flat indices evaluated or about to be (membership only)
        self.evaluated: list[Point] = []
        self.cache_hits = 0
        self._unvisited: list[int] | None = None
        # incremental archive front (for progress only; the result is recomputed exactly)
        self._arch = np.empty((0, len(objectives)))

    # -- evaluation --------------------------------------------------------
    def point(self, genome: tuple) -> Point:
        p = self.cache.get(genome)
        if p is not None:
            self.cache_hits += 1
            return p
        values = self.space.values(genome)
        try:
            if genome in self.prefetched:
                metrics = self.prefetched.pop(genome)
                if isinstance(metrics, Infeasible):
                    raise Infeasible(metrics.reason)
            else:
                metrics = self.evaluate(dict(values))
        except Infeasible as e:
            p = Point(values, {}, genome, math.inf, e.reason)
            vec = tuple(math.nan for _ in self.objectives)
        else:
            if not isinstance(metrics, Mapping):
                raise TypeError(f"evaluate() must return a dict of metrics, got {type(metrics).__name__}")
            metrics = dict(metrics)
            vec_l = []
            bad = None
            for name, sense in self.objectives:
                if name not in metrics:
                    raise KeyError(f"evaluate() returned no metric {name!r} needed by an objective")
                v = float(metrics[name])
                if math.isnan(v):
                    bad = f"objective {name} is NaN"
                vec_l.append(-v if sense == "max" else v)
            viol, failed = constraint_violation(metrics, self.constraints)
            if bad is not None:
                p = Point(values, metrics, genome, math.inf, bad)
            elif viol > 0:
                p = Point(values, metrics, genome, viol, "violates " + ", ".join(failed))
            else:
                p = Point(values, metrics, genome, 0.0, None)
            vec = tuple(vec_l)
        self.cache[genome] = p
        self.vec[genome] = vec
        self.visited.add(self.space.flat_index(genome))
        self.evaluated.append(p)
        if p.feasible:
            self._archive_add(np.asarray(vec, dtype=float))
        return p

    def prefetch(self, genomes: list[tuple]) -> None:
        """Evaluate the unseen genomes of one generation at once with ``evaluate_many``
        (in parallel); ``point`` then takes their results in the usual order."""
        if self.evaluate_many is None:
            return
        todo = [g for g in dict.fromkeys(genomes) if g not in self.cache and g not in self.prefetched]
        if not todo:
            return
        outcomes = list(self.evaluate_many([dict(self.space.values(g)) for g in todo]))
        if len(outcomes) != len(todo):
            raise RuntimeError(f"evaluate_many returned {len(outcomes)} results for {len(todo)} candidates")
        self.prefetched.update(zip(todo, outcomes))

    def _archive_add(self, v: np.ndarray) -> None:
        A = self._arch
        if A.shape[0]:
            if np.any(np.all(A <= v, axis=1) & np.any(A < v, axis=1)):
                return
            keep = ~(np.all(v <= A, axis=1) & np.any(v < A, axis=1))
            A = A[keep]
        self._arch = np.vstack([A, v[None, :]])

    @property
    def front_size(self) -> int:
        return int(self._arch.shape[0])

    # -- proposals ----------------------------------------------------------
    def is_new(self, genome: tuple) -> bool:
        return self.space.flat_index(genome) not in self.visited

    def claim(self, genome: tuple) -> None:
        self.visited.add(self.space.flat_index(genome))

    def fresh_random(self, tries: int) -> tuple | None:
        space = self.space
        for _ in range(tries):
            g = space.sample(self.rng)
            if self.is_new(g):
                return g
        if space.size > ENUMERATE_LIMIT:
            return None
        if self._unvisited is None:
            self._unvisited = [k for k in range(space.size) if k not in self.visited]
        u = self._unvisited
        while u:
            j = self.rng.randrange(len(u))
            k = u[j]
            u[j] = u[-1]
            u.pop()
            if k not in self.visited:
                return space.genome_at(k)
        return None

    def dedupe(self, child: tuple, max_retries: int) -> tuple | None:
        """``child`` if unseen, else a re-mutated / random / unvisited genome (None: nothing left)."""
        if self.is_new(child):
            return child
        self.cache_hits += 1  # the proposal was already known: not evaluated again
        for _ in range(max_retries):
            child = mutate(self.rng, child, self.space, force=True)
            if self.is_new(child):
                return child
        return self.fresh_random(max_retries)

    @property
    def exhausted(self) -> bool:
        return len(self.cache) >= self.space.size


def _as_genome(space: Space, g: Any) -> tuple:
    if isinstance(g, Mapping):
        return space.genome_of(g)
    return space.check(g)


def search(
    space: Space | Sequence[Gene],
    evaluate: Callable[[dict[str, Any]], Mapping[str, float]],
    objectives: Sequence[tuple[str, str]],
    constraints: Sequence[tuple[str, str, float]] = (),
    population: int = 32,
    generations: int = 20,
    seed: int = 0,
    progress: Callable[[int, int, int, int], Any] | None = None,
    *,
    initial: Iterable[Any] = (),
    crossover_rate: float = 0.9,
    max_retries: int = 32,
    evaluate_many: Callable[[list[dict[str, Any]]], Sequence[Any]] | None = None,
) -> SearchResult:
    """Search ``space`` with NSGA-II; see the module docstring for the algorithm.

    ``evaluate(values)`` gets ``{gene name: value}`` and returns ``{metric: number}``
    (it must contain every objective and constraint metric; extra metrics are kept
    in the points). It may raise :class:`Infeasible`; any other exception
    propagates. ``objectives``: ``[(metric, "min"|"max"), ...]``. ``constraints``:
    ``[(metric, op, bound), ...]`` with ``op`` in ``<= < >= > ==`` and a numeric
    bound in the metric's unit. ``initial``: genomes or value dicts evaluated
    first, as part of generation 1 (e.g. the program's own configuration; if
    there are more than ``population`` of them, all are evaluated and the best
    ``population`` survive). ``progress(generation,
    generations, evaluations, front_size)`` is called after each generation.
    ``evaluate_many(list of values) -> list`` (optional) evaluates a whole generation
    at once, e.g. in parallel processes: each result is the metrics dict or an
    :class:`Infeasible` instance, in order. The search is the same as with
    ``evaluate`` alone (same points, same order, same front).
    """
    t0 = time.perf_counter()
    if not isinstance(space, Space):
        space = Space(space)
    objs = normalize_objectives(objectives)
    cons = normalize_constraints(constraints)
    if isinstance(population, bool) or not isinstance(population, int) or population < 1:
        raise ValueError(f"population must be a positive integer, got {population!r}")
    if isinstance(generations, bool) or not isinstance(generations, int) or generations < 1:
        raise ValueError(f"generations must be a positive integer, got {generations!r}")
    if not 0.0 <= crossover_rate <= 1.0:
        raise ValueError("crossover_rate must be in [0, 1]")
    eng = _Engine(space, evaluate, objs, cons, seed, evaluate_many)
    rng = eng.rng

    # generation 1: initial genomes, then distinct random ones
    pop: list[tuple] = []
    for g in initial:
        g = _as_genome(space, g)
        if eng.is_new(g):
            eng.claim(g)
            pop.append(g)
    for g in space.sample_distinct(rng, population):
        if len(pop) >= population:
            break
        if eng.is_new(g):
            eng.claim(g)
            pop.append(g)
    while len(pop) < population and len(pop) < space.size:
        g = eng.fresh_random(max_retries)
        if g is None:
            break
        eng.claim(g)
        pop.append(g)
    # claims are provisional: evaluate in order (point() re-adds to visited)
    eng.prefetch(pop)
    for g in pop:
        eng.point(g)
    gen = 1
    if progress is not None:
        progress(gen, generations, len(eng.evaluated), eng.front_size)

    def arrays(genomes: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
        F = np.array([eng.vec[g] for g in genomes], dtype=float).reshape(len(genomes), len(objs))
        V = np.array([eng.cache[g].violation for g in genomes], dtype=float)
        return F, V

    F, V = arrays(pop)
    _, rank, crowd = _rank_and_crowd(F, V)

    while gen < generations and not eng.exhausted:
        gen += 1
        children: list[tuple] = []
        stuck = False
        while len(children) < population and not stuck:
            a = pop[tournament(rng, rank, crowd)]
            b = pop[tournament(rng, rank, crowd)]
            c1, c2 = uniform_crossover(rng, a, b, crossover_rate)
            for c in (c1, c2):
                if len(children) >= population:
                    break
                c = eng.dedupe(mutate(rng, c, space), max_retries)
                if c is None:
                    stuck = True  # nothing new can be found
                    break
                eng.claim(c)
                children.append(c)
        if not children:  # nothing new can be proposed: stop without counting this generation
            gen -= 1
            break
        eng.prefetch(children)
        for c in children:
            eng.point(c)
        # elitist replacement over parents + offspring
        union = pop + children
        F, V = arrays(union)
        fronts, r_all, c_all = _rank_and_crowd(F, V)
        chosen: list[int] = []
        for fr in fronts:
            if len(chosen) + len(fr) <= population:
                chosen.extend(fr)
            else:
                rest = sorted(fr, key=lambda i: (-c_all[i], i))
                chosen.extend(rest[: population - len(chosen)])
            if len(chosen) >= population:
                break
        pop = [union[i] for i in chosen]
        rank = r_all[chosen]
        crowd = c_all[chosen]
        if progress is not None:
            progress(gen, generations, len(eng.evaluated), eng.front_size)

    front = _final_front(eng.evaluated, eng.vec)
    return SearchResult(
        front=front,
        evaluated=list(eng.evaluated),
        evaluations=len(eng.evaluated),
        generations=gen,
        wall_time=time.perf_counter() - t0,
        objectives=objs,
        constraints=cons,
        space=space,
        seed=seed,
        exhausted=eng.exhausted,
        cache_hits=eng.cache_hits,
        requested_generations=generations,
        population=population,
    )


def _final_front(evaluated: list[Point], vec: Mapping[tuple, tuple]) -> list[Point]:
    feas = [p for p in evaluated if p.feasible]
    if not feas:
        return []
    F = np.array([vec[p.genome] for p in feas], dtype=float).reshape(len(feas), -1)
    mask = pareto_mask(F)
    front = [p for p, keep in zip(feas, mask) if keep]
    front.sort(key=lambda p: (tuple(vec[p.genome]), p.genome))
    return front


def exhaustive(
    space: Space | Sequence[Gene],
    evaluate: Callable[[dict[str, Any]], Mapping[str, float]],
    objectives: Sequence[tuple[str, str]],
    constraints: Sequence[tuple[str, str, float]] = (),
    progress: Callable[[int, int, int, int], Any] | None = None,
) -> SearchResult:
    """Evaluate every genome of ``space`` (in ``iter_all`` order); the front is exact.

    ``progress`` (same signature as for :func:`search`) is called about 100 times,
    with ``generation``/``generations`` counting evaluations in hundredths.
    """
    t0 = time.perf_counter()
    if not isinstance(space, Space):
        space = Space(space)
    objs = normalize_objectives(objectives)
    cons = normalize_constraints(constraints)
    eng = _Engine(space, evaluate, objs, cons, 0)
    n = space.size
    step = max(1, n // 100)
    for k, g in enumerate(space.iter_all(), 1):
        eng.point(g)
        if progress is not None and (k % step == 0 or k == n):
            progress(min(100, k * 100 // n), 100, k, eng.front_size)
    return SearchResult(
        front=_final_front(eng.evaluated, eng.vec),
        evaluated=list(eng.evaluated),
        evaluations=len(eng.evaluated),
        generations=1,
        wall_time=time.perf_counter() - t0,
        objectives=objs,
        constraints=cons,
        space=space,
        seed=0,
        exhausted=True,
        cache_hits=0,
        requested_generations=1,
        population=n,
    )
