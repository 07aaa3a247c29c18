"""Nightly-style hardening fuzz: the same property as tests/test_hardening_fuzz.py
(exit status 0/1/2, no traceback, a time limit per input, nothing written outside the
output directory, nothing executed from program text) with many more inputs.

    python3 bench/bench_fuzz.py [--scale 10] [--seed 1]

Prints the number of inputs and the time taken; exits non-zero on the first failure."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from test_hardening_fuzz import run_fuzz  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=10, help="multiple of the test's input counts (default 10)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="evo-fuzz-") as d:
        n = run_fuzz(Path(d), n_soup=6500 * a.scale, n_bytes=3000 * a.scale, n_mutations=600 * a.scale,
                     n_cli=120 * a.scale, seed=a.seed)
    dt = time.perf_counter() - t0
    print(f"{n:,} inputs in {dt:.1f} s ({n / dt:,.0f} inputs/s): all answered with exit 0/1/2, no traceback")
    return 0


if __name__ == "__main__":
    sys.exit(main())
