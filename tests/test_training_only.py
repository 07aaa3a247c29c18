"""Training-only submodules (`training name = ...`, issue 11) and the families that need
them: GoogLeNet's `aux1`/`aux2` and Inception-v3's `AuxLogits`.

References are written here in plain PyTorch (the hand-written forward of the program
below) or are the model-zoo mirrors in tests/zoo/ (torchvision's module tree)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import evo
from evo.frontend.fmt import format_source
from tests.zoo import googlenet, inception

SRC = """\
block Aux(x, classes: int) {
    conv = conv2d(adaptive_avgpool2d(x, 2), 4, 1)
    fc = linear(flatten(relu(conv)), classes)
    return fc
}

network Net(x: Tensor[N, 3, 16, 16], classes: int = 5) {
    conv1 = conv2d(x, 8, 3, padding=1)
    act = relu(conv1)
    training aux1 = Aux(act, classes)
    conv2 = conv2d(act, 8, 3, stride=2, padding=1)
    training aux2 = Aux(conv2, classes)
    pool = adaptive_avgpool2d(relu(conv2), 1)
    fc = linear(flatten(pool), classes)
    return fc
}

cam Explain {
    network = Net
    layer = conv2
    upsample = none
    normalize = none
}
"""


def _reference(sd: dict, x: torch.Tensor):
    """The program's forward written out by hand: (logits, aux1, aux2)."""
    def aux(t, p):
        t = F.conv2d(F.adaptive_avg_pool2d(t, 2), sd[p + ".conv.weight"], sd[p + ".conv.bias"])
        return F.linear(torch.flatten(F.relu(t), 1), sd[p + ".fc.weight"], sd[p + ".fc.bias"])

    act = F.relu(F.conv2d(x, sd["conv1.weight"], sd["conv1.bias"], padding=1))
    conv2 = F.conv2d(act, sd["conv2.weight"], sd["conv2.bias"], stride=2, padding=1)
    fc = F.linear(torch.flatten(F.adaptive_avg_pool2d(F.relu(conv2), 1), 1), sd["fc.weight"], sd["fc.bias"])
    return fc, aux(act, "aux1"), aux(conv2, "aux2")


def test_training_only_modules_are_in_the_state_dict_and_run_in_training_only():
    prog = evo.compile(SRC)
    torch.manual_seed(0)
    net = prog.build("Net")
    keys = list(net.state_dict())
    assert keys == ["conv1.weight", "conv1.bias", "aux1.conv.weight", "aux1.conv.bias", "aux1.fc.weight",
                    "aux1.fc.bias", "conv2.weight", "conv2.bias", "aux2.conv.weight", "aux2.conv.bias",
                    "aux2.fc.weight", "aux2.fc.bias", "fc.weight", "fc.bias"]
    sd = net.state_dict()
    x = torch.randn(3, 3, 16, 16)
    want = _reference(sd, x)
    calls = []
    hooks = [net.get_submodule(m).register_forward_hook(lambda *_a, m=m: calls.append(m)) for m in ("aux1", "aux2")]
    with torch.no_grad():
        y = net.eval()(x)
        assert isinstance(y, torch.Tensor) and calls == []  # eval: the aux modules are not computed
        torch.testing.assert_close(y, want[0], rtol=1e-5, atol=1e-5)
        out = net.train()(x)
    for h in hooks:
        h.remove()
    assert calls == ["aux1", "aux2"]
    assert isinstance(out, tuple) and len(out) == 3  # the outputs, then the training values in order
    for got, ref in zip(out, want):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    assert "        if self.training:\n            aux1 = self.aux1(act)\n" in prog.emit_python()


def test_training_only_modules_cost_nothing_and_stay_out_of_the_cam():
    """The cost model charges nothing for the aux path (eval does not compute it), and
    Grad-CAM at conv2 (read by aux2 in training) is the autograd CAM of the eval path."""
    from tests.refcam import reference_cam

    plain = SRC.replace("    training aux1 = Aux(act, classes)\n", "").replace(
        "    training aux2 = Aux(conv2, classes)\n", "")
    a, b = evo.compile(SRC), evo.compile(plain)
    from evo.cost.network import graph_ops

    ga, gb = a.graph("Net"), b.graph("Net")
    assert [n for n, _, _ in graph_ops(ga, 1)] == [n for n, _, _ in graph_ops(gb, 1)]
    torch.manual_seed(1)
    net = a.build("Net").eval()
    x = torch.randn(2, 3, 16, 16)
    top = net(x).argmax(1)
    want = reference_cam(net, x, net.conv2, "gradcam", top)
    for strategy in ("autograd", "forward", "compiled"):
        res = a.explainer("Explain", net, strategy=strategy)(x)
        torch.testing.assert_close(res.maps, want, rtol=1e-4, atol=1e-6, msg=strategy)


