"""The peers' other CAM methods (evo/cam_methods.py) against independent references
written from their papers (tests/refcam.py: full forward / backward passes with
hooks, loops, numpy), for every strategy where a gradient is involved, on the
residual, depthwise and concat nets of test_cam; seeded methods reproducible."""

from __future__ import annotations

import copy

import pytest
import torch

import evo
from evo.cam_methods import BY_NAME, GRADIENT_FREE, METHODS
from evo.check.settings import METHODS as CHECKED_METHODS
from evo.diagnostics import EvoError
from tests.refcam import reference_method, reference_normalize
from tests.test_cam import ARCHS, _close, arch

NEW_GRADIENT = ["eigengradcam", "gradcam_elementwise", "shapleycam", "finercam", "smoothgradcampp"]
NEW_FREE = ["ablationcam", "kpcacam", "fem", "iscam", "sscam", "reciprocam", "randomcam"]
FEW = {"iscam": 3, "sscam": 2, "smoothgradcampp": 2}  # samples: keep the suite small


_DOUBLE: dict = {}


def _double(name):
    if name not in _DOUBLE:
        _, model, _, x = arch(name)
        _DOUBLE[name] = (copy.deepcopy(model).double(), x.double())
    return _DOUBLE[name]


def _raw(prog, model, x, layer, method, strategy="auto", **kw):
    exp = prog.explainer("C", model, layer=layer, method=method, strategy=strategy, upsample="none",
                         normalize="none", **kw)
    return exp(x)


def test_one_list_of_methods():
    assert CHECKED_METHODS == METHODS
    assert len(METHODS) == len(set(METHODS)) >= 20
    for m in NEW_GRADIENT + NEW_FREE + ["cam"]:
        assert m in METHODS
    assert set(GRADIENT_FREE) == {m for m in METHODS if BY_NAME[m].kind != "gradient"}


@pytest.mark.parametrize("name", list(ARCHS))
@pytest.mark.parametrize("strategy", ["autograd", "forward", "compiled"])
def test_new_gradient_methods_match_reference(name, strategy):
    prog, model, layers, x = arch(name)
    top = model(x).argmax(1)
    for layer in layers[:2]:
        module = model.get_submodule(layer)
        for method in NEW_GRADIENT:
            if strategy == "forward" and BY_NAME[method].forward_tangents == "element" and layer != layers[0]:
                continue  # one JVP per element: one layer per arch is enough
            kw = {"samples": FEW[method]} if method in FEW else {}
            m, xx, mod = model, x, module
            if method == "smoothgradcampp":
                # its alpha = mean(G^2) / (2 mean(G^2) + sum(mean(G^3) A)) has denominators near 0
                # on noisy inputs, which amplify float32 rounding differences between strategies:
                # compare in float64 (the explainer runs in the model's dtype)
                m, xx = _double(name)
                mod = m.get_submodule(layer)
            r = _raw(prog, m, xx, layer, method, strategy, **kw)
            ref = reference_method(m, xx, mod, method, top, samples=kw.get("samples"))
            assert torch.equal(r.classes, top)
            assert r.strategy == strategy
            _close(r.maps.to(torch.float64), ref)


@pytest.mark.parametrize("name", list(ARCHS))
def test_gradient_free_methods_match_reference(name):
    prog, model, layers, x = arch(name)
    top = model(x).argmax(1)
    layer = layers[0]
    module = model.get_submodule(layer)
    for method in NEW_FREE:
        kw = {"samples": FEW[method]} if method in FEW else {}
        r = _raw(prog, model, x, layer, method, **kw)
        ref = reference_method(model, x, module, method, top, samples=kw.get("samples"), seed=0)
        assert r.strategy == "none"
        _close(r.maps.to(torch.float64), ref)


def test_cam_reads_the_head_weights():
    prog, model, layers, x = arch("residual")
    top = model(x).argmax(1)
    r = _raw(prog, model, x, "layer2", "cam")
    ref = reference_method(model, x, model.get_submodule("layer2"), "cam", top,
                           fc_weight=model.get_submodule("fc").weight)
    _close(r.maps.to(torch.float64), ref)
    assert r.strategy == "none"


