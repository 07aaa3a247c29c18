"""Activations: pointwise nonlinearities (fusable into their producer's output path).

Each entry's `derivative` is its whole rule for the compiled CAM strategy: the
explainer writes g times that expression of the activation's input x and output y
(evo/ops/gradient.py's `derivative_grad`), as for a user-defined op."""

from __future__ import annotations

from evo.ops.base import (Call, Imports, NotConvertible, OpDef, ParamSpec, eltwise_cost, lit, register, rowwise_any,
                           same_shape)


def _act(name, module, functional, ops_per_element, imports, derivative, doc="activation", **importer):
    register(OpDef(name, (), same_shape, **importer,
                   module=lambda a, s: module,
                   functional=lambda a, xs: functional.format(x=xs[0]),
                   torch=module.replace("()", ""), elementwise=True, activation=True, doc=doc, rowwise=rowwise_any,
                   derivative=lambda a, x, y: derivative.format(x=x, y=y), cost=eltwise_cost(ops_per_element),
                   imports=imports, doc_args="—", doc_shape="any shape; same shape"))


_act("relu", "nn.ReLU()", "torch.relu({x})", 1,
     Imports(("nn.ReLU",), ("torch.relu", "torch.relu_", "F.relu", "F.relu_"), ("relu", "relu_"), ("relu", "relu_")),
     "({x} > 0).to({x}.dtype)")


def _relu6_of_hardtanh(b, shapes):
    if float(b["min_val"]) == 0.0 and float(b["max_val"]) == 6.0:
        return {}
    raise NotConvertible("no evo op for hardtanh (only relu6 = hardtanh(0, 6))")


_act("relu6", "nn.ReLU6()", "F.relu6({x})", 1,
     Imports(("nn.ReLU6",), ("F.relu6",), (), ("relu6", "relu6_"),
             calls=(Call(("F.hardtanh", "aten.hardtanh", "aten.hardtanh_"), ("input", "min_val", "max_val", "inplace"),
                         _relu6_of_hardtanh, {"min_val": -1.0, "max_val": 1.0, "inplace": False}),)),
     "(({x} > 0) & ({x} < 6)).to({x}.dtype)")


def _exact_gelu(approximate):
    if approximate != "none":
        raise NotConvertible(f"approximate='{approximate}' (evo's gelu is the exact one)")
    return {}


_act("gelu", "nn.GELU()", "F.gelu({x})", 8,
     Imports(("nn.GELU",), calls=(Call(("F.gelu", "aten.gelu", "aten.gelu_"), ("input", "approximate"),
                                       lambda b, shapes: _exact_gelu(b["approximate"]), {"approximate": "none"}),)),
     "torch.special.ndtr({x}) + {x} * torch.exp(-0.5 * {x} * {x}) * 0.3989422804014327",  # Φ(x) + x φ(x)
     from_module=lambda m, shape: _exact_gelu(m.approximate))
_act("silu", "nn.SiLU()", "F.silu({x})", 5, Imports(("nn.SiLU",), ("F.silu",), (), ("silu", "silu_")),
     "torch.sigmoid({x}) * (1 + {x} * (1 - torch.sigmoid({x})))")
_act("sigmoid", "nn.Sigmoid()", "torch.sigmoid({x})", 4,
     Imports(("nn.Sigmoid",), ("torch.sigmoid", "F.sigmoid"), ("sigmoid", "sigmoid_"), ("sigmoid", "sigmoid_")),
     "{y} * (1 - {y})")
_act("tanh", "nn.Tanh()", "torch.tanh({x})", 4,
     Imports(("nn.Tanh",), ("torch.tanh", "F.tanh"), ("tanh", "tanh_"), ("tanh", "tanh_")),
     "1 - {y} * {y}")
_act("hardswish", "nn.Hardswish()", "F.hardswish({x})", 3,
     Imports(("nn.Hardswish",), ("F.hardswish",), (), ("hardswish", "hardswish_")),
     "torch.where({x} < -3, torch.zeros_like({x}), torch.where({x} > 3, torch.ones_like({x}), (2 * {x} + 3) / 6))")
_act("hardsigmoid", "nn.Hardsigmoid()", "F.hardsigmoid({x})", 2,
     Imports(("nn.Hardsigmoid",), ("F.hardsigmoid",), (), ("hardsigmoid", "hardsigmoid_")),
     "(({x} > -3) & ({x} < 3)).to({x}.dtype) / 6")

register(OpDef(
    "leaky_relu", (ParamSpec("slope", "float", 0.01),), same_shape,
    module=lambda a, s: f"nn.LeakyReLU({lit(a['slope'])})",
    functional=lambda a, xs: f"F.leaky_relu({xs[0]}, {lit(a['slope'])})",
    torch="nn.LeakyReLU", elementwise=True, activation=True, doc="leaky ReLU", rowwise=rowwise_any,
    derivative=lambda a, x, y: f"torch.where({x} > 0, torch.ones_like({x}), torch.full_like({x}, {lit(a['slope'])}))",
    cost=eltwise_cost(1),
    imports=Imports(("nn.LeakyReLU",), calls=(
        Call(("F.leaky_relu", "aten.leaky_relu", "aten.leaky_relu_"), ("input", "negative_slope", "inplace"),
             lambda b, shapes: {"slope": float(b["negative_slope"])}, {"negative_slope": 0.01, "inplace": False}),)),
    from_module=lambda m, shape: {"slope": float(m.negative_slope)}, positional=True,
    doc_call="leaky_relu(x, slope=0.01)", doc_args="`slope` number (0.01)",
    doc_shape="same shape"))
