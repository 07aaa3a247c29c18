"""Quick checks of the test fixtures: shapes data set, bundled weights, reference models and CAMs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import refcam
import refmodels

from evo.runtime import shapes

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- data set


def test_dataset_is_deterministic() -> None:
    x1, y1, b1 = shapes.make_dataset(12, seed=7)
    x2, y2, b2 = shapes.make_dataset(12, seed=7)
    x3, _, _ = shapes.make_dataset(12, seed=8)
    assert x1.shape == (12, 3, 64, 64) and x1.dtype == torch.float32
    assert y1.dtype == torch.long and b1.shape == (12, 4) and b1.dtype == torch.long
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and torch.equal(b1, b2)
    assert not torch.equal(x1, x3)
    assert int(y1.min()) >= 0 and int(y1.max()) < len(shapes.CLASSES)


def test_boxes_are_tight_around_the_object() -> None:
    rng = np.random.default_rng(11)
    seen = set()
    for _ in range(60):
        s = shapes.render_sample(rng)
        seen.add(s.label)
        x0, y0, x1, y1 = s.box
        assert s.image.shape == (64, 64, 3) and s.image.dtype == np.uint8
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
        ys, xs = np.nonzero(s.mask)
        # every object pixel is inside the box and the box touches the object on all four sides
        assert xs.min() == x0 and xs.max() == x1 - 1 and ys.min() == y0 and ys.max() == y1 - 1
        assert s.mask[y0:y1, x0:x1].sum() == s.mask.sum()
        assert 12 <= max(x1 - x0, y1 - y0) <= 32
    assert seen == set(range(len(shapes.CLASSES)))
    # make_sample is render_sample without the mask
    img, label, box = shapes.make_sample(np.random.default_rng(3), label=2)
    ref = shapes.render_sample(np.random.default_rng(3), label=2)
    assert np.array_equal(img, ref.image) and label == 2 and box == ref.box


def test_save_png_roundtrip(tmp_path: Path) -> None:
    img, _, _ = shapes.make_sample(np.random.default_rng(0))
    shapes.save_png(img, tmp_path / "a" / "x.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a" / "x.png").convert("RGB")), img)


def test_example_images_and_boxes() -> None:
    folder = ROOT / "examples" / "images"
    meta = json.loads((folder / "boxes.json").read_text())
    assert meta["classes"] == list(shapes.CLASSES)
    assert len(meta["images"]) == 8
    for entry in meta["images"]:
        assert entry["file"].endswith(f"_{shapes.CLASSES[entry['label']]}.png")
        img = np.asarray(Image.open(folder / entry["file"]).convert("RGB"))
        assert img.shape == (64, 64, 3)
        x0, y0, x1, y1 = entry["box"]
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
    assert sorted(e["label"] for e in meta["images"]) == [0, 0, 1, 1, 2, 2, 3, 3]


# --------------------------------------------------------------------------- bundled weights


@pytest.fixture(scope="module")
def quicknet() -> shapes.QuickNet:
    return shapes.load_quicknet()


def test_bundled_weights_load_strict_and_classify(quicknet: shapes.QuickNet) -> None:
    state = torch.load(shapes.default_weights_path(), map_location="cpu", weights_only=True)
    assert all(v.dtype in (torch.float32, torch.int64) for v in state.values())
    shapes.QuickNet().load_state_dict(state, strict=True)
    x, y, _ = shapes.make_dataset(300, seed=5)
    with torch.no_grad():
        acc = float((quicknet(x).argmax(1) == y).float().mean())
    assert acc >= 0.95, acc


def test_bundled_weights_gradcam_pointing_game(quicknet: shapes.QuickNet) -> None:
    x, y, b = shapes.make_dataset(200, seed=6)
    cam = refcam.reference_cam(quicknet, x, quicknet.features, "gradcam", y)
    assert cam.shape == (200, 16, 16)
    up = refcam.reference_upsample(cam, 64, "bilinear")
    idx = up.flatten(1).argmax(1)
    py, px = idx // 64, idx % 64
    tol = 1
    hit = (px >= b[:, 0] - tol) & (px < b[:, 2] + tol) & (py >= b[:, 1] - tol) & (py < b[:, 3] + tol)
    assert float(hit.float().mean()) >= 0.92


# --------------------------------------------------------------------------- reference models

BIG = {
    # name: (params, MACs at 224x224 batch 1, state_dict keys that must exist); the MAC counts were
    # checked at 224x224 for all four (vgg16 is checked at 112x112 here to keep the test fast)
    "resnet18": (
        11_689_512,
        1_814_073_344,
        ["layer2.0.downsample.0.weight", "layer4.1.bn2.running_var", "fc.bias"],
    ),
    "resnet50": (25_557_032, 4_089_184_256, ["layer1.0.downsample.1.running_mean", "layer4.2.conv3.weight"]),
    "vgg16": (
        138_357_544,
        15_470_264_320,
        ["features.28.weight", "classifier.3.weight", "classifier.6.bias"],
    ),
    "mobilenet_v2": (
        3_504_872,
        300_774_272,
        [
            "features.0.0.weight",
            "features.1.conv.1.weight",
            "features.2.conv.0.0.weight",
            "features.18.1.running_mean",
            "classifier.1.weight",
        ],
    ),
}


def _uninitialised(name: str, **kwargs: int) -> nn.Module:
    """A big reference model with all-zero weights, built without paying for its initialisation.

    (Forward passes on the meta device would import torch._dynamo, which costs seconds.)
    """
    with torch.device("meta"):
        model = getattr(refmodels, name)(**kwargs)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            t.zero_()
    return model.eval()


@pytest.mark.parametrize("name", sorted(BIG))
def test_big_reference_models(name: str) -> None:
    params, macs, keys = BIG[name]
    model = _uninitialised(name)
    assert sum(p.numel() for p in model.parameters()) == params
    sd = model.state_dict()
    for k in keys:
        assert k in sd, k
    if name == "vgg16":  # 15.5 GMACs is slow on a small CPU: count at 112x112, where the convs cost 1/4
        fc = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))
        assert fc == 123_633_664
        assert refmodels.count_macs(model, (1, 3, 112, 112)) == (macs - fc) // 4 + fc
    else:
        assert refmodels.count_macs(model, (1, 3, 224, 224)) == macs
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 1000)
        assert _uninitialised(name, num_classes=7)(torch.zeros(1, 3, 64, 64)).shape == (1, 7)


def test_resnet_keys_follow_torchvision() -> None:
    sd = _uninitialised("resnet18").state_dict()
    assert "layer1.0.downsample.0.weight" not in sd
    assert list(sd)[:3] == ["conv1.weight", "bn1.weight", "bn1.bias"]
    assert sum(k.endswith("num_batches_tracked") for k in sd) == 20


@pytest.mark.parametrize("cls", [refmodels.DepthwiseSeparableNet, refmodels.FireNet])
def test_small_reference_models(cls: type[nn.Module]) -> None:
    torch.manual_seed(0)
    model = cls(num_classes=5).eval()
    with torch.no_grad():
        for s in (32, 64):
            assert model(torch.randn(2, 3, s, s)).shape == (2, 5)
    fc_macs = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))
    conv64 = refmodels.count_macs(model, (1, 3, 64, 64)) - fc_macs
    assert conv64 == 4 * (refmodels.count_macs(model, (1, 3, 32, 32)) - fc_macs) > 0
    assert any(isinstance(m, nn.Conv2d) and m.groups > 1 for m in model.modules()) == (
        cls is refmodels.DepthwiseSeparableNet
    )


# --------------------------------------------------------------------------- reference CAMs


class GapLinear(nn.Module):
    """conv -> ReLU (the CAM layer ``body``) -> global average pool -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).mean(dim=(2, 3)))