def test_cam_needs_an_affine_head():
    prog, model, layers, x = arch("depthwise")
    with pytest.raises(EvoError, match="affine head"):
        prog.explainer("C", model, method="cam")
    src = ARCHS["depthwise"][0].replace("layer = features", "layer = features\n    method = \"cam\"")
    with pytest.raises(EvoError) as e:
        evo.compile(src)
    assert "E0502" in str(e.value) and "affine head" in str(e.value)


@pytest.mark.parametrize("method", ["sscam", "smoothgradcampp", "randomcam"])
def test_seeded_methods_are_reproducible(method):
    prog, model, layers, x = arch("concat")
    kw = {"samples": FEW.get(method, 1)} if method in FEW else {}
    a = _raw(prog, model, x, "fire1", method, seed=5, **kw).maps
    b = _raw(prog, model, x, "fire1", method, seed=5, **kw).maps
    c = _raw(prog, model, x, "fire1", method, seed=6, **kw).maps
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    ref = reference_method(model, x, model.get_submodule("fire1"), method, model(x).argmax(1), seed=6,
                           samples=kw.get("samples"))
    _close(c.to(torch.float64), ref)


@pytest.mark.parametrize("strategy", ["autograd", "compiled"])
def test_eigen_smooth_is_the_principal_component(strategy):
    prog, model, layers, x = arch("depthwise")
    top = model(x).argmax(1)
    r = _raw(prog, model, x, "features", "gradcam", strategy, eigen_smooth=True)
    ref = reference_method(model, x, model.get_submodule("features"), "gradcam", top, eigen_smooth=True)
    _close(r.maps.to(torch.float64), ref)


def test_aug_smooth_averages_flips_and_brightness():
    prog, model, layers, x = arch("depthwise")
    top = model(x).argmax(1)
    module = model.get_submodule("features")
    acc = 0
    for flip in (False, True):
        for f in (1.0, 0.9, 1.1):
            xa = (torch.flip(x, dims=(-1,)) if flip else x) * f
            m = reference_method(model, xa, module, "gradcam", top)
            acc = acc + reference_normalize(torch.flip(m, dims=(-1,)) if flip else m)
    r = _raw(prog, model, x, "features", "gradcam", "compiled", aug_smooth=True)
    _close(r.maps.to(torch.float64), acc / 6)
    assert torch.equal(r.classes, top)


def test_cam_settings_are_checked():
    base = ARCHS["concat"][0]
    for setting, code in (("seed = -1", "E0203"), ("eigen_smooth = 3", "E0504"), ("samples = 0", "E0203")):
        with pytest.raises(EvoError) as e:
            evo.compile(base.replace("layer = fire2", f"layer = fire2\n    {setting}"))
        assert code in str(e.value)
    prog = evo.compile(base.replace("layer = fire2", "layer = fire2\n    method = sscam\n    seed = 3\n"
                                    "    samples = 2\n    aug_smooth = false"))
    spec = prog.cams["C"]
    assert (spec.method, spec.seed, spec.samples, spec.aug_smooth) == ("sscam", 3, 2, False)


def test_costly_explainers_warn_at_compile_time(capsys):
    from evo.cam_work import LIMIT, estimate
    from evo.cli import main

    src = ARCHS["depthwise"][0].replace("layer = features", "layer = features\n    method = gradcampp\n"
                                        "    strategy = forward")
    prog = evo.compile(src)
    (w,) = prog.compilation.warnings
    assert w.severity == "warning" and w.code == "W0520"
    # the estimate: 24 channels x 8 x 8 positions = 1,536 JVPs of the head
    assert "1,536 JVPs" in w.message and "strategy = compiled" in w.hint
    g = prog.graph("Mobile")
    assert estimate(g, prog.cams["C"], "forward").ratio > LIMIT >= estimate(g, prog.cams["C"], "compiled").ratio
    assert not evo.compile(ARCHS["depthwise"][0]).compilation.warnings  # auto: compiled, ~1x
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "m.evo"
        f.write_text(src)
        assert main(["check", str(f)]) == 0
    err = capsys.readouterr().err
    assert "warning[W0520]" in err and "hint: use strategy = compiled" in err


