"""Backtick-quoted names (`` `block` ``, `` `block1-0` ``): any PyTorch module name can
be mirrored, so state_dict keys stay exact.  Checked against a hand-written PyTorch
model that registers the same names with add_module, against an autograd Grad-CAM
reference, through the formatter, the emitted Python (injection attempts) and the
importer."""

from __future__ import annotations

import ast

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import evo
from conftest import evoc_batch
from evo.frontend.fmt import format_source
from evo.frontend.names import show, show_path, split_path
from tests.refcam import reference_cam, reference_normalize, reference_upsample

PROGRAM = """\
block Blk(x) {
    `block` = seq(x) { conv2d(x.channels, 3, padding=1, bias=false); batchnorm2d(); relu() }
    return x + `block`
}

block Stage(x) {
    `block1-0` = Blk(x)
    `block1-1` = Blk(`block1-0`)
    return `block1-1`
}

network `Net-1`(x: Tensor[N, 3, 16, 16], classes: int = 10) {
    stem = conv2d(x, 8, 3, padding=1)
    trunk = Stage(stem)
    max = conv2d(trunk, 8, 1)
    `fc layer` = linear(flatten(adaptive_avgpool2d(relu(max), 1)), classes)
    return `fc layer`
}

cam Explain {
    network = `Net-1`
    layer = trunk.`block1-1`
    upsample = none
    normalize = none
}
"""


class TorchBlk(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU())

    def forward(self, x):
        return x + self.block(x)


class TorchStage(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.add_module("block1-0", TorchBlk(c))
        self.add_module("block1-1", TorchBlk(c))

    def forward(self, x):
        return self._modules["block1-1"](self._modules["block1-0"](x))


class TorchNet(nn.Module):
    """The same network written in plain PyTorch, names registered by string."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.trunk = TorchStage(8)
        self.add_module("max", nn.Conv2d(8, 8, 1))
        self.add_module("fc layer", nn.Linear(8, classes))

    def forward(self, x):
        y = self._modules["max"](self.trunk(self.stem(x)))
        y = torch.flatten(F.adaptive_avg_pool2d(torch.relu(y), 1), 1)
        return self._modules["fc layer"](y)


def _reference(seed: int = 0) -> TorchNet:
    torch.manual_seed(seed)
    ref = TorchNet().eval()
    with torch.no_grad():  # non-trivial batchnorm statistics
        for m in ref.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return ref


@pytest.fixture(scope="module")
def prog():
    return evo.compile(PROGRAM, filename="quoted.evo")


def test_state_dict_keys_and_logits_match_torch(prog):
    ref = _reference()
    model = prog.build("Net-1")
    assert list(model.state_dict()) == list(ref.state_dict())
    assert "trunk.block1-0.block.0.weight" in model.state_dict()
    assert "fc layer.bias" in model.state_dict()
    model.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=1e-5, atol=1e-5)
    # the module tree is torch's: the same submodules under the same names
    assert [n for n, _ in model.named_modules()] == [n for n, _ in ref.named_modules()]


@pytest.mark.parametrize("strategy", ["autograd", "forward", "compiled"])
def test_cam_at_a_quoted_layer_matches_autograd_reference(prog, strategy):
    ref = _reference(1)
    model = prog.build("Net-1")
    model.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 16, 16)
    exp = prog.explainer("Explain", model, strategy=strategy)
    res = exp(x)
    top = ref(x).argmax(1)
    want = reference_cam(ref, x, ref.trunk.get_submodule("block1-1"), "gradcam", top)
    torch.testing.assert_close(res.maps, want, rtol=1e-5, atol=1e-6)
    assert res.classes.view(-1).tolist() == top.tolist()


@pytest.mark.parametrize("layer", ["trunk.block1-0", "trunk.`block1-0`", "`trunk`.`block1-0`"])
def test_layer_given_as_a_string_path(prog, layer):
    """The API and string paths in a program take a module path, its components
    plain or quoted as in a program."""
    ref = _reference(2)
    model = prog.build("Net-1")
    model.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 16, 16)
    res = prog.explainer("Explain", model, layer=layer, upsample="bilinear", normalize="minmax")(x)
    top = ref(x).argmax(1)
    raw = reference_cam(ref, x, ref.get_submodule("trunk").get_submodule("block1-0"), "gradcam", top)
    torch.testing.assert_close(res.maps, reference_normalize(reference_upsample(raw, 16)), rtol=1e-5, atol=1e-5)
    src = PROGRAM.replace("layer = trunk.`block1-1`", f'layer = "{layer}"')
    p2 = evo.compile(src)
    assert p2.cams["Explain"].layers == ("trunk.block1-0",)


def test_format_round_trip_quotes_only_where_needed():
    src = ("network `Net`(`x`: Tensor[N, 3, 8, 8]) {\n"
           "    `conv1` = conv2d(`x`, 4, 3)\n"
           "    `block` = relu(conv1)\n"
           "    `0` = conv2d(`block`, 4, 1, `bias`=false)\n"
           "    return linear(flatten(adaptive_avgpool2d(`0`, 1)), 2)\n"
           "}\n\n"
           "cam C {\n    network = `Net`\n    layer = `block`\n}\n\n"
           "cam D {\n    network = Net\n    layer = `0`\n}\n")
    out = format_source(src)
    assert out == ("network Net(x: Tensor[N, 3, 8, 8]) {\n"
                   "    conv1 = conv2d(x, 4, 3)\n"
                   "    `block` = relu(conv1)\n"
                   "    `0` = conv2d(`block`, 4, 1, bias=false)\n"
                   "    return linear(flatten(adaptive_avgpool2d(`0`, 1)), 2)\n"
                   "}\n\n"
                   "cam C {\n    network = Net\n    layer = `block`\n}\n\n"
                   "cam D {\n    network = Net\n    layer = `0`\n}\n")
    assert format_source(out) == out
    # the same program either way
    a, b = evo.compile(src), evo.compile(out)
    assert a.emit_python() == b.emit_python()
    assert list(b.build("Net").state_dict()) == ["conv1.weight", "conv1.bias", "0.weight", "linear_0.weight",
                                                 "linear_0.bias"]
    assert format_source(PROGRAM) == PROGRAM


def test_show_and_paths():
    assert show("conv1") == "conv1"
    assert show("block") == "`block`"
    assert show("block1-0") == "`block1-0`"
    assert show("0") == "`0`"
    assert show_path("features.block1-0.0.block") == "features.`block1-0`.0.`block`"
    assert split_path("features.`block1-0`.0") == ["features", "block1-0", "0"]
    assert split_path("features.block1-0") == ["features", "block1-0"]
    assert split_path("a..b") is None
    assert split_path("a.`b") is None
    assert split_path("") is None


INJECTIONS = [
    'a"""b',
    "x\\y",
    "\\",
    "'; import os; os_system('touch /tmp/evo_pwned') #",
    '"); getattr(__import__("os"), "system")("touch /tmp/evo_pwned"); ("',
    "ü名",
    "a b",
    "self",
    "forward",
    "_modules",
    "__class__",
    "torch",
    "\u00a0",
    "{{ cls_name }}{% if 1 %}",
    "# comment",
    "\u202etxt",
]


