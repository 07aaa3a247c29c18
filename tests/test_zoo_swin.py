"""Swin-T, Swin-V2-T and MaxViT-T (issue 12): the tiny zoo mirrors (tests/zoo/swin.py,
tests/zoo/maxvit.py, torchvision's module trees) are imported with `evoc import`, compiled,
loaded with strict=True and give the mirror's logits; the attention classes become block
templates written in evo's ops (evo/importer/templates.py), SwinTransformerBlock one block.

Also the window-attention ops of evo/ops/window.py one by one: each op's code against the
PyTorch expression torchvision writes, and each op's derivative rule (the compiled CAM
strategy) against torch.autograd."""

from __future__ import annotations

import textwrap

import pytest
import torch
import torch.nn.functional as F

import evo
from evo import cli
from tests.refcam import assert_head_strategies_equal_hooks, channels_last_head_program
from tests.zoo import maxvit, swin


def _seeded(make):
    def factory():
        torch.manual_seed(0)
        m = make()
        with torch.no_grad():  # non-trivial layer norms and biases (fresh ones are the identity / zero)
            for name, p in m.named_parameters():
                if name.endswith(("norm1.weight", "norm2.weight", "norm.weight")):
                    p.uniform_(0.5, 1.5)
                elif name.endswith("bias") and "qkv" not in name:
                    p.uniform_(-0.2, 0.2)
                elif name.endswith("relative_position_bias_table"):
                    p.normal_(0, 0.5)
        return m.eval()
    return factory


# zero-argument factories `evoc import` calls (tests.test_zoo_swin:<name>)
swin_t = _seeded(lambda: swin.swin_t(10, tiny=True))
swin_v2_t = _seeded(lambda: swin.swin_v2_t(10, tiny=True))

# name: (attention template, block, what the source must contain)
FAMILIES = {
    "swin_t": ("ShiftedWindowAttention", "SwinTransformerBlock",
               ["attn = ShiftedWindowAttention(norm1, heads, 2, shift=shift", "block PatchMerging(x"]),
    "swin_v2_t": ("ShiftedWindowAttentionV2", "SwinTransformerBlockV2",
                  ["attn = ShiftedWindowAttentionV2(x, heads, 2, shift=shift)", "block PatchMergingV2(x",
                   "cpb_mlp = seq(relative_coords_table)"]),
}


