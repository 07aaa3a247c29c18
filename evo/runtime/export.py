"""Export a network together with its compiled explainer: ONNX and `torch.export`.

The exported program is the explainer with the `compiled` strategy: the head's
gradient is emitted by the compiler as ordinary ops (or folded to channel weights
for an affine head), so there is no autograd in it and it runs wherever the network
runs (onnxruntime, TensorRT, ExecuTorch...).  Its one input is the image batch
``x [B, 3, H, W]`` (the batch size is dynamic); its outputs, in this order:

- ``logits`` [B, N] -- the network's output;
- ``classes`` [B] (or [B, K]) -- the explained class indices (int64);
- ``scores`` [B] (or [B, K]) -- their logits;
- ``maps`` [B, H, W] (or [B, K, H, W]) -- the class-activation maps, as `exp(x).maps`.

Gradient-free methods (eigencam: an SVD; scorecam: one network run per channel)
are not exported: export covers the gradient methods with the compiled strategy.
"""

from __future__ import annotations

import contextlib
import io

import torch
from torch import nn

from evo.check.settings import GRADIENT_FREE, METHODS
from evo import codes as C
from evo.codegen.cam_runtime import cam_raw, finish_maps, gather_scores
from evo.diagnostics import Diagnostic, EvoError, Span

FORMATS = ("onnx", "torch-export")
OUTPUT_NAMES = ("logits", "classes", "scores", "maps")
INPUT_NAME = "x"
DEFAULT_OPSET = 18
MIN_OPSET = 17
# ONNX ops that compute gradients (the training domain's Gradient, or any op of that
# domain): an exported explainer must have none
GRADIENT_DOMAINS = ("ai.onnx.preview.training",)
GRADIENT_OP_TYPES = ("Gradient",)


def _bad(msg: str, hint: str | None = None, code: str = C.INVALID_CAM_SETTING) -> EvoError:
    return EvoError(Diagnostic(code, msg, Span.unknown("<export>"), hint))


class ExportedExplainer(nn.Module):
    """forward(x) -> (logits, classes, scores, maps) of a compiled explainer, tensors only."""

    def __init__(self, explainer, cam: str = "?"):
        super().__init__()
        if explainer.strategy != "compiled":
            raise ValueError(f"export needs the compiled strategy, got {explainer.strategy!r}")
        self.explainer = explainer
        self.cam = cam
        self.eval()

    def forward(self, x):
        e = self.explainer
        spec = e.classes
        single = spec[0] in ("top1", "index")
        # no autograd anywhere: the exporters trace this under torch.no_grad() (a grad-mode
        # switch inside would be recorded as a higher-order op that torch.export.load rejects)
        raws, logits, cls = cam_raw(e, x, spec, "compiled")
        scores = gather_scores(logits, cls)
        r = finish_maps(raws, cls, scores, x.shape, e.upsample_mode, e.normalize_mode, single, "compiled")
        return logits, r.classes, r.scores, r.maps


def export_module(prog, cam: str, model=None, overrides: dict | None = None) -> ExportedExplainer:
    """The tensor-only module that is exported: the cam's explainer with the compiled strategy."""
    overrides = dict(overrides or {})
    spec = prog.cams[cam]
    method = overrides.get("method", spec.method)
    if method in GRADIENT_FREE:
        raise _bad(f"cam '{cam}' uses {method}, which export does not cover",
                   "export covers the gradient methods with the compiled strategy: "
                   + ", ".join(m for m in METHODS if m not in GRADIENT_FREE))
    if overrides.get("strategy", "compiled") != "compiled":
        raise _bad(f"export runs the compiled strategy, not {overrides['strategy']!r}",
                   "the compiled strategy has no autograd at run time; drop the strategy override")
    overrides["strategy"] = "compiled"
    exp = prog.explainer(cam, model, **overrides)
    return ExportedExplainer(exp, cam)


def example_input(prog, cam: str, batch: int = 2) -> torch.Tensor:
    """A deterministic example batch of the cam network's input shape (for tracing)."""
    spec = prog.cams[cam]
    g = prog.graph(spec.network)
    shape = tuple(int(s) for s in g.node(g.inputs[0]).shape[1:])
    gen = torch.Generator().manual_seed(0)
    return torch.randn((batch, *shape), generator=gen)


def _dynamic_batch(x: torch.Tensor):
    return ({0: torch.export.Dim("batch", min=1)},)


def to_torch_export(module: ExportedExplainer, x: torch.Tensor):
    """An `ExportedProgram` with a dynamic batch dimension."""
    try:
        with torch.no_grad():
            return torch.export.export(module, (x,), dynamic_shapes=_dynamic_batch(x))
    except Exception as e:  # noqa: BLE001 - as for ONNX
        raise _failure(module, "torch.export", e) from None


