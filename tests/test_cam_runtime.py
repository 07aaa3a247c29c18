"""Tests for the pasted CAM library (evo/codegen/cam_runtime.py) and the image runtime.

Every CAM function is checked against an independent computation written here
(explicit loops, closed-form gradients, an eigen-decomposition instead of an SVD).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

ROOT = Path(__file__).resolve().parents[1]
CAM_PATH = ROOT / "evo" / "codegen" / "cam_runtime.py"
if importlib.util.find_spec("evo") is None:  # plain `pytest` with the package not installed
    sys.path.insert(0, str(ROOT))


def _load_cam():
    spec = importlib.util.spec_from_file_location("evo_cam_runtime_under_test", CAM_PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cam = _load_cam()


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- helpers


class LinearHead(nn.Module):
    """GAP + linear: dScore_k / dA_cij = W[k, c] / (h*w)."""

    def __init__(self, c, n):
        super().__init__()
        self.fc = nn.Linear(c, n)

    def forward(self, a):
        return self.fc(a.mean(dim=(2, 3)))


class ConvHead(nn.Module):
    """conv + relu + maxpool + GAP + linear (a nonlinear head)."""

    def __init__(self, c, n):
        super().__init__()
        self.conv = nn.Conv2d(c, 6, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(6, n)

    def forward(self, a):
        y = self.pool(torch.relu(self.conv(a)))
        return self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))


class TinyNet(nn.Module):
    """trunk (conv, relu) -> CAM layer -> head (ConvHead)."""

    def __init__(self, n=5):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = ConvHead(4, n)

    def forward(self, x):
        return self.head(self.trunk(x))


def _seeded(module, seed=0):
    torch.manual_seed(seed)
    m = module()
    return m.eval()


def _minmax_loop(m):
    # reference min-max for one 2-D map
    lo, hi = m.min(), m.max()
    if hi == lo:
        return torch.zeros_like(m)
    return (m - lo) / (hi - lo)


# --------------------------------------------------------------------------- the pasted file


def test_imports_only_torch():
    tree = ast.parse(CAM_PATH.read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0
            modules.update(f"{node.module}.{a.name}" for a in node.names)
    assert modules <= {"torch", "torch.nn.functional", "torch.nn"}, modules
    assert "torch" in modules
    # imports only at module top level (nothing hidden inside functions)
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    nested = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert len(top) == len(nested)
    # no module docstring: the file is pasted into the middle of generated code
    assert ast.get_docstring(tree) is None


def test_public_names_present():
    for name in (
        "CamResult",
        "cam_from_grads",
        "cam_from_channel_weights",
        "eigencam",
        "scorecam",
        "select_classes",
        "upsample",
        "normalize",
        "combine_layers",
        "grads_autograd",
        "weights_forward",
        "grads_forward",
        "run_cam",
        "gather_scores",
        "expand_channel_weights",
    ):
        assert callable(getattr(cam, name)), name
    r = cam.CamResult(torch.zeros(1, 2, 2), torch.zeros(1, dtype=torch.long), torch.zeros(1), [], "autograd")
    assert not hasattr(r, "__dict__")
    assert "CamResult" in repr(r)


def test_pasted_source_runs_standalone():
    # what the code generator does: paste the text into a file with nothing else
    ns = {"__name__": "generated"}
    exec(compile(CAM_PATH.read_text(), "<generated>", "exec"), ns)  # noqa: S102
    logits = torch.tensor([[0.0, 2.0, 1.0]])
    assert ns["select_classes"](logits, ("top1",)).tolist() == [1]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed")
def test_ruff_clean():
    files = [CAM_PATH, ROOT / "evo/runtime/images.py", ROOT / "evo/runtime/colormap.py", Path(__file__)]
    res = subprocess.run(
        ["ruff", "check", "--no-cache", *map(str, files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr


# --------------------------------------------------------------------------- class selection


def test_select_classes_specs():
    logits = torch.tensor([[0.1, 3.0, 2.0, 3.0], [5.0, -1.0, 0.0, 4.0]])
    assert cam.select_classes(logits, ("top1",)).tolist() == [1, 0]  # first max on ties
    assert cam.select_classes(logits, "top1").dtype == torch.long
    assert cam.select_classes(logits, ("topk", 3)).tolist() == [[1, 3, 2], [0, 3, 2]]  # stable on ties
    assert cam.select_classes(logits, ("index", 2)).tolist() == [2, 2]
    assert cam.select_classes(logits, ("list", (3, 0))).tolist() == [[3, 0], [3, 0]]
    assert cam.select_classes(logits, ("list", [1])).shape == (2, 1)
    assert cam.select_classes(logits, ("all",)).tolist() == [[0, 1, 2, 3]] * 2
    for bad in [
        ("index", 4),
        ("index", -1),
        ("topk", 0),
        ("topk", 5),
        ("list", (0, 9)),
        ("list", ()),
        ("best",),
    ]:
        with pytest.raises(ValueError):
            cam.select_classes(logits, bad)
    cls = cam.select_classes(logits, ("topk", 2))
    assert cam.gather_scores(logits, cls).tolist() == [[3.0, 3.0], [5.0, 4.0]]
    assert cam.gather_scores(logits, cls[:, 0]).tolist() == [3.0, 5.0]


# --------------------------------------------------------------------------- maps


def test_normalize_minmax_and_none():
    g = _gen(1)
    maps = torch.rand(2, 3, 4, 5, generator=g) * 7 - 2
    maps[1, 2] = 3.5  # constant map -> all zeros
    out = cam.normalize(maps, "minmax")
    for b in range(2):
        for k in range(3):
            torch.testing.assert_close(out[b, k], _minmax_loop(maps[b, k]))
    assert torch.equal(out[1, 2], torch.zeros(4, 5))
    assert cam.normalize(maps, "none") is maps
    assert cam.normalize(maps[:, 0], "minmax").shape == (2, 4, 5)
    with pytest.raises(ValueError):
        cam.normalize(maps, "softmax")


def test_upsample_modes():
    g = _gen(2)
    maps = torch.rand(2, 3, 4, 5, generator=g)
    x = torch.zeros(2, 3, 16, 20)
    up = cam.upsample(maps, x.shape, "bilinear")
    assert up.shape == (2, 3, 16, 20)
    for b in range(2):
        for k in range(3):
            ref = F.interpolate(maps[b, k][None, None], size=(16, 20), mode="bilinear", align_corners=False)
            torch.testing.assert_close(up[b, k], ref[0, 0])
    near = cam.upsample(maps[:, 0], (8, 10), "nearest")
    assert near.shape == (2, 8, 10)
    torch.testing.assert_close(near, maps[:, 0].repeat_interleave(2, dim=1).repeat_interleave(2, dim=2))
    assert cam.upsample(maps, (16, 20), "none") is maps
    with pytest.raises(ValueError):
        cam.upsample(maps, (16, 20), "bicubic")


def test_combine_layers():
    g = _gen(3)
    a = torch.rand(2, 1, 4, 4, generator=g)
    b = torch.rand(2, 1, 2, 2, generator=g) * 10
    out = cam.combine_layers([a, b], (8, 8))
    ref = torch.zeros(2, 1, 8, 8)
    for m in (a, b):
        up = F.interpolate(m, size=(8, 8), mode="bilinear", align_corners=False)
        for i in range(2):
            ref[i, 0] += _minmax_loop(up[i, 0]) / 2
    torch.testing.assert_close(out, ref)
    assert out.min() >= 0 and out.max() <= 1
    # "none" resizes with bilinear onto the given grid
    torch.testing.assert_close(
        cam.combine_layers([a, b], (4, 4), "none"), cam.combine_layers([a, b], (4, 4), "bilinear")
    )


# --------------------------------------------------------------------------- CAM formulas


def _ref_cam(method, acts, grads):
    """Straightforward per (b, k) loops over channels."""
    b_, c_, h, w = acts.shape
    k_ = grads.shape[1]
    out = torch.zeros(b_, k_, h, w, dtype=acts.dtype)
    for b in range(b_):
        for k in range(k_):
            acc = torch.zeros(h, w, dtype=acts.dtype)
            for c in range(c_):
                a, g = acts[b, c], grads[b, k, c]
                if method == "gradcam":
                    acc += g.mean() * a
                elif method == "hirescam":
                    acc += g * a
                elif method == "xgradcam":
                    acc += ((g * a).sum() / (a.sum() + 1e-7)) * a
                elif method == "layercam":
                    acc += torch.clamp(g, min=0) * a
                elif method == "gradcampp":
                    wsum = 0.0
                    s = a.sum()
                    for i in range(h):
                        for j in range(w):
                            gij = g[i, j]
                            den = 2 * gij**2 + s * gij**3
                            alpha = 0.0 if den == 0 else gij**2 / den
                            wsum = wsum + alpha * max(float(gij), 0.0)
                    acc += wsum * a
            out[b, k] = torch.clamp(acc, min=0)
    return out


@pytest.mark.parametrize("method", ["gradcam", "hirescam", "xgradcam", "gradcampp", "layercam"])
def test_cam_from_grads_matches_formulas(method):
    g = _gen(4)
    acts = torch.randn(2, 3, 2, 2, generator=g, dtype=torch.float64)
    grads = torch.randn(2, 2, 3, 2, 2, generator=g, dtype=torch.float64)
    grads[0, 0, 1, 0, 0] = 0.0  # G == 0 -> alpha 0 for gradcampp
    # a channel whose gradcampp denominator is exactly 0 with G != 0: G = 1, sum(A) = -2
    acts[1, 2] = -0.5
    grads[1, 1, 2] = 1.0
    out = cam.cam_from_grads(method, acts, grads)
    assert out.shape == (2, 2, 2, 2)
    assert torch.isfinite(out).all() and (out >= 0).all()
    torch.testing.assert_close(out, _ref_cam(method, acts, grads))


def test_cam_from_grads_rejects_unknown():
    with pytest.raises(ValueError):
        cam.cam_from_grads("eigencam", torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 1, 2, 2))
    with pytest.raises(ValueError):
        cam.cam_from_grads("gradcam", torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))


def test_channel_weights_and_expansion():
    g = _gen(5)
    acts = torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64)
    weights = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    out = cam.cam_from_channel_weights(acts, weights)
    ref = torch.zeros(2, 3, 3, 3, dtype=torch.float64)
    for b in range(2):
        for k in range(3):
            ref[b, k] = torch.clamp(sum(weights[b, k, c] * acts[b, c] for c in range(4)), min=0)
    torch.testing.assert_close(out, ref)
    grads = cam.expand_channel_weights(weights, acts.shape)
    assert grads.shape == (2, 3, 4, 3, 3)
    torch.testing.assert_close(cam.cam_from_grads("gradcam", acts, grads), ref)
    torch.testing.assert_close(cam.cam_from_grads("hirescam", acts, grads), ref)  # constant G: same map


# --------------------------------------------------------------------------- strategies


def test_grads_autograd_linear_head_closed_form():
    torch.manual_seed(0)
    head = LinearHead(4, 6).eval()
    acts = torch.randn(3, 4, 5, 5)
    classes = torch.tensor([[1, 4], [0, 0], [5, 2]])
    grads, logits, cls = cam.grads_autograd(head, acts, classes)
    assert grads.shape == (3, 2, 4, 5, 5)
    assert torch.equal(cls, classes)
    torch.testing.assert_close(logits, head(acts))
    W = head.fc.weight.detach()
    for b in range(3):
        for k in range(2):
            ref = (W[classes[b, k]] / 25.0)[:, None, None].expand(4, 5, 5)
            torch.testing.assert_close(grads[b, k], ref)
    # a spec instead of indices; a 1-D class tensor gives K = 1
    _, _, c2 = cam.grads_autograd(head, acts, ("topk", 2))
    assert torch.equal(c2, cam.select_classes(logits, ("topk", 2)))
    g1, _, c1 = cam.grads_autograd(head, acts, classes[:, 0])
    assert g1.shape == (3, 1, 4, 5, 5) and c1.shape == (3, 1)
    torch.testing.assert_close(g1[:, 0], grads[:, 0])


def test_grads_autograd_touches_nothing():
    net = _seeded(TinyNet)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(2, 3, 12, 12, generator=_gen(6))
    acts = net.trunk(x)  # carries a graph into the trunk
    assert acts.requires_grad
    grads, logits, cls = cam.grads_autograd(net.head, acts, ("all",))
    assert grads.shape == (2, 5, 4, 6, 6)
    for p in net.parameters():
        assert p.grad is None
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not grads.requires_grad and not logits.requires_grad
    # works when the caller is under no_grad; refuses inference_mode with a clear error
    with torch.no_grad():
        g_ng, _, _ = cam.grads_autograd(net.head, acts, cls)
    torch.testing.assert_close(g_ng, grads)
    with torch.inference_mode():
        a_inf = net.trunk(x)
        with pytest.raises(RuntimeError, match="inference_mode"):
            cam.grads_autograd(net.head, a_inf, cls)
    # an inference tensor produced earlier is accepted outside inference mode
    g_inf, _, _ = cam.grads_autograd(net.head, a_inf, cls)
    torch.testing.assert_close(g_inf, grads)


def test_grads_autograd_batched_equals_loop():
    head = _seeded(lambda: ConvHead(4, 5))
    acts = torch.randn(2, 4, 6, 6, generator=_gen(7))
    g_loop, _, _ = cam.grads_autograd(head, acts, ("topk", 3))
    g_bat, _, _ = cam.grads_autograd(head, acts, ("topk", 3), batched=True)
    torch.testing.assert_close(g_bat, g_loop, atol=1e-7, rtol=1e-6)


def test_autograd_per_sample_gradients_are_independent():
    # the per-column sum over the batch gives per-sample gradients (batch-independent head)
    head = _seeded(lambda: ConvHead(4, 5))
    acts = torch.randn(3, 4, 6, 6, generator=_gen(8))
    grads, _, cls = cam.grads_autograd(head, acts, ("topk", 2))
    for b in range(3):
        a = acts[b : b + 1].clone().requires_grad_(True)
        for k in range(2):
            (g,) = torch.autograd.grad(head(a)[0, cls[b, k]], a)
            torch.testing.assert_close(grads[b, k], g[0])


@pytest.mark.parametrize("chunk", [None, 1, 3])
def test_weights_forward_equals_autograd_gradcam_weights(chunk):
    head = _seeded(lambda: ConvHead(4, 5))
    acts = torch.randn(3, 4, 6, 6, generator=_gen(9))
    w, logits, cls = cam.weights_forward(head, acts, ("topk", 3), chunk_size=chunk)
    g, logits_ag, cls_ag = cam.grads_autograd(head, acts, ("topk", 3))
    assert w.shape == (3, 3, 4)
    assert torch.equal(cls, cls_ag)
    torch.testing.assert_close(logits, logits_ag)
    torch.testing.assert_close(w, g.mean(dim=(-2, -1)), atol=1e-6, rtol=1e-5)
    # the closed form on a linear head
    lin = _seeded(lambda: LinearHead(4, 6))
    w_lin, _, c_lin = cam.weights_forward(lin, acts, ("all",), chunk_size=chunk)
    torch.testing.assert_close(w_lin, lin.fc.weight.detach().unsqueeze(0).expand(3, 6, 4) / 36.0)
    assert c_lin.shape == (3, 6)


@pytest.mark.parametrize("chunk", [None, 7])
def test_grads_forward_equals_autograd(chunk):
    head = _seeded(lambda: ConvHead(4, 5))
    acts = torch.randn(2, 4, 6, 6, generator=_gen(10))
    g_fwd, _, _ = cam.grads_forward(head, acts, ("list", (4, 0, 2)), chunk_size=chunk)
    g_ag, _, _ = cam.grads_autograd(head, acts, ("list", (4, 0, 2)))
    assert g_fwd.shape == (2, 3, 4, 6, 6)
    torch.testing.assert_close(g_fwd, g_ag, atol=1e-5, rtol=1e-5)
    for method in ("gradcam", "hirescam", "xgradcam", "gradcampp", "layercam", "gradcam_elementwise", "eigengradcam"):
        torch.testing.assert_close(
            cam.cam_from_grads(method, acts, g_fwd),
            cam.cam_from_grads(method, acts, g_ag),
            atol=1e-5,
            rtol=1e-4,
        )


def test_forward_strategies_run_in_inference_mode():
    head = _seeded(lambda: ConvHead(4, 5))
    acts = torch.randn(2, 4, 4, 4, generator=_gen(11))
    w_ref, _, _ = cam.weights_forward(head, acts, ("top1",))
    with torch.inference_mode():
        w, _, cls = cam.weights_forward(head, acts, ("top1",))
        g, _, _ = cam.grads_forward(head, acts, ("top1",))
    torch.testing.assert_close(w, w_ref)
    assert cls.shape == (2, 1) and g.shape == (2, 1, 4, 4, 4)
    for p in head.parameters():
        assert p.grad is None


# --------------------------------------------------------------------------- eigencam, scorecam


def _ref_eigencam(acts):
    acts = acts.to(torch.float64)
    b_, c_, h, w = acts.shape
    out = torch.zeros(b_, 1, h, w, dtype=torch.float64)
    for b in range(b_):
        x = acts[b].reshape(c_, h * w).T  # [hw, C]
        xc = x - x.mean(dim=0, keepdim=True)
        _, evecs = torch.linalg.eigh(xc.T @ xc)  # ascending eigenvalues
        v = evecs[:, -1]  # first right-singular vector (up to sign)
        p = xc @ v
        if float((p * acts[b].mean(dim=0).reshape(-1)).sum()) < 0:
            p = -p
        out[b, 0] = torch.clamp(p, min=0).reshape(h, w)
    return out


def test_eigencam_matches_eigendecomposition():
    g = _gen(12)
    acts = torch.relu(torch.randn(3, 6, 5, 4, generator=g, dtype=torch.float64))
    out = cam.eigencam(acts)
    assert out.shape == (3, 1, 5, 4)
    torch.testing.assert_close(out, _ref_eigencam(acts), atol=1e-9, rtol=1e-7)
    # sign: a bright blob shared by all channels is where the map peaks
    blob = torch.zeros(1, 8, 6, 6)
    blob[:, :, 1:3, 3:5] = torch.arange(1, 9, dtype=torch.float32).view(1, 8, 1, 1)
    blob = blob + 0.01 * torch.rand(1, 8, 6, 6, generator=g)
    e = cam.eigencam(blob)[0, 0]
    assert e[1:3, 3:5].min() > e.max() * 0.5
    assert e[0, 0] == 0
    # the map does not flip when the activations are scaled
    torch.testing.assert_close(cam.eigencam(blob * 3.0), e[None, None] * 3.0, atol=1e-4, rtol=1e-4)


def test_eigencam_float32_and_nan():
    acts = torch.relu(torch.randn(2, 5, 4, 4, generator=_gen(13)))
    torch.testing.assert_close(cam.eigencam(acts).double(), _ref_eigencam(acts), atol=1e-4, rtol=1e-3)
    acts_nan = acts.clone()
    acts_nan[0, 0, 0, 0] = float("nan")
    acts_zero = acts.clone()
    acts_zero[0, 0, 0, 0] = 0.0
    torch.testing.assert_close(cam.eigencam(acts_nan), cam.eigencam(acts_zero))


@pytest.mark.parametrize("batch_size", [1, 4, 32])
def test_scorecam_matches_loop(batch_size):
    net = _seeded(TinyNet)
    x = torch.randn(2, 3, 8, 8, generator=_gen(14))
    with torch.no_grad():
        acts = net.trunk(x)  # [2, 4, 4, 4]
    acts[1, 3] = 0.25  # constant channel -> mask 0
    classes = torch.tensor([[1, 3], [0, 4]])
    out = cam.scorecam(net, x, acts, classes, batch_size=batch_size)
    ref = torch.zeros(2, 2, 4, 4)
    with torch.no_grad():
        for b in range(2):
            scores = torch.zeros(2, 4)
            for c in range(4):
                up = F.interpolate(
                    acts[b : b + 1, c : c + 1], size=(8, 8), mode="bilinear", align_corners=False
                )
                mask = _minmax_loop(up[0, 0])
                logits = net(x[b : b + 1] * mask)
                for k in range(2):
                    scores[k, c] = logits[0, classes[b, k]]
            for k in range(2):
                wts = torch.softmax(scores[k], dim=0)
                ref[b, k] = torch.clamp(sum(wts[c] * acts[b, c] for c in range(4)), min=0)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    # 1-D classes and a spec
    out1 = cam.scorecam(net, x, acts, classes[:, 0], batch_size=batch_size)
    torch.testing.assert_close(out1[:, 0], out[:, 0], atol=1e-6, rtol=1e-5)
    spec = cam.scorecam(net, x, acts, ("top1",), batch_size=batch_size)
    assert spec.shape == (2, 1, 4, 4)


# --------------------------------------------------------------------------- run_cam


def test_run_cam_single_layer_top1():
    net = _seeded(TinyNet)
    x = torch.randn(2, 3, 12, 12, generator=_gen(15))
    acts = net.trunk(x)
    grads, logits, cls = cam.grads_autograd(net.head, acts, ("top1",))
    scores = cam.gather_scores(logits, cls)
    res = cam.run_cam("gradcam", [acts], [grads], cls[:, 0], scores[:, 0], x.shape)
    assert isinstance(res, cam.CamResult)
    assert res.maps.shape == (2, 12, 12) and res.classes.shape == (2,) and res.scores.shape == (2,)
    assert res.strategy == "autograd"
    assert torch.equal(res.classes, logits.argmax(1))
    raw = cam.cam_from_grads("gradcam", acts, grads)[:, 0]
    assert len(res.raw) == 1
    torch.testing.assert_close(res.raw[0], raw)
    for b in range(2):
        up = F.interpolate(raw[b][None, None], size=(12, 12), mode="bilinear", align_corners=False)[0, 0]
        torch.testing.assert_close(res.maps[b], _minmax_loop(up))
    assert float(res.maps.min()) >= 0.0 and float(res.maps.max()) <= 1.0
    # the same through the forward strategy's weights, and a callable instead of a list
    w, _, _ = cam.weights_forward(net.head, acts, cls)
    res_fwd = cam.run_cam(
        "gradcam", acts, lambda i, a: w, cls[:, 0], scores[:, 0], (12, 12), strategy="forward"
    )
    torch.testing.assert_close(res_fwd.maps, res.maps, atol=1e-5, rtol=1e-4)
    assert res_fwd.strategy == "forward"
    with pytest.raises(ValueError):
        cam.run_cam("hirescam", [acts], [w], cls[:, 0], scores[:, 0], (12, 12))
    with pytest.raises(ValueError):
        cam.run_cam("gradcamx", [acts], [grads], cls[:, 0], scores[:, 0], (12, 12))


def test_run_cam_multi_class_and_options():
    net = _seeded(TinyNet)
    x = torch.randn(2, 3, 12, 12, generator=_gen(16))
    acts = net.trunk(x)
    grads, logits, cls = cam.grads_autograd(net.head, acts, ("topk", 3))
    scores = cam.gather_scores(logits, cls)
    res = cam.run_cam("layercam", [acts], [grads], cls, scores, (12, 12), "nearest", "none")
    assert res.maps.shape == (2, 3, 12, 12) and res.classes.shape == (2, 3) and res.scores.shape == (2, 3)
    raw = cam.cam_from_grads("layercam", acts, grads)
    torch.testing.assert_close(res.maps, raw.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))
    res_none = cam.run_cam("layercam", [acts], [grads], cls, scores, (12, 12), "none", "minmax")
    assert res_none.maps.shape == (2, 3, 6, 6)
    torch.testing.assert_close(res_none.maps, cam.normalize(raw, "minmax"))
    # single=True squeezes K = 1
    res1 = cam.run_cam("hirescam", [acts], [grads[:, :1]], cls[:, :1], scores[:, :1], (12, 12), single=True)
    assert res1.maps.shape == (2, 12, 12) and res1.classes.shape == (2,) and res1.scores.shape == (2,)


def test_run_cam_several_layers():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 4, 3, stride=2, padding=1).eval()
    head2 = LinearHead(4, 5).eval()
    a1 = torch.randn(2, 4, 8, 8, generator=_gen(17))

    def head1(a):
        return head2(conv(a))

    a2 = conv(a1).detach()
    g1, logits, cls = cam.grads_autograd(head1, a1, ("top1",))
    g2, _, _ = cam.grads_autograd(head2, a2, cls)
    scores = cam.gather_scores(logits, cls)
    res = cam.run_cam("gradcampp", [a1, a2], [g1, g2], cls[:, 0], scores[:, 0], (16, 16))
    r1 = cam.cam_from_grads("gradcampp", a1, g1)
    r2 = cam.cam_from_grads("gradcampp", a2, g2)
    ref = cam.normalize(cam.combine_layers([r1, r2], (16, 16)), "minmax")[:, 0]
    torch.testing.assert_close(res.maps, ref)
    assert [r.shape for r in res.raw] == [(2, 8, 8), (2, 4, 4)]
    # upsample none: the largest layer's grid
    res_none = cam.run_cam("gradcampp", [a2, a1], [g2, g1], cls[:, 0], scores[:, 0], (16, 16), "none")
    assert res_none.maps.shape == (2, 8, 8)


def test_run_cam_eigencam_and_scorecam():
    net = _seeded(TinyNet)
    x = torch.randn(2, 3, 8, 8, generator=_gen(18))
    with torch.no_grad():
        acts = net.trunk(x)
        logits = net(x)
    cls = cam.select_classes(logits, ("topk", 2))
    scores = cam.gather_scores(logits, cls)
    res = cam.run_cam("eigencam", [acts], None, cls, scores, x.shape, strategy="autograd")
    assert res.maps.shape == (2, 2, 8, 8) and res.strategy == "none"
    torch.testing.assert_close(res.maps[:, 0], res.maps[:, 1])
    ref = cam.normalize(cam.upsample(cam.eigencam(acts), x.shape, "bilinear"), "minmax")[:, 0]
    torch.testing.assert_close(res.maps[:, 0], ref)
    res_s = cam.run_cam("scorecam", [acts], None, cls, scores, x.shape, model_fn=net, x=x, batch_size=3)
    ref_s = cam.normalize(cam.upsample(cam.scorecam(net, x, acts, cls), x.shape, "bilinear"), "minmax")
    torch.testing.assert_close(res_s.maps, ref_s, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError):
        cam.run_cam("scorecam", [acts], None, cls, scores, x.shape)


def test_deterministic():
    net = _seeded(TinyNet)
    x = torch.randn(2, 3, 12, 12, generator=_gen(19))
    outs = []
    for _ in range(2):
        acts = net.trunk(x)
        g, _, cls = cam.grads_autograd(net.head, acts, ("topk", 2))
        w, _, _ = cam.weights_forward(net.head, acts, cls)
        outs.append((cam.run_cam("gradcampp", [acts], [g], cls, None, x.shape).maps, w, cam.eigencam(acts)))
    for a, b in zip(outs[0], outs[1]):
        assert torch.equal(a, b)


# --------------------------------------------------------------------------- colormap


def _lstar(rgb):
    c = rgb.astype(np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    y = lin @ np.array([0.2126, 0.7152, 0.0722])
    return np.where(y > 216 / 24389, 116 * np.cbrt(y) - 16, y * 24389 / 27)


def test_colormaps():
    """Overlay colours are matplotlib's own: cmap(x, bytes=True) is the reference."""
    import matplotlib

    from evo.runtime import colormap as cm

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.random(2000), np.arange(257) / 256.0, np.arange(256) / 255.0,
                        [-3.0, -1e-9, 0.0, 1.0, 1.0 + 1e-9, 7.0, np.inf, -np.inf]]).reshape(-1, 1)
    for name in ("viridis", "magma", "jet", "turbo", "gray", "viridis_r"):
        ref = matplotlib.colormaps[name](x, bytes=True)[..., :3]
        for m in (x, x.astype(np.float32), torch.from_numpy(x)):
            out = cm.apply_colormap(m, name)
            assert out.shape == (len(x), 1, 3) and out.dtype == np.uint8
            assert np.array_equal(out, ref), name
        table = cm.get_colormap(name)
        assert table.shape == (256, 3) and table.dtype == np.uint8 and not table.flags.writeable
        # entry i is the colour of i / 255 (a 256-colour map's own i-th colour)
        assert np.array_equal(table, matplotlib.colormaps[name](np.arange(256) / 255.0, bytes=True)[:, :3])
    # the default is viridis: perceptually uniform, lightness increasing from low to high
    assert cm.DEFAULT_COLORMAP == "viridis"
    lstar = _lstar(cm.get_colormap())
    assert np.diff(lstar).min() > -0.1 and lstar[-1] - lstar[0] > 70
    assert np.array_equal(cm.apply_colormap(torch.full((1, 1), 0.5))[0, 0],
                          matplotlib.colormaps["viridis"](0.5, bytes=True)[:3])
    # NaN counts as 0 (matplotlib would give its transparent "bad" colour); integers are values
    nan = cm.apply_colormap(np.array([[np.nan, 0.0]]))
    assert np.array_equal(nan[0, 0], nan[0, 1])
    assert np.array_equal(cm.apply_colormap(np.array([[0, 1]]), "jet"),
                          matplotlib.colormaps["jet"](np.array([[0.0, 1.0]]), bytes=True)[..., :3])
    with pytest.raises(ValueError, match="did you mean 'viridis'"):
        cm.apply_colormap(x, "virdis")
    with pytest.raises(ValueError, match="2-D"):
        cm.apply_colormap(np.zeros(3))
    with pytest.raises(TypeError):
        cm.get_colormap(3)
    assert "viridis" in cm.colormap_names() and "jet" in cm.colormap_names()


