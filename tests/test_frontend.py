"""The front end and the checker: parsing every construct of the language reference
(node types, fields, spans), the spec's examples, units, shape inference against
PyTorch, the naming rules for module paths, and error collection per phase.

docs/language.md is the user-facing reference these tests pin down."""

from __future__ import annotations

import itertools
import re
import sys
import time
from pathlib import Path

import pytest

import evo
from evo import units as U
from evo.check import check_source
from evo.check.lower import MAX_DEPTH, MAX_EXPANDED
from evo.check.lower import Lowerer as Elaborator
from evo.check.program import Program
from evo.diagnostics import Collector, SourceMap
from evo.frontend import ast as A
from evo.frontend import parse
from evo.frontend.fmt import format_source
from evo.frontend.parser import KEYWORDS, MAX_NESTING

ROOT = Path(__file__).resolve().parents[1]
SPEC = Path("/work/shared/spec/LANGUAGE.md")
EXAMPLES = sorted((ROOT / "examples").glob("*.evo"))

NET = "network N(x: Tensor[N, 3, 8, 8]) {{\n{}\n}}\n"


def net(body: str) -> str:
    return NET.format(body)


def error(src: str, **kw) -> evo.EvoError:
    with pytest.raises(evo.EvoError) as info:
        evo.compile(src, **kw)
    return info.value


def first(src: str) -> tuple[str, int, int, str]:
    d = error(src).diagnostics[0]
    return d.code, d.span.line, d.span.column, d.message


def only(module: A.Module, kind: type):
    items = [it for it in module.items if isinstance(it, kind)]
    assert len(items) == 1
    return items[0]


def expr_of(text: str):
    """The AST of one expression (as the value of a target setting)."""
    m = parse(f"target T {{\n    v = {text}\n}}\n")
    return m.items[0].settings[0].value


def value_of(text: str):
    """Evaluate a constant expression the way the checker does."""
    return Elaborator(Program(), Collector()).constant(expr_of(text))


# ====================================================================== lexical


def test_newlines_separate_statements_and_semicolons_too():
    m = parse(net("    a = relu(x); b = relu(a)\n    c = relu(b)\n    return c"))
    body = only(m, A.Network).body
    assert [type(s).__name__ for s in body] == ["Assign", "Assign", "Assign", "Return"]
    assert [s.name for s in body[:3]] == ["a", "b", "c"]


def test_newlines_inside_parens_and_brackets_are_ignored():
    src = net("    y = conv2d(\n        x,\n        8,\n        [3,\n         3],\n        padding=1\n    )\n    return y")
    call = only(parse(src), A.Network).body[0].value
    assert isinstance(call, A.Call) and call.func == "conv2d"
    assert len(call.args) == 3 and isinstance(call.args[2], A.ListExpr)
    assert [k.name for k in call.kwargs] == ["padding"]
    assert call.span.line == 2 and call.span.end_line == 8
    evo.compile(src)


def test_newline_outside_brackets_ends_the_statement():
    code, line, _, msg = first(net("    y = 1 +\n        2\n    return x"))
    assert (code, line) == ("E0002", 2)
    assert "end of line" in msg


def test_else_may_be_on_the_next_line():
    src = net("    if x.channels == 3 {\n        y = relu(x)\n    }\n    # a comment\n    else {\n"
              "        y = x\n    }\n    return y")
    s = only(parse(src), A.Network).body[0]
    assert isinstance(s, A.If) and s.orelse is not None and len(s.orelse) == 1
    evo.compile(src)


def test_else_if_chains():
    src = net("    if false {\n        y = x\n    } else if true {\n        y = relu(x)\n    } else {\n"
              "        y = x\n    }\n    return y")
    s = only(parse(src), A.Network).body[0]
    assert isinstance(s.orelse[0], A.If) and s.orelse[0].orelse is not None
    g = check_source(src).graphs["N"]
    assert [n.op.value for n in g.nodes] == ["input", "relu"]


def test_comments_and_line_continuation():
    src = net("    # own line\n    y = relu(x)  # end of line\n    z = y + \\\n        y\n    return z")
    m = parse(src)
    assert [c.text for c in m.comments] == ["# own line", "# end of line"]
    assert m.comments[0].span.line == 2 and m.comments[1].span.column == 18
    assert isinstance(only(m, A.Network).body[1].value, A.BinOp)


def test_crlf_line_endings():
    src = net("    y = relu(x)\n    return y").replace("\n", "\r\n")
    evo.compile(src)
    e = error(net("    y = relu(q)\n    return y").replace("\n", "\r\n"))
    assert (e.line, e.column) == (2, 14)


def test_header_and_version():
    m = parse("evo 0.1\n\nnetwork N(x: Tensor[1, 2]) { return x }\n")
    assert m.header is not None and m.header.version == "0.1"
    assert (m.header.span.line, m.header.span.column) == (1, 1)
    code, line, col, msg = first("evo 9.9\nnetwork N(x: Tensor[1, 2]) { return x }\n")
    assert (code, line, col) == ("E0004", 1, 1) and "9.9" in msg


@pytest.mark.parametrize("kw", sorted(KEYWORDS))
def test_every_keyword_is_reserved(kw):
    code, line, col, msg = first(net(f"    {kw} = relu(x)\n    return x"))
    assert (code, line, col) == ("E0005", 2, 5)
    assert f"'{kw}'" in msg


def test_evo_is_a_name_outside_the_header():
    # `evo` only starts the header line; it is not a reserved word.
    p = evo.compile("evo 0.1\n" + net("    y = relu(x); evo = relu(y)\n    return evo"))
    assert "evo" in dict(p.compilation.checked.graphs["N"].values)


def test_numbers():
    cases = {"3": (3, None), "0.5": (0.5, None), "1e-5": (1e-5, None), "1_000_000": (1_000_000, None),
             "2.5e3": (2500.0, None), "200 MHz": (200, "MHz"), "25.6 GB/s": (25.6, "GB/s"), "2M": (2, "M"),
             "1_024 KiB": (1024, "KiB"), "2 B/cycle": (2, "B/cycle")}
    for text, (value, unit) in cases.items():
        e = expr_of(text)
        assert isinstance(e, A.Num), text
        assert (e.value, e.unit, e.text) == (value, unit, text)
        assert type(e.value) is type(value)


