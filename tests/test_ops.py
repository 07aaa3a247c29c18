"""The op table (evo/ops): one home per op.

* adding an op is one registration: `softplus`, registered once here with nothing
  else touched, is checked, generated, loads a state_dict, is differentiated by the
  compiled CAM strategy (maps equal autograd's), costed and imported from a torch model;
* a built-in activation's name appears in at most two files under evo/;
* the op table in docs/language.md is the one generated from the registry.
"""

from __future__ import annotations

import ast
import operator
import re
import textwrap
import tokenize
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import evo
from evo.cost.workload import EltwiseWorkload
from evo.extend import Imports, ParamSpec, register_op, unregister_op
from evo.importer import from_torch
from evo.ops import doc

ROOT = Path(__file__).resolve().parents[1]

SMALL = textwrap.dedent("""
    hardware Small {
        frequency = 100 MHz
        pes = 16
        offchip DRAM { bandwidth = 1 GB/s; energy = 100 pJ/B }
        global GLB { size = 64 KiB; bandwidth = 8 GB/s; energy = 5 pJ/B }
        pe Spad { size = 256 B; bandwidth = 2 B/cycle; energy = 1 pJ/B }
    }
    """)

PROGRAM = textwrap.dedent("""\
    network SoftNet(x: Tensor[N, 3, 8, 8]) {
        conv = conv2d(x, 4, 3, padding=1)
        act = softplus(conv, beta=2.0)
        pool = adaptive_avgpool2d(act, 1)
        fc = linear(flatten(pool), 3)
        return fc
    }

    cam C {
        network = SoftNet
        layer = conv
        strategy = compiled
    }
    """)


