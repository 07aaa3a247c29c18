"""Names that could break the generated file.

Every Python keyword, builtin, module dunder, name that Python mangles inside a class
body, name of the generated code's own locals, helpers, classes and explainer
attributes, and `nn.Module` attribute is used in every naming position of a program
(layer, value, block, network, network input, block parameter, cam), plain and quoted
(`` `block` ``, `` `def` ``, `` `__init__` ``, `` `block1-0` ``: evo keywords, which only a
quoted name can spell, and texts that are no identifier at all).  Each program's
generated file is imported in a fresh interpreter, every network is run and checked
against a hand-written chain of its own submodules, and every explainer (each
strategy) against Grad-CAM computed by hand with autograd (Selvaraju et al.: weights
= spatial mean of d score / d activation, map = relu of the weighted channel sum,
bilinear to the input size, min-max normalised).
"""

from __future__ import annotations

import builtins
import json
import keyword
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from torch import nn

import evo
from evo.codegen.names import EXPLAINER_LOCALS, Namer
from evo.codegen.python import runtime_names

# Words the evo grammar itself reserves (a plain identifier cannot be one of them).
EVO_KEYWORDS = set("network block hardware cam target evolve import if else for in repeat return seq gene "
                   "minimize maximize require true false and or not".split())

DUNDERS = ["__builtins__", "__name__", "__file__", "__doc__", "__class__", "__dict__", "__module__",
           "__qualname__", "__init__", "__spec__", "__loader__", "__package__", "__annotations__", "__all__",
           "__path__", "__cached__", "__slots__", "__weakref__", "__getattr__", "__call__", "__import__",
           "__build_class__", "__debug__"]
MANGLED = ["__x", "__Net", "__Blk", "_", "__", "___", "_x__", "__h"]
GENERATED = sorted(EXPLAINER_LOCALS | runtime_names()
                   | {"NETWORKS", "EXPLAINERS", "torch", "nn", "F", "x", "acts", "side0", "_h", "_j0", "_j1", "_w",
                      "_s", "_div", "_mh", "_mw", "trunk", "head0", "head1", "compiled0", "compiled1", "derivatives",
                      "export_module", "network", "method", "layers", "upsample_mode", "normalize_mode", "labels",
                      "strategy", "classes", "forward", "ExplainCam", "explain", "seed", "samples", "eigen_smooth",
                      "aug_smooth", "coef", "dt", "ExplainC0", "Blk", "Net", "idx", "functools",
                      "math", "Tensor", "Optional"})
PY_WORDS = sorted((set(keyword.kwlist) | set(keyword.softkwlist) | set(dir(builtins))) - set(DUNDERS))
MODULE_WORDS = sorted(n for n in set(dir(nn.Module)) | set(dir(nn.Sequential)) if not n.startswith("__"))

# The test programs' own fixed names (x, stem, ...) are not candidates: a program cannot bind them twice.
FIXED = {"x", "stem", "last", "pool", "fc", "y", "c", "Net", "C0", "Ccompiled", "Cautograd", "Cforward", "Both"}
ALL = sorted({n for n in [*PY_WORDS, *DUNDERS, *MANGLED, *GENERATED, *MODULE_WORDS]
              if n not in EVO_KEYWORDS | FIXED})


def _chunks(names: list[str], k: int) -> list[list[str]]:
    return [names[i:i + k] for i in range(0, len(names), k)]


def _plain(n: str) -> str:
    return n


def _quoted(n: str) -> str:
    return f"`{n}`"


def _layers_program(names: list[str], w=_plain) -> str:
    """Every name as a layer and as a value in one network; cams at the first layer
    (every name in the heads) and at the last (every name in the trunk).  `w` writes a
    name in source (plain, or quoted)."""
    body = ["    stem = conv2d(x, 3, 3, padding=1)"]
    prev = "stem"
    for k, n in enumerate(names):
        if k % 2 == 0:
            body.append(f"    {w(n)} = conv2d(tanh({prev}), 3, 1)")   # a layer
        else:
            body.append(f"    {w(n)} = tanh({prev}) + stem")          # a value
        prev = w(n)
    body += [f"    last = conv2d({prev}, 3, 1)", "    pool = adaptive_avgpool2d(last, 1)",
             "    fc = linear(flatten(pool), 3)", "    return fc"]
    cams = "".join(f"cam C{s} {{ network = Net; layer = stem; method = gradcam; strategy = {s} }}\n"
                   for s in ("compiled", "autograd", "forward"))
    cams += "cam Both { network = Net; layer = [stem, last]; method = gradcam; strategy = compiled }\n"
    return "network Net(x: Tensor[N, 3, 5, 5]) {\n" + "\n".join(body) + "\n}\n" + cams