def _gap_linear() -> tuple[GapLinear, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = GapLinear().eval()
    x = torch.randn(3, 3, 8, 8)
    cls = torch.tensor([0, 3, 1])
    with torch.no_grad():
        act = model.body(x).double()
    return model, x, cls, act


def test_gradcam_linear_head_closed_form() -> None:
    model, x, cls, act = _gap_linear()
    hw = act.shape[-1] * act.shape[-2]
    w = model.fc.weight.detach().double()[cls] / hw  # d logit_c / d A_k[i, j], constant over (i, j)
    expected = F.relu((w[:, :, None, None] * act).sum(1))
    for method in ("gradcam", "hirescam"):  # identical when the gradient is spatially constant
        got = refcam.reference_cam(model, x, model.body, method, cls)
        torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)
    got = refcam.reference_cam(model, x, model.body, "layercam", cls)
    torch.testing.assert_close(
        got.double(), F.relu((F.relu(w)[:, :, None, None] * act).sum(1)), rtol=1e-5, atol=1e-6
    )
    s = act.sum(dim=(2, 3))
    xw = (w[:, :, None, None] * act).sum(dim=(2, 3)) / (s + 1e-7)
    got = refcam.reference_cam(model, x, model.body, "xgradcam", cls)
    torch.testing.assert_close(
        got.double(), F.relu((xw[:, :, None, None] * act).sum(1)), rtol=1e-5, atol=1e-6
    )
    # Grad-CAM++ with a constant g: alpha = 1 / (2 + S g), weight = hw * relu(g) * alpha
    alpha = torch.where(w != 0, 1.0 / (2.0 + s * w), torch.zeros_like(w))
    pw = hw * F.relu(w) * alpha
    got = refcam.reference_cam(model, x, model.body, "gradcampp", cls)
    torch.testing.assert_close(
        got.double(), F.relu((pw[:, :, None, None] * act).sum(1)), rtol=1e-5, atol=1e-6
    )


