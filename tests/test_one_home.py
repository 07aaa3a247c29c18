"""One home for what several parts share (issue #10): every diagnostic code is a named
constant of evo/codes.py, documented in docs/language.md's table; one shape formatter;
one file writer (evo/fileio.py) for the library and the command line."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVO = ROOT / "evo"
CODE = re.compile(r"[EW]\d{4}")


def _sources():
    for p in sorted(EVO.rglob("*.py")):
        yield p, ast.parse(p.read_text(encoding="utf-8"), str(p))


def test_no_literal_diagnostic_code_outside_codes_py():
    found = []
    for p, tree in _sources():
        if p == EVO / "codes.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and CODE.fullmatch(node.value):
                found.append(f"{p.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, "write the named constant of evo/codes.py instead:\n" + "\n".join(found)


def test_every_code_constant_is_catalogued_and_documented():
    from evo import codes

    consts = {k: v for k, v in vars(codes).items() if k.isupper() and isinstance(v, str) and CODE.fullmatch(v)}
    assert len(consts) > 60
    assert len(set(consts.values())) == len(consts), "two constants share a code"
    doc = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    for name, code in consts.items():
        table = codes.CODES if code.startswith("E") else codes.WARNINGS
        assert code in table, f"{name} = {code!r} is missing from codes.{'CODES' if code[0] == 'E' else 'WARNINGS'}"
        assert f"| {code} | {table[code]} |" in doc, f"{code} ({name}) is not in docs/language.md's table"
    assert set(codes.CODES) | set(codes.WARNINGS) == set(consts.values())


def test_one_shape_formatter():
    from evo.ir.node import fmt_shape

    assert fmt_shape(("N", 3, 224, 224)) == "[N, 3, 224, 224]" and fmt_shape(()) == "[]"
    # the one function that brackets a shape: no second copy anywhere under evo/
    defs = [f"{p.relative_to(ROOT)} {n.name}" for p, tree in _sources() for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef) and "shape" in n.name.lower()
            and any(isinstance(c, ast.Constant) and c.value == "[" for c in ast.walk(n))]
    assert defs == ["evo/ir/node.py fmt_shape"], defs
    # messages show symbolic shapes the same way everywhere ([N, 10], not ['N', 10])
    offenders = []
    for p, tree in _sources():
        for n in ast.walk(tree):
            if isinstance(n, ast.FormattedValue) and isinstance(n.value, ast.Call) \
                    and isinstance(n.value.func, ast.Name) and n.value.func.id == "list" and n.value.args \
                    and isinstance(n.value.args[0], ast.Attribute) and n.value.args[0].attr == "shape":
                offenders.append(f"{p.relative_to(ROOT)}:{n.lineno}")
    assert not offenders, offenders


# calls that write files, allowed only in evo/fileio.py (the one writer)
WRITES = {"replace", "rename", "mkstemp", "write_text", "write_bytes", "mkdir", "makedirs"}


def _memory_buffers(tree) -> set[str]:
    """Names bound to an in-memory buffer (`buf = io.BytesIO()`) in a module."""
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call):
            f = n.value.func
            if (f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")) in ("BytesIO", "StringIO"):
                out.update(t.id for t in n.targets if isinstance(t, ast.Name))
    return out


def _writes(tree) -> list[int]:
    """Lines of a module's calls that write a file."""
    buffers = _memory_buffers(tree)
    lines = []
    for n in ast.walk(tree):
        if not isinstance(n, ast.Call):
            continue
        f = n.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
        if name in ("replace", "rename") and owner not in ("os", "shutil"):
            continue  # str.replace, dataclasses.replace, ...
        mode = [a for a in n.args[1:2] if isinstance(a, ast.Constant)] + \
            [k.value for k in n.keywords if k.arg == "mode" and isinstance(k.value, ast.Constant)]
        writes_open = name == "open" and owner in ("", "io", "os") and any(
            isinstance(m.value, str) and set(m.value) & set("wax") for m in mode)
        target = (n.args[:1] or [k.value for k in n.keywords if k.arg == "fname"] or [None])[0]
        saves_file = name == "savefig" and not (isinstance(target, ast.Name) and target.id in buffers)
        if (name in WRITES and isinstance(f, ast.Attribute)) or writes_open or saves_file:
            lines.append((n.lineno, ast.unparse(f)))
    return lines


