"""Training-only submodules: direct children of the model that own parameters but that
the eval forward never calls (GoogLeNet's `aux1`/`aux2`, Inception-v3's `AuxLogits`).

They are found by running the model once in training mode (on a copy whose submodules
stay in eval mode, so batch norms neither use nor update batch statistics): a hook
records the tensor each one receives, which is matched, by identity, to the output of
another direct child (or the model's input).  Each is then traced on its own and
attached to the traced root as a `training` call reading that child's output; the
emitted program declares it `training name = Block(producer, ...)`."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from evo.importer.trace import Call, Problems, Step, Val, trace_fx


@dataclass
class TrainingOnly:
    name: str            # the child's attribute name
    producer: str | None  # the direct child whose output it reads; None: the model's input
    example: torch.Tensor


def find(model: nn.Module, x: torch.Tensor) -> list[TrainingOnly]:
    """The direct children with parameters that eval mode never calls but training mode does."""
    called: set[str] = set()
    hooks = []
    children = dict(model.named_children())
    for name, m in children.items():
        hooks.append(m.register_forward_pre_hook(lambda _m, _a, name=name: called.add(name)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    unused = [n for n, m in children.items()
              if n not in called and any(True for _ in m.parameters())]
    if not unused:
        return []
    twin = copy.deepcopy(model)
    twin.train()
    for m in twin.children():
        m.eval()
    outputs: list[tuple[str, torch.Tensor]] = []
    seen: dict[str, torch.Tensor] = {}
    hooks = []
    for name, m in twin.named_children():
        if name in unused:
            hooks.append(m.register_forward_pre_hook(
                lambda _m, args, name=name: seen.setdefault(name, args[0] if args else None)))
        else:
            hooks.append(m.register_forward_hook(
                lambda _m, _a, out, name=name: outputs.append((name, out))))
    try:
        with torch.no_grad():
            twin(x)
    except Exception:  # noqa: BLE001 -- training mode fails (e.g. too small an input): not found
        return []
    finally:
        for h in hooks:
            h.remove()
    found = []
    for name in unused:
        t = seen.get(name)
        if not isinstance(t, torch.Tensor):
            continue
        if t is x:
            found.append(TrainingOnly(name, None, t))
            continue
        prod = [n for n, o in outputs if o is t]
        if prod:
            found.append(TrainingOnly(name, prod[-1], t))
    return found


def attach(root: Call, model: nn.Module, found: list[TrainingOnly], problems: Problems) -> None:
    """Trace each training-only child and add it to `root` right after its producer."""
    for t in found:
        sub_model = getattr(model, t.name)
        sub = trace_fx(sub_model, t.example.detach(), problems)
        src: Val | None = None
        at = len(root.items)
        if t.producer is None:
            src = root.inputs[0] if root.inputs else None
            at = 0
        else:
            for k, it in enumerate(root.items):
                if isinstance(it, Call) and it.path == t.producer and it.outputs:
                    src, at = it.outputs[0], k + 1
                elif isinstance(it, Step) and it.path == t.producer:
                    src, at = it.out, k + 1
        if src is None:
            problems.not_convertible(t.name, type(sub_model).__name__,
                                     "a training-only submodule whose input evo cannot locate")
            continue
        old = sub.inputs[0]
        _rebase(sub, t.name, old, src, root)
        sub.training = True
        root.items.insert(at, sub)


def _rebase(c: Call, prefix: str, old: Val, new: Val, parent: Call) -> None:
    c.path = prefix if not c.path else f"{prefix}.{c.path}"
    c.parent = parent
    c.inputs = [new if v is old else v for v in c.inputs]
    for it in c.items:
        if isinstance(it, Call):
            _rebase(it, prefix, old, new, c)
        else:
            if it.path is not None:
                it.path = f"{prefix}.{it.path}"
            it.inputs = [new if v is old else v for v in it.inputs]
