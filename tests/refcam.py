"""Independent, textbook class-activation-map reference for tests.

Everything here is written the way ``pytorch-grad-cam`` does it, on purpose
*independently* of the compiler: a forward hook captures the activation ``A``
of ``layer_module`` (``[B, K, h, w]``) and registers a tensor hook for its
gradient ``G = d score / d A``, where ``score = sum_b logits[b, class_idx[b]]``
is the **raw** class logit (no softmax), obtained with one full
``loss.backward()`` through the whole network (parameter gradients included;
they are restored afterwards so the model is left as it was).

Shapes: ``A, G: [B, K, h, w]``; ``S_k = sum_ij A_k[i, j]``; every formula is
computed in float64 and the maps are returned in ``A``'s dtype as
``[B, h, w]``, at the layer's resolution, after the final ReLU, neither
upsampled nor normalised.  All methods end with ``relu(sum_k w_k A_k)`` or the
like, as pytorch-grad-cam does (its ``BaseCAM`` always applies ``max(cam, 0)``).

Where this reference deliberately differs from pytorch-grad-cam:

* ``gradcampp``: no ``eps = 1e-6`` in the denominator; ``alpha = 0`` exactly
  where the denominator is 0 (pytorch-grad-cam: ``where(g != 0, ., 0)`` and
  ``+ 1e-6``; with small gradients that eps changes the result noticeably).
* ``eigencam``: the sign of the principal direction is fixed (see
  :func:`_eigencam`); pytorch-grad-cam leaves it to LAPACK.
* ``scorecam``: masks are upsampled with ``F.interpolate(bilinear,
  align_corners=False)`` (``align_corners=True`` like pytorch-grad-cam's
  ``UpsamplingBilinear2d`` on request) and min-max normalised without the
  ``1e-8``; constant channels give an all-zero mask.

The model must already be in the mode the caller wants (normally ``eval()``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["METHODS", "capture", "reference_cam", "reference_normalize", "reference_upsample"]

METHODS: tuple[str, ...] = (
    "gradcam",
    "hirescam",
    "xgradcam",
    "gradcampp",
    "layercam",
    "eigencam",
    "scorecam",
)
GRADIENT_FREE: frozenset[str] = frozenset({"eigencam", "scorecam"})


def capture(
    model: nn.Module, x: torch.Tensor, layer_module: nn.Module, class_idx: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Run ``model(x)``; return ``(A, G, logits)`` at ``layer_module``, all detached.

    ``G`` is ``None`` when ``class_idx`` is ``None`` (forward only, no backward).
    The layer must be called exactly once per forward pass and must output a
    ``[B, K, h, w]`` tensor.
    """
    acts: list[torch.Tensor] = []
    grads: list[torch.Tensor] = []
    want_grad = class_idx is not None

    def hook(_m: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"CAM layer must output a tensor, got {type(out).__name__}")
        acts.append(out.detach().clone())
        if want_grad and out.requires_grad:
            out.register_hook(lambda g: grads.append(g.detach().clone()))

    saved = {p: p.grad for p in model.parameters()}
    handle = layer_module.register_forward_hook(hook)
    try:
        if want_grad:
            xin = x.detach().clone().requires_grad_(True)
            for p in saved:
                p.grad = None
            logits = model(xin)
            idx = class_idx.to(device=logits.device, dtype=torch.long).view(-1, 1)
            loss = logits.gather(1, idx).sum()
            loss.backward()
        else:
            with torch.no_grad():
                logits = model(x)
    finally:
        handle.remove()
        for p, g in saved.items():
            p.grad = g
    if len(acts) != 1:
        raise ValueError(f"CAM layer was called {len(acts)} times in one forward pass; expected exactly 1")
    act = acts[0]
    if act.dim() != 4:
        raise ValueError(f"CAM layer output must be [B, K, h, w], got {tuple(act.shape)}")
    grad: torch.Tensor | None = None
    if want_grad:
        if len(grads) != 1:
            raise RuntimeError("no gradient reached the CAM layer (is the score independent of it?)")
        grad = grads[0]
    return act, grad, logits.detach()


