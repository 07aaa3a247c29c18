"""`network N(x: ...) = seq(x) {...}`: a network that is an nn.Sequential (a top-level
PyTorch Sequential mirrored with strict state_dict loading), and CAM layers
named by string paths that start with a stage index."""

from __future__ import annotations

import torch
from torch import nn

import evo
from evo.frontend.fmt import format_source

SRC = """evo 0.1

block Unit(x, c: int) = seq(x) { conv2d(c, 3, padding=1); relu() }

network Plain(x: Tensor[N, 3, 16, 16], classes: int = 5) = seq(x) {
    Unit(8)
    maxpool2d(2)
    Unit(16)
    adaptive_avgpool2d(1)
    flatten()
    linear(classes)
}

cam C {
    network = Plain
    layer = "2"
}
"""


def reference() -> nn.Sequential:
    return nn.Sequential(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()), nn.MaxPool2d(2),
                         nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU()), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(16, 5))


def test_seq_network_mirrors_a_sequential():
    prog = evo.compile(SRC)
    model = prog.build("Plain")
    assert isinstance(model, nn.Sequential)
    ref = reference().eval()
    model.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(model(x), ref(x), atol=1e-6)
    assert prog.graph("Plain").value("2.0") is not None


def test_seq_network_formats_canonically_and_means_the_same():
    assert format_source(SRC) == SRC
    assert evo.compile(format_source(SRC)).compilation.ir_text == evo.compile(SRC).compilation.ir_text


def test_seq_network_explainers_agree():
    prog = evo.compile(SRC)
    model = prog.build("Plain")
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    kw = {"upsample": "none", "normalize": "none"}
    a = prog.explainer("C", model, strategy="autograd", **kw)(x).maps
    c = prog.explainer("C", model, strategy="compiled", **kw)(x).maps
    assert a.shape == (2, 8, 8)
    assert torch.allclose(a, c, atol=1e-6)


def test_seq_network_expression_form_and_errors():
    prog = evo.compile("network N(x: Tensor[N, 4]) = linear(x, 2)\n")
    assert prog.build("N")(torch.ones(1, 4)).shape == (1, 2)
    try:
        evo.compile("network N(x: Tensor[N, 4]) = seq(x) { conv2d(2, 1) }\n")
    except evo.EvoError as e:
        assert e.code == "E0300" and e.line == 1
    else:
        raise AssertionError("a conv on a 2-D input must be refused")
