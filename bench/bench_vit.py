"""ViT-B/16 (examples/vit.evo, 224x224): explain time / inference time per CAM strategy
(issue 12; target for the compiled strategy <= 1.05).

    python bench/bench_vit.py [--batch 1 --batch 2] [--repeats 7] [--strategy compiled ...]

The cam explains the input of the last block's attention (encoder.layers.encoder_layer_11.ln_1:
197 tokens, the 14x14 grid inferred, the class token dropped) with Grad-CAM.  Measured side
by side in one run, interleaved (each round times inference, then each strategy's explainer,
in turn), median and minimum over rounds (each ratio from the same statistic of both), after
warm-up, single-threaded, with the load average before and after; inference and the compiled and
forward strategies run under torch.inference_mode (the autograd strategy differentiates the
head only, with grad enabled there).  `forward` is left out by default: Grad-CAM by forward
differentiation takes one JVP of the head per channel (768 here), as `evoc cost` estimates.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import evo  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _time(fn) -> tuple[float, float]:
    """(wall, CPU) seconds of one call (single-threaded: the thread's CPU time is what the call
    used itself, less disturbed than the wall time by the other processes of a loaded machine)."""
    t0, c0 = time.perf_counter(), time.thread_time()
    fn()
    return time.perf_counter() - t0, time.thread_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, action="append")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--strategy", choices=("autograd", "compiled", "forward"), action="append")
    a = ap.parse_args()
    torch.set_num_threads(1)
    prog = evo.compile_file(ROOT / "examples" / "vit.evo")
    torch.manual_seed(0)
    model = prog.build("ViTB16").eval()
    with torch.no_grad():
        model.class_token.normal_(std=0.02)
    strategies = a.strategy or ["autograd", "compiled"]
    exps = {s: prog.explainer("Explain", model, strategy=s, upsample="none", normalize="none") for s in strategies}
    print(f"ViT-B/16, 224x224, gradcam at encoder.layers.encoder_layer_11.ln_1; load average "
          f"{os.getloadavg()[0]:.1f}; {a.repeats} interleaved rounds; median (min) ms, ratio of medians (of mins)")
    for batch in a.batch or [1, 2]:
        x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        times: dict[str, list[tuple[float, float]]] = {s: [] for s in ["inference", *strategies]}

        def infer():
            with torch.inference_mode():
                model(x)

        for _ in range(2):  # warm-up
            infer()
            for s in strategies:
                exps[s](x)
        for _ in range(a.repeats):
            times["inference"].append(_time(infer))
            for s in strategies:
                times[s].append(_time(lambda s=s: exps[s](x)))
        for j, kind in enumerate(("wall", "CPU")):
            if kind == "wall" and batch == (a.batch or [1, 2])[0]:
                print(f"{'batch':>5} {'time':>4} {'inference ms':>18} "
                      + " ".join(f"{s + ' ms':>18} {'ratio':>13}" for s in strategies))
            col = {s: [t[j] for t in v] for s, v in times.items()}
            inf, inf_min = statistics.median(col["inference"]), min(col["inference"])
            cells = []
            for s in strategies:
                t, t_min = statistics.median(col[s]), min(col[s])
                cells.append(f"{f'{t * 1e3:.1f} ({t_min * 1e3:.1f})':>18} {f'{t / inf:.3f} ({t_min / inf_min:.3f})':>13}")
            print(f"{batch:>5} {kind:>4} {f'{inf * 1e3:.1f} ({inf_min * 1e3:.1f})':>18} " + " ".join(cells), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
