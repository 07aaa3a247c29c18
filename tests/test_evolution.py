"""Evolution end to end: evolve blocks through the real compiler and cost model,
the Pareto front against exhaustive enumeration, write-back, and `evoc evolve`."""

from __future__ import annotations

import json
import math
import operator
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import evo
from evo import units as U
from evo.cli import main as evoc
from evo.evolve.driver import (
    EvolveResult,
    _literal_value,
    _quantity_literal,
    evaluator,
    format_metric,
    run_evolve,
)
from evo.evolve import Gene, Space, exhaustive
from evo.frontend.fmt import format_source

ROOT = Path(__file__).resolve().parents[1]

# 3 x 2 x 3 x 3 x 2 = 108 points; a global memory of 256 B is smaller than the 512 B
# PE memory (36 unbuildable tiers); width 16 with depth 2 breaks the params budget.
SMALL = textwrap.dedent("""\
    evo 0.1

    # A tiny network and tier for the evolve tests.
    network Tiny(x: Tensor[N, 3, 16, 16], width: int = 8, depth: int = 1, classes: int = 10) {
        stem = conv2d(x, width, 3, padding=1, bias=false)
        body = seq(relu(stem)) {
            repeat depth { conv2d(width, 3, padding=1); relu() }
        }
        pool = adaptive_avgpool2d(body, 1)
        return linear(flatten(pool), classes)
    }

    hardware Chip {
        frequency = 200 MHz
        pes = 64
        word = 16 bit
        offchip DRAM { bandwidth = 4 GB/s; energy = 100 pJ/B }
        global GLB { size = 64 KiB; bandwidth = 16 B/cycle; energy = 3 pJ/B }
        pe Spad { size = 512 B; bandwidth = 4 B/cycle; energy = 0.5 pJ/B }
    }

    cam Explain {
        network = Tiny
        layer = body
    }

    target T {
        network = Tiny
        cam = Explain
        hardware = Chip
    }

    # the search
    evolve S {
        target = T
        gene width in [4, 8, 16]
        gene depth in 1..3
        gene Chip.pes in [16, 64, 256]
        gene Chip.global.size in [256 B, 16 KiB, 64 KiB]
        gene Chip.frequency in [100 MHz, 200 MHz]
        minimize latency, energy
        maximize params
        require params <= 1500, latency <= 60 us
        population = 8
        generations = 4
    }
    """)

OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt, "==": operator.eq}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("evolve")
    p = d / "small.evo"
    p.write_text(SMALL, encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def prog(small):
    return evo.compile_file(small)


@pytest.fixture(scope="module")
def truth(prog):
    """The exact front: every point of the space, through the same evaluator."""
    ev = evaluator(prog, "S")
    spec = prog.evolves["S"]
    space = Space([Gene(g.name, ev.domains[g.name]) for g in spec.genes])
    assert space.size == 108
    return exhaustive(space, ev, spec.objectives, spec.constraints)


@pytest.fixture(scope="module")
def full(prog, truth) -> EvolveResult:
    """A search with a budget larger than the space (it stops when the space is exhausted)."""
    return run_evolve(prog, "S", generations=30, population=8, seed=1)


def _key(p) -> tuple:
    return tuple(sorted(p.values.items()))


def _cost_as_cli(text: str, tmp: Path, name: str = "point.evo") -> dict:
    """`evoc cost --target T --format json` on a program text."""
    f = tmp / name
    f.write_text(text, encoding="utf-8")
    out = tmp / (name + ".json")
    assert evoc(["cost", str(f), "--target", "T", "--format", "json", "-o", str(out)]) == 0
    return json.loads(out.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------- the example

def test_example_checks_is_canonical_and_large():
    path = ROOT / "examples" / "evolve.evo"
    text = path.read_text(encoding="utf-8")
    assert format_source(text, str(path)) == text
    assert evoc(["check", "-q", str(path)]) == 0
    assert evoc(["fmt", "--check", str(path)]) == 0
    p = evo.compile_file(path)
    (spec,) = p.evolves.values()
    assert math.prod(len(g.values) for g in spec.genes) >= 10_000
    assert {g.kind for g in spec.genes} == {"network", "hardware"}
    assert spec.objectives and spec.constraints


# ---------------------------------------------------------------------------- the front

def test_front_equals_exhaustive(full, truth):
    assert full.search.exhausted and full.evaluations == 108
    assert truth.front
    assert sorted(_key(p) for p in full.front) == sorted(_key(p) for p in truth.front)
    by = {_key(p): p for p in truth.front}
    for p in full.front:
        assert p.metrics == by[_key(p)].metrics
    # and it is a real trade-off, not one point
    assert len({(p.metrics["latency"], p.metrics["params"]) for p in full.front}) >= 3


def test_caching_changes_no_figure(prog, truth):
    """The exhaustive run (one evaluator: graphs, tiers and costs cached, PE halves shared
    across the PE gene's values, every search cache warm, points in space order) against
    points costed from nothing: a fresh evaluator, empty cost-model caches and each tier's
    own PE half, in reverse order (larger PE counts first).  Every figure is the same."""
    from evo.cost import clear_cache
    from evo.cost.mapping import share_pe_halves
    from evo.evolve import Infeasible
    from evo.evolve.driver import Evaluator

    pts = truth.evaluated
    assert len(pts) == 108
    sample = pts[::-9] + [p for p in pts if p.feasible][:3]
    try:
        for p in sample:
            clear_cache()
            ev = Evaluator(prog, "S")
            share_pe_halves(1)  # (the evaluator asked for sharing; this reference must not share)
            try:
                got = ev(dict(p.values))
            except Infeasible as e:
                assert not p.metrics and p.reason == e.reason
                continue
            assert got == p.metrics, p.values
    finally:
        clear_cache()
        share_pe_halves(1)


def test_small_budget_front_is_exactly_nondominated(prog, truth):
    res = run_evolve(prog, "S", generations=3, population=6, seed=2)
    assert res.evaluations <= 18 + 1 and not res.search.exhausted
    objs = prog.evolves["S"].objectives
    feas = [p for p in res.evaluated if p.feasible]

    def vec(p):
        return [(-p.metrics[m] if s == "max" else p.metrics[m]) for m, s in objs]

    def dom(a, b):
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    for p in res.front:
        assert not any(dom(vec(q), vec(p)) for q in feas)
    for q in feas:
        if q not in res.front:
            assert any(dom(vec(p), vec(q)) for p in res.front)


def test_same_seed_same_front(small):
    a = run_evolve(evo.compile_file(small), "S", generations=3, population=6, seed=7)
    b = run_evolve(evo.compile_file(small), "S", generations=3, population=6, seed=7)
    assert [(_key(p), p.metrics) for p in a.front] == [(_key(p), p.metrics) for p in b.front]
    assert [p.genome for p in a.evaluated] == [p.genome for p in b.evaluated]
    assert a.to_json() == b.to_json()
    c = run_evolve(evo.compile_file(small), "S", generations=3, population=6, seed=8)
    assert [p.genome for p in c.evaluated] != [p.genome for p in a.evaluated]


@pytest.mark.parametrize("seed", [0, 3, 11])
def test_constraints_never_violated(prog, seed):
    spec = prog.evolves["S"]
    res = run_evolve(prog, "S", generations=4, population=6, seed=seed)
    assert res.front
    assert res.violating > 0  # the constraints do bite in this space
    for p in res.front:
        for m, op, bound in spec.constraints:
            assert OPS[op](p.metrics[m], bound), (p.values, m, op, bound)


def test_infeasible_hardware_is_reported_with_the_checker_message(full):
    bad = [p for p in full.evaluated if p.values["Chip.global.size"] == 256.0]
    assert len(bad) == 36
    for p in bad:
        assert not p.feasible and math.isinf(p.violation)
        assert "larger than the global memory" in p.reason
    assert full.infeasible == 36
    assert not any(p.values["Chip.global.size"] == 256.0 for p in full.front)


def test_infeasible_network_and_cam(tmp_path):
    src = textwrap.dedent("""\
        network Net(x: Tensor[N, 3, 16, 16], k: int = 3, classes: int = 10) {
            c = conv2d(x, 4, k)
            body = relu(c)
            return linear(flatten(adaptive_avgpool2d(body, 1)), classes)
        }

        hardware H {
            frequency = 100 MHz
            pes = 16
            offchip D { bandwidth = 1 GB/s; energy = 100 pJ/B }
            global G { size = 16 KiB; bandwidth = 8 B/cycle; energy = 2 pJ/B }
            pe P { size = 128 B; bandwidth = 2 B/cycle; energy = 0.5 pJ/B }
        }

        cam C {
            network = Net
            layer = body
            class = 7
        }

        target T {
            network = Net
            cam = C
            hardware = H
        }

        evolve E {
            target = T
            gene k in [3, 17]
            gene classes in [4, 10]
            minimize latency
        }
        """)
    p = evo.compile(src)
    res = p.evolve("E", generations=3, population=2)
    reasons = {(q.values["k"], q.values["classes"]): q.reason for q in res.evaluated}
    assert len(reasons) == 4
    assert reasons[(3, 10)] is None
    assert "kernel" in reasons[(17, 10)] or "larger" in reasons[(17, 10)]
    assert "class 7 is out of range" in reasons[(3, 4)]
    assert [(q.values["k"], q.values["classes"]) for q in res.front] == [(3, 10)]
    # nothing buildable: an empty front, not an error
    p2 = evo.compile(src.replace("gene k in [3, 17]", "gene k in [17, 19]"))
    res2 = p2.evolve("E", generations=2, population=2)
    assert res2.front == [] and res2.infeasible == 4
    assert "(no feasible point)" in res2.table()


# ---------------------------------------------------------------------------- write-back

def test_written_back_programs_compile_and_cost_exactly(full, tmp_path):
    assert len(full.front) >= 3
    for i, p in enumerate(full.front):
        text = full.program(i)
        assert format_source(text) == text  # `evoc fmt`-canonical
        q = evo.compile(text)
        assert not q.evolves
        t = q.targets["T"]
        assert t.hardware == f"Chip_S_{i + 1}"
        assert dict(q.graph("Tiny").args)["width"] == p.values["width"]
        rep = q.cost(t.network, hardware=t.hardware, batch=t.batch, objective=t.objective)
        got = rep.metrics
        for m, v in p.metrics.items():
            assert got[m] == v, (i, m, got[m], v)
    # through the CLI, exactly the reported figures
    d = _cost_as_cli(full.program(0), tmp_path)
    p = full.front[0]
    assert d["cost"]["totals"]["latency_s"] == p.metrics["latency"]
    assert d["cost"]["totals"]["energy_j"]["total"] == p.metrics["energy"]
    assert d["params"] == p.metrics["params"]


def test_written_back_text(full):
    text = full.program(0)
    p = full.front[0]
    assert "evolve S" not in text.split("# Written by")[1].split("\n", 1)[1]  # the block is gone
    assert "# the search" not in text  # with its comment
    assert "hardware Chip_S_1 extends Chip {" in text
    sp = full.spelled(p)
    assert f"    global.size = {sp['Chip.global.size']}\n" in text
    assert f"width: int = {p.values['width']}," in text
    assert text.startswith("evo 0.1\n\n# Written by evoc evolve: evolve S, Pareto front point 1 of")
    # the original program is untouched
    assert "hardware = Chip\n" in SMALL


CAM_FREQ = textwrap.dedent("""\
    network Tiny(x: Tensor[N, 3, 16, 16], width: int = 8) {
        body = relu(conv2d(x, width, 3, padding=1))
        return linear(flatten(adaptive_avgpool2d(body, 1)), 10)
    }

    hardware Chip {
        frequency = 200 MHz
        pes = 64
        offchip DRAM { bandwidth = 4 GB/s; energy = 100 pJ/B }
        global GLB { size = 64 KiB; bandwidth = 16 B/cycle; energy = 3 pJ/B }
        pe Spad { size = 512 B; bandwidth = 4 B/cycle; energy = 0.5 pJ/B }
    }

    cam Explain {
        network = Tiny
        layer = body
    }

    target T {
        network = Tiny
        cam = Explain
        hardware = Chip
        objective = energy
    }

    evolve S {
        target = T
        gene width in [4, 8]
        gene Chip.frequency in [100 MHz, 0.3 GHz]
        gene Chip.pe.bandwidth in [1 B/cycle, 1.6 GB/s]
        gene Chip.global.size in 16 KiB..80 KiB step 32 KiB
        minimize cam_latency, energy
        require cam_energy <= 1 mJ
    }
    """)


def test_write_back_with_cam_metrics_and_per_cycle_bandwidth(tmp_path):
    """`B/cycle` gene values follow a frequency gene, in the search as in the written program."""
    from evo.cost.network import explainer_cost

    p = evo.compile(CAM_FREQ)
    ev = evaluator(p, "S")
    spec = p.evolves["S"]
    space = Space([Gene(g.name, ev.domains[g.name]) for g in spec.genes])
    res = exhaustive(space, ev, spec.objectives, spec.constraints)
    assert res.evaluations == 16
    one = {"width": 4, "Chip.frequency": 1e8, "Chip.pe.bandwidth": 2e8, "Chip.global.size": 16384.0}
    two = dict(one, **{"Chip.frequency": 3e8})
    assert ev(one)["latency"] != ev(two)["latency"]
    r = run_evolve(p, "S", generations=4, population=4)
    assert r.front
    for i, pt in enumerate(r.front):
        assert "cam_latency" in pt.metrics
        text = r.program(i)
        q = evo.compile(text)
        t = q.targets["T"]
        rep = q.cost(t.network, hardware=t.hardware, batch=t.batch, objective=t.objective)
        cam = explainer_cost(q.graph(t.network), q.cams[t.cam], q.hardware[t.hardware], t.batch, t.objective)
        assert cam["latency_s"] == pt.metrics["cam_latency"]
        assert cam["energy_j"] == pt.metrics["cam_energy"]
        assert rep.metrics["energy"] == pt.metrics["energy"]
        if r.spelled(pt)["Chip.pe.bandwidth"] == "1 B/cycle":
            assert "pe.bandwidth = 1 B/cycle" in text
    d = _cost_as_cli(r.program(0), tmp_path)
    assert d["cam"]["latency_s"] == r.front[0].metrics["cam_latency"]
    # without a cam_* objective or constraint the cam is not costed, and not reported
    p2 = evo.compile(CAM_FREQ.replace("minimize cam_latency, energy", "minimize latency, energy")
                     .replace("require cam_energy <= 1 mJ", ""))
    r2 = run_evolve(p2, "S", generations=1, population=2)
    assert all("cam_latency" not in q.metrics for q in r2.evaluated)


def test_write_back_rewrites_imports(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    hw = SMALL.split("hardware Chip {")[1].split("}\n\n")[0]
    (lib / "chips.evo").write_text("hardware Chip {" + hw + "}\n", encoding="utf-8")
    main = 'import "lib/chips.evo"\n\n' + SMALL.replace("evo 0.1\n", "").replace(
        "hardware Chip {" + hw + "}\n\n", "")
    src = tmp_path / "main.evo"
    src.write_text(format_source(main), encoding="utf-8")
    p = evo.compile_file(src)
    res = run_evolve(p, "S", generations=2, population=4)
    out = tmp_path / "out" / "deep"
    paths = res.write_programs(out)
    assert len(paths) == len(res.front) >= 1
    text = paths[0].read_text(encoding="utf-8")
    assert 'import "../../lib/chips.evo"' in text
    # the new tier goes right before the target when the base tier is imported
    assert text.index("hardware Chip_S_1 extends Chip") < text.index("target T")
    q = evo.compile_file(paths[0])
    t = q.targets["T"]
    rep = q.cost(t.network, hardware=t.hardware, batch=t.batch, objective=t.objective)
    assert rep.metrics["latency"] == res.front[0].metrics["latency"]
    # the library writes through the one safe writer: a rewrite keeps the file's mode, a
    # symlinked output is refused (not written through), no temporary file is left behind
    import stat

    from evo.fileio import OutputError

    paths[0].chmod(0o600)
    assert res.write_programs(out) == paths
    assert stat.S_IMODE(paths[0].stat().st_mode) == 0o600
    victim = tmp_path / "victim.txt"
    victim.write_text("keep\n", encoding="utf-8")
    paths[0].unlink()
    paths[0].symlink_to(victim)
    with pytest.raises(OutputError, match="symbolic link"):
        res.write_programs(out)
    assert victim.read_text(encoding="utf-8") == "keep\n"
    assert not [q.name for q in out.iterdir() if q.name.endswith(".tmp")]


# ---------------------------------------------------------------------------- CLI and API

def test_cli_end_to_end(small, tmp_path, capsys):
    out, best = tmp_path / "out", tmp_path / "best"
    rc = evoc(["evolve", str(small), "--out", str(out), "--emit-best", str(best), "--format", "json", "--progress",
               "--generations", "3", "--population", "6", "--seed", "4"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "evolve S: gen 3/3" in captured.err  # the progress bar, on stderr
    data = json.loads((out / "front.json").read_text(encoding="utf-8"))
    assert json.loads(captured.out) == data
    assert data["evolve"] == "S" and data["space_size"] == 108 and data["seed"] == 4
    assert data["objectives"] == [{"name": "latency", "sense": "min"}, {"name": "energy", "sense": "min"},
                                  {"name": "params", "sense": "max"}]
    assert data["front"]
    png = (out / "front.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    files = sorted(best.glob("*.evo"))
    assert len(files) == len(data["front"])
    for k, entry in enumerate(data["front"], 1):
        f = best / f"S_{k}.evo"
        assert entry["program"] == str(f)
        assert evoc(["check", "-q", str(f)]) == 0
        assert evoc(["fmt", "--check", str(f)]) == 0
        d = _cost_as_cli(f.read_text(encoding="utf-8"), tmp_path, f"again_{k}.evo")
        assert d["cost"]["totals"]["latency_s"] == entry["metrics"]["latency"]
    # the table
    rc = evoc(["evolve", str(small), "--out", str(out), "--generations", "2", "--population", "4", "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0 and captured.err.startswith("wrote ")
    assert "latency (min)" in captured.out and "params (max)" in captured.out
    assert "Chip.global.size" in captured.out and " KiB" in captured.out


def test_cli_usage_errors(small, tmp_path, capsys):
    assert evoc(["evolve", str(small), "--search", "Nope", "--out", str(tmp_path)]) == 2
    assert "no evolve block named 'Nope'" in capsys.readouterr().err
    assert evoc(["evolve", str(small), "--population", "1", "--out", str(tmp_path)]) == 2
    two = tmp_path / "two.evo"
    two.write_text(SMALL + SMALL.split("# the search\n")[1].replace("evolve S", "evolve S2"), encoding="utf-8")
    assert evoc(["evolve", str(two), "--out", str(tmp_path)]) == 2
    assert "several evolve blocks" in capsys.readouterr().err
    none = tmp_path / "none.evo"
    none.write_text(SMALL.split("# the search")[0], encoding="utf-8")
    assert evoc(["evolve", str(none), "--out", str(tmp_path)]) == 2
    bad = tmp_path / "bad.evo"
    bad.write_text(SMALL.replace("gene depth in 1..3", "gene dpth in 1..3"), encoding="utf-8")
    assert evoc(["evolve", str(bad), "--out", str(tmp_path)]) == 1
    assert "has no parameter 'dpth'" in capsys.readouterr().err


def test_api(prog):
    res = prog.evolve("S", generations=2, population=4, seed=5)
    assert isinstance(res, EvolveResult)
    assert res.generations == 2 and res.evaluations <= 9
    assert res.baseline is not None and res.baseline["params"] == 890
    # the program as written is part of the first generation (it is in the space)
    assert res.evaluated[0].values == {"width": 8, "depth": 1, "Chip.pes": 64, "Chip.global.size": 65536.0,
                                       "Chip.frequency": 2e8}
    with pytest.raises(evo.EvoError, match="no evolve named 'Nope'|no evolve block named 'Nope'"):
        prog.evolve("Nope")
    with pytest.raises(ValueError):
        run_evolve(prog, "S", population=1)
    assert "latency (min)" in res.table()
    assert res.summary().startswith("evolve S: target T (Tiny on Chip, batch 1); 5 genes, 108 points")


# ---------------------------------------------------------------------------- pieces

def test_format_metric():
    assert format_metric("latency", 1.492e-05) == "14.92 µs"  # one spelling with evoc cost (fmt_time)
    assert format_metric("energy", 2.2114e-06) == "2.211 µJ"
    assert format_metric("params", 306) == "306"
    assert format_metric("params", 70618) == "70.62K"
    assert format_metric("offchip_bytes", 2_253_476.0) == "2.253 MB"
    assert format_metric("utilization", 0.98765) == "0.988"
    assert format_metric("latency", 0.0) == "0 ps"


_DIMS = [(U.SIZE, ("B", "KiB", "MiB", "KB", "MB")), (U.BANDWIDTH, ("B/s", "GB/s", "MB/s", "GiB/s")),
         (U.FREQUENCY, ("Hz", "MHz", "GHz")), (U.ENERGY_PER_SIZE, ("pJ/B", "fJ/B", "pJ/bit")),
         (U.BANDWIDTH_CYCLE, ("B/cycle", "KiB/cycle")), (U.ENERGY, ("pJ", "nJ"))]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(_DIMS), st.integers(0, 5), st.floats(1e-3, 1e6, allow_nan=False, allow_infinity=False),
       st.booleans())
def test_quantity_literals_read_back_exactly(dim_units, k, x, keep_text):
    dim, units = dim_units
    unit = units[k % len(units)]
    scale, d = U.parse_unit(unit)
    assert d == dim
    q = U.Quantity(x * scale, dim, f"{x!r} {unit}" if keep_text else "")
    num, u = _quantity_literal(q)
    assert _literal_value(num, u) == (q.value, dim)


def test_literal_value_mirrors_the_compiler():
    from evo.check.lower import Lowerer as Elaborator
    from evo.check.program import Program
    from evo.diagnostics import Collector
    from evo.frontend import parse

    for text in ("256 KiB", "0.2 GHz", "1.6 GB/s", "2 B/cycle", "3e-12 J/B", "1_000 B", "12.5 pJ/bit",
                 "25600000000.000004 B/s", "1e+20 B"):
        num, unit = text.split(" ")
        m = parse(f"hardware H {{ word = {text} }}", "<t>")
        q = Elaborator(Program(), Collector()).constant(m.items[0].items[0].value)
        assert _literal_value(num, unit) == (q.value, q.dim), text


def test_the_checker_entry_points_build_the_variants_a_written_program_would_give():
    """evo.check's public entry points the driver uses: a hardware variant equals the tier written
    with those values; a network instance equals the network written with those defaults; a
    variant the checker refuses raises its diagnostic."""
    import evo.check as C
    from evo.diagnostics import EvoError

    checked = C.check_source(SMALL)
    v = C.hardware_variant(checked, "Chip", [(("global", "size"), "16", "KiB"), (("pes",), "256", None)])
    written = C.check_source(SMALL.replace("size = 64 KiB", "size = 16 KiB").replace("pes = 64", "pes = 256"))
    w = written.hardware["Chip"]
    def fields(h):
        return (h.pes, h.frequency, h.word_bits, [(lv.kind, lv.name, lv.size, lv.bandwidth, lv.energy, lv.holds)
                                                  for lv in h.levels])

    assert fields(v) == fields(w)
    assert v.levels[1].size == 16 * 1024 and v.pes == 256
    with pytest.raises(EvoError) as e:  # a global memory smaller than the PE memory
        C.hardware_variant(checked, "Chip", [(("global", "size"), "256", "B")])
    assert e.value.diagnostics[0].code.startswith("E")
    g = C.instantiate_network(checked, "Tiny", {"width": 4, "depth": 2})
    ref = C.check_source(SMALL.replace("width: int = 8, depth: int = 1", "width: int = 4, depth: int = 2"))
    assert [(n.op, n.shape) for n in g.nodes] == [(n.op, n.shape) for n in ref.graphs["Tiny"].nodes]
    written = C.hardware_gene_values(checked, "S", ("Chip", "global", "size"))
    assert [(q.value, q.dim, q.text) for q in written] == [(256, U.SIZE, "256 B"), (16 * 1024, U.SIZE, "16 KiB"),
                                                          (64 * 1024, U.SIZE, "64 KiB")]


def test_neighbours_through_warm_caches_equal_fresh(prog):
    """A candidate, its hardware-only neighbours (every hardware gene changed in turn) and its
    network-only neighbours, costed through one warm evaluator (graph op lists and converted
    tiers reused, mapping halves shared) and each from nothing (fresh evaluator, empty
    caches, each tier's own PE half): the same figures."""
    from evo.cost import clear_cache
    from evo.cost.mapping import share_pe_halves
    from evo.evolve.driver import Evaluator

    spec = prog.evolves["S"]
    base = {"width": 8, "depth": 2, "Chip.pes": 64, "Chip.global.size": 16384.0, "Chip.frequency": 200e6}
    assert set(base) == {g.name for g in spec.genes}
    other = {"width": 4, "depth": 1, "Chip.pes": 256, "Chip.global.size": 65536.0, "Chip.frequency": 100e6}
    pts = [base] + [{**base, k: v} for k, v in other.items()]
    try:
        clear_cache()
        warm = Evaluator(prog, "S")
        cached = [warm(p) for p in pts]
        assert len(warm.prepared) == 3 and len(warm.converted) == 4  # three graphs, four tiers
        for p, got in zip(pts, cached):
            clear_cache()
            fresh = Evaluator(prog, "S")
            share_pe_halves(1)
            assert fresh(p) == got, p
    finally:
        clear_cache()
        share_pe_halves(1)
