"""evo.metrics against reference implementations written here (loops, numpy, dense
linear solves) on hand-checkable cases."""

from __future__ import annotations

import numpy as np
import torch

from evo.metrics import (average_drop_increase, cam_mult_confidence_change, deletion_insertion, evaluate,
                         impute_linear, pointing_game, road)


class Toy(torch.nn.Module):
    """Two logits: (sum of channel 0 over the image) and 0 -> p(class 0) = sigmoid(sum)."""

    def forward(self, x):
        s = x[:, 0].sum(dim=(1, 2))
        return torch.stack([s, torch.zeros_like(s)], dim=1)


def _p(img: np.ndarray, cls: int) -> float:
    s = img[0].sum()
    p0 = 1 / (1 + np.exp(-s))
    return p0 if cls == 0 else 1 - p0


def test_pointing_game_hits_the_box():
    maps = torch.zeros(3, 8, 8)
    maps[0, 2, 5] = 1.0          # (x=5, y=2) inside box 0
    maps[1, 7, 7] = 1.0          # corner: outside [0, 7) (x1 exclusive)
    maps[2, 1, 1] = maps[2, 6, 6] = 1.0   # tie: the first maximum (row-major) is (1, 1)
    boxes = [(4, 1, 7, 4), (0, 0, 7, 7), (5, 5, 8, 8)]
    assert pointing_game(maps, boxes).tolist() == [True, False, False]
    assert pointing_game(maps, boxes, tolerance=1).tolist() == [True, True, False]
    assert pointing_game(maps, [None, None, (0, 0, 2, 2)]).tolist() == [False, False, True]


def _ref_del_ins(x, m, cls, steps, dbase, ibase):
    c, h, w = x.shape
    order = sorted(range(h * w), key=lambda i: (-m.reshape(-1)[i], i))
    dels, ins = [], []
    for s in range(steps + 1):
        n = (s * h * w) // steps
        d, a = x.copy(), ibase.copy()
        for i in order[:n]:
            y, xx = divmod(i, w)
            d[:, y, xx] = dbase[:, y, xx]
            a[:, y, xx] = x[:, y, xx]
        dels.append(_p(d, cls))
        ins.append(_p(a, cls))
    t = np.linspace(0, 1, steps + 1)
    return np.array(dels), np.array(ins), np.trapezoid(dels, t), np.trapezoid(ins, t)


def test_deletion_insertion_equal_the_reference():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 4, 4, generator=g, dtype=torch.float64) * 0.5
    maps = torch.rand(2, 4, 4, generator=g, dtype=torch.float64)
    maps[1, 0, :2] = maps[1, 0, 2]   # ties: ordered by position
    cls = torch.tensor([0, 1])
    ibase = torch.full_like(x, -0.2)
    out = deletion_insertion(Toy(), x, maps, cls, steps=4, insertion_baseline=ibase)
    for b in range(2):
        d, i, da, ia = _ref_del_ins(x[b].numpy(), maps[b].numpy(), int(cls[b]), 4, np.zeros((2, 4, 4)),
                                    ibase[b].numpy())
        np.testing.assert_allclose(out["deletion"][b].numpy(), d, atol=1e-12)
        np.testing.assert_allclose(out["insertion"][b].numpy(), i, atol=1e-12)
        assert abs(float(out["deletion_auc"][b]) - da) < 1e-12
        assert abs(float(out["insertion_auc"][b]) - ia) < 1e-12


def test_deletion_auc_by_hand():
    # one 1x2 image, channel-0 pixels (2, 1): deleting the brighter first gives sums 3, 1, 0
    x = torch.tensor([[[[2.0, 1.0]]]], dtype=torch.float64)
    maps = torch.tensor([[[0.9, 0.1]]], dtype=torch.float64)
    out = deletion_insertion(Toy(), x, maps, torch.tensor([0]), steps=2)
    sig = [1 / (1 + np.exp(-s)) for s in (3.0, 1.0, 0.0)]
    assert np.allclose(out["deletion"][0].numpy(), sig)
    assert abs(float(out["deletion_auc"][0]) - (sig[0] / 2 + sig[1] + sig[2] / 2) / 2) < 1e-12


