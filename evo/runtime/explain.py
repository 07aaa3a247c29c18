"""`Program.explainer(name, model, **overrides)`: build an explainer object."""

from __future__ import annotations

import types
from dataclasses import replace

from evo.check.settings import METHODS, NORMALIZE, STRATEGIES, UPSAMPLE, CamSpec
from evo import codes as C
from evo.diagnostics import Diagnostic, EvoError, Span, did_you_mean
from evo.frontend.names import path_text

OVERRIDABLE = ("layer", "method", "class_", "classes", "strategy", "upsample", "normalize", "labels", "network",
               "seed", "eigen_smooth", "aug_smooth", "samples", "grid")


def _bad(msg: str, hint: str | None = None) -> EvoError:
    return EvoError(Diagnostic(C.INVALID_CAM_SETTING, msg, Span.unknown("<explainer>"), hint))


def _class_spec(v):
    if isinstance(v, str):
        if v in ("top1", "all"):
            return (v,)
        if v.startswith("topk(") and v.endswith(")"):
            return ("topk", int(v[5:-1]))
        raise _bad(f"class {v!r} is not top1, all, topk(k), an index or a list")
    if isinstance(v, bool):
        raise _bad("class must be an index, not a bool")
    if isinstance(v, int):
        return ("index", v)
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        if v[0] in ("topk",):
            return tuple(v)
        return ("list", tuple(v))
    if isinstance(v, tuple) and v and v[0] in ("top1", "all", "topk", "index", "list"):
        return v
    raise _bad(f"class {v!r} is not top1, all, topk(k), an index or a list")


def apply_overrides(spec: CamSpec, graph, overrides: dict) -> CamSpec:
    kw = {}
    for k, v in overrides.items():
        if k == "layer":
            if not (isinstance(v, str) or (isinstance(v, (list, tuple)) and v
                                           and all(isinstance(x, str) for x in v))):
                raise TypeError(f"layer must be a layer path (str) or a list of them, not {v!r}")
            layers = (v,) if isinstance(v, str) else tuple(v)
            # a path may quote its components as in a program: "features.`block1-0`.conv"
            layers = tuple(path_text(p) or p if "`" in p else p for p in layers)
            for p in layers:
                node = graph.value(p)
                if node is None:
                    raise _bad(f"network '{spec.network}' has no layer '{p}'",
                               did_you_mean(p, [x for x, _ in graph.values]))
            kw["layers"] = layers
        elif k == "method":
            if v not in METHODS:
                raise _bad(f"unknown method {v!r}", did_you_mean(str(v), METHODS))
            kw["method"] = v
        elif k in ("class_", "classes", "cls"):
            kw["classes"] = _class_spec(v)
        elif k == "strategy":
            if v not in STRATEGIES:
                raise _bad(f"unknown strategy {v!r}", did_you_mean(str(v), STRATEGIES))
            kw["strategy"] = v
        elif k == "upsample":
            if v not in UPSAMPLE:
                raise _bad(f"upsample must be one of {', '.join(UPSAMPLE)}")
            kw["upsample"] = v
        elif k == "normalize":
            if v not in NORMALIZE:
                raise _bad(f"normalize must be one of {', '.join(NORMALIZE)}")
            kw["normalize"] = v
        elif k == "labels":
            if isinstance(v, str) or not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
                raise TypeError(f"labels must be a list of str, not {v!r}")
            kw["labels"] = tuple(v)
        elif k == "seed":
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise _bad(f"seed must be an int >= 0, not {v!r}")
            kw["seed"] = v
        elif k == "samples":
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise _bad(f"samples must be an int >= 1, not {v!r}")
            kw["samples"] = v
        elif k == "grid":
            if v is not None and not (isinstance(v, (list, tuple)) and len(v) == 2 and all(
                    isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in v)):
                raise _bad(f"grid must be [H, W] (two ints >= 1) or None, not {v!r}")
            kw["grid"] = tuple(v) if v is not None else None
        elif k in ("eigen_smooth", "aug_smooth"):
            if not isinstance(v, bool):
                raise _bad(f"{k} must be True or False, not {v!r}")
            kw[k] = v
        else:
            raise _bad(f"unknown cam setting {k!r}", did_you_mean(k, OVERRIDABLE))
    if "layers" in kw or "grid" in kw:  # every layer has a grid: [N, C, H, W], tokens or channels-last
        from evo.ops.tokens import NoGrid, cam_layout

        for p in kw.get("layers", spec.layers):
            try:
                cam_layout(graph, graph.value(p), kw.get("grid", spec.grid))
            except NoGrid as e:
                raise _bad(f"the CAM layer '{p}' {e}", "give the grid: grid=[H, W]") from None
    return replace(spec, **kw)


def explainer_source(graph, spec: CamSpec, strategy: str, note: str = "", explain=None) -> tuple[str, str]:
    """(source, class name) of a standalone explainer module for `spec` with the strategy
    the compilation chose; `explain(layer, fold)` gives the compiled explain graphs."""
    from evo.codegen.explain import ExplainConfig, explainer_class
    from evo.codegen.names import module_namer
    from evo.codegen.python import cam_runtime_source

    cfg = ExplainConfig.from_spec(spec, strategy, note)
    cls, src = explainer_class(graph, cfg, module_namer(), explain)
    prelude = "import torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n\n"
    return prelude + cam_runtime_source() + "\n\n\n" + src, cls


def make_explainer(prog, cam: str, model=None, overrides: dict | None = None):
    from evo.passes.gradient import NotDifferentiable

    comp = prog.compilation
    spec = prog.cams[cam]
    graph = prog.graph(spec.network)
    spec = apply_overrides(spec, graph, dict(overrides or {}))
    if spec.method == "fullgrad" and spec.strategy == "forward":
        raise _bad("method fullgrad needs the gradient w.r.t. the input and every bias layer: strategy autograd, "
                   "compiled or auto (forward would need one JVP per input element)")
    try:
        strategy, note = comp.strategy(spec, graph)
    except NotDifferentiable as e:
        raise _bad(f"the compiled strategy is not possible for cam '{spec.name}': {e}",
                   "use strategy autograd or forward") from None
    src, cls = explainer_source(graph, spec, strategy, note, comp.explainer(graph))
    mod = types.ModuleType(f"evo_explainer_{cam}")
    exec(compile(src, f"<evo-explainer:{cam}>", "exec"), mod.__dict__)
    if model is None:
        model = prog.build(spec.network)
    exp = getattr(mod, cls)(model)
    exp.strategy_note = note
    exp.source = src
    return exp