def run_cli(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    c = capsys.readouterr()
    assert "Traceback" not in c.err
    return rc, c.out, c.err


@pytest.mark.parametrize("family", list(FAMILIES))
def test_swin_imports_loads_strict_and_computes_the_logits(family, tmp_path, capsys):
    tpl, block, must = FAMILIES[family]
    out = tmp_path / f"{family}.evo"
    rc, _, err = run_cli(capsys, "import", f"tests.test_zoo_swin:{family}", "--input-shape", "1,3,32,32", "-o", out)
    assert rc == 0, err
    src = out.read_text()
    for text in must + [f"block {tpl}(x, heads: int, window: int, shift: int = 0", f"block {block}(x"]:
        assert text in src, (text, src)
    assert src.count(f"{block}(") == 1 + 2  # defined once, called for the shifted and the plain block
    rc, _, err = run_cli(capsys, "fmt", "--check", out)
    assert rc == 0, err

    model = globals()[family]()
    prog = evo.compile(src)
    net = prog.build("SwinTransformer").eval()
    assert sorted(net.state_dict()) == sorted(model.state_dict())
    net.load_state_dict(model.state_dict(), strict=True)
    torch.manual_seed(2)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        want = model(x)
        torch.testing.assert_close(net(x), want, rtol=1e-5, atol=1e-5)
    assert want.std() > 1e-2  # not a degenerate comparison
    # the buffers the program declares are torchvision's values (not only loaded over)
    fresh = prog.build("SwinTransformer")
    for k, v in model.state_dict().items():
        if k.endswith(("relative_position_index", "relative_coords_table")):
            torch.testing.assert_close(fresh.state_dict()[k], v, rtol=0, atol=0, msg=k)


def _randomized_bn(make):
    def factory():
        m = _seeded(make)()
        with torch.no_grad():
            for mod in m.modules():
                if isinstance(mod, torch.nn.BatchNorm2d):
                    mod.running_mean.uniform_(-0.2, 0.2)
                    mod.running_var.uniform_(0.5, 1.5)
                    mod.weight.uniform_(0.5, 1.5)
        return m.eval()
    return factory



def _explained(model, network, layer, **settings):
    """`model` imported with evo.from_torch (traced at 32x32) and compiled with `cam Explain` at
    `layer` (upsample and normalize none, plus `settings` written as given), built and loaded
    strict from the model's own state_dict: (program, network module)."""
    from evo.importer import from_torch

    src = from_torch(model, torch.randn(1, 3, 32, 32))
    extra = "".join(f"    {k} = {v}\n" for k, v in settings.items())
    prog = evo.compile(src + f"\ncam Explain {{\n    network = {network}\n    layer = {layer}\n{extra}"
                             "    upsample = none\n    normalize = none\n}\n")
    net = prog.build(network).eval()
    net.load_state_dict(model.state_dict(), strict=True)
    return prog, net

maxvit_t = _randomized_bn(lambda: maxvit.maxvit_t(10, tiny=True))


def test_maxvit_imports_loads_strict_and_computes_the_logits(tmp_path, capsys):
    out = tmp_path / "maxvit.evo"
    rc, _, err = run_cli(capsys, "import", "tests.test_zoo_swin:maxvit_t", "--input-shape", "1,3,32,32", "-o", out)
    assert rc == 0, err
    src = out.read_text()
    for text in ["block RelativePositionalMultiHeadAttention(x, heads: int, size: int, scale: float)",
                 "block WindowPartition(x, p: int)", "block WindowDepartition(x, p: int, gh: int, gw: int)",
                 "partition_swap = SwapAxes(partition_op)", "block MBConv(x", "block PartitionAttentionLayer(x",
                 'dot = einsum("bghid,bghjd->bghij", q, scale_by(k, scale))']:  # torchvision's einsums
        assert text in src, (text, src)
    rc, _, err = run_cli(capsys, "fmt", "--check", out)
    assert rc == 0, err
    model = maxvit_t()
    net = evo.compile(src).build("MaxVit").eval()
    assert sorted(net.state_dict()) == sorted(model.state_dict())
    net.load_state_dict(model.state_dict(), strict=True)
    torch.manual_seed(2)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        want = model(x)
        torch.testing.assert_close(net(x), want, rtol=1e-5, atol=1e-5)
    assert want.std() > 1e-2


# the last block's layers that are maps [N, C, H, W] in torchvision's MaxViT: its output (the head
# is the classifier), the window attention's output (the head runs the grid attention: partition,
# swap, attention with the relative-position bias, MLP, departition) and the MBConv's (both
# attentions). Inside an attention the values are windows [N, groups, tokens, C], no map.
MAXVIT_LAYERS = ["blocks", "blocks.1.layers.0.layers.window_attention", "blocks.1.layers.0.layers.MBconv"]


@pytest.mark.parametrize("layer", MAXVIT_LAYERS)
def test_maxvit_gradcam_at_the_last_block_equals_hooks_and_backward(layer):
    """Grad-CAM and HiResCAM of the imported MaxViT-T (tiny mirror, strict load) at the last block,
    every strategy and every class, against a forward hook on the mirror's module, one backward
    of each logit and the standard reductions (channel-mean gradient, or the gradient, times
    the activation, summed over channels, relu)."""
    model = maxvit_t()
    prog, net = _explained(model, "MaxVit", layer)
    torch.manual_seed(5)
    x = torch.randn(2, 3, 32, 32)
    module = model.blocks[-1] if layer == "blocks" else model.get_submodule(layer)
    acts = {}
    hook = module.register_forward_hook(lambda mod, i, o: acts.__setitem__("a", o))
    logits = model(x)
    hook.remove()
    a = acts["a"].detach()
    assert a.shape == (2, 32, 4, 4)  # channels first: the departition's output
    # every class: one backward of that logit (summed over the batch) each, maps [B, classes, 4, 4]
    g = torch.stack([torch.autograd.grad(logits[:, c].sum(), acts["a"], retain_graph=True)[0]
                     for c in range(10)], 1)
    a = a[:, None]
    wants = {"gradcam": torch.relu((g.mean((3, 4), keepdim=True) * a).sum(2)),
             "hirescam": torch.relu((g * a).sum(2))}
    for method, want in wants.items():
        assert want.shape == (2, 10, 4, 4) and (want > 1e-4).sum() >= 16  # not a degenerate comparison
        for strategy in ("autograd", "forward", "compiled"):
            res = prog.explainer("Explain", net, method=method, strategy=strategy, classes="all")(x)
            torch.testing.assert_close(res.maps, want, rtol=1e-4, atol=1e-6, msg=f"{method} {strategy}")


# inside the last block's attentions the values are windows [N, groups, tokens, C]: the window
# attention's groups are windows of p x p pixels, the grid attention's (after its swap) a
# dilated grid; the standard reshape is the mirror's own departition (and swap back)
MAXVIT_WINDOW_LAYERS = ["window_attention.attn_layer", "grid_attention.attn_layer", "grid_attention.partition_swap",
                        "window_attention.mlp_layer"]


@pytest.mark.parametrize("layer", MAXVIT_WINDOW_LAYERS)
def test_maxvit_gradcam_inside_the_last_attentions_equals_hooks_and_backward(layer):
    """Grad-CAM and HiResCAM at a windowed value of the last block's window / grid attention:
    the compiler infers where H and W went (the partition's reshapes and permutes, the swap)
    and explains the map [N, C, H, W]; the reference folds the hooked windows back with the
    mirror's departition_swap + departition_op, every class, every strategy."""
    model = maxvit_t()
    path = "blocks.1.layers.0.layers." + layer
    prog, net = _explained(model, "MaxVit", path)
    torch.manual_seed(5)
    x = torch.randn(2, 3, 32, 32)
    part = model.get_submodule(path.rsplit(".", 1)[0])  # the PartitionAttentionLayer
    acts = {}
    hook = model.get_submodule(path).register_forward_hook(lambda mod, i, o: acts.__setitem__("a", o))
    logits = model(x)
    hook.remove()
    assert acts["a"].shape == (2, 4, 4, 32)  # [N, groups, tokens, C]
    g = torch.stack([torch.autograd.grad(logits[:, c].sum(), acts["a"], retain_graph=True)[0]
                     for c in range(10)], 1)
    gh, gw = part.grid_size[0] // part.p, part.grid_size[1] // part.p

    def fold(t):  # [N, groups, tokens, C] -> [N, C, H, W], as the layer's own forward does
        return part.departition_op(part.departition_swap(t), part.p, gh, gw)
    a = fold(acts["a"].detach())[:, None]
    g = torch.stack([fold(g[:, c]) for c in range(10)], 1)
    wants = {"gradcam": torch.relu((g.mean((3, 4), keepdim=True) * a).sum(2)),
             "hirescam": torch.relu((g * a).sum(2))}
    for method, want in wants.items():
        assert want.shape == (2, 10, 4, 4) and (want > 1e-4).sum() >= 16  # not a degenerate comparison
        for strategy in ("autograd", "forward", "compiled"):
            res = prog.explainer("Explain", net, method=method, strategy=strategy, classes="all")(x)
            torch.testing.assert_close(res.maps, want, rtol=1e-4, atol=1e-6, msg=f"{method} {strategy}")


def test_gradcam_of_windows_flattened_into_tokens_equals_the_hand_written_fold():
    """A MaxViT-style window partition flattened to one token axis [N, 64, C] (windows of 4x4
    pixels, 2x2 of them): the compiler infers each token's pixel and explains [N, C, 8, 8]; the
    reference is autograd on the same computation written in PyTorch, folded back by hand."""
    prog = evo.compile(textwrap.dedent("""\
        network Net(x: Tensor[N, 3, 8, 8]) {
            feat = conv2d(x, 4, 3, padding=1)
            win = reshape(permute(reshape(feat, [-1, 4, 2, 4, 2, 4]), [0, 2, 4, 3, 5, 1]), [-1, 64, 4])
            t = linear(win, 4)
            s = softmax(t, dim=1) * t
            back = reshape(permute(reshape(s, [-1, 2, 2, 4, 4, 4]), [0, 5, 1, 3, 2, 4]), [-1, 4, 8, 8])
            fc = linear(flatten(adaptive_avgpool2d(back * back, 1)), 5)
            return fc
        }
        cam C { network = Net; layer = win; method = hirescam; upsample = none; normalize = none }
        """))
    torch.manual_seed(0)
    net = prog.build("Net").eval()
    with torch.no_grad():
        for p in net.parameters():
            p.uniform_(-1, 1)
    x = torch.randn(2, 3, 8, 8)
    w = net.feat(x).reshape(-1, 4, 2, 4, 2, 4).permute(0, 2, 4, 3, 5, 1).reshape(-1, 64, 4)
    t = net.t(w)
    back = (torch.softmax(t, 1) * t).reshape(-1, 2, 2, 4, 4, 4).permute(0, 5, 1, 3, 2, 4).reshape(-1, 4, 8, 8)
    out = net.fc(torch.flatten(F.adaptive_avg_pool2d(back * back, 1), 1))
    torch.testing.assert_close(out, net(x))
    (g,) = torch.autograd.grad(out.gather(1, out.argmax(1)[:, None]).sum(), w)

    def fold(v):  # the window partition undone: [N, 64, C] -> [N, C, 8, 8]
        return v.reshape(-1, 2, 2, 4, 4, 4).permute(0, 5, 1, 3, 2, 4).reshape(-1, 4, 8, 8)
    want = torch.relu((fold(g) * fold(w.detach())).sum(1))
    assert (want > 1e-3).sum() >= 8
    for strategy in ("autograd", "forward", "compiled"):
        got = prog.explainer("C", net, strategy=strategy)(x).maps
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=strategy)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_swin_gradcam_at_the_last_stage_equals_hooks_and_backward(family):
    """Grad-CAM at `permute` (the last stage's normalised map, channels first: [N, C, 4, 4]), every
    strategy, against a forward hook on the mirror's `permute` module and one backward of the
    top-1 logits; the explainers read the blocks' buffers (relative_position_index) too."""
    model = globals()[family]()
    prog, net = _explained(model, "SwinTransformer", "permute")
    torch.manual_seed(3)
    x = torch.randn(2, 3, 32, 32)
    acts = {}
    hook = model.permute.register_forward_hook(lambda mod, i, o: acts.__setitem__("a", o))
    logits = model(x)
    hook.remove()
    top = logits.argmax(1)
    (g,) = torch.autograd.grad(logits.gather(1, top[:, None]).sum(), acts["a"])
    a = acts["a"].detach()
    want = torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1))
    assert want.shape == (2, 4, 4) and (want > 0).any()
    for strategy in ("autograd", "forward", "compiled"):
        res = prog.explainer("Explain", net, strategy=strategy)(x)
        torch.testing.assert_close(res.maps, want, rtol=1e-4, atol=1e-6, msg=strategy)


