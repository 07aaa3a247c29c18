"""Dimension and layer-norm ops (issue 11): permute, transpose, reshape/view, narrow, chunk/split,
layernorm over the last dimensions, the channels-first layernorm2d, linear on channels-last
maps, and learnable tensors (`parameter`).  The generated module is checked against the same
computation written by hand in PyTorch, the CAM of every strategy against the autograd
reference (tests/refcam.py), and the shape rules against their diagnostics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import evo
from evo.cost.network import param_count
from tests.refcam import reference_cam

SRC = """
block CN(x, dim: int) {
    dw = conv2d(x, dim, 7, padding=3, groups=dim)
    p1 = permute(dw, [0, 2, 3, 1])
    ln = layernorm(p1, eps=1e-6)
    fc1 = linear(ln, 4 * dim)
    act = gelu(fc1)
    fc2 = linear(act, dim)
    p2 = permute(fc2, [0, 3, 1, 2])
    layer_scale = parameter([dim, 1, 1], init=0.5)
    return layer_scale * p2 + x
}

block Shuffle(x) {
    parts = chunk(x, 2, dim=1)
    b = relu(conv2d(parts[1], x.channels // 2, 1))
    c = concat(parts[0], b)
    v = view(c, [-1, 2, c.channels // 2, c.height, c.width])
    t = transpose(v, 1, 2)
    return reshape(t, [-1, c.channels, c.height, c.width])
}

network Net(x: Tensor[N, 3, 16, 16], classes: int = 5) {
    stem = conv2d(x, 8, 4, stride=4)
    norm = layernorm2d(stem, eps=1e-6)
    b1 = CN(norm, 8)
    s1 = Shuffle(b1)
    pieces = split(s1, [3, 5], dim=1)
    mix = conv2d(concat(pieces[1], pieces[0]), 8, 1)
    pool = adaptive_avgpool2d(mix, 1)
    n2 = layernorm2d(pool)
    fc = linear(flatten(n2), classes)
    return fc
}

cam C { network = Net; layer = mix; method = gradcam }
"""


def _ln2d(x, m, eps):
    return F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), m.weight, m.bias, eps).permute(0, 3, 1, 2)


def _reference(model, x):
    """The network written by hand in PyTorch, on the model's parameters."""
    h = _ln2d(model.stem(x), model.norm, 1e-6)
    b = model.b1
    y = b.dw(h).permute(0, 2, 3, 1)
    y = F.layer_norm(y, (8,), b.ln.weight, b.ln.bias, 1e-6)
    y = b.fc2(F.gelu(b.fc1(y))).permute(0, 3, 1, 2)
    h = b.layer_scale * y + h
    x1, x2 = h.chunk(2, dim=1)
    c = torch.cat((x1, F.relu(model.s1.conv2d_0(x2))), dim=1)
    n, ch, hh, ww = c.shape
    c = torch.transpose(c.view(n, 2, ch // 2, hh, ww), 1, 2).contiguous().view(n, -1, hh, ww)
    p0, p1 = torch.split(c, [3, 5], dim=1)
    m = model.mix(torch.cat((p1, p0), dim=1))
    p = _ln2d(F.adaptive_avg_pool2d(m, 1), model.n2, 1e-5)
    return model.fc(torch.flatten(p, 1))


@pytest.fixture(scope="module")
def net():
    prog = evo.compile(SRC)
    model = prog.build("Net", seed=1)
    with torch.no_grad():  # non-trivial layer-norm parameters
        for name, p in model.named_parameters():
            if name.endswith(("norm.weight", "ln.weight", "n2.weight")):
                p.copy_(1 + 0.3 * torch.randn_like(p))
            elif name.endswith(("norm.bias", "ln.bias", "n2.bias")):
                p.copy_(0.2 * torch.randn_like(p))
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    return prog, model, x


def test_forward_equals_hand_written_pytorch(net):
    prog, model, x = net
    with torch.no_grad():
        assert torch.allclose(model(x), _reference(model, x), atol=1e-5)
    # learnable tensors are parameters under the name they are bound to, with their init value
    sd = model.state_dict()
    assert sd["b1.layer_scale"].shape == (8, 1, 1) and torch.all(sd["b1.layer_scale"] == 0.5)
    assert sd["norm.weight"].shape == (8,) and sd["b1.ln.weight"].shape == (8,) and "b1.fc1.weight" in sd
    assert param_count(prog.compilation.graph("Net")) == sum(p.numel() for p in model.parameters())
    # the generated file is torch-only and defines its helper class once
    src = prog.emit_python()
    assert src.count("class EvoLayerNorm2d(nn.LayerNorm)") == 1
    assert ".permute(0, 2, 3, 1)" in src and ".view(-1, 2, 4, 4, 4)" in src


@pytest.mark.parametrize("layer", ["mix", "s1", "b1", "stem"])
@pytest.mark.parametrize("strategy", ["autograd", "forward", "compiled"])
def test_cam_through_the_new_ops_equals_the_autograd_reference(net, layer, strategy):
    prog, model, x = net
    with torch.no_grad():
        cls = model(x).argmax(1)
    module = {"mix": model.mix, "s1": model.s1, "b1": model.b1, "stem": model.stem}[layer]
    for method in ("gradcam", "hirescam"):
        ref = reference_cam(model, x, module, method, cls)
        got = prog.explainer("C", model, layer=layer, method=method, strategy=strategy, upsample="none",
                             normalize="none")(x)
        assert got.maps.shape == ref.shape
        err = float((got.maps - ref).abs().max())
        assert err <= 1e-5 * max(1.0, float(ref.abs().max())), (layer, strategy, method, err)


def test_compiled_gradient_is_emitted_as_ops():
    # layer norm's gradient, the narrow's zero padding and the inverse permutation are ordinary ops
    py = evo.compile(SRC.replace("layer = mix", "layer = stem; strategy = compiled")).emit_python()
    grad = py.split("class ExplainC")[1]
    assert "F.pad(" in grad and "torch.rsqrt(" in grad and ".permute(0, 3, 1, 2)" in grad
    assert "torch.autograd" not in grad.split("def compiled0")[1].split("def ")[0]


def _err(src: str) -> str:
    with pytest.raises(evo.EvoError) as e:
        evo.compile(src).build("M")
    return str(e.value)


def _net(body: str, shape: str = "N, 8, 4, 4") -> str:
    return f"network M(x: Tensor[{shape}]) {{\n    {body}\n    return flatten(y)\n}}\n"


@pytest.mark.parametrize("body, code, text", [
    ("y = permute(x, [0, 2, 2, 1])", "E0203", "dimension 2 appears twice"),
    ("y = permute(x, [0, 1, 2])", "E0203", "needs 4 dimensions, got 3"),
    ("y = permute(x, [1, 0, 2, 3])", "E0203", "moves the batch dimension"),
    ("y = permute(x, [0, 1, 2, 7])", "E0206", "dimension 7 is out of range"),
    ("y = transpose(x, 0, 1)", "E0203", "transpose moves the batch dimension"),
    ("y = reshape(x, [-1, 5, 4])", "E0305", "multiply to 20, not 128"),
    ("y = reshape(x, [-1, -1, 8])", "E0203", "only one dimension may be -1"),
    ("y = view(x, [-1, 0, 8])", "E0203", "is not a size"),
    ("p = chunk(x, 2, dim=0)\n    y = p[0]", "E0203", "chunk cuts the batch dimension"),
    ("p = split(x, [3, 4], dim=1)\n    y = p[0]", "E0305", "add up to 7"),
    ("y = narrow(x, 1, 6, 3)", "E0203", "runs past dimension 1"),
    ("y = layernorm(x, dims=4)", "E0203", "would include the batch"),
    ("y = layernorm2d(flatten(x))", "E0300", "expects a 4-D input"),
    ("p = parameter([8, 0])\n    y = x", "E0203", "must be at least 1"),
])
def test_shape_rules_point_at_the_argument(body, code, text):
    msg = _err(_net(body))
    assert f"error[{code}]" in msg and text in msg, msg


def test_reshape_with_concrete_batch_and_inferred_size():
    prog = evo.compile("network M(x: Tensor[2, 8, 4, 4]) {\n    y = reshape(x, [2, -1, 4])\n"
                       "    return flatten(y)\n}\n")
    g = prog.compilation.graph("M")
    assert any(n.shape == (2, 32, 4) for n in g.nodes)
    x = torch.randn(2, 8, 4, 4)
    assert torch.equal(prog.build("M")(x), x.reshape(2, -1))


def test_cost_permute_moves_data_reshape_does_not():
    src = """
network M(x: Tensor[N, 8, 4, 4]) {
    p = permute(x, [0, 2, 3, 1])
    q = permute(adaptive_avgpool2d(x, 1), [0, 2, 3, 1])
    r = reshape(p, [-1, 128])
    return linear(r, 4) + linear(flatten(q), 4)
}
hardware H {
    frequency = 100 MHz
    pes = 16
    macs_per_pe = 1
    word = 16 bit
    mac_energy = 1 pJ
    offchip D { bandwidth = 1 GB/s; energy = 100 pJ/B }
    global G { size = 64 KiB; bandwidth = 10 GB/s; energy = 5 pJ/B }
    pe S { size = 256 B; bandwidth = 2 B/cycle; energy = 1 pJ/B }
}
"""
    rep = evo.compile(src).cost("M", hardware="H", batch=1)
    by = {r["name"]: r for r in rep.rows}
    # the permutation of [N, 8, 4, 4] reorders 128 elements: read and written once (16-bit words)
    assert by["p"]["macs"] == 0 and by["p"]["offchip_bytes"]["total"] == 2 * 128 * 2
    for view in ("q", "r"):  # moving only size-1 dimensions, and reshaping, move nothing
        assert by[view]["macs"] == 0 and by[view]["level_bytes"] == {"offchip": 0.0, "global": 0.0, "pe": 0.0}


@pytest.mark.parametrize("pick", ["select(t, 3, 1)", "narrow(t, 3, 1, 1)"])
def test_compiled_gradient_of_a_middle_slice_pads_both_sides(pick):
    """The gradient of the middle element of a size-3 dimension is padded by 1 before and 1
    after: the pad must stay a tuple (F.pad takes no single int)."""
    prog = evo.compile(f"""
network Net(x: Tensor[N, 3, 4, 4]) {{
    feat = conv2d(x, 3, 3, padding=1)
    t = permute(feat, [0, 2, 3, 1])
    y = {pick}
    fc = linear(flatten(y * y), 5)
    return fc
}}
cam C {{ network = Net; layer = feat; method = hirescam; upsample = none; normalize = none }}
""")
    torch.manual_seed(2)
    model = prog.build("Net").eval()
    x = torch.randn(3, 3, 4, 4)
    cls = model(x).argmax(1)
    ref = reference_cam(model, x, model.feat, "hirescam", cls)
    got = prog.explainer("C", model, strategy="compiled")(x).maps
    assert (ref > 0).any()
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)


PIXEL_SHUFFLE = """
network Net(x: Tensor[N, 3, 8, 8]) {
    c = conv2d(x, 16, 3, padding=1)
    up = reshape(permute(view(c, [-1, 4, 2, 2, 8, 8]), [0, 1, 4, 2, 5, 3]), [-1, 4, 16, 16])
    act = relu(up)
    fc = linear(flatten(adaptive_avgpool2d(act * act, 2)), 5)
    return fc
}
cam C { network = Net; layer = up; upsample = none; normalize = none }
"""


@pytest.mark.parametrize("strategy", ["autograd", "forward", "compiled"])
def test_cam_at_a_pixel_shuffle_is_the_finer_map(strategy):
    """A reshape that moves sub-pixels from the channels into H and W (a pixel shuffle written
    with view/permute/reshape) is a finer [N, C, 2H, 2W] map: its CAM needs no grid and equals
    Grad-CAM of F.pixel_shuffle's output, computed here by hand."""
    prog = evo.compile(PIXEL_SHUFFLE)
    torch.manual_seed(0)
    model = prog.build("Net").eval()
    x = torch.randn(3, 3, 8, 8)
    up = F.pixel_shuffle(model.c(x), 2).detach().requires_grad_(True)
    logits = model.fc(torch.flatten(F.adaptive_avg_pool2d(F.relu(up) ** 2, 2), 1))
    (g,) = torch.autograd.grad(logits.gather(1, logits.argmax(1)[:, None]).sum(), up)
    want = torch.relu((g.mean((2, 3), keepdim=True) * up.detach()).sum(1))
    assert want.shape == (3, 16, 16) and (want > 0).any()
    got = prog.explainer("C", model, strategy=strategy)(x).maps
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_layernorm_over_two_equal_dimensions():
    """layernorm(x, dims=2) of a [N, 4, 4, 4] map normalises over the last two dimensions, [4, 4]:
    nn.LayerNorm((4, 4)) (a tuple; a single 4 was written, normalising the last dimension only),
    weight [4, 4], and the compiled gradient reshapes that weight to (4, 4)."""
    prog = evo.compile("""
network Net(x: Tensor[N, 3, 4, 4]) {
    feat = conv2d(x, 4, 3, padding=1)
    ln = layernorm(feat, dims=2)
    fc = linear(flatten(ln * ln), 5)
    return fc
}
cam C { network = Net; layer = feat; method = hirescam; upsample = none; normalize = none }
""")
    torch.manual_seed(0)
    model = prog.build("Net").eval()
    assert model.ln.weight.shape == (4, 4)
    with torch.no_grad():
        model.ln.weight.uniform_(0.5, 1.5)
        model.ln.bias.uniform_(-0.2, 0.2)
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        ln = F.layer_norm(model.feat(x), (4, 4), model.ln.weight, model.ln.bias, 1e-5)
        torch.testing.assert_close(model(x), model.fc(torch.flatten(ln * ln, 1)))
    ref = reference_cam(model, x, model.feat, "hirescam", model(x).argmax(1))
    assert (ref > 0).any()
    for strategy in ("autograd", "compiled"):
        got = prog.explainer("C", model, strategy=strategy)(x).maps
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6, msg=strategy)
