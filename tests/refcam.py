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

import textwrap
from collections.abc import Sequence

import numpy as np
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


# --------------------------------------------------------------------------- the peers' other methods
#
# Written from the papers / the peers' documented semantics, independently of
# evo's runtime: full forward and backward passes through the whole network with
# hooks, explicit loops over channels / positions / samples, numpy for the kernel
# PCA.  Maps are [B, h, w] at the layer's resolution, after the final ReLU.


def _pca_map(t: torch.Tensor) -> torch.Tensor:
    """First principal component of ``t [B, C, h, w]`` (no relu), sign as in _eigencam."""
    b, k, h, w = t.shape
    out = torch.zeros(b, h, w, dtype=torch.float64)
    for i in range(b):
        m = t[i].to(torch.float64).reshape(k, h * w).T
        m = m - m.mean(dim=0, keepdim=True)
        if not bool(m.abs().max() > 0):
            continue
        _u, _s, vh = torch.linalg.svd(m, full_matrices=False)
        v = vh[0]
        total = v.sum()
        sign = torch.sign(total) if total != 0 else torch.sign(v[v.abs().argmax()])
        out[i] = (m @ (v * sign)).reshape(h, w)
    return out


def _out_hook(layer_module: nn.Module, fn):
    """A forward hook replacing the layer's output by ``fn(output)``."""
    return layer_module.register_forward_hook(lambda _m, _i, out: fn(out))


def _scores(model: nn.Module, x: torch.Tensor, cls: int) -> float:
    with torch.no_grad():
        return float(model(x)[0, cls])


def ref_cam_head(act: torch.Tensor, fc_weight: torch.Tensor, class_idx: torch.Tensor) -> torch.Tensor:
    """CAM (Zhou et al.): ``relu(sum_k W[c, k] A_k)`` with W the classifier's weight."""
    w = fc_weight.detach().to(torch.float64)[class_idx]
    return _weighted(w, act.to(torch.float64))


def ref_shapleycam(model, x, layer_module, class_idx) -> torch.Tensor:
    """ShapleyCAM: ``w_k = mean_ij (G - H A / 2)_k``, H A the Hessian-vector product
    ``d <G, A> / dA`` by double backward through the whole network."""
    acts: list[torch.Tensor] = []
    h = layer_module.register_forward_hook(lambda _m, _i, out: acts.append(out))
    try:
        xin = x.detach().clone().requires_grad_(True)
        logits = model(xin)
        loss = logits.gather(1, class_idx.view(-1, 1)).sum()
        (g,) = torch.autograd.grad(loss, acts[0], create_graph=True)
        (hv,) = torch.autograd.grad(g, acts[0], grad_outputs=acts[0].detach(), allow_unused=True,
                                    materialize_grads=True)
    finally:
        h.remove()
    a = acts[0].detach().to(torch.float64)
    w = (g.detach().to(torch.float64) - 0.5 * hv.detach().to(torch.float64)).mean(dim=(2, 3))
    return _weighted(w, a)


def ref_finercam(model, x, layer_module, class_idx, comparisons=(1, 2, 3), alpha=1.0) -> torch.Tensor:
    """Finer-CAM: Grad-CAM of ``T = sum_j p_j (y_m - alpha y_j) / (sum_j p_j + 1e-9)``,
    j the classes at positions 1, 2, 3 of the classes sorted by ``|y - y_m|``."""
    acts: list[torch.Tensor] = []
    grads: list[torch.Tensor] = []

    def hook(_m, _i, out):
        acts.append(out.detach())
        out.register_hook(lambda gr: grads.append(gr.detach()))

    h = layer_module.register_forward_hook(hook)
    try:
        xin = x.detach().clone().requires_grad_(True)
        logits = model(xin)
        p = torch.softmax(logits, dim=-1)
        total = 0
        for b in range(x.shape[0]):
            y = logits[b].detach().numpy().astype(np.float64)
            m = int(class_idx[b])
            d = np.abs(y - y[m])
            d[m] = -1.0
            order = np.argsort(d, kind="stable")
            comp = [int(order[i]) for i in comparisons]
            num = sum(p[b, j] * (logits[b, m] - alpha * logits[b, j]) for j in comp)
            den = sum(p[b, j] for j in comp)
            total = total + num / (den + 1e-9)
        total.backward()
    finally:
        h.remove()
        for prm in model.parameters():
            prm.grad = None
    return _gradcam(acts[0].to(torch.float64), grads[0].to(torch.float64))


