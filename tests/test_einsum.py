"""`einsum(equation, a, b, ...)` (evo/ops/einsum.py) through every stage: the generated code
against torch.einsum, the compiled-CAM derivative rule (an einsum of the gradient and the other
operands) against torch.autograd, the cost rule by hand, the equation's checks (nothing but
letters, commas, `->`, spaces and `...` reaches the code), the importer (torch.einsum,
torch.functional.einsum through torch.fx, aten.einsum through torch.export) and the formatter."""

from __future__ import annotations


import pytest
import torch
from torch import nn

import evo
from evo import ops
from evo.cost import workload as W
from evo.importer import from_torch
from tests.refcam import assert_head_strategies_equal_hooks, channels_last_head_program

# (equation, operand shapes: "x" the batched [N, ...] input's shape after the batch, a list for a
# learnable tensor)
FORWARD = {
    "batched_matmul": ("bij,bjk->bik", [(4, 5), (5, 3)]),
    "outer": ("bi,bj->bij", [(4,), (6,)]),
    "transpose_contract": ("bgij,bgkj->bgki", [(2, 3, 4), (2, 5, 4)]),
    "ellipsis": ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 5)]),
    "ellipsis_summed": ("b...ij,b...ij->bi", [(2, 3, 4), (2, 3, 4)]),  # the `...` dimensions summed
    "implicit": ("...ij,...jk", [(3, 4, 5), (3, 5, 2)]),  # the result: `...` then the indices used once
    "reduce": ("bij->bj", [(4, 5)]),
    "permute": ("bijk->bkij", [(2, 3, 4)]),
    "three": ("bi,bj,bk->bijk", [(2,), (3,), (4,)]),
    "spaces": (" b i j , b j k -> b i k ", [(4, 5), (5, 3)]),
}


def _net_src(eq: str, shapes) -> str:
    """One input [N, D]: the operands are pieces of it, reshaped (a network takes one tensor)."""
    lines, start = [], 0
    for i, s in enumerate(shapes):
        n = int(torch.Size(s).numel())
        lines.append(f"    x{i} = reshape(narrow(x, 1, {start}, {n}), [-1, {', '.join(str(d) for d in s)}])")
        start += n
    args = ", ".join(f"x{i}" for i in range(len(shapes)))
    return (f"network Net(x: Tensor[N, {start}]) {{\n" + "\n".join(lines)
            + f'\n    y = einsum("{eq}", {args})\n    return y\n}}\n')


