#!/usr/bin/env python3
"""Train the bundled quickstart model and write the example images.

Trains :class:`evo.runtime.shapes.QuickNet` (the network that
``examples/quickstart.evo`` mirrors) on the synthetic shapes data set, on CPU,
deterministically (fixed seeds, ``torch.use_deterministic_algorithms``), in a
few minutes on two cores.  Outputs:

* ``evo/data/quickstart.pt``: the float32 ``state_dict`` (``torch.save``);
* ``examples/images/<idx>_<class>.png``: 8 images of 64x64 (2 per class);
* ``examples/images/boxes.json``: their labels and boxes.

Then it reports held-out accuracy and the Grad-CAM pointing game at
``features`` (the last ReLU, 16x16): the argmax of the Grad-CAM map, bilinearly
upsampled to 64x64 (``align_corners=False``), must fall inside the object's box
grown by ``--tolerance`` pixels on every side (default 1).  The script exits
non-zero if accuracy < 97% or the pointing game < 95%.

Seeds (data): training 1, held-out accuracy 2, example images 3, pointing game 4.
(``tests/test_fixtures.py`` uses seed 5 for its own held-out check.)

Usage: ``python scripts/train_quickstart.py [--epochs N] [--train N] [--no-save]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evo.runtime.shapes import CLASSES, QuickNet, make_dataset, render_sample, save_png

TRAIN_SEED, EVAL_SEED, EXAMPLE_SEED, POINTING_SEED = 1, 2, 3, 4


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Label-preserving augmentation: random 90-degree rotation of the batch, per-image flips."""
    k = int(torch.randint(0, 4, (1,), generator=gen))
    x = torch.rot90(x, k, dims=(2, 3))
    n = x.shape[0]
    flip_h = torch.rand(n, generator=gen) < 0.5
    flip_v = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip_h.view(n, 1, 1, 1), x.flip(3), x)
    x = torch.where(flip_v.view(n, 1, 1, 1), x.flip(2), x)
    return x


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on ``(x, y)``."""
    model.eval()
    pred = torch.cat([model(xb).argmax(1) for xb in x.split(250)])
    return float((pred == y).float().mean())


def gradcam_features(model: QuickNet, x: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    """Hook-based Grad-CAM at ``model.features`` -> raw maps ``[B, 16, 16]`` (after ReLU)."""
    store: dict[str, torch.Tensor] = {}

    def hook(_m: torch.nn.Module, _i: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        store["act"] = out
        out.register_hook(lambda g: store.__setitem__("grad", g))

    handle = model.features.register_forward_hook(hook)
    try:
        logits = model(x.clone().requires_grad_(True))
        logits.gather(1, cls.view(-1, 1)).sum().backward()
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    act, grad = store["act"].detach(), store["grad"]
    weights = grad.mean(dim=(2, 3), keepdim=True)
    return F.relu((weights * act).sum(1))


def pointing_game(
    model: QuickNet, x: torch.Tensor, y: torch.Tensor, boxes: torch.Tensor, tolerance: int
) -> float:
    """Fraction of images whose upsampled Grad-CAM argmax lies in the (grown) box of class ``y``."""
    model.eval()
    hits = 0
    for xb, yb, bb in zip(x.split(100), y.split(100), boxes.split(100)):
        cam = gradcam_features(model, xb, yb)
        up = F.interpolate(cam[:, None], size=xb.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        idx = up.flatten(1).argmax(1)
        py, px = idx // up.shape[-1], idx % up.shape[-1]
        inside = (
            (px >= bb[:, 0] - tolerance)
            & (px < bb[:, 2] + tolerance)
            & (py >= bb[:, 1] - tolerance)
            & (py < bb[:, 3] + tolerance)
        )
        hits += int(inside.sum())
    return hits / x.shape[0]


def write_examples(out_dir: Path) -> None:
    """Write 2 images per class (seed ``EXAMPLE_SEED``) and ``boxes.json``."""
    rng = np.random.default_rng(EXAMPLE_SEED)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    idx = 0
    for _ in range(2):
        for label, name in enumerate(CLASSES):
            s = render_sample(rng, 64, label=label)
            fname = f"{idx}_{name}.png"
            save_png(s.image, out_dir / fname)
            entries.append({"file": fname, "label": label, "class": name, "box": list(s.box)})
            idx += 1
    meta = {
        "classes": list(CLASSES),
        "box_format": "x0, y0, x1, y1 in pixels; x1 and y1 exclusive (x0 <= x < x1, y0 <= y < y1)",
        "images": entries,
    }
    (out_dir / "boxes.json").write_text(json.dumps(meta, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=8000, help="training images")
    ap.add_argument("--epochs", type=int, default=9)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--tolerance", type=int, default=1, help="pointing-game box tolerance in pixels")
    ap.add_argument("--out", type=Path, default=ROOT / "evo" / "data" / "quickstart.pt")
    ap.add_argument("--images", type=Path, default=ROOT / "examples" / "images")
    ap.add_argument("--no-save", action="store_true", help="train and report only")
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    t0 = time.time()
    x_train, y_train, _ = make_dataset(args.train, TRAIN_SEED)
    x_val, y_val, _ = make_dataset(1000, EVAL_SEED)
    x_pg, y_pg, b_pg = make_dataset(500, POINTING_SEED)
    print(f"data: {time.time() - t0:.1f}s", flush=True)

    model = QuickNet()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = (args.train + args.batch - 1) // args.batch
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=args.lr,
        epochs=args.epochs,
        steps_per_epoch=steps_per_epoch,
        pct_start=0.25,
        div_factor=25.0,
    )
    gen = torch.Generator().manual_seed(0)
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(args.train, generator=gen)
        total = 0.0
        for i in range(0, args.train, args.batch):
            idx = perm[i : i + args.batch]
            xb = augment(x_train[idx], gen)
            loss = F.cross_entropy(model(xb), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * idx.numel()
        acc = accuracy(model, x_val, y_val)
        print(
            f"epoch {epoch + 1}/{args.epochs}: loss {total / args.train:.4f} "
            f"held-out acc {acc:.4f} ({time.time() - t0:.0f}s)",
            flush=True,
        )

    model.eval()
    acc = accuracy(model, x_val, y_val)
    pg = {tol: pointing_game(model, x_pg, y_pg, b_pg, tol) for tol in (0, 1, 2)}
    print(f"held-out accuracy (1000 images, seed {EVAL_SEED}): {acc:.4f}")
    for tol, v in pg.items():
        print(
            f"Grad-CAM pointing game at features (500 images, seed {POINTING_SEED}, "
            f"tolerance {tol}px): {v:.4f}"
        )
    print(f"total time {time.time() - t0:.0f}s")

    if not args.no_save:
        state = {
            k: v.detach().to(torch.float32).clone() if v.is_floating_point() else v.detach().clone()
            for k, v in model.state_dict().items()
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, args.out)
        write_examples(args.images)
        print(f"wrote {args.out} and {args.images}/")
    ok = acc >= 0.97 and pg[args.tolerance] >= 0.95
    if not ok:
        print("FAILED: need accuracy >= 0.97 and pointing game >= 0.95", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