def _weighted(weights: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """``relu(sum_k w_k A_k)`` for ``weights [B, K]`` (or ``[B, K, h, w]``)."""
    if weights.dim() == 2:
        weights = weights[:, :, None, None]
    return F.relu((weights * act).sum(dim=1))


def _gradcam(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Grad-CAM: ``w_k = mean_ij G_k[i, j]``; ``relu(sum_k w_k A_k)``."""
    return _weighted(grad.mean(dim=(2, 3)), act)


def _hirescam(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """HiResCAM: ``relu(sum_k G_k * A_k)`` (element-wise, no spatial averaging)."""
    return F.relu((grad * act).sum(dim=1))


def _xgradcam(act: torch.Tensor, grad: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """XGrad-CAM: ``w_k = sum_ij(G_k * A_k) / (S_k + 1e-7)``; ``relu(sum_k w_k A_k)``."""
    s = act.sum(dim=(2, 3))
    return _weighted((grad * act).sum(dim=(2, 3)) / (s + eps), act)


def _gradcampp(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ closed form (Chattopadhay et al., eq. 19, exp-score form).

    With ``g = G`` the gradient of the raw score:
    ``alpha = g^2 / (2 g^2 + S_k g^3)`` where that denominator is non-zero, else 0;
    ``w_k = sum_ij alpha_k[i, j] * relu(g_k[i, j])``; ``relu(sum_k w_k A_k)``.
    """
    g2 = grad * grad
    g3 = g2 * grad
    denom = 2.0 * g2 + act.sum(dim=(2, 3))[:, :, None, None] * g3
    nz = denom != 0
    alpha = torch.where(nz, g2 / torch.where(nz, denom, torch.ones_like(denom)), torch.zeros_like(denom))
    return _weighted((alpha * F.relu(grad)).sum(dim=(2, 3)), act)


def _layercam(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """LayerCAM: ``relu(sum_k relu(G_k) * A_k)``."""
    return F.relu((F.relu(grad) * act).sum(dim=1))


def _eigencam(act: torch.Tensor) -> torch.Tensor:
    """Eigen-CAM: projection on the first principal component, then ReLU.

    Per image, ``M = A.reshape(K, h*w).T`` (``[hw, K]``) is centred column-wise
    (``M -= M.mean(0)``, as pytorch-grad-cam does), ``v`` is the first right
    singular vector of the centred ``M`` (``torch.linalg.svd``), and the map is
    ``relu(M_centred @ v)`` reshaped to ``[h, w]``.

    Sign convention (pytorch-grad-cam leaves it to LAPACK): ``v`` is flipped so
    that ``sum_k v_k > 0``.  Equivalently the projection correlates positively
    with the centred channel-sum map ``sum_k A_k`` (because
    ``<M v1, M 1> = s1^2 <v1, 1>``), i.e. "high where the activation is high".
    If ``sum_k v_k == 0`` exactly, the entry of largest magnitude is made positive.
    A rank-0 (constant) activation gives an all-zero map.
    """
    b, k, h, w = act.shape
    out = torch.zeros(b, h, w, dtype=act.dtype, device=act.device)
    for i in range(b):
        m = act[i].reshape(k, h * w).T
        m = m - m.mean(dim=0, keepdim=True)
        if not bool(m.abs().max() > 0):
            continue
        _u, _s, vh = torch.linalg.svd(m, full_matrices=False)
        v = vh[0]
        total = v.sum()
        sign = torch.sign(total) if total != 0 else torch.sign(v[v.abs().argmax()])
        out[i] = F.relu((m @ (v * sign)).reshape(h, w))
    return out


def _scorecam(
    model: nn.Module,
    x: torch.Tensor,
    act: torch.Tensor,
    class_idx: torch.Tensor,
    batch_size: int,
    align_corners: bool,
) -> torch.Tensor:
    """Score-CAM: ``w = softmax_k(logit_c(x * norm(up(A_k))))``; ``relu(sum_k w_k A_k)``.

    For each channel ``k``: ``A_k`` is upsampled to the input size (bilinear),
    min-max normalised to [0, 1] (all-zero if constant), multiplied into the
    input (all channels), and the masked image's raw class logit is taken; the
    weights are the softmax over channels of these logits (pytorch-grad-cam).
    """
    b, k = act.shape[:2]
    up = F.interpolate(act.to(x.dtype), size=x.shape[-2:], mode="bilinear", align_corners=align_corners)
    lo = up.amin(dim=(2, 3), keepdim=True)
    hi = up.amax(dim=(2, 3), keepdim=True)
    rng = hi - lo
    masks = torch.where(
        rng > 0, (up - lo) / torch.where(rng > 0, rng, torch.ones_like(rng)), torch.zeros_like(up)
    )
    scores = torch.empty(b, k, dtype=torch.float64)
    with torch.no_grad():
        for i in range(b):
            masked = x[i][None] * masks[i][:, None]  # [K, C, H, W]
            c = int(class_idx[i])
            outs = [model(chunk)[:, c] for chunk in masked.split(batch_size)]
            scores[i] = torch.cat(outs).to(torch.float64).cpu()
    weights = torch.softmax(scores, dim=1).to(act.device)
    return _weighted(weights, act)


def reference_cam(
    model: nn.Module,
    x: torch.Tensor,
    layer_module: nn.Module,
    method: str,
    class_idx: torch.Tensor,
    *,
    scorecam_batch_size: int = 64,
    scorecam_align_corners: bool = False,
) -> torch.Tensor:
    """Raw CAM ``[B, h, w]`` of ``method`` at ``layer_module`` for class ``class_idx[b]`` of image ``b``.

    Args:
        model: the network (left in its current train/eval mode; its parameter
            ``.grad`` are restored after the backward pass).
        x: input batch ``[B, C, H, W]``.
        layer_module: the submodule whose (single-call) output is the CAM layer.
        method: one of :data:`METHODS`.
        class_idx: ``LongTensor [B]``, the class explained for each image.
        scorecam_batch_size: masked images per forward pass for ``scorecam``.
        scorecam_align_corners: ``align_corners`` of the Score-CAM mask upsampling.

    Returns:
        the maps at the layer's resolution, after ReLU, not upsampled, not
        normalised, in the layer output's dtype.
    """
    if method not in METHODS:
        raise ValueError(f"unknown CAM method {method!r}; expected one of {', '.join(METHODS)}")
    class_idx = torch.as_tensor(class_idx, dtype=torch.long).view(-1)
    if class_idx.numel() != x.shape[0]:
        raise ValueError(f"class_idx has {class_idx.numel()} entries for a batch of {x.shape[0]}")
    needs_grad = method not in GRADIENT_FREE
    act, grad, _ = capture(model, x, layer_module, class_idx if needs_grad else None)
    a = act.to(torch.float64)
    g = grad.to(torch.float64) if grad is not None else None
    if method == "gradcam":
        cam = _gradcam(a, g)
    elif method == "hirescam":
        cam = _hirescam(a, g)
    elif method == "xgradcam":
        cam = _xgradcam(a, g)
    elif method == "gradcampp":
        cam = _gradcampp(a, g)
    elif method == "layercam":
        cam = _layercam(a, g)
    elif method == "eigencam":
        cam = _eigencam(a)
    else:
        cam = _scorecam(model, x, a, class_idx, scorecam_batch_size, scorecam_align_corners)
    return cam.to(act.dtype)


def reference_normalize(maps: torch.Tensor) -> torch.Tensor:
    """Per-map min-max to [0, 1] over the last two dims; a constant map becomes all 0."""
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    hi = maps.amax(dim=(-2, -1), keepdim=True)
    rng = hi - lo
    safe = torch.where(rng > 0, rng, torch.ones_like(rng))
    return torch.where(rng > 0, (maps - lo) / safe, torch.zeros_like(maps))


def reference_upsample(maps: torch.Tensor, size: int | Sequence[int], mode: str = "bilinear") -> torch.Tensor:
    """Resize ``[..., h, w]`` maps to ``size`` with ``F.interpolate``.

    ``mode``: ``"bilinear"`` (``align_corners=False``), ``"nearest"``, or
    ``"none"`` (returned unchanged).  Leading dims (``[B]``, ``[B, K]``) are kept.
    """
    if mode == "none":
        return maps
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"unknown upsample mode {mode!r}")
    hw = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:])
    if mode == "bilinear":
        out = F.interpolate(flat, size=hw, mode="bilinear", align_corners=False)
    else:
        out = F.interpolate(flat, size=hw, mode="nearest")
    return out.reshape(*lead, *hw)
