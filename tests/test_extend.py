"""The extension point: user-defined ops registered from Python (shape, code,
cost and gradient rules) and discovered through the `evo.ops` entry point.
The worked example is examples/plugins/evo_mish.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import evo
from evo import ops
from evo.extend import OpError, load_plugins, register_op, unregister_op

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "examples" / "plugins"


@pytest.fixture()
def mish():
    sys.path.insert(0, str(PLUGINS))
    try:
        import evo_mish

        evo_mish.register()
        yield
    finally:
        unregister_op("mish")
        sys.path.remove(str(PLUGINS))


def test_worked_example_compiles_runs_and_explains(mish):
    prog = evo.compile_file(PLUGINS / "mish.evo")
    model = prog.build("MishNet")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    # the generated module computes what hand-written torch computes
    f = model.features
    ref = F.mish(f[3](F.max_pool2d(F.mish(f[0](x)), 2)))
    ref = F.mish(model.conv2d_0(ref))
    ref = model.fc(torch.flatten(F.adaptive_avg_pool2d(ref, 1), 1))
    assert torch.allclose(model(x), ref, atol=1e-6)
    # the compiled CAM differentiates through the user's derivative rule
    kw = {"upsample": "none", "normalize": "none", "method": "hirescam"}
    comp = prog.explainer("Explain", model, strategy="compiled", **kw)(x)
    auto = prog.explainer("Explain", model, strategy="autograd", **kw)(x)
    assert torch.allclose(comp.maps, auto.maps, atol=1e-7, rtol=1e-5)
    # a user-defined op is an IR op under its own name, like a built-in one (no `custom` special case)
    assert "= mish(%" in prog.compilation.ir_text and "custom" not in prog.compilation.ir_text


def test_custom_op_is_costed_with_its_rule(mish):
    src = (PLUGINS / "mish.evo").read_text() + textwrap.dedent("""
        hardware Small {
            frequency = 100 MHz
            pes = 16
            offchip DRAM { bandwidth = 1 GB/s; energy = 100 pJ/B }
            global GLB { size = 64 KiB; bandwidth = 8 GB/s; energy = 5 pJ/B }
            pe Spad { size = 256 B; bandwidth = 2 B/cycle; energy = 1 pJ/B }
        }
        """)
    prog = evo.compile(src)
    rep = prog.cost("MishNet", hardware="Small")
    mish_ops = [o for o in rep.cost.ops if o.name == "head"]
    assert mish_ops and mish_ops[0].cost.macs == 32 * 16 * 16 * 6  # the user's 6 ops per element


def test_shape_rule_errors_point_at_the_argument():
    def shape(shapes, attrs):
        if attrs["factor"] > shapes[0][2]:
            raise OpError(f"factor {attrs['factor']} is larger than the height", "factor", "E0203")
        return shapes[0][:2] + (shapes[0][2] // attrs["factor"], shapes[0][3] // attrs["factor"])

    register_op("shrink", params=[("factor", "int", 2, 1)], shape=shape,
                code=lambda a, xs: f"F.avg_pool2d({xs[0]}, {a['factor']})")
    try:
        ok = evo.compile("network N(x: Tensor[N, 3, 8, 8]) {\n    return shrink(x, 4)\n}\n")
        assert ok.build("N")(torch.ones(1, 3, 8, 8)).shape == (1, 3, 2, 2)
        with pytest.raises(evo.EvoError) as e:
            evo.compile("network N(x: Tensor[N, 3, 8, 8]) {\n    return shrink(x, factor=16)\n}\n")
        assert (e.value.line, e.value.column, e.value.code) == (2, 29, "E0203")
        with pytest.raises(evo.EvoError) as e:
            evo.compile("network N(x: Tensor[N, 3, 8, 8]) {\n    return shrink(x, 0)\n}\n")
        assert "at least 1" in str(e.value)
        # no compiled gradient without a derivative rule: auto falls back to autograd
        prog = evo.compile("network N(x: Tensor[N, 3, 8, 8]) {\n    c = conv2d(x, 4, 3, padding=1)\n"
                           "    s = shrink(c, 2)\n    return linear(flatten(s), 3)\n}\n"
                           "cam C {\n    network = N\n    layer = c\n}\n")
        exp = prog.explainer("C", prog.build("N"))
        assert exp.strategy == "autograd" and "no derivative" in exp.strategy_note
    finally:
        unregister_op("shrink")


def test_register_rejects_bad_names():
    with pytest.raises(ValueError):
        register_op("conv2d", shape=lambda s, a: s[0], code=lambda a, xs: xs[0])
    with pytest.raises(ValueError):
        register_op("seq", shape=lambda s, a: s[0], code=lambda a, xs: xs[0])
    with pytest.raises(ValueError):
        register_op("not a name", shape=lambda s, a: s[0], code=lambda a, xs: xs[0])
    assert "conv2d" in ops.REGISTRY and ops.REGISTRY["conv2d"].builtin


@pytest.mark.parametrize("name", ["min", "max"])
def test_register_rejects_a_built_in_functions_name(name):
    """An op named min or max could never be called (a call `max(...)` is the built-in function, which
    takes numbers: E0104 at every use); it is refused at registration, as a block of that name is
    refused at its definition (tests/bad/390_names_block_named_builtin_max.evo)."""
    with pytest.raises(ValueError, match=f"'{name}' is a built-in function of the language"):
        register_op(name, shape=lambda s, a: s[0], code=lambda a, xs: xs[0])
    assert name not in ops.REGISTRY


def test_entry_point_discovery(tmp_path):
    # a real (tiny) installed distribution on sys.path declaring an evo.ops entry point
    pkg = tmp_path / "evo_demo_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        from evo.extend import register_op

        def register():
            register_op("double", shape=lambda s, a: s[0], code=lambda a, xs: f"({xs[0]} * 2)",
                        derivative=lambda a, x, y: "2.0", replace=True)
        """))
    dist = tmp_path / "evo_demo_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: evo-demo-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[evo.ops]\ndouble = evo_demo_plugin:register\n")
    code = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(tmp_path)!r})
        import evo
        p = evo.compile("network N(x: Tensor[N, 2]) {{\\n    return double(x)\\n}}\\n")
        print(p.build("N")(torch.ones(1, 2)).tolist())
        """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[[2.0, 2.0]]"


def test_evo_plugins_environment_variable():
    env = {"EVO_PLUGINS": "evo_mish", "PYTHONPATH": str(PLUGINS)}
    import os

    r = subprocess.run([sys.executable, "-m", "evo.cli", "check", str(PLUGINS / "mish.evo")],
                       capture_output=True, text=True, env={**os.environ, **env})
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "evo.cli", "check", str(PLUGINS / "mish.evo")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "unknown layer or block 'mish'" in r.stderr


def test_load_plugins_is_idempotent():
    evo.compile("network N(x: Tensor[N, 2]) {\n    return x\n}\n")  # the first compilation loads them
    assert load_plugins() == []
