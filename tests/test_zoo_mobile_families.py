"""EfficientNet-B0, EfficientNetV2-S, MobileNetV3-Large/-Small, RegNetY-400MF and
RegNetX-400MF (issue 11): each tiny zoo mirror (tests/zoo/, torchvision's module tree)
is imported with `evoc import`, compiled, loaded with strict=True, gives the mirror's
logits, and its Grad-CAM at the last spatial layer, by every gradient strategy, equals a
hook-and-backward reference on the mirror.  The imported source is short, its repeated
classes are blocks, and `evoc fmt --check` accepts it.

Also the `stochastic_depth(x, p, mode)` op against torchvision's semantics (the mirror's
`tests.zoo.common.stochastic_depth`, written from torchvision.ops): identity in eval,
the same random rows dropped and the survivors rescaled in training."""

from __future__ import annotations

import textwrap

import pytest
import torch
from torch import nn

import evo
from evo import cli
from tests.refcam import reference_cam
from tests.zoo import convnext, densenet, efficientnet, mobilenetv3, regnet, shufflenetv2
from tests.zoo.common import StochasticDepth, stochastic_depth


def _randomized(model: nn.Module) -> nn.Module:
    """Non-trivial batch-norm statistics and affine parameters (fresh ones are the identity)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
            if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def _seeded(make):
    def factory():
        torch.manual_seed(0)
        return _randomized(make())
    return factory


# zero-argument factories `evoc import` calls (tests.test_zoo_mobile_families:<name>)
efficientnet_b0 = _seeded(lambda: efficientnet.efficientnet_b0(10, width_mult=0.25, depth_mult=0.34, stages=4))
efficientnet_v2_s = _seeded(lambda: efficientnet.efficientnet_v2_s(10, width_div=8, depth=2, stages=4))
mobilenet_v3_large = _seeded(lambda: mobilenetv3.mobilenet_v3_large(10, width_mult=0.25, blocks=5))
mobilenet_v3_small = _seeded(lambda: mobilenetv3.mobilenet_v3_small(10, width_mult=0.25, blocks=5))
regnet_y_400mf = _seeded(lambda: regnet.regnet_y_400mf(10, tiny=True))
regnet_x_400mf = _seeded(lambda: regnet.regnet_x_400mf(10, tiny=True))
# (a layer scale of 0.7, not 1e-6, so that the blocks' branches count in the logits and the CAM)
convnext_tiny = _seeded(lambda: convnext.convnext_tiny(10, tiny=True, layer_scale=0.7))
shufflenet_v2_x1_0 = _seeded(lambda: shufflenetv2.shufflenet_v2_x1_0(10, tiny=True))
densenet121 = _seeded(lambda: densenet.densenet121(10, tiny=True))

# name: (network name, last spatial layer, what the source must contain, at most this many lines)
FAMILIES = {
    "efficientnet_b0": ("EfficientNet", "features", ["`block` = seq(x)", "stochastic_depth(`block`, p)",
                                                     "block SqueezeExcitation(x"], 70),
    "efficientnet_v2_s": ("EfficientNet", "features", ["`block` = seq(x)", "stochastic_depth(`block`, p)",
                                                       "block FusedMBConv(x", "block MBConv(x"], 90),
    # InvertedResidual's instances, with and without the expansion conv and squeeze-excitation, are one
    # block: the expansion where the width changes, the squeeze-excitation on a flag (nothing on the
    # module says which instance has it)
    "mobilenet_v3_large": ("MobileNetV3", "features", ["`block` = seq(x)", "block SqueezeExcitation(x",
                                                      "block InvertedResidual(x", "hardswish()",
                                                      "if x.channels != hidden {",
                                                      "if has_squeeze_excitation {"], 60),
    "mobilenet_v3_small": ("MobileNetV3", "features", ["`block` = seq(x)", "block SqueezeExcitation(x",
                                                      "block InvertedResidual(x", "hardswish()",
                                                      "if x.channels != hidden {",
                                                      "if has_squeeze_excitation {"], 60),
    "regnet_y_400mf": ("RegNet", "trunk_output", ["`block1-0` = ", "block SqueezeExcitation(x"], 80),
    "regnet_x_400mf": ("RegNet", "trunk_output", ["`block1-0` = "], 80),
    # LayerNorm2d, Permute and the layer scale: `layernorm2d()`, `permute([...])`, `parameter(...)`
    "convnext_tiny": ("ConvNeXt", "features", ["layer_scale = parameter([x.channels, 1, 1], init=0.7)",
                                               "layernorm2d(eps=1e-6)", "permute([0, 2, 3, 1])",
                                               "stochastic_depth(layer_scale * `block`, p)",
                                               "block CNBlock(x"], 50),
    # the stride-1 split (chunk, its pieces by index) and the channel shuffle (view, transpose, flatten)
    "shufflenet_v2_x1_0": ("ShuffleNetV2", "conv5", ["parts = chunk(x, 2)", "seq(parts[1])",
                                                     "concat(parts[0], branch2)", "transpose(view(concat, [-1, 2, "
                                                     "concat.channels // 2, concat.height, concat.width]), 1, 2)",
                                                     "block InvertedResidual(x"], 60),
    # the dense layer takes the list of previous features and concatenates them first, as torch's
    # does: a block taking a list (`inputs: Tensor[]`); the dense block is torch's loop that appends
    # each layer's output to the list it passes on
    "densenet121": ("DenseNet", "features", ["block _DenseLayer(inputs: Tensor[])", "concat(inputs)",
                                             "features = [x]\n    for i in 1..3 {\n"
                                             "        denselayer{i} = _DenseLayer(features)\n"
                                             "        features = features + [denselayer]\n    }\n"
                                             "    return concat(features)",
                                             "denseblock2 = _DenseBlock(transition1)"], 50),
}


def run_cli(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    c = capsys.readouterr()
    assert "Traceback" not in c.err
    return rc, c.out, c.err


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_imports_loads_strict_and_explains_like_autograd(family, tmp_path, capsys):
    net_name, layer, must, max_lines = FAMILIES[family]
    out = tmp_path / f"{family}.evo"
    rc, _, err = run_cli(capsys, "import", f"tests.test_zoo_mobile_families:{family}", "--input-shape",
                         "1,3,32,32", "-o", out)
    assert rc == 0, err
    src = out.read_text()
    # short and readable: repeated classes are blocks, torch's names quoted where needed
    for text in must:
        assert text in src, text
    assert len(src.splitlines()) <= max_lines, src
    assert src.count("\nblock ") >= (2 if family == "shufflenet_v2_x1_0" else 3)  # (ShuffleNet: one class)
    if family.startswith("mobilenet"):
        assert src.count("\nblock InvertedResidual") == 1, src
    rc, _, err = run_cli(capsys, "fmt", "--check", out)
    assert rc == 0, err

    model = globals()[family]()
    prog = evo.compile(src + textwrap.dedent(f"""
        cam Explain {{
            network = {net_name}
            layer = {layer}
            upsample = none
            normalize = none
        }}
        """))
    net = prog.build(net_name)
    assert list(net.state_dict()) == list(model.state_dict())
    net.load_state_dict(model.state_dict(), strict=True)
    net.eval()
    torch.manual_seed(2)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), rtol=1e-5, atol=1e-5)
        if family == "densenet121":  # the generated dense layer is called with a list, as torch's is
            feats = [torch.randn(2, 8, 8, 8), torch.randn(2, 4, 8, 8)]
            torch.testing.assert_close(net.features.denseblock1.denselayer2(feats),
                                       model.features.denseblock1.denselayer2(feats), rtol=1e-5, atol=1e-5)
    top = model(x).argmax(1)
    want = reference_cam(model, x, model.get_submodule(layer), "gradcam", top)
    assert want.dim() == 3 and want.shape[0] == 2 and (want > 0).any()
    for strategy in ("autograd", "forward", "compiled"):
        res = prog.explainer("Explain", net, strategy=strategy)(x)
        torch.testing.assert_close(res.maps, want, rtol=1e-4, atol=1e-6, msg=strategy)


# ------------------------------------------------------------------------ stochastic depth

SD_PROGRAM = textwrap.dedent("""\
    network Res(x: Tensor[N, 4, 6, 6]) {{
        conv = conv2d(x, 4, 3, padding=1)
        drop = stochastic_depth(conv, {p}, mode="{mode}")
        act = relu(drop + x)
        pool = adaptive_avgpool2d(act, 1)
        fc = linear(flatten(pool), 3)
        return fc
    }}

    cam C {{
        network = Res
        layer = act
        upsample = none
        normalize = none
    }}
    """)


class Res(nn.Module):
    """The hand-written PyTorch reference of SD_PROGRAM (torchvision's StochasticDepth)."""

    def __init__(self, p: float, mode: str):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.drop = StochasticDepth(p, mode)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        a = torch.relu(self.drop(self.conv(x)) + x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(a, 1), 1))