@pytest.mark.parametrize("case", list(FORWARD))
def test_einsum_computes_torch_einsum(case):
    eq, shapes = FORWARD[case]
    prog = evo.compile(_net_src(eq, shapes))
    net = prog.build("Net")
    torch.manual_seed(0)
    x = torch.randn(2, sum(int(torch.Size(s).numel()) for s in shapes))
    xs = [p.reshape(2, *s) for p, s in zip(x.split([int(torch.Size(s).numel()) for s in shapes], 1), shapes)]
    want = torch.einsum(eq, *xs)
    got = net(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    # the checker's shape is the result's
    g = prog.compilation.graph("Net")
    assert tuple(g.node(g.outputs[0]).shape[1:]) == tuple(want.shape[1:])


# Heads after the CAM layer `feat` ([N, 4, 4, 4] channels last, `t`): each einsum's compiled derivative
# against autograd; `w` a learnable [4, 4] (unbatched) operand
HEADS = {
    "batched_matmul": 'einsum("bhwc,bhvc->bhwv", t, t)',          # the same operand twice
    "outer": 'reshape(einsum("bhw,bhv->bhwv", select(t, 3, 1), select(t, 3, 2)), [-1, 4, 4, 4])',
    "transpose_contract": 'einsum("bhwc,cd->bhwd", t, w)',        # with a learnable tensor
    "ellipsis": 'einsum("...wc,...vc->...wv", t, t)',
    "summed_inside": 'einsum("bhwc,bhv->bhwv", t, select(t, 3, 0))',  # c summed in one operand: broadcast back
    "unsqueezed_sum": 'einsum("bhwc,bhvd->bhwv", t, t)',            # c and d each summed in one operand
    "implicit": 'einsum("bhwc,cd", t, w)',  # the result: the indices used once, sorted (bdhw)
    "three": 'einsum("bhwc,bhwd,cd->bhwd", t, t, w)',
}


@pytest.mark.parametrize("head", list(HEADS))
def test_einsum_derivative_equals_autograd(head):
    src = channels_last_head_program(HEADS[head])
    prog = evo.compile(src)
    assert_head_strategies_equal_hooks(prog)
    # the compiled strategy differentiates the einsum with einsums (no autograd at run time)
    py = evo.compile(src.replace("normalize = none", "normalize = none\n    strategy = compiled")).emit_python()
    body = py[py.index("def compiled0"):]
    body = body[:body.index("\n    def ", 10)]
    assert "torch.einsum(" in body and "torch.autograd" not in body


def _workload(eq: str, shapes):
    d = ops.lookup("einsum")
    return d.cost(W, {"equation": eq}, [tuple(s) for s in shapes], None)


@pytest.mark.parametrize("eq, shapes, macs", [
    ("bij,bjk->bik", [(2, 4, 5), (2, 5, 3)], 2 * 4 * 5 * 3),
    ("bi,bj->bij", [(2, 4), (2, 6)], 2 * 4 * 6),
    ("bgij,bgkj->bgki", [(2, 3, 4, 5), (2, 3, 6, 5)], 2 * 3 * 4 * 5 * 6),
    ("...ij,jk->...ik", [(2, 3, 4, 5), (5, 7)], 2 * 3 * 4 * 5 * 7),
    ("bij->bj", [(2, 4, 5)], 2 * 4 * 5),
])
def test_einsum_cost_is_the_product_of_all_index_sizes(eq, shapes, macs):
    w = _workload(eq, shapes)
    out = torch.einsum(eq, *[torch.zeros(s) for s in shapes]).numel()
    assert w.macs == macs
    # the traffic: every operand once and the result
    assert sum(t.elements for t in w.tensors) == sum(int(torch.Size(s).numel()) for s in shapes) + out


def test_einsum_of_three_operands_costs_the_pairwise_products():
    steps = _workload("bi,bj,bk->bijk", [(2, 3), (2, 4), (2, 5)])
    assert [name for name, _ in steps] == ["product 1", "product 2"]
    assert [w.macs for _, w in steps] == [2 * 3 * 4, 2 * 3 * 4 * 5]  # [b, i, j], then times k


@pytest.mark.parametrize("call, code, at, text", [
    ('einsum("bij,bjk->bik\'); import os; (\'", a, b)', "E0203", '"', "letters, commas"),
    ('einsum("bij;bjk->bik", a, b)', "E0203", '"', "letters, commas"),
    ('einsum("b..ij,bjk->bik", a, b)', "E0203", '"', "at most one '...'"),
    ('einsum("bij,bjk->bik", a)', "E0104", '"', "2 subscript terms for 1 tensor"),
    ('einsum("bij,bjk->bik", a, c)', "E0301", "c)", "index 'j' is 5 in operand 1 but 4 in operand 2"),
    ('einsum("bi,bjk->bik", a, b)', "E0300", "a,", "its subscripts 'bi' name 2"),
    ('einsum("bii,bjk->bik", a, b)', "E0203", '"', "appears twice"),
    ('einsum("bij,bjk->ikb", a, b)', "E0203", '"', "batch dimension first"),
    ('einsum("bij,bjk->bix", a, b)', "E0203", '"', "in no operand"),
    ('einsum(a, b, "bij,bjk->bik")', "E0205", "a,", "before the tensors"),
    ('einsum("bij,bjk->bik")', "E0205", "einsum", "needs tensors after"),
    ('einsum(3, a, b)', "E0200", "3", "must be a string"),
])
def test_einsum_checks_point_at_the_argument(call, code, at, text):
    line = f"    y = {call}"
    src = ("network Net(a: Tensor[N, 4, 5]) {\n    b = linear(transpose(a, 1, 2), 3)\n    c = linear(a, 3)\n"
           f"{line}\n    return y\n}}\n")
    with pytest.raises(evo.EvoError) as info:
        evo.compile(src)
    d = info.value.diagnostics[0]
    col = line.index(at, line.index("einsum(")) + 1
    assert (d.code, d.span.line, d.span.column) == (code, 4, col), (d.code, d.span.column, d.message)
    assert text in d.message


class _Att(nn.Module):
    """Attention with torch.einsum (and torch.functional.einsum, the same function)."""

    def __init__(self, control_flow: bool = False):
        super().__init__()
        self.q = nn.Linear(8, 8)
        self.k = nn.Linear(8, 8)
        self.control_flow = control_flow

    def forward(self, x):
        t = x.flatten(2).transpose(1, 2)
        s = torch.einsum("bid,bjd->bij", self.q(t), self.k(t))
        if self.control_flow and x.shape[-1] == 4:  # torch.fx cannot trace this: torch.export (aten.einsum)
            s = s * 0.5
        return torch.functional.einsum("bij,bjd->bid", s.softmax(-1), t)


class _Net(nn.Module):
    def __init__(self, control_flow: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.att = _Att(control_flow)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(self.att(self.conv(x)).mean(1))


@pytest.mark.parametrize("control_flow", [False, True], ids=["fx", "export"])
def test_torch_einsum_imports_and_explains(control_flow, tmp_path):
    torch.manual_seed(0)
    model = _Net(control_flow).eval()
    src = from_torch(model, torch.randn(1, 3, 4, 4), name="Net")
    assert 'einsum("bid,bjd->bij", q, k)' in src and 'einsum("bij,bjd->bid", ' in src
    from evo.frontend.fmt import format_source
    assert format_source(src) == src  # canonical: `evoc fmt --check` passes
    prog = evo.compile(src + "\ncam C {\n    network = Net\n    layer = conv\n    upsample = none\n"
                             "    normalize = none\n}\n")
    net = prog.build("Net").eval()
    net.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(3, 3, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), rtol=1e-5, atol=1e-5)
    acts = {}
    hook = model.conv.register_forward_hook(lambda m, i, o: acts.__setitem__("a", o))
    logits = model(x)
    hook.remove()
    (g,) = torch.autograd.grad(logits.gather(1, logits.argmax(1)[:, None]).sum(), acts["a"])
    want = torch.relu((g.mean((2, 3), keepdim=True) * acts["a"]).sum(1)).detach()
    assert (want > 0).any()
    for strategy in ("autograd", "forward", "compiled"):
        got = prog.explainer("C", net, strategy=strategy)(x).maps
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=strategy)
