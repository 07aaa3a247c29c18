"""Extending the language from Python: user-defined layer ops.

    from evo.extend import register_op

    register_op(
        "mish",
        shape=lambda shapes, attrs: shapes[0],                   # output shape
        code=lambda attrs, xs: f"F.mish({xs[0]})",               # forward, torch-only source
        derivative=lambda attrs, x, y: f"(torch.tanh(F.softplus({x})) + {x} * torch.sigmoid({x}) "
                                       f"* (1 - torch.tanh(F.softplus({x})) ** 2))",
        cost=lambda attrs, in_shapes, out_shape: EltwiseWorkload(prod(out_shape), 1, 6),
    )

After this, `mish(x)` (and `mish()` as a seq stage) is an op of the language
like the built-in ones: one entry in the same op table (evo/ops), checked
(arguments, shape rule), lowered to the IR (op `mish`), generated as PyTorch,
costed on hardware tiers, differentiated by the compiled CAM strategy and, with
`imports`, recognised by `evoc import`.  The grammar is not touched.

Discovery: packages declare an entry point in the group ``evo.ops`` whose
object is a zero-argument function that calls `register_op` (or a module that
registers on import); `load_plugins()` runs them once, before the first
compilation.  ``EVO_PLUGINS=mod1,mod2`` imports extra modules and calls their `register()`.
"""

from __future__ import annotations

import importlib
import os
import re
from typing import Any, Callable

from evo import ops

__all__ = ["register_op", "load_plugins", "unregister_op", "ParamSpec", "OpError", "Imports", "Call",
           "NotConvertible"]

ParamSpec = ops.ParamSpec
OpError = ops.OpError
Imports = ops.Imports
Call = ops.Call
NotConvertible = ops.NotConvertible

_KINDS = ("int", "int2", "float", "bool")
_loaded = False


def _param(p) -> ops.ParamSpec:
    if isinstance(p, ops.ParamSpec):
        spec = p
    elif isinstance(p, tuple):
        spec = ops.ParamSpec(*p)
    elif isinstance(p, dict):
        spec = ops.ParamSpec(**p)
    else:
        raise TypeError(f"a parameter is a ParamSpec, a tuple or a dict, not {type(p).__name__}")
    if spec.kind not in _KINDS:
        raise ValueError(f"parameter kind must be one of {', '.join(_KINDS)}, not {spec.kind!r}")
    return spec


def register_op(name: str, *, shape: Callable, code: Callable, params=(), module: Callable | None = None,
                cost: Callable | None = None, derivative: Callable | None = None, n_inputs: int = 1,
                doc: str = "", replace: bool = False, imports: ops.Imports | None = None,
                from_module: Callable | None = None, activation: bool = False) -> ops.OpDef:
    """Register a parameter-free layer op.

    name        the op's name in programs (an identifier, not a keyword, a built-in op or a built-in
                function: min, max)
    params      its compile-time arguments after the input tensor(s): ParamSpec(name, kind, default,
                min, max) with kind int | int2 | float | bool (tuples or dicts are accepted)
    shape       (input shapes, attrs) -> output shape; raise evo.extend.OpError(message, arg) to
                report an error at the offending argument
    code        (attrs, input expressions) -> a torch-only Python expression for the output
    module      (attrs, input shapes) -> source of an nn.Module constructor (optional; lets the op be
                a seq stage); default: a generic wrapper is not generated, the op is functional only
    cost        (attrs, input shapes, output shape) -> an evo.cost workload (default: elementwise)
    derivative  (attrs, x, y) -> torch-only expression of d y / d x elementwise, from the input
                expression x and the output expression y (elementwise single-input ops only); with
                it the compiled CAM strategy differentiates through the op
    imports     evo.extend.Imports(modules=("nn.Softplus",), functions=("F.softplus",), methods=(...),
                aten=("softplus",), calls=(Call(...), ...)): torch names `evoc import` converts to this
                op (a Call reads arguments: see evo.ops.base.Call), exactly as for a built-in op
    from_module (module, input shape) -> the op's arguments, for an imported nn module (default: none)
    activation  a pointwise nonlinearity: fuses into its producer's output path in the cost model
    """
    from evo.check.program import BUILTIN_FUNCS
    from evo.frontend.parser import KEYWORDS

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name or ""):
        raise ValueError(f"op name {name!r} is not an identifier")
    if name in KEYWORDS:
        raise ValueError(f"op name {name!r} is a keyword")
    if name in BUILTIN_FUNCS:
        raise ValueError(f"op name {name!r} is a built-in function of the language ({', '.join(sorted(BUILTIN_FUNCS))}): "
                         f"a call '{name}(...)' always means the built-in; choose another name")
    existing = ops.REGISTRY.get(name)
    if existing is not None and not (replace and not existing.builtin):
        raise ValueError(f"op {name!r} is already defined")
    if derivative is not None and n_inputs != 1:
        raise ValueError("a derivative can be given for single-input ops only")
    specs = tuple(_param(p) for p in params)
    user_cost = None
    if cost is not None:
        def user_cost(W, attrs, ins, out):  # the op table passes the workload module first
            return cost(attrs, ins, out)
    d = ops.OpDef(name, specs, shape, n_inputs=n_inputs, module=module, functional=code,
                  doc=doc or "user-defined op", torch="(user-defined)", cost=user_cost, derivative=derivative,
                  activation=activation, builtin=False,
                  imports=imports or ops.Imports(), from_module=from_module)
    ops.register(d)
    return d


def unregister_op(name: str) -> None:
    d = ops.REGISTRY.get(name)
    if d is not None and not d.builtin:
        del ops.REGISTRY[name]


def _entry_points():
    from importlib.metadata import entry_points

    return list(entry_points(group="evo.ops"))


def load_plugins(force: bool = False) -> list[str]:
    """Run every `evo.ops` entry point and import the EVO_PLUGINS modules (once)."""
    global _loaded
    if _loaded and not force:
        return []
    _loaded = True
    done: list[str] = []
    for ep in sorted(_entry_points(), key=lambda e: e.name):
        obj: Any = ep.load()
        if callable(obj):
            obj()
        done.append(ep.name)
    for mod in filter(None, (m.strip() for m in os.environ.get("EVO_PLUGINS", "").split(","))):
        m = importlib.import_module(mod)
        if callable(getattr(m, "register", None)):
            m.register()
        done.append(mod)
    return done
