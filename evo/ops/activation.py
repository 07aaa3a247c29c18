"""Activations: pointwise nonlinearities (fusable into their producer's output path).

The compiled CAM strategy differentiates them with the runtime's `_evo_act_grad`
(evo/codegen/grad_runtime.py), by name."""

from __future__ import annotations

from evo.ops.base import Imports, OpDef, ParamSpec, eltwise_cost, lit, register, same_shape
from evo.ops.gradient import ACT_GRAD


def act_grad(b, n, g):
    """d act(x) / d x times g, from the activation's input x and output y (both saved)."""
    x = b.nodes[n.inputs[0]]
    attrs = {"act": n.op.value, **{k: v for k, v in n.attrs if k != "fuse"}}
    return [(0, b.add(ACT_GRAD, (g, x.id, n.id), attrs, b.gshape(x), n.span, None, f"d_{n.name or n.op.value}"))]


def _act(name, module, functional, ops_per_element, imports, doc="activation"):
    register(OpDef(name, (), same_shape,
                   module=lambda a, s: module,
                   functional=lambda a, xs: functional.format(x=xs[0]),
                   torch=module.replace("()", ""), elementwise=True, activation=True, doc=doc,
                   grad=act_grad, cost=eltwise_cost(ops_per_element), imports=imports,
                   doc_args="—", doc_shape="any shape; same shape"))


_act("relu", "nn.ReLU()", "torch.relu({x})", 1,
     Imports(("nn.ReLU",), ("torch.relu", "torch.relu_", "F.relu", "F.relu_"), ("relu", "relu_"), ("relu", "relu_")))
_act("relu6", "nn.ReLU6()", "F.relu6({x})", 1,
     Imports(("nn.ReLU6",), ("F.relu6",), (), ("relu6", "relu6_")))
_act("gelu", "nn.GELU()", "F.gelu({x})", 8, Imports())  # the importer checks `approximate` (mapping.py)
_act("silu", "nn.SiLU()", "F.silu({x})", 5, Imports(("nn.SiLU",), ("F.silu",), (), ("silu", "silu_")))
_act("sigmoid", "nn.Sigmoid()", "torch.sigmoid({x})", 4,
     Imports(("nn.Sigmoid",), ("torch.sigmoid", "F.sigmoid"), ("sigmoid", "sigmoid_"), ("sigmoid", "sigmoid_")))
_act("tanh", "nn.Tanh()", "torch.tanh({x})", 4,
     Imports(("nn.Tanh",), ("torch.tanh", "F.tanh"), ("tanh", "tanh_"), ("tanh", "tanh_")))
_act("hardswish", "nn.Hardswish()", "F.hardswish({x})", 3,
     Imports(("nn.Hardswish",), ("F.hardswish",), (), ("hardswish", "hardswish_")))
_act("hardsigmoid", "nn.Hardsigmoid()", "F.hardsigmoid({x})", 2,
     Imports(("nn.Hardsigmoid",), ("F.hardsigmoid",), (), ("hardsigmoid", "hardsigmoid_")))

register(OpDef(
    "leaky_relu", (ParamSpec("slope", "float", 0.01),), same_shape,
    module=lambda a, s: f"nn.LeakyReLU({lit(a['slope'])})",
    functional=lambda a, xs: f"F.leaky_relu({xs[0]}, {lit(a['slope'])})",
    torch="nn.LeakyReLU", elementwise=True, activation=True, doc="leaky ReLU", grad=act_grad,
    cost=eltwise_cost(1), doc_call="leaky_relu(x, slope=0.01)", doc_args="`slope` number (0.01)",
    doc_shape="same shape"))