def _blocks_program(names: list[str], w=_plain) -> str:
    """Every name as a block, as a block's input and as a block parameter (`min` and
    `max` are the language's own functions in call position, not blocks)."""
    out = []
    for n in names:
        out.append(f"block {w(n)}({w(n)}, c: int = 3) {{\n    y = conv2d({w(n)}, c, 1)\n    return relu(y)\n}}\n"
                   f"block {w('P_' + n)}(x, {w(n)}: int = 3) {{\n    y = conv2d(x, {w(n)}, 1)\n"
                   "    return relu(y)\n}\n")
    body = ["    stem = conv2d(x, 3, 3, padding=1)"]
    prev = "stem"
    for k, n in enumerate(names):
        body.append(f"    b{k} = {w(n)}({prev})")
        body.append(f"    p{k} = {w('P_' + n)}(b{k})")
        prev = f"p{k}"
    body += [f"    pool = adaptive_avgpool2d({prev}, 1)", "    fc = linear(flatten(pool), 3)", "    return fc"]
    out.append("network Net(x: Tensor[N, 3, 5, 5]) {\n" + "\n".join(body) + "\n}\n")
    out.append("cam C0 { network = Net; layer = stem; method = gradcam; strategy = compiled }\n")
    return "".join(out)


def _networks_program(names: list[str], w=_plain) -> str:
    """Every name as a network whose input has the same name, each with a cam."""
    return "".join(f"network {w(n)}({w(n)}: Tensor[N, 3, 5, 5]) {{\n    stem = conv2d({w(n)}, 3, 3, padding=1)\n"
                   f"    pool = adaptive_avgpool2d(relu(stem), 1)\n    return linear(flatten(pool), 3)\n}}\n"
                   f"cam C{k} {{ network = {w(n)}; layer = stem; method = gradcam; strategy = compiled }}\n"
                   for k, n in enumerate(names))


def _cams_program(names: list[str], w=_plain) -> str:
    """Every name as a cam (of every strategy) of one network."""
    net = ("network Net(x: Tensor[N, 3, 5, 5]) {\n    stem = conv2d(x, 3, 3, padding=1)\n"
           "    pool = adaptive_avgpool2d(relu(stem), 1)\n    return linear(flatten(pool), 3)\n}\n")
    strategies = ("compiled", "autograd", "forward")
    return net + "".join(f"cam {w(n)} {{ network = Net; layer = stem; method = gradcam; "
                         f"strategy = {strategies[k % 3]} }}\n" for k, n in enumerate(names))