@pytest.mark.parametrize("bad", ["1__0", "1_", "1_.5", "1e400"])
def test_invalid_numbers(bad):
    code, line, col, _ = first(net(f"    y = {bad}\n    return x"))
    assert (code, line, col) == ("E0006", 2, 9)


def test_strings_and_escapes():
    e = expr_of(r'"a\"b\\c\nd\te"')
    assert isinstance(e, A.Str) and e.value == 'a"b\\c\nd\te'
    assert first(net('    y = "abc\n    return x'))[:2] == ("E0001", 2)


# ====================================================================== networks and blocks


def test_network_params_and_types():
    m = parse("network Net(x: Tensor[N, 3, 224, 224], classes: int = 1000, p: float = 0.5, b: bool = true) "
              "{ return x }\n")
    n = only(m, A.Network)
    assert n.name == "Net" and (n.name_span.line, n.name_span.column) == (1, 9)
    x, classes, p, b = n.params
    assert (x.name, x.type.name, x.type.dims, x.default) == ("x", "Tensor", ("N", 3, 224, 224), None)
    assert (classes.type.name, classes.default.value) == ("int", 1000)
    assert (p.type.name, p.default.value) == ("float", 0.5)
    assert (b.type.name, b.default.value) == ("bool", True)
    assert (classes.span.line, classes.span.column) == (1, 40)


def test_block_with_body_and_block_as_expression():
    m = parse("block B(x, c: int, s: int = 1) {\n    return conv2d(x, c, 3, stride=s)\n}\n"
              "block S(x, c: int) = seq(x) { B(c); relu() }\n")
    b, s = m.items
    assert isinstance(b, A.Block) and b.expr is None and len(b.body) == 1
    assert [p.name for p in b.params] == ["x", "c", "s"] and b.params[0].type is None
    assert isinstance(s, A.Block) and s.body is None and isinstance(s.expr, A.Seq)
    assert [st.func for st in s.expr.stages] == ["B", "relu"]
    assert (s.span.line, s.span.column, s.span.end_line) == (4, 1, 4)


def test_return_several_values():
    m = parse(net("    return x, relu(x)"))
    r = only(m, A.Network).body[0]
    assert isinstance(r, A.Return) and len(r.values) == 2
    g = check_source(net("    return x, relu(x)")).graphs["N"]
    assert len(g.outputs) == 2


def test_calls_positional_then_keyword():
    e = expr_of("conv2d(x, 64, 7, stride=2, padding=3, bias=false)")
    assert isinstance(e, A.Call) and e.func == "conv2d"
    assert [type(a).__name__ for a in e.args] == ["Name", "Num", "Num"]
    assert [(k.name, type(k.value).__name__) for k in e.kwargs] == [("stride", "Num"), ("padding", "Num"),
                                                                    ("bias", "Bool")]
    assert (e.func_span.column, e.kwargs[0].name_span.column) == (9, 26)
    code, line, col, msg = first(net("    y = conv2d(x, out=8, 3)\n    return y"))
    assert (code, line, col) == ("E0002", 2, 26) and "positional" in msg


def test_expression_precedence():
    e = expr_of("1 + 2 * 3 - 4 // 2 % 3")
    assert e.op == "-" and e.left.op == "+" and e.left.right.op == "*" and e.right.op == "%"
    e = expr_of("not a == b and c or d")
    assert e.op == "or" and e.left.op == "and" and isinstance(e.left.left, A.UnaryOp)
    assert e.left.left.operand.op == "=="
    e = expr_of("a if c else b if d else -e")
    assert isinstance(e, A.CondExpr) and isinstance(e.orelse, A.CondExpr)
    assert isinstance(e.orelse.orelse, A.UnaryOp) and e.orelse.orelse.op == "-"
    e = expr_of("-x.shape[1] + +2")
    assert e.op == "+" and e.left.op == "-" and isinstance(e.left.operand, A.Index)
    assert e.right.op == "+" and isinstance(e.right, A.UnaryOp)
    assert first(net("    y = 1 < 2 < 3\n    return x"))[0] == "E0002"  # comparisons do not chain


def test_attributes_paths_and_index():
    e = expr_of("layer4.1.conv2")
    assert isinstance(e, A.Attr) and e.attr == "conv2" and e.obj.attr == "1" and e.obj.obj.id == "layer4"
    e = expr_of("layer4.1.0")  # lexed as `layer4` `.` `1.0`: split back into path parts
    assert (e.attr, e.obj.attr, e.obj.obj.id) == ("0", "1", "layer4")
    e = expr_of("x.shape[0]")
    assert isinstance(e, A.Index) and e.obj.attr == "shape"
    assert value_of("[10, 20, 30][1]") == 20


def test_lists_and_literals():
    e = expr_of("[1, 2.5, true, \"s\",]")
    assert isinstance(e, A.ListExpr) and [type(x).__name__ for x in e.items] == ["Num", "Num", "Bool", "Str"]
    assert value_of("[]") == ()


def test_seq_stages_all_kinds():
    src = ("network N(x: Tensor[N, 3, 8, 8], deep: bool = true) {\n"
           "    y = seq(x) {\n"
           "        conv2d(8, 3, padding=1)\n"
           "        relu\n"
           "        if deep { relu() } else { identity() }\n"
           "        repeat 2 { relu() }\n"
           "        for i in 0..3 { conv2d(8 * (i + 1), 1) }\n"
           "    }\n"
           "    return y\n"
           "}\n")
    seq = only(parse(src), A.Network).body[0].value
    assert isinstance(seq, A.Seq) and isinstance(seq.input, A.Name)
    call, bare, sif, rep, sfor = seq.stages
    assert isinstance(call, A.StageCall) and not call.bare and len(call.args) == 2
    assert isinstance(bare, A.StageCall) and bare.bare and bare.func == "relu"
    assert isinstance(sif, A.StageIf) and len(sif.then) == 1 and len(sif.orelse) == 1
    assert isinstance(rep, A.StageRepeat) and rep.count.value == 2
    assert isinstance(sfor, A.StageFor) and sfor.var == "i" and (sfor.start.value, sfor.stop.value) == (0, 3)
    assert (sfor.span.line, sfor.span.column) == (7, 9)
    g = check_source(src).graphs["N"]
    convs = [n for n in g.nodes if n.op.value == "conv2d"]
    # for i in 0..3 is half-open: i = 0, 1, 2
    assert [n.attr("out") for n in convs] == [8, 8, 16, 24]
    assert [n.path for n in g.nodes if n.path] == [f"y.{i}" for i in range(8)]