def test_method_cam_is_written_unquoted():
    """`cam` is a keyword, yet `method = cam` reads as the method (the grammar's
    word_value), means the same as "cam", and evoc fmt keeps it plain."""
    from evo.frontend.fmt import format_source

    base = ARCHS["residual"][0]
    plain = base.replace("layer = layer2", "layer = layer2\n    method = cam")
    quoted = base.replace("layer = layer2", "layer = layer2\n    method = \"cam\"")
    assert plain != base
    p1, p2 = evo.compile(plain), evo.compile(quoted)
    assert p1.cams["C"].method == p2.cams["C"].method == "cam"
    _, model, _, x = arch("residual")
    m1 = p1.explainer("C", model, upsample="none", normalize="none")(x).maps
    m2 = p2.explainer("C", model, upsample="none", normalize="none")(x).maps
    assert torch.equal(m1, m2)
    out = format_source(plain)
    assert "    method = cam\n" in out and "`cam`" not in out
    assert format_source(out) == out
    # the word is a value only: a keyword is still refused as a name or in an expression
    for bad in (plain.replace("method = cam", "method = cam + 1"),
                base.replace("layer = layer2", "layer = cam.x")):
        with pytest.raises(EvoError):
            evo.compile(bad)


@pytest.mark.parametrize("method", ["scorecam", "iscam", "sscam", "ablationcam", "reciprocam", "smoothgradcampp"])
def test_progress_is_called_once_per_pass(method):
    """exp(x, progress=fn) calls fn(done, total) once per pass (one batched forward of
    the network or the head, one noisy sample), the count computed here by hand from
    the layer's shape; the maps are the same with and without the callback."""
    prog, model, _, x = arch("residual")
    x = torch.cat([x, x.flip(-1), x * 0.5, x.flip(-2)])  # 8 images: several batches of 32 masked inputs
    store = {}
    hook = model.get_submodule("layer2").register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    with torch.no_grad():
        model(x)
    hook.remove()
    b, c, h, w = store["a"].shape
    samples = {"iscam": 2, "sscam": 2, "smoothgradcampp": 3}.get(method)
    kw = {"samples": samples} if samples else {}
    exp = prog.explainer("C", model, layer="layer2", method=method, upsample="none", normalize="none", **kw)
    calls = []
    with_cb = exp(x, progress=lambda done, total: calls.append((done, total)))
    without = exp(x)
    assert torch.equal(with_cb.maps, without.maps)
    chunks = lambda n: -(-n // 32)  # noqa: E731  (the runtime's batch of 32 masked inputs)
    expected = {"scorecam": chunks(b * c), "iscam": chunks(b * c) * 2, "sscam": 2 * b * -(-c // 32),
                "ablationcam": chunks(b * c), "reciprocam": chunks(b * h * w), "smoothgradcampp": 3}[method]
    assert len(calls) == expected > 1
    assert [d for d, _ in calls] == list(range(1, expected + 1))
    assert all(t == expected for _, t in calls)
    # a one-pass method never calls back
    calls.clear()
    prog.explainer("C", model, layer="layer2", method="gradcam")(x, progress=lambda d, t: calls.append(d))
    assert calls == []


def test_evoc_run_draws_a_pass_bar_for_many_pass_methods(tmp_path):
    """evoc run hands the explainer a PassProgress (a tqdm bar over the passes)."""
    from evo.cli.progress import PassProgress
    from tests.test_cli import _Tty

    tty = _Tty()
    bar = PassProgress(file=tty)
    prog, model, _, x = arch("residual")
    exp = prog.explainer("C", model, layer="layer2", method="ablationcam")
    exp(x, progress=bar)
    exp(x, progress=bar)  # a second batch restarts the bar
    n = bar.calls
    assert n % 2 == 0 and n >= 2
    assert bar.bar.n == bar.bar.total == n // 2
    bar.close()
    assert "pass" in tty.getvalue()
    quiet = PassProgress(file=_Tty(), enabled=False)
    exp(x, progress=quiet)
    assert quiet.bar.disable and quiet.calls == n // 2


def test_all_class_maps_are_built_in_bounded_chunks():
    """class = all keeps the maps at layer resolution until they are read; maps_range /
    map_chunks build them a few classes at a time (equal to the maps built at once, and
    to an independent upsample + min-max of the raw maps written here), and the largest
    tensor allocated while streaming is capped by the chunk, not by the class count."""
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile

    prog, model, _, x = arch("residual")
    exp = prog.explainer("C", model, layer="layer2", method="gradcam", classes="all", strategy="compiled")
    r = exp(x)
    b, k = r.classes.shape
    hh, ww = x.shape[-2:]
    assert k >= 6 and r._maps is None  # nothing at input resolution yet
    raw = r.raw[0].to(torch.float64)
    up = F.interpolate(raw.reshape(b * k, 1, *raw.shape[-2:]), size=(hh, ww), mode="bilinear",
                       align_corners=False).reshape(b, k, hh, ww)
    lo, hi = up.amin(dim=(-2, -1), keepdim=True), up.amax(dim=(-2, -1), keepdim=True)
    ref = torch.where(hi > lo, (up - lo) / (hi - lo).clamp_min(1e-300), torch.zeros_like(up))
    chunks = list(r.map_chunks(2))
    assert [(s, e) for s, e, _ in chunks] == [(i, min(k, i + 2)) for i in range(0, k, 2)]
    streamed = torch.cat([m for _, _, m in chunks], dim=1)
    _close(streamed.to(torch.float64), ref)
    full = r.maps
    assert full.shape == (b, k, hh, ww) and torch.equal(streamed, full)
    assert torch.equal(r.maps_range(3, 5), full[:, 3:5])

    def largest(fn):
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        return max(max(e.cpu_memory_usage, 0) for e in prof.events())

    one_map = b * hh * ww * 4  # bytes of one class's maps for the batch
    r1, r2 = exp(x), exp(x)  # explained: only the maps are built under the profiler
    streaming = largest(lambda: [m.sum() for _, _, m in r1.map_chunks(2)])
    at_once = largest(lambda: r2.maps)
    assert streaming <= 2 * one_map < k * one_map <= at_once


def test_evoc_run_streams_every_class_map(tmp_path, capsys):
    """evoc run --maps writes <stem>_<cam>_maps.npy [K, H, W] per image: every explained
    class's map, equal to the explainer's maps."""
    import numpy as np
    from PIL import Image

    from evo.cli import main
    from evo.runtime.images import load_images

    src = ARCHS["residual"][0].replace("layer = layer2", "layer = layer2\n    class = all")
    prog_file = tmp_path / "res.evo"
    prog_file.write_text(src)
    rng = np.random.default_rng(0)
    imgs = []
    for i in range(3):
        p = tmp_path / f"im{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(p)
        imgs.append(p)
    out = tmp_path / "out"
    rc = main(["run", str(prog_file), "--images", *map(str, imgs), "--out", str(out), "--maps", "--batch", "2",
               "--quiet"])
    capsys.readouterr()
    assert rc == 0
    prog = evo.compile(src)
    model = prog.build(prog.cams["C"].network)
    exp = prog.explainer("C", model)
    x, _ = load_images([str(p) for p in imgs], (32, 32), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    ref = exp(x)
    summary = __import__("json").loads((out / "summary.json").read_text())
    for i, e in enumerate(summary["images"]):
        arr = np.load(e["maps"])
        assert arr.dtype == np.float32 and arr.shape == tuple(ref.maps.shape[1:])
        assert e["map_classes"] == ref.classes[i].tolist()
        assert np.abs(arr - ref.maps[i].numpy()).max() <= 1e-4  # batches of 2 vs 3: conv rounding


def _fullgrad_reference(model, x, classes):
    """pytorch-grad-cam's FullGrad written from its definition with forward hooks and
    autograd: every nn.Conv2d with a bias and every nn.BatchNorm2d (implicit bias
    beta - mean * gamma / sqrt(var + eps)); per image the gradient of its class's logit
    w.r.t. the input and those layers' outputs; each channel map of |grad * input| and
    |grad * bias| scaled by (t - min) / (1e-7 + max(t - min)), resized bilinearly to the
    input size, all summed (loops over images and layers, float64)."""
    import torch.nn.functional as F

    seen = []

    def hook(mod, inp, out):
        seen.append((mod, out))

    mods = [m for m in model.modules()
            if (isinstance(m, torch.nn.Conv2d) and m.bias is not None) or isinstance(m, torch.nn.BatchNorm2d)]
    hooks = [m.register_forward_hook(hook) for m in mods]
    try:
        xi = x.clone().requires_grad_(True)
        logits = model(xi)
    finally:
        for h in hooks:
            h.remove()
    size = tuple(x.shape[-2:])

    def post(t):  # [C, h, w] -> [H, W]
        out = torch.zeros(size, dtype=torch.float64)
        for ch in t:
            ch = ch - ch.min()
            ch = ch / (1e-7 + ch.max())
            out += F.interpolate(ch[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
        return out

    maps = []
    for b in range(x.shape[0]):
        gs = torch.autograd.grad(logits[b, int(classes[b])], [xi] + [o for _, o in seen], retain_graph=True,
                                 allow_unused=True)
        m = post((gs[0][b] * x[b]).abs().double())
        for (mod, out), g in zip(seen, gs[1:]):
            if isinstance(mod, torch.nn.BatchNorm2d):
                bias = mod.bias - mod.running_mean * mod.weight / torch.sqrt(mod.running_var + mod.eps)
            else:
                bias = mod.bias
            g = torch.zeros_like(out) if g is None else g
            m += post((g[b] * bias.detach()[:, None, None]).abs().double())
        maps.append(m)
    return torch.stack(maps)


@pytest.mark.parametrize("name", list(ARCHS))
@pytest.mark.parametrize("strategy", ["autograd", "compiled"])
def test_fullgrad_matches_reference(name, strategy):
    prog, model, layers, x = arch(name)
    top = model(x).argmax(1)
    r = _raw(prog, model, x, layers[0], "fullgrad", strategy)
    assert r.strategy == strategy and r.maps.shape == (x.shape[0], *x.shape[-2:])
    _close(r.maps.to(torch.float64), _fullgrad_reference(model, x, top))
    # another class, and two at once (class-batched)
    other = (top + 1) % model(x).shape[1]
    r2 = prog.explainer("C", model, method="fullgrad", strategy=strategy, upsample="none", normalize="none",
                        classes="topk(2)")(x)
    second = r2.classes[:, 1]
    _close(r2.maps[:, 1].to(torch.float64), _fullgrad_reference(model, x, second))
    r3 = prog.explainer("C", model, method="fullgrad", strategy=strategy, upsample="none",
                        normalize="none")(x, classes=other)
    _close(r3.maps.to(torch.float64), _fullgrad_reference(model, x, other))


def test_fullgrad_refuses_the_forward_strategy():
    prog, model, _, x = arch("residual")
    with pytest.raises(EvoError, match="fullgrad.*autograd, compiled or auto"):
        prog.explainer("C", model, method="fullgrad", strategy="forward")
    src = ARCHS["residual"][0].replace("layer = layer2", "layer = layer2\n    method = fullgrad\n    strategy = forward")
    with pytest.raises(EvoError) as e:
        evo.compile(src)
    assert "E0504" in str(e.value) and "fullgrad" in str(e.value) and "autograd, compiled or auto" in str(e.value)
    ok = evo.compile(src.replace("strategy = forward", "strategy = auto"))
    assert ok.explainer("C", model).strategy == "compiled"
