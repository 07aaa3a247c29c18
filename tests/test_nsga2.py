"""Tests of the evolve search engine (evo.evolve): genes, NSGA-II, Pareto fronts."""

from __future__ import annotations

import itertools
import json
import math
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evo.evolve import (
    Choice,
    FloatRange,
    Gene,
    Infeasible,
    IntRange,
    Space,
    constraint_violation,
    crowding_distance,
    exhaustive,
    fast_non_dominated_sort,
    front_json,
    hypervolume,
    normalize_constraints,
    objective_matrix,
    pareto_front,
    search,
)
from evo.evolve.nsga2 import constrained_dominates, mutate, tournament, uniform_crossover

# ---------------------------------------------------------------------------
# genes


def test_int_range_is_half_open():
    r = IntRange(64, 576, 64)
    assert [r.value(i) for i in range(r.size)] == [64, 128, 192, 256, 320, 384, 448, 512]
    assert r.index_of(320) == 4
    for bad in (576, 65, 0, 64.5, True, "64"):
        with pytest.raises(ValueError):
            r.index_of(bad)
    assert r.index_of(128.0) == 1
    assert list(IntRange(5, 0, -2)) == [5, 3, 1]
    with pytest.raises(ValueError):
        IntRange(3, 3)
    with pytest.raises(ValueError):
        IntRange(0, 10, 0)
    with pytest.raises(IndexError):
        r.value(8)


def test_float_range_by_index_without_drift():
    assert list(FloatRange(0.7, 1.0, 0.1)) == [0.7, 0.8, 0.9]
    assert list(FloatRange(0.0, 0.3, 0.1)) == [0.0, 0.1, 0.2]
    r = FloatRange(0.0, 1.0, 0.1)
    assert r.size == 10
    assert r.value(3) == 0.3  # not 0.30000000000000004
    assert r.value(9) == 0.9
    assert r.index_of(0.1 + 0.2) == 3  # tolerant lookup
    assert list(FloatRange(1.0, 0.0, -0.25)) == [1.0, 0.75, 0.5, 0.25]
    assert FloatRange(0, 1e-5, 3e-6).size == 4
    with pytest.raises(ValueError):
        r.index_of(1.0)
    with pytest.raises(ValueError):
        r.index_of(0.35)
    with pytest.raises(ValueError):
        FloatRange(1.0, 1.0, 0.1)


def test_choice_values_are_opaque_and_unique():
    c = Choice([10, 100])
    assert isinstance(c.values, tuple) and c.size == 2 and c.value(1) == 100
    assert c.index_of(100) == 1
    b = Choice((True, False))
    assert b.index_of(False) == 1
    with pytest.raises(ValueError):
        b.index_of(0)  # bools are not numbers here
    mixed = Choice((1, True))  # allowed: True is not the number 1
    assert mixed.index_of(True) == 1 and mixed.index_of(1) == 0
    with pytest.raises(ValueError):
        Choice((1, 2, 1))
    with pytest.raises(ValueError):
        Choice(())

    class Q:  # an opaque quantity-like value
        def __init__(self, v):
            self.v = v

        def __eq__(self, o):
            return isinstance(o, Q) and o.v == self.v

    q = Choice((Q(64), Q(108), Q(256)))
    assert q.index_of(Q(108)) == 1 and not q.ordered
    assert Choice((1, 2, 4)).ordered and Choice((4, 2, 1)).ordered and not Choice((1, 4, 2)).ordered


def test_space_enumeration_and_indexing():
    sp = Space([Gene("a", IntRange(0, 3)), Gene("b", [1.5, 2.5]), Gene("c", FloatRange(0, 1, 0.5))])
    assert sp.size == 12 and sp.names == ("a", "b", "c") and sp.sizes == (3, 2, 2)
    allg = list(sp.iter_all())
    assert len(allg) == 12 == len(set(allg))
    assert allg == [sp.genome_at(k) for k in range(12)]
    assert [sp.flat_index(g) for g in allg] == list(range(12))
    for g in allg:
        assert sp.genome_of(sp.values(g)) == g
    assert sp.values((2, 1, 1)) == {"a": 2, "b": 2.5, "c": 0.5}
    d = sp.sample_distinct(random.Random(0), 20)
    assert len(d) == 12 and len(set(d)) == 12
    with pytest.raises(ValueError):
        Space([Gene("a", [1]), Gene("a", [2])])
    with pytest.raises(ValueError):
        sp.genome_of({"a": 0, "b": 1.5})
    with pytest.raises(ValueError):
        sp.check((3, 0, 0))


