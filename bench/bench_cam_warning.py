"""The explainer-work warning is immediate: compile a VGG-11 whose cam asks for
Grad-CAM++ with the forward strategy (100,352 JVPs of a 120 M-MAC classifier per
image, which would run for hours) and time how long the compiler takes to say so.

    python3 bench/bench_cam_warning.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's evo

SRC = """evo 0.1
network VGG11(x: Tensor[N, 3, 224, 224], classes: int = 1000) {
    features = seq(x) {
        conv2d(64, 3, padding=1); relu(); maxpool2d(2)
        conv2d(128, 3, padding=1); relu(); maxpool2d(2)
        conv2d(256, 3, padding=1); relu(); conv2d(256, 3, padding=1); relu(); maxpool2d(2)
        conv2d(512, 3, padding=1); relu(); conv2d(512, 3, padding=1); relu(); maxpool2d(2)
        conv2d(512, 3, padding=1); relu(); conv2d(512, 3, padding=1); relu(); maxpool2d(2)
    }
    pool = adaptive_avgpool2d(features, 7)
    classifier = seq(flatten(pool)) {
        linear(4096); relu(); dropout(0.5); linear(4096); relu(); dropout(0.5); linear(classes)
    }
    return classifier
}
cam Explain {
    network = VGG11
    layer = features.19
    method = gradcampp
    strategy = forward
}
"""


def main() -> None:
    import evo  # imported before the clock starts: the bench times the compiler, not the interpreter

    t0, c0 = time.perf_counter(), time.process_time()
    prog = evo.compile(SRC)
    warnings = prog.compilation.warnings
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    assert warnings, "no warning"
    print(f"VGG-11 / gradcampp / forward at features.19: warning after {dt:.3f} s wall, {dc:.3f} s CPU "
          "(limit 1 s; compile included)")
    print(f"  {warnings[0].message}")
    print(f"  hint: {warnings[0].hint}")


if __name__ == "__main__":
    main()
