"""The IR: the verifier, the pass pipeline and the printer.

* the verifier accepts every example's graphs, and rejects hand-broken ones
  (use before definition, duplicate ids / module paths, shapes that are
  malformed, non-positive or disagree with the op's shape rule, unsorted or
  duplicate attributes, unknown scopes, dangling outputs / values / scopes);
* it runs after every pass of PIPELINE on every example;
* dead-code elimination removes dead parameterless nodes and keeps dead
  parametric ones (the `state_dict` stays the program's);
* `mark_fusion` marks conv -> bn -> activation chains, and not chains whose
  intermediate value has two users;
* the printer is deterministic (and the IR of a program is the same across
  compilations).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import evo
from evo.ir import Graph, Op, print_graph
from evo.passes import PIPELINE, dead_code_elimination, mark_fusion, run_pipeline
from evo.passes.verify import IRError, verify

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.evo"))


def _raw_graphs(path: Path) -> dict[str, Graph]:
    """Every network of a file as lowered, before any pass."""
    prog = evo.compile_file(path)
    return {k: g for k, g in prog.compilation.checked.graphs.items() if g is not None}


@pytest.fixture(scope="module")
def example_graphs() -> dict[str, Graph]:
    out = {}
    for p in EXAMPLES:
        for name, g in _raw_graphs(p).items():
            out[f"{p.stem}:{name}"] = g
    return out


def test_examples_exist():
    assert {p.stem for p in EXAMPLES} >= {"resnet18", "resnet50", "vgg16", "mobilenet", "quickstart"}


def test_verifier_accepts_every_example(example_graphs):
    assert example_graphs
    for key, g in example_graphs.items():
        assert verify(g) is g, key


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_verify_after_every_pass(path):
    for g in _raw_graphs(path).values():
        out = run_pipeline(g, verify_each=True)
        # and pass by pass, by hand: each pass is a pure function Graph -> Graph
        h = g
        for pname, p in PIPELINE:
            before = print_graph(h)
            h2 = p(h)
            assert print_graph(h) == before, f"{pname} mutated its input"
            verify(h2)
            h = h2
        assert print_graph(h) == print_graph(out)
        # the pipeline is idempotent on these graphs
        assert print_graph(run_pipeline(out, verify_each=True)) == print_graph(out)


def test_pipeline_names():
    names = [n for n, _ in PIPELINE]
    assert names == ["dead_code_elimination", "mark_fusion"]
    assert len(set(names)) == len(names)


# --------------------------------------------------------------------------- hand-broken graphs

SRC = """
block B(x, c: int) {
    conv = conv2d(x, c, 3, padding=1, bias=false)
    bn = batchnorm2d(conv)
    return relu(bn + x)
}
network Net(x: Tensor[N, 4, 8, 8]) {
    stem = seq(x) { conv2d(4, 1); relu() }
    b = B(stem, 4)
    pool = adaptive_avgpool2d(b, 1)
    fc = linear(flatten(pool), 3)
    return fc
}
"""


@pytest.fixture(scope="module")
def good() -> Graph:
    g = evo.compile(SRC).compilation.checked.graphs["Net"]
    verify(g)
    return g


def _node_index(g: Graph, op: Op, nth: int = 0) -> int:
    return [i for i, n in enumerate(g.nodes) if n.op == op][nth]


def _set_node(g: Graph, i: int, **kw) -> Graph:
    nodes = list(g.nodes)
    nodes[i] = replace(nodes[i], **kw)
    return replace(g, nodes=tuple(nodes))


def _broken(good: Graph):
    conv = _node_index(good, Op.CONV2D, 1)       # the block's conv (b.conv)
    relu = _node_index(good, Op.RELU, 1)
    lin = _node_index(good, Op.LINEAR)
    add = _node_index(good, Op.ADD)
    n = good.nodes
    swapped = list(n)
    swapped[conv], swapped[conv + 1] = swapped[conv + 1], swapped[conv]
    yield "use before def (reordered)", replace(good, nodes=tuple(swapped)), "before it is defined"
    yield "use of a missing node", _set_node(good, relu, inputs=(999,)), "before it is defined"
    yield "self use", _set_node(good, relu, inputs=(n[relu].id,)), "before it is defined"
    yield "duplicate id", _set_node(good, relu, id=n[relu - 1].id), "appears twice"
    yield "duplicate module path", _set_node(good, lin, path=n[conv].path), "used twice"
    yield "malformed shape", _set_node(good, relu, shape=[1, 2]), "malformed shape"
    yield "float dimension", _set_node(good, relu, shape=("N", 4.0, 8, 8)), "malformed shape"
    yield "zero dimension", _set_node(good, relu, shape=("N", 0, 8, 8)), "non-positive"
    yield "wrong channels", _set_node(good, conv, shape=("N", 5, 8, 8)), "inputs give"
    yield "wrong spatial size", _set_node(good, relu, shape=("N", 4, 4, 4)), "inputs give"
    yield "wrong rank", _set_node(good, lin, shape=("N",)), "inputs give"
    yield "add of mismatched shapes", _set_node(good, add, inputs=(n[add].inputs[0], n[lin - 1].id)), "add"
    yield "unary op with two inputs", _set_node(good, relu, inputs=n[add].inputs), "inputs"
    attrs = n[conv].attrs
    yield "unsorted attrs", _set_node(good, conv, attrs=tuple(reversed(attrs))), "not sorted"
    yield "duplicate attrs", _set_node(good, conv, attrs=tuple(sorted(attrs + attrs[:1]))), "not sorted"
    yield "missing attr", _set_node(good, conv, attrs=tuple(a for a in attrs if a[0] != "kernel")), "lacks"
    yield "attr disagreeing with shape", _set_node(
        good, conv, attrs=tuple((k, (2, 2) if k == "stride" else v) for k, v in attrs)), "inputs give"
    yield "input node with inputs", _set_node(good, 0, inputs=(0,)), "before it is defined|has inputs"
    yield "unknown scope", _set_node(good, relu, scope="nowhere"), "unknown scope"
    yield "dangling output", replace(good, outputs=(12345,)), "is not a node"
    yield "dangling value path", replace(good, values=good.values + (("ghost", 777),)), "missing node"
    s = good.scopes[-1]
    yield "dangling scope", replace(good, scopes=good.scopes[:-1] + (replace(s, outputs=(4242,)),)), "missing"


@pytest.mark.parametrize("case", list(range(22)))
def test_verifier_rejects_broken_graphs(good, case):
    cases = list(_broken(good))
    assert len(cases) == 22
    _, g, msg = cases[case]
    with pytest.raises(IRError, match=msg):
        verify(g)


def test_the_original_still_verifies(good):
    list(_broken(good))  # building the broken copies did not touch the original
    verify(good)


# --------------------------------------------------------------------------- passes

DEAD = """
block B(x) {
    k = conv2d(x, 2, 1)
    return relu(k)
}
network D(x: Tensor[N, 3, 8, 8]) {
    live = conv2d(x, 4, 1)
    dead_relu = relu(live)
    dead_mul = live * live
    dead_conv = conv2d(x, 2, 1)
    dead_after_param = sigmoid(dead_conv)
    dead_block = B(x)
    dead_seq = seq(x) { conv2d(2, 1); relu() }
    out = tanh(live)
    return out
}
"""


def test_dce_removes_dead_paramless_keeps_parametric():
    prog = evo.compile(DEAD)
    g = prog.compilation.checked.graphs["D"]
    ops_before = [n.op for n in g.nodes]
    h = dead_code_elimination(g)
    verify(h)
    names = {n.name for n in h.nodes}
    assert "dead_relu" not in names and "dead_mul" not in names and "dead_after_param" not in names
    paths = [n.path for n in h.nodes if n.path is not None]
    assert paths == [n.path for n in g.nodes if n.path is not None]  # every module kept
    assert {"dead_conv", "dead_block.k", "dead_seq.0", "dead_seq.1", "live"} <= set(paths)
    # value paths to removed nodes are dropped; the rest are kept
    vals = dict(h.values)
    assert "dead_relu" not in vals and "dead_mul" not in vals and "live" in vals and "dead_conv" in vals
    # the dead block's scope survives with its conv (its output relu is kept with it)
    assert h.scope("dead_block") is not None and h.scope("dead_seq") is not None
    assert len(h.nodes) < len(g.nodes) and ops_before == [n.op for n in g.nodes]
    # idempotent
    assert dead_code_elimination(h) is h or print_graph(dead_code_elimination(h)) == print_graph(h)
    # state_dict intact: the built module has every layer of the program
    model = prog.build("D")
    assert list(model.state_dict()) == ["live.weight", "live.bias", "dead_conv.weight", "dead_conv.bias",
                                        "dead_block.k.weight", "dead_block.k.bias", "dead_seq.0.weight",
                                        "dead_seq.0.bias"]


def test_dce_keeps_a_live_graph_unchanged(good):
    assert dead_code_elimination(good) is good


def _fusion(src: str, net: str = "T") -> dict[str, int | None]:
    g = mark_fusion(evo.compile(src).compilation.checked.graphs[net])
    verify(g)
    by_id = {n.id: n for n in g.nodes}
    out = {}
    for n in g.nodes:
        key = n.name or n.path or f"%{n.id}"
        f = n.attr("fuse")
        out[key] = (by_id[f].name or by_id[f].path) if f is not None else None
    return out


def test_mark_fusion_conv_bn_relu():
    f = _fusion("""network T(x: Tensor[N, 3, 8, 8]) {
    c = conv2d(x, 4, 3)
    b = batchnorm2d(c)
    r = relu(b)
    c2 = conv2d(r, 4, 1)
    a2 = relu6(c2)
    l = linear(flatten(a2), 3)
    s = sigmoid(l)
    return s
}""")
    assert f["c"] is None and f["b"] == "c" and f["r"] == "c"
    assert f["c2"] is None and f["a2"] == "c2"            # conv -> activation
    assert f["l"] is None and f["s"] == "l"               # linear -> activation


def test_mark_fusion_in_seqs_and_examples():
    comp = evo.compile_file(ROOT / "examples" / "quickstart.evo").compilation
    g = run_pipeline(comp.checked.graphs["QuickNet"])
    fused = {n.path: g.node(n.attr("fuse")).path for n in g.nodes if n.attr("fuse") is not None}
    assert fused == {"features.1": "features.0", "features.2": "features.0", "features.5": "features.4",
                     "features.6": "features.4", "features.9": "features.8", "features.10": "features.8"}


def test_mark_fusion_not_across_two_users():
    f = _fusion("""network T(x: Tensor[N, 3, 8, 8]) {
    c = conv2d(x, 3, 1)
    b = batchnorm2d(c)
    r = relu(b)
    side = sigmoid(b)
    c2 = conv2d(x, 3, 1)
    r2 = relu(c2)
    t = tanh(c2)
    c3 = conv2d(x, 3, 1)
    b3 = batchnorm2d(c3)
    r3 = relu(b3)
    more = r3 + c3
    return r + side + r2 + t + more
}""")
    # b has two users (r, side): b fuses into c, r does not
    assert f["b"] == "c" and f["r"] is None and f["side"] is None
    # c2 has two users: nothing fuses into it
    assert f["r2"] is None and f["t"] is None
    # c3 has two users (b3 and the add): nothing fuses
    assert f["b3"] is None and f["r3"] is None


def test_mark_fusion_stops_at_outputs_and_bn_after_act():
    f = _fusion("""network T(x: Tensor[N, 3, 8, 8]) {
    c = conv2d(x, 3, 1)
    r = relu(c)
    b = batchnorm2d(r)
    return b
}""")
    assert f["r"] == "c" and f["b"] is None  # conv -> act -> bn: the bn is not part of the chain
    f = _fusion("""network T(x: Tensor[N, 3, 8, 8]) {
    c = conv2d(x, 3, 1)
    b = batchnorm2d(c)
    return b, relu(b)
}""")
    assert f["b"] == "c"
    assert all(v is None for k, v in f.items() if k not in ("b",))


# --------------------------------------------------------------------------- printer

def test_printer_is_deterministic(example_graphs):
    for key, g in example_graphs.items():
        a = print_graph(g)
        assert a == print_graph(g), key
        assert a.endswith("}\n") and a.startswith(f"graph {g.name}(")
        # a header, the nodes, return, the named scopes, }
        assert len(a.splitlines()) == len(g.nodes) + 3 + sum(1 for s in g.scopes if s.path)


def test_ir_same_across_compilations():
    for p in EXAMPLES:
        a = evo.compile_file(p).compilation.ir_text
        b = evo.compile_file(p).compilation.ir_text
        assert a == b, p.stem


def test_printer_format(good):
    text = print_graph(run_pipeline(good))
    lines = text.splitlines()
    assert lines[0] == "graph Net() {"
    assert lines[1] == "  %0 = input() : [N, 4, 8, 8]  ; name=x"
    assert ("  %1 = conv2d(%0, bias=true, dilation=(1, 1), groups=1, kernel=(1, 1), out=4, padding=(0, 0), "
            "stride=(1, 1)) : [N, 4, 8, 8]  ; module=stem.0 scope=stem") in lines
    assert any(line.startswith("  %") and "add(" in line and "scope=b" in line for line in lines)
    assert "  scope stem: seq seq in=%0 out=%2" in lines
    assert lines[-1] == "}"


def test_mark_fusion_residual_add_then_activation():
    f = _fusion("""network T(x: Tensor[N, 3, 8, 8]) {
    c = conv2d(x, 3, 1)
    s = c + x
    r = relu(s)
    t = s * r
    u = tanh(t)
    return u, relu(c + x) + x
}""")
    # s has two users (r and t): nothing fuses into it; t -> u fuses
    assert f["r"] is None and f["u"] == "t"
    g = mark_fusion(evo.compile((ROOT / "examples" / "resnet18.evo").read_text()).compilation.checked.graphs["ResNet18"])
    adds = {n.id for n in g.nodes if n.op == Op.ADD}
    relus_after_add = [n for n in g.nodes if n.op == Op.RELU and n.inputs[0] in adds]
    assert relus_after_add and all(n.attr("fuse") == n.inputs[0] for n in relus_after_add)