# ---------------------------------------------------------------------------
# ranking primitives on hand-made examples


def test_fast_non_dominated_sort_hand_made():
    F = [
        [1, 5],  # 0 front 0
        [2, 3],  # 1 front 0
        [3, 1],  # 2 front 0
        [2, 4],  # 3 front 1 (by 1)
        [4, 4],  # 4 front 2 (by 3)
        [5, 5],  # 5 front 3
        [2, 3],  # 6 duplicate of 1: front 0
    ]
    assert fast_non_dominated_sort(F) == [[0, 1, 2, 6], [3], [4], [5]]


def test_constraint_domination_sort():
    F = [[5, 5], [0, 0], [0, 0], [9, 9], [1, 1]]
    V = [0.0, 0.5, 2.0, 0.0, math.inf]
    # feasible first (0 and 3: 0 dominates 3), then by violation
    assert fast_non_dominated_sort(F, V) == [[0], [3], [1], [2], [4]]
    assert constrained_dominates([9, 9], 0.0, [0, 0], 0.1)
    assert constrained_dominates([9, 9], 0.1, [0, 0], 0.2)
    assert not constrained_dominates([0, 0], 0.2, [9, 9], 0.1)
    assert constrained_dominates([0, 1], 0.0, [1, 1], 0.0)
    assert not constrained_dominates([0, 1], 0.0, [0, 1], 0.0)
    assert not constrained_dominates([0, 2], 0.0, [1, 1], 0.0)


def test_crowding_distance_hand_made():
    d = crowding_distance([[0, 4], [1, 2], [2, 1], [4, 0]])
    assert d[0] == math.inf and d[3] == math.inf
    assert d[1] == pytest.approx(2 / 4 + 3 / 4)
    assert d[2] == pytest.approx(3 / 4 + 2 / 4)
    assert list(crowding_distance([[1, 1], [2, 0]])) == [math.inf, math.inf]
    # non-finite rows (Infeasible) get 0 and are ignored
    d = crowding_distance([[0, 3], [np.nan, np.nan], [1, 1], [3, 0]])
    assert d[1] == 0 and d[0] == math.inf and d[3] == math.inf and 0 < d[2] < math.inf
    # a degenerate objective (all equal) adds nothing
    d = crowding_distance([[0, 1], [1, 1], [2, 1], [3, 1]])
    assert d[1] == pytest.approx(2 / 3) and d[2] == pytest.approx(2 / 3)


def test_tournament_prefers_rank_then_crowding():
    rng = random.Random(0)
    rank = [0, 1]
    crowd = [0.0, 5.0]
    assert all(tournament(rng, rank, crowd) == 0 for _ in range(50))
    rank = [0, 0]
    crowd = [1.0, 2.0]
    assert all(tournament(rng, rank, crowd) == 1 for _ in range(50))


def test_constraint_violation_ops():
    cons = normalize_constraints(
        [("a", "<=", 10), ("b", "<", 0), ("c", ">=", 2), ("d", ">", 1), ("e", "==", 3)]
    )
    ok = {"a": 10, "b": -1, "c": 2, "d": 1.5, "e": 3.0000000001}
    assert constraint_violation(ok, cons) == (0.0, [])
    v, failed = constraint_violation({"a": 15, "b": 0, "c": 1, "d": 1, "e": 4}, cons)
    assert len(failed) == 5
    assert v == pytest.approx(0.5 + 1e-12 + 0.5 + 1e-12 + 1 / 3)
    v, _ = constraint_violation({**ok, "a": math.nan}, cons)
    assert v == math.inf
    with pytest.raises(ValueError):
        normalize_constraints([("a", "!=", 1)])
    with pytest.raises(KeyError):
        constraint_violation({"b": 0}, cons)


# ---------------------------------------------------------------------------
# exact convergence on small spaces


def _space_a() -> Space:  # 10 * 10 * 3 = 300
    return Space([Gene("x", IntRange(0, 10)), Gene("y", FloatRange(0, 1, 0.1)), Gene("z", Choice((1, 2, 4)))])


def _f_a(v):
    x, y, z = v["x"], v["y"], v["z"]
    return {"f1": x + y * z, "f2": (9 - x) ** 2 / 9 + (1 - y) * z, "c": x + 3 * y}


