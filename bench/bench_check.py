"""Front-end speed: parse + check a generated 2,000-layer program, and refuse absurd ones.

    python bench/bench_check.py [--layers 2000] [--repeat 3]

Prints the best of --repeat runs for each case and its ratio to the 2 s target
(a ratio below 1 meets it).  The parser is built (or loaded from Lark's cache) once
per process; that one-time cost is printed separately and not counted in the cases.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import evo
from evo.frontend import parse
from evo.frontend.parser import get_parser

TARGET_S = 2.0

UNIT = """
# unit {i}: a residual unit with a seq inside (8 layers)
block Unit{i}(x, c: int, k: int = 3) {{
    a = conv2d(x, c, k, padding=(k - 1) // 2, bias=false)
    b = batchnorm2d(a)
    r = relu(b)
    s = seq(r) {{ conv2d(c, 1, bias=false); batchnorm2d(); relu() }}
    if x.channels == c {{
        return s + x
    }}
    return s + conv2d(x, c, 1)
}}
"""

GROUP = """
# group {g}: a block defined as a seq of units, the previous group nested inside
block Group{g}(x, c: int) = seq(x) {{
{stages}
}}
"""


def program(layers: int) -> str:
    """A deep chain of blocks and seqs with at least `layers` layers: 40 distinct units;
    groups of units in chains of ten, each group nesting the previous one (a chain is
    about 300 layers, 13 scopes deep), and the network runs the chains in a seq."""
    units = 40
    out = ["evo 0.1\n"]
    out += [UNIT.format(i=i) for i in range(units)]
    groups = 10 * -(-layers // 300)
    for g in range(groups):
        stages = [f"    Unit{(5 * g + j) % units}({16 + 8 * (g % 4)})" for j in range(5)]
        if g % 10:  # a chain of up to ten nested groups
            stages[2] = f"    Group{g - 1}({16 + 8 * (g % 4)})"
            stages.append(f"    if {g} % 2 == 0 {{ relu() }} else {{ identity() }}")
        out.append(GROUP.format(g=g, stages="\n".join(stages)))
    body = "\n".join(f"        Group{g}({16 + 8 * (g % 4)})" for g in range(groups) if g % 10 == 9 or g == groups - 1)
    out.append(f"""
network Deep(x: Tensor[N, 3, 32, 32], classes: int = 10) {{
    stem = conv2d(x, 16, 3, padding=1)
    body = seq(stem) {{
{body}
    }}
    fc = linear(flatten(adaptive_avgpool2d(body, 1)), classes)
    return fc
}}
""")
    return "".join(out)


def best(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def refused(src: str):
    def run():
        try:
            evo.compile(src)
        except evo.EvoError as e:
            return e.diagnostics[0]
        raise AssertionError("the program was not refused")
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    t = time.perf_counter()
    get_parser()
    print(f"parser build/load (once per process): {time.perf_counter() - t:.3f} s")

    src = program(args.layers)
    t_parse, _ = best(lambda: parse(src, "deep.evo"), args.repeat)
    t_check, prog = best(lambda: evo.compile(src, "deep.evo"), args.repeat)
    g = prog.compilation.checked.graphs["Deep"]
    n_layers = len(g.nodes)
    depth = max(s.path.count(".") for s in g.scopes) + 1
    print(f"program: {len(src.splitlines()):,} lines, {n_layers:,} layers, scopes nested {depth} deep")
    print(f"  parse only:           {t_parse:8.3f} s")
    print(f"  parse + check:        {t_check:8.3f} s   ratio to the {TARGET_S:g} s target: {t_check / TARGET_S:.3f}")

    cases = [
        ("repeat 1000000000", "    y = seq(x) { repeat 1000000000 { relu() } }"),
        ("nested repeats 1e5 x 1e5", "    y = seq(x) { repeat 100000 { repeat 100000 { relu() } } }"),
        ("empty nested loops", "    y = seq(x) { for i in 0..100000 { for j in 0..100000 { } } }"),
    ]
    for label, stmt in cases:
        bad = f"network N(x: Tensor[N, 3, 8, 8]) {{\n{stmt}\n    return y\n}}\n"
        t_bad, d = best(refused(bad), args.repeat)
        print(f"refuse {label + ':':27} {t_bad:8.3f} s   ratio to the {TARGET_S:g} s target: {t_bad / TARGET_S:.4f}"
              f"   ({d.code}: {d.message})")


if __name__ == "__main__":
    main()