@pytest.mark.parametrize("name", INJECTIONS, ids=range(len(INJECTIONS)))
def test_no_injection_through_quoted_names(name):
    src = (f"block `b{name}`(x) {{\n    `{name}` = conv2d(x, 4, 3, padding=1)\n    return relu(`{name}`)\n}}\n\n"
           f"network `{name}`(x: Tensor[N, 3, 8, 8]) {{\n    `{name}` = `b{name}`(x)\n"
           f"    return linear(flatten(adaptive_avgpool2d(`{name}`, 1)), 3)\n}}\n\n"
           f"cam `c{name}` {{\n    network = `{name}`\n    layer = `{name}`.`{name}`\n    strategy = compiled\n}}\n")
    assert format_source(format_source(src)) == format_source(src)
    prog = evo.compile(src)
    py = prog.emit_python()
    assert py == evo.compile(format_source(src)).emit_python()  # byte for byte
    tree = ast.parse(py)
    # top level: torch imports, classes, assignments of constants and functions
    for st in tree.body:
        assert isinstance(st, (ast.Import, ast.ImportFrom, ast.ClassDef, ast.FunctionDef, ast.Assign,
                               ast.AnnAssign, ast.Expr)), ast.dump(st)[:200]
        if isinstance(st, (ast.Import, ast.ImportFrom)):
            assert all(a.name.split(".")[0] == "torch" for a in st.names) or st.module in ("torch",)
        if isinstance(st, ast.Expr):
            assert isinstance(st.value, ast.Constant)
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert not calls & {"__import__", "exec", "eval", "open", "compile"}
    # the name appears only as data: a string constant equal to it, or a docstring that holds it
    consts = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    assert name in consts
    docs = [ast.get_docstring(n) or "" for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    assert any(f"network {name}" == d for d in docs)
    assert any(" ".join(f"at {name}.{name} ".split()) in " ".join(d.split()) for d in docs)
    model = prog.build(name)
    assert list(model.state_dict()) == [f"{name}.{name}.weight", f"{name}.{name}.bias", "linear_0.weight",
                                        "linear_0.bias"]
    x = torch.randn(2, 3, 8, 8)
    res = prog.explainer(f"c{name}", model)(x)
    assert res.maps.shape == (2, 8, 8)


@pytest.mark.parametrize("text, message", [
    ("``", "a quoted name cannot be empty"),
    ("`a``b`", "a quoted name cannot contain a backtick"),
    ("`a.b`", "a quoted name cannot contain a dot"),
    ("`a\rb`", "a quoted name cannot contain a line break"),
    ("`a\u2028b`", "a quoted name cannot contain a line break"),
    ("`a\x00b`", "a quoted name cannot contain the control character U+0000"),
    ("`a\nb`", "unterminated quoted name"),
])
def test_bad_quoted_names(text, message):
    src = f"network N(x: Tensor[N, 3, 8, 8]) {{\n    {text} = relu(x)\n    return x\n}}\n"
    with pytest.raises(evo.EvoError) as info:
        evo.compile(src, filename="bad.evo")
    d = info.value.diagnostics[0]
    assert (d.code, d.message) == ("E0007", message)
    assert (d.span.line, d.span.column) == (2, 5)
    assert "Traceback" not in str(info.value)


def test_emit_outputs_show_quoted_names(tmp_path):
    f = tmp_path / "q.evo"
    f.write_text(PROGRAM)
    # the three in one fresh interpreter (evo.cli.main each)
    ir, dump, chk = evoc_batch([["compile", f, "--emit", "ir"], ["compile", f, "--emit", "ast"], ["fmt", "--check", f]])
    assert ir.returncode == 0 and dump.returncode == 0, ir.stderr + dump.stderr
    assert "module=trunk.`block1-0`.block.0 " in ir.stdout
    assert "name=`fc layer`" in ir.stdout
    assert "name='block1-0'" in dump.stdout
    assert chk.returncode == 0, chk.stdout + chk.stderr


class _KeywordNames(nn.Module):
    """Submodules named like MobileNetV3's `block`, RegNet's `block1-0`, and `max`."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.trunk = nn.Sequential()
        self.trunk.add_module("block1-0", TorchBlk(8))
        self.trunk.add_module("block1-1", TorchBlk(8))
        self.max = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.max(self.trunk(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def test_importer_quotes_module_names_only_where_needed():
    torch.manual_seed(3)
    m = _KeywordNames().eval()
    x = torch.randn(1, 3, 16, 16)
    src = evo.from_torch(m, x)  # verifies: compiles, strict load, equal outputs
    assert "`block` = seq(x)" in src
    assert "`block1-0` = " in src and "`block1-1` = " in src
    assert "\n    max = conv2d(" in src and "`stem`" not in src
    assert format_source(src) == src
    prog = evo.compile(src)
    net = prog.build(next(iter(prog.networks)))
    net.load_state_dict(m.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(net(x), m(x), rtol=1e-5, atol=1e-5)


def test_evolve_write_back_quotes_a_quoted_hardware_name():
    from evo.evolve.driver import run_evolve

    src = """\
network `Tiny net`(x: Tensor[N, 3, 8, 8], width: int = 4) {
    `block` = conv2d(x, width, 3, padding=1)
    return linear(flatten(adaptive_avgpool2d(relu(`block`), 1)), 3)
}

hardware `Chip-2` {
    frequency = 200 MHz
    pes = 64
    word = 16 bit
    offchip DRAM { bandwidth = 4 GB/s; energy = 100 pJ/B }
    global GLB { size = 64 KiB; bandwidth = 16 B/cycle; energy = 3 pJ/B }
    pe Spad { size = 512 B; bandwidth = 4 B/cycle; energy = 0.5 pJ/B }
}

target T {
    network = `Tiny net`
    hardware = `Chip-2`
}

evolve S {
    target = T
    gene width in [4, 8]
    gene `Chip-2`.pes in [16, 64]
    minimize latency, energy
}
"""
    res = run_evolve(evo.compile(src), "S", generations=1, population=2)
    text = res.program(0)
    assert "hardware `Chip-2_S_1` extends `Chip-2` {" in text
    assert "    hardware = `Chip-2_S_1`\n" in text
    q = evo.compile(text)
    assert "Chip-2_S_1" in q.hardware
    assert format_source(text) == text


def test_onnx_export_with_quoted_module_names(prog, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    ref = _reference(4)
    model = prog.build("Net-1")
    model.load_state_dict(ref.state_dict(), strict=True)
    path = prog.export("Explain", tmp_path / "q.onnx", model=model)
    x = torch.randn(2, 3, 16, 16)
    sess = ort.InferenceSession(str(path))
    logits, classes, _, maps = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    top = ref(x).argmax(1)
    torch.testing.assert_close(torch.from_numpy(logits), ref(x).detach(), rtol=1e-4, atol=1e-5)
    assert torch.from_numpy(classes).view(-1).tolist() == top.tolist()
    want = reference_cam(ref, x, ref.trunk.get_submodule("block1-1"), "gradcam", top)
    torch.testing.assert_close(torch.from_numpy(maps), want, rtol=1e-4, atol=1e-5)