def test_hardware_items():
    src = ("hardware H extends Base {\n    pes = 1024\n    global.size = 1 MiB\n"
           "    pe Spad { size = 512 B; bandwidth = 2 B/cycle; energy = 1 pJ/B }\n}\n")
    hw = only(parse(src), A.Hardware)
    assert (hw.name, hw.extends, hw.extends_span.column) == ("H", "Base", 20)
    pes, gsize, level = hw.items
    assert isinstance(pes, A.HwAttr) and pes.path == ("pes",)
    assert gsize.path == ("global", "size") and gsize.value.unit == "MiB"
    assert isinstance(level, A.HwLevel) and (level.kind, level.name) == ("pe", "Spad")
    assert [a.path[0] for a in level.attrs] == ["size", "bandwidth", "energy"]
    assert (level.kind_span.line, level.kind_span.column) == (4, 5)


def test_cam_target_evolve_items():
    src = ("cam C {\n    network = Net\n    layer = [layer3, layer4.1]\n    class = topk(3)\n}\n"
           "target T {\n    network = Net\n    cam = C\n    hardware = H\n    target = 3\n}\n"
           "evolve E {\n    target = T\n    gene classes in [10, 100]\n    gene H.pes in 64..576 step 64\n"
           "    gene H.global.size in 64 KiB..1 MiB step 64 KiB\n"
           "    minimize latency, energy\n    maximize fps\n    require params <= 12M, latency < 33 ms\n}\n")
    m = parse(src)
    cam, target, ev = m.items
    assert [s.name for s in cam.settings] == ["network", "layer", "class"]
    assert isinstance(cam.settings[1].value, A.ListExpr) and isinstance(cam.settings[2].value, A.Call)
    assert [s.name for s in target.settings] == ["network", "cam", "hardware", "target"]
    setting, g1, g2, g3, mn, mx, req = ev.items
    assert isinstance(setting, A.Setting)
    assert g1.path == ("classes",) and isinstance(g1.domain, A.ListExpr)
    assert g2.path == ("H", "pes") and isinstance(g2.domain, A.Range) and g2.domain.step.value == 64
    assert g3.path == ("H", "global", "size") and g3.domain.start.unit == "KiB"
    assert (g3.path_span.column, g3.path_span.end_column) == (10, 23)
    assert (mn.sense, mn.metrics, mx.sense, mx.metrics) == ("minimize", ("latency", "energy"), "maximize", ("fps",))
    assert [c.op for c in req.constraints] == ["<=", "<"]


def test_import_item(tmp_path):
    (tmp_path / "lib.evo").write_text("block B(x) { return relu(x) }\n")
    (tmp_path / "main.evo").write_text('import "lib.evo"\n\nnetwork N(x: Tensor[1, 2]) { return B(x) }\n')
    m = parse((tmp_path / "main.evo").read_text())
    assert isinstance(m.items[0], A.Import) and m.items[0].path == "lib.evo"
    p = evo.compile_file(tmp_path / "main.evo")
    assert "B" in p.compilation.program.blocks
    (tmp_path / "a.evo").write_text('import "b.evo"\n')
    (tmp_path / "b.evo").write_text('import "a.evo"\n')
    with pytest.raises(evo.EvoError) as info:
        evo.compile_file(tmp_path / "a.evo")
    assert info.value.code == "E0110"
    assert first('import "x.evo"\n')[0] == "E0109"  # a program from a string cannot import


# ====================================================================== the spec's examples


def spec_blocks() -> list[str]:
    return re.findall(r"```evo\n(.*?)```", SPEC.read_text(), re.DOTALL)


@pytest.mark.skipif(not SPEC.exists(), reason="the spec is not available")
def test_spec_examples_verbatim_check_ok():
    blocks = spec_blocks()
    assert len(blocks) == 5
    p = evo.compile("\n".join(blocks))
    c = p.compilation.checked
    assert set(c.graphs) == {"ResNet18"} and set(c.hardware) == {"Eyeriss"}
    assert set(c.cams) == {"Explain"} and set(c.targets) == {"Realtime"} and set(c.evolves) == {"Search"}
    g = c.graphs["ResNet18"]
    assert g.node(g.outputs[0]).shape == ("N", 1000)
    assert g.value("layer4.1.conv2").shape == ("N", 512, 7, 7)
    ev = c.evolves["Search"]
    genes = {gene.name: gene.values for gene in ev.genes}
    assert genes["Eyeriss.pes"] == (64, 128, 192, 256, 320, 384, 448, 512)  # half-open
    assert genes["Eyeriss.global.size"] == (64 * 1024, 108 * 1024, 256 * 1024)
    assert ev.constraints == (("params", "<=", 12e6), ("offchip_bytes", "<=", 50e6))
    # the network and hardware examples also check alone
    evo.compile(blocks[0])
    evo.compile(blocks[1])


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_check(path):
    evo.compile_file(path)


# ====================================================================== units

