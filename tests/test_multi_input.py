"""Blocks with several tensor inputs and lists of tensors (issue 11: DenseNet's dense layer
takes the list of all previous features): `skip: Tensor` and `xs: Tensor[]` parameters,
list literals `[a, b]`, `xs + [y]`, `concat(xs)`.

The reference is the program's forward written here in plain PyTorch, with torchvision's
DenseNet structure (`_DenseLayer.forward(inputs: list)`: `torch.cat(inputs, 1)` first;
`_DenseBlock` calls each layer with the growing list and returns `torch.cat(features, 1)`)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import evo
from evo.frontend.fmt import format_source
from tests.refcam import reference_cam

SRC = """\
evo 0.1

block DenseLayer(inputs: Tensor[], growth: int) {
    concated = concat(inputs)
    norm1 = batchnorm2d(concated)
    conv1 = conv2d(relu(norm1), 2 * growth, 1, bias=false)
    norm2 = batchnorm2d(conv1)
    conv2 = conv2d(relu(norm2), growth, 3, padding=1, bias=false)
    return conv2
}

block DenseBlock(x, growth: int) {
    denselayer1 = DenseLayer([x], growth)
    denselayer2 = DenseLayer([x, denselayer1], growth)
    features = [x, denselayer1, denselayer2]
    denselayer3 = DenseLayer(features, growth)
    return concat(features + [denselayer3])
}

block Gate(x, skip: Tensor, scale: Tensor[N, 4, H, W], c: int = skip.channels) {
    conv = conv2d(x, c, 1)
    return conv * scale + skip
}

network Net(x: Tensor[N, 3, 12, 12]) {
    stem = conv2d(x, 4, 3, padding=1)
    block1 = DenseBlock(stem, 2)
    gate = Gate(block1, stem, relu(stem))
    pool = adaptive_avgpool2d(relu(concat([gate, block1])), 1)
    fc = linear(flatten(pool), 5)
    return fc
}

cam AtStem {
    network = Net
    layer = stem
    upsample = none
    normalize = none
}