def test_one_writer():
    """No module but evo/fileio.py writes a file: no open(..., "w"), os.replace, write_text, ...,
    and a matplotlib figure is saved only into an in-memory buffer (`fig.savefig(buf)`, `buf =
    io.BytesIO()`: evo/cost/plot.py renders bytes, its callers write them)."""
    found = [f"{p.relative_to(ROOT)}:{line}: {what}" for p, tree in _sources() if p != EVO / "fileio.py"
             for line, what in _writes(tree)]
    # the grammar cache's private directory (0700; Lark writes the cache file itself)
    found = [f for f in found if not (f.startswith("evo/frontend/parser.py:") and f.endswith("os.makedirs"))]
    assert not found, "write files through evo.fileio.write_atomic / output_dir:\n" + "\n".join(found)
    # the scan sees a figure saved to a path, and not one saved into a buffer
    assert _writes(ast.parse("def f(fig, path):\n    fig.savefig(path, format='png')\n")) == [(2, "fig.savefig")]
    assert _writes(ast.parse("def f(fig):\n    buf = io.BytesIO()\n    fig.savefig(buf)\n")) == []


def test_the_writer_is_safe(tmp_path):
    import os
    import stat

    import numpy as np
    import pytest

    from evo.fileio import OutputError, output_dir, write_atomic
    from evo.runtime.images import save_png, write_json

    out = tmp_path / "d" / "o.json"
    victim = tmp_path / "victim"
    victim.write_text("keep", encoding="utf-8")
    (out.parent).mkdir()
    for planted in (out.with_name(out.name + ".tmp"), out.with_name("." + out.name + ".tmp")):
        planted.symlink_to(victim)
    write_json({"a": 1}, out)
    assert out.read_text(encoding="utf-8") == '{\n  "a": 1\n}\n' and victim.read_text(encoding="utf-8") == "keep"
    out.chmod(0o640)
    save_png(np.zeros((2, 2, 3), np.uint8), out)  # a rewrite keeps the mode
    assert stat.S_IMODE(out.stat().st_mode) == 0o640 and out.read_bytes().startswith(b"\x89PNG")
    link = tmp_path / "link.txt"
    link.symlink_to(victim)
    with pytest.raises(OutputError, match="symbolic link"):
        write_atomic(link, "x")
    hard = tmp_path / "hard.txt"
    os.link(victim, hard)
    with pytest.raises(OutputError, match="hard link"):
        write_atomic(hard, "x")
    with pytest.raises(OutputError, match="the input"):
        write_atomic(tmp_path / "." / "victim", "x", inputs=[victim])
    with pytest.raises(OutputError, match="directory"):
        write_atomic(tmp_path, "x")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo")
        with pytest.raises(OutputError, match="FIFO"):
            write_atomic(tmp_path / "fifo", "x")
    with pytest.raises(OutputError, match="not a directory"):
        output_dir(victim)
    with pytest.raises(OutputError, match="not a directory"):
        write_atomic(victim / "x.txt", "x")
    assert victim.read_text(encoding="utf-8") == "keep"
    assert sorted(q.name for q in (tmp_path / "d").iterdir()) == [".o.json.tmp", "o.json", "o.json.tmp"]


# Where a registered op's name is written outside evo/ops/ as something other than an op: a word
# that is also an op's name.  Each is (file, word): the word stays allowed in that file only.
NOT_OP_NAMES = {
    # a hardware level's `split` setting (its size shared among the operands), not the `split` op
    ("evo/check/hardware.py", "split"), ("evo/cost/hardware.py", "split"),
    # the CAM setting `mean` (the input normalisation) and a heat map's statistics, not the `mean` op
    ("evo/check/settings.py", "mean"), ("evo/runtime/images.py", "mean"),
    # torch function names without an evo alias (F.conv2d and F.linear with explicit weights), mapped
    # to the reason the importer gives: names torch uses
    ("evo/importer/mapping.py", "conv2d"), ("evo/importer/mapping.py", "linear"),
}
# the calls that name an op by their first argument: the IR's op type, the registry's look-ups, the
# importer's steps and expressions
OP_CALLS = {"Op", "lookup", "language_op", "by_op", "get", "Step", "OpE"}