def test_swin_gradcam_of_the_channels_last_last_stage_equals_hooks_and_backward():
    """Grad-CAM at `features` (the last stage's output, channels last [N, 4, 4, C]; `grid = [4, 4]`
    states its layout), every strategy, against a forward hook on the mirror's `features`, one
    backward of the top-1 logits and the permute to [N, C, H, W] written here."""
    model = swin_t()
    prog, net = _explained(model, "SwinTransformer", "features", grid="[4, 4]")
    torch.manual_seed(4)
    x = torch.randn(2, 3, 32, 32)
    acts = {}
    hook = model.features.register_forward_hook(lambda mod, i, o: acts.__setitem__("a", o))
    logits = model(x)
    hook.remove()
    top = logits.argmax(1)
    (g,) = torch.autograd.grad(logits.gather(1, top[:, None]).sum(), acts["a"])
    a, g = acts["a"].detach().permute(0, 3, 1, 2), g.permute(0, 3, 1, 2)  # [N, H, W, C] -> [N, C, H, W]
    want = torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1))
    assert want.shape == (2, 4, 4) and (want > 0).any()
    for strategy in ("autograd", "forward", "compiled"):
        res = prog.explainer("Explain", net, strategy=strategy)(x)
        torch.testing.assert_close(res.maps, want, rtol=1e-4, atol=1e-6, msg=strategy)