def _space_b() -> Space:  # 6 * 5 * 2 * 4 = 240
    return Space(
        [
            Gene("pes", IntRange(64, 448, 64)),
            Gene("kib", Choice((64, 108, 256, 512, 1024))),
            Gene("fast", Choice((False, True))),
            Gene("df", Choice(("ws", "os", "rs", "nlr"))),
        ]
    )


def _f_b(v):
    pes, kib, fast, df = v["pes"], v["kib"], v["fast"], v["df"]
    if df == "nlr" and kib < 256:
        raise Infeasible("nlr needs a big buffer")
    k = {"ws": 1.0, "os": 1.2, "rs": 0.9, "nlr": 0.8}[df]
    latency = k * 1e4 / pes * (0.7 if fast else 1.0) * (1 + 64 / kib)
    energy = (1 / k) * (pes * 0.1 + kib * 0.01) * (1.3 if fast else 1.0) + (5 if df == "rs" else 0)
    accuracy = math.log(kib) + (pes % 128) / 100 + (0.3 if df == "ws" else 0.0)
    return {"latency": latency, "energy": energy, "accuracy": accuracy, "area": pes * 0.5 + kib * 0.1}


def _space_c() -> Space:  # 8 * 4 * 5 = 160, jagged landscape
    return Space(
        [Gene("a", IntRange(0, 8)), Gene("b", Choice((3, 1, 4, 2))), Gene("c", FloatRange(-1, 1.5, 0.5))]
    )


def _f_c(v):
    a, b, c = v["a"], v["b"], v["c"]
    return {"g1": (a * 7 % 5) + b * c, "g2": (a - 3) ** 2 - b + abs(c) * 3, "g3": (a * b) % 6 + c}


PROBLEMS = [
    ("a", _space_a, _f_a, [("f1", "min"), ("f2", "min")], [("c", "<=", 9)]),
    ("b2", _space_b, _f_b, [("latency", "min"), ("energy", "min")], [("area", "<", 200)]),
    (
        "b3",
        _space_b,
        _f_b,
        [("latency", "min"), ("energy", "min"), ("accuracy", "max")],
        [("area", "<=", 250)],
    ),
    ("c", _space_c, _f_c, [("g1", "min"), ("g2", "min"), ("g3", "max")], [("g1", ">", -3)]),
]


def _brute_front(space, f, objectives, constraints):
    """Exact Pareto set by enumeration, independent of the engine's code paths."""
    cons = normalize_constraints(constraints)
    feas = []
    for g in itertools.product(*(range(n) for n in space.sizes)):
        vals = space.values(g)
        try:
            m = f(vals)
        except Infeasible:
            continue
        if constraint_violation(m, cons)[0] == 0:
            vec = tuple(-m[n] if s == "max" else m[n] for n, s in objectives)
            feas.append((vec, g))
    front = []
    for v, g in feas:
        dominated = any(all(a <= b for a, b in zip(w, v)) and w != v for w, _ in feas)
        if not dominated:
            front.append(g)
    return sorted(front)


@pytest.mark.parametrize("name,make_space,f,objectives,constraints", PROBLEMS, ids=[p[0] for p in PROBLEMS])
@pytest.mark.parametrize("seed", [0, 1, 2, 7])
def test_front_equals_exhaustive_enumeration(name, make_space, f, objectives, constraints, seed):
    space = make_space()
    calls = []

    def ev(v):
        calls.append(space.genome_of(v))
        return f(v)

    population = 24
    generations = math.ceil(space.size / population) + 2
    res = search(space, ev, objectives, constraints, population, generations, seed)
    expected = _brute_front(space, f, objectives, constraints)
    assert expected, "test problem has an empty front"
    assert sorted(p.genome for p in res.front) == expected
    assert res.exhausted and res.evaluations == space.size == len(calls) == len(set(calls))
    assert res.generations <= generations
    # the engine's own exhaustive mode agrees, including the order of the front
    ex = exhaustive(space, f, objectives, constraints)
    assert [p.genome for p in ex.front] == [p.genome for p in res.front]