def _strings(node):
    """The string constants of an expression that names one or several things: a constant, the
    items of a set / tuple / list, set(...) / frozenset(...) / tuple(...) of one."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node
    elif isinstance(node, (ast.Set, ast.Tuple, ast.List)):
        for e in node.elts:
            yield from _strings(e)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id in ("set", "frozenset", "tuple") and node.args:
        yield from _strings(node.args[0])


def op_dispatch(tree, names: set[str]) -> list[tuple[int, str]]:
    """(line, name) where a module chooses by an op's name: `Op("x")`, `lookup("x")`, `Step("x", ...)`,
    `op == "x"`, `op in {"x", "y"}`, `{"x": ...}`, `{"x", "y"}`, `table["x"]`, `Op.X`."""
    hits = []
    for n in ast.walk(tree):
        found = []
        if isinstance(n, ast.Compare):
            for side in (n.left, *n.comparators):
                found += _strings(side)
        elif isinstance(n, ast.Call):
            f = n.func
            if (f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")) in OP_CALLS:
                found += _strings(n.args[0]) if n.args else []
        elif isinstance(n, ast.Subscript):
            found += _strings(n.slice)
        elif isinstance(n, ast.Dict):
            for k in n.keys:
                found += _strings(k) if k is not None else []
        elif isinstance(n, ast.Set):
            found += _strings(n)
        elif isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "Op" \
                and n.attr.lower() in names:
            hits.append((n.lineno, f"Op.{n.attr}"))
        hits += [(c.lineno, c.value) for c in found if c.value in names]
    return sorted(set(hits))


def test_no_module_outside_the_op_table_chooses_by_an_op_name():
    """Everything about an op is in its entry (issue #10): no module under evo/ outside evo/ops/
    compares with, looks up, builds or tabulates a built-in op by its name (a flag or field of the
    entry says what the module needs: `operator`, `operator_verb`, `list_join`, `cost_summary`,
    `keeps_zeros`, `positional`, `reshapes`, the importer aliases ...)."""
    from evo.ops import REGISTRY

    names = {k for k, d in REGISTRY.items() if d.builtin}
    found, allowed_seen = [], set()
    for p, tree in _sources():
        rel = str(p.relative_to(ROOT))
        if rel.startswith("evo/ops/"):
            continue
        for line, name in op_dispatch(tree, names):
            if (rel, name) in NOT_OP_NAMES:
                allowed_seen.add((rel, name))
            else:
                found.append(f"{rel}:{line}: {name!r}")
    assert not found, "read the op's entry (a flag or field of its OpDef) instead of its name:\n" + "\n".join(found)
    # the allow-list holds nothing stale
    assert allowed_seen == NOT_OP_NAMES, NOT_OP_NAMES - allowed_seen


def test_the_op_name_scan_sees_each_pattern():
    names = {"concat", "softmax", "add", "relu", "conv2d"}
    probe = ast.parse(
        "def f(n, ret, d, step, func):\n"
        "    a = Op('relu')\n"                                   # 2
        "    if ret.op != 'concat':\n"                           # 3
        "        pass\n"
        "    b = step in {'softmax', 'other'}\n"                 # 5
        "    c = {'conv2d': 1, 'x': 2}\n"                        # 6
        "    e = ops.lookup('add') or Op.RELU\n"                 # 7
        "    g = Step('concat', {}, [], None)\n"                 # 8
        "    h = d['softmax']\n"                                 # 9
        "    i = func in ('add', 'mul')\n"                       # 10
        "    return 'relu is an op', f'use concat', doc('conv2d')\n")  # 11: words in messages
    assert op_dispatch(probe, names) == [(2, "relu"), (3, "concat"), (5, "softmax"), (6, "conv2d"), (7, "Op.RELU"),
                                         (7, "add"), (8, "concat"), (9, "softmax"), (10, "add")]
