"""Vision transformers (issue 12, ViT): multi-head self-attention with nn.MultiheadAttention's
parameters, scaled dot-product attention, a class token expanded over the batch, token
selection, means over dimensions; and CAMs on token maps, whose grid the compiler infers
from the patch embedding.

References are written here, independently of the compiler: torchvision's ViT mirror
(tests/zoo/vit.py) for the logits, and for the CAMs a forward hook + backward on the
mirror with the `reshape_transform` of pytorch-grad-cam's documentation (drop the class
token, fold the rest into the grid), then the textbook formulas (tests/refcam.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import evo
from tests import refcam
from tests.zoo.vit import vit_tiny

TINY = """
block MLPBlock(x, mlp_dim: int) = seq(x) {
    linear(mlp_dim)
    gelu()
    dropout(0.0)
    linear(x.shape[-1])
    dropout(0.0)
}

block EncoderBlock(x, heads: int, mlp_dim: int) {
    ln_1 = layernorm(x, eps=1e-6)
    self_attention = multihead_attention(ln_1, heads)
    y = self_attention + x
    ln_2 = layernorm(y, eps=1e-6)
    mlp = MLPBlock(ln_2, mlp_dim)
    return y + mlp
}

block Layers(x, heads: int, mlp_dim: int) {
    encoder_layer_0 = EncoderBlock(x, heads, mlp_dim)
    encoder_layer_1 = EncoderBlock(encoder_layer_0, heads, mlp_dim)
    return encoder_layer_1
}

block Encoder(x, heads: int, mlp_dim: int) {
    pos_embedding = parameter([1, x.shape[1], x.shape[2]])
    layers = Layers(x + pos_embedding, heads, mlp_dim)
    ln = layernorm(layers, eps=1e-6)
    return ln
}

block Heads(x, classes: int) {
    head = linear(x, classes)
    return head
}

network ViT(x: Tensor[N, 3, 32, 32], classes: int = 10, dim: int = 16, patch: int = 8) {
    conv_proj = conv2d(x, dim, patch, stride=patch)
    tokens = permute(reshape(conv_proj, [-1, dim, conv_proj.height * conv_proj.width]), [0, 2, 1])
    class_token = parameter([1, 1, dim])
    encoder = Encoder(concat(expand(class_token, tokens), tokens, dim=1), 2, 32)
    heads = Heads(select(encoder, 1, 0), classes)
    return heads
}

cam Explain {
    network = ViT
    layer = encoder.layers.encoder_layer_1.ln_1
    method = gradcam
}
"""


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    ref = vit_tiny(10).eval()
    with torch.no_grad():  # a class token and layer norms that are not the trivial initial ones
        ref.class_token.normal_()
        for name, p in ref.named_parameters():
            if "ln" in name:
                p.add_(0.2 * torch.randn_like(p))
    prog = evo.compile(TINY)
    model = prog.build("ViT").eval()
    model.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    return prog, model, ref, x


def test_hand_written_vit_loads_torchvisions_state_dict_with_equal_logits(vit):
    prog, model, ref, x = vit
    assert set(model.state_dict()) == set(ref.state_dict())
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-5)
    src = prog.emit_python()
    assert "class EvoSelfAttention(nn.MultiheadAttention)" in src
    assert ".expand(" in src and ".select(1, 0)" in src


def _reshape_transform(t, h, w):
    """pytorch-grad-cam's documented ViT transform: drop the class token, fold, channels first."""
    result = t[:, 1:, :].reshape(t.size(0), h, w, t.size(2))
    return result.transpose(2, 3).transpose(1, 2)


