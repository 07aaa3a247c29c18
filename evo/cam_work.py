"""How much work an explainer does, estimated when a program is compiled.

Counted in multiply-accumulates per image (MAC-equivalents of evo/cost/rules.py):
inference is one pass of the network; a strategy adds, per CAM layer with C
channels, h x w positions, K explained classes and a head of H MACs (the part
after the layer):

* autograd / compiled: one backward of the head per class column (~H each; a
  folded affine head: ~0);
* forward: one JVP of the head (~H) per tangent: C for methods that need only
  channel means of the gradient (gradcam, finercam, shapleycam), C*h*w for the
  others (hirescam, xgradcam, gradcampp, layercam, ...);
* a Hessian-vector product (shapleycam) doubles the gradient work;
* methods of many passes: scorecam C network forwards, iscam / sscam C x samples,
  ablationcam C + 1 head forwards, reciprocam h*w head forwards, smoothgradcampp
  `samples` times (network + gradient).

`estimate` gives the ratio to inference; `check_cams` turns ratios above
LIMIT (10 x inference) into warnings that name the cheaper strategy.
"""

from __future__ import annotations

from dataclasses import dataclass

from evo.cam_methods import BY_NAME, free_passes
from evo.ir.node import Graph

LIMIT = 10.0


@dataclass(frozen=True)
class Work:
    ratio: float          # (inference + explainer work) / inference
    passes: str           # what dominates, in words
    inference_macs: int


def _macs(g: Graph, nodes) -> int:
    from evo.cost.rules import workload

    total = 0
    for n in nodes:
        w = workload(n, [g.node(i).shape for i in n.inputs], 1)
        for part in (w if isinstance(w, list) else [("", w)] if w is not None else []):
            total += int(part[1].macs)
    return total


def _k(spec, n_classes: int) -> int:
    kind = spec.classes[0]
    if kind == "topk":
        return int(spec.classes[1])
    if kind == "list":
        return len(spec.classes[1])
    if kind == "all":
        return n_classes
    return 1


def estimate(g: Graph, spec, strategy: str, folded=None) -> Work:
    """The work of cam `spec` with `strategy` on graph `g`, per image."""
    from evo.passes.gradient import head_nodes
    from evo.ops.tokens import cam_chw

    info = BY_NAME[spec.method]
    total = max(1, _macs(g, g.nodes))
    n_classes = int(g.node(g.outputs[0]).shape[-1]) if g.node(g.outputs[0]).shape else 1
    k = _k(spec, n_classes)
    samples = spec.samples or info.samples
    extra = 0.0
    what = []
    for i, layer in enumerate(spec.layers):
        node = g.value(layer)
        c, h, w = cam_chw(g, node, getattr(spec, "grid", None))
        head, _ = head_nodes(g, node.id)
        hm = _macs(g, head)
        if info.kind == "gradient":
            if strategy == "forward":
                t = c if info.forward_tangents == "channel" else c * h * w
                extra += t * hm * (2 if info.hessian else 1)
                what.append(f"{t:,} JVPs of the head at {layer}")
            elif strategy in ("autograd", "compiled"):
                f = folded[i] if folded is not None and strategy == "compiled" else False
                extra += 0 if f else k * hm * (2 if info.hessian else 1)
                what.append(f"{k} backward pass{'es' if k != 1 else ''} of the head at {layer}")
    if info.whole:  # fullgrad: one backward of the whole network per class (forward: a JVP per input element)
        inp = g.node(g.inputs[0]).shape
        n_in = 1
        for d in inp[1:]:
            n_in *= int(d)
        extra = (n_in if strategy == "forward" else k) * total
        what = [f"{n_in:,} JVPs of the network" if strategy == "forward"
                else f"{k} backward pass{'es' if k != 1 else ''} of the whole network"]
    if info.kind != "gradient":
        for p in free_passes(g, spec):
            head, _ = head_nodes(g, g.value(p.layer).id)
            extra += p.count * (total if p.scope == "network" else _macs(g, head))
            what.append(p.what)
    if spec.method == "smoothgradcampp":
        extra = samples * (total + extra)
        what = [f"{samples} noisy passes of " + ", ".join(what)]
    if spec.aug_smooth:
        extra = 6 * (total + extra) - total
        what.append("6 augmentations")
    return Work((total + extra) / total, "; ".join(what) or "one inference", total)


def cheaper_strategy(g: Graph, spec, strategy: str, possible) -> tuple[str, Work] | None:
    """The cheapest other strategy among `possible` (strategy -> folded flags or None), if cheaper."""
    best = None
    for s, folded in possible.items():
        if s == strategy:
            continue
        wk = estimate(g, spec, s, folded)
        if best is None or wk.ratio < best[1].ratio:
            best = (s, wk)
    return best


def warnings_text(prog) -> str:
    """The rendered warning diagnostics of a compiled program ('' when none)."""
    from evo.diagnostics import render_all

    comp = prog.compilation
    return "\n".join(render_all([d], comp.checked.program.sources) for d in comp.warnings)