UNIT_VALUES = [
    ("1 Hz", 1.0, U.FREQUENCY), ("3 kHz", 3e3, U.FREQUENCY), ("200 MHz", 2e8, U.FREQUENCY),
    ("1.5 GHz", 1.5e9, U.FREQUENCY),
    ("16 bit", 2.0, U.SIZE), ("512 B", 512.0, U.SIZE), ("2 KB", 2e3, U.SIZE), ("3 MB", 3e6, U.SIZE),
    ("4 GB", 4e9, U.SIZE), ("1 TB", 1e12, U.SIZE), ("108 KiB", 108 * 1024.0, U.SIZE),
    ("2 MiB", 2 * 1024.0 ** 2, U.SIZE), ("1 GiB", 1024.0 ** 3, U.SIZE), ("1 TiB", 1024.0 ** 4, U.SIZE),
    ("25.6 GB/s", 25.6e9, U.BANDWIDTH), ("1 MiB/s", 1024.0 ** 2, U.BANDWIDTH), ("8 bit/s", 1.0, U.BANDWIDTH),
    ("1 TB/s", 1e12, U.BANDWIDTH), ("2 B/cycle", 2.0, U.BANDWIDTH_CYCLE), ("1 KiB/cycle", 1024.0, U.BANDWIDTH_CYCLE),
    ("1 J", 1.0, U.ENERGY), ("2 mJ", 2e-3, U.ENERGY), ("3 uJ", 3e-6, U.ENERGY), ("4 nJ", 4e-9, U.ENERGY),
    ("5 pJ", 5e-12, U.ENERGY), ("6 fJ", 6e-15, U.ENERGY),
    ("6 pJ/B", 6e-12, U.ENERGY_PER_SIZE), ("1 pJ/bit", 8e-12, U.ENERGY_PER_SIZE), ("2 nJ/B", 2e-9, U.ENERGY_PER_SIZE),
    ("1 s", 1.0, U.TIME), ("33 ms", 33e-3, U.TIME), ("5 us", 5e-6, U.TIME), ("7 ns", 7e-9, U.TIME),
]


@pytest.mark.parametrize("text,value,dim", UNIT_VALUES, ids=[t for t, _, _ in UNIT_VALUES])
def test_unit_values(text, value, dim):
    q = value_of(text)
    assert isinstance(q, U.Quantity) and q.dim == dim
    assert q.value == pytest.approx(value, rel=1e-12)
    no_space = value_of(text.replace(" ", ""))
    assert no_space.value == pytest.approx(value, rel=1e-12)


def test_count_suffixes_are_plain_numbers():
    assert value_of("2M") == 2_000_000 and isinstance(value_of("2M"), int)
    assert value_of("3K") == 3000 and value_of("1G") == 10 ** 9
    assert value_of("1.5K") == 1500 and isinstance(value_of("1.5K"), int)
    assert value_of("12M") == value_of("12_000_000")
    assert value_of("2M + 3K") == 2_003_000


def test_quantity_arithmetic():
    assert value_of("1 MiB + 512 KiB").value == 1.5 * 1024 ** 2
    assert value_of("2 * 64 KiB").value == 128 * 1024
    assert value_of("1 GB/s / 2").value == 5e8
    assert value_of("1 KB < 1 KiB") is True
    assert value_of("-(1 pJ)").value == -1e-12


def cycle_hw(bw: str, freq: str = "200 MHz") -> str:
    return (f"hardware H {{\n    frequency = {freq}\n    pes = 4\n"
            "    offchip D { bandwidth = 1 GB/s; energy = 100 pJ/B }\n"
            "    global G { size = 64 KiB; bandwidth = 16 B/cycle; energy = 6 pJ/B }\n"
            f"    pe P {{ size = 512 B; bandwidth = {bw}; energy = 1 pJ/B }}\n}}\n")


def test_bandwidth_per_cycle_uses_the_frequency():
    hw = evo.compile(cycle_hw("2 B/cycle")).hardware["H"]
    assert hw.level("pe").bandwidth == pytest.approx(400e6)  # 2 B/cycle at 200 MHz = 400 MB/s
    assert hw.level("global").bandwidth == pytest.approx(3.2e9)
    hw = evo.compile(cycle_hw("2 B/cycle", "1 GHz")).hardware["H"]
    assert hw.level("pe").bandwidth == pytest.approx(2e9)
    assert hw.word_bits == 16 and hw.macs_per_pe == 1 and hw.mac_energy == 1e-12  # defaults


def test_wrong_and_unknown_units():
    code, line, col, msg = first(cycle_hw("2 MHz"))
    assert (code, line, col) == ("E0400", 6, 38)
    assert "bandwidth" in msg and "frequency" in msg  # names both
    code, _, _, msg = first(cycle_hw("2 MHz/s"))
    assert code == "E0411" and "MHz/s" in msg
    assert first(cycle_hw("2"))[0] == "E0401"


# ====================================================================== expressions and evaluation


def test_scalar_evaluation():
    assert value_of("7 // 2") == 3 and value_of("7 / 2") == 3.5 and value_of("-7 % 3") == 2
    assert value_of("min(3, 1, 2)") == 1 and value_of("max(1, 2.5)") == 2.5
    assert value_of("1 if 2 > 1 else 0") == 1
    assert value_of("true and not false") is True and value_of("false or 1 == 1.0") is True
    assert value_of("[1, 2] == [1, 2]") is True
    assert value_of("false and 1 / 0 == 0") is False  # short-circuit


@pytest.mark.parametrize("text,code", [
    ("1 / 0", "E0201"), ("1 % 0", "E0201"), ("1 + true", "E0200"), ("true == 1", "E0200"),
    ("1 if 1 else 2", "E0200"), ("1e308 * 10", "E0203"), ("10 ** 2", "E0002"), ("[1][3]", "E0206"),
    ("1 MHz + 1 GB", "E0400"), ("1 MHz * 1 MHz", "E0400"), ("min(1)", "E0104"),
])
def test_evaluation_errors(text, code):
    assert first(net(f"    y = {text}\n    return x"))[0] == code


def test_tensor_attributes():
    src = net("    c = x.channels; h = x.height; w = x.width; r = x.rank; s = x.shape[-1]\n"
              "    y = conv2d(x, c * h + w + r + s, 1)\n    return y")
    g = check_source(src).graphs["N"]
    assert g.node(g.outputs[0]).shape == ("N", 3 * 8 + 8 + 4 + 8, 8, 8)
    assert first(net("    n = x.shape[0]\n    return x"))[0] == "E0204"  # the batch is symbolic
    assert first(net("    n = x.depth\n    return x"))[:3] == ("E0113", 2, 9)


def test_compile_time_if_is_not_on_tensors():
    assert first(net("    if x { y = x } else { y = x }\n    return y"))[0] == "E0204"


