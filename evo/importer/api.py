"""`from_torch`: a PyTorch module and an example input -> evo source."""

from __future__ import annotations

import re

import torch
from torch import nn

from evo.importer.trace import Problems, TraceFailed, trace_export, trace_fx
from evo.ir.node import fmt_shape


class ConversionError(Exception):
    """The model cannot be expressed in evo.  `problems` lists every reason, one line each."""

    def __init__(self, model_name: str, problems: list[str]):
        self.model_name = model_name
        self.problems = list(problems)
        n = len(self.problems)
        head = f"cannot import {model_name}: {n} problem{'s' if n != 1 else ''}"
        super().__init__(head + "".join(f"\n  {p}" for p in self.problems))


def from_torch(module: nn.Module, example_input: torch.Tensor, name: str | None = None,
               verify: bool = True) -> str:
    """Readable, canonically formatted evo source for `module`.

    `example_input` fixes the input shape (its first dimension becomes the
    symbolic batch `N`).  `name` is the network's name (default: the module's
    class name).  With `verify` (the default) the generated program is compiled,
    the model's state_dict is loaded into it with strict=True and the outputs on
    `example_input` are compared.  Raises :class:`ConversionError` listing every
    problem found."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"from_torch expects an nn.Module, got {type(module).__name__}")
    if not isinstance(example_input, torch.Tensor):
        raise TypeError(f"example_input must be a tensor, got {type(example_input).__name__}")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    label = type(module).__name__
    net_name = name or _net_name(label)
    from evo.importer.tree import RESERVED

    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", net_name):
        raise ConversionError(label, [f"the network name '{net_name}' is not an evo identifier"])
    if net_name in RESERVED:
        raise ConversionError(label, [f"the network name '{net_name}' is an evo keyword"])
    if example_input.dim() < 2:
        raise ConversionError(label, ["the example input must have a batch dimension and at least one more"])
    was_training = module.training
    module.eval()
    try:
        return _convert(module, example_input, net_name, label, verify)
    finally:
        module.train(was_training)


def _net_name(label: str) -> str:
    from evo.importer.tree import RESERVED

    s = re.sub(r"[^A-Za-z0-9_]", "_", label) or "Net"
    if s[0].isdigit():
        s = "Net" + s
    if s in RESERVED:
        s = s + "Net"
    return s


def _convert(module: nn.Module, x: torch.Tensor, net_name: str, label: str, verify: bool) -> str:
    from evo.frontend.fmt import format_source
    from evo.importer.emit import Emitter

    try:
        with torch.no_grad():
            module(x)
    except Exception as e:  # noqa: BLE001 -- any failure of the user's model is reported, not raised
        first = (str(e).strip().splitlines() or [""])[0]
        msg = f"the model fails on the example input of shape {fmt_shape(x.shape)}: {type(e).__name__}: {first}"
        raise ConversionError(label, [msg]) from None
    from evo.importer import training

    found = training.find(module, x)
    problems = Problems()
    try:
        root = trace_fx(module, x, problems, tuple(t.name for t in found))
        training.attach(root, module, found, problems)
        if problems and not found:
            # torch.export specialises shape arithmetic (`F.pad(x, (0, w % 2))`) that fx leaves in
            # the graph: where fx's graph has problems, export's may have none
            exported = Problems()
            try:
                alt = trace_export(module, x, exported)
            except TraceFailed:
                alt = None
            if alt is not None and not exported:
                root, problems = alt, exported
    except TraceFailed as e_fx:
        problems = Problems()
        try:
            root = trace_export(module, x, problems)
        except TraceFailed as e_ex:
            raise ConversionError(label, [f"cannot trace {label}: torch.fx: {e_fx}; torch.export: {e_ex}"]) from None
    em = Emitter(root, problems, net_name, tuple(x.shape))
    try:
        em.prepare()  # naming and structure problems, reported together with the tracer's
        if not problems:
            text = em.run()
    except Exception as e:  # an importer bug: say so, without a traceback
        if problems:
            raise ConversionError(label, problems.items) from None
        raise ConversionError(label, [f"internal error in the importer: {type(e).__name__}: {e}"]) from e
    if problems:
        raise ConversionError(label, problems.items)
    try:
        text = format_source(text, "<import>")
    except Exception as e:
        raise ConversionError(label, [f"internal error: the generated program does not parse: {e}"]) from e
    if verify:
        _verify(module, x, text, net_name, label)
    return text


def _verify(module: nn.Module, x: torch.Tensor, text: str, net_name: str, label: str) -> None:
    from evo.api import compile as compile_program
    from evo.diagnostics import EvoError

    try:
        prog = compile_program(text, filename="<import>")
        net = prog.build(net_name)
    except EvoError as e:
        raise ConversionError(label, [f"internal error: the generated program does not compile:\n{e}"]) from None
    want = module.state_dict()
    have = net.state_dict()
    missing = [k for k in want if k not in have]
    extra = [k for k in have if k not in want]
    bad = [k for k in want if k in have and tuple(want[k].shape) != tuple(have[k].shape)]
    if missing or extra or bad:
        msg = ["internal error: the generated program's state_dict differs from the model's"]
        for k in missing[:5]:
            msg.append(f"missing: {k}")
        for k in extra[:5]:
            msg.append(f"unexpected: {k}")
        for k in bad[:5]:
            msg.append(f"shape of {k}: {tuple(have[k].shape)} vs {tuple(want[k].shape)}")
        raise ConversionError(label, msg)
    net.load_state_dict(want, strict=True)
    p = next(iter(module.parameters()), None)
    if p is not None:
        net = net.to(device=p.device, dtype=p.dtype)
    try:
        with torch.no_grad():
            a = module(x)
            b = net(x)
    except Exception as e:  # noqa: BLE001
        msg = f"internal error: running the imported program failed: {type(e).__name__}: {e}"
        raise ConversionError(label, [msg]) from None
    pa = a if isinstance(a, (tuple, list)) else (a,)
    pb = b if isinstance(b, (tuple, list)) else (b,)
    for ta, tb in zip(pa, pb):
        if ta.shape != tb.shape:
            msg = f"internal error: output shape {tuple(tb.shape)} differs from the model's {tuple(ta.shape)}"
            raise ConversionError(label, [msg])
        scale = max(1.0, float(ta.abs().max()))
        diff = float((ta - tb).abs().max())
        if diff > 1e-4 * scale:
            msg = (f"internal error: the imported program computes something else (max abs difference "
                   f"{diff:.3g} on the example input)")
            raise ConversionError(label, [msg])