@pytest.mark.parametrize("seed", [0, 3])
def test_partial_budget_gets_close(seed):
    """With about half the space evaluated, most of a large (72-point) front is found."""
    space = _space_a()
    objectives = [("f1", "min"), ("f2", "min")]
    res = search(space, _f_a, objectives, [("c", "<=", 9)], population=16, generations=10, seed=seed)
    assert res.evaluations <= 160 and not res.exhausted
    ex = exhaustive(space, _f_a, objectives, [("c", "<=", 9)])
    F_ex = objective_matrix(ex.front, objectives)
    ref = F_ex.max(axis=0) + 1.0
    ratio = hypervolume(objective_matrix(res.front, objectives), ref) / hypervolume(F_ex, ref)
    assert 0.98 <= ratio <= 1.0 + 1e-12
    exact = {p.genome for p in ex.front}
    assert sum(p.genome in exact for p in res.front) >= 0.6 * len(ex.front)


# ---------------------------------------------------------------------------
# determinism, constraints, cache


def test_same_seed_same_result():
    space = _space_b()
    objectives = [("latency", "min"), ("energy", "min"), ("accuracy", "max")]
    r1 = search(space, _f_b, objectives, [("area", "<=", 250)], 12, 6, seed=42)
    r2 = search(space, _f_b, objectives, [("area", "<=", 250)], 12, 6, seed=42)
    assert [p.genome for p in r1.evaluated] == [p.genome for p in r2.evaluated]
    assert r1.front == r2.front
    assert r1.to_json() == r2.to_json()
    assert r1.table() == r2.table()
    r3 = search(space, _f_b, objectives, [("area", "<=", 250)], 12, 6, seed=43)
    assert [p.genome for p in r3.evaluated] != [p.genome for p in r1.evaluated]


def test_front_is_sorted_by_objectives_then_genome():
    space = _space_b()
    objectives = [("latency", "min"), ("accuracy", "max")]
    res = search(space, _f_b, objectives, [], 16, 20, seed=0)
    keys = [(p.metrics["latency"], -p.metrics["accuracy"], p.genome) for p in res.front]
    assert keys == sorted(keys)


@pytest.mark.parametrize(
    "op,bound", [("<=", 120.0), ("<", 120.0), (">=", 150.0), (">", 150.0), ("==", 132.0)]
)
def test_reported_points_never_violate_constraints(op, bound):
    space = _space_b()
    objectives = [("latency", "min"), ("energy", "min")]
    res = search(space, _f_b, objectives, [("area", op, bound)], 10, 5, seed=1)
    ok = {
        "<=": lambda v: v <= bound,
        "<": lambda v: v < bound,
        ">=": lambda v: v >= bound,
        ">": lambda v: v > bound,
        "==": lambda v: math.isclose(v, bound),
    }[op]
    for p in res.front:
        assert p.feasible and ok(p.metrics["area"])
    for p in res.evaluated:
        assert p.feasible == ("area" in p.metrics and ok(p.metrics["area"]))
    assert res.front or res.feasible_count == 0


def test_infeasible_candidates_and_no_feasible_point():
    space = _space_b()
    res = search(space, _f_b, [("latency", "min"), ("energy", "min")], [], 24, 12, seed=0)
    bad = [p for p in res.evaluated if p.values["df"] == "nlr" and p.values["kib"] < 256]
    assert bad and all(p.violation == math.inf and p.metrics == {} and "nlr" in p.reason for p in bad)
    assert not any(p.values["df"] == "nlr" and p.values["kib"] < 256 for p in res.front)

    res = search(space, _f_b, [("latency", "min")], [("area", "<=", 1.0)], 8, 3, seed=0)
    assert res.front == [] and res.feasible_count == 0
    best = res.best_infeasible()
    assert best is not None and best.violation == min(p.violation for p in res.evaluated)
    assert "area" in best.reason


def test_nan_objective_is_infeasible():
    space = Space([Gene("x", IntRange(0, 5))])
    res = search(
        space, lambda v: {"f": math.nan if v["x"] == 0 else v["x"]}, [("f", "min")], [], 5, 2, seed=0
    )
    assert [p.values["x"] for p in res.front] == [1]
    assert not res.evaluated[[p.values["x"] for p in res.evaluated].index(0)].feasible