def ref_ablationcam(model, x, layer_module, class_idx) -> torch.Tensor:
    """Ablation-CAM: ``w_k = (y - y_k) / y``, y_k the score with channel k of the layer
    set to 0 (one full forward per image and channel); ``relu(sum_k w_k A_k)``."""
    act, _, logits = capture(model, x, layer_module, None)
    b, k = act.shape[:2]
    w = torch.zeros(b, k, dtype=torch.float64)
    for i in range(b):
        c = int(class_idx[i])
        y = float(logits[i, c])
        for ch in range(k):
            def zero(out, ch=ch):
                out = out.clone()
                out[:, ch] = 0
                return out
            h = _out_hook(layer_module, zero)
            try:
                yk = _scores(model, x[i:i + 1], c)
            finally:
                h.remove()
            w[i, ch] = (y - yk) / y if y != 0 else 0.0
    return _weighted(w, act.to(torch.float64))


def ref_reciprocam(model, x, layer_module, class_idx) -> torch.Tensor:
    """Recipro-CAM: the map at (i, j) is softmax(f(A masked to position (i, j)))_c."""
    act, _, _ = capture(model, x, layer_module, None)
    b, _, hh, ww = act.shape
    out = torch.zeros(b, hh, ww, dtype=torch.float64)
    for n in range(b):
        c = int(class_idx[n])
        for i in range(hh):
            for j in range(ww):
                def keep(o, i=i, j=j):
                    m = torch.zeros_like(o)
                    m[:, :, i, j] = 1
                    return o * m
                h = _out_hook(layer_module, keep)
                try:
                    with torch.no_grad():
                        out[n, i, j] = float(torch.softmax(model(x[n:n + 1]), dim=-1)[0, c])
                finally:
                    h.remove()
    return out


def ref_kpcacam(act: torch.Tensor, gamma: float | None = None) -> torch.Tensor:
    """KPCA-CAM: scikit-learn's KernelPCA(n_components=1, kernel="sigmoid") on the
    position-centred activations, redone in numpy: K = tanh(gamma X X^T + 1),
    Kc = H K H with H = I - 1/n, top eigenpair, projection v * sqrt(lambda); sign:
    positive correlation with the channel mean; relu."""
    b, k, hh, ww = act.shape
    out = np.zeros((b, hh * ww))
    for i in range(b):
        xm = act[i].detach().numpy().astype(np.float64).reshape(k, -1).T
        xm = xm - xm.mean(axis=0)
        g = 1.0 / k if gamma is None else gamma
        kern = np.tanh(g * xm @ xm.T + 1.0)
        n = kern.shape[0]
        hmat = np.eye(n) - np.ones((n, n)) / n
        vals, vecs = np.linalg.eigh(hmat @ kern @ hmat)
        p = vecs[:, -1] * np.sqrt(max(vals[-1], 0.0))
        mean_map = act[i].detach().numpy().astype(np.float64).mean(axis=0).reshape(-1)
        corr = float(p @ mean_map)
        if corr < 0 or (corr == 0 and p[np.argmax(np.abs(p))] < 0):
            p = -p
        out[i] = np.maximum(p, 0)
    return torch.from_numpy(out.reshape(b, hh, ww))


def ref_fem(act: torch.Tensor, k: float = 2.0) -> torch.Tensor:
    """FEM: channel weight = share of positions above mean + k * std (population)."""
    a = act.detach().numpy().astype(np.float64)
    b, c = a.shape[:2]
    w = np.zeros((b, c))
    for i in range(b):
        for ch in range(c):
            v = a[i, ch]
            w[i, ch] = float((v > v.mean() + k * v.std()).mean())
    return _weighted(torch.from_numpy(w), act.to(torch.float64))