def _failure(module: ExportedExplainer, what: str, e: BaseException) -> EvoError:
    """An exporter failure as a program error naming the cam, its method and the op at fault."""
    import re

    text = " ".join(str(e.__cause__ or e).split())
    m = re.search(r"target=torch\.ops\.aten\.([A-Za-z0-9_.]+)", text)
    why = f"it has no translation for aten.{m.group(1)}" if m else text[:200]
    return _bad(f"cam '{module.cam}' ({module.explainer.method}) cannot be exported to {what}: {why}",
                "export another gradient method (gradcam, hirescam, xgradcam, gradcampp, layercam, ...), "
                "or run this one in PyTorch with prog.explainer")


def onnx_bytes(module: ExportedExplainer, x: torch.Tensor, opset: int = DEFAULT_OPSET) -> bytes:
    """The ONNX model (opset >= 17, dynamic batch) as bytes."""
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be at least {MIN_OPSET}, got {opset}")
    if module.explainer.classes[0] == "topk":
        raise _bad(f"cam '{module.cam}' explains topk classes, which ONNX cannot select: topk(k) is a stable "
                   "sort of the logits (ties keep the lower index), and the ONNX exporter has no stable sort",
                   "export class = top1, an index, a list or all to ONNX, or topk with format torch-export")
    import logging
    import warnings

    log = logging.getLogger("torch.onnx")
    level = log.level
    # the exporter reports its progress on stdout and warns about torchvision: keep both quiet
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        log.setLevel(logging.ERROR)
        try:
            with torch.no_grad():
                prog = torch.onnx.export(module, (x,), dynamo=True, opset_version=opset,
                                         input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                                         dynamic_shapes=_dynamic_batch(x), verbose=False)
        except ImportError:
            raise
        except Exception as e:  # noqa: BLE001 - the exporter's own errors: say which op, as a program error
            raise _failure(module, "ONNX", e) from None
        finally:
            log.setLevel(level)
    return prog.model_proto.SerializeToString()


def torch_export_bytes(ep) -> bytes:
    """An ExportedProgram as a .pt2 archive (`torch.export.save`), as bytes."""
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    return buf.getvalue()


def _write(path, data: bytes) -> str:
    from evo.fileio import write_atomic

    return str(write_atomic(path, data))  # never a half-written model


def to_onnx(module: ExportedExplainer, x: torch.Tensor, path, opset: int = DEFAULT_OPSET) -> str:
    """Write the ONNX model to `path`; returns the path."""
    return _write(path, onnx_bytes(module, x, opset))


def verify_onnx(data: bytes, module: ExportedExplainer, x: torch.Tensor) -> dict:
    """Run the ONNX model with onnxruntime on `x` and compare with the torch module:
    {"max_map_diff", "classes_equal", "max_logit_diff", "gradient_ops"}."""
    import onnxruntime as ort

    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = sess.run(None, {INPUT_NAME: x.numpy()})
    with torch.no_grad():
        want = module(x)
    logits, classes, _, maps = (torch.from_numpy(a) for a in got)
    return {"max_map_diff": float((maps - want[3]).abs().max()),
            "classes_equal": bool(torch.equal(classes, want[1])),
            "max_logit_diff": float((logits - want[0]).abs().max()),
            "gradient_ops": gradient_ops(data)}


def gradient_ops(onnx_path) -> list[str]:
    """The gradient operators in an ONNX model (a path or its bytes; empty for an exported explainer)."""
    import onnx

    m = onnx.load_from_string(onnx_path) if isinstance(onnx_path, bytes) else onnx.load(str(onnx_path))
    found = []
    graphs = [m.graph]
    while graphs:
        g = graphs.pop()
        for n in g.node:
            if n.op_type in GRADIENT_OP_TYPES or n.domain in GRADIENT_DOMAINS:
                found.append(f"{n.domain or 'ai.onnx'}::{n.op_type}")
            for a in n.attribute:
                if a.g is not None and len(a.g.node):
                    graphs.append(a.g)
                graphs.extend(a.graphs)
    return found


def export(prog, cam: str, path=None, *, model=None, format: str = "onnx", opset: int = DEFAULT_OPSET,  # noqa: A002
           example=None, **overrides):
    """Export the cam's network with its compiled explainer.

    format "onnx": writes `path` (default `<cam>.onnx`) and returns the path;
    "torch-export": returns the `torch.export.ExportedProgram` and, when `path` is
    given, saves it there with `torch.export.save` (a .pt2 archive).
    `model`: the built network with its weights (default: `prog.build(network)`).
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    module = export_module(prog, cam, model, overrides)
    x = example if example is not None else example_input(prog, cam)
    if format == "onnx":
        return to_onnx(module, x, path if path is not None else f"{cam}.onnx", opset)
    ep = to_torch_export(module, x)
    if path is not None:
        _write(path, torch_export_bytes(ep))
    return ep