CHECKER = textwrap.dedent('''
    import importlib.util, json, os, sys
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(1)

    def sub(model, path):
        for part in path.split("."):
            model = model._modules[part]
        return model

    def gradcam(model, layer, x):
        acts = {}
        handle = sub(model, layer).register_forward_hook(lambda m, i, o: acts.setdefault("a", o))
        logits = model(x)
        handle.remove()
        a = acts["a"]
        cls = logits.argmax(1)
        g, = torch.autograd.grad(logits.gather(1, cls[:, None]).sum(), a)
        cam = torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1, keepdim=True))
        cam = F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0]
        lo, hi = cam.amin(dim=(1, 2), keepdim=True), cam.amax(dim=(1, 2), keepdim=True)
        return torch.where(hi > lo, (cam - lo) / (hi - lo).clamp_min(1e-30), torch.zeros_like(cam))

    def check(files):
        report = []
        for path, chains in files:
            spec = importlib.util.spec_from_file_location("generated", path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            torch.manual_seed(0)
            x = torch.randn(2, 3, 5, 5)
            for name, cls in mod.NETWORKS.items():
                model = cls().eval()
                for p in model.parameters():
                    p.data.uniform_(-0.6, 0.6)
                with torch.no_grad():
                    got = model(x)
                if name in chains:  # a hand-written chain of the network's own submodules
                    kind, names = chains[name]
                    with torch.no_grad():
                        stem = sub(model, "stem")(x)
                        h = stem
                        for k, n in enumerate(names):
                            if kind == "layers":
                                h = sub(model, n)(torch.tanh(h)) if k % 2 == 0 else torch.tanh(h) + stem
                            else:
                                h = torch.relu(sub(model, f"b{k}.y")(h))
                                h = torch.relu(sub(model, f"p{k}.y")(h))
                        if kind == "layers":
                            h = sub(model, "last")(h)
                        want = model.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))
                    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
                for cam, exp_cls in getattr(mod, "EXPLAINERS", {}).items():
                    if exp_cls.network != name:
                        continue
                    exp = exp_cls(model)
                    ref = gradcam(model, exp.layers[0], x)
                    # every strategy where the names sit in the heads; elsewhere the declared one
                    every = bool(chains) and chains.get("Net", [""])[0] == "layers"
                    for strategy in sorted({exp.strategy, "autograd", "forward"} if every else {exp.strategy}):
                        maps = exp(x, strategy=strategy).maps
                        if len(exp.layers) == 1:
                            torch.testing.assert_close(maps, ref, rtol=1e-3, atol=1e-4)
                        else:
                            assert maps.shape == ref.shape and bool(torch.isfinite(maps).all())
                    report.append(cam)
        return report

    # what the first check would import anyway, imported while the test compiles its programs
    torch.testing.assert_close(torch.zeros(1), torch.zeros(1))
    torch.func.jvp(lambda t: t * 2, (torch.ones(1),), (torch.ones(1),))

    # A worker: each request (a line naming a JSON file of [path, chains] pairs and the file
    # for the answer, written whole then renamed into place) is checked and answered; the
    # generated files are imported here, in an interpreter that never imports evo.
    for line in sys.stdin:
        request, answer = json.loads(line)
        try:
            result = {"cams": check(json.load(open(request, encoding="utf-8")))}
        except BaseException:
            import traceback
            result = {"error": traceback.format_exc()}
        with open(answer + ".part", "w", encoding="utf-8") as f:
            json.dump(result, f)
        os.replace(answer + ".part", answer)
''')