def _reference(ref, x, module, method, cls, h=4, w=4):
    acts, grads = [], []

    def hook(_m, _i, out):
        acts.append(out.detach())
        out.register_hook(lambda g: grads.append(g.detach()))

    handle = module.register_forward_hook(hook)
    try:
        xx = x.clone().requires_grad_(True)
        out = ref(xx)
        out.gather(1, cls[:, None]).sum().backward()
    finally:
        handle.remove()
        ref.zero_grad(set_to_none=True)
    a = _reshape_transform(acts[0], h, w).to(torch.float64)
    g = _reshape_transform(grads[0], h, w).to(torch.float64)
    if method == "scorecam":
        def reshaped_model(xs):
            return ref(xs)
        return refcam._scorecam(reshaped_model, x, a, cls, 64, False).to(torch.float32)
    return {"gradcam": refcam._gradcam, "gradcampp": refcam._gradcampp, "layercam": refcam._layercam,
            "hirescam": refcam._hirescam}[method](a, g).to(torch.float32)


LAYERS = {"encoder.layers.encoder_layer_1.ln_1": lambda r: r.encoder.layers.encoder_layer_1.ln_1,
          "encoder.layers.encoder_layer_0": lambda r: r.encoder.layers.encoder_layer_0}


@pytest.mark.parametrize("layer", list(LAYERS))
@pytest.mark.parametrize("strategy", ["autograd", "forward", "compiled"])
@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "layercam", "scorecam"])
def test_cam_on_tokens_equals_hook_and_reshape_transform(vit, layer, strategy, method):
    prog, model, ref, x = vit
    if method == "scorecam" and strategy != "autograd":
        pytest.skip("gradient-free: one run covers it")
    with torch.no_grad():
        cls = ref(x).argmax(1)
    want = _reference(ref, x, LAYERS[layer](ref), method, cls)
    got = prog.explainer("Explain", model, layer=layer, method=method, strategy=strategy, upsample="none",
                         normalize="none")(x)
    assert got.maps.shape == want.shape == (2, 4, 4)
    assert float(want.abs().max()) > 0
    err = float((got.maps - want).abs().max())
    assert err <= 1e-5 * max(1.0, float(want.abs().max())), (layer, strategy, method, err)


def test_vit_fullgrad_every_strategy_equals_the_reference(vit):
    """FullGrad of the tiny ViT (bias layer: the patch embedding's conv_proj): the compiled sweep
    takes the class token and position embedding as side values; both strategies equal
    pytorch-grad-cam's definition written with hooks and autograd (tests/test_cam_methods.py)."""
    from tests.test_cam_methods import _fullgrad_reference

    prog, model, ref, x = vit
    with torch.no_grad():
        cls = ref(x).argmax(1)
    want = _fullgrad_reference(ref, x, cls)
    assert float(want.abs().max()) > 0
    for strategy in ("autograd", "compiled"):
        got = prog.explainer("Explain", model, method="fullgrad", strategy=strategy, upsample="none",
                             normalize="none")(x)
        assert got.strategy == strategy
        torch.testing.assert_close(got.maps.to(torch.float64), want, rtol=1e-4, atol=1e-5, msg=strategy)


def test_compiled_vit_explainer_differentiates_attention_as_ops(vit):
    prog, model, ref, x = vit
    py = evo.compile(TINY.replace("method = gradcam", "method = gradcam; strategy = compiled")).emit_python()
    body = py.split("def compiled0")[1].split("\n    def ")[0]
    assert "torch.autograd" not in body
    assert "torch.softmax(" in body and "torch.rsqrt(" in body  # attention and layer norm, backward as ops
    exp = prog.explainer("Explain", model, strategy="compiled")
    with torch.inference_mode():
        r = exp(x)
    assert r.maps.shape == (2, 32, 32) and torch.isfinite(r.maps).all()


def test_compiled_vit_explainer_exports_with_torch_export(vit):
    prog, model, ref, x = vit
    exp = prog.explainer("Explain", model, strategy="compiled")
    ep = torch.export.export(exp.export_module(), (x,))
    maps, classes, scores = ep.module()(x)
    want = exp(x)
    assert torch.allclose(maps, want.maps, atol=1e-5) and torch.equal(classes, want.classes)


# ----------------------------------------------------------------- the grid rule and its diagnostic

NOGRID = """
network M(x: Tensor[N, 3, 8, 8]) {
    t = reshape(x, [-1, 12, 16])
    y = linear(t, 8)
    return linear(select(y, 1, 0), 4)
}

cam C {
    network = M
    layer = y
}
"""