cam AtLayer {
    network = Net
    layer = block1.denselayer1
    upsample = none
    normalize = none
}
"""


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, 2 * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(2 * growth)
        self.conv2 = nn.Conv2d(2 * growth, growth, 3, padding=1, bias=False)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        concated = torch.cat(inputs, 1)
        return self.conv2(F.relu(self.norm2(self.conv1(F.relu(self.norm1(concated))))))


class DenseBlock(nn.ModuleDict):
    def __init__(self, cin: int, growth: int, layers: int = 3):
        super().__init__()
        for i in range(layers):
            self.add_module(f"denselayer{i + 1}", DenseLayer(cin + i * growth, growth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Gate(nn.Module):
    def __init__(self, cin: int, c: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, c, 1)

    def forward(self, x, skip, scale):
        return self.conv(x) * scale + skip


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.block1 = DenseBlock(4, 2)
        self.gate = Gate(10, 4)
        self.fc = nn.Linear(14, 5)

    def forward(self, x):
        stem = self.stem(x)
        block1 = self.block1(stem)
        gate = self.gate(block1, stem, F.relu(stem))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(F.relu(torch.cat([gate, block1], 1)), 1), 1))


def _randomized(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def prog():
    return evo.compile(SRC)


@pytest.fixture(scope="module")
def models(prog):
    torch.manual_seed(0)
    ref = _randomized(Net())
    net = prog.build("Net")
    net.load_state_dict(ref.state_dict(), strict=True)
    return net.eval(), ref


def test_generated_forward_takes_the_tensors_and_the_list_as_torch_does(prog, models):
    py = prog.emit_python()
    assert "    def forward(self, inputs):\n        concated = torch.cat(inputs, 1)\n" in py
    assert "    def forward(self, x, skip, scale):\n" in py
    assert "= self.denselayer2([x, denselayer1])\n" in py
    assert "= self.gate(block1, stem, relu)\n" in py
    assert "del inputs" not in py and "del x" not in py.split("class Net")[0]
    net, ref = models
    assert list(net.state_dict()) == list(ref.state_dict())
    torch.manual_seed(1)
    x = torch.randn(2, 3, 12, 12)
    a, b = torch.randn(2, 4, 12, 12), torch.randn(2, 2, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref(x), rtol=1e-5, atol=1e-5)
        # a submodule called by hand with a list, as torchvision's _DenseLayer is
        torch.testing.assert_close(net.block1.denselayer2([a, b]), ref.block1.denselayer2([a, b]),
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(net.gate(torch.randn(2, 10, 12, 12), a, b.repeat(1, 2, 1, 1)).shape,
                                   torch.Size([2, 4, 12, 12]))


@pytest.mark.parametrize("cam, layer", [("AtStem", "stem"), ("AtLayer", "block1.denselayer1")])
def test_gradients_flow_to_every_tensor_input(prog, models, cam, layer):
    """`stem` enters every dense layer (through the lists), the final concat, and the gate as
    its skip and scale: every strategy's Grad-CAM equals autograd's on the reference."""
    net, ref = models
    torch.manual_seed(3)
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        top = ref(x).argmax(1)
    for shift in range(5):
        classes = (top + shift) % 5
        want = reference_cam(ref, x, ref.get_submodule(layer), "gradcam", classes)
        if (want > 0).any():
            break
    assert (want > 0).any()
    for strategy in ("autograd", "forward", "compiled"):
        res = prog.explainer(cam, net, strategy=strategy)(x, classes)
        torch.testing.assert_close(res.maps, want, rtol=1e-5, atol=1e-5, msg=strategy)


def test_format_round_trips_and_the_ir_lists_the_arguments(prog):
    assert format_source(SRC) == SRC
    assert format_source(SRC.replace("inputs: Tensor[]", "inputs : Tensor [ ]")) == SRC
    g = prog.graph("Net")
    sc = {s.path: s for s in g.scopes}
    layer2 = sc["block1.denselayer2"]
    assert [name for name, _ in layer2.args] == ["inputs"] and len(layer2.args[0][1]) == 2
    assert [name for name, _ in sc["gate"].args] == ["x", "skip", "scale"]
    assert sc["block1"].args == ()  # one tensor input: as before


def test_a_list_costs_what_the_same_tensors_one_by_one_cost(prog):
    """`concat(xs)` and `concat(a, b, c)` are the same op: same IR ops, same cost."""
    from evo.cost.network import graph_ops

    one_by_one = SRC.replace("concat(features + [denselayer3])", "concat(x, denselayer1, denselayer2, denselayer3)")
    g1, g2 = prog.graph("Net"), evo.compile(one_by_one).graph("Net")
    assert [n for n, _, _ in graph_ops(g1, 1)] == [n for n, _, _ in graph_ops(g2, 1)]
    assert [n.op for n in g1.nodes] == [n.op for n in g2.nodes]


LOOP = """\
block DenseBlock(x, growth: int, layers: int = 3) {
    features = [x]
    for i in 1..layers + 1 {
        denselayer{i} = DenseLayer(features, growth)
        features = features + [denselayer]
    }
    return concat(features)
}
"""


def test_a_for_loop_grows_the_list_and_numbers_the_modules(prog, models):
    """`_DenseBlock` as torchvision writes it (a loop appending each layer's output to the list
    it passes on, `add_module(f"denselayer{i + 1}")`): the same network, module for module."""
    start = SRC.index("block DenseBlock")
    end = SRC.index("block Gate")
    looped = evo.compile(SRC[:start] + LOOP + "\n" + SRC[end:])
    assert looped.emit_python() == prog.emit_python()
    assert format_source(LOOP) == LOOP
    net, ref = models
    net2 = looped.build("Net")
    net2.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(net2.eval()(x), ref(x), rtol=1e-5, atol=1e-5)
    deeper = evo.compile(SRC[:start] + LOOP.replace("layers: int = 3", "layers: int = 5") + "\n" + SRC[end:])
    g = deeper.graph("Net")
    assert [s.path for s in g.scopes if s.label == "DenseLayer"] == [f"block1.denselayer{i}" for i in range(1, 6)]


def _error(src: str):
    with pytest.raises(evo.EvoError) as info:
        evo.compile(src)
    d = info.value.diagnostics[0]
    return d.code, d.span.line, d.span.column, d.message


HEAD = "block D(xs: Tensor[], c: int) {\n    return conv2d(concat(xs), c, 1)\n}\n" \
       "block T(x, skip: Tensor) {\n    return x + skip\n}\n" \
       "block S(x, n: int) {\n    return x\n}\n" \
       "block B(x, n: int[]) {\n    return x\n}\n"


@pytest.mark.parametrize("body, want", [
    ("    y = D(x, 4)\n", ("E0205", 2, 11, "the first argument of block 'D' must be a list of tensors, not "
                                         "tensor [N, 3, 8, 8]")),
    ("    y = D([], 4)\n", ("E0107", 2, 11, "the first argument of block 'D' is an empty list; it needs at least "
                                          "one tensor")),
    ("    y = D([x, 2], 4)\n", ("E0205", 2, 15, "item 1 of the first argument of block 'D' is int; the list must "
                                              "hold tensors only")),
    ("    y = T(x, 3)\n", ("E0205", 2, 14, "argument 'skip' of block 'T' must be a tensor, not int")),
    ("    y = S(x, x)\n", ("E0205", 2, 14, "parameter 'n' of block 'S' is a compile-time value, not a tensor")),
    ("    y = S(x, [x])\n", ("E0205", 2, 14, "parameter 'n' of block 'S' is a compile-time value, not a list of "
                                           "tensors")),
    ("    y = concat([])\n", ("E0107", 2, 16, "the first argument of concat is an empty list; it needs at least "
                                            "one tensor")),
    ("    y = concat([x, relu(x)], x)\n", ("E0205", 2, 30, "concat takes its tensors either as a list or one by "
                                                          "one, not both")),
    ("    y = concat([x, maxpool2d(x, 2)])\n", ("E0301", 2, 20, "concat input 2 has shape [N, 3, 4, 4], which "
                                                               "differs from [N, 3, 8, 8] outside dimension 1")),
    ("    y = T(x, [x])\n", ("E0205", 2, 14, "argument 'skip' of block 'T' must be a tensor, not list of 1 tensor")),
    ("    y = [x] + x\n", ("E0200", 2, 9, "cannot add a tensor and list of 1 tensor")),
    ("    y = [x] + 1\n", ("E0200", 2, 9, "'+' joins two lists, not list of 1 tensor and int")),
    ("    y = seq(x) { T(x) }\n", ("E0205", 2, 18, "block 'T' cannot be a seq stage: it takes several tensors "
                                                 "(parameter 'skip')")),
    ("    y = B(x, [1])\n", ("E0200", -2, 15, "'int[]' is not a type; only a list of tensors is declared with [] "
                                           "('n: Tensor[]')")),
    ("    fs = [x]\n    for i in 0..2 {\n        c = conv2d(x, 3, 1)\n        fs = fs + [c]\n    }\n",
     ("E0102", 4, 13, "'c' names a module in every iteration of the loop")),
    ("    for i in 0..2 {\n        c{i + 0.5} = conv2d(x, 3, 1)\n    }\n",
     ("E0200", 3, 11, "the number of a numbered name must be an int or a string, not float")),
    ("    for i in 1..3 {\n        c{i} = conv2d(x, 3, 1)\n    }\n    c1 = conv2d(x, 3, 1)\n",
     ("E0102", 5, 10, "a module named 'c1' already exists here (a numbered name of a loop, or a generated name, "
                      "took it)")),
    ("    xs = [1]\n    for i in 0..20 {\n        xs = xs + xs\n    }\n",
     ("E0203", 4, 14, "the list would hold 16,384 items; a list holds at most 10,000")),
    ("    c{1} = conv2d(x, 3, 1)\n", ("E0102", 2, 5, "a numbered name (c{...}) is bound in a 'for' body only")),
    ("    for i in 0..2 {\n        return x\n    }\n", ("E0112", 3, 9, "'return' inside a 'for' body")),
    ("    for x in 0..2 {\n        y = x\n    }\n", ("E0102", 2, 9, "'x' is already bound; a loop variable is a "
                                                                "new name")),
    ("    for i in 0..2 {\n        y = relu(x)\n    }\n    z = y\n", ("E0100", 5, 9, "'y' is not defined")),
    ("    y = seq(x) { D(4) }\n", ("E0205", 2, 18, "block 'D' cannot be a seq stage: its input 'xs' is a list of "
                                                 "tensors")),
])
def test_misuse_is_reported_at_the_offending_argument(body, want):
    src = HEAD + "network Net(x: Tensor[N, 3, 8, 8]) {\n" + body + "    return x\n}\n"
    got = _error(src)
    line_off = HEAD.count("\n")
    assert (got[0], got[1] - line_off, got[2], got[3]) == want


def test_densenet_imports_with_list_blocks_and_the_dense_loop():
    """torchvision's DenseNet structure (tests/zoo/densenet.py) with dense blocks of 3, 5 and 2
    layers: one `_DenseLayer(inputs: Tensor[])`, one `_DenseBlock(x, layers: int)` looping over
    its layers; strict load, logits, and Grad-CAM inside a dense block (a layer whose output
    every later layer of its block reads through the list) equal to autograd's."""
    from tests.zoo import densenet

    torch.manual_seed(0)
    model = _randomized(densenet.DenseNet(4, (3, 5, 2), 8, 2, 10))
    x = torch.randn(2, 3, 32, 32)
    src = evo.from_torch(model, x[:1])
    assert format_source(src) == src
    for text in ("block _DenseLayer(inputs: Tensor[]) {\n    norm1 = batchnorm2d(concat(inputs))\n",
                 "block _DenseBlock(x, layers: int) {\n    features = [x]\n    for i in 1..layers + 1 {\n"
                 "        denselayer{i} = _DenseLayer(features)\n        features = features + [denselayer]\n"
                 "    }\n    return concat(features)\n}\n",
                 "denseblock1 = _DenseBlock(pool0, 3)", "denseblock2 = _DenseBlock(transition1, 5)",
                 "denseblock3 = _DenseBlock(transition2, 2)"):
        assert text in src, text
    assert src.count("\nblock ") == 4 and len(src.splitlines()) < 60, src
    layer = "features.denseblock2.denselayer2"
    prog = evo.compile(src + f"\ncam C {{\n    network = DenseNet\n    layer = {layer}\n    upsample = none\n"
                             "    normalize = none\n}\n")
    net = prog.build("DenseNet")
    assert list(net.state_dict()) == list(model.state_dict())
    net.load_state_dict(model.state_dict(), strict=True)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), rtol=1e-5, atol=1e-5)
        top = model(x).argmax(1)
    for shift in range(10):
        classes = (top + shift) % 10
        want = reference_cam(model, x, model.get_submodule(layer), "gradcam", classes)
        if (want > 0).any():
            break
    assert (want > 0).any()
    for strategy in ("autograd", "forward", "compiled"):
        res = prog.explainer("C", net, strategy=strategy)(x, classes)
        torch.testing.assert_close(res.maps, want, rtol=1e-5, atol=1e-5, msg=strategy)