def _hook_gradcam_nhwc(model, module, x):
    """Grad-CAM of a channels-last [N, H, W, C] activation, written here: a forward hook on the
    mirror's module, one backward of the top-1 logits, the permute to [N, C, H, W], then
    relu(sum_c mean_hw(g) * a)."""
    acts = {}
    hook = module.register_forward_hook(lambda mod, i, o: acts.__setitem__("a", o))
    logits = model(x)
    hook.remove()
    top = logits.argmax(1)
    (g,) = torch.autograd.grad(logits.gather(1, top[:, None]).sum(), acts["a"])
    a, g = acts["a"].detach().permute(0, 3, 1, 2), g.permute(0, 3, 1, 2)
    return torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1))


@pytest.mark.parametrize("layer, hw", [("features", 4), ("norm", 4), ("features.1", 8), ("features.2", 4),
                                       ("features.1.1.mlp", 8)])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_swin_channels_last_cams_need_no_grid(family, layer, hw):
    """Grad-CAM at channels-last layers [N, H, W, C] with no `grid`: the compiler follows the
    layout from the patch embedding's permute through the window attention (reshapes into
    windows and back, rolls), the residual adds and PatchMerging (strided slices, the concat
    on the channels), and explains each as [N, C, H, W]; every strategy against the hooks."""
    model = globals()[family]()
    prog, net = _explained(model, "SwinTransformer", layer)
    torch.manual_seed(5)
    x = torch.randn(2, 3, 32, 32)
    module = model
    for part in layer.split("."):
        module = module[int(part)] if part.isdigit() else getattr(module, part)
    want = _hook_gradcam_nhwc(model, module, x)
    assert want.shape == (2, hw, hw) and (want > 0).any()
    for strategy in ("autograd", "forward", "compiled"):
        res = prog.explainer("Explain", net, strategy=strategy)(x)
        torch.testing.assert_close(res.maps, want, rtol=1e-4, atol=1e-6, msg=strategy)


