"""The compilation as the one cache and the one place that decides: graphs are
memoised per argument set, compiled explain graphs are built once and shared by
codegen and the cost model, the CAM strategy is chosen by the compilation (never
by codegen), and plugins are loaded by the entry points, not by a property."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import evo
import evo.compilation as compilation
from evo.compilation import Compilation, choose_strategy
from evo.passes.gradient import compiled_explain_graph

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = (ROOT / "examples" / "quickstart.evo").read_text()

# two cams on one small network; the target makes `auto` consult the cost model
SMALL = """
network Net(x: Tensor[N, 3, 8, 8], width: int = 4) {
    a = relu(conv2d(x, width, 3, padding=1))
    b = relu(conv2d(a, 4, 3, padding=1))
    return linear(flatten(adaptive_avgpool2d(b, 1)), 3)
}

hardware Tiny {
    frequency = 100 MHz
    pes = 16
    macs_per_pe = 1
    word = 8 bit
    mac_energy = 0.5 pJ
    offchip DRAM { bandwidth = 1 GB/s; energy = 100 pJ/B }
    global SRAM { size = 64 KiB; bandwidth = 8 GB/s; energy = 2 pJ/B }
    pe RegFile { size = 64 B; bandwidth = 2 B/cycle; energy = 0.1 pJ/B }
}

cam Late {
    network = Net
    layer = b
    method = gradcam
    strategy = auto
}

cam Early {
    network = Net
    layer = a
    method = layercam
    strategy = auto
}

target T {
    network = Net
    cam = Early
    hardware = Tiny
}
"""


@pytest.fixture
def counted(monkeypatch):
    """Counts the explain graphs built (per layer and folding)."""
    calls: list[tuple[str, bool]] = []

    def counting(g, layer, fold=True):
        calls.append((layer, fold))
        return compiled_explain_graph(g, layer, fold)

    monkeypatch.setattr(compilation, "compiled_explain_graph", counting)
    return calls


def test_graph_is_memoised_per_argument_set():
    comp = evo.compile(SMALL).compilation
    assert comp.graph("Net") is comp.graph("Net") is comp.ir["Net"]
    g6 = comp.graph("Net", {"width": 6})
    assert comp.graph("Net", {"width": 6}) is g6
    assert g6 is not comp.graph("Net", {"width": 8})
    assert g6.value("a").shape == ("N", 6, 8, 8)
    assert comp.graph("Net", {"width": 8}).value("a").shape == ("N", 8, 8, 8)
    # the memoised graph is the one a fresh instantiation gives
    fresh = Compilation(SMALL).graph("Net", {"width": 6})
    assert [(n.op, n.shape) for n in fresh.nodes] == [(n.op, n.shape) for n in g6.nodes]


def test_graph_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(compilation, "CACHE_ENTRIES", 2)
    comp = evo.compile(SMALL).compilation
    g2, g3 = comp.graph("Net", {"width": 2}), comp.graph("Net", {"width": 3})
    assert comp.graph("Net", {"width": 2}) is g2          # most recently used: 3, then 2
    comp.graph("Net", {"width": 5})                        # evicts width 3
    assert comp.graph("Net", {"width": 2}) is g2
    g3b = comp.graph("Net", {"width": 3})
    assert g3b is not g3 and g3b.value("a").shape == g3.value("a").shape == ("N", 3, 8, 8)
    assert len(comp._graphs) == 2


def test_explain_graphs_are_built_once_and_shared(counted):
    prog = evo.compile(SMALL)
    comp = prog.compilation
    src = comp.python                      # codegen: both cams; Early's `auto` costs every strategy
    text = comp.ir_text                    # the IR dump shows the same graphs
    strategies = dict(comp.strategies)
    exp = prog.explainer("Late")           # the API explainer at declared settings
    # one folded graph per cam layer, one unfolded for Early (the cost model's autograd)
    assert sorted(counted) == [("a", False), ("a", True), ("b", True)]
    assert "class ExplainLate" in src and "# cam Early: the compiled gradient at a" in text
    assert strategies["Late"][0] == "compiled" and strategies["Early"][0] in ("compiled", "autograd", "forward")
    assert "is cheapest on Tiny" in strategies["Early"][1]
    # the explainer's maps equal hand-written autograd Grad-CAM on the same weights
    model = prog.build("Net", seed=3)
    exp = prog.explainer("Late", model)
    sd = model.state_dict()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    a = torch.relu(torch.nn.functional.conv2d(x, sd["conv2d_0.weight"], sd["conv2d_0.bias"], padding=1))
    b = torch.relu(torch.nn.functional.conv2d(a, sd["conv2d_1.weight"], sd["conv2d_1.bias"], padding=1))
    b = b.detach().requires_grad_()
    logits = torch.nn.functional.linear(b.mean((2, 3)), sd["linear_0.weight"], sd["linear_0.bias"])
    top = logits.argmax(1)
    logits.gather(1, top[:, None]).sum().backward()
    cam = torch.relu((b.grad.mean((2, 3), keepdim=True) * b).sum(1))
    lo, hi = cam.amin((1, 2), keepdim=True), cam.amax((1, 2), keepdim=True)
    ref = (cam - lo) / (hi - lo).clamp_min(1e-12)
    res = exp(x)
    assert res.classes.tolist() == top.tolist()
    assert torch.allclose(res.maps, ref.detach(), atol=1e-5)
    assert counted.count(("b", True)) == 1  # building and running the explainer built nothing new


def test_strategy_is_decided_by_the_compilation_not_codegen(monkeypatch):
    import evo.cost.network as costnet

    comp = evo.compile(SMALL).compilation
    strategies = comp.strategies  # the strategy stage (consults the cost model for Early)

    def forbidden(*a, **k):
        raise AssertionError("codegen consulted the cost model")

    monkeypatch.setattr(costnet, "cheapest_strategy", forbidden)
    monkeypatch.setattr(costnet, "cam_costs", forbidden)
    src = comp.python
    for name, (strategy, _) in strategies.items():
        assert f"strategy = {strategy!r}" in src or f"(strategy {strategy}" in src, name
    # codegen's modules import nothing of the cost model
    for path in (ROOT / "evo" / "codegen").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("evo.cost"), path
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("evo.cost") for a in node.names), path


def test_choose_strategy_without_hardware_and_gradient_free():
    comp = evo.compile(SMALL).compilation
    g = comp.ir["Net"]
    late = comp.checked.cams["Late"]
    assert choose_strategy(g, late) == ("compiled", "auto: compiled (affine head folds to channel weights)")
    from dataclasses import replace

    assert choose_strategy(g, replace(late, strategy="forward")) == ("forward", "")
    assert choose_strategy(g, replace(late, method="eigencam"))[0] == "none"


def test_plugins_are_loaded_by_the_entry_points_not_by_a_property(monkeypatch):
    import evo.extend as extend

    loads = []
    monkeypatch.setattr(extend, "_loaded", False)
    monkeypatch.setattr(extend, "_entry_points", lambda: loads.append(1) or [])
    comp = Compilation(SMALL)
    comp.checked, comp.ir, comp.python  # noqa: B018 - every stage
    assert loads == []
    evo.compile(SMALL)
    assert loads == [1]
    evo.compile(SMALL)
    assert loads == [1]  # once per process
