"""A leaderboard of CAM methods on the user's own model and images (`evoc eval`).

For every method (default: all of evo/cam_methods.py) the cam's explainer runs on
the images with that method (the cam's other settings kept, its strategy chosen
as for `auto` unless the cam fixes one), and every metric of evo/metrics.py is
computed on its maps.  Output: a table (methods x metrics, plus explain time per
image and its ratio to plain inference), leaderboard.json / leaderboard.csv and
the mean deletion / insertion curves as a matplotlib plot (curves.png).
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

from evo.diagnostics import EvoError

COLUMNS = (("pointing", "point"), ("deletion_auc", "del AUC"), ("insertion_auc", "ins AUC"),
           ("avg_drop", "avg drop"), ("avg_increase", "avg inc"), ("conf_change", "conf chg"),
           ("road_morf", "ROAD MoRF"), ("road_lerf", "ROAD LeRF"), ("road_combined", "ROAD comb"))


def read_boxes(path: Path | None, images: list[str], size, originals) -> list | None:
    if path is None:
        return None
    try:
        meta = json.loads(path.read_text())
        by_file = {Path(e["file"]).name: e.get("box") for e in meta["images"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"cannot read boxes from {path}: {e}") from None
    out = []
    for img, orig in zip(images, originals):
        box = by_file.get(Path(img).name)
        if box is None:
            out.append(None)
            continue
        sy, sx = size[0] / orig.shape[0], size[1] / orig.shape[1]
        out.append((box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy))
    return out


def leaderboard(prog, cam: str, model, x, boxes=None, methods=None, batch: int = 8, steps: int = 16,
                seed: int = 0, progress=None) -> list[dict]:
    """One row per method: its metrics (means over the images), the mean deletion /
    insertion curves, the explain time per image and its ratio to plain inference."""
    import torch

    from evo.cam_methods import METHODS
    from evo.metrics import evaluate

    methods = list(methods or METHODS)
    n = x.shape[0]
    batches = [x[s:s + batch] for s in range(0, n, batch)]
    with torch.inference_mode():
        model(batches[0])  # warm-up
        t_inf = min(_timed(lambda: [model(b) for b in batches]) for _ in range(3)) / n
    rows = []
    for m in methods:
        try:
            exp = prog.explainer(cam, model, method=m, classes="top1", upsample="bilinear", normalize="minmax")
        except EvoError as e:  # e.g. cam without an affine head
            print(f"evoc: note: {m} skipped: {e.diagnostics[0].message}", file=sys.stderr)
            if progress is not None:
                progress.update(1)
            continue
        t0 = time.perf_counter()
        results = [exp(b) for b in batches]
        t_exp = (time.perf_counter() - t0) / n
        maps = torch.cat([r.maps for r in results]).detach()
        classes = torch.cat([r.classes for r in results])
        per = evaluate(model, x, maps, classes, boxes, steps=steps, seed=seed)
        row = {"method": m, "strategy": results[0].strategy,
               "explain_ms_per_image": t_exp * 1e3, "inference_ms_per_image": t_inf * 1e3,
               "ratio_to_inference": t_exp / t_inf}
        for key, v in per.items():
            if key.endswith("_curve"):
                row[key] = [float(c) for c in v.mean(dim=0)]
            else:
                row[key] = float(v.mean())
        rows.append(row)
        if progress is not None:
            progress.update(1)
    rows.sort(key=lambda r: -(r.get("insertion_auc", 0.0) - r.get("deletion_auc", 0.0)))
    return rows


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def format_table(rows: list[dict]) -> str:
    """A markdown table: methods x metrics, explain time and its ratio to inference."""
    cols = [(k, h) for k, h in COLUMNS if any(k in r for r in rows)]
    head = ["method", "strategy"] + [h for _, h in cols] + ["ms/img", "x infer"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        vals = [r["method"], r["strategy"]] + [f"{r[k]:.3f}" if k in r else "" for k, _ in cols]
        vals += [f"{r['explain_ms_per_image']:.2f}", f"{r['ratio_to_inference']:.1f}"]
        lines.append("| " + " | ".join(vals) + " |")
    return "\n".join(lines)


def write_csv(rows: list[dict], path: Path) -> None:
    keys = ["method", "strategy"] + [k for k, _ in COLUMNS if any(k in r for r in rows)] + \
        ["explain_ms_per_image", "inference_ms_per_image", "ratio_to_inference"]
    import io

    from evo.fileio import write_atomic

    buf = io.StringIO(newline="")
    wr = csv.writer(buf)
    wr.writerow(keys)
    for r in rows:
        wr.writerow([r.get(k, "") if isinstance(r.get(k), str) else
                     ("" if k not in r else f"{r[k]:.6g}") for k in keys])
    write_atomic(path, buf.getvalue())


def plot_curves(rows: list[dict], path: Path) -> bool:
    """Mean deletion / insertion curves of every method (matplotlib); False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), sharey=True)
    cmap = plt.get_cmap("tab20")
    styles = ("-", "--", ":")
    for i, r in enumerate(rows):
        for ax, key in zip(axes, ("deletion_curve", "insertion_curve")):
            if key not in r:
                continue
            ys = r[key]
            xs = [j / (len(ys) - 1) for j in range(len(ys))]
            ax.plot(xs, ys, styles[(i // 20) % 3], color=cmap(i % 20), label=r["method"], linewidth=1.3)
    for ax, title in zip(axes, ("deletion (lower is better)", "insertion (higher is better)")):
        ax.set_title(title)
        ax.set_xlabel("fraction of pixels removed" if "deletion" in title else "fraction of pixels inserted")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("class probability")
    axes[1].legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    import io

    from evo.fileio import write_atomic

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, buf.getvalue())
    return True