def test_several_outputs_of_a_block_are_indexed():
    src = ("block Two(x) { return relu(x), sigmoid(x) }\nblock Wrap(x) { return Two(x) }\n"
           "network N(x: Tensor[N, 3, 8, 8]) {\n    t = Two(x)\n    u = Wrap(t[0])\n"
           "    return t[0] + t[-1], u[1]\n}\n")
    g = check_source(src).graphs["N"]
    assert [g.node(o).op.value for o in g.outputs] == ["add", "sigmoid"]
    assert first(src.replace("t[-1]", "t[2]"))[0] == "E0206"


def test_block_input_declared_shape_is_checked():
    ok = "block B(x: Tensor[N, 3, H, W]) { return relu(x) }\nnetwork N(x: Tensor[N, 3, 8, 8]) { return B(x) }\n"
    evo.compile(ok)
    code, line, col, msg = first(ok.replace("[N, 3, H, W]", "[N, 4, H, W]"))
    assert (code, line, col) == ("E0301", 2, 45) and "must be 4, got 3" in msg
    assert first(ok.replace("[N, 3, H, W]", "[N, 3]"))[0] == "E0300"


def test_only_the_first_block_parameter_may_be_a_tensor():
    src = "block B(x, y) { return x + y }\nnetwork N(x: Tensor[N, 3, 8, 8]) { return B(x, x) }\n"
    assert first(src)[0] == "E0205"


def test_seq_stages_take_no_tensor_arguments():
    src = "block B(x, y: int) { return relu(x) }\n" + net("    z = seq(x) { B(x) }\n    return z")
    assert first(src)[:2] == ("E0205", 3)


def test_only_the_batch_may_be_symbolic():
    code, line, _, _ = first("network N(x: Tensor[N, C, 8, 8]) { return x }\n")
    assert (code, line) == ("E0304", 1)
    code, _, _, msg = first("network N(x: Tensor[N, 3, 0, 8]) { return x }\n")
    assert code == "E0304" and "positive" in msg


def test_networks_without_defaults_are_checked_when_instantiated():
    src = "network N(x: Tensor[N, 3, 8, 8], c: int) { return conv2d(x, c, 1) }\n"
    p = evo.compile(src)
    assert p.compilation.checked.graphs["N"] is None
    g = p.graph("N", c=5)
    assert g.node(g.outputs[0]).shape == ("N", 5, 8, 8)
    with pytest.raises(evo.EvoError) as info:
        p.graph("N", c=0)
    assert info.value.code == "E0203"


# ====================================================================== shapes against PyTorch


