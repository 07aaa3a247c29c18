"""The model-zoo mirrors in tests/zoo/ against torchvision's real structure.

torchvision is not a dependency, so each mirror is checked against facts published with
torchvision's models: the parameter count of its pretrained weights (the `num_params` in
each `*_Weights` entry of torchvision.models) and known state_dict keys and shapes of
those checkpoints.  The full configuration is built on the meta device (no memory, no
compute); a tiny configuration runs a forward pass.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.zoo import (convnext, densenet, efficientnet, googlenet, inception, maxvit, mobilenetv3, regnet,
                       shufflenetv2, swin, vit)

# name: (full constructor, torchvision num_params, state_dict entries, known keys and shapes)
FULL = {
    "efficientnet_b0": (efficientnet.efficientnet_b0, 5_288_548, 360, {
        "features.0.0.weight": (32, 3, 3, 3),
        "features.1.0.block.0.0.weight": (32, 1, 3, 3),
        "features.1.0.block.1.fc1.weight": (8, 32, 1, 1),
        "features.1.0.block.2.0.weight": (16, 32, 1, 1),
        "features.2.0.block.0.0.weight": (96, 16, 1, 1),
        "features.8.0.weight": (1280, 320, 1, 1),
        "classifier.1.weight": (1000, 1280),
    }),
    "efficientnet_v2_s": (efficientnet.efficientnet_v2_s, 21_458_488, 782, {
        "features.0.0.weight": (24, 3, 3, 3),
        "features.1.0.block.0.0.weight": (24, 24, 3, 3),
        "features.2.0.block.0.0.weight": (96, 24, 3, 3),
        "features.2.0.block.1.0.weight": (48, 96, 1, 1),
        "features.4.0.block.2.fc1.weight": (16, 256, 1, 1),
        "features.6.14.block.3.0.weight": (256, 1536, 1, 1),
        "features.7.0.weight": (1280, 256, 1, 1),
        "classifier.1.weight": (1000, 1280),
    }),
    "mobilenet_v3_large": (mobilenetv3.mobilenet_v3_large, 5_483_032, 312, {
        "features.0.0.weight": (16, 3, 3, 3),
        "features.1.block.0.0.weight": (16, 1, 3, 3),
        "features.4.block.2.fc1.weight": (24, 72, 1, 1),
        "features.4.block.2.fc2.weight": (72, 24, 1, 1),
        "features.16.0.weight": (960, 160, 1, 1),
        "classifier.0.weight": (1280, 960),
        "classifier.3.weight": (1000, 1280),
    }),
    "mobilenet_v3_small": (mobilenetv3.mobilenet_v3_small, 2_542_856, 244, {
        "features.1.block.1.fc1.weight": (8, 16, 1, 1),
        "features.12.0.weight": (576, 96, 1, 1),
        "classifier.0.weight": (1024, 576),
    }),
    "regnet_y_400mf": (regnet.regnet_y_400mf, 4_344_144, 384, {
        "stem.0.weight": (32, 3, 3, 3),
        "trunk_output.block1.block1-0.proj.0.weight": (48, 32, 1, 1),
        "trunk_output.block1.block1-0.f.b.0.weight": (48, 8, 3, 3),
        "trunk_output.block1.block1-0.f.se.fc1.weight": (8, 48, 1, 1),
        "trunk_output.block4.block4-5.f.c.0.weight": (440, 440, 1, 1),
        "fc.weight": (1000, 440),
    }),
    "regnet_x_400mf": (regnet.regnet_x_400mf, 5_495_976, 428, {
        "trunk_output.block1.block1-0.f.a.0.weight": (32, 32, 1, 1),
        "trunk_output.block4.block4-11.f.b.0.weight": (400, 16, 3, 3),
        "fc.weight": (1000, 400),
    }),
    "convnext_tiny": (convnext.convnext_tiny, 28_589_128, 182, {
        "features.0.0.weight": (96, 3, 4, 4),
        "features.0.1.weight": (96,),
        "features.1.0.layer_scale": (96, 1, 1),
        "features.1.0.block.0.weight": (96, 1, 7, 7),
        "features.1.0.block.3.weight": (384, 96),
        "features.2.1.weight": (192, 96, 2, 2),
        "features.5.8.layer_scale": (384, 1, 1),
        "classifier.0.weight": (768,),
        "classifier.2.weight": (1000, 768),
    }),
    "densenet121": (densenet.densenet121, 7_978_856, 727, {
        "features.conv0.weight": (64, 3, 7, 7),
        "features.denseblock1.denselayer1.conv1.weight": (128, 64, 1, 1),
        "features.denseblock1.denselayer1.conv2.weight": (32, 128, 3, 3),
        "features.transition1.conv.weight": (128, 256, 1, 1),
        "features.denseblock4.denselayer16.norm1.weight": (992,),
        "features.norm5.weight": (1024,),
        "classifier.weight": (1000, 1024),
    }),
    "shufflenet_v2_x1_0": (shufflenetv2.shufflenet_v2_x1_0, 2_278_604, 338, {
        "conv1.0.weight": (24, 3, 3, 3),
        "stage2.0.branch1.0.weight": (24, 1, 3, 3),
        "stage2.0.branch2.0.weight": (58, 24, 1, 1),
        "stage2.1.branch2.0.weight": (58, 58, 1, 1),
        "stage4.3.branch2.5.weight": (232, 232, 1, 1),
        "conv5.0.weight": (1024, 464, 1, 1),
        "fc.weight": (1000, 1024),
    }),
    # torchvision's GoogLeNet weights count the network without its auxiliary classifiers
    "googlenet": (lambda: googlenet.googlenet(aux_logits=False), 6_624_904, 344, {
        "conv1.conv.weight": (64, 3, 7, 7),
        "conv1.bn.running_var": (64,),
        "inception3a.branch3.1.conv.weight": (32, 16, 3, 3),
        "inception5b.branch4.1.conv.weight": (128, 832, 1, 1),
        "fc.weight": (1000, 1024),
    }),
    # ... and Inception-v3's with its AuxLogits
    "inception_v3": (inception.inception_v3, 27_161_264, 580, {
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
        "Mixed_5b.branch5x5_2.conv.weight": (64, 48, 5, 5),
        "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
        "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
        "AuxLogits.conv1.conv.weight": (768, 128, 5, 5),
        "AuxLogits.fc.weight": (1000, 768),
        "fc.weight": (1000, 2048),
    }),
    "vit_b_16": (vit.vit_b_16, 86_567_656, 152, {
        "class_token": (1, 1, 768),
        "conv_proj.weight": (768, 3, 16, 16),
        "encoder.pos_embedding": (1, 197, 768),
        "encoder.layers.encoder_layer_0.ln_1.weight": (768,),
        "encoder.layers.encoder_layer_0.self_attention.in_proj_weight": (2304, 768),
        "encoder.layers.encoder_layer_0.self_attention.in_proj_bias": (2304,),
        "encoder.layers.encoder_layer_0.self_attention.out_proj.weight": (768, 768),
        "encoder.layers.encoder_layer_11.mlp.0.weight": (3072, 768),
        "encoder.layers.encoder_layer_11.mlp.3.weight": (768, 3072),
        "encoder.ln.weight": (768,),
        "heads.head.weight": (1000, 768),
    }),
    "swin_t": (swin.swin_t, 28_288_354, 185, {
        "features.0.0.weight": (96, 3, 4, 4),
        "features.0.2.weight": (96,),
        "features.1.0.attn.relative_position_bias_table": (169, 3),
        "features.1.0.attn.relative_position_index": (2401,),
        "features.1.0.attn.qkv.weight": (288, 96),
        "features.2.reduction.weight": (192, 384),
        "features.2.norm.weight": (384,),
        "features.7.1.mlp.0.weight": (3072, 768),
        "norm.weight": (768,),
        "head.weight": (1000, 768),
    }),
    "swin_v2_t": (swin.swin_v2_t, 28_351_570, 233, {
        "features.1.0.attn.logit_scale": (3, 1, 1),
        "features.1.0.attn.cpb_mlp.0.weight": (512, 2),
        "features.1.0.attn.cpb_mlp.2.weight": (3, 512),
        "features.1.0.attn.relative_coords_table": (1, 15, 15, 2),
        "features.1.0.attn.relative_position_index": (4096,),
        "features.2.reduction.weight": (192, 384),
        "features.2.norm.weight": (192,),
    }),
    "maxvit_t": (maxvit.maxvit_t, 30_919_624, 582, {
        "stem.0.0.weight": (64, 3, 3, 3),
        "stem.1.0.weight": (64, 64, 3, 3),
        "stem.1.0.bias": (64,),
        "blocks.0.layers.0.layers.MBconv.proj.1.weight": (64, 64, 1, 1),
        "blocks.0.layers.0.layers.MBconv.layers.pre_norm.weight": (64,),
        "blocks.0.layers.0.layers.MBconv.layers.conv_a.0.weight": (256, 64, 1, 1),
        "blocks.0.layers.0.layers.MBconv.layers.squeeze_excitation.fc1.weight": (16, 256, 1, 1),
        "blocks.0.layers.0.layers.window_attention.attn_layer.1.to_qkv.weight": (192, 64),
        "blocks.0.layers.0.layers.window_attention.attn_layer.1.relative_position_bias_table": (169, 2),
        "blocks.0.layers.0.layers.grid_attention.attn_layer.1.relative_position_index": (49, 49),
        "blocks.3.layers.1.layers.grid_attention.mlp_layer.1.weight": (2048, 512),
        "classifier.5.weight": (1000, 512),
    }),
}


@pytest.mark.parametrize("name", list(FULL))
def test_full_configuration_matches_torchvision(name):
    make, n_params, n_keys, known = FULL[name]
    with torch.device("meta"):
        model = make()
    assert sum(p.numel() for p in model.parameters()) == n_params
    sd = model.state_dict()
    assert len(sd) == n_keys
    for key, shape in known.items():
        assert key in sd, key
        assert tuple(sd[key].shape) == shape, key


# name: (tiny constructor, input size)
TINY = {
    "efficientnet_b0": (lambda: efficientnet.efficientnet_b0(10, width_mult=0.25, depth_mult=0.34, stages=3), 32),
    "efficientnet_v2_s": (lambda: efficientnet.efficientnet_v2_s(10, width_div=8, depth=1, stages=4), 32),
    "mobilenet_v3_large": (lambda: mobilenetv3.mobilenet_v3_large(10, width_mult=0.25, blocks=5), 32),
    "mobilenet_v3_small": (lambda: mobilenetv3.mobilenet_v3_small(10, width_mult=0.25, blocks=5), 32),
    "regnet_y_400mf": (lambda: regnet.regnet_y_400mf(10, tiny=True), 32),
    "regnet_x_400mf": (lambda: regnet.regnet_x_400mf(10, tiny=True), 32),
    "convnext_tiny": (lambda: convnext.convnext_tiny(10, tiny=True), 32),
    "densenet121": (lambda: densenet.densenet121(10, tiny=True), 32),
    "shufflenet_v2_x1_0": (lambda: shufflenetv2.shufflenet_v2_x1_0(10, tiny=True), 32),
    "googlenet": (lambda: googlenet.googlenet(10, width_div=16), 32),
    "inception_v3": (lambda: inception.inception_v3(10, width_div=16), 75),
    "vit_tiny": (lambda: vit.vit_tiny(10), 32),
    "swin_t": (lambda: swin.swin_t(10, tiny=True), 32),
    "swin_v2_t": (lambda: swin.swin_v2_t(10, tiny=True), 32),
    "maxvit_t": (lambda: maxvit.maxvit_t(10, tiny=True), 32),
}


@pytest.mark.parametrize("name", list(TINY))
def test_tiny_configuration_runs(name):
    make, size = TINY[name]
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        y = model(x)
        y2 = model(x)
        one = model(x[1:])
    assert y.shape == (2, 10)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, y2, rtol=0, atol=0)  # eval: stochastic depth and dropout are identities
    torch.testing.assert_close(one, y[1:], rtol=1e-5, atol=1e-5)  # images are independent in eval


@pytest.mark.parametrize("make, size", [(lambda: googlenet.googlenet(10, width_div=16), 32),
                                        (lambda: inception.inception_v3(10, width_div=16), 299)],
                         ids=["googlenet", "inception_v3"])
def test_auxiliary_classifiers_run_in_training_only(make, size):
    torch.manual_seed(0)
    model = make()
    x = torch.randn(2, 3, size, size)
    out = model.train()(x)
    assert isinstance(out, tuple) and all(o.shape == (2, 10) for o in out if o is not None)
    assert all(o is not None for o in out)
    assert isinstance(model.eval()(x), torch.Tensor)


def test_stochastic_depth_semantics():
    """torchvision.ops.stochastic_depth: rows dropped with probability p and survivors
    scaled by 1 / (1 - p) in training; the identity in eval."""
    from tests.zoo.common import StochasticDepth

    sd = StochasticDepth(0.5, "row")
    x = torch.ones(4000, 3)
    torch.manual_seed(0)
    y = sd.train()(x)
    kept = (y[:, 0] != 0)
    assert set(torch.unique(y).tolist()) <= {0.0, 2.0}
    assert (y == y[:, :1]).all()  # whole rows
    assert abs(kept.float().mean().item() - 0.5) < 0.05
    assert torch.equal(sd.eval()(x), x)


def test_regnet_widths_follow_the_published_design():
    """RegNet's quantized linear widths (Radosavovic et al. 2020, torchvision's BlockParams)."""
    assert regnet.block_params(16, 48, 27.89, 2.09, 8) == ([48, 104, 208, 440], [1, 3, 6, 6], [8, 8, 8, 8])
    assert regnet.block_params(22, 24, 24.48, 2.54, 16) == ([32, 64, 160, 400], [1, 2, 7, 12], [16, 16, 16, 16])


def test_shufflenet_channel_shuffle_interleaves_groups():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert shufflenetv2.channel_shuffle(x, 2).view(-1).tolist() == [0, 3, 1, 4, 2, 5]


def test_convnext_layernorm2d_normalizes_channels():
    ln = convnext.LayerNorm2d(4, eps=1e-6)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.uniform_(-1, 1)
    x = torch.randn(2, 4, 3, 5)
    mean = x.mean(1, keepdim=True)
    var = x.var(1, unbiased=False, keepdim=True)
    want = (x - mean) / torch.sqrt(var + 1e-6) * ln.weight.view(1, 4, 1, 1) + ln.bias.view(1, 4, 1, 1)
    torch.testing.assert_close(ln(x), want, rtol=1e-5, atol=1e-5)


def test_vit_attention_is_torch_multihead_attention():
    """The ViT mirror's encoder block is pre-norm attention + MLP with nn.MultiheadAttention's
    parameters; checked against the attention written out by hand."""
    torch.manual_seed(0)
    blk = vit.EncoderBlock(2, 8, 16, 0.0, 0.0, nn.LayerNorm).eval()
    x = torch.randn(3, 5, 8)
    a = blk.self_attention
    h = blk.ln_1(x)
    q, k, v = F.linear(h, a.in_proj_weight, a.in_proj_bias).chunk(3, dim=-1)

    def heads(t):
        return t.view(3, 5, 2, 4).transpose(1, 2)

    att = torch.softmax(heads(q) @ heads(k).transpose(-1, -2) / 2.0, dim=-1) @ heads(v)
    y = a.out_proj(att.transpose(1, 2).reshape(3, 5, 8)) + x
    want = y + blk.mlp[3](F.gelu(blk.mlp[0](blk.ln_2(y))))
    with torch.no_grad():
        torch.testing.assert_close(blk(x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, quoted", [("efficientnet_b0", "`block` = seq(x)"),
                                          ("mobilenet_v3_small", "`block` = seq(x)"),
                                          ("regnet_y_400mf", "`block1-0` = ")])
def test_families_with_quoted_module_names_import(name, quoted):
    """`block` (an evo keyword) and `block1-0` (not an identifier) are quoted names: these
    families import, and the imported program loads torch's state_dict with strict=True."""
    import evo
    from evo.frontend.fmt import format_source

    make, size = TINY[name]
    torch.manual_seed(0)
    model = make().eval()
    with torch.no_grad():  # non-trivial batchnorm statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, size, size)
    src = evo.from_torch(model, x[:1])
    assert quoted in src
    assert format_source(src) == src
    prog = evo.compile(src)
    net = prog.build(next(iter(prog.networks)))
    assert list(net.state_dict()) == list(model.state_dict())
    net.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer", ["trunk_output.block2.`block2-0`", "trunk_output.block2.`block2-1`"])