def test_average_drop_increase_and_confidence_change():
    x = torch.ones(3, 1, 2, 2, dtype=torch.float64)      # sum 4 -> p0 = sigmoid(4)
    maps = torch.stack([torch.full((2, 2), 0.5), torch.ones(2, 2), torch.zeros(2, 2)]).double()
    cls = torch.tensor([0, 0, 1])
    drop, inc = average_drop_increase(Toy(), x, maps, cls)
    y = [_p(np.ones((1, 2, 2)), c) for c in (0, 0, 1)]
    o = [_p(np.full((1, 2, 2), 0.5), 0), _p(np.ones((1, 2, 2)), 0), _p(np.zeros((1, 2, 2)), 1)]
    np.testing.assert_allclose(drop.numpy(), [max(0, a - b) / a for a, b in zip(y, o)], atol=1e-12)
    np.testing.assert_allclose(inc.numpy(), [float(b > a) for a, b in zip(y, o)])
    assert inc.tolist() == [0.0, 0.0, 1.0]   # the all-zero map raises p(class 1) from 1-sigmoid(4) to 0.5
    np.testing.assert_allclose(cam_mult_confidence_change(Toy(), x, maps, cls).numpy(),
                               [b - a for a, b in zip(y, o)], atol=1e-12)


def test_imputation_of_one_pixel_is_the_weighted_neighbour_mean():
    x = torch.arange(9, dtype=torch.float64).reshape(1, 1, 3, 3)
    removed = torch.zeros(1, 3, 3, dtype=torch.bool)
    removed[0, 1, 1] = True
    y = impute_linear(x, removed)
    edges, corners = 1 + 3 + 5 + 7, 0 + 2 + 6 + 8
    assert abs(float(y[0, 0, 1, 1]) - (edges / 6 + corners / 12)) < 1e-9
    keep = ~removed.unsqueeze(1)
    assert torch.equal(y[keep], x[keep])


