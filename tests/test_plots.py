"""Plots through matplotlib: roofline, energy per level and Pareto fronts, each as PNG, SVG
and PDF (chosen by the file's suffix), deterministic bytes, units on every axis; a bad
suffix is a usage error of the CLI."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from evo.cli import app as cli
from evo.cost import PRESETS, EltwiseWorkload, conv2d, cost_network, linear
from evo.evolve.front import front_figure, plot_front

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples"
MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "svg": b"<?xml", "pdf": b"%PDF-"}


def _net():
    ops = [("conv1", conv2d(1, 3, 16, 16, 8, 3, padding=1), ("x",)),
           ("relu1", EltwiseWorkload(8 * 16 * 16), ("conv1",)),
           ("fc", linear(1, 8 * 16 * 16, 10), ("relu1",))]
    return cost_network(ops, PRESETS["Eyeriss"])


def _labels(fig):
    return [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes]


@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_cost_plots_render_each_format_deterministically(tmp_path, fmt):
    """The plot functions return the bytes (and write them to a stream given); a file is written by
    the caller: CostReport.plot(path) through evo.fileio, the format by the suffix."""
    from evo.cost import plot
    from evo.cost.network import CostReport

    net = _net()
    for name, fn in (("roofline", plot.plot_roofline), ("levels", plot.plot_levels), ("both", plot.plot_network)):
        data = fn(net, format=fmt)
        assert data.startswith(MAGIC[fmt]) and len(data) > 1000, name
        again = io.BytesIO()
        assert fn(net, again, format=fmt) == data
        assert again.getvalue() == data, name  # byte for byte
        with pytest.raises(TypeError, match="write_atomic"):
            fn(net, str(tmp_path / f"{name}.{fmt}"), format=fmt)  # the library writes no file
    p = tmp_path / f"report.{fmt}"
    rep = CostReport(network="n", hardware="Eyeriss", batch=1, objective="latency", cost=net, params=0)
    assert rep.plot(p) == p and p.read_bytes() == data  # (the last: plot_network's)
    if fmt == "svg":
        assert b"Date" not in data and b"Matplotlib v" not in data
    if fmt == "pdf":
        assert b"CreationDate" not in data


def test_cost_plot_axes_carry_units():
    from evo.cost import plot

    net = _net()
    (x, y), = _labels(plot.roofline_figure(net))
    assert x == "arithmetic intensity (MAC/B off-chip)" and y == "achieved throughput (MAC/s)"
    top = max(o.cost.energy.offchip + o.cost.energy.glb + o.cost.energy.pe + o.cost.energy.mac for o in net.ops)
    (x, y), = _labels(plot.levels_figure(net))
    # the unit follows the tallest bar: the one SI formatter's prefix
    from evo.cost.si import si_prefix
    assert y == f"energy ({si_prefix(top)[0]}J)" and x == "op (in execution order)"
    (_, y), = _labels(plot.levels_figure(net, "bytes"))
    assert y.startswith("bytes moved (") and y.endswith("B)")
    both = _labels(plot.network_figure(net))
    assert len(both) == 2 and all(lx.endswith(")") and ly.endswith(")") for lx, ly in both)
    with pytest.raises(ValueError, match=r"\.png, \.svg or \.pdf"):
        plot.plot_format("roof.jpg")
    with pytest.raises(ValueError, match=r"\.png, \.svg or \.pdf"):
        plot.plot_roofline(net, format="jpg")


class _P:
    def __init__(self, latency, energy, feasible=True):
        self.metrics = {"latency": latency, "energy": energy, "params": 1000}
        self.feasible = feasible


def test_front_plot_formats_units_and_pixels(tmp_path):
    pts = [_P(1e-5 * (k + 1), 4e-6 / (k + 1)) for k in range(5)] + [_P(9e-5, 9e-6, feasible=False)]
    front = pts[:5]
    units = {"latency": "s", "energy": "J", "params": "count"}
    fig = front_figure(front, pts, [("latency", "min"), ("energy", "min")], units=units)
    assert _labels(fig) == [("latency (s), min", "energy (J), min")]
    # ticks are SI-prefixed with the unit
    fig.canvas.draw()
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert ticks and all(t.endswith(" µs") or t == "0" for t in ticks) and "10 µs" in ticks, ticks
    three = front_figure(front, pts, [("latency", "min"), ("energy", "min"), ("params", "max")], units=units)
    assert sorted(_labels(three)) == sorted([("latency (s), min", "energy (J), min"),
                                             ("latency (s), min", "params (count), max"),
                                             ("energy (J), min", "params (count), max")])
    for fmt in ("png", "svg", "pdf"):
        p = tmp_path / f"front.{fmt}"
        plot_front(front, pts, ["latency", "energy"], p, units=units)
        assert p.read_bytes().startswith(MAGIC[fmt])
        q = tmp_path / f"again.{fmt}"
        plot_front(front, pts, ["latency", "energy"], q, units=units)
        assert q.read_bytes() == p.read_bytes()
    with pytest.raises(ValueError):
        plot_front(front, pts, ["latency", "energy"], tmp_path / "front.gif")


def run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    c = capsys.readouterr()
    assert "Traceback" not in c.err
    return rc, c.out, c.err


@pytest.mark.parametrize("fmt", ["svg", "pdf"])
def test_cli_plot_format_by_suffix(capsys, tmp_path, fmt):
    p = tmp_path / f"cost.{fmt}"
    rc, _, err = run(capsys, "cost", EX / "quickstart.evo", "--plot", p)
    assert rc == 0, err
    assert p.read_bytes().startswith(MAGIC[fmt])


def test_cli_bad_plot_suffix_is_a_usage_error(capsys, tmp_path):
    for bad in ("cost.jpg", "cost"):
        rc, out, err = run(capsys, "cost", EX / "quickstart.evo", "--plot", tmp_path / bad)
        assert rc == 2 and out == "" and ".png, .svg or .pdf" in err, err
        assert not (tmp_path / bad).exists()
    with pytest.raises(SystemExit) as e:
        cli.main(["evolve", str(EX / "evolve.evo"), "--out", str(tmp_path / "o"), "--plot-format", "gif"])
    assert e.value.code == 2 and "--plot-format" in capsys.readouterr().err