def test_imported_regnet_cam_at_a_quoted_layer_matches_autograd(layer):
    """Grad-CAM of the imported RegNetY at `block2-0` (the head after it runs through a
    squeeze-excitation block) and at the last spatial layer, every gradient strategy,
    against a hook-and-backward reference on the PyTorch mirror."""
    import evo
    from tests.refcam import reference_cam

    torch.manual_seed(1)
    model = regnet.regnet_y_400mf(10, tiny=True).eval()
    x = torch.randn(2, 3, 64, 64)
    src = evo.from_torch(model, x[:1])
    src += ("\ncam Explain {\n    network = RegNet\n    layer = " + layer
            + "\n    upsample = none\n    normalize = none\n}\n")
    prog = evo.compile(src)
    net = prog.build("RegNet")
    net.load_state_dict(model.state_dict(), strict=True)
    top = model(x).argmax(1)
    want = reference_cam(model, x, model.get_submodule(layer.replace("`", "")), "gradcam", top)
    assert want.shape == (2, 8, 8) and (want > 0).any()
    for strategy in ("autograd", "forward", "compiled"):
        res = prog.explainer("Explain", net, strategy=strategy)(x)
        torch.testing.assert_close(res.maps, want, rtol=1e-4, atol=1e-6, msg=strategy)