# --------------------------------------------------------------------------- images


def _write(path, arr):
    Image.fromarray(arr).save(path)


def test_list_and_load_images(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (6, 6), dtype=np.uint8)  # grey
    _write(tmp_path / "b.PNG", a)
    _write(tmp_path / "a.bmp", b)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub.png").mkdir()
    from evo.runtime import images

    paths = images.list_images(tmp_path)
    assert [Path(p).name for p in paths] == ["a.bmp", "b.PNG"]
    x, originals = images.load_images(paths, (8, 8), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert x.shape == (2, 3, 8, 8) and x.dtype == torch.float32
    assert originals[0].shape == (6, 6, 3) and originals[1].shape == (10, 14, 3)
    assert originals[0].dtype == np.uint8 and np.array_equal(originals[1], a)
    ref = np.array(Image.fromarray(a).resize((8, 8), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    ref = (ref - 0.5) / 0.25
    torch.testing.assert_close(x[1], torch.from_numpy(ref).permute(2, 0, 1), atol=1e-6, rtol=1e-6)
    x2, _ = images.load_images(paths[1:], 8, mean=None, std=None)
    assert float(x2.min()) >= 0 and float(x2.max()) <= 1


def test_overlay_save_png_summary_json(tmp_path):
    import matplotlib

    from evo.runtime import colormap as cm
    from evo.runtime import images

    orig = np.full((20, 30, 3), 100, dtype=np.uint8)
    m = np.zeros((4, 6), dtype=np.float32)
    m[1, 4] = 1.0
    ov = images.overlay(orig, m, alpha=0.5)
    assert ov.shape == (20, 30, 3) and ov.dtype == np.uint8
    assert np.array_equal(images.overlay(orig, m, alpha=0.0), orig)
    full = images.overlay(orig, np.ones((4, 6)), alpha=1.0, colormap="magma")
    assert np.array_equal(full, np.broadcast_to(cm.get_colormap("magma")[255], (20, 30, 3)))
    # alpha 0.5 over grey 100 with the default (viridis) at a zero map: round((100 + c) / 2)
    low = np.array(matplotlib.colormaps["viridis"](0.0, bytes=True)[:3], dtype=np.float64)
    assert np.array_equal(images.overlay(orig, np.zeros((4, 6)), alpha=0.5)[0, 0], np.rint((100 + low) / 2))
    assert images.overlay(orig, torch.from_numpy(m)).shape == (20, 30, 3)

    p = images.save_png(ov, tmp_path / "out" / "ov.png")
    assert np.array_equal(np.array(Image.open(p)), ov)
    data1 = Path(p).read_bytes()
    images.save_png(ov, tmp_path / "out" / "ov2.png")
    assert (tmp_path / "out" / "ov2.png").read_bytes() == data1
    pf = images.save_png(m, tmp_path / "m.png")
    assert np.array(Image.open(pf))[1, 4] == 255

    s = images.summary(m, 3, "cat", np.float32(2.5), original_size=(20, 30))
    assert s["class"] == 3 and s["class_name"] == "cat" and s["score"] == 2.5
    # cell (row 1, col 4) of a 4x6 map covers x in [20, 25), y in [5, 10) of 20x30 -> centre (22, 7)
    assert s["peak"] == {"x": 22, "y": 7}
    assert s["centroid"] == {"x": 22.0, "y": 7.0}
    assert s["stats"]["max"] == 1.0 and s["stats"]["min"] == 0.0
    assert s["stats"]["area_50"] == pytest.approx(1 / 24, abs=1e-6)
    s_map = images.summary(torch.from_numpy(m), 0, None, None)
    assert s_map["peak"] == {"x": 4, "y": 1} and s_map["score"] is None

    path = images.write_json({"b": [s], "a": np.int64(1), "t": torch.tensor([0.5])}, tmp_path / "s.json")
    text = Path(path).read_text()
    assert text == images.dumps_json({"a": 1, "t": [0.5], "b": [s]})
    assert text.endswith("\n") and json.loads(text)["a"] == 1
    assert list(json.loads(text)) == ["a", "b", "t"]