@pytest.mark.parametrize("p, mode", [(0.5, "row"), (0.3, "batch"), (0.0, "row"), (1.0, "row"), (1.0, "batch")])
def test_stochastic_depth_has_torchvisions_semantics(p, mode):
    prog = evo.compile(SD_PROGRAM.format(p=p, mode=mode))
    net = prog.build("Res")
    ref = Res(p, mode)
    ref.load_state_dict(net.state_dict(), strict=True)
    x = torch.randn(64, 4, 6, 6)
    # eval: the identity
    net.eval()
    ref.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref(x), rtol=1e-6, atol=1e-6)
    # training: the same draws as torchvision's, from the same random stream
    net.train()
    ref.train()
    for seed in (0, 1):
        torch.manual_seed(seed)
        got = net(x)
        torch.manual_seed(seed)
        want = ref(x)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    # ... and the op alone is torchvision's function
    y = torch.randn(200, 3, 2, 2)
    torch.manual_seed(3)
    want = stochastic_depth(y, p, mode, True)
    from evo.ops import REGISTRY
    expr = REGISTRY["stochastic_depth"].training({"p": p, "mode": mode}, ["y"], [tuple(y.shape)])
    torch.manual_seed(3)
    got = y if expr is None else eval(expr, {"torch": torch, "y": y})  # noqa: S307 -- the op's own code
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    if 0.0 < p < 1.0 and mode == "row":
        dropped = (got.flatten(1) == 0).all(1)
        assert 0 < int(dropped.sum()) < 200  # whole rows dropped, some kept
        torch.testing.assert_close(got[~dropped], y[~dropped] / (1 - p))