SEQ_SRC = """\
block Layer(inputs: Tensor[], growth: int) {
    return conv2d(relu(concat(inputs)), growth, 3, padding=1)
}

block Dense(x, layers: int) {
    features = [x]
    for i in 1..layers + 1 {
        layer{i} = Layer(features, 2)
        features = features + [layer]
    }
    return concat(features)
}

network Net(x: Tensor[N, 3, 8, 8]) = seq(x) {
    conv2d(4, 3, padding=1)
    for k in 1..3 { Dense(k) }
    adaptive_avgpool2d(1)
    flatten
    linear(5)
}

cam C {
    network = Net
    layer = "2.layer1"
    upsample = none
    normalize = none
}
"""


def test_a_block_with_the_dense_loop_is_a_seq_stage():
    """The variadic concat inside a block used as a seq stage: an nn.Sequential of dense blocks
    (module `2.layer2`), against the forward written out with the functional ops."""
    prog = evo.compile(SEQ_SRC)
    torch.manual_seed(0)
    net = prog.build("Net").eval()
    sd = net.state_dict()
    assert [k for k in sd if k.endswith("weight")] == ["0.weight", "1.layer1.conv2d_0.weight",
                                                      "2.layer1.conv2d_0.weight", "2.layer2.conv2d_0.weight",
                                                      "5.weight"]

    def dense(t, p, layers):
        feats = [t]
        for i in range(1, layers + 1):
            w = f"{p}.layer{i}.conv2d_0"
            feats.append(F.conv2d(F.relu(torch.cat(feats, 1)), sd[w + ".weight"], sd[w + ".bias"], padding=1))
        return torch.cat(feats, 1)

    x = torch.randn(2, 3, 8, 8)
    t = dense(dense(F.conv2d(x, sd["0.weight"], sd["0.bias"], padding=1), "1", 1), "2", 2)
    want = F.linear(torch.flatten(F.adaptive_avg_pool2d(t, 1), 1), sd["5.weight"], sd["5.bias"])
    with torch.no_grad():
        torch.testing.assert_close(net(x), want, rtol=1e-5, atol=1e-5)
    maps = {s: prog.explainer("C", net, strategy=s)(x).maps for s in ("autograd", "forward", "compiled")}
    assert maps["autograd"].abs().sum() > 0
    for s in ("forward", "compiled"):
        torch.testing.assert_close(maps[s], maps["autograd"], rtol=1e-5, atol=1e-5, msg=s)


