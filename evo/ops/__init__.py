"""The op table: every op, built-in, gradient-only or user-defined, is one entry.

One :class:`OpDef` per op carries its signature, shape rule, PyTorch code,
derivative and cost rules, flags, importer aliases and doc line (see
`evo/ops/base.py`).  The built-in ops are registered by family:

* `conv.py`        conv2d, linear (layers with weights)
* `norm.py`        batchnorm2d, batchnorm1d, layernorm, layernorm2d
* `activation.py`  the pointwise nonlinearities (relu, ...)
* `pool.py`        maxpool2d, avgpool2d, adaptive_avgpool2d
* `shape.py`       flatten, dropout, identity, softmax, concat
* `dims.py`        permute, transpose, reshape, view, narrow, chunk, split, parameter
* `arith.py`       add, mul (the `+` and `*` operators)
* `window.py`      matmul, scale_by, roll, subsample, pad, the relative-position buffers and
                   relative_bias, window_mask, l2_normalize, clamp, exp (window attention)
* `einsum.py`      einsum (torch.einsum, the equation checked)
* `attention.py`   multihead_attention, scaled_dot_product_attention, expand, select, mean
* `gradient.py`    the gradient-only ops of the compiled CAM strategy

Adding a built-in op is one visit: one `register(OpDef(...))` in its family.
User-defined ops take the same road (`evo.extend.register_op`).
"""

from evo.ir.node import Op
from evo.ops import (activation, arith, attention, conv, dims, einsum, gradient, norm, pool,  # noqa: F401  (registers the ops)
                     shape, window)
from evo.ops.arith import broadcast
from evo.ops.dims import narrow_rows
from evo.ops.base import (REGISTRY, REQUIRED, Call, CostSummary, Imports, NotConvertible, OpDef, OpError, ParamSpec, by_op, by_operator,
                          callable_ops, cost_summaries, list_joiner,
                          fmt_shape, language_op, language_ops, lit, lookup, normalize_args, of_node, param_count,
                          register)

# Ops written with operators, not callable by name.
OPERATOR_ONLY = {k for k, d in REGISTRY.items() if d.operator_only}


__all__ = ["Op", "REGISTRY", "REQUIRED", "Call", "CostSummary", "Imports", "NotConvertible", "OpDef", "OpError", "ParamSpec", "broadcast", "by_op",
           "by_operator", "callable_ops", "cost_summaries", "list_joiner", "fmt_shape", "language_op", "language_ops", "lit", "lookup", "narrow_rows", "normalize_args",
           "of_node", "param_count", "register", "OPERATOR_ONLY"]