def test_a_token_layer_without_patch_embedding_asks_for_the_grid():
    with pytest.raises(evo.EvoError) as e:
        evo.compile(NOGRID)
    msg = str(e.value)
    assert "error[E0502]" in msg and "grid cannot be inferred" in msg and "grid = [H, W]" in msg
    # stated: 12 tokens, a 3x3 grid after the first 3
    prog = evo.compile(NOGRID.replace("layer = y", "layer = y\n    grid = [3, 3]"))
    model = prog.build("M").eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        cls = model(x).argmax(1)
    a = model.y(x.reshape(2, 12, 16)).detach().requires_grad_(True)
    F.linear(a[:, 0], model.linear_0.weight, model.linear_0.bias).gather(1, cls[:, None]).sum().backward()
    # tokens 0..2 dropped; 3..11 folded into 3x3, channels first
    fold = a.detach()[:, 3:].reshape(2, 3, 3, 8).permute(0, 3, 1, 2)
    g = a.grad[:, 3:].reshape(2, 3, 3, 8).permute(0, 3, 1, 2)
    want = torch.relu((g * fold).sum(1))  # hirescam: the elementwise gradient
    for strategy in ("autograd", "forward", "compiled"):
        got = prog.explainer("C", model, strategy=strategy, method="hirescam", upsample="none",
                             normalize="none")(x)
        assert got.maps.shape == (2, 3, 3)
        assert torch.allclose(got.maps, want, atol=1e-6), strategy


ROWS = """
network M(x: Tensor[N, 3, 8, 8]) {
    t = reshape(x, [-1, 12, 16])
    a = layernorm(t)
    y = multihead_attention(a, 2, bias=false)
    z = y + t
    n = layernorm(z)
    f = linear(n, 24)
    o = linear(gelu(f), 16)
    u = o + z
    out = linear(select(u, 1, 3), 4)
    return out
}

cam C {
    network = M
    layer = a
    grid = [3, 3]
}
"""


def test_compiled_head_reading_one_token_runs_on_that_row_and_equals_autograd():
    """The head reads token 3 only: the compiled strategy runs the MLP and norms on that row and the
    attention for that query (restrict_rows), so its explain graph has no 12-token MLP; the map of
    every token (tokens 3..11 folded 3x3) equals autograd through a hand-written head, for two
    classes at once (attention without bias, a query row that is neither first nor last)."""
    from evo.passes.gradient import compiled_explain_graph

    prog = evo.compile(ROWS)
    g = prog.graph("M")
    shapes = {n.shape for n in compiled_explain_graph(g, "a").nodes}
    assert ("N", 1, 24) in shapes and ("N", 12, 24) not in shapes and ("KB", 12, 24) not in shapes
    assert ("N", 12, 24) in {n.shape for n in compiled_explain_graph(g, "a", fold=False).nodes}
    model = prog.build("M", seed=1).eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    cls = torch.tensor([[0, 2], [3, 1]])
    t = x.reshape(2, 12, 16)
    a = model.a(t).detach().requires_grad_(True)

    def head(a):  # written out: q, k, v from in_proj_weight, torch's attention, out_proj
        q, k, v = F.linear(a, model.y.in_proj_weight).reshape(2, 12, 3, 2, 8).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 12, 16)
        z = F.linear(att, model.y.out_proj.weight) + t
        u = model.o(F.gelu(model.f(model.n(z)))) + z
        return model.out(u[:, 3])

    with torch.no_grad():
        assert torch.allclose(head(a), model(x), atol=1e-5)
    want = []
    for j in range(2):
        (grad,) = torch.autograd.grad(head(a).gather(1, cls[:, j:j + 1]).sum(), a)
        fold = a.detach()[:, 3:].reshape(2, 3, 3, 16).permute(0, 3, 1, 2)
        gg = grad[:, 3:].reshape(2, 3, 3, 16).permute(0, 3, 1, 2)
        want.append(torch.relu((gg * fold).sum(1)))  # hirescam: every token's own gradient
    want = torch.stack(want, 1)
    exp = prog.explainer("C", model, strategy="compiled", method="hirescam", upsample="none", normalize="none")
    with torch.inference_mode():
        got = exp(x, classes=cls)
    assert got.maps.shape == want.shape == (2, 2, 3, 3) and float(want.abs().max()) > 0
    assert torch.allclose(got.maps, want, atol=1e-5), float((got.maps - want).abs().max())