def test_stochastic_depth_explained_and_costed_as_the_identity():
    """The compiled CAM strategy differentiates through stochastic depth exactly as autograd
    (the identity in eval), and the cost model charges it nothing (a view)."""
    prog = evo.compile(SD_PROGRAM.format(p=0.2, mode="row"))
    torch.manual_seed(0)
    net = prog.build("Res").eval()
    x = torch.randn(3, 4, 6, 6)
    maps = {s: prog.explainer("C", net, strategy=s)(x).maps for s in ("autograd", "forward", "compiled")}
    assert (maps["autograd"] > 0).any()
    for s in ("forward", "compiled"):
        torch.testing.assert_close(maps[s], maps["autograd"], rtol=1e-5, atol=1e-7, msg=s)

    from evo.cost import workload as W
    from evo.ops import REGISTRY
    w = REGISTRY["stochastic_depth"].cost(W, {"p": 0.2, "mode": "row"}, [(1, 4, 6, 6)], (1, 4, 6, 6))
    assert isinstance(w, W.CopyWorkload) and w.view


def test_stochastic_depth_imports_from_torchvisions_module_and_formats():
    """A module of torchvision's StochasticDepth class (matched by name and attributes) imports
    as the op with its p and mode; the source passes the formatter unchanged."""
    from evo.frontend.fmt import format_source

    torch.manual_seed(0)
    ref = Res(0.25, "batch").eval()
    src = evo.from_torch(ref, torch.randn(1, 4, 6, 6))
    assert 'stochastic_depth(conv, 0.25, mode="batch")' in src
    assert format_source(src) == src
    net = evo.compile(src).build("Res")
    net.load_state_dict(ref.state_dict(), strict=True)
    net.train()
    ref.train()
    x = torch.randn(16, 4, 6, 6)
    torch.manual_seed(5)
    got = net(x)
    torch.manual_seed(5)
    torch.testing.assert_close(got, ref(x), rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------ the hand-written example

def test_efficientnet_b0_example_is_torchvisions_model_and_costs(capsys):
    """examples/efficientnet_b0.evo, written by hand, is torchvision's EfficientNet-B0: the
    mirror's state_dict loads with strict=True and the logits agree; `evoc cost` costs it
    (with its cam) on the tiers of examples/hardware.evo: 0.39 GMACs as published."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "efficientnet_b0.evo"
    prog = evo.compile_file(path)
    net = prog.build("EfficientNetB0").eval()
    torch.manual_seed(0)
    model = _randomized(efficientnet.efficientnet_b0())
    assert [(k, v.shape) for k, v in net.state_dict().items()] == \
        [(k, v.shape) for k, v in model.state_dict().items()]
    net.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), rtol=1e-4, atol=1e-5)
    rc, out, err = run_cli(capsys, "cost", path, "--format", "json")
    assert rc == 0, err
    import json
    report = json.loads(out)
    assert report["network"] == "EfficientNetB0" and report["hardware"] == "EdgeNPU"
    assert report["params"] == 5_288_548  # torchvision's num_params for EfficientNet_B0_Weights
    assert 0.38e9 < report["cost"]["totals"]["macs"] < 0.40e9  # 0.39 GFLOPS (multiply-adds) published
    assert report["meets_budget"] is True and "Explain" in json.dumps(report["cam"])
    rc, out, err = run_cli(capsys, "cost", path, "--hardware", "Eyeriss")
    assert rc == 0, err
    assert "Eyeriss" in out