def test_cache_counts_and_small_spaces():
    space = Space([Gene("x", IntRange(0, 4)), Gene("y", Choice(("a", "b")))])  # 8 points
    calls = []

    def ev(v):
        calls.append((v["x"], v["y"]))
        return {"f": v["x"], "g": -v["x"] + (v["y"] == "b")}

    res = search(space, ev, [("f", "min"), ("g", "min")], [], population=20, generations=10, seed=0)
    assert len(calls) == len(set(calls)) == 8 == res.evaluations
    assert res.exhausted and res.generations == 1
    # a budget of population*generations evaluations, each genome at most once
    space = _space_a()
    calls.clear()
    res = search(
        space,
        lambda v: (calls.append(space.genome_of(v)), _f_a(v))[1],
        [("f1", "min"), ("f2", "min")],
        [],
        population=10,
        generations=7,
        seed=5,
    )
    assert len(calls) == len(set(calls)) == res.evaluations == 70
    assert res.generations == 7 and not res.exhausted
    assert res.cache_hits > 0  # offspring equal to known genomes were proposed, not re-evaluated


def test_initial_points_are_evaluated_first():
    space = _space_b()
    first = {"pes": 128, "kib": 108, "fast": False, "df": "ws"}
    res = search(space, _f_b, [("latency", "min")], [], 6, 2, seed=0, initial=[first, (0, 0, 0, 0)])
    assert res.evaluated[0].values == first and res.evaluated[1].genome == (0, 0, 0, 0)


def test_bad_arguments():
    space = _space_a()
    with pytest.raises(ValueError):
        search(space, _f_a, [("f1", "min")], [], population=0)
    with pytest.raises(ValueError):
        search(space, _f_a, [("f1", "up")], [])
    with pytest.raises(ValueError):
        search(space, _f_a, [], [])
    with pytest.raises(KeyError):
        search(space, _f_a, [("nope", "min")], [], 4, 1)
    with pytest.raises(ZeroDivisionError):  # other exceptions from evaluate propagate
        search(space, lambda v: 1 / 0, [("f1", "min")], [], 4, 1)


# ---------------------------------------------------------------------------
# domains under generated spaces

_values = st.one_of(
    st.integers(-1000, 1000),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.booleans(),
    st.text(min_size=1, max_size=3),
)


@st.composite
def _domains(draw):
    kind = draw(st.sampled_from(["choice", "int", "float"]))
    if kind == "choice":
        vals = draw(st.lists(_values, min_size=1, max_size=6, unique_by=lambda v: (isinstance(v, bool), v)))
        return Choice(tuple(vals))
    if kind == "int":
        start = draw(st.integers(-50, 50))
        step = draw(st.sampled_from([1, 2, 3, 7, -1, -4]))
        n = draw(st.integers(1, 9))
        return IntRange(start, start + n * step, step)
    start = draw(st.sampled_from([0.0, -1.5, 0.1, 2.0, 1e-3]))
    step = draw(st.sampled_from([0.1, 0.25, 0.05, 1.0, 3e-4]))
    n = draw(st.integers(1, 9))
    return FloatRange(start, start + (n - 0.5) * step, step)


@st.composite
def _spaces(draw):
    doms = draw(st.lists(_domains(), min_size=1, max_size=4))
    return Space([Gene(f"g{i}", d) for i, d in enumerate(doms)])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    space=_spaces(), population=st.integers(1, 8), generations=st.integers(1, 5), seed=st.integers(0, 2**32)
)
def test_search_respects_domains(space, population, generations, seed):
    seen = []

    def ev(values):
        assert list(values) == list(space.names)
        g = []
        for gene in space.genes:
            v = values[gene.name]
            i = gene.domain.index_of(v)
            w = gene.domain.value(i)
            assert w is v or (w == v and type(w) is type(v))
            g.append(i)
        g = tuple(g)
        seen.append(g)
        h = sum((k + 1) * 31**j for j, k in enumerate(g))
        return {"a": float(h % 17), "b": float((h * 7) % 13), "c": float(h % 5)}

    res = search(space, ev, [("a", "min"), ("b", "max")], [("c", "<=", 3)], population, generations, seed)
    assert len(seen) == len(set(seen)) == res.evaluations <= min(space.size, population * generations)
    assert all(space.contains(p.genome) for p in res.evaluated)
    for p in res.front:
        assert p.metrics["c"] <= 3
    if population * generations >= space.size:
        assert res.evaluations == space.size


