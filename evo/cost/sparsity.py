"""Measured sparsity: run a network on sample inputs and record each activation's zero
fraction, for the cost model's zero gating, zero skipping and compression.

``measure(model, graph, images)`` runs the built network (a ``torch.nn.Module`` whose
module tree mirrors the graph's paths) once on a batch of images with forward hooks
and returns, per IR node, the fraction of exact zeros in its output.  Nodes that are
not modules (functional ops) take their input's fraction when they only move data
(the op entry's `keeps_zeros`: flatten, reshape, permute, dropout, ...) and are otherwise
counted dense (0.0): the model
never claims a saving it has not measured.  ``op_sparsity(graph, zeros, batch)`` turns
that into ``{op name: (input zero fraction, output zero fraction)}`` for the ops of
``graph_ops`` (an op's output is that of the last member of its fused chain, its input
that of its first producer), the form ``cost_network(..., sparsity=...)`` takes.
"""

from __future__ import annotations

from typing import Any

from evo import ops
from evo.ir.node import Graph, Op

__all__ = ["calibrate", "measure", "op_sparsity"]


def measure(model: Any, graph: Graph, images: Any) -> dict[int, float]:
    """Zero fraction of every node's output on `images` (a float tensor [B, C, H, W])."""
    import torch

    modules = dict(model.named_modules())
    seen: dict[str, float] = {}
    hooks = []

    def hook(name):
        def fn(_mod, _inp, out):
            if isinstance(out, torch.Tensor) and out.numel():
                seen[name] = float((out == 0).sum().item()) / out.numel()
        return fn

    paths = {n.path for n in graph.nodes if n.path}
    for name in paths:
        m = modules.get(name)
        if m is not None:
            hooks.append(m.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            model.eval()(images)
    finally:
        for h in hooks:
            h.remove()
    zeros: dict[int, float] = {}
    x = images
    z_image = float((x == 0).sum().item()) / x.numel() if x.numel() else 0.0
    for n in graph.nodes:
        if n.op == Op.INPUT:
            zeros[n.id] = z_image
        elif n.path and n.path in seen:
            zeros[n.id] = seen[n.path]
        elif n.inputs and n.op in ops.REGISTRY and ops.REGISTRY[n.op].keeps_zeros:
            zeros[n.id] = zeros.get(n.inputs[0], 0.0)
        else:
            zeros[n.id] = 0.0
    return zeros


def op_sparsity(graph: Graph, zeros: dict[int, float], batch: int) -> dict[str, tuple[float, float]]:
    """(input, output) zero fractions per op name of ``graph_ops(graph, batch)``."""
    from evo.cost.network import graph_ops

    items = graph_ops(graph, batch, with_nodes=True)
    last: dict[int, int] = {}  # op node -> the last member of its fused chain
    for n in graph.nodes:
        f = n.attr_dict.get("fuse")
        if f is not None:
            last[int(f)] = n.id
    out: dict[str, tuple[float, float]] = {}
    for name, _w, _prods, node in items:
        z_in = zeros.get(node.inputs[0], 0.0) if node.inputs else 0.0
        z_out = zeros.get(last.get(node.id, node.id), 0.0)
        out[name] = (z_in, z_out)
    return out



def calibrate(prog: Any, network: str, images: Any, *, model: Any = None, batch: int = 1,
              **args: Any) -> dict[str, tuple[float, float]]:
    """Zero fractions per op of `network` of the program `prog` (an ``evo.Program``),
    measured on `images` (a float tensor [B, C, H, W], normalised as the network
    expects: ``evo.runtime.images.load_images``).  `model`: the network with its trained
    weights (default: ``prog.build(network)``, a seed-0 initialisation whose zeros say
    little).  `batch` names the ops as ``cost_graph(..., batch)`` does."""
    g = prog.graph(network, **args)
    if model is None:
        model = prog.build(network, **args)
    return op_sparsity(g, measure(model, g, images), batch)
