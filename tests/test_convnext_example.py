"""examples/convnext_tiny.evo, written by hand (issue 11): torchvision's ConvNeXt-Tiny module
tree, checked against the plain-PyTorch mirror in tests/zoo/convnext.py (torchvision's exact
names): the full configuration has torchvision's parameter count, a tiny configuration loads
the mirror's state_dict with strict=True and gives its logits, Grad-CAM of every strategy at
the last spatial layer equals the hook-and-backward reference, and it is costed on every tier
of examples/hardware.evo with the MACs its layers really perform."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import evo
from evo.cost.network import param_count
from tests.refcam import reference_cam
from tests.zoo.convnext import convnext_tiny

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "convnext_tiny.evo"
TINY = {"classes": 10, "width": 8, "d1": 1, "d2": 1, "d3": 1, "d4": 1}
TIERS = ("Eyeriss", "EyerissLPDDR4", "EyerissX4", "EdgeNPU", "TPUv1", "A100")


@pytest.fixture(scope="module")
def prog():
    return evo.compile_file(EXAMPLE)


@pytest.fixture(scope="module")
def tiny_prog(tmp_path_factory):
    """The example with the tiny configuration as its defaults (cams explain the default one)."""
    text = EXAMPLE.read_text()
    head = "classes: int = 1000, width: int = 96, d1: int = 3, d2: int = 3, d3: int = 9, d4: int = 3"
    assert head in text
    tiny = ", ".join(f"{k}: int = {v}" for k, v in TINY.items())
    d = tmp_path_factory.mktemp("convnext")
    (d / "hardware.evo").write_text((EXAMPLE.parent / "hardware.evo").read_text())
    (d / "convnext_tiny.evo").write_text(text.replace(head, tiny))
    return evo.compile_file(d / "convnext_tiny.evo")


@pytest.fixture(scope="module")
def pair(prog):
    mirror = convnext_tiny(10, tiny=True, layer_scale=0.7).eval()
    with torch.no_grad():  # layer norms with non-trivial parameters
        for m in mirror.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + 0.3 * torch.randn_like(m.weight))
                m.bias.copy_(0.2 * torch.randn_like(m.bias))
    model = prog.build("ConvNeXtTiny", **TINY)
    model.load_state_dict(mirror.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    return model, mirror, x


def test_full_configuration_has_torchvisions_parameter_count(prog):
    # torchvision's ConvNeXt_Tiny_Weights.IMAGENET1K_V1: num_params 28,589,128
    assert param_count(prog.compilation.graph("ConvNeXtTiny")) == 28_589_128


def test_source_is_formatted():
    from evo.frontend.fmt import format_source

    text = EXAMPLE.read_text()
    assert format_source(text) == text


def test_loads_the_mirror_and_gives_its_logits(pair):
    model, mirror, x = pair
    assert set(model.state_dict()) == set(mirror.state_dict())
    assert "features.1.0.layer_scale" in model.state_dict()
    with torch.no_grad():
        torch.testing.assert_close(model(x), mirror(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("strategy", ["autograd", "forward", "compiled"])
def test_gradcam_at_the_last_spatial_layer_equals_the_reference(tiny_prog, pair, strategy):
    model, mirror, x = pair
    with torch.no_grad():
        cls = mirror(x).argmax(1)
    ref = reference_cam(mirror, x, mirror.features, "gradcam", cls)
    got = tiny_prog.explainer("Explain", model, strategy=strategy, upsample="none", normalize="none")(x)
    assert got.maps.shape == ref.shape == (2, 7, 7)
    assert float((got.maps - ref).abs().max()) <= 1e-5 * max(1.0, float(ref.abs().max()))


def _mirror_macs(mirror: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of the mirror's convolutions and linear layers, counted with hooks."""
    total = 0

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += out.numel() // out.shape[0] * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            total += out.numel() // out.shape[0] * m.in_features
    hs = [m.register_forward_hook(hook) for m in mirror.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        mirror(x[:1])
    for h in hs:
        h.remove()
    return total


def test_costed_on_every_example_tier(prog, pair):
    model, mirror, x = pair
    want = _mirror_macs(mirror, x)
    for tier in TIERS:
        rep = prog.cost("ConvNeXtTiny", hardware=tier, batch=1, **TINY)
        rows = rep.rows
        conv_macs = sum(r["macs"] for r in rows if r["kind"] == "conv")
        assert conv_macs == want, tier
        assert rep.latency_s > 0 and rep.energy_j > 0
        # the channels-last permutes are data movement (no MACs), one before and one after each MLP
        perm = [r for r in rows if r["name"].endswith(("block.1", "block.6"))]
        assert len(perm) == 8 and all(r["kind"] == "copy" and r["macs"] == 0 for r in perm)