@settings(max_examples=60, deadline=None)
@given(space=_spaces(), seed=st.integers(0, 2**32))
def test_variation_operators_respect_domains(space, seed):
    rng = random.Random(seed)
    a, b = space.sample(rng), space.sample(rng)
    for _ in range(20):
        c1, c2 = uniform_crossover(rng, a, b, 1.0)
        assert all(x in (p, q) for x, p, q in zip(c1, a, b))
        assert all(x in (p, q) for x, p, q in zip(c2, a, b))
        m = mutate(rng, c1, space, force=True)
        assert space.contains(m)
        if any(n > 1 for n in space.sizes):
            assert m != c1
        a, b = m, c2


# ---------------------------------------------------------------------------
# fronts


def _brute_mask(F):
    n = len(F)
    return [
        not any(all(F[j][k] <= F[i][k] for k in range(len(F[i]))) and F[j] != F[i] for j in range(n))
        for i in range(n)
    ]


@settings(max_examples=80, deadline=None)
@given(
    rows=st.lists(st.lists(st.integers(0, 6), min_size=3, max_size=3), min_size=0, max_size=40),
    m=st.integers(1, 3),
    senses=st.lists(st.sampled_from(["min", "max"]), min_size=3, max_size=3),
)
def test_pareto_front_matches_brute_force(rows, m, senses):
    objectives = [(f"o{k}", senses[k]) for k in range(m)]
    pts = [{f"o{k}": r[k] for k in range(3)} for r in rows]
    got = pareto_front(pts, objectives)
    F = [[-r[k] if senses[k] == "max" else r[k] for k in range(m)] for r in rows]
    expected = [p for p, keep in zip(pts, _brute_mask(F)) if keep]
    assert got == expected


def test_hypervolume_known_values():
    assert hypervolume([[1, 3], [2, 2], [3, 1]], [4, 4]) == pytest.approx(6.0)
    assert hypervolume([[1, 3], [2, 2], [3, 1], [3, 3], [5, 0]], [4, 4]) == pytest.approx(6.0)
    assert hypervolume([[0, 0, 0]], [1, 2, 3]) == pytest.approx(6.0)
    assert hypervolume([[0, 0, 1], [1, 1, 0]], [2, 2, 2]) == pytest.approx(5.0)
    assert hypervolume(np.empty((0, 2)), [1, 1]) == 0.0
    rng = np.random.default_rng(0)
    P = rng.random((12, 3))
    samples = rng.random((100_000, 3))
    dominated = np.zeros(len(samples), dtype=bool)
    for p in P:
        dominated |= np.all(samples >= p, axis=1)
    assert hypervolume(P, [1, 1, 1]) == pytest.approx(dominated.mean(), abs=0.01)


def test_table_json_and_plot_are_deterministic(tmp_path):
    space = _space_b()
    objectives = [("latency", "min"), ("energy", "min"), ("accuracy", "max")]
    res = search(space, _f_b, objectives, [("area", "<=", 250)], 16, 5, seed=3)
    table = res.table(metrics=["area"])
    lines = table.splitlines()
    assert lines[0].split()[:5] == ["#", "pes", "kib", "fast", "df"]
    assert "latency (min)" in lines[0] and "accuracy (max)" in lines[0] and "area" in lines[0]
    assert len(lines) == 2 + len(res.front)
    assert "true" in table or "false" in table
    doc = json.loads(res.to_json())
    assert [e["genome"] for e in doc["front"]] == [list(p.genome) for p in res.front]
    assert doc["evaluations"] == res.evaluations and doc["objectives"][2] == {
        "name": "accuracy",
        "sense": "max",
    }
    assert "wall_time" not in doc
    assert front_json(res.front, objectives) == front_json(list(res.front), objectives)

    path = tmp_path / "front.png"
    img = res.plot(path, title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert img.size[0] > 0 and img.size[1] > 0
    assert res.plot().tobytes() == res.plot().tobytes()
    # the front is drawn in its colour
    arr = np.asarray(img)
    assert np.any(np.all(arr == (31, 100, 200), axis=-1))
    two = search(space, _f_b, objectives[:2], [], 8, 3, seed=0).plot(panel_size=(300, 200))
    assert two.size == (300, 200 + 46)
    three = img.size
    assert three == (2 * 460, 2 * 340 + 46)


def test_empty_front_formatting():
    res = search(_space_a(), _f_a, [("f1", "min")], [("c", "<", -1)], 4, 1, seed=0)
    assert res.front == []
    assert "(no feasible point)" in res.table()
    assert json.loads(res.to_json())["front"] == []
    res.plot()


