# ---------------------------------------------------------------------------
# evo gradient runtime: the helpers that compiled-CAM gradient code calls.
#
# Pasted verbatim into generated files after the CAM runtime (torch only).
# Gradient tensors are K-batched: [K*B, ...], class-major (row k*B + b is class
# column k of image b); forward tensors saved from the head are [B, ...].
# ---------------------------------------------------------------------------
import torch
import torch.nn.functional as F
from torch import nn


def _evo_seed(cls, n, dtype):
    # one-hot gradient seed [K*B, n] for classes [B, K]
    return F.one_hot(cls.t().reshape(-1), n).to(dtype)


def _evo_k(g, k):
    # [K*B, ...] -> [K, B, ...]
    return g.reshape(k, g.shape[0] // k, *g.shape[1:])


def _evo_kmul(g, other, k):
    # g [K*B, ...] times a forward tensor other [B, ...] (broadcasting)
    return (_evo_k(g, k) * other).reshape(-1, *torch.broadcast_shapes(g.shape[1:], other.shape[1:]))


def _evo_sum_to(g, shape):
    # reduce a broadcast gradient [K*B, ...] to [K*B, *shape]
    lead = g.dim() - 1 - len(shape)
    if lead > 0:
        g = g.sum(dim=tuple(range(1, 1 + lead)))
    dims = tuple(i + 1 for i, s in enumerate(shape) if s == 1 and g.shape[i + 1] != 1)
    if dims:
        g = g.sum(dim=dims, keepdim=True)
    return g


def _evo_unpool_max(g, idx, k, in_hw):
    # max-pool gradient: scatter-add each output gradient to its argmax (exact for overlapping windows)
    kb, c = g.shape[0], g.shape[1]
    index = idx.repeat(k, 1, 1, 1).reshape(kb, c, -1)
    out = torch.zeros(kb, c, in_hw[0] * in_hw[1], dtype=g.dtype, device=g.device)
    out.scatter_add_(2, index, g.reshape(kb, c, -1))
    return out.reshape(kb, c, in_hw[0], in_hw[1])


def _evo_avg_divisor(h, w, kernel, stride, padding, ceil, count_include_pad):
    # the divisor PyTorch's avg_pool2d uses for every output window, [1, 1, oh, ow]
    ones = torch.ones(1, 1, h, w)
    if count_include_pad:
        padded = F.pad(ones, (padding[1], padding[1], padding[0], padding[0]), value=1.0)
        return F.avg_pool2d(padded, kernel, stride, 0, ceil, True, 1)
    return F.avg_pool2d(ones, kernel, stride, padding, ceil, True, 1)


def _evo_unpool_avg(g, div, kernel, stride, padding, in_hw):
    # avg-pool gradient: spread g / divisor over each window (a transposed conv with a ones kernel)
    c = g.shape[1]
    ones = torch.ones(c, 1, kernel[0], kernel[1], dtype=g.dtype, device=g.device)
    full = F.conv_transpose2d(g / div, ones, None, stride, 0, 0, c)
    h, w = in_hw
    need_h, need_w = padding[0] + h, padding[1] + w
    if full.shape[2] < need_h or full.shape[3] < need_w:
        full = F.pad(full, (0, max(0, need_w - full.shape[3]), 0, max(0, need_h - full.shape[2])))
    return full[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + w]


def _evo_adaptive_matrix(n_in, n_out):
    # [n_out, n_in]: row o averages input window o of adaptive pooling
    m = torch.zeros(n_out, n_in)
    for o in range(n_out):
        start = (o * n_in) // n_out
        end = -((-(o + 1) * n_in) // n_out)
        m[o, start:end] = 1.0 / (end - start)
    return m


def _evo_adaptive_grad(g, mh, mw):
    # adaptive-avg-pool gradient: g [KB, C, oh, ow] -> [KB, C, H, W]
    return torch.einsum("ncij,iH,jW->ncHW", g, mh, mw)


def _evo_bn_scale(bn):
    # batchnorm in eval mode is x * scale + shift per channel
    return (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()


def _evo_sub(model, path):
    # a submodule by its path, through _modules (never an nn.Module attribute of the same name)
    # (the last part may be a learnable tensor or a buffer of its block)
    m = model
    for part in path.split("."):
        m = m._modules[part] if part in m._modules else (
            m._parameters[part] if part in m._parameters else m._buffers[part])
    return m


def functools_partial(fn, sides):
    # head(acts) for a head that also reads side values (no functools import: torch only)
    def head(acts):
        return fn(acts, *sides)

    return head


class _EvoExportWrapper(nn.Module):
    # forward(x) -> (maps, classes, scores): a tensor-only interface for torch.export
    def __init__(self, explainer):
        super().__init__()
        self.explainer = explainer

    def forward(self, x):
        r = self.explainer(x)
        return r.maps, r.classes, r.scores