class _Fuse(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(6, 4, 1)

    def forward(self, a, b):
        return self.conv(torch.cat([a, b], 1))


class _TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 3, 3, padding=1)
        self.fuse1 = _Fuse()
        self.fuse2 = _Fuse()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        s = self.stem(x)
        y = self.fuse1(x, s) + self.fuse2(s, x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


def test_a_module_of_several_tensors_it_concatenates_first_imports_as_a_list_block():
    """forward(self, a, b) doing torch.cat([a, b], 1) first: a block taking the list (called with
    [x, s]), as a traced list would be; strict load and logits."""
    torch.manual_seed(0)
    model = _TwoInputs().eval()
    x = torch.randn(2, 3, 8, 8)
    src = evo.from_torch(model, x[:1])
    assert "block _Fuse(inputs: Tensor[]) {\n    conv = conv2d(concat(inputs), 4, 1)\n" in src, src
    assert "fuse1 = _Fuse([x, stem])" in src and "fuse2 = _Fuse([stem, x])" in src, src
    net = evo.compile(src).build("_TwoInputs")
    net.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), model(x), rtol=1e-5, atol=1e-5)


class _Gate(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1)

    def forward(self, x, skip):
        return self.conv(x) * torch.sigmoid(skip)


class _Gated(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.body = nn.Conv2d(4, 4, 3, padding=1)
        self.gate1 = _Gate(4)
        self.gate2 = _Gate(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        s = self.stem(x)
        b = self.body(s)
        y = self.gate1(b, s)
        z = self.gate2(y, skip=b)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(z, 1), 1))