def test_reference_cam_leaves_model_untouched() -> None:
    model, x, cls, _ = _gap_linear()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for method in refcam.METHODS:
        cam = refcam.reference_cam(model, x, model.body, method, cls)
        assert cam.shape == (3, 8, 8) and cam.dtype == torch.float32 and bool((cam >= 0).all())
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_gradcam_nonlinear_head_matches_autograd_grad() -> None:
    torch.manual_seed(1)
    model = refmodels.FireNet(num_classes=5).eval()
    x = torch.randn(2, 3, 32, 32)
    cls = torch.tensor([4, 2])
    a = model.features(x).detach().requires_grad_(True)
    score = torch.flatten(model.classifier(a), 1).gather(1, cls[:, None]).sum()
    (g,) = torch.autograd.grad(score, a)
    expected = F.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1)).detach()
    got = refcam.reference_cam(model, x, model.features, "gradcam", cls)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_eigencam_sign_and_projection() -> None:
    # rank-1 activation A_k(i, j) = u_k * p(i, j) + c_k with u_k > 0: the map is relu(|u| (p - mean p))
    torch.manual_seed(2)
    p = torch.rand(5, 7, dtype=torch.float64)
    u = torch.rand(4, dtype=torch.float64) + 0.1
    act = u[:, None, None] * p + torch.rand(4, 1, 1, dtype=torch.float64)
    cam = refcam._eigencam(act[None])[0]
    torch.testing.assert_close(cam, F.relu(u.norm() * (p - p.mean())))
    # flipping the sign of the activations' variation still gives "high where the activation is high"
    cam_neg = refcam._eigencam((-act)[None])[0]
    torch.testing.assert_close(cam_neg, F.relu(u.norm() * (-(p - p.mean()))))


def test_scorecam_brute_force() -> None:
    model, x, cls, act = _gap_linear()
    got = refcam.reference_cam(model, x, model.body, "scorecam", cls)
    weights = torch.empty(3, 6, dtype=torch.float64)
    with torch.no_grad():
        for b in range(3):
            for k in range(6):
                m = F.interpolate(
                    act[b : b + 1, k : k + 1].float(), size=(8, 8), mode="bilinear", align_corners=False
                )
                m = (m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else torch.zeros_like(m)
                weights[b, k] = model(x[b : b + 1] * m)[0, cls[b]].double()
    weights = torch.softmax(weights, dim=1)
    torch.testing.assert_close(
        got.double(), F.relu((weights[:, :, None, None] * act).sum(1)), rtol=1e-5, atol=1e-6
    )


def test_capture_rejects_a_module_called_twice() -> None:
    model = refmodels.resnet18(num_classes=3).eval()
    with pytest.raises(ValueError, match="called 2 times"):
        refcam.reference_cam(
            model, torch.randn(1, 3, 32, 32), model.layer1[0].relu, "gradcam", torch.tensor([0])
        )
    cam = refcam.reference_cam(
        model, torch.randn(2, 3, 64, 64), model.layer4, "gradcampp", torch.tensor([0, 2])
    )
    assert cam.shape == (2, 2, 2)


def test_normalize_and_upsample() -> None:
    maps = torch.tensor([[[0.0, 2.0], [4.0, 8.0]], [[3.0, 3.0], [3.0, 3.0]]])
    n = refcam.reference_normalize(maps)
    torch.testing.assert_close(n, torch.tensor([[[0.0, 0.25], [0.5, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]))
    up = refcam.reference_upsample(maps, 4, "bilinear")
    assert up.shape == (2, 4, 4)
    torch.testing.assert_close(up[0, 0, 0], torch.tensor(0.0))  # align_corners=False clamps at the border
    # output pixel 1 samples source coordinate (1 + 0.5) / 2 - 0.5 = 0.25 on both axes
    expected = 0.75 * 0.75 * 0.0 + 0.75 * 0.25 * 2.0 + 0.25 * 0.75 * 4.0 + 0.25 * 0.25 * 8.0
    torch.testing.assert_close(up[0, 1, 1], torch.tensor(expected))
    assert torch.equal(refcam.reference_upsample(maps, (2, 2), "none"), maps)
    near = refcam.reference_upsample(maps[None], (4, 4), "nearest")
    assert near.shape == (1, 2, 4, 4) and torch.equal(near[0, 0, :2, :2], torch.zeros(2, 2))
