"""`evoc evolve --workers N` and `--cluster ADDRESS`: candidates evaluated in other
processes (a process pool; a dask.distributed LocalCluster) give the same search as a
serial run for the same seed: same points in the same order, same front."""

from __future__ import annotations

import json
import textwrap

import pytest

import evo
from evo.cli import main as evoc
from evo.evolve import Infeasible, search
from evo.evolve.genes import Gene, Space

# 3 x 3 x 3 x 3 = 81 points; a global memory of 256 B is smaller than the PE memory
# (unbuildable tiers, reported as infeasible by the workers too)
PROGRAM = textwrap.dedent("""\
    evo 0.1

    network Tiny(x: Tensor[N, 3, 16, 16], width: int = 8, depth: int = 1) {
        stem = conv2d(x, width, 3, padding=1, bias=false)
        body = seq(relu(stem)) {
            repeat depth { conv2d(width, 3, padding=1); relu() }
        }
        pool = adaptive_avgpool2d(body, 1)
        return linear(flatten(pool), 10)
    }

    hardware Chip {
        frequency = 200 MHz
        pes = 64
        word = 16 bit
        offchip DRAM { bandwidth = 4 GB/s; energy = 100 pJ/B }
        global GLB { size = 64 KiB; bandwidth = 16 B/cycle; energy = 3 pJ/B }
        pe Spad { size = 512 B; bandwidth = 4 B/cycle; energy = 0.5 pJ/B }
    }

    target T {
        network = Tiny
        hardware = Chip
    }

    evolve S {
        target = T
        gene width in [4, 8, 16]
        gene depth in 1..4
        gene Chip.pes in [16, 64, 256]
        gene Chip.global.size in [256 B, 16 KiB, 64 KiB]
        minimize latency, energy
        require params <= 3000
        population = 6
        generations = 3
        seed = 2
    }
    """)


def _search_key(res):
    s = res.search
    return ([tuple(sorted(p.values.items())) for p in s.evaluated],
            [(tuple(sorted(p.values.items())), p.metrics, p.reason) for p in s.evaluated],
            [tuple(sorted(p.values.items())) for p in s.front])


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    p = tmp_path_factory.mktemp("par") / "tiny.evo"
    p.write_text(PROGRAM, encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def serial(program):
    return evo.compile_file(program).evolve("S")


def test_serial_search_has_infeasible_points_and_a_front(serial):
    assert serial.search.front and serial.infeasible > 0  # both kinds of outcome cross the process boundary


def test_workers_cli_gives_the_same_front_json_as_workers_1(program, tmp_path, capsys):
    outs = {}
    for n in (1, 2):
        out = tmp_path / f"w{n}"
        assert evoc(["evolve", str(program), "--workers", str(n), "--quiet", "--out", str(out)]) == 0
        outs[n] = json.loads((out / "front.json").read_text(encoding="utf-8"))
    capsys.readouterr()
    assert outs[1]["front"] and outs[1] == outs[2]


def test_dask_local_cluster_gives_the_same_search(program, serial):
    import distributed
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        assert len(cluster.workers) == 2
        res = evo.compile_file(program).evolve("S", cluster=cluster.scheduler_address)
    assert _search_key(res) == _search_key(serial)


def test_search_with_evaluate_many_is_the_serial_search():
    # the engine hook alone, with a pure-Python evaluation and infeasible candidates
    space = Space([Gene("a", list(range(12))), Gene("b", list(range(9)))])

    def evaluate(v):
        if (v["a"] + v["b"]) % 7 == 0:
            raise Infeasible(f"a+b={v['a'] + v['b']}")
        return {"f": (v["a"] - 3) ** 2 + v["b"], "g": (v["b"] - 5) ** 2 + 0.5 * v["a"]}

    batches = []

    def many(values):
        batches.append(len(values))
        out = []
        for v in values:
            try:
                out.append(evaluate(v))
            except Infeasible as e:
                out.append(e)
        return out

    kw = dict(objectives=[("f", "min"), ("g", "min")], population=10, generations=6, seed=3)
    a = search(space, evaluate, **kw)
    b = search(space, lambda v: pytest.fail("evaluate must not be called"), evaluate_many=many, **kw)
    assert [p.genome for p in a.evaluated] == [p.genome for p in b.evaluated]
    assert [(p.metrics, p.reason) for p in a.evaluated] == [(p.metrics, p.reason) for p in b.evaluated]
    assert [p.genome for p in a.front] == [p.genome for p in b.front]
    assert sum(batches) == a.evaluations and len(batches) == a.generations


def test_usage_errors(program, tmp_path, capsys):
    assert evoc(["evolve", str(program), "--workers", "0", "--out", str(tmp_path)]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
    assert evoc(["evolve", str(program), "--workers", "2", "--cluster", "tcp://127.0.0.1:1",
                 "--out", str(tmp_path)]) == 2
    assert "not both" in capsys.readouterr().err
    # a malformed address is a usage error at once (it was an internal error, exit 3)
    assert evoc(["evolve", str(program), "--cluster", "nonsense", "--quiet", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the cluster nonsense" in err and "Traceback" not in err