def test_a_4d_layer_whose_layout_is_unknown_asks_for_the_grid():
    """A 4-D layer that is neither a channels-first map nor a channels-last one derived from the
    image, nor its pixels in windows (a reshape that mixes the channels with the rows, a map
    reshaped from a vector) is E0502 with the grid hint, no longer read as channels first; Swin's
    attention output, merged back from the windows, is a channels-last map; and with `grid`
    stated a layer whose layout cannot be inferred is explained as it says."""
    from evo.importer import from_torch
    from evo.ops.tokens import cam_layout

    mixed = textwrap.dedent("""\
        network M(x: Tensor[N, 3, 8, 8]) {
            c = conv2d(x, 4, 3, padding=1)
            y = relu(reshape(c, [-1, 8, 4, 8]))
            fc = linear(flatten(y), 4)
            return fc
        }
        cam C {
            network = M
            layer = y
        }
        """)
    with pytest.raises(evo.EvoError) as info:
        evo.compile(mixed)
    msg = str(info.value)
    assert "error[E0502]" in msg and "[N, 8, 4, 8], whose layout cannot be inferred" in msg, msg
    assert "grid = [H, W]" in msg and "channels-last [N, H, W, C]" in msg, msg
    assert evo.compile(mixed.replace("layer = y", "layer = c"))  # the map itself is channels first

    src = from_torch(swin_t(), torch.randn(1, 3, 32, 32))
    prog = evo.compile(src + "\ncam Explain {\n    network = SwinTransformer\n    layer = features.1.0.attn\n}\n")
    g = prog.compilation.graph("SwinTransformer")
    lay = cam_layout(g, g.value("features.1.0.attn"))
    assert (lay.kind, lay.h, lay.w, lay.channels) == ("nhwc", 8, 8, 8)

    vec = textwrap.dedent("""\
        network M(x: Tensor[N, 64]) {
            f = linear(x, 128)
            y = reshape(f, [-1, 8, 4, 4])
            fc = linear(flatten(y), 4)
            return fc
        }
        cam C {
            network = M
            layer = y
            upsample = none
            normalize = none
        }
        """)
    with pytest.raises(evo.EvoError, match="E0502"):
        evo.compile(vec)
    prog = evo.compile(vec.replace("layer = y", "layer = y\n    grid = [4, 4]"))
    torch.manual_seed(6)
    net = prog.build("M").eval()
    x = torch.randn(3, 64)
    y = net.f(x).reshape(-1, 8, 4, 4)
    logits = net.fc(y.flatten(1))
    (g,) = torch.autograd.grad(logits.gather(1, logits.argmax(1)[:, None]).sum(), y)
    want = torch.relu((g.mean((2, 3), keepdim=True) * y.detach()).sum(1))  # [N, C=8, H=4, W=4]
    assert (want > 0).any()
    for strategy in ("autograd", "compiled"):
        res = prog.explainer("C", net, strategy=strategy)(x)
        torch.testing.assert_close(res.maps, want, rtol=1e-4, atol=1e-6, msg=strategy)