class SoftNet(nn.Module):
    """The hand-written PyTorch reference of PROGRAM."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.Softplus(beta=2.0)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.act(self.conv(x)), 1), 1))


@pytest.fixture()
def softplus():
    from evo.ops import REGISTRY

    before = dict(REGISTRY)
    # the one registration: signature, shape, code, derivative, cost and importer aliases
    register_op(
        "softplus",
        params=[ParamSpec("beta", "float", 1.0, min=0.0), ParamSpec("threshold", "float", 20.0)],
        shape=lambda shapes, a: shapes[0],
        code=lambda a, xs: f"F.softplus({xs[0]}, {a['beta']!r}, {a['threshold']!r})",
        module=lambda a, s: f"nn.Softplus({a['beta']!r}, {a['threshold']!r})",
        derivative=lambda a, x, y: (f"torch.where({x} * {a['beta']!r} > {a['threshold']!r}, torch.ones_like({x}), "
                                    f"torch.sigmoid({x} * {a['beta']!r}))"),
        cost=lambda a, ins, out: EltwiseWorkload(out[0] * out[1] * out[2] * out[3], 1, 7),
        imports=Imports(modules=("nn.Softplus",), functions=("F.softplus",), aten=("softplus",)),
        from_module=lambda m, shape: {"beta": float(m.beta), "threshold": float(m.threshold)},
        activation=False,
    )
    # nothing else is touched: one new entry, every other entry the same object
    assert set(REGISTRY) - set(before) == {"softplus"} and all(REGISTRY[k] is before[k] for k in before)
    try:
        yield
    finally:
        unregister_op("softplus")
    assert REGISTRY == before


def test_a_new_op_is_one_registration(softplus):
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    ref = SoftNet().eval()
    with torch.no_grad():
        ref.conv.weight.mul_(3.0)  # spread the pre-activations over both sides of softplus' knee
    # checked: arguments are typed and ranged like a built-in op's
    with pytest.raises(evo.EvoError) as e:
        evo.compile(PROGRAM.replace("beta=2.0", "beta=-1.0"))
    assert e.value.code == "E0203" and (e.value.line, e.value.column) == (3, 31)
    # generated, and the generated module loads the reference's state_dict and computes what it computes
    prog = evo.compile(PROGRAM + SMALL)
    model = prog.build("SoftNet")
    model.load_state_dict(ref.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-6)
    assert "F.softplus(" in prog.emit_python()
    # differentiated by the compiled strategy through the registered derivative
    kw = {"upsample": "none", "normalize": "none", "method": "hirescam"}
    comp = prog.explainer("C", model, strategy="compiled", **kw)
    assert comp.strategy == "compiled"
    auto = prog.explainer("C", model, strategy="autograd", **kw)
    m_comp, m_auto = comp(x).maps, auto(x).maps
    assert m_auto.abs().max() > 0
    assert torch.allclose(m_comp, m_auto, rtol=1e-5, atol=1e-5 * float(m_auto.abs().max()))
    # costed with its cost rule
    rep = prog.cost("SoftNet", hardware="Small")
    act = [o for o in rep.cost.ops if o.name == "act"]
    assert act and act[0].cost.macs == 4 * 8 * 8 * 7
    # imported from a torch model (nn.Softplus) and back to the same function
    src = from_torch(ref, x[:1], name="Imported")
    assert re.search(r"softplus\([^)]*beta=2\.0", src), src
    net = evo.compile(src).build("Imported")
    net.load_state_dict(ref.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.allclose(net(x), ref(x), atol=1e-6)
    # and nothing in the tree knows the op: evo/ names it only in the importer's reason for an
    # nn.Softplus without an op and in evo.extend's docstring example
    named = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "evo").rglob("*.py")
                   if "softplus" in p.read_text(encoding="utf-8").lower())
    assert set(named) <= {"evo/extend.py", "evo/importer/mapping.py"}, named


def test_without_its_registration_the_op_is_unknown_everywhere():
    """The same checks fail with the op unregistered: what made them pass was the registration."""
    with pytest.raises(evo.EvoError) as e:
        evo.compile(PROGRAM)
    assert "softplus" in str(e.value)
    with pytest.raises(Exception, match="(?i)softplus"):
        from_torch(SoftNet().eval(), torch.randn(1, 3, 8, 8), name="Imported")


def test_a_builtin_activation_is_named_in_at_most_two_files():
    for name in ("hardswish", "hardsigmoid", "silu", "gelu"):
        files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "evo").rglob("*.py")
                       if re.search(rf"\b{name}\b", p.read_text(encoding="utf-8").lower()))
        assert files and len(files) <= 2, (name, files)
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "evo").rglob("*.py")
                   if "hardswish" in p.read_text(encoding="utf-8").lower())
    assert files == ["evo/ops/activation.py"], files


def _string_literals(path: Path) -> list[tuple[int, str]]:
    """(line, value) of every string literal of a Python file (f-strings: their literal parts)."""
    out = []
    with tokenize.open(path) as f:
        for tok in tokenize.generate_tokens(f.readline):
            if tok.type == tokenize.STRING:
                try:
                    v = ast.literal_eval(tok.string)
                except ValueError:  # an f-string (before Python 3.12)
                    v = re.sub(r"^[A-Za-z]*['\"]+|['\"]+$", "", tok.string)
                if isinstance(v, str):
                    out.append((tok.start[0], v))
            elif tok.type == getattr(tokenize, "FSTRING_MIDDLE", -1):
                out.append((tok.start[0], tok.string))
    return out


def test_passes_and_codegen_name_no_op():
    """The passes and the code generator read every op-specific rule (derivative, gradient code,
    flags) from the op's entry: no registered op's name appears there as a string literal or as
    `Op.NAME` (the gradient pass sums gradients with the op whose entry says `operator="+"`)."""
    from evo.ops import REGISTRY

    names = set(REGISTRY)
    found = []
    for pkg in ("passes", "codegen"):
        for path in sorted((ROOT / "evo" / pkg).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            for line, v in _string_literals(path):
                if v in names:
                    found.append(f"{rel}:{line}: {v!r}")
            for m in re.finditer(r"\bOp\.([A-Z][A-Z0-9_]*)\b", path.read_text(encoding="utf-8")):
                if m.group(1).lower() in names:
                    found.append(f"{rel}: Op.{m.group(1)}")
    assert not found, found
    # and the scan does see a name where one is written
    assert any(v == "relu" for _, v in _string_literals(ROOT / "evo" / "ops" / "activation.py"))


def test_every_differentiable_op_carries_its_rule_and_gradient_code():
    """Every op the compiled strategy can meet has its rule in its entry (`grad`, or a `derivative`),
    and every gradient-only op says how the explainer writes it (`grad_code`)."""
    from evo.ops import REGISTRY
    from evo.passes.gradient import rule_of

    for name, d in REGISTRY.items():
        if d.gradient_only:
            assert d.grad_code is not None, f"gradient-only op {name} has no grad_code"
        elif d.shape is not None and not d.tensor and d.pieces is None:  # (pieces lower to narrows)
            rule = rule_of(name)
            assert rule is not None, f"{name} has no gradient rule"
            assert rule is d.grad or d.derivative is not None, name


@pytest.mark.parametrize("name", ["relu", "relu6", "gelu", "silu", "sigmoid", "tanh", "hardswish", "hardsigmoid",
                                  "leaky_relu"])
def test_an_activation_derivative_in_its_entry_equals_autograd(name):
    """The entry's derivative expression, evaluated, against autograd of torch's own function."""
    from evo.ops import REGISTRY, normalize_args

    d = REGISTRY[name]
    attrs = normalize_args(d, {"slope": 0.2} if name == "leaky_relu" else {})
    x = (torch.linspace(-5, 5, 401, dtype=torch.float64) + 1e-3).requires_grad_()  # off the kinks
    ref_fn = {"relu": torch.relu, "relu6": F.relu6, "gelu": F.gelu, "silu": F.silu, "sigmoid": torch.sigmoid,
              "tanh": torch.tanh, "hardswish": F.hardswish, "hardsigmoid": F.hardsigmoid,
              "leaky_relu": lambda t: F.leaky_relu(t, 0.2)}[name]
    (ref,) = torch.autograd.grad(ref_fn(x).sum(), x)
    env = {"torch": torch, "F": F, "x": x.detach(), "y": ref_fn(x).detach()}
    got = eval(d.derivative(attrs, "x", "y"), env)  # noqa: S307 -- our own generated expression
    assert torch.allclose(got.double(), ref, atol=1e-9), name


def test_the_language_reference_op_table_is_generated_from_the_registry():
    text = doc.DOC.read_text(encoding="utf-8")
    assert text == doc.render(text), "docs/language.md's op table is stale: run `python3 -m evo.ops.doc`"
    for name in ("conv2d", "hardswish", "softmax", "concat"):
        assert f"`{name}(" in doc.op_table()


def test_the_importer_holds_no_op_alias():
    """The importer reads every op's nn classes, functions and calls from the op's entry: none of
    them is written in evo/importer/ (its tables are built from the registry)."""
    from evo.ops import REGISTRY

    def code(path: Path) -> str:  # the names written in code (not in strings or comments)
        with tokenize.open(path) as f:
            return " ".join(t.string for t in tokenize.generate_tokens(f.readline)
                            if t.type in (tokenize.NAME, tokenize.OP) and t.string != "\n")

    texts = {str(p.relative_to(ROOT)): code(p) for p in (ROOT / "evo" / "importer").glob("*.py")}
    found = []
    for name, d in REGISTRY.items():
        im = d.imports
        aliases = list(im.modules) + [f for f in im.functions if f.startswith(("F.", "operator."))]
        aliases += [a for c in im.calls for a in c.names if a.startswith(("F.", "operator.", "nn."))
                    and a != "operator.getitem"]  # (Python's indexing, which the tracer also reads for
        # a piece of chunk / split, attention's output and x.shape[0])
        for a in aliases:
            pat = r"\b" + re.escape(a).replace(r"\.", r" \. ") + r"\b"
            found += [f"{rel}: {a} ({name})" for rel, text in texts.items() if re.search(pat, text)]
    assert not found, found
    # the entries do declare them
    assert "nn.Conv2d" in REGISTRY["conv2d"].imports.modules
    assert any("F.max_pool2d" in c.names for c in REGISTRY["maxpool2d"].imports.calls)


def test_the_tracer_converts_no_op_by_name():
    """permute / transpose / view / reshape (fx) and mul or div by a number, matmul, roll, slice, pad,
    clamp (ATen), sdpa, x[:, i], t.expand(x.shape[0], ...), a block's own nn.Parameter and attention's
    (output, weights) are converted by what their entries declare: evo/importer/trace.py writes no
    registered op's name as a string literal, and each of these ops declares its aliases (mapping.py's
    only such literals are torch functions without an op: F.pad, torch.matmul, F.conv2d, F.linear)."""
    from evo.importer import mapping as M
    from evo.ops import REGISTRY

    found = sorted({v for _, v in _string_literals(ROOT / "evo" / "importer" / "trace.py")} & set(REGISTRY))
    assert not found, found
    assert REGISTRY["multihead_attention"].imports.output[0] == 0
    assert REGISTRY["multihead_attention"].imports.module_call.tensors == ("query",)
    assert M.tensor_op(nn.Parameter(torch.full((1, 4), 0.25))) == ("parameter", {"shape": (1, 4), "init": 0.25})
    tables = M.registry_aliases()
    assert [c[0] for c in tables["methods"]["expand"]] == ["expand"]
    assert {c[0] for c in tables["functions"][torch.permute]} == {"permute"}
    for name in ("transpose", "swapaxes", "swapdims"):
        assert [c[0] for c in tables["methods"][name]] == ["transpose"]
        assert [c[0] for c in tables["functions"][getattr(torch, name)]] == ["transpose"]
    assert [c[0] for c in tables["methods"]["view"]] == ["view"]
    assert [c[0] for c in tables["methods"]["reshape"]] == ["reshape"]
    assert [c[0] for c in tables["functions"][F.scaled_dot_product_attention]] == ["scaled_dot_product_attention"]
    assert [c[0] for c in tables["functions"][operator.getitem]] == ["select"]
    expected = {"mul": ["scale_by", "mul"], "div": ["scale_by"], "matmul": ["matmul"], "bmm": ["matmul"],
                "roll": ["roll"], "slice": ["narrow"], "pad": ["pad"], "constant_pad_nd": ["pad"],
                "clamp": ["clamp"], "permute": ["permute"], "transpose": ["transpose"], "view": ["reshape"],
                "_unsafe_view": ["reshape"]}
    for base, want in expected.items():
        assert [c[0] for c in tables["aten"][base]] == want, base


def test_a_guarded_call_takes_a_shared_name_only_when_its_guard_holds():
    """aten.mul by a number is the entry scale_by's (its `when`), by a tensor mul's; aten.div by a
    tensor has no candidate (no evo op for division), by zero is refused by scale_by's converter."""
    from evo.importer import mapping as M
    from evo.ops import NotConvertible

    assert M.pick(M.aten_calls("mul"), ("x", 0.5), {})[0] == "scale_by"
    assert M.pick(M.aten_calls("mul"), ("x", "y"), {})[0] == "mul"
    assert M.pick(M.aten_calls("mul"), ("x", True), {})[0] == "mul"  # a bool is not a factor
    assert M.pick(M.aten_calls("div"), ("x", "y"), {}) is None
    assert M.pick(M.aten_calls("div"), ("x", 4.0), {"rounding_mode": "floor"}) is None
    op, call, b = M.pick(M.aten_calls("div"), ("x", 4), {})
    assert M.call_steps(op, call, b, [(1, 2)]) == [("scale_by", {"factor": 0.25})]
    op, call, b = M.pick(M.aten_calls("div"), ("x", 0.0), {})
    with pytest.raises(NotConvertible, match="divides by zero"):
        M.call_steps(op, call, b, [(1, 2)])