def test_format_keeps_the_training_modifier():
    assert format_source(SRC) == SRC
    assert "    training aux1 = Aux(act, classes)\n" in format_source(SRC.replace("training aux1 =", "training  aux1 ="))


def _perturb_bn(model: nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)


def _import_and_check(model, x, aux: list[tuple[str, str]], layer: str):
    """Import, strict load, logits, the aux modules (their own outputs), Grad-CAM of every
    strategy at `layer` against a hook-and-backward reference on the mirror."""
    from tests.refcam import reference_cam

    src = evo.from_torch(model, x[:1])
    for name, producer in aux:
        assert f"training {name} = InceptionAux({producer})" in src
    assert format_source(src) == src
    name = next(line.split()[1].split("(")[0] for line in src.splitlines() if line.startswith("network "))
    src += f"\ncam Explain {{\n    network = {name}\n    layer = {layer}\n    upsample = none\n    normalize = none\n}}\n"
    prog = evo.compile(src)
    net = prog.build(name)
    assert sorted(net.state_dict()) == sorted(model.state_dict())  # torch declares the aux modules last
    net.load_state_dict(model.state_dict(), strict=True)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), rtol=1e-5, atol=1e-5)
        feats = {}
        hooks = [model.get_submodule(p).register_forward_hook(lambda _m, _a, o, p=p: feats.__setitem__(p, o))
                 for _, p in aux]
        model(x)
        for h in hooks:
            h.remove()
        for n, p in aux:  # the same module, reading the same producer
            torch.testing.assert_close(net.get_submodule(n)(feats[p]), model.get_submodule(n)(feats[p]),
                                       rtol=1e-5, atol=1e-5)
    top = model(x).argmax(1)
    for shift in range(10):  # a class whose map is not all zero (a tiny random net may have none for top-1)
        classes = (top + shift) % 10
        want = reference_cam(model, x, model.get_submodule(layer), "gradcam", classes)
        if (want > 0).any():
            break
    assert (want > 0).any()
    for strategy in ("autograd", "forward", "compiled"):
        res = prog.explainer("Explain", net, strategy=strategy)(x, classes)
        torch.testing.assert_close(res.maps, want, rtol=1e-4, atol=1e-6, msg=strategy)
    return src, net


def test_googlenet_imports_with_its_auxiliary_classifiers():
    torch.manual_seed(0)
    model = googlenet.googlenet(10, width_div=16).eval()
    _perturb_bn(model)
    x = torch.randn(2, 3, 96, 96)  # inception5b at 3x3
    src, net = _import_and_check(model, x, [("aux1", "inception4a"), ("aux2", "inception4d")], "inception5b")
    assert src.count("block ") <= 4 and len(src.splitlines()) < 70  # repeated classes are blocks
    out = net.train()(x)
    assert isinstance(out, tuple) and len(out) == 3 and all(o.shape == (2, 10) for o in out)


@pytest.mark.parametrize("aux_logits, size", [(False, 75), (True, 299)], ids=["eval-75", "aux-299"])
def test_inception_v3_imports(aux_logits, size):
    """Inception-v3 at its smallest input (75) and, with `AuxLogits`, at 299 (the aux path
    pools 5x5 / 3 then convolves 5x5: it needs Mixed_6e at 17x17)."""
    torch.manual_seed(0)
    model = inception.inception_v3(10, aux_logits=aux_logits, width_div=16).eval()
    _perturb_bn(model)
    x = torch.randn(1 if aux_logits else 2, 3, size, size)
    src, _ = _import_and_check(model, x, [("AuxLogits", "Mixed_6e")] if aux_logits else [], "Mixed_7c")
    assert len(src.splitlines()) < 140


def test_an_unknown_statement_modifier_is_a_syntax_error_at_the_name():
    """(Not a golden in tests/bad/: test_fmt caps the bad programs that do not parse.)"""
    src = "network Net(x: Tensor[N, 3, 8, 8]) {\n    train aux = relu(x)\n    return relu(x)\n}\n"
    with pytest.raises(evo.EvoError) as info:
        evo.compile(src)
    d = info.value.diagnostics[0]
    assert (d.code, d.span.line, d.span.column) == ("E0002", 2, 11)
    assert d.message == "unexpected name 'aux' after 'train'"
    ok = evo.compile("network Net(x: Tensor[N, 3, 8, 8]) {\n    training = relu(x)\n    return training\n}\n")
    assert "Net" in ok.networks  # `training` stays an ordinary name