@pytest.mark.parametrize("size, maps", [((36, 36), ((9, 9), (5, 5))), ((40, 40), ((10, 10), (5, 5))),
                                        ((8, 32), ((2, 8), (1, 4)))])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_swin_at_a_size_that_is_not_a_multiple_of_the_window(family, size, maps, tmp_path, capsys):
    """At 36x36 the stages' maps are 9x9 and 5x5 (at 40x40 10x10 and 5x5; at 8x32 2x8 and 1x4),
    not multiples of the 2x2 window: torchvision's attention pads the map to one with F.pad,
    shifts only along an axis the window does not cover (at 8x32: along W only), attends, rolls
    back and crops; PatchMerging pads an odd map (9x9 to 10x10).  `evoc import` writes that (the
    template's pad/crop, PatchMerging's pad), the program loads strict and gives the logits, and
    Grad-CAM at the last stage (channels last, no grid) equals the hooks for every strategy."""
    h, w = size
    out = tmp_path / f"{family}.evo"
    rc, _, err = run_cli(capsys, "import", f"tests.test_zoo_swin:{family}", "--input-shape", f"1,3,{h},{w}",
                         "-o", out)
    assert rc == 0, err
    src = out.read_text()
    assert "padded = pad(x, [0, 0, 0, pad_r, 0, pad_b]) if pad_b + pad_r > 0 else x" in src
    assert "sh = shift if window < ph else 0" in src
    odd = [d % 2 for d in maps[0]]
    assert (f"pad(x, [0, 0, 0, {odd[1]}, 0, {odd[0]}])" in src) == any(odd)  # PatchMerging's pad of an odd map

    model = globals()[family]()
    seen = []
    hooks = [model.features[i].register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[1:3])))
             for i in (1, 3)]
    torch.manual_seed(2)
    x = torch.randn(2, 3, h, w)
    with torch.no_grad():
        want = model(x)
    for hk in hooks:
        hk.remove()
    assert seen == list(maps) and any(d % 2 for d in maps[1])  # a stage that is not a multiple of the window
    prog = evo.compile(src + textwrap.dedent("""
        cam Explain {
            network = SwinTransformer
            layer = features
            upsample = none
            normalize = none
        }
        """))
    net = prog.build("SwinTransformer").eval()
    net.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(net(x), want, rtol=1e-5, atol=1e-5)
    assert want.std() > 1e-2
    ref = _hook_gradcam_nhwc(model, model.features, x)
    assert ref.shape == (2,) + maps[1] and (ref > 0).any()
    for strategy in ("autograd", "forward", "compiled"):
        res = prog.explainer("Explain", net, strategy=strategy)(x)
        torch.testing.assert_close(res.maps, ref, rtol=1e-4, atol=1e-6, msg=strategy)


def test_swin_fullgrad_every_strategy_equals_the_reference():
    """FullGrad of the Swin mirror (its bias layer: the patch embedding's conv), every strategy:
    the compiled sweep takes the learnable tables and buffers the attention reads (and what is
    computed from them, the relative bias and the masks) as side values computed before it
    (before: auto fell back to autograd, compiled was NotDifferentiable, and earlier a KeyError),
    and each map equals pytorch-grad-cam's definition written with hooks and autograd
    (tests/test_cam_methods.py)."""
    from tests.test_cam_methods import _fullgrad_reference

    model = swin_t()
    prog, net = _explained(model, "SwinTransformer", "features", method="fullgrad")
    torch.manual_seed(7)
    x = torch.randn(2, 3, 32, 32)
    top = model(x).argmax(1)
    want = _fullgrad_reference(model, x, top)
    assert want.shape == (2, 32, 32) and want.abs().max() > 0
    for strategy in ("autograd", "compiled"):
        res = prog.explainer("Explain", net, strategy=strategy)(x)
        assert res.strategy == strategy
        torch.testing.assert_close(res.maps.to(torch.float64), want, rtol=1e-4, atol=1e-5, msg=strategy)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_swin_original_cam_at_the_channels_last_norm_reads_the_head_weights(family):
    """The original CAM (method cam) at `norm` ([N, 4, 4, C], channels last): the head permutes
    it to channels first, pools and applies `head`, an affine head that folds to the class
    weights; the map equals relu(sum_c W[class, c] A_c) (tests/refcam.py) of the hooked `norm`
    output permuted here.  Grad-CAM there (compiled, folded) still equals hooks + backward."""
    from tests.refcam import ref_cam_head

    model = globals()[family]()
    prog, net = _explained(model, "SwinTransformer", "norm", method='"cam"')
    torch.manual_seed(8)
    x = torch.randn(2, 3, 32, 32)
    acts = {}
    hook = model.norm.register_forward_hook(lambda mod, i, o: acts.__setitem__("a", o.detach()))
    top = model(x).argmax(1)
    hook.remove()
    want = ref_cam_head(acts["a"].permute(0, 3, 1, 2), model.head.weight, top)
    assert want.shape == (2, 4, 4) and (want > 0).any()
    res = prog.explainer("Explain", net)(x)
    torch.testing.assert_close(res.maps.to(torch.float64), want, rtol=1e-4, atol=1e-6)
    assert res.strategy == "none"
    grad = prog.explainer("Explain", net, method="gradcam", strategy="compiled")(x)
    torch.testing.assert_close(grad.maps, _hook_gradcam_nhwc(model, model.norm, x), rtol=1e-4, atol=1e-6)
    from evo.passes.gradient import is_folded

    g = prog.compilation.graph("SwinTransformer")
    assert is_folded(prog.compilation.explain_graph(g, "norm"))  # no gradient ops: the class weights