def test_a_module_of_several_tensor_parameters_imports_as_a_block_of_several_inputs():
    """forward(self, x, skip): `block _Gate(x, skip: Tensor)` called `_Gate(body, stem)` (a tensor
    passed by keyword binds its parameter too); strict load, logits, and Grad-CAM at `stem`
    (read by the gate as its skip and, through `body`, as its x) equal to autograd's."""
    torch.manual_seed(0)
    model = _Gated().eval()
    x = torch.randn(2, 3, 8, 8)
    src = evo.from_torch(model, x[:1])
    assert "block _Gate(x, skip: Tensor) {\n" in src and src.count("\nblock ") == 1, src
    assert "gate1 = _Gate(body, stem)" in src and "gate2 = _Gate(gate1, body)" in src, src
    assert format_source(src) == src
    prog = evo.compile(src + "\ncam C {\n    network = _Gated\n    layer = stem\n    upsample = none\n"
                             "    normalize = none\n}\n")
    net = prog.build("_Gated")
    net.load_state_dict(model.state_dict(), strict=True)
    net.eval()
    assert "    def forward(self, x, skip):\n" in prog.emit_python()
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), rtol=1e-5, atol=1e-5)
        top = model(x).argmax(1)
    want = reference_cam(model, x, model.stem, "gradcam", top)
    for strategy in ("autograd", "forward", "compiled"):
        res = prog.explainer("C", net, strategy=strategy)(x, top)
        torch.testing.assert_close(res.maps, want, rtol=1e-5, atol=1e-5, msg=strategy)


def test_densenet121_imports_in_one_dense_layer_and_one_dense_block():
    """The full DenseNet-121 structure (58 dense layers in blocks of 6, 12, 24 and 16; at 32x32 to
    stay fast): one list block, one looping block with its layer count, under 60 lines; strict
    load and logits."""
    from tests.zoo import densenet

    torch.manual_seed(0)
    model = densenet.densenet121().eval()
    x = torch.randn(1, 3, 32, 32)
    src = evo.from_torch(model, x)
    assert format_source(src) == src
    assert src.count("\nblock ") == 4 and len(src.splitlines()) < 60, src
    assert "for i in 1..layers + 1 {\n        denselayer{i} = _DenseLayer(features)\n" in src
    for k, (inp, n) in enumerate((("pool0", 6), ("transition1", 12), ("transition2", 24), ("transition3", 16))):
        assert f"denseblock{k + 1} = _DenseBlock({inp}, {n})" in src
    net = evo.compile(src).build("DenseNet")
    net.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), model(x), rtol=1e-5, atol=1e-5)