def ref_randomcam(act: torch.Tensor, seed: int) -> torch.Tensor:
    """RandomCAM: weights uniform in [-1, 1) from torch.Generator().manual_seed(seed)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(act.shape[0], act.shape[1], generator=g, dtype=torch.float64) * 2 - 1
    return _weighted(w, act.to(torch.float64))


def _masks(act: torch.Tensor, size) -> torch.Tensor:
    return reference_normalize(reference_upsample(act, size, "bilinear"))


def ref_iscam(model, x, layer_module, class_idx, samples: int) -> torch.Tensor:
    """IS-CAM: channel score = mean_{i=1..N} logit(x * (i/N) * mask_k); softmax; weighted sum."""
    act, _, _ = capture(model, x, layer_module, None)
    b, k = act.shape[:2]
    masks = _masks(act, x.shape[-2:])
    s = torch.zeros(b, k, dtype=torch.float64)
    for n in range(b):
        c = int(class_idx[n])
        for ch in range(k):
            s[n, ch] = sum(_scores(model, (x[n] * masks[n, ch] * (i / samples))[None], c)
                           for i in range(1, samples + 1)) / samples
    return _weighted(torch.softmax(s, dim=1), act.to(torch.float64))


def ref_sscam(model, x, layer_module, class_idx, samples: int, seed: int, std: float = 2.0,
              block: int = 32) -> torch.Tensor:
    """SS-CAM: channel score = mean over noisy masks (mask_k + N(0, std^2)) of the logit
    of the masked input; noise drawn from torch.Generator().manual_seed(seed) in the
    order documented by evo (sample, image, blocks of 32 channels); softmax; weighted sum."""
    act, _, _ = capture(model, x, layer_module, None)
    b, k = act.shape[:2]
    hh, ww = x.shape[-2:]
    masks = _masks(act, x.shape[-2:])
    gen = torch.Generator().manual_seed(seed)
    s = torch.zeros(b, k, dtype=torch.float64)
    for _ in range(samples):
        for n in range(b):
            c = int(class_idx[n])
            for c0 in range(0, k, block):
                m = min(k, c0 + block) - c0
                noise = torch.randn(m, 1, hh, ww, generator=gen) * std
                for j in range(m):
                    s[n, c0 + j] += _scores(model, (x[n] * (masks[n, c0 + j] + noise[j, 0]))[None], c)
    return _weighted(torch.softmax(s / samples, dim=1), act.to(torch.float64))


def ref_smoothgradcampp(model, x, layer_module, class_idx, samples: int, seed: int,
                        std: float = 0.3) -> torch.Tensor:
    """Smooth Grad-CAM++ (torchcam): gradients at ``x + N(0, std^2)`` (noise from
    torch.Generator().manual_seed(seed), one randn(x.shape) per sample);
    alpha = mean(G^2) / (2 mean(G^2) + sum_ij(mean(G^3) * A)) (0 where 0);
    w_k = sum_ij alpha relu(mean G); ``relu(sum_k w_k A_k)`` with the clean A."""
    act, _, _ = capture(model, x, layer_module, None)
    gen = torch.Generator().manual_seed(seed)
    g1 = g2 = g3 = 0
    for _ in range(samples):
        xs = x + torch.randn(x.shape, generator=gen) * std
        _a, g, _ = capture(model, xs, layer_module, class_idx)
        g = g.to(torch.float64)
        g1, g2, g3 = g1 + g, g2 + g * g, g3 + g * g * g
    g1, g2, g3 = g1 / samples, g2 / samples, g3 / samples
    a = act.to(torch.float64)
    den = 2 * g2 + (g3 * a).sum(dim=(2, 3), keepdim=True)
    alpha = torch.where(den != 0, g2 / torch.where(den != 0, den, torch.ones_like(den)), torch.zeros_like(den))
    return _weighted((alpha * F.relu(g1)).sum(dim=(2, 3)), a)


def reference_method(model, x, layer_module, method: str, class_idx: torch.Tensor, *, seed: int = 0,
                     samples: int | None = None, fc_weight: torch.Tensor | None = None,
                     eigen_smooth: bool = False) -> torch.Tensor:
    """Raw map ``[B, h, w]`` (float64) of any method, old or new."""
    class_idx = torch.as_tensor(class_idx, dtype=torch.long).view(-1)
    if eigen_smooth:
        if method != "gradcam":
            raise ValueError("the eigen_smooth reference is written for gradcam")
        act, grad, _ = capture(model, x, layer_module, class_idx)
        w = grad.to(torch.float64).mean(dim=(2, 3))
        return F.relu(_pca_map(w[:, :, None, None] * act.to(torch.float64)))
    if method in METHODS:
        return reference_cam(model, x, layer_module, method, class_idx).to(torch.float64)
    if method == "eigengradcam":
        act, grad, _ = capture(model, x, layer_module, class_idx)
        return F.relu(_pca_map(grad.to(torch.float64) * act.to(torch.float64)))
    if method == "gradcam_elementwise":
        act, grad, _ = capture(model, x, layer_module, class_idx)
        return F.relu(F.relu(grad.to(torch.float64) * act.to(torch.float64)).sum(dim=1))
    if method == "cam":
        act, _, _ = capture(model, x, layer_module, None)
        return ref_cam_head(act, fc_weight, class_idx)
    if method == "shapleycam":
        return ref_shapleycam(model, x, layer_module, class_idx)
    if method == "finercam":
        return ref_finercam(model, x, layer_module, class_idx)
    if method == "ablationcam":
        return ref_ablationcam(model, x, layer_module, class_idx)
    if method == "reciprocam":
        return ref_reciprocam(model, x, layer_module, class_idx)
    if method == "kpcacam":
        return ref_kpcacam(capture(model, x, layer_module, None)[0])
    if method == "fem":
        return ref_fem(capture(model, x, layer_module, None)[0])
    if method == "randomcam":
        return ref_randomcam(capture(model, x, layer_module, None)[0], seed)
    if method == "iscam":
        return ref_iscam(model, x, layer_module, class_idx, samples or 10)
    if method == "sscam":
        return ref_sscam(model, x, layer_module, class_idx, samples or 35, seed)
    if method == "smoothgradcampp":
        return ref_smoothgradcampp(model, x, layer_module, class_idx, samples or 4, seed)
    raise ValueError(f"no reference for {method!r}")


# --------------------------------------------------------------- one op's derivative inside a head

def channels_last_head_program(head: str) -> str:
    """A program whose CAM layer `feat` (conv2d, [N, 4, 4, 4]) is read channels last as `t`,
    with a learnable `w` ([4, 4], unbatched); `head` is an expression in `t` and `w` of shape
    [N, 4, 4, 4] that feeds a softmax gate, pooling and a linear, so every strategy must
    differentiate it; `cam C` is HiResCAM at `feat` with no upsampling or normalisation."""
    return textwrap.dedent(f"""\
        network Net(x: Tensor[N, 3, 4, 4]) {{
            feat = conv2d(x, 4, 3, padding=1)
            t = permute(feat, [0, 2, 3, 1])
            w = parameter([4, 4], init=0.3)
            y = {head}
            s = softmax(y, dim=-1)
            m = permute(y * s, [0, 3, 1, 2])
            fc = linear(flatten(adaptive_avgpool2d(m, 2)), 5)
            return fc
        }}

        cam C {{
            network = Net
            layer = feat
            method = hirescam
            upsample = none
            normalize = none
        }}
        """)


def hirescam_by_hooks(model: nn.Module, layer_module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """HiResCAM of the top-1 class at `layer_module` by a forward hook and one autograd backward."""
    _, _, logits = capture(model, x, layer_module, None)
    act, grad, _ = capture(model, x, layer_module, logits.argmax(1))
    return _hirescam(act, grad)


def assert_head_strategies_equal_hooks(prog) -> None:
    """For a program from `channels_last_head_program`: with `w` drawn in [-1, 1), the maps of every
    strategy equal HiResCAM by hooks and autograd through the whole network (1e-5)."""
    torch.manual_seed(1)
    net = prog.build("Net").eval()
    with torch.no_grad():
        net.w.uniform_(-1, 1)
    x = torch.randn(3, 3, 4, 4)
    want = hirescam_by_hooks(net, net.feat, x)
    assert (want > 0).any()
    for strategy in ("autograd", "forward", "compiled"):
        got = prog.explainer("C", net, strategy=strategy)(x).maps
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=strategy)
