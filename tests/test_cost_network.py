"""Costing compiled programs (evo/cost/rules.py, evo/cost/network.py, `evoc cost`, `prog.cost`).

* MACs of the example networks against the published counts and tests/refmodels.py;
* small layers through the compiler, with every expected number derived by hand in the
  comments from the definitions in docs/cost-model.md (not from the implementation);
* bounds, fusion and monotonicity over the example networks on every example tier;
* the costs of the CAM strategies, `strategy = auto` and the fps budget;
* the command line and the API.

Costs are cached per (network, tier) for the whole module, so each network is costed
once per tier.  EVO_COST_FULL=1 checks monotonicity for every network on every tier
(about a minute more); by default each tier gets one network, each network at least
one tier.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import evo
from evo.cli import main as evoc
from evo.cost import as_hardware, cost_op
from evo.cost.network import (
    cam_costs,
    cheapest_strategy,
    conv_linear_macs,
    cost_graph,
    explainer_cost,
    graph_ops,
    pick_strategy,
)

ROOT = Path(__file__).resolve().parent.parent
EX = ROOT / "examples"
pJ = 1e-12

# network -> (example file, conv+linear GMACs at 224x224, batch 1, as published (torchvision's
# model docs, the papers), and the same to 4 significant digits)
NETS = {
    "ResNet18": ("resnet18.evo", 1.814, "1.814"),
    "ResNet50": ("resnet50.evo", 4.089, "4.089"),
    "VGG16": ("vgg16.evo", 15.470, "15.47"),
    "MobileNetV2": ("mobilenet.evo", 0.301, "0.3008"),
}
TIERS = ("Eyeriss", "EyerissLPDDR4", "EyerissX4", "EdgeNPU", "TPUv1", "A100")  # examples/hardware.evo
FULL = bool(os.environ.get("EVO_COST_FULL"))


def close(a: float, b: float, rel: float = 1e-12) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-30)


@functools.cache
def program(net: str) -> evo.Program:
    """The example network with the tiers of examples/hardware.evo in scope."""
    src = f'evo 0.1\nimport "{NETS[net][0]}"\nimport "hardware.evo"\n'
    return evo.compile(src, f"<{net}>", base_dir=EX)


@functools.cache
def report(net: str, tier: str, batch: int = 1):
    return program(net).cost(net, hardware=tier, batch=batch)


def tier(name: str):
    return as_hardware(program("ResNet18").hardware[name])


# ---------------------------------------------------------------------------
# MACs of the example networks

def _ref_macs(net: str) -> int:
    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        import refmodels
    finally:
        sys.path.pop(0)
    build = {"ResNet18": refmodels.resnet18, "ResNet50": refmodels.resnet50, "VGG16": refmodels.vgg16,
             "MobileNetV2": refmodels.mobilenet_v2}[net]
    with torch.device("meta"):  # no allocation, no arithmetic
        model = build()
    return refmodels.count_macs(model, (1, 3, 224, 224))


@pytest.mark.parametrize("net", list(NETS))
def test_conv_linear_macs_of_the_examples(net):
    rep = report(net, "TPUv1")
    macs = conv_linear_macs(rep)
    assert macs == conv_linear_macs(rep.cost)
    # the published figure (in GMAC to 3 decimals), and to 4 significant digits
    assert round(macs / 1e9, 3) == NETS[net][1]
    assert f"{macs / 1e9:.4g}" == NETS[net][2]
    # exactly the hooks' count on the hand-written torchvision-layout model
    assert macs == _ref_macs(net)
    # pooling, adds and activations are costed but are not conv/linear MACs
    assert rep.macs > macs
    assert all(o.cost.kind == "conv" for o in rep.cost.ops if o.cost.kind not in
               ("pool", "eltwise", "copy", "reduce"))


def test_conv_linear_macs_scale_with_batch():
    assert conv_linear_macs(report("ResNet18", "TPUv1", 2)) == 2 * conv_linear_macs(report("ResNet18", "TPUv1"))


# ---------------------------------------------------------------------------
# small layers through the compiler, by hand

TINY = """evo 0.1
network One(x: Tensor[N, 2, 6, 6]) {
    return conv2d(x, 4, 3, padding=1, bias=false)
}
network Pointwise(x: Tensor[N, 8, 4, 4]) {
    return conv2d(x, 4, 1, bias=false)
}
network Strided(x: Tensor[N, 2, 6, 6]) {
    return conv2d(x, 4, 1, stride=2, bias=false)
}
network Chain(x: Tensor[N, 2, 6, 6]) {
    c = conv2d(x, 4, 3, padding=1, bias=false)
    return relu(batchnorm2d(c))
}
hardware Tiny {
    frequency = 100 MHz
    pes = 1
    macs_per_pe = 1
    word = 16 bit
    mac_energy = 1 pJ
    offchip DRAM { bandwidth = 1 GB/s; energy = 100 pJ/B }
    global GLB { size = 64 KiB; bandwidth = 64 B/cycle; energy = 10 pJ/B }
    pe Spad { size = 4 KiB; bandwidth = 64 B/cycle; energy = 1 pJ/B }
}
hardware TinySlow extends Tiny {
    offchip DRAM { bandwidth = 10 MB/s; energy = 100 pJ/B }
}
hardware TinyArray extends Tiny {
    pes = 2
    macs_per_pe = 2
}
"""
F = 100e6          # Hz
WB = 2             # bytes per 16-bit word
E_OFF, E_GLB, E_PE, E_MAC = 100 * pJ, 10 * pJ, 1 * pJ, 1 * pJ


@pytest.fixture(scope="module")
def tiny():
    return evo.compile(TINY, "<tiny>")


def only_op(rep):
    assert len(rep.cost.ops) == 1
    return rep.cost.ops[0].cost


@pytest.mark.parametrize("batch", [1, 2])
def test_hand_3x3_conv_compute_bound(tiny, batch):
    c = only_op(tiny.cost("One", hardware="Tiny", batch=batch))
    # MACs = N * K * P * Q * C * R * S = N * 4 * 6 * 6 * 2 * 3 * 3 = 2592 N
    macs = batch * 4 * 6 * 6 * 2 * 3 * 3
    assert c.macs == macs
    # the GLB (64 KiB) holds everything: every tensor crosses off-chip once (padding is
    # never fetched): input N*2*6*6, weights 4*2*3*3 (once for the batch), output N*4*6*6
    words = batch * 72 + 72 + batch * 144
    assert c.offchip_bytes == words * WB == c.compulsory_offchip_bytes
    # one PE, one MAC per cycle: compute 2592 N cycles = 25.92 N us at 100 MHz; DRAM
    # 576 B / 1 GB/s = 0.58 us (batch 1) -- compute bound
    assert c.bound == "compute"
    assert c.cycles == pytest.approx(macs, rel=1e-12)
    assert close(c.latency_s, macs / F)
    # energy: off-chip bytes x 100 pJ/B, MACs x 1 pJ; the GLB sees every off-chip byte
    # once more on its way to the PE, the scratchpad at least the fills plus 4 operand
    # accesses of 2 B per MAC
    assert close(c.energy.offchip, words * WB * E_OFF)
    assert close(c.energy.mac, macs * E_MAC)
    assert c.energy.glb >= 2 * words * WB * E_GLB * (1 - 1e-12)
    assert c.energy.pe >= (words * WB + 4 * WB * macs) * E_PE * (1 - 1e-12)
    assert close(c.energy_j, c.energy.offchip + c.energy.glb + c.energy.pe + c.energy.mac)


def test_hand_bandwidth_bound(tiny):
    c = only_op(tiny.cost("One", hardware="TinySlow"))
    # 576 B at 10 MB/s = 57.6 us > 25.92 us of compute: 5760 cycles, off-chip bound
    assert c.bound == "offchip"
    assert close(c.latency_s, 576 / 10e6)
    assert c.cycles == pytest.approx(5760, rel=1e-12)
    assert c.offchip_bytes == 576


def test_hand_pe_array(tiny):
    c = only_op(tiny.cost("One", hardware="TinyArray"))
    # 2 PEs x 2 MACs: ceil(2592 / 4) = 648 cycles (K = 4 splits evenly over the PEs)
    assert c.cycles == pytest.approx(math.ceil(2592 / (2 * 2)), rel=1e-12)
    assert c.utilization == pytest.approx(1.0)
    assert c.offchip_bytes == 576


@pytest.mark.parametrize("batch", [1, 2])
def test_hand_pointwise_energy_total(tiny, batch):
    c = only_op(tiny.cost("Pointwise", hardware="Tiny", batch=batch))
    # 1x1 conv, 8 -> 4 channels on 4x4: MACs = N * 4 * 16 * 8 = 512 N
    macs = 512 * batch
    # input N*8*16 = 128 N, weights 4*8 = 32, output N*4*16 = 64 N words
    b = (128 * batch + 32 + 64 * batch) * WB
    assert c.macs == macs and c.offchip_bytes == b
    assert close(c.latency_s, macs / F)       # 512 N cycles; 448 B at 1 GB/s is 0.45 us
    # no halo, one PE whose scratchpad (4 KiB) holds everything: every byte crosses each
    # boundary exactly once.  E = B*e_off + (B in + B out of the GLB)*e_glb
    #   + (B of fills + 4 operand accesses x 2 B per MAC)*e_pe + MACs*e_mac
    # batch 1: 448*100 + 896*10 + (448 + 4096)*1 + 512 = 58816 pJ
    expected = b * E_OFF + 2 * b * E_GLB + (b + 4 * WB * macs) * E_PE + macs * E_MAC
    assert close(c.energy_j, expected, 1e-9)
    if batch == 1:
        assert close(c.energy_j, 58816 * pJ, 1e-9)


def test_hand_strided_pointwise_reads_a_quarter(tiny):
    c = only_op(tiny.cost("Strided", hardware="Tiny"))
    # 1x1 stride 2 on 6x6 -> 3x3: MACs 4*9*2 = 72; it reads rows/cols 0, 2, 4 only:
    # input 2*3*3 = 18, weights 8, output 36 words = 124 B
    assert c.macs == 72
    assert c.offchip_bytes == (18 + 8 + 36) * WB == 124


def test_hand_conv_bn_relu_is_one_op(tiny):
    rep = tiny.cost("Chain", hardware="Tiny")
    # mark_fusion folds batchnorm and relu into the conv's output path: one costed op,
    # same MACs and traffic as the bare convolution
    c = only_op(rep)
    bare = only_op(tiny.cost("One", hardware="Tiny"))
    assert (c.macs, c.offchip_bytes, c.latency_s) == (bare.macs, bare.offchip_bytes, bare.latency_s)
    assert rep.params == 72 + 2 * 4   # conv weights + batchnorm weight and bias


# ---------------------------------------------------------------------------
# properties over the example networks on every example tier

def _tensor_bytes(w, hw, roles) -> float:
    word = (w.word_bits or hw.word_bits) / 8
    return sum(t.elements for t in w.tensors if t.role in roles) * word


@pytest.mark.parametrize("tier_name", TIERS)
def test_bounds_and_fusion_on_every_tier(tier_name):
    hw = tier(tier_name)
    for net in NETS:
        rep = report(net, tier_name)
        work = {name: w for name, w, _ in graph_ops(program(net).graph(net), 1)}
        assert [o.name for o in rep.cost.ops] == list(work)
        for o in rep.cost.ops:
            w = work[o.name]
            for c in (o.cost, o.unfused):
                # the model's own bounds
                assert c.offchip_bytes >= c.compulsory_offchip_bytes * (1 - 1e-9), (net, o.name)
                assert c.latency_s >= c.roofline_latency_s * (1 - 1e-9), (net, o.name)
                # independent bounds: the peak MAC rate; weights always come from off-chip
                assert c.latency_s >= c.macs / hw.peak_macs_per_s * (1 - 1e-9)
                assert c.offchip_bytes >= _tensor_bytes(w, hw, ("weight",)) * (1 - 1e-9)
            if not getattr(w, "view", False):
                # unfused: every output is written off-chip
                least = _tensor_bytes(w, hw, ("weight", "output"))
                assert o.unfused.offchip_bytes >= least * (1 - 1e-9), (net, o.name)
                assert o.unfused.latency_s >= least / hw.offchip.bandwidth_bps * (1 - 1e-9)
        net_cost = rep.cost
        assert net_cost.offchip_bytes <= net_cost.unfused_offchip_bytes * (1 + 1e-12)
        assert net_cost.latency_s <= net_cost.unfused_latency_s * (1 + 1e-12)   # objective = latency
        unfused = cost_graph(program(net).graph(net), hw, fuse=False)
        assert close(unfused.offchip_bytes, net_cost.unfused_offchip_bytes, 1e-9)
        assert net_cost.offchip_bytes <= unfused.offchip_bytes * (1 + 1e-12)
        assert net_cost.fused_edges, f"{net} on {tier_name}: nothing fused"


# monotonicity: one network per tier by default (each network on at least one tier)
_ROTATION = dict(zip(TIERS, ["ResNet18", "MobileNetV2", "VGG16", "ResNet50", "MobileNetV2", "ResNet18"]))


def _bigger(hw):
    yield "global memory x2", hw.with_level("global", size_bytes=hw.glb.size_bytes * 2)
    yield "off-chip bandwidth x2", hw.with_level("offchip", bandwidth_bps=hw.offchip.bandwidth_bps * 2)
    yield "PEs x2", dataclasses.replace(hw, pes=hw.pes * 2)


@pytest.mark.parametrize("tier_name", TIERS)
def test_more_resources_never_slow_an_op_down(tier_name):
    hw = tier(tier_name)
    nets = list(NETS) if FULL else [_ROTATION[tier_name]]
    work = {}
    for net in nets:
        for name, w, _ in graph_ops(program(net).graph(net), 1):
            work.setdefault(w, f"{net}:{name}")
    for what, big in _bigger(hw):
        for w, name in work.items():
            base, more = cost_op(w, hw), cost_op(w, big)
            assert more.latency_s <= base.latency_s * (1 + 1e-12), (tier_name, what, name)


# ---------------------------------------------------------------------------
# CAM strategies

CAMS = """evo 0.1
import "resnet18.evo"
import "hardware.evo"
cam L3 {
    network = ResNet18
    layer = layer3
    method = gradcam
    class = top1
    strategy = auto
}
target Explained {
    network = ResNet18
    cam = L3
    hardware = Eyeriss
    batch = 1
    fps = 0.5
}
"""


@pytest.fixture(scope="module")
def cams():
    return evo.compile(CAMS, "<cams>", base_dir=EX)


def test_cam_affine_head_compiled_is_cheapest(cams):
    g = cams.graph("ResNet18")
    ex = cam_costs(g, cams.cams["Explain"], cams.hardware["Eyeriss"])   # layer4: avgpool + fc, folds
    lat = {s: v["extra_latency_s"] for s, v in ex.items()}
    assert set(lat) == {"compiled", "autograd", "forward"}
    assert 0 < lat["compiled"] < lat["autograd"] < lat["forward"]
    assert 0 < ex["compiled"]["extra_energy_j"] < ex["autograd"]["extra_energy_j"]


def test_cam_non_affine_layer_costs_all_positive(cams):
    g = cams.graph("ResNet18")
    ex = cam_costs(g, cams.cams["L3"], cams.hardware["Eyeriss"])          # layer3: through layer4
    assert set(ex) == {"compiled", "autograd", "forward"}
    for v in ex.values():
        assert v["extra_latency_s"] > 0 and v["extra_energy_j"] > 0
    # nothing folds: the compiled gradient is autograd's backward, emitted as ops
    assert close(ex["compiled"]["extra_latency_s"], ex["autograd"]["extra_latency_s"], 1e-9)
    # more than the affine case: a backward through layer4
    l4 = cam_costs(g, cams.cams["Explain"], cams.hardware["Eyeriss"])
    assert ex["compiled"]["extra_latency_s"] > l4["compiled"]["extra_latency_s"]


@pytest.mark.parametrize("cam", ["Explain", "L3"])
def test_auto_picks_the_cheapest(cams, cam):
    g, spec, hw = cams.graph("ResNet18"), cams.cams[cam], cams.hardware["Eyeriss"]
    ex = cam_costs(g, spec, hw)
    best = min(v["extra_latency_s"] for v in ex.values())
    full = explainer_cost(g, spec, hw)
    assert full["strategy"] in ex and ex[full["strategy"]]["extra_latency_s"] == best
    assert cheapest_strategy(g, spec, hw)[0] == full["strategy"] == pick_strategy(ex)
    assert full["strategy"] == "compiled"        # cheapest, or tied with autograd (preferred)
    assert close(full["latency_s"], full["inference_latency_s"] + best)


def test_pick_strategy_by_objective_and_ties():
    ex = {"autograd": {"extra_latency_s": 1.0, "extra_energy_j": 1.0},
          "compiled": {"extra_latency_s": 1.0, "extra_energy_j": 2.0},
          "forward": {"extra_latency_s": 3.0, "extra_energy_j": 0.5}}
    assert pick_strategy(ex, "latency") == "compiled"     # tie: compiled first
    assert pick_strategy(ex, "energy") == "forward"
    assert pick_strategy(ex, "edp") == "autograd"         # 1.0 < 1.5 < 2.0


def test_codegen_auto_consults_the_cost_model(cams):
    from evo.compilation import choose_strategy

    g, spec, hw = cams.graph("ResNet18"), cams.cams["L3"], cams.hardware["Eyeriss"]
    strategy, why = choose_strategy(g, spec, hardware=hw)
    assert strategy == cheapest_strategy(g, spec, hw)[0]
    assert "Eyeriss" in why


# ---------------------------------------------------------------------------
# the command line

def run_cli(capsys, *argv):
    try:
        rc = evoc(["cost", *map(str, argv)])
    except SystemExit as e:     # argparse's own errors
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cost")
    one = d / "r18.evo"
    one.write_text(f'evo 0.1\nimport "{EX / "resnet18.evo"}"\nimport "{EX / "hardware.evo"}"\n')
    two = d / "two.evo"
    two.write_text(f'evo 0.1\nimport "{EX / "resnet18.evo"}"\nimport "{EX / "vgg16.evo"}"\n'
                   f'import "{EX / "hardware.evo"}"\n')
    big = d / "batch.evo"   # the quickstart with a batched target and a tight one
    big.write_text(f'evo 0.1\nimport "{EX / "quickstart.evo"}"\n'
                   "target Batched {\n network = QuickNet\n cam = Shapes\n hardware = EdgeNPU\n"
                   " batch = 400\n fps = 30\n}\n"
                   "target Tight {\n network = QuickNet\n cam = Shapes\n hardware = EdgeNPU\n"
                   " batch = 1\n fps = 1000000\n}\n")
    return {"r18": one, "two": two, "batch": big, "dir": d}


def test_cli_table_quickstart_target_meets_budget(capsys):
    rc, out, err = run_cli(capsys, EX / "quickstart.evo")
    assert rc == 0, err
    assert out.startswith("QuickNet on EdgeNPU, batch 1, objective latency")
    for s in ("features.0", "conv", "total", "bounds:", "fusion:", "cam Shapes: strategy compiled"):
        assert s in out
    budget = [ln for ln in out.splitlines() if ln.startswith("budget:")]
    assert len(budget) == 1 and "30 fps" in budget[0] and budget[0].endswith("meets the budget")


def test_cli_budget_uses_the_batch_and_the_explainer(capsys, files):
    rc, out, _ = run_cli(capsys, files["batch"], "--target", "Batched")
    assert rc == 0
    line = next(ln for ln in out.splitlines() if ln.startswith("budget:"))
    assert "per batch of 400" in line and line.endswith("meets the budget")
    rc, out, _ = run_cli(capsys, files["batch"], "--target", "Tight", "--format", "json")
    d = json.loads(out)
    assert d["meets_budget"] is False and d["fps_budget"] == 1e6
    assert d["fps"] > d["batch"] / d["cam"]["latency_s"]    # the explained fps is what counts
    rc, out, _ = run_cli(capsys, files["batch"], "--target", "Tight")
    assert next(ln for ln in out.splitlines() if ln.startswith("budget:")).endswith("MISSES the budget")


def test_cli_auto_with_target_names_the_cheapest(capsys, cams, tmp_path):
    f = tmp_path / "cams.evo"
    f.write_text(CAMS.replace('import "', f'import "{EX}/'))
    rc, out, _ = run_cli(capsys, f, "--format", "json")
    assert rc == 0
    d = json.loads(out)
    assert d["cam"]["strategy"] == pick_strategy(d["cam"]["strategies"]) == "compiled"
    assert d["meets_budget"] is True      # 0.5 fps on Eyeriss


def test_cli_formats_and_plot_on_an_example(capsys, files, tmp_path):
    r18 = files["r18"]
    rc, table, err = run_cli(capsys, r18, "--hardware", "Eyeriss")
    assert rc == 0, err
    assert "ResNet18 on Eyeriss" in table and "layer4.1.conv2" in table and "budget:" not in table
    rc, js, _ = run_cli(capsys, r18, "--hardware", "Eyeriss", "--format", "json")
    d = json.loads(js)
    assert d["network"] == "ResNet18" and d["hardware"] == "Eyeriss" and d["params"] == 11_689_512
    assert d["cost"]["totals"]["macs"] == report("ResNet18", "Eyeriss").macs
    rc, text, _ = run_cli(capsys, r18, "--hardware", "Eyeriss", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["name"] for r in rows[:-1]] == [o.name for o in report("ResNet18", "Eyeriss").cost.ops]
    assert rows[-1]["name"] == "total"
    assert sum(int(r["macs"]) for r in rows[:-1]) == int(rows[-1]["macs"]) == d["cost"]["totals"]["macs"]
    png = tmp_path / "cost.png"
    out = tmp_path / "sub" / "cost.json"
    rc, stdout, err = run_cli(capsys, r18, "--hardware", "Eyeriss", "--format", "json", "--plot", png, "-o", out)
    assert rc == 0 and stdout == "" and "plot written" in err
    assert json.loads(out.read_text()) == d
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    from PIL import Image

    with Image.open(png) as im:
        assert im.size[0] > 100 and im.size[1] > 100


@pytest.mark.parametrize("args, message", [
    (("{r18}", "--network", "ResNet19", "--hardware", "Eyeriss"), "no network named 'ResNet19'"),
    (("{r18}", "--hardware", "Eyeris"), "no hardware named 'Eyeris'; did you mean 'Eyeriss'?"),
    (("{r18}",), "several hardwares"),
    (("{two}", "--hardware", "Eyeriss"), "several networks (ResNet18, VGG16); choose one with --network"),
    ((str(EX / "resnet18.evo"),), "declares no hardware"),
    ((str(EX / "quickstart.evo"), "--target", "Edg"), "no target named 'Edg'"),
    ((str(EX / "quickstart.evo"), "--target", "Edge", "--hardware", "TPU"), "no hardware named 'TPU'"),
    ((str(EX / "quickstart.evo"), "--batch", "0"), "--batch must be at least 1"),
    ((str(EX / "quickstart.evo"), "--objective", "speed"), "invalid choice"),
    (("{dir}/missing.evo",), "no such file"),
])
def test_cli_usage_errors_exit_2(capsys, files, args, message):
    rc, out, err = run_cli(capsys, *[a.format(**files) for a in args])
    assert rc == 2
    assert message in err and "evoc: error:" in err
    assert "Traceback" not in err and "internal error" not in err and out == ""


def test_cli_subprocess_end_to_end(files):
    entry = "import sys; from evo.cli import main; sys.exit(main())"   # what the `evoc` script runs
    p = subprocess.run([sys.executable, "-c", entry, "cost", str(files["two"]), "--hardware", "Eyeriss"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert p.returncode == 2 and "choose one with --network" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run([sys.executable, "-c", entry, "cost", str(EX / "quickstart.evo"), "--format", "csv"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0].startswith("name,kind,macs,latency_s")


def test_cli_python_m_usage_error():
    p = subprocess.run([sys.executable, "-m", "evo.cli", "cost", str(EX / "resnet18.evo")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert p.returncode == 2 and "internal error" not in p.stderr


# ---------------------------------------------------------------------------
# the API agrees with the command line

def test_prog_cost_matches_cli_json(capsys, files):
    rc, out, _ = run_cli(capsys, EX / "quickstart.evo", "--network", "QuickNet", "--hardware", "EdgeNPU",
                         "--format", "json")
    assert rc == 0
    prog = evo.compile_file(EX / "quickstart.evo")
    rep = prog.cost("QuickNet", hardware="EdgeNPU", batch=1, objective="latency")
    assert json.loads(out) == json.loads(rep.to_json())
    assert rep.metrics["latency"] == json.loads(out)["cost"]["totals"]["latency_s"] == rep.latency_s

    # the target: the same network cost, plus the explainer and the budget
    rc, out, _ = run_cli(capsys, EX / "quickstart.evo", "--format", "json")
    d = json.loads(out)
    assert d["cost"] == json.loads(rep.to_json())["cost"]
    cam = explainer_cost(prog.graph("QuickNet"), prog.cams["Shapes"], prog.hardware["EdgeNPU"])
    assert d["cam"] == json.loads(json.dumps(cam))
    assert d["meets_budget"] is True and d["fps_budget"] == 30

    # other batch sizes and objectives
    rc, out, _ = run_cli(capsys, files["r18"], "--hardware", "TPUv1", "--batch", "2", "--objective", "energy",
                         "--format", "json")
    rep2 = program("ResNet18").cost("ResNet18", hardware="TPUv1", batch=2, objective="energy")
    assert json.loads(out) == json.loads(rep2.to_json())
    assert rep2.objective == "energy" and rep2.batch == 2


def test_prog_cost_errors():
    prog = program("ResNet18")
    with pytest.raises(evo.EvoError, match="no hardware named"):
        prog.cost("ResNet18", hardware="Nope")
    with pytest.raises(evo.EvoError, match="no network named"):
        prog.cost("Nope", hardware="Eyeriss")
    with pytest.raises(ValueError):
        prog.cost("ResNet18", hardware="Eyeriss", batch=0)


# ---------------------------------------------------------------------------
# gradient-free CAM methods: forwards only, no backward (issue 13)

FREE = TINY + """
network Small(x: Tensor[N, 3, 8, 8]) {
    stem = relu(conv2d(x, 8, 3, padding=1))
    pool = adaptive_avgpool2d(stem, 1)
    return linear(flatten(pool), 4)
}
network HeadOnly(x: Tensor[N, 8, 8, 8]) {
    pool = adaptive_avgpool2d(x, 1)
    return linear(flatten(pool), 4)
}
""" + "".join(f"cam {m.capitalize()} {{\n network = Small\n layer = stem\n method = {m}\n{extra}}}\n"
              for m, extra in (("scorecam", ""), ("iscam", " samples = 3\n"), ("sscam", " samples = 2\n"),
                               ("ablationcam", ""), ("reciprocam", ""), ("eigencam", ""), ("kpcacam", ""),
                               ("fem", ""), ("randomcam", ""), ("cam", ""), ("gradcam", "")))


@pytest.mark.parametrize("batch", [1, 3])
def test_gradient_free_methods_cost_their_forwards_only(batch):
    """scorecam runs C = 8 network forwards per image, iscam 8 x 3 and sscam 8 x 2;
    ablationcam 8 + 1 (the unablated score) and reciprocam 8*8 = 64 forwards of the head
    (avgpool + linear), as the runtime runs them (test_free_passes_are_what_the_runtime_runs);
    eigencam, kpcacam, fem, randomcam and cam nothing more: no backward pass, no
    strategy.  The head's cost is that of a network made of the head alone, at
    batch count x B; the work estimate counts the same passes in MACs."""
    from evo.cam_work import estimate

    prog = evo.compile(FREE, "<free>")
    g, hw = prog.graph("Small"), prog.hardware["Tiny"]
    base = cost_graph(g, hw, batch)
    head = prog.graph("HeadOnly")
    network_forwards = {"Scorecam": 8, "Iscam": 24, "Sscam": 16}
    head_forwards = {"Ablationcam": 9, "Reciprocam": 64}
    for cam in ("Scorecam", "Iscam", "Sscam", "Ablationcam", "Reciprocam", "Eigencam", "Kpcacam", "Fem",
                "Randomcam", "Cam"):
        c = explainer_cost(g, prog.cams[cam], hw, batch)
        assert c["strategy"] == "none" and c["strategies"] == {}, cam
        n = network_forwards.get(cam, 0)
        extra = n * base.latency_s
        extra_e = n * base.energy_j
        if cam in head_forwards:
            h = cost_graph(head, hw, batch * head_forwards[cam])
            extra, extra_e = h.latency_s, h.energy_j
        assert close(c["latency_s"], base.latency_s + extra, 1e-9), cam
        assert close(c["energy_j"], base.energy_j + extra_e, 1e-9), cam
        # the work estimate, per image in MACs: conv 8*8 * 8 * 3*3*3 = 13,824, the pooling's
        # 8 * 64 = 512 adds, linear 8*4 = 32; the head is the pooling and the linear layer
        w = estimate(g, prog.cams[cam], "none")
        total, hm = 13824 + 512 + 32, 512 + 32
        assert w.inference_macs == total
        ratio = 1 + (n * total + head_forwards.get(cam, 0) * hm) / total
        assert w.ratio == pytest.approx(ratio, rel=1e-12), cam
    # a gradient method still has its strategies (and a backward for autograd)
    g_cost = explainer_cost(g, prog.cams["Gradcam"], hw, batch)
    assert set(g_cost["strategies"]) >= {"compiled", "autograd"}


def test_free_passes_are_what_the_runtime_runs():
    """The passes the cost model and the work estimate count (free_passes) are those the generated
    explainer runs: forward hooks count the rows through the network's first layer (the conv: whole
    network forwards) and its last (the linear: network and head forwards) while each gradient-free
    method explains a batch of 2; one of each is the inference itself."""
    import torch
    from torch import nn

    from evo.cam_methods import free_passes

    prog = evo.compile(FREE, "<free>")
    g = prog.graph("Small")
    model = prog.build("Small").eval()
    rows: dict[str, int] = {}
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.register_forward_hook(lambda mod, i, o, k=type(m).__name__: rows.__setitem__(k, rows.get(k, 0) + i[0].shape[0]))
    x = torch.randn(2, 3, 8, 8)
    for cam in ("Scorecam", "Iscam", "Sscam", "Ablationcam", "Reciprocam", "Eigencam", "Kpcacam", "Fem", "Randomcam"):
        rows.clear()
        prog.explainer(cam, model)(x)
        passes = free_passes(g, prog.cams[cam])
        network = sum(p.count for p in passes if p.scope == "network")
        head = sum(p.count for p in passes if p.scope == "head")
        assert rows == {"Conv2d": 2 * (1 + network), "Linear": 2 * (1 + network + head)}, (cam, rows, passes)


GRAD = FREE + "".join(f"cam {m.capitalize()} {{\n network = Small\n layer = {layer}\n method = {m}\n}}\n"
                      for m, layer in (("hirescam", "stem"), ("finercam", "stem"), ("shapleycam", "stem"),
                                       ("smoothgradcampp", "stem"), ("fullgrad", "stem"))) \
    + "cam AtInput {\n network = Small\n layer = x\n method = gradcam\n}\n"


@pytest.mark.parametrize("batch", [1, 2])
def test_gradient_methods_cost_what_they_run(batch):
    """Each gradient method's strategies cost the passes the runtime runs, summed here from the
    head alone (HeadOnly at batch tangents x B) and the weighted sum of the maps (K x h*w x C MACs per
    image): gradcam's forward strategy is C = 8 head JVPs plus that sum (as before); finercam needs
    channel means too (the same 8 JVPs, was 8*8*8 element tangents); shapleycam's Hessian-vector
    product doubles the JVPs (its folded compiled gradient has a zero Hessian: the same as gradcam's);
    smoothgradcampp runs its 4 noisy samples, each an inference and hirescam's gradient work;
    fullgrad's gradient is the whole network's backward to the input: gradcam at the input `x` less
    its combining steps (the gradient's reduction to weights and the weighted sum), and it has no
    forward strategy (the runtime refuses it)."""
    from evo.cost.model import cost_network
    from evo.cost.workload import MatmulWorkload, ReduceWorkload

    prog = evo.compile(GRAD, "<grad>")
    g, hw = prog.graph("Small"), prog.hardware["Tiny"]
    hwc = as_hardware(hw)
    cost = {cam: cam_costs(g, prog.cams[cam], hw, batch)
            for cam in ("Gradcam", "Hirescam", "Finercam", "Shapleycam", "Smoothgradcampp", "Fullgrad", "AtInput")}
    lat = {cam: {s: v["extra_latency_s"] for s, v in c.items()} for cam, c in cost.items()}
    head = cost_graph(prog.graph("HeadOnly"), hw, batch * 8).latency_s
    wsum = cost_network([("cam:sum", MatmulWorkload(1, 64, 8, batch=batch), ())], hwc, "latency").latency_s
    assert close(lat["Gradcam"]["forward"], head + wsum, 1e-9)
    assert close(lat["Finercam"]["forward"], head + wsum, 1e-9)
    assert close(lat["Shapleycam"]["forward"], 2 * head + wsum, 1e-9)
    assert close(lat["Shapleycam"]["compiled"], lat["Gradcam"]["compiled"], 1e-9)
    base = cost_graph(g, hw, batch)
    for s in ("compiled", "autograd", "forward"):
        for key, inf in (("extra_latency_s", base.latency_s), ("extra_energy_j", base.energy_j)):
            assert close(cost["Smoothgradcampp"][s][key], 4 * (inf + cost["Hirescam"][s][key]), 1e-9), (s, key)
    assert set(lat["Fullgrad"]) == {"compiled", "autograd"}
    combine = cost_network([("cam:weights", ReduceWorkload(batch * 3, 64, 1), ()),
                            ("cam:sum", MatmulWorkload(1, 64, 3, batch=batch), ("cam:weights",))],
                           hwc, "latency").latency_s
    for s in ("compiled", "autograd"):
        assert close(lat["Fullgrad"][s] + combine, lat["AtInput"][s], 1e-9), s


def test_a_note_shared_by_many_ops_is_printed_once_with_their_count():
    """Ops that get the same note (a ViT's layer norms all stream from the global buffer on a tier
    whose PE memory holds no tile) share one note line naming the first three and counting the
    rest; the JSON keeps each op's own notes."""
    from evo.cost.report import format_table, grouped_notes

    prog = evo.compile(EX_SRC_NOTES)
    net = prog.cost("Norms", "Tiny").cost
    per_op = {}
    for o in net.ops:
        for n in o.cost.notes:
            per_op.setdefault(n, []).append(o.name)
    streaming = [n for n in per_op if n.startswith("no tile fits")]
    assert len(streaming) == 1 and len(per_op[streaming[0]]) == 5  # the five layernorms
    names = per_op[streaming[0]]
    table = format_table(net)
    lines = [ln for ln in table.splitlines() if ln.startswith("note:") and streaming[0] in ln]
    assert lines == [f"note: {names[0]}, {names[1]}, {names[2]} and 2 more ops: {streaming[0]}"]
    assert grouped_notes(net, shown=5) == [(", ".join(names), streaming[0])] + [
        (", ".join(v), k) for k, v in per_op.items() if k != streaming[0] and not k.startswith("view")]


EX_SRC_NOTES = """evo 0.1

network Norms(x: Tensor[N, 16, 32]) {
    a = layernorm(x)
    b = layernorm(a)
    c = layernorm(b)
    d = layernorm(c)
    e = layernorm(d)
    return e
}

hardware Tiny {
    frequency = 100 MHz
    pes = 4
    word = 8 bit
    mac_energy = 1 pJ
    offchip DRAM { bandwidth = 1 GB/s; energy = 100 pJ/B }
    global GLB { size = 64 KiB; bandwidth = 16 B/cycle; energy = 2 pJ/B }
    pe Spad { size = 2 B; bandwidth = 2 B/cycle; energy = 0.1 pJ/B }
}
"""


def test_cli_constraints_fix_an_ops_mapping(capsys, tmp_path):
    """`evoc cost --constraints FILE.json`: the op's mapping is pinned as the Python API pins it
    (the same report), the others are as free as without the file."""
    from evo.cost import MappingConstraints

    f = tmp_path / "fix.json"
    f.write_text(json.dumps({"features.0": {"spatial": {"K": 4}, "glb_tile": {"C": 1}}}))
    rc, out, err = run_cli(capsys, EX / "quickstart.evo", "--constraints", f, "--format", "json")
    assert rc == 0, err
    prog = evo.compile_file(EX / "quickstart.evo")
    fixed = prog.cost("QuickNet", "EdgeNPU", constraints={"features.0": MappingConstraints.of(
        spatial={"K": 4}, glb_tile={"C": 1})})
    got = json.loads(out)["cost"]
    assert got == json.loads(fixed.to_json())["cost"]
    free = json.loads(prog.cost("QuickNet", "EdgeNPU").to_json())["cost"]
    pinned = {o["name"]: o for o in got["ops"]}
    others = {o["name"]: o for o in free["ops"]}
    assert pinned["features.0"] != others["features.0"]
    assert json.dumps(pinned["features.0"]).count("K4") >= 1


@pytest.mark.parametrize("text, words", [
    ('{"features.9": {"spatial": {"K": 4}}}', "network QuickNet has no op 'features.9'"),
    ('{"features.0": {"spatial": {"Z": 4}}}', "this conv nest's dims are N, G, K, C, P, Q, R, S"),
    ('{"features.0": {"spatial": {"K": 16, "P": 64, "Q": 64}}}', "no unrolling over the PE array satisfies"),
    ('{"features.0": {"spatial": {"K": "4"}}}', "must be a positive integer"),
    ('{"features.0": {"spotial": {"K": 4}}}', 'expected {"spatial"'),
    ('{"flatten": {"spatial": {"E": 2}}}', "it moves data and has no mapping"),
    ('[1]', "expected an object of op names"),
    ('{bad', "not JSON"),
])
def test_cli_constraints_errors_are_usage_errors(capsys, tmp_path, text, words):
    f = tmp_path / "fix.json"
    f.write_text(text)
    rc, out, err = run_cli(capsys, EX / "quickstart.evo", "--constraints", f)
    assert rc == 2 and words in err and "Traceback" not in err and out == ""
    rc, _, err = run_cli(capsys, EX / "quickstart.evo", "--constraints", tmp_path / "missing.json")
    assert rc == 2 and "cannot read it" in err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_cli_constraints_file_is_read_as_program_files_are(capsys, tmp_path):
    """A FIFO is refused at once (not waited on), and a name with escape sequences is printed escaped."""
    fifo = tmp_path / "fix.json"
    os.mkfifo(fifo)
    rc, _, err = run_cli(capsys, EX / "quickstart.evo", "--constraints", fifo)
    assert rc == 2 and "cannot read it" in err and "FIFO" in err
    f = tmp_path / "esc.json"
    f.write_text('{"feat\\u001b[31mX": {}}')
    rc, _, err = run_cli(capsys, EX / "quickstart.evo", "--constraints", f)
    assert rc == 2 and "\x1b" not in err and "feat\\x1b[31mX" in err