@pytest.mark.parametrize("body, code, text", [
    ("y = multihead_attention(x, 3)", "E0302", "heads=3 does not divide the embedding size 16"),
    ("y = multihead_attention(flatten(x), 2)", "E0300", "expects a 3-D input"),
    ("y = select(x, 0, 0)", "E0203", "select takes from the batch dimension"),
    ("y = select(x, 1, 9)", "E0206", "index 9 is out of range"),
    ("y = mean(x, [0, 1])", "E0203", "mean over the batch dimension"),
    ("y = expand(x, x)", "E0301", "first dimension is 1"),
    ("y = scaled_dot_product_attention(x, x, flatten(x))", "E0300", "value must be at least 3-D"),
])
def test_shape_rules_point_at_the_argument(body, code, text):
    src = f"network M(x: Tensor[N, 8, 16]) {{\n    {body}\n    return flatten(y)\n}}\n"
    with pytest.raises(evo.EvoError) as e:
        evo.compile(src).build("M")
    assert f"error[{code}]" in str(e.value) and text in str(e.value), str(e.value)


def test_new_ops_equal_pytorch_and_their_compiled_gradients_equal_autograd():
    src = """
network M(x: Tensor[N, 3, 8, 8]) {
    p = conv2d(x, 8, 4, stride=4)
    t = permute(flatten(p, 2), [0, 2, 1])
    a = scaled_dot_product_attention(t, t, t)
    m = mean(a, [1])
    return linear(m, 5)
}
cam C { network = M; layer = p }
"""
    prog = evo.compile(src)
    model = prog.build("M", seed=2).eval()
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        t = model.p(x).flatten(2).transpose(1, 2)
        want = model.linear_0(F.scaled_dot_product_attention(t, t, t).mean(1))
        assert torch.allclose(model(x), want, atol=1e-5)
    ref = {s: prog.explainer("C", model, strategy=s, method="hirescam", upsample="none", normalize="none")(x).maps
           for s in ("autograd", "compiled")}
    assert torch.allclose(ref["autograd"], ref["compiled"], atol=1e-6)
    assert float(ref["autograd"].abs().max()) > 0


# ----------------------------------------------------------------- examples/vit.evo

def _run_cli(capsys, *argv):
    from evo import cli

    rc = cli.main([str(a) for a in argv])
    c = capsys.readouterr()
    assert "Traceback" not in c.err
    return rc, c.out, c.err


def test_vit_example_is_torchvisions_vit_b_16(capsys):
    """The hand-written ViT-B/16: torchvision's keys and shapes at full size (meta tensors), the
    mirror's logits at a small size (the same source, 32x32 images, width 16), attention in the cost."""
    from pathlib import Path

    from tests.zoo.vit import VisionTransformer, vit_b_16

    path = Path(__file__).resolve().parents[1] / "examples" / "vit.evo"
    src = path.read_text()
    prog = evo.compile_file(path)
    with torch.device("meta"):
        full = prog.build("ViTB16")
        ref = vit_b_16()
    got = {k: tuple(v.shape) for k, v in full.state_dict().items()}
    assert got == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert sum(p.numel() for p in full.parameters()) == 86_567_656  # torchvision's ViT_B_16 num_params
    small = evo.compile(src.replace("Tensor[N, 3, 224, 224]", "Tensor[N, 3, 32, 32]"), str(path), path.parent)
    net = small.build("ViTB16", classes=10, dim=16, num_heads=2, mlp_dim=32, patch=8).eval()
    torch.manual_seed(4)
    mirror = VisionTransformer(32, 8, 12, 2, 16, 32, num_classes=10).eval()
    with torch.no_grad():
        mirror.class_token.normal_()
    net.load_state_dict(mirror.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(x), mirror(x), rtol=1e-5, atol=1e-5)
    rc, out, err = _run_cli(capsys, "cost", path)
    assert rc == 0, err
    assert "self_attention [attention: Q K^T]" in out and "self_attention [attention: P V]" in out
    assert "attention: " in out and "of the latency" in out and "T x T score matrices" in out
    assert "17.6 GMAC" in out  # ViT-B/16: 17.6 G multiply-accumulates at 224x224