def test_varargs_bind_positional_dimensions_as_one_tuple():
    from evo.importer import mapping as M

    (op, call), = M.method_calls("permute")
    assert M.bind(call, ("x", 0, 2, 1), {})["dims"] == (0, 2, 1)
    assert M.bind(call, ("x", [0, 2, 1]), {})["dims"] == (0, 2, 1)
    assert M.bind(call, ("x",), {"dims": (0, 2, 1)})["dims"] == (0, 2, 1)
    assert M.call_steps(op, call, M.bind(call, ("x", 0, -1, 1), {}), [(1, 2, 3)]) == [("permute", {"dims": (0, 2, 1)})]
    (op, call), = M.method_calls("view")  # read from the traced output: a flatten, else a view
    assert M.call_steps(op, call, M.bind(call, ("x", "n", -1), {}), [(2, 3, 4, 5)], (2, 60)) == \
        [("flatten", {"start": 1, "end": -1})]
    assert M.call_steps(op, call, M.bind(call, ("x", -1, 5, 12), {}), [(2, 3, 4, 5)], (2, 5, 12)) == \
        [("view", {"shape": (-1, 5, 12)})]


class _Tokens(nn.Module):
    """x.select(1, 0) (the entry's Call) and x[:, -1] (indexing) on [N, T, D] tokens."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        y = self.fc(x)
        return y.select(1, 0) + y[:, -1]


def test_select_imports_from_its_method_and_from_indexing():
    x = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))
    ref = _Tokens().eval()
    src = from_torch(ref, x[:1], name="Imported")
    assert "select(" in src and src.count("select(") == 2, src
    net = evo.compile(src).build("Imported")
    net.load_state_dict(ref.state_dict(), strict=True)
    with torch.no_grad():
        w, b = ref.fc.weight, ref.fc.bias  # by hand: the first token's and the last token's projections
        assert torch.allclose(net(x), (x[:, 0] @ w.T + b) + (x[:, -1] @ w.T + b), atol=1e-6)


class _Leaky(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(3, 4, 3), nn.LeakyReLU(0.1), nn.Dropout(0.2), nn.Flatten(),
                                    nn.Linear(4 * 6 * 6, 2))

    def forward(self, x):
        return self.layers(x)


def test_the_renderer_reads_positional_arguments_from_the_entry(monkeypatch):
    """dropout's and leaky_relu's entries say their argument is written positionally; the same
    model renders it by name once the entry says otherwise (render.py names no op)."""
    import dataclasses

    from evo.ops import REGISTRY

    model, x = _Leaky().eval(), torch.randn(1, 3, 8, 8)
    src = from_torch(model, x, name="Imported")
    assert "leaky_relu(0.1)" in src and "dropout(0.2)" in src, src
    for name in ("dropout", "leaky_relu"):
        assert REGISTRY[name].positional
        monkeypatch.setitem(REGISTRY, name, dataclasses.replace(REGISTRY[name], positional=False))
    src = from_torch(model, x, name="Imported")
    assert "leaky_relu(slope=0.1)" in src and "dropout(p=0.2)" in src, src
    assert not re.search(r"\b(dropout|leaky_relu)\b", (ROOT / "evo" / "importer" / "render.py").read_text())


def test_tensor_operators_and_reshape_flags_are_read_from_the_entries(monkeypatch):
    """`a * b` on tensors is the op whose entry says operator="*"; without one the operator is
    refused with the operators the entries do declare.  The importer writes the operator from the
    same field, and a reshape's shape from the input's dimensions by the entry's `reshapes`."""
    import dataclasses

    from evo.ops import REGISTRY, by_operator

    assert by_operator("+").name == "add" and by_operator("*").name == "mul" and by_operator("-") is None
    assert {k for k, d in REGISTRY.items() if d.reshapes} == {"view", "reshape"}
    prog = "evo 0.1\nnetwork T(x: Tensor[N, 4]) {\n    a = linear(x, 4)\n    return a * x\n}\n"
    assert evo.compile(prog).graph("T").nodes[-1].op == "mul"
    monkeypatch.setitem(REGISTRY, "mul", dataclasses.replace(REGISTRY["mul"], operator=""))
    with pytest.raises(evo.EvoError) as e:
        evo.compile(prog)
    assert "'*' is not defined on tensors" in str(e.value) and "tensors support + (elementwise)" in str(e.value)