def _ref_impute(img: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The ROAD system, dense: for every removed pixel i, sum_j w_ij (v_i - v_j) = 0 over in-image neighbours."""
    c, h, w = img.shape
    unk = [(y, x) for y in range(h) for x in range(w) if removed[y, x]]
    idx = {p: k for k, p in enumerate(unk)}
    nb = [((dy, dx), 1 / 6 if dy == 0 or dx == 0 else 1 / 12) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
          if (dy, dx) != (0, 0)]
    out = img.copy()
    for ch in range(c):
        a = np.zeros((len(unk), len(unk)))
        b = np.zeros(len(unk))
        for k, (y, x) in enumerate(unk):
            for (dy, dx), wt in nb:
                yy, xx = y + dy, x + dx
                if 0 <= yy < h and 0 <= xx < w:
                    a[k, k] += wt
                    if removed[yy, xx]:
                        a[k, idx[(yy, xx)]] -= wt
                    else:
                        b[k] += wt * img[ch, yy, xx]
        v = np.linalg.solve(a, b)
        for k, (y, x) in enumerate(unk):
            out[ch, y, x] = v[k]
    return out


def test_imputation_equals_a_dense_solve():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 2, 6, 5, generator=g, dtype=torch.float64)
    removed = torch.rand(2, 6, 5, generator=g) < 0.6
    y = impute_linear(x, removed)
    for b in range(2):
        ref = _ref_impute(x[b].numpy(), removed[b].numpy())
        np.testing.assert_allclose(y[b].numpy(), ref, atol=1e-6)


def test_road_equals_the_reference():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 1, 4, 4, generator=g, dtype=torch.float64) * 0.3
    maps = torch.rand(2, 4, 4, generator=g, dtype=torch.float64)
    cls = torch.tensor([0, 1])
    r = road(Toy(), x, maps, cls, percentiles=(25, 50), noise=0.0)
    for b in range(2):
        m = maps[b].numpy().reshape(-1)
        order = sorted(range(16), key=lambda i: (-m[i], i))
        y = _p(x[b].numpy(), int(cls[b]))
        morf = lerf = 0.0
        for pc in (25, 50):
            n = pc * 16 // 100
            top = np.zeros(16, bool)
            top[order[:n]] = True
            bottom = np.zeros(16, bool)
            bottom[order[16 - n:]] = True
            morf += _p(_ref_impute(x[b].numpy(), top.reshape(4, 4)), int(cls[b])) - y
            lerf += _p(_ref_impute(x[b].numpy(), bottom.reshape(4, 4)), int(cls[b])) - y
        assert abs(float(r["morf"][b]) - morf / 2) < 1e-6
        assert abs(float(r["lerf"][b]) - lerf / 2) < 1e-6
        assert abs(float(r["combined"][b]) - (lerf - morf) / 4) < 1e-6
    # the imputation noise is seeded
    a = road(Toy(), x, maps, cls, percentiles=(50,), seed=1)["morf"]
    assert torch.equal(a, road(Toy(), x, maps, cls, percentiles=(50,), seed=1)["morf"])
    assert not torch.equal(a, road(Toy(), x, maps, cls, percentiles=(50,), seed=2)["morf"])


def test_evaluate_collects_every_metric():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 4, 4, generator=g, dtype=torch.float64)
    maps = torch.rand(2, 4, 4, generator=g, dtype=torch.float64)
    out = evaluate(Toy(), x, maps, torch.tensor([0, 1]), boxes=[(0, 0, 4, 4), None], steps=4)
    assert {"pointing", "deletion_auc", "insertion_auc", "avg_drop", "avg_increase", "conf_change",
            "road_morf", "road_lerf", "road_combined"} <= set(out)
    assert out["pointing"].tolist() == [1.0, 0.0]


def test_evoc_eval_leaderboard(tmp_path, capsys):
    import json
    from pathlib import Path

    from evo.cli import main

    root = Path(__file__).resolve().parents[1]
    imgs = [str(root / "examples" / "images" / f) for f in ("0_circle.png", "1_square.png")]
    out = tmp_path / "ev"
    rc = main(["eval", str(root / "examples" / "quickstart.evo"), "--images", *imgs, "--methods",
               "gradcam,randomcam", "--steps", "4", "--out", str(out), "--quiet",
               "--boxes", str(root / "examples" / "images" / "boxes.json")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| gradcam |" in text and "| randomcam |" in text and "x infer" in text
    data = json.loads((out / "leaderboard.json").read_text())
    rows = {r["method"]: r for r in data["rows"]}
    assert set(rows) == {"gradcam", "randomcam"}
    # the pointing game of gradcam recomputed here from the explainer's maps and the boxes
    import evo
    from evo.cli.run import load_weights
    from evo.runtime.images import load_images

    prog = evo.compile((root / "examples" / "quickstart.evo").read_text())
    model = prog.build("QuickNet")
    load_weights(model, root / "evo" / "data" / "quickstart.pt")
    x, _ = load_images(imgs, (64, 64), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    maps = prog.explainer("Shapes", model)(x).maps
    meta = {e["file"]: e["box"] for e in json.loads((root / "examples" / "images" / "boxes.json").read_text())["images"]}
    hits = pointing_game(maps, [meta["0_circle.png"], meta["1_square.png"]]).double().mean()
    assert rows["gradcam"]["pointing"] == float(hits)
    assert rows["gradcam"]["ratio_to_inference"] > 0 and len(rows["gradcam"]["deletion_curve"]) == 5
    assert (out / "leaderboard.csv").read_text().startswith("method,strategy,pointing")
    assert (out / "curves.png").stat().st_size > 1000
    assert main(["eval", str(root / "examples" / "quickstart.evo"), "--methods", "gradcamm", "--quiet"]) == 2
    assert "did you mean" in capsys.readouterr().err