def test_swin_shapleycam_at_the_channels_last_stage_every_strategy():
    """ShapleyCAM at `features` ([N, 4, 4, C], channels last; the head has layer norms, so its
    Hessian is not 0): w_c = mean_hw (G - H A / 2)_c with H A by double backward through the
    mirror (a hook on `features`), the map relu(sum_c w_c A_c) after the permute to channels
    first, written here; every strategy equals it (the forward strategy's nested JVPs write
    layer_norm out: its own nested JVP is not the second derivative)."""
    model = swin_t()
    prog, net = _explained(model, "SwinTransformer", "features", method="shapleycam")
    torch.manual_seed(9)
    x = torch.randn(2, 3, 32, 32)
    acts = []
    hook = model.features.register_forward_hook(lambda m, i, o: acts.append(o))
    logits = model(x)
    hook.remove()
    loss = logits.gather(1, logits.argmax(1)[:, None]).sum()
    (g,) = torch.autograd.grad(loss, acts[0], create_graph=True)
    (hv,) = torch.autograd.grad(g, acts[0], grad_outputs=acts[0].detach())
    a = acts[0].detach().double().permute(0, 3, 1, 2)
    w = (g.detach().double() - 0.5 * hv.double()).permute(0, 3, 1, 2).mean((2, 3), keepdim=True)
    want = torch.relu((w * a).sum(1))
    assert want.shape == (2, 4, 4) and (want > 0).any() and hv.abs().max() > 1e-3
    for strategy in ("autograd", "forward", "compiled"):
        res = prog.explainer("Explain", net, strategy=strategy)(x)
        torch.testing.assert_close(res.maps.double(), want, rtol=1e-4, atol=1e-6, msg=strategy)


# ----------------------------------------------------------------------------- the ops one by one

ATTN = textwrap.dedent("""\
    block ShiftedWindowAttention(x, heads: int, window: int, shift: int = 0, scale: float = 1.0) {
        c = x.shape[3]
        wh = x.shape[1] // window
        ww = x.shape[2] // window
        t = window * window
        rolled = roll(x, [-shift, -shift], [1, 2]) if shift > 0 else x
        windows = reshape(permute(reshape(rolled, [-1, wh, window, ww, window, c]), [0, 1, 3, 2, 4, 5]),
                          [-1, wh * ww, t, c])
        qkv = linear(windows, 3 * c)
        parts = chunk(qkv, 3, dim=3)
        q = permute(reshape(parts[0], [-1, wh * ww, t, heads, c // heads]), [0, 1, 3, 2, 4])
        k = permute(reshape(parts[1], [-1, wh * ww, t, heads, c // heads]), [0, 1, 3, 2, 4])
        v = permute(reshape(parts[2], [-1, wh * ww, t, heads, c // heads]), [0, 1, 3, 2, 4])
        relative_position_bias_table = parameter([(2 * window - 1) * (2 * window - 1), heads])
        relative_position_index = relative_position_index(window)
        bias = relative_bias(relative_position_bias_table, relative_position_index)
        scores = matmul(scale_by(q, scale), transpose(k, 3, 4)) + bias
        if shift > 0 {
            mask = window_mask([x.shape[1], x.shape[2]], window, shift)
            attn = softmax(scores + mask, dim=-1)
        } else {
            attn = softmax(scores, dim=-1)
        }
        out = reshape(permute(matmul(attn, v), [0, 1, 3, 2, 4]), [-1, wh * ww, t, c])
        proj = linear(out, c)
        merged = reshape(permute(reshape(proj, [-1, wh, ww, window, window, c]), [0, 1, 3, 2, 4, 5]),
                         [-1, x.shape[1], x.shape[2], c])
        return roll(merged, [shift, shift], [1, 2]) if shift > 0 else merged
    }
    """)


def test_hand_written_window_attention_is_torchvisions():
    """The evo block (the template the importer writes) against the mirror's
    shifted_window_attention, shifted and not, 2 heads."""
    prog = evo.compile(ATTN + textwrap.dedent("""
        network Net(x: Tensor[N, 8, 8, 16]) {
            a0 = ShiftedWindowAttention(x, 2, 2, scale=0.35355339059327373)
            a1 = ShiftedWindowAttention(a0, 2, 2, shift=1, scale=0.35355339059327373)
            return a1
        }
        """))
    net = prog.build("Net").eval()
    torch.manual_seed(0)
    ref = torch.nn.ModuleDict({"a0": swin.ShiftedWindowAttention(16, [2, 2], [0, 0], 2),
                               "a1": swin.ShiftedWindowAttention(16, [2, 2], [1, 1], 2)})
    net.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 8, 8, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref["a1"](ref["a0"](x)), rtol=1e-6, atol=1e-6)
    # the mask is a constant of the shapes: not in the state_dict
    assert not any("mask" in k for k in net.state_dict())