def _infer_batch(cases: list[tuple[str, tuple]]) -> tuple[dict[int, tuple], set[int]]:
    """Check one program with one network per case; returns the inferred shape per case
    and the cases the checker rejects (one parse for all of them)."""
    def program(idx):
        return "".join(f"network C{i}(x: Tensor{list(cases[i][1])}) {{\n    return {cases[i][0]}\n}}\n"
                       for i in idx)
    idx = list(range(len(cases)))
    failed: set[int] = set()
    try:
        checked = check_source(program(idx))
    except evo.EvoError as e:
        assert all(d.code[:3] in ("E03", "E02") for d in e.diagnostics), str(e)
        failed = {(d.span.line - 1) // 3 for d in e.diagnostics}
        idx = [i for i in idx if i not in failed]
        checked = check_source(program(idx))
    shapes = {}
    for i in idx:
        g = checked.graphs[f"C{i}"]
        shapes[i] = tuple(g.node(g.outputs[0]).shape)
    return shapes, failed


def _compare(cases, run):
    import torch

    shapes, failed = _infer_batch(cases)
    mismatches = []
    for i, (call, shape) in enumerate(cases):
        try:
            want = tuple(run(i, torch.zeros(shape)).shape)
        except (RuntimeError, ValueError):
            want = None
        got = None if i in failed else shapes[i]
        if want != got:
            mismatches.append((call, shape, want, got))
    assert not mismatches, mismatches[:10]
    return len(failed)


def test_conv2d_shapes_match_pytorch():
    import torch
    import torch.nn.functional as F

    grid = list(itertools.product([1, 5, 8], [1, 2, 3], [1, 2, 3], [0, 1, 2], [1, 2], [1, 2, 4], [4, 6]))
    cases, params = [], []
    for h, k, s, p, d, g, cout in grid:
        cin = 4
        cases.append((f"conv2d(x, {cout}, {k}, stride={s}, padding={p}, dilation={d}, groups={g})", (1, cin, h, h + 2)))
        params.append((cin, cout, k, s, p, d, g))

    def run(i, x):
        cin, cout, k, s, p, d, g = params[i]
        if cin % g or cout % g:
            raise ValueError("groups")
        return F.conv2d(x, torch.zeros(cout, cin // g, k, k), None, s, p, d, g)

    rejected = _compare(cases, run)
    assert 0 < rejected < len(cases)


def test_conv2d_rectangular_kernels_match_pytorch():
    import torch
    import torch.nn.functional as F

    cases, params = [], []
    for (kh, kw), (sh, sw), (ph, pw) in itertools.product([(1, 3), (3, 1), (2, 5)], [(1, 2), (2, 1)],
                                                           [(0, 1), (2, 0)]):
        cases.append((f"conv2d(x, 2, [{kh}, {kw}], stride=[{sh}, {sw}], padding=[{ph}, {pw}])", (2, 3, 6, 7)))
        params.append(((kh, kw), (sh, sw), (ph, pw)))

    def run(i, x):
        k, s, p = params[i]
        return F.conv2d(x, torch.zeros(2, 3, *k), None, s, p)

    _compare(cases, run)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_shapes_match_pytorch(kind):
    import torch.nn.functional as F

    grid = list(itertools.product([1, 2, 5, 7, 8], [1, 2, 3], [1, 2, 3], [0, 1, 2], [1, 2] if kind == "max" else [1],
                                  [False, True]))
    cases = []
    for h, k, s, p, d, ceil in grid:
        dil = f", dilation={d}" if kind == "max" else ""
        cases.append((f"{kind}pool2d(x, {k}, stride={s}, padding={p}{dil}, ceil={'true' if ceil else 'false'})",
                      (1, 4, h, h + 1)))

    def run(i, x):
        _, k, s, p, d, ceil = grid[i]
        if kind == "max":
            return F.max_pool2d(x, k, s, p, d, ceil_mode=ceil)
        return F.avg_pool2d(x, k, s, p, ceil_mode=ceil)

    rejected = _compare(cases, run)
    assert 0 < rejected < len(cases)


def test_pool_default_stride_is_the_kernel_and_adaptive_pool():
    import torch.nn.functional as F

    cases = [("maxpool2d(x, 2)", (1, 2, 7, 9)), ("avgpool2d(x, [2, 3])", (1, 2, 7, 9)),
             ("maxpool2d(x, 3, ceil=true)", (1, 2, 7, 8)), ("adaptive_avgpool2d(x, 1)", (1, 2, 7, 9)),
             ("adaptive_avgpool2d(x, [3, 5])", (1, 2, 7, 9)), ("adaptive_avgpool2d(x, 11)", (1, 2, 7, 9)),
             ("adaptive_avgpool2d(x, 2)", (2, 7, 9))]
    runs = [lambda x: F.max_pool2d(x, 2), lambda x: F.avg_pool2d(x, (2, 3)),
            lambda x: F.max_pool2d(x, 3, ceil_mode=True), lambda x: F.adaptive_avg_pool2d(x, 1),
            lambda x: F.adaptive_avg_pool2d(x, (3, 5)), lambda x: F.adaptive_avg_pool2d(x, 11),
            lambda x: F.adaptive_avg_pool2d(x, 2)]
    _compare(cases, lambda i, x: runs[i](x))


def test_other_shape_rules_match_pytorch():
    import torch
    import torch.nn.functional as F

    cases = [("flatten(x)", (2, 3, 4, 5)), ("flatten(x, start=2)", (2, 3, 4, 5)),
             ("flatten(x, 1, 2)", (2, 3, 4, 5)), ("flatten(x, start=-2)", (2, 3, 4, 5)),
             ("linear(x, 7)", (2, 5)), ("concat(x, x, dim=1)", (2, 3, 4)), ("concat(x, x, x, dim=-1)", (2, 3, 4)),
             ("softmax(x, dim=-1)", (2, 3)), ("x + relu(x)", (2, 3, 4)), ("x * x", (1, 3)),
             ("batchnorm1d(x)", (2, 3, 5)), ("batchnorm1d(x)", (2, 3)), ("dropout(x, 0.1)", (2, 3))]
    runs = [lambda x: torch.flatten(x, 1), lambda x: torch.flatten(x, 2), lambda x: torch.flatten(x, 1, 2),
            lambda x: torch.flatten(x, -2), lambda x: F.linear(x, torch.zeros(7, 5)),
            lambda x: torch.cat((x, x), 1), lambda x: torch.cat((x, x, x), -1), lambda x: torch.softmax(x, -1),
            lambda x: x + x, lambda x: x * x, lambda x: x, lambda x: x, lambda x: x]
    _compare(cases, lambda i, x: runs[i](x))


# ====================================================================== naming rules

NAMING = """
block Inner(x, c: int) {
    conv = conv2d(x, c, 1)
    return relu(conv2d(conv, c, 3, padding=1)) + conv2d(x, c, 1)
}

block Stack(x, c: int) = seq(x) { Inner(c); batchnorm2d(); Inner(c) }

network Net(x: Tensor[N, 3, 16, 16]) {
    stem = conv2d(x, 8, 3, padding=1)
    body = seq(stem) {
        Inner(8)
        relu
        for i in 0..2 {
            Stack(8)
        }
        if false {
            conv2d(8, 1)
        } else {
            batchnorm2d()
        }
    }
    side = Inner(body, 8) + Inner(body, 8)
    head = linear(flatten(adaptive_avgpool2d(relu(seq(side) { conv2d(8, 1) }), 1)), 10)
    conv2d_1 = conv2d(side, 8, 1)
    return head, conv2d(conv2d_1, 8, 1)
}
"""


def test_module_paths_follow_the_naming_rules():
    g = check_source(NAMING).graphs["Net"]
    inner = ["conv", "conv2d_0", "conv2d_1"]  # bound name, then generated names in evaluation order

    def stack(p):
        return [f"{p}.0.{n}" for n in inner] + [f"{p}.1"] + [f"{p}.2.{n}" for n in inner]

    want = (["stem"] + [f"body.0.{n}" for n in inner] + ["body.1"] + stack("body.2") + stack("body.3")
            + ["body.4"] + [f"Inner_0.{n}" for n in inner] + [f"Inner_1.{n}" for n in inner]
            + ["seq_0.0", "head", "conv2d_1",
               "conv2d_0"])  # a generated name skips names the body binds, even further down
    assert [n.path for n in g.nodes if n.path] == want
    assert len(set(want)) == len(want)
    scopes = {s.path: (s.kind, s.label) for s in g.scopes}
    assert scopes["body"] == ("seq", "seq") and scopes["body.2"] == ("seq", "Stack")
    assert scopes["body.2.0"] == ("block", "Inner") and scopes["Inner_1"] == ("block", "Inner")
    assert scopes["seq_0"] == ("seq", "seq")
    values = dict(g.values)
    for p in ("x", "stem", "body", "body.1", "body.2", "body.2.2", "body.2.2.conv", "side", "head", "Inner_0"):
        assert p in values, p
    # non-parametric layers outside a seq are values, not modules
    assert not any(n.path for n in g.nodes if n.op.value in ("add", "flatten", "adaptive_avgpool2d"))


def test_dead_parametric_layers_are_kept():
    src = net("    unused = conv2d(x, 4, 1)\n    also = relu(x)\n    return relu(x)")
    p = evo.compile(src)
    g = p.compilation.ir["N"]
    assert [n.path for n in g.nodes if n.path] == ["unused"]
    assert "also" not in dict(g.values)  # a dead value without parameters goes


# ====================================================================== errors per phase


@pytest.mark.parametrize("src,codes", [
    # names
    (net("    a = foo(x)\n    b = relu(y)\n    c = bar(x)\n    return a"), ["E0103", "E0100", "E0103"]),
    # evaluation and shapes (one network)
    (net("    a = conv2d(x, 4, 30)\n    b = batchnorm1d(x)\n    c = x + conv2d(x, 5, 1)\n    return x"),
     ["E0303", "E0300", "E0301"]),
    # shapes in three networks
    (("network A(x: Tensor[N, 3, 8, 8]) { return conv2d(x, 4, 30) }\n"
      "network B(x: Tensor[N, 3, 8, 8]) { return batchnorm1d(x) }\n"
      "network C(x: Tensor[N, 3, 8, 8]) { return maxpool2d(x, 2, padding=2) }\n"), ["E0303", "E0300", "E0203"]),
    # hardware
    (("hardware H {\n    frequency = 1 GB\n    pes = 0\n    offchip D { bandwidth = 1 MHz; energy = 1 pJ/B }\n"
      "    global G { size = 1 KiB; bandwidth = 1 GB/s; energy = 1 pJ/B }\n"
      "    pe P { size = 1 KiB; bandwidth = 1 GB/s; energy = 1 pJ/B }\n}\n"), ["E0400", "E0404", "E0400"]),
    # cam / target
    (net("    return x") + "cam C { network = M; layer = x; method = foo }\n"
     "target T { network = N; hardware = Q }\n", ["E0500", "E0504", "E0503"]),
])
def test_independent_errors_of_a_phase_are_all_reported(src, codes):
    e = error(src)
    assert [d.code for d in e.diagnostics] == codes
    assert str(e).endswith(f"{len(codes)} errors")
    lines = [d.span.line for d in e.diagnostics]
    assert lines == sorted(lines)


def test_a_phase_stops_the_later_ones():
    # a names error and a shape error: only the names phase is reported
    e = error(net("    a = foo(x)\n    b = linear(x, 3)\n    return b"))
    assert [d.code for d in e.diagnostics] == ["E0103"]


def test_errors_in_a_block_instance_name_the_call_site():
    src = "block B(x, c: int) { return conv2d(x, c, 30) }\n" + net("    y = B(x, 4)\n    return y")
    d = error(src).diagnostics[0]
    assert (d.code, d.span.line) == ("E0303", 1)
    assert any(n.span is not None and n.span.line == 3 for n in d.notes)


# ====================================================================== limits and robustness


def test_expansion_limits_are_refused_fast():
    t = time.process_time()  # CPU time: a wall-clock bound fails on a loaded machine, not on slow code
    code, line, _, msg = first(net("    y = seq(x) { repeat 1000000000 { relu() } }\n    return y"))
    assert (code, line) == ("E0202", 2) and "100,000" in msg
    # loops that expand to nothing are bounded too
    code, _, _, msg = first(net("    y = seq(x) { repeat 100000 { repeat 100000 { } } }\n    return y"))
    assert code == "E0202"
    code, _, _, _ = first(net("    y = seq(x) { for i in 0..100000 { for j in 0..100000 { relu() } } }\n"
                              "    return y"))
    assert code == "E0202"
    assert time.process_time() - t < 5


def test_layer_limit_counts_layers():
    ok = net(f"    y = seq(x) {{ repeat {MAX_EXPANDED - 1} {{ identity() }} }}\n    return y")
    g = check_source(ok).graphs["N"]
    assert len(g.nodes) == MAX_EXPANDED
    assert first(ok.replace(str(MAX_EXPANDED - 1), str(MAX_EXPANDED)))[0] == "E0202"


def _block_chain(n: int, seq_style: bool) -> str:
    parts = []
    for i in range(n):
        if i == n - 1:
            parts.append(f"block B{i}(x) {{ return relu(x) }}\n")
        elif seq_style:
            parts.append(f"block B{i}(x) = seq(x) {{ B{i + 1}() }}\n")
        else:
            parts.append(f"block B{i}(x) {{\n    y = B{i + 1}(x)\n    return y\n}}\n")
    parts.append("network N(x: Tensor[N, 3, 8, 8]) { return B0(x) }\n")
    return "".join(parts)


@pytest.mark.parametrize("seq_style", [False, True])
def test_block_nesting_limit(seq_style):
    g = check_source(_block_chain(MAX_DEPTH, seq_style)).graphs["N"]
    assert len(g.scopes) == MAX_DEPTH + 1  # the network and one scope per block instance
    code, _, _, msg = first(_block_chain(MAX_DEPTH + 1, seq_style))
    assert code == "E0202" and f"{MAX_DEPTH} deep" in msg


def test_a_long_chain_of_blocks_is_an_error_not_a_crash():
    # the recursion check between blocks was recursive itself
    assert first(_block_chain(1000, False))[0] == "E0202"


def test_block_nesting_works_with_a_low_recursion_limit():
    # elaboration makes its own headroom: the caller's recursion limit does not matter
    import inspect

    from evo.check import check_program
    from evo.check.program import load

    program = load(_block_chain(MAX_DEPTH, False))
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack(0)) + 150)
    try:
        checked = check_program(program)
    finally:
        sys.setrecursionlimit(old)
    assert checked.graphs["N"] is not None


@pytest.mark.parametrize("make", [
    lambda n: "y = " + "+".join(["1"] * n),
    lambda n: "y = " + "-" * n + "1",
    lambda n: "y = " + "[" * n + "]" * n,
    lambda n: "y = " + "relu(" * n + "x" + ")" * n,
    lambda n: "y = " + "not " * n + "true",
    lambda n: "y = " + "1 if true else " * n + "1",
    lambda n: "if true {\n" * n + "y = x\n" + "}\n" * n,
    lambda n: "y = seq(x) {" + "repeat 1 {" * n + "relu()" + "}" * n + "}",
], ids=["sum", "neg", "list", "call", "not", "cond", "if", "repeat"])
def test_deep_nesting_is_an_error_not_a_crash(make):
    ok = net("    " + make(MAX_NESTING // 4) + "\n    return x")
    evo.compile(ok)
    format_source(ok)
    for n in (MAX_NESTING + 1, 5000):
        code, _, _, msg = first(net("    " + make(n) + "\n    return x"))
        assert code == "E0002" and "nested too deeply" in msg


# ====================================================================== regressions


def test_reserved_word_at_the_start_of_a_statement_is_reported_there():
    # was reported on the next use of the name instead
    code, line, col, _ = first(net("    seq = relu(x)\n    return seq"))
    assert (code, line, col) == ("E0005", 2, 5)


def test_unfinished_statement_is_not_called_a_misused_keyword():
    src = net("    return x") + "evolve E {\n    target = T\n    minimize\n}\n"
    code, line, _, msg = first(src)
    assert (code, line) == ("E0002", 6) and "end of line" in msg


def test_hash_inside_a_string_with_an_escaped_quote_is_not_a_comment():
    src = 'cam C {\n    network = N\n    layer = x\n    labels = ["a\\"#b", "c"]  # real\n}\n' + net("    return x")
    m = parse(src)
    assert [c.text for c in m.comments] == ["# real"]
    out = format_source(src)
    assert out.count("#") == 2 and evo.compile(out).cams["C"].labels == ('a"#b', "c")


def test_strings_with_control_characters_round_trip_through_fmt():
    src = 'cam C {\n    network = N\n    layer = x\n    labels = ["a\x01b\rc", "t\\td"]\n}\n' + net("    return x")
    out = format_source(src)
    assert evo.compile(out).cams["C"].labels == evo.compile(src).cams["C"].labels == ("a\x01b\rc", "t\td")


def test_line_numbers_ignore_form_feeds_and_unicode_line_separators():
    # str.splitlines() splits at \f and \u2028; the lexer (and so every span) only at \n
    src = net("    # a \u2028 comment \x0c with separators\n    y = relu(x)\n    return y") + "network"
    e = error(src)
    assert e.line == 6 and e.line == src.count("\n") + 1
    rendered = str(e).splitlines()
    assert rendered[1].strip().endswith("network")
    e = error("\x0c" + net("    y = relu(q)\n    return y"))
    assert (e.line, e.column) == (2, 14)
    assert "relu(q)" in str(e).splitlines()[1]


def test_diagnostic_location_at_end_of_file():
    e = error("network N(x: Tensor[N, 3, 8, 8]) {\n    y = relu(x)\n")
    assert e.code == "E0003" and e.line == 2
    evo.compile("")  # an empty program is fine
    evo.compile("# only a comment")
    evo.compile("evo 0.1")


def test_diagnostic_rendering_is_sanitized():
    e = error(net("    y = relu(x) \x07\n    return y"))
    assert "\x07" not in str(e)
    sm = SourceMap({"f": "a\nb\n"})
    assert sm.line("f", 2) == "b" and sm.line("f", 3) == "" and sm.line("f", 4) is None


def test_training_cannot_name_a_layer():
    # PyTorch modules set `self.training`: a submodule of that name breaks .eval()
    code, line, _, msg = first(net("    training = conv2d(x, 3, 1)\n    return training"))
    assert (code, line) == ("E0005", 2) and "training" in msg
    evo.compile(net("    training = relu(x)\n    return training"))  # a value, not a module: fine


# ====================================================================== the reference and the command line

DOC = ROOT / "docs" / "language.md"


def test_language_reference_examples_compile():
    blocks = re.findall(r"```evo\n(.*?)```", DOC.read_text(), re.DOTALL)
    complete = evo.compile(blocks[0]).compilation.checked
    assert set(complete.graphs) == {"ResNet18"} and set(complete.targets) == {"Realtime"}
    naming = next(b for b in blocks if "block Inner" in b)
    paths = [n.path for n in check_source(naming).graphs["Net"].nodes if n.path]
    assert paths == [n.path for n in check_source(NAMING).graphs["Net"].nodes if n.path]


def test_language_reference_lists_every_code_and_op():
    from evo import ops
    from evo.diagnostics import CODES

    text = DOC.read_text()
    for code in CODES:
        assert f"| {code} | {CODES[code]} |" in text, code
    for name, d in ops.language_ops().items():  # the built-in ones (tests may register user-defined ops)
        if name not in ops.OPERATOR_ONLY and d.builtin:
            assert f"`{name}(" in text or f"`{name}`" in text, name
    for kw in KEYWORDS:
        assert kw in text


def test_cli_exit_codes(tmp_path, capsys, monkeypatch):
    from evo import cli

    good = tmp_path / "good.evo"
    good.write_text(net("    return relu(x)"))
    bad = tmp_path / "bad.evo"
    bad.write_text(net("    return relu(q)"))
    assert cli.main(["check", str(good)]) == 0
    assert "good.evo: ok (1 network" in capsys.readouterr().out
    assert cli.main(["check", "-q", str(good), str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and f"{bad}:2:17: error[E0100]" in captured.err
    assert cli.main(["check", str(tmp_path / "nope.evo")]) == 2
    assert cli.main(["check", str(tmp_path)]) == 2
    assert cli.main([]) == 2
    with pytest.raises(SystemExit) as info:
        cli.main(["frobnicate"])
    assert info.value.code == 2
    (tmp_path / "latin1.evo").write_bytes(b"# caf\xe9\n")
    assert cli.main(["check", str(tmp_path / "latin1.evo")]) == 1
    assert "1:6: error[E0001]: the file is not valid UTF-8" in capsys.readouterr().err
    out = tmp_path / "out" / "ir.txt"
    assert cli.main(["compile", "--emit", "ir", "-o", str(out), str(good)]) == 0
    assert out.read_text().startswith("graph N()")
    assert cli.main(["compile", "--emit", "ast", str(good)]) == 0
    assert capsys.readouterr().out.startswith("Module @1:1")
    monkeypatch.setattr(cli.common, "compile_program", lambda path: 1 / 0)  # a compiler bug
    assert cli.main(["check", str(good)]) == 3
    err = capsys.readouterr().err
    assert "internal error" in err and "Traceback" not in err


def test_byte_order_mark_and_odd_characters():
    evo.compile("\ufeff" + net("    return x"))
    assert format_source("\ufeff" + net("    return x")) == net("    return x")
    for ch, shown in (("\u2028", "'\\u2028'"), ("\x01", "'\\x01'"), ("\u00e9", "'\u00e9'"), ("@", "'@'")):
        code, line, col, msg = first(net(f"    return x {ch}"))
        assert (code, line, col) == ("E0001", 2, 14)
        assert msg == f"unexpected character {shown}"