class _Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 8)

    def forward(self, x):
        h = self.fc(x)
        y = h.view(x.size(0), 2, 4)
        return (y * y).flatten(1) + h


def test_the_importer_writes_operators_and_reshapes_from_the_entries():
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    ref = _Gate().eval()
    src = from_torch(ref, x[:1], name="Imported")
    assert " * " in src and " + " in src and "view(" in src, src
    net = evo.compile(src).build("Imported")
    net.load_state_dict(ref.state_dict(), strict=True)
    with torch.no_grad():
        h = x @ ref.fc.weight.T + ref.fc.bias  # by hand
        assert torch.allclose(net(x), h * h + h, atol=1e-6)


def test_the_cost_tables_attention_line_is_the_entries_summary(monkeypatch):
    """The cost table's attention line is the summary the attention entries declare (`cost_summary`):
    the T x T traffic it shows is, by hand, Q K^T's output and partial sums, softmax's total and P V's
    input over the steps labelled `attention: ...`; the same network with a summary that counts only
    P V's input shows that sum under the new wording, and without a summary it has no such line
    (evo/cost/report.py names no op and no step)."""
    import dataclasses

    from evo.cost import PRESETS
    from evo.cost.network import cost_graph
    from evo.cost.report import fmt_bytes
    from evo.ops import REGISTRY, CostSummary

    prog = evo.compile("evo 0.1\nnetwork T(x: Tensor[N, 16, 32]) {\n    y = multihead_attention(x, 2)\n"
                       "    return linear(y, 8)\n}\n")
    def cost():
        return cost_graph(prog.graph("T"), PRESETS["Eyeriss"], batch=2)

    rep = cost()
    steps = {o.name.split("[attention: ")[1][:-1]: o.cost for o in rep.cost.ops if " [attention: " in o.name}
    assert set(steps) == {"in_proj", "Q K^T", "softmax", "P V", "out_proj"}
    off = steps["Q K^T"].offchip.output + steps["Q K^T"].offchip.psum + steps["softmax"].offchip.total \
        + steps["P V"].offchip.input
    glb = steps["Q K^T"].onchip.output + steps["Q K^T"].onchip.psum + steps["softmax"].onchip.total \
        + steps["P V"].onchip.input
    line = next(x for x in rep.table().splitlines() if x.startswith("attention: "))
    assert line.endswith(f"(5 steps); T x T score matrices: off-chip {fmt_bytes(off)}, global {fmt_bytes(glb)}, "
                         f"PE {line.rsplit('PE ', 1)[1]}") and glb > 0, line
    only_pv = CostSummary("attention", "P operands", (("P V", ("input",)),))
    for k, d in list(REGISTRY.items()):
        if d.cost_summary is not None:
            monkeypatch.setitem(REGISTRY, k, dataclasses.replace(d, cost_summary=only_pv))
    line = next(x for x in cost().table().splitlines()
                if x.startswith("attention: "))
    assert f"(5 steps); P operands: off-chip {fmt_bytes(steps['P V'].offchip.input)}, global " \
           f"{fmt_bytes(steps['P V'].onchip.input)}, PE " in line, line
    for k, d in list(REGISTRY.items()):
        monkeypatch.setitem(REGISTRY, k, dataclasses.replace(d, cost_summary=None))
    assert not any(x.startswith("attention") for x in cost().table().splitlines())


def test_the_operator_messages_and_the_list_join_are_the_entries(monkeypatch):
    """`cannot multiply a tensor and int` takes its verb from mul's entry (`operator_verb`), `write a
    * b` its operator from the entry; the op a block's list of tensors is joined with is the entry
    with `list_join` (concat, dim 1)."""
    import dataclasses

    from evo.ops import REGISTRY, list_joiner

    def message(body):
        with pytest.raises(evo.EvoError) as e:
            evo.compile("evo 0.1\nnetwork T(x: Tensor[N, 4]) {\n" + body + "}\n")
        return str(e.value)

    assert "cannot multiply a tensor and int" in message("    return x * 2\n")
    assert "hint: write a * b" in message("    a = mul(x, x)\n    return a\n")
    monkeypatch.setitem(REGISTRY, "mul", dataclasses.replace(REGISTRY["mul"], operator_verb="scale"))
    assert "cannot scale a tensor and int" in message("    return x * 2\n")
    assert list_joiner() is REGISTRY["concat"] and REGISTRY["concat"].list_join == {"dim": 1}
    monkeypatch.setitem(REGISTRY, "concat", dataclasses.replace(REGISTRY["concat"], list_join=None))
    assert list_joiner() is None