# ----------------------------------------------------------------- evoc import

def vit_tiny_factory():
    """`evoc import tests.test_vit:vit_tiny_factory`: the tiny mirror with non-trivial tokens and norms."""
    torch.manual_seed(0)
    m = vit_tiny(10).eval()
    with torch.no_grad():
        m.class_token.normal_()
        for name, p in m.named_parameters():
            if "ln" in name:
                p.add_(0.2 * torch.randn_like(p))
    return m


def vit_b16_shape_factory():
    """ViT-B/16's structure (patch 16, 12 layers of 12 heads) at width 48, on 64x64 images."""
    from tests.zoo.vit import VisionTransformer

    torch.manual_seed(1)
    return VisionTransformer(64, 16, 12, 12, 48, 96, num_classes=7).eval()


@pytest.mark.parametrize("factory, size, layers", [("vit_tiny_factory", 32, 2), ("vit_b16_shape_factory", 64, 12)])
def test_evoc_import_of_vit_loads_strict_with_equal_logits_and_explains(factory, size, layers, tmp_path, capsys):
    out = tmp_path / "vit.evo"
    rc, _, err = _run_cli(capsys, "import", f"tests.test_vit:{factory}", "--input-shape", f"1,3,{size},{size}",
                          "-o", out)
    assert rc == 0, err
    src = out.read_text()
    # readable: one block per encoder layer class, attention as one op, the class token a parameter
    assert src.count("block EncoderBlock(x") == 1 and src.count("= EncoderBlock(") == layers
    for text in ("multihead_attention(ln_1, ", "class_token = parameter([1, 1, ", "pos_embedding = parameter([1, ",
                 "expand(class_token, ", "select(encoder, 1, 0)", "layernorm(x, eps=1e-6)"):
        assert text in src, text
    assert len(src.splitlines()) <= 50 + layers, src
    rc, _, err = _run_cli(capsys, "fmt", "--check", out)
    assert rc == 0, err
    model = globals()[factory]()
    prog = evo.compile(src + f"\ncam Explain {{\n    network = VisionTransformer\n"
                             f"    layer = encoder.layers.encoder_layer_{layers - 1}.ln_1\n}}\n")
    net = prog.build("VisionTransformer").eval()
    assert list(net.state_dict()) == list(model.state_dict())
    net.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), rtol=1e-5, atol=1e-5)
    if factory == "vit_tiny_factory":  # the imported program's CAM, every strategy, against the reference
        cls = model(x).argmax(1)
        want = _reference(model, x, model.encoder.layers.encoder_layer_1.ln_1, "gradcam", cls)
        for strategy in ("autograd", "forward", "compiled"):
            got = prog.explainer("Explain", net, strategy=strategy, upsample="none", normalize="none")(x)
            torch.testing.assert_close(got.maps, want, rtol=1e-4, atol=1e-6, msg=strategy)


def test_import_refuses_cross_attention_and_attention_weights():
    from torch import nn

    from evo.importer.api import ConversionError

    class Cross(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            t = x.flatten(2).transpose(1, 2)
            return self.fc(self.attn(t, t.relu(), t, need_weights=False)[0].mean(1))

    with pytest.raises(ConversionError) as e:
        evo.from_torch(Cross().eval(), torch.randn(1, 8, 2, 2))
    assert "cross-attention" in str(e.value)

    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2)  # batch_first=False: [T, N, D]
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            t = x.flatten(2).transpose(1, 2)
            return self.fc(self.attn(t, t, t)[0].mean(1))

    with pytest.raises(ConversionError) as e:
        evo.from_torch(Seq().eval(), torch.randn(1, 8, 2, 2))
    assert "batch_first" in str(e.value)