def _mask_reference(h, w, window, shift):
    """torchvision's mask code, as in tests/zoo/swin.py's shifted_window_attention."""
    mask = torch.zeros(h, w)
    hs = ((0, -window), (-window, -shift), (-shift, None))
    count = 0
    for hh in hs:
        for ww in hs:
            mask[hh[0]:hh[1], ww[0]:ww[1]] = count
            count += 1
    mask = mask.view(h // window, window, w // window, window).permute(0, 2, 1, 3).reshape(-1, window * window)
    mask = mask.unsqueeze(1) - mask.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0).unsqueeze(1)


@pytest.mark.parametrize("h, w, window, shift", [(8, 8, 2, 1), (12, 12, 4, 2), (6, 6, 3, 1)])
def test_window_mask_and_relative_position_index_are_torchvisions(h, w, window, shift):
    prog = evo.compile(textwrap.dedent(f"""\
        block B(x) {{
            mask = window_mask([{h}, {w}], {window}, {shift})
            relative_position_index = relative_position_index({window})
            return x
        }}
        network Net(x: Tensor[N, 4]) {{
            b = B(x)
            return b
        }}
        """))
    net = prog.build("Net")
    torch.testing.assert_close(net.b.mask, _mask_reference(h, w, window, shift), rtol=0, atol=0)
    torch.testing.assert_close(net.b.relative_position_index, swin._relative_position_index([window, window]),
                               rtol=0, atol=0)
    assert list(net.state_dict()) == ["b.relative_position_index"]


# Each op after the CAM layer `feat` ([N, 4, 4, 4]): the compiled strategy differentiates the
# head with the ops' derivative rules; the autograd strategy is torch.autograd.  Every head ends
# in a non-affine softmax-weighted sum, so no affine fold hides the gradient ops.
HEADS = {
    "matmul": "matmul(t, transpose(t, 2, 3))",
    "matmul_broadcast": "matmul(t, w)",
    "scale_by": "scale_by(t, -0.7)",
    "roll": "roll(t, [1, -1], [1, 2])",
    "subsample": "subsample(t, 2, start=1, step=2)",
    "subsample_last": "subsample(t, -1, step=2)",
    "pad": "pad(t, [0, 1, 2, 0])",
    "normalize": "l2_normalize(t, dim=-1)",
    "clamp": "clamp(t, min=-0.3, max=0.4)",
    "exp": "exp(scale_by(t, 0.5))",
    "softmax": "softmax(t, dim=2)",
    "narrow_middle": "narrow(t, 3, 1, 2)",  # zero padding back, as much before as after
}


@pytest.mark.parametrize("op", list(HEADS))
def test_window_op_derivatives_equal_autograd(op):
    prog = evo.compile(channels_last_head_program(HEADS[op]))
    assert_head_strategies_equal_hooks(prog)


@pytest.mark.parametrize("expr, torch_fn", [
    ("matmul(t, transpose(t, 2, 3))", lambda t: t @ t.transpose(2, 3)),
    ("scale_by(t, 0.25)", lambda t: t * 0.25),
    ("roll(t, [1, 2], [1, 2])", lambda t: torch.roll(t, (1, 2), (1, 2))),
    ("subsample(subsample(t, 1, start=1, step=2), 2, step=2)", lambda t: t[..., 1::2, 0::2, :]),
    ("pad(t, [0, 0, 0, 1, 0, 1])", lambda t: F.pad(t, (0, 0, 0, 1, 0, 1))),
    ("l2_normalize(t)", lambda t: F.normalize(t, dim=-1)),
    ("clamp(t, max=0.1)", lambda t: torch.clamp(t, max=0.1)),
    ("exp(t)", torch.exp),
    ("concat(t, t, dim=-1)", lambda t: torch.cat([t, t], -1)),
])
def test_window_ops_compute_torchs_expressions(expr, torch_fn):
    prog = evo.compile(f"network Net(t: Tensor[N, 4, 4, 3]) {{\n    y = {expr}\n    return y\n}}\n")
    net = prog.build("Net")
    t = torch.randn(2, 4, 4, 3)
    torch.testing.assert_close(net(t), torch_fn(t), rtol=0, atol=0)