class FreshChecker:
    """One fresh interpreter running CHECKER, shared by this module's tests (it pays the torch
    import once); `check(files)` sends it one request and waits for its answer."""

    def __init__(self, workdir):
        self.workdir, self.n = workdir, 0
        self.log = open(workdir / "checker.log", "w+", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen([sys.executable, "-c", CHECKER], stdin=subprocess.PIPE, stdout=self.log,
                                     stderr=subprocess.STDOUT, text=True)

    def submit(self, files: list[tuple[str, dict]]) -> Path:
        """Queue one request (the interpreter checks it while this process goes on); its answer file."""
        self.n += 1
        request, answer = self.workdir / f"request{self.n}.json", self.workdir / f"answer{self.n}.json"
        request.write_text(json.dumps(files), encoding="utf-8")
        self.proc.stdin.write(json.dumps([str(request), str(answer)]) + "\n")
        self.proc.stdin.flush()
        return answer

    def result(self, answer: Path, timeout: float = 600) -> list[str]:
        deadline = time.monotonic() + timeout
        while not answer.exists():
            if self.proc.poll() is not None:
                self.log.seek(0)
                pytest.fail(f"the fresh interpreter ended ({self.proc.returncode}): {self.log.read()[-3000:]}")
            assert time.monotonic() < deadline, f"the fresh interpreter gave no answer within {timeout} s"
            time.sleep(0.05)
        result = json.loads(answer.read_text(encoding="utf-8"))
        assert "error" not in result, result.get("error", "")[-3000:]
        return result["cams"]

    def check(self, files: list[tuple[str, dict]]) -> list[str]:
        return self.result(self.submit(files))

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    checker = FreshChecker(tmp_path_factory.mktemp("fresh"))
    yield checker
    checker.close()


def test_every_reserved_word_in_every_naming_position(tmp_path, fresh):
    answers, expected_cams = [], []  # each file checked in the fresh interpreter while the next compiles
    for i, names in enumerate(_chunks(ALL, 160)):
        src = _layers_program(names)
        prog = evo.compile(src, f"layers{i}.evo")
        assert [k.split(".")[0] for k in prog.build("Net").state_dict()][:4] == ["stem", "stem", names[0],
                                                                                 names[0]]
        p = tmp_path / f"layers{i}.py"
        p.write_text(prog.emit_python(), encoding="utf-8")
        answers.append(fresh.submit([(str(p), {"Net": ["layers", names]})]))
        expected_cams += ["Ccompiled", "Cautograd", "Cforward", "Both"]
    for i, names in enumerate(_chunks(ALL, 90)):
        for kind, make in (("blocks", _blocks_program), ("networks", _networks_program), ("cams", _cams_program)):
            if kind == "blocks":
                names = [n for n in names if n not in ("min", "max")]
            prog = evo.compile(make(names), f"{kind}{i}.evo")
            p = tmp_path / f"{kind}{i}.py"
            p.write_text(prog.emit_python(), encoding="utf-8")
            answers.append(fresh.submit([(str(p), {"Net": ["blocks", names]} if kind == "blocks" else {})]))
            expected_cams += {"blocks": ["C0"], "networks": [f"C{k}" for k in range(len(names))],
                              "cams": names}[kind]
    assert sorted(cam for a in answers for cam in fresh.result(a)) == sorted(expected_cams)


# Quoted names: the evo keywords (only a quoted name can spell them), Python keywords,
# builtins, dunders and generated locals written quoted, and texts that are no identifier.
QUOTED = sorted(EVO_KEYWORDS | {"evo", "extends", "def", "class", "return", "lambda", "None", "True", "self",
                                "__builtins__", "__init__", "__name__", "__Net", "__x", "_h", "h", "torch", "nn",
                                "F", "NETWORKS", "EXPLAINERS", "forward", "min", "max", "print", "exec",
                                "block1-0", "a b", "1x", "0", "-", "x+y", "'", '"', "\\", "{x}", "ü", "日本", "#"})


def test_quoted_keywords_in_every_naming_position(tmp_path, fresh):
    """Every quoted name in every naming position, written with backticks everywhere it
    appears (`` `block` `` = conv2d(...), block `` `def` ``(...), network `` `class` ``,
    cam `` `return` ``); the generated files imported and run in a fresh interpreter."""
    from evo.frontend.names import problem

    assert all(problem(n) is None for n in QUOTED)
    files, expected_cams = [], []
    names = [n for n in QUOTED if n not in FIXED]
    prog = evo.compile(_layers_program(names, _quoted), "qlayers.evo")
    assert [k.split(".")[0] for k in prog.build("Net").state_dict()][2:4] == [names[0], names[0]]
    p = tmp_path / "qlayers.py"
    p.write_text(prog.emit_python(), encoding="utf-8")
    files.append((str(p), {"Net": ["layers", names]}))
    expected_cams += ["Ccompiled", "Cautograd", "Cforward", "Both"]
    for kind, make in (("blocks", _blocks_program), ("networks", _networks_program), ("cams", _cams_program)):
        use = [n for n in names if n not in ("min", "max")] if kind == "blocks" else names
        prog = evo.compile(make(use, _quoted), f"q{kind}.evo")
        assert sorted({"networks": prog.networks, "cams": prog.cams}.get(kind, use)) == sorted(use)
        p = tmp_path / f"q{kind}.py"
        p.write_text(prog.emit_python(), encoding="utf-8")
        files.append((str(p), {"Net": ["blocks", use]} if kind == "blocks" else {}))
        expected_cams += {"blocks": ["C0"], "networks": [f"C{k}" for k in range(len(use))], "cams": use}[kind]
    assert sorted(fresh.check(files)) == sorted(expected_cams)


def test_a_block_named_like_a_builtin_function_is_refused_at_its_definition():
    """`min` / `max` always mean the built-in functions: a block of that name (plain or
    quoted) could never be called, and used to give a confusing E0104 at its calls."""
    for name in ("min", "`max`"):
        src = textwrap.dedent(f"""
            block {name}(x, c: int = 3) {{
                y = conv2d(x, c, 1)
                return relu(y)
            }}
            network Net(x: Tensor[N, 3, 6, 6]) {{
                a = {name}(x)
                return linear(flatten(adaptive_avgpool2d(a, 1)), 3)
            }}
        """)
        with pytest.raises(evo.EvoError) as info:
            evo.compile(src)
        d = info.value.diagnostics[0]
        bare = name.strip("`")
        assert (d.code, d.span.line, d.span.column) == ("E0101", 2, 7)
        assert f"block '{bare}' would be hidden by the built-in function {bare}()" in d.message
        assert len(info.value.diagnostics) == 1
    # a layer or value of that name is an ordinary name, and min(...) stays the built-in
    prog = evo.compile(textwrap.dedent("""
        network Net(x: Tensor[N, 3, 6, 6], c: int = 5) {
            min = conv2d(x, max(c, 4), 1)
            max = relu(min)
            return linear(flatten(adaptive_avgpool2d(max, 1)), min(c, 3))
        }
    """))
    assert [k for k in prog.build("Net").state_dict()][:1] == ["min.weight"]


def test_names_stay_unchanged_unless_they_collide():
    """The allocator renames only what collides: ordinary names are kept byte for byte."""
    n = Namer()
    assert [n.fresh(s) for s in ("conv1", "layer4", "Net", "conv1")] == ["conv1", "layer4", "Net", "conv1_2"]
    m = Namer()
    got = [m.fresh(s) for s in ("__builtins__", "__Net", "_", "__", "class", "self", "__name__")]
    assert not any(g.startswith("__") for g in got), got
    assert len(set(got)) == len(got)
    assert all(g.isidentifier() and not keyword.iskeyword(g) for g in got)


@pytest.mark.parametrize("name", ["h", "k", "cls", "spec", "gseed", "select_classes", "basis", "j", "m"])
def test_regression_explainer_locals_in_api(name):
    """A layer named like an explainer local broke every explainer (`h = self._h` shadowed)."""
    import torch

    src = textwrap.dedent(f"""
        network Net(x: Tensor[N, 3, 6, 6]) {{
            a = conv2d(x, 4, 3, padding=1)
            {name} = conv2d(relu(a), 4, 3, padding=1)
            pool = adaptive_avgpool2d(relu({name}), 1)
            return linear(flatten(pool), 3)
        }}
        cam C {{ network = Net; layer = a; method = gradcam; strategy = compiled }}
    """)
    prog = evo.compile(src)
    model = prog.build("Net")
    x = torch.randn(2, 3, 6, 6)
    maps = {s: prog.explainer("C", model, strategy=s)(x).maps for s in ("compiled", "autograd", "forward")}
    torch.testing.assert_close(maps["compiled"], maps["autograd"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(maps["forward"], maps["autograd"], rtol=1e-4, atol=1e-5)


def test_regression_buffers_of_several_compiled_layers_are_distinct():
    """Each compiled layer of one explainer named its buffers from its own namespace, so
    the second layer's `_w` silently replaced the first's."""
    src = textwrap.dedent("""
        network Net(x: Tensor[N, 3, 8, 8]) {
            a = conv2d(x, 4, 3, padding=1)
            b = conv2d(relu(a), 4, 3, padding=1)
            c = conv2d(relu(b), 4, 3, padding=1)
            pool = adaptive_avgpool2d(relu(c), 1)
            return linear(flatten(pool), 3)
        }
        cam C { network = Net; layer = [a, b]; method = gradcam; strategy = compiled }
    """)
    code = evo.compile(src).emit_python()
    import re

    buffers = re.findall(r"register_buffer\('(\w+)'", code)
    assert buffers and len(buffers) == len(set(buffers)), buffers
