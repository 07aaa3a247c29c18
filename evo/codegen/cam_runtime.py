# ---------------------------------------------------------------------------
# evo CAM runtime: class-activation-map math and gradient strategies.
#
# This file is pasted VERBATIM into every Python file that `evo` generates, so it
# depends on torch only (the two import lines below are its only imports), it has
# no module docstring, and every top-level name is either part of the contract
# used by the generated explainers or starts with `_cam_`.
#
# Shapes:  B = batch, C = channels of the CAM layer, h x w = its spatial size,
#          N = number of classes (logits), K = number of explained classes per
#          image, H x W = the network's input size.
#
# Everything here is deterministic on CPU (no random numbers, fixed chunking,
# stable sorts) and assumes that the network is in eval mode, so that sample b's
# logits depend on sample b only (no batch statistics, no dropout).
# ---------------------------------------------------------------------------
import torch
import torch.nn.functional as F

# The list of methods lives in evo/cam_methods.py (the compiler's one list); this
# file only implements them, keyed by the same names.


class CamResult:
    """What an explainer returns.

    maps     -- [B, H, W] (one class per image: `top1` or a single index) or
                [B, K, H, W] (topk / list / all), upsampled to the input size unless
                upsample is "none", in [0, 1] when normalize is "minmax". With
                several classes the maps stay at layer resolution (`raw`) until
                `maps` is first read; it is then built CAM_CHUNK classes at a time.
                maps_range(start, stop) gives classes start..stop-1 only and
                map_chunks(n) yields them n classes at a time, so B x K x H x W
                floats never need to exist at once (`evoc run --maps` streams them).
    classes  -- LongTensor [B] or [B, K]: the explained class indices.
    scores   -- the selected logits, same shape as `classes`.
    raw      -- list with one entry per CAM layer: the relu'd maps before upsampling
                and normalisation ([B, h, w] or [B, K, h, w], like `maps`).
    strategy -- how the gradient was obtained ("autograd", "forward", "compiled",
                or "none" for eigencam / scorecam).
    """

    __slots__ = ("_finish", "_maps", "classes", "raw", "scores", "strategy")

    def __init__(self, maps, classes, scores, raw, strategy, finish=None):
        self._maps = maps
        self._finish = finish  # (raws [B, K, h, w] per layer, input size, upsample, normalize, inference)
        self.classes = classes
        self.scores = scores
        self.raw = raw
        self.strategy = strategy

    @property
    def maps(self):
        if self._maps is None and self._finish is not None:
            parts = [m for _, _, m in self.map_chunks(CAM_CHUNK)]
            self._maps = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return self._maps

    @maps.setter
    def maps(self, value):
        self._maps = value
        self._finish = None

    def maps_range(self, start, stop):
        """The maps of class columns start..stop-1: [B, stop - start, H, W] (the
        upsampled, normalised maps of those classes only)."""
        if self._finish is None:
            m = self._maps if self._maps.dim() == 4 else self._maps.unsqueeze(1)
            return m[:, start:stop]
        raws, size, up, norm, inference = self._finish
        with torch.inference_mode(inference), torch.no_grad():
            return _cam_maps([r[:, start:stop] for r in raws], size, up, norm)

    def map_chunks(self, chunk=None):
        """Yield (start, stop, maps [B, stop - start, H, W]) over the class columns,
        `chunk` classes at a time (default CAM_CHUNK): at most B x chunk x H x W
        floats of maps exist at once."""
        k = self._finish[0][0].shape[1] if self._finish is not None else (
            self._maps.shape[1] if self._maps.dim() == 4 else 1)
        step = max(1, int(chunk or CAM_CHUNK))
        for start in range(0, k, step):
            stop = min(k, start + step)
            yield start, stop, self.maps_range(start, stop)

    def __repr__(self):
        maps = tuple(self._maps.shape) if self._maps is not None else (
            "not built yet" if self._finish is not None else None)
        classes = None if self.classes is None else tuple(self.classes.shape)
        return (
            f"CamResult(maps={maps}, classes={classes}, layers={len(self.raw)}, strategy={self.strategy!r})"
        )


# --------------------------------------------------------------------------- classes


def select_classes(logits, spec):
    """Pick the classes to explain from logits [B, N].

    spec is one of ("top1",), ("topk", k), ("index", i), ("list", (i, j, ...)),
    ("all",) (a bare string such as "top1" or "all" is accepted too).
    Returns a LongTensor [B] for top1 / index (these give [B, H, W] maps) and
    [B, K] for topk / list / all (these give [B, K, H, W] maps).
    top1 takes the first maximal logit on ties; topk is a stable descending sort
    (ties keep the lower index first); all is 0..N-1 in order.
    Raises ValueError for an unknown spec or an index outside [0, N).
    """
    if isinstance(spec, str):
        spec = (spec,)
    kind = spec[0]
    if logits.dim() != 2:
        raise ValueError(f"select_classes: logits must be [B, N], got {tuple(logits.shape)}")
    b, n = logits.shape
    dev = logits.device
    if kind == "top1":
        return logits.argmax(dim=1)
    if kind == "topk":
        k = int(spec[1])
        if k < 1 or k > n:
            raise ValueError(f"select_classes: topk({k}) needs 1 <= k <= {n}")
        order = torch.sort(logits, dim=1, descending=True, stable=True).indices
        return order[:, :k].contiguous()
    if kind == "index":
        i = int(spec[1])
        if i < 0 or i >= n:
            raise ValueError(f"select_classes: class index {i} out of range [0, {n})")
        return torch.full((b,), i, dtype=torch.long, device=dev)
    if kind == "list":
        idx = [int(i) for i in spec[1]]
        if not idx:
            raise ValueError("select_classes: empty class list")
        for i in idx:
            if i < 0 or i >= n:
                raise ValueError(f"select_classes: class index {i} out of range [0, {n})")
        return torch.tensor(idx, dtype=torch.long, device=dev).unsqueeze(0).expand(b, len(idx)).contiguous()
    if kind == "all":
        return torch.arange(n, dtype=torch.long, device=dev).unsqueeze(0).expand(b, n).contiguous()
    raise ValueError(f"select_classes: unknown class spec {spec!r}")


def gather_scores(logits, classes):
    """The logits of the selected classes: same shape as `classes` ([B] or [B, K])."""
    if classes.dim() == 1:
        return logits.gather(1, classes.unsqueeze(1)).squeeze(1)
    return logits.gather(1, classes)


def _cam_classes_2d(logits, classes):
    # classes: a LongTensor [B] / [B, K] or a select_classes spec -> LongTensor [B, K]
    if not isinstance(classes, torch.Tensor):
        classes = select_classes(logits, classes)
    classes = classes.to(device=logits.device, dtype=torch.long)
    if classes.dim() == 1:
        classes = classes.unsqueeze(1)
    return classes


class _CamProgress:
    # explain(..., progress=fn): fn(done, total) once per pass of a many-pass method (one
    # batched forward of the network or the head, or one noisy sample); each loop announces
    # its passes (plan) before it runs them, so `total` grows by layer / augmentation
    __slots__ = ("done", "fn", "total")

    def __init__(self, fn):
        self.fn = fn
        self.done = 0
        self.total = 0

    def plan(self, n):
        self.total += int(n)

    def step(self):
        self.done += 1
        self.fn(self.done, self.total)


def _cam_plan(progress, n):
    if progress is not None:
        progress.plan(n)


def _cam_step(progress):
    if progress is not None:
        progress.step()


# --------------------------------------------------------------------------- CAM math


def cam_from_grads(method, acts, grads, smooth=False):
    """Raw CAM maps [B, K, h, w] (relu applied, not normalised) from the layer
    activations acts [B, C, h, w] and the gradients grads [B, K, C, h, w] of the K
    selected class scores (or Finer-CAM targets) with respect to acts (A = acts,
    G = grads):

    gradcam / finercam : w_c = mean_ij G_cij;                 relu(sum_c w_c A_c)
    hirescam  :                                              relu(sum_c G_c * A_c)
    xgradcam  : w_c = sum_ij(G_cij A_cij) / (sum_ij A_cij + 1e-7); relu(sum_c w_c A_c)
    gradcampp : alpha = G^2 / (2 G^2 + sum_ij(A_c) G^3), 0 where that denominator is 0
                (pytorch-grad-cam adds eps=1e-6 instead);
                w_c = sum_ij alpha_cij relu(G_cij);          relu(sum_c w_c A_c)
    layercam  :                                              relu(sum_c relu(G_c) * A_c)
    gradcam_elementwise :                                    relu(sum_c relu(G_c * A_c))
    eigengradcam : relu(first principal component of G * A) (see project_2d)

    smooth=True (eigen_smooth): the sum over channels of the weighted activations
    (w_c A_c, G*A, relu(G)*A, relu(G*A)) is replaced by their first principal
    component (project_2d), then relu.
    """
    if acts.dim() != 4 or grads.dim() != 5:
        raise ValueError(
            "cam_from_grads: need acts [B,C,h,w] and grads [B,K,C,h,w], got "
            f"{tuple(acts.shape)} and {tuple(grads.shape)}"
        )
    a = acts.unsqueeze(1)  # [B, 1, C, h, w]
    g = grads
    if method in ("gradcam", "finercam"):
        return cam_from_channel_weights(acts, g.mean(dim=(-2, -1)), smooth)
    if method == "hirescam":
        return _cam_reduce(g * a, smooth)
    if method == "xgradcam":
        w = (g * a).sum(dim=(-2, -1)) / (a.sum(dim=(-2, -1)) + 1e-7)
        return cam_from_channel_weights(acts, w, smooth)
    if method == "gradcampp":
        g2 = g * g
        g3 = g2 * g
        denom = 2.0 * g2 + a.sum(dim=(-2, -1), keepdim=True) * g3
        w = (_cam_div0(g2, denom) * torch.relu(g)).sum(dim=(-2, -1))
        return cam_from_channel_weights(acts, w, smooth)
    if method == "layercam":
        return _cam_reduce(torch.relu(g) * a, smooth)
    if method == "gradcam_elementwise":
        return _cam_reduce(torch.relu(g * a), smooth)
    if method == "eigengradcam":
        return _cam_reduce(g * a, True)
    raise ValueError(f"cam_from_grads: {method!r} is not a method computed from gradients alone")


def _cam_div0(num, den):
    # num / den, 0 where den == 0
    nz = den != 0
    return torch.where(nz, num / torch.where(nz, den, torch.ones_like(den)), torch.zeros_like(num))


def _cam_reduce(t, smooth):
    # weighted activations t [B, K, C, h, w] -> relu(sum over channels) or, with smooth,
    # relu(first principal component) [B, K, h, w]
    if not smooth:
        return torch.relu(t.sum(dim=2))
    b, k, c, h, w = t.shape
    return torch.relu(project_2d(t.reshape(b * k, c, h, w))).reshape(b, k, h, w)


def cam_from_channel_weights(acts, weights, smooth=False):
    """relu(sum_c weights[b, k, c] * acts[b, c]) -> [B, K, h, w].

    acts [B, C, h, w], weights [B, K, C] (e.g. Grad-CAM weights from the forward
    strategy, or the folded constant weights of an affine head). smooth=True
    (eigen_smooth): relu of the first principal component of weights * acts instead
    of the sum over channels.
    """
    if weights.dim() != 3:
        raise ValueError(f"cam_from_channel_weights: weights must be [B, K, C], got {tuple(weights.shape)}")
    weights = weights.to(acts.dtype)
    if smooth:
        return _cam_reduce(weights[..., None, None] * acts.unsqueeze(1), True)
    return torch.relu(torch.einsum("bkc,bchw->bkhw", weights, acts))


def expand_channel_weights(weights, size):
    """View per-channel weights [B, K, C] as spatially constant gradients
    [B, K, C, h, w] (no copy). Exact for every gradient method when the head's
    gradient does not depend on the position (e.g. global average pooling followed
    by an affine head: dScore_k/dA_cij = W[k, c] / (h*w)); in that case pass
    W[classes] / (h*w) here and feed the result to cam_from_grads.
    """
    h, w = int(size[-2]), int(size[-1])
    return weights[..., None, None].expand(*weights.shape, h, w)


def project_2d(t):
    """The projection of t [N, C, h, w] on its first principal component [N, h, w]
    (pytorch-grad-cam's get_2d_projection, no relu): per item reshape to X [h*w, C],
    subtract the mean over positions, SVD (in float64), project X onto the first
    right-singular vector; NaNs count as 0. The SVD's sign is arbitrary, so it is
    fixed: p is flipped when sum_ij p_ij * m_ij < 0, where m = mean over channels of
    t (p correlates positively with the mean; p has zero mean, so this is the sign
    of their covariance); when that sum is exactly 0, the entry of largest |p|
    (first one on ties) is made positive.
    """
    n, c, h, w = t.shape
    a = torch.nan_to_num(t, nan=0.0).to(torch.float64)
    x = a.reshape(n, c, h * w).transpose(1, 2)  # [N, hw, C]
    xc = x - x.mean(dim=1, keepdim=True)
    vh = torch.linalg.svd(xc, full_matrices=False).Vh  # [N, min(hw, C), C]
    p = torch.bmm(xc, vh[:, 0, :].unsqueeze(2)).squeeze(2)  # [N, hw]
    return _cam_fix_sign(p, a.mean(dim=1).reshape(n, h * w)).reshape(n, h, w).to(t.dtype)


def _cam_fix_sign(p, m):
    # flip each row of p [N, P] to correlate positively with m [N, P] (ties: largest |p| > 0)
    corr = (p * m).sum(dim=1)
    peak = p.gather(1, p.abs().argmax(dim=1, keepdim=True)).squeeze(1)
    sign = torch.where(corr != 0, torch.sign(corr), torch.sign(peak))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return p * sign.unsqueeze(1)


def eigencam(acts):
    """Eigen-CAM [B, 1, h, w]: relu(project_2d(acts)), the projection of the
    activations on their first principal component (sign fixed to correlate
    positively with the mean activation, see project_2d)."""
    return torch.relu(project_2d(acts)).unsqueeze(1)


def kpcacam(acts, gamma=None):
    """KPCA-CAM [B, 1, h, w]: the first kernel principal component of the activations
    (pytorch-grad-cam's default: scikit-learn KernelPCA(n_components=1,
    kernel="sigmoid", gamma=None)). Per image X [h*w, C] is centred over positions;
    K = tanh(gamma X X^T + 1) with gamma = 1 / C by default; K is double-centred
    (Kc = K - 1K - K1 + 1K1 with 1 = ones / (h*w)); the map is v * sqrt(lambda) for
    the largest eigenpair (lambda, v) of Kc (0 when lambda <= 0), in float64, its sign
    fixed as in project_2d; then relu.
    """
    b, c, h, w = acts.shape
    a = torch.nan_to_num(acts, nan=0.0).to(torch.float64)
    x = a.reshape(b, c, h * w).transpose(1, 2)
    x = x - x.mean(dim=1, keepdim=True)
    g = 1.0 / c if gamma is None else float(gamma)
    k = torch.tanh(g * torch.bmm(x, x.transpose(1, 2)) + 1.0)
    kc = k - k.mean(dim=1, keepdim=True) - k.mean(dim=2, keepdim=True) + k.mean(dim=(1, 2), keepdim=True)
    vals, vecs = torch.linalg.eigh(kc)
    lam = vals[:, -1].clamp(min=0)
    p = vecs[:, :, -1] * lam.sqrt().unsqueeze(1)
    p = _cam_fix_sign(p, a.mean(dim=1).reshape(b, h * w))
    return torch.relu(p).reshape(b, 1, h, w).to(acts.dtype)


def fem(acts, k=2.0):
    """FEM [B, 1, h, w] (Feature Explanation Method, gradient-free, class-agnostic):
    per channel the share of positions where A_c > mean_ij(A_c) + k * std_ij(A_c)
    (population std) is the channel's weight; relu(sum_c w_c A_c)."""
    mean = acts.mean(dim=(2, 3), keepdim=True)
    std = acts.std(dim=(2, 3), unbiased=False, keepdim=True)
    w = (acts > mean + k * std).to(acts.dtype).mean(dim=(2, 3))
    return cam_from_channel_weights(acts, w.unsqueeze(1))


def randomcam(acts, seed=0, smooth=False):
    """RandomCAM [B, 1, h, w] (a baseline for the metrics): channel weights uniform
    in [-1, 1) drawn from torch.Generator().manual_seed(seed) ([B, C], float64, on
    the CPU); relu(sum_c w_c A_c). Deterministic for a seed."""
    b, c = acts.shape[:2]
    gen = torch.Generator().manual_seed(int(seed))
    w = torch.rand(b, c, generator=gen, dtype=torch.float64) * 2.0 - 1.0
    return cam_from_channel_weights(acts, w.to(device=acts.device, dtype=acts.dtype).unsqueeze(1), smooth)


def scorecam(model_fn, x, acts, classes, batch_size=32, smooth=False, progress=None):
    """Score-CAM [B, K, h, w].

    For every channel c of image b: upsample acts[b, c] to the input size (bilinear,
    align_corners=False), min-max normalise it to [0, 1] (all 0 when constant),
    multiply the input x[b] by it, run model_fn (the whole network, x -> logits
    [*, N]) and keep the logits of the selected classes. The weights are the
    softmax over channels of those logits (per image and class), and the map is
    relu(sum_c w_c A_c). The B*C masked inputs are run in chunks of `batch_size`
    (image-major, channel-minor), under torch.no_grad().
    classes: LongTensor [B] or [B, K] (or a select_classes spec, then the logits of
    model_fn(x) are used to select). progress: None or a _CamProgress (one step per
    chunk), as for iscam, sscam, ablationcam and reciprocam.
    """
    b, c, h, w = acts.shape
    size = (int(x.shape[-2]), int(x.shape[-1]))
    batch_size = max(1, int(batch_size))
    with torch.no_grad():
        if not isinstance(classes, torch.Tensor):
            classes = select_classes(model_fn(x), classes)
        cls = classes.to(device=acts.device, dtype=torch.long)
        if cls.dim() == 1:
            cls = cls.unsqueeze(1)
        k = cls.shape[1]
        n = b * c
        flat_acts = acts.reshape(n, 1, h, w)
        chunks = []
        _cam_plan(progress, -(-n // batch_size))
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(n, start + batch_size), device=acts.device)
            bi = torch.div(idx, c, rounding_mode="floor")
            mask = normalize(upsample(flat_acts[idx], size, "bilinear"), "minmax")  # [m, 1, H, W]
            out = model_fn(x[bi] * mask.to(x.dtype))
            chunks.append(out.gather(1, cls[bi]))  # [m, K]
            _cam_step(progress)
        scores = torch.cat(chunks, dim=0).reshape(b, c, k)
        weights = torch.softmax(scores.transpose(1, 2), dim=-1)  # [B, K, C]
        return cam_from_channel_weights(acts, weights, smooth)


def _cam_masks(x, acts_rows):
    # acts rows [m, 1, h, w] -> min-max normalised masks at the input size [m, 1, H, W]
    size = (int(x.shape[-2]), int(x.shape[-1]))
    return normalize(upsample(acts_rows, size, "bilinear"), "minmax").to(x.dtype)


def iscam(model_fn, x, acts, classes, batch_size=32, samples=10, smooth=False, progress=None):
    """IS-CAM [B, K, h, w] (Integrated Score-CAM): like scorecam, but the score of
    channel c is the mean over i = 1..samples of the logit of x * (i / samples) *
    mask_c (the masked input scaled along the path from 0 to x); weights =
    softmax over channels; relu(sum_c w_c A_c). (torchcam also subtracts the clean
    score, a constant per class that the softmax ignores.) Chunks of `batch_size`
    masked inputs, under torch.no_grad()."""
    b, c, h, w = acts.shape
    cls = _cam_classes_2d(model_fn(x), classes) if not isinstance(classes, torch.Tensor) else classes
    cls = cls.to(device=acts.device, dtype=torch.long)
    cls = cls if cls.dim() == 2 else cls.unsqueeze(1)
    k = cls.shape[1]
    n = b * c
    flat = acts.reshape(n, 1, h, w)
    batch_size = max(1, int(batch_size))
    total = torch.zeros(n, k, dtype=torch.float64, device=acts.device)
    _cam_plan(progress, -(-n // batch_size) * int(samples))
    with torch.no_grad():
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(n, start + batch_size), device=acts.device)
            bi = torch.div(idx, c, rounding_mode="floor")
            masked = x[bi] * _cam_masks(x, flat[idx])
            for i in range(1, int(samples) + 1):
                total[idx] += model_fn(masked * (i / samples)).gather(1, cls[bi]).to(torch.float64)
                _cam_step(progress)
    weights = torch.softmax((total / samples).reshape(b, c, k).transpose(1, 2), dim=-1)
    return cam_from_channel_weights(acts, weights.to(acts.dtype), smooth)


_CAM_NOISE_BLOCK = 32  # channels per noise draw in sscam: the random stream does not depend on batch_size


def sscam(model_fn, x, acts, classes, samples=35, std=2.0, seed=0, smooth=False, progress=None):
    """SS-CAM [B, K, h, w] (Smoothed Score-CAM, torchcam's defaults): the score of
    channel c is the mean over `samples` draws of the logit of x * (mask_c + noise),
    noise ~ N(0, std^2) per pixel of the input-size mask; weights = softmax over
    channels; relu(sum_c w_c A_c). The noise comes from
    torch.Generator().manual_seed(seed) on the CPU in a fixed order (sample, image,
    blocks of 32 channels: randn(m, 1, H, W) each), so the map is deterministic for a
    seed; each block is one forward pass, under torch.no_grad()."""
    b, c, h, w = acts.shape
    cls = _cam_classes_2d(model_fn(x), classes) if not isinstance(classes, torch.Tensor) else classes
    cls = cls.to(device=acts.device, dtype=torch.long)
    cls = cls if cls.dim() == 2 else cls.unsqueeze(1)
    k = cls.shape[1]
    hh, ww = int(x.shape[-2]), int(x.shape[-1])
    gen = torch.Generator().manual_seed(int(seed))
    total = torch.zeros(b, c, k, dtype=torch.float64, device=acts.device)
    _cam_plan(progress, int(samples) * b * -(-c // _CAM_NOISE_BLOCK))
    with torch.no_grad():
        for _ in range(int(samples)):
            for bi in range(b):
                for c0 in range(0, c, _CAM_NOISE_BLOCK):
                    c1 = min(c, c0 + _CAM_NOISE_BLOCK)
                    noise = torch.randn(c1 - c0, 1, hh, ww, generator=gen, dtype=torch.float32) * std
                    noise = noise.to(device=x.device, dtype=x.dtype)
                    masks = _cam_masks(x, acts[bi, c0:c1].unsqueeze(1)) + noise
                    out = model_fn(x[bi].unsqueeze(0) * masks)  # [m, N]
                    total[bi, c0:c1] += out[:, cls[bi]].to(torch.float64)
                    _cam_step(progress)
    weights = torch.softmax((total / samples).transpose(1, 2), dim=-1)
    return cam_from_channel_weights(acts, weights.to(acts.dtype), smooth)


def ablationcam(head_fn, acts, classes, batch_size=32, smooth=False, progress=None):
    """Ablation-CAM [B, K, h, w], batched: for every channel c of image b the head is
    run on the activation with channel c set to 0 (many ablated channels per
    forward, `batch_size` at a time, under torch.no_grad()); with y the selected
    score and y_c the ablated one, w_c = (y - y_c) / y (0 where y == 0);
    relu(sum_c w_c A_c). head_fn(rows, image_index) -> logits evaluates the part
    of the network after the layer for rows of the images image_index (so that side
    values, e.g. a residual skip, follow their image). classes: LongTensor [B, K].
    (pytorch-grad-cam ablates to min - 1e7 when the layer has negative values; the
    paper and this function set the channel to 0.)"""
    b, c, h, w = acts.shape
    cls = classes if classes.dim() == 2 else classes.unsqueeze(1)
    batch_size = max(1, int(batch_size))
    with torch.no_grad():
        y = head_fn(acts, torch.arange(b, device=acts.device)).gather(1, cls)  # [B, K]
        n = b * c
        parts = []
        _cam_plan(progress, -(-n // batch_size))
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(n, start + batch_size), device=acts.device)
            bi = torch.div(idx, c, rounding_mode="floor")
            ci = idx - bi * c
            rows = acts[bi].clone()
            rows[torch.arange(idx.numel(), device=acts.device), ci] = 0
            parts.append(head_fn(rows, bi).gather(1, cls[bi]))  # [m, K]
            _cam_step(progress)
        yc = torch.cat(parts).reshape(b, c, -1).transpose(1, 2)  # [B, K, C]
        weights = _cam_div0(y.unsqueeze(2) - yc, y.unsqueeze(2).expand_as(yc))
        return cam_from_channel_weights(acts, weights, smooth)


def reciprocam(head_fn, acts, classes, batch_size=32, progress=None):
    """Recipro-CAM [B, K, h, w] (gradient-free): for every position (i, j) the head is
    run on the activation masked to that position (A * e_ij, every channel, all
    other positions 0); the map at (i, j) is the softmax probability of the
    selected class for that input. Batched (`batch_size` masked activations per
    forward), under torch.no_grad(); head_fn as in ablationcam."""
    b, c, h, w = acts.shape
    cls = classes if classes.dim() == 2 else classes.unsqueeze(1)
    p = h * w
    n = b * p
    batch_size = max(1, int(batch_size))
    with torch.no_grad():
        parts = []
        _cam_plan(progress, -(-n // batch_size))
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(n, start + batch_size), device=acts.device)
            bi = torch.div(idx, p, rounding_mode="floor")
            pi = idx - bi * p
            onehot = torch.zeros(idx.numel(), p, dtype=acts.dtype, device=acts.device)
            onehot[torch.arange(idx.numel(), device=acts.device), pi] = 1
            rows = acts[bi] * onehot.reshape(-1, 1, h, w)
            parts.append(torch.softmax(head_fn(rows, bi), dim=1).gather(1, cls[bi]))  # [m, K]
            _cam_step(progress)
        return torch.cat(parts).reshape(b, p, -1).transpose(1, 2).reshape(b, -1, h, w).to(acts.dtype)


def cam_weights(acts, weights, smooth=False):
    """The original CAM [B, K, h, w]: relu(sum_c W[class, c] A_c) with W the class
    weights of an affine head (global average pooling + linear: W = d logit /
    d pooled feature), given as weights [B, K, C]."""
    return cam_from_channel_weights(acts, weights, smooth)


# --------------------------------------------------------------------------- maps


def upsample(maps, size, mode):
    """Resize maps [..., h, w] to size (H, W) (a torch.Size / x.shape works: its last
    two entries are used). mode: "bilinear" (align_corners=False), "nearest"
    (PyTorch's F.interpolate "nearest") or "none" (returned unchanged).
    """
    if mode == "none":
        return maps
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"upsample: unknown mode {mode!r} (bilinear | nearest | none)")
    out_h, out_w = int(size[-2]), int(size[-1])
    h, w = maps.shape[-2], maps.shape[-1]
    if (h, w) == (out_h, out_w):
        return maps
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, h, w)
    if mode == "bilinear":
        flat = F.interpolate(flat, size=(out_h, out_w), mode="bilinear", align_corners=False)
    else:
        flat = F.interpolate(flat, size=(out_h, out_w), mode="nearest")
    return flat.reshape(*lead, out_h, out_w)


def normalize(maps, mode):
    """mode "minmax": every map (the last two dims) is mapped to [0, 1] by
    (m - min) / (max - min); a constant map becomes all 0. mode "none": unchanged."""
    if mode == "none":
        return maps
    if mode != "minmax":
        raise ValueError(f"normalize: unknown mode {mode!r} (minmax | none)")
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    hi = maps.amax(dim=(-2, -1), keepdim=True)
    rng = hi - lo
    ok = rng > 0
    return torch.where(ok, (maps - lo) / torch.where(ok, rng, torch.ones_like(rng)), torch.zeros_like(maps))


def combine_layers(list_of_maps, size, mode="bilinear"):
    """Combine the raw maps of several CAM layers ([..., h_l, w_l] each, same
    leading dims): resize every layer's maps to size (H, W) with `mode` ("none"
    means bilinear here, because the layers must share one grid), min-max
    normalise each map, and take the element-wise mean over layers. The result is
    in [0, 1] but not stretched; normalize it again to reach exactly [0, 1]
    (pytorch-grad-cam likewise scales each layer, averages, and rescales).
    """
    resize = "bilinear" if mode == "none" else mode
    stack = [normalize(upsample(m, size, resize), "minmax") for m in list_of_maps]
    return torch.stack(stack, dim=0).mean(dim=0)


# --------------------------------------------------------------------------- strategies


def _cam_select(logits, cls, coef):
    # the explained scores [B, K]: the selected logits, or sum_n coef[b, k, n] logits[b, n]
    if coef is None:
        return logits.gather(1, cls)
    return (logits.unsqueeze(1) * coef.to(logits.dtype)).sum(dim=2)


def grads_autograd(head, acts, classes, batched=False, coef=None, hessian=False):
    """Reverse-mode gradients of the selected class scores w.r.t. the CAM layer.

    head: callable A [B, C, h, w] -> logits [B, N] (the network after the layer,
    eval mode). classes: LongTensor [B] / [B, K] or a select_classes spec (selected
    from head's logits). A fresh leaf A = acts.detach().requires_grad_(True) is
    used and torch.autograd.grad is asked for dA only, so nothing flows into the
    layers before the CAM layer, no parameter .grad is written, and no hooks are
    used. Each class column k needs one backward of sum_b score[b, k] (the head is
    batch-independent, so that sum's gradient w.r.t. A_b is d score[b, k] / d A_b);
    with batched=True the K backward passes run as one vmapped call
    (is_grads_batched). Runs under torch.enable_grad(); cannot run inside
    torch.inference_mode().
    Returns (grads [B, K, C, h, w], logits [B, N] detached, classes [B, K]).
    """
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            "grads_autograd: the autograd strategy cannot run inside torch.inference_mode(); "
            "use the forward or compiled strategy there"
        )
    a = acts.detach()
    if a.is_inference():
        a = a.clone()
    a.requires_grad_(True)
    with torch.enable_grad():
        logits = head(a)
        cls = _cam_classes_2d(logits, classes)
        sel = _cam_select(logits, cls, coef)  # [B, K]
        k = sel.shape[1]
        if hessian:
            # d score / dA with its graph, then the Hessian-vector product H A = d <G, A> / dA
            cols, hcols = [], []
            for j in range(k):
                (g,) = torch.autograd.grad(sel[:, j].sum(), a, retain_graph=True, create_graph=True)
                (hv,) = torch.autograd.grad(
                    g, a, grad_outputs=a.detach(), retain_graph=True, allow_unused=True,
                    materialize_grads=True,
                )
                cols.append(g.detach())
                hcols.append(hv.detach())
            return torch.stack(cols, dim=1), logits.detach(), cls, torch.stack(hcols, dim=1)
        if batched and k > 1:
            eye = torch.eye(k, dtype=sel.dtype, device=sel.device)
            outs = eye.unsqueeze(1).expand(k, sel.shape[0], k)  # [K, B, K]
            (g,) = torch.autograd.grad(
                sel, a, grad_outputs=outs, is_grads_batched=True, allow_unused=True, materialize_grads=True
            )
            grads = g.transpose(0, 1)
        else:
            cols = []
            for j in range(k):
                (g,) = torch.autograd.grad(
                    sel[:, j].sum(), a, retain_graph=j < k - 1, allow_unused=True, materialize_grads=True
                )
                cols.append(g)
            grads = torch.stack(cols, dim=1)
    return grads.detach(), logits.detach(), cls


def _cam_chunk(total, per_tangent, chunk_size):
    # number of tangents per vmapped JVP call: explicit, or ~2**24 tangent elements
    if chunk_size is not None:
        return max(1, int(chunk_size))
    return max(1, min(total, (1 << 24) // max(1, per_tangent)))


def _cam_jvp_columns(head, a, tangents):
    # tangents [m, C, h, w], the same for every sample -> d logits / d tangent, [m, B, N]
    shape = a.shape

    def one(t):
        return torch.func.jvp(head, (a,), (t.expand(shape),))[1]

    return torch.func.vmap(one)(tangents)


class _CamNestedForward(torch.overrides.TorchFunctionMode):
    # silu and hardsigmoid have derivatives (silu_backward, hardsigmoid_backward) without a
    # forward-mode derivative in PyTorch, and layer_norm's nested JVP is not its second
    # derivative: nested JVPs see them as compositions of ops that have one (the same function
    # and the same derivative, away from hardsigmoid's kinks)
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.silu:
            return args[0] * torch.sigmoid(args[0])
        if func is F.hardsigmoid:
            return F.relu6(args[0] + 3.0) / 6.0
        if func is F.layer_norm:  # its forward-over-forward derivative is wrong: written out
            x, shape = args[0], tuple(args[1])
            weight = args[2] if len(args) > 2 else kwargs.get("weight")
            bias = args[3] if len(args) > 3 else kwargs.get("bias")
            eps = args[4] if len(args) > 4 else kwargs.get("eps", 1e-5)
            dims = tuple(range(-len(shape), 0))
            mean = x.mean(dims, keepdim=True)
            y = (x - mean) / torch.sqrt((x - mean).pow(2).mean(dims, keepdim=True) + eps)
            y = y * weight if weight is not None else y
            return y + bias if bias is not None else y
        return func(*args, **kwargs)


def _cam_jvp2_columns(head, a, tangents):
    # (d logits / d tangent, d/dt of that along a) [m, B, N] each: the second is
    # tangent^T H a, the Hessian-vector product's component, by nested forward mode
    shape = a.shape

    def one(t):
        def inner(x):
            return torch.func.jvp(head, (x,), (t.expand(shape),))[1]

        return torch.func.jvp(inner, (a,), (a,))

    return torch.func.vmap(one)(tangents)


def _cam_pick(out, cls, coef):
    # out [m, B, N] -> the explained scores [m, B, K]
    if coef is None:
        return out.gather(2, cls.unsqueeze(0).expand(out.shape[0], *cls.shape))
    return torch.einsum("mbn,bkn->mbk", out, coef.to(out.dtype))


def weights_forward(head, acts, classes, chunk_size=None, coef=None, hessian=False):
    """Grad-CAM channel weights by forward mode only (no backward pass).

    For every channel c one JVP of head at A with the tangent that is 1/(h*w) on
    channel c (and 0 elsewhere), identical for every sample: since sample b's
    logits depend on A_b only, the JVP's output [B, N] is mean_ij dlogit[b, n] /
    dA[b, c, i, j], i.e. the Grad-CAM weight of EVERY class at once. The C JVPs
    are vmapped (torch.func.vmap of torch.func.jvp) in chunks of `chunk_size`
    tangents (default: about 2**24 tangent elements per chunk), under no_grad.
    classes: LongTensor [B] / [B, K] or a select_classes spec; coef as in
    grads_autograd. hessian=True also returns mean_ij (H A)_cij [B, K, C] (nested
    forward mode: the JVP along A of each channel's JVP).
    Returns (weights [B, K, C], logits [B, N], classes [B, K]) (+ hvp means); feed
    the weights to cam_from_channel_weights (exact for gradcam only).
    """
    a = acts.detach()
    b, c, h, w = a.shape
    with torch.no_grad():
        logits = head(a)
        cls = _cam_classes_2d(logits, classes)
        step = _cam_chunk(c, b * c * h * w, chunk_size)
        parts, hparts = [], []
        for start in range(0, c, step):
            stop = min(c, start + step)
            t = torch.zeros(stop - start, c, h, w, dtype=a.dtype, device=a.device)
            t[torch.arange(stop - start), torch.arange(start, stop)] = 1.0 / (h * w)
            if hessian:
                with _CamNestedForward():
                    d1, d2 = _cam_jvp2_columns(head, a, t)
                parts.append(_cam_pick(d1, cls, coef))
                hparts.append(_cam_pick(d2, cls, coef))
            else:
                parts.append(_cam_pick(_cam_jvp_columns(head, a, t), cls, coef))  # [m, B, K]
        weights = torch.cat(parts, dim=0).permute(1, 2, 0)  # [B, K, C]
        if hessian:
            return weights, logits, cls, torch.cat(hparts, dim=0).permute(1, 2, 0)
    return weights, logits, cls


def grads_forward(head, acts, classes, chunk_size=None, coef=None):
    """Full elementwise gradients by forward mode: one JVP per basis tangent e_cij
    (C*h*w of them, the same for every sample, vmapped in chunks of `chunk_size`,
    default about 2**24 tangent elements per chunk), under no_grad; only the
    selected classes are kept from each chunk. For hirescam / xgradcam /
    gradcampp / layercam with the forward strategy (cost: C*h*w JVPs).
    Returns (grads [B, K, C, h, w], logits [B, N], classes [B, K]).
    """
    a = acts.detach()
    b, c, h, w = a.shape
    p = c * h * w
    with torch.no_grad():
        logits = head(a)
        cls = _cam_classes_2d(logits, classes)
        k = cls.shape[1]
        step = _cam_chunk(p, b * p, chunk_size)
        parts = []
        for start in range(0, p, step):
            stop = min(p, start + step)
            t = torch.zeros(stop - start, p, dtype=a.dtype, device=a.device)
            t[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
            out = _cam_jvp_columns(head, a, t.reshape(stop - start, c, h, w))  # [m, B, N]
            parts.append(_cam_pick(out, cls, coef))  # [m, B, K]
        grads = torch.cat(parts, dim=0).permute(1, 2, 0).reshape(b, k, c, h, w)
    return grads, logits, cls


# --------------------------------------------------------------------------- driver


def run_cam(
    method,
    acts_list,
    derivs,
    classes,
    scores,
    input_size,
    upsample_mode="bilinear",
    normalize_mode="minmax",
    single=None,
    strategy="autograd",
    model_fn=None,
    x=None,
    batch_size=32,
):
    """The one call a generated explainer makes once it has the layer activations.

    method         -- gradcam | hirescam | xgradcam | gradcampp | layercam | eigencam | scorecam
    acts_list      -- list of CAM layer activations, each [B, C_l, h_l, w_l] (or one tensor)
    derivs         -- per layer, what the strategy produced: a list (same order as
                      acts_list) or a callable (layer_index, acts) -> tensor, where the
                      tensor is grads [B, K, C, h, w] (any gradient method), channel
                      weights [B, K, C] (gradcam only; use expand_channel_weights for
                      spatially constant gradients), or ready raw maps [B, K, h, w].
                      Ignored (may be None) for eigencam and scorecam.
    classes        -- LongTensor [B] or [B, K] (from select_classes / the strategies)
    scores         -- the selected logits, same shape as classes (may be None)
    input_size     -- (H, W), or x.shape: the size maps are upsampled to
    upsample_mode  -- bilinear | nearest | none
    normalize_mode -- minmax | none
    single         -- True: maps [B, H, W] and classes / scores [B]; False: [B, K, ...];
                      None: True exactly when classes is 1-D
    strategy       -- recorded in the result ("none" is recorded for eigencam / scorecam)
    model_fn, x, batch_size -- scorecam only: the whole network, its input, chunk size

    One layer: raw -> upsample -> normalize. Several layers: combine_layers (each
    layer resized to the input size, or to the largest layer's grid when upsample is
    "none", and min-max normalised, then averaged) -> normalize.
    eigencam is class-agnostic: its single map is repeated for the K classes.
    Runs under torch.no_grad(): the result carries no autograd graph.
    Returns a CamResult.
    """
    with torch.no_grad():
        return _cam_run(
            method,
            acts_list,
            derivs,
            classes,
            scores,
            input_size,
            upsample_mode,
            normalize_mode,
            single,
            strategy,
            model_fn,
            x,
            batch_size,
        )


def _cam_run(
    method,
    acts_list,
    derivs,
    classes,
    scores,
    input_size,
    upsample_mode,
    normalize_mode,
    single,
    strategy,
    model_fn,
    x,
    batch_size,
):
    if isinstance(acts_list, torch.Tensor):
        acts_list = [acts_list]
    if single is None:
        single = classes.dim() == 1
    cls = classes if classes.dim() == 2 else classes.unsqueeze(1)
    k = cls.shape[1]
    raws = []
    for i, acts in enumerate(acts_list):
        if acts.dim() != 4:
            raise ValueError(f"run_cam: CAM layer {i} must be [B, C, h, w], got {tuple(acts.shape)}")
        if method == "eigencam":
            m = eigencam(acts).expand(acts.shape[0], k, acts.shape[2], acts.shape[3])
        elif method == "scorecam":
            if model_fn is None or x is None:
                raise ValueError("run_cam: scorecam needs model_fn and x")
            m = scorecam(model_fn, x, acts, cls, batch_size)
        else:
            d = derivs(i, acts) if callable(derivs) else derivs[i]
            if d.dim() == 5:
                m = cam_from_grads(method, acts, d)
            elif d.dim() == 3:
                if method != "gradcam":
                    raise ValueError(
                        f"run_cam: channel weights [B, K, C] only define gradcam, not {method}; "
                        "pass gradients [B, K, C, h, w]"
                    )
                m = cam_from_channel_weights(acts, d)
            elif d.dim() == 4:
                m = d
            else:
                raise ValueError(
                    f"run_cam: layer {i}: expected grads [B,K,C,h,w], weights [B,K,C] or maps "
                    f"[B,K,h,w], got {tuple(d.shape)}"
                )
        raws.append(m)
    if method in ("eigencam", "scorecam"):
        strategy = "none"
    return finish_maps(raws, cls, scores, input_size, upsample_mode, normalize_mode, single, strategy)


# --------------------------------------------------------------------------- methods beyond one gradient


def finer_coefficients(logits, classes, comparisons=(1, 2, 3), alpha=1.0):
    """Finer-CAM's target as logit coefficients [B, K, N] (pytorch-grad-cam's
    FinerWeightedTarget): for the main class m the comparison classes j are those at
    positions `comparisons` when all classes are sorted by |logit - logit_m|
    (stable; m itself first), and the explained score is
    T = sum_j p_j (y_m - alpha y_j) / (sum_j p_j + 1e-9), p = softmax(logits).
    Since d T / dA = sum_n (d T / d y_n) (d y_n / dA), explaining T is explaining
    sum_n coef_n y_n with coef = d T / d y, in closed form:
    coef_n = (dN_n - T dD_n) / D with N = sum_j p_j d_j, d_j = y_m - alpha y_j,
    D = sum_j p_j + 1e-9, dN_n = [n in J] p_n (d_n - alpha) - p_n N + (D - 1e-9) [n == m],
    dD_n = [n in J] p_n - p_n (D - 1e-9).
    """
    y = logits.to(torch.float64)
    b, n = y.shape
    cls = classes if classes.dim() == 2 else classes.unsqueeze(1)
    k = cls.shape[1]
    ym = y.gather(1, cls)  # [B, K]
    dist = (y.unsqueeze(1) - ym.unsqueeze(2)).abs()  # [B, K, N]
    dist = dist.scatter(2, cls.unsqueeze(2), -1.0)  # the main class sorts first
    order = torch.sort(dist, dim=2, stable=True).indices
    pos = [int(i) for i in comparisons if 0 < int(i) < n]
    comp = order[:, :, pos]  # [B, K, J]
    p = torch.softmax(y, dim=1).unsqueeze(1).expand(b, k, n)
    pj = p.gather(2, comp)
    dj = ym.unsqueeze(2) - alpha * y.unsqueeze(1).expand(b, k, n).gather(2, comp)
    num = (pj * dj).sum(dim=2, keepdim=True)
    d0 = pj.sum(dim=2, keepdim=True)
    den = d0 + 1e-9
    t = num / den
    zeros = torch.zeros(b, k, n, dtype=torch.float64, device=y.device)
    dnum = zeros.scatter_add(2, comp, pj * (dj - alpha)) - p * num
    dnum = dnum.scatter_add(2, cls.unsqueeze(2), d0)
    dden = zeros.scatter_add(2, comp, pj) - p * d0
    return ((dnum - t * dden) / den).to(logits.dtype)


def _cam_derivs(exp, i, acts, side, head, classes, strategy, coef, need, hessian):
    # one layer's gradient by one strategy -> (grads or channel means, hvp or None, logits, classes)
    hv = None
    if strategy == "compiled":
        fn = getattr(exp, f"compiled{i}")
        logits, cls, d = fn(acts, *side, classes, coef)
        cls = cls if cls.dim() == 2 else cls.unsqueeze(1)
        if hessian:
            if d.dim() == 3:  # a folded (affine) head: the Hessian is 0
                hv = torch.zeros_like(d)
            else:
                hv = torch.func.jvp(lambda a: fn(a, *side, cls, coef)[2], (acts,), (acts,))[1]
        return d, hv, logits, cls
    if strategy == "autograd":
        out = grads_autograd(head, acts, classes, coef=coef, hessian=hessian)
        return out[0], (out[3] if hessian else None), out[1], out[2]
    if strategy == "forward" and need == "channel":
        out = weights_forward(head, acts, classes, coef=coef, hessian=hessian)
        return out[0], (out[3] if hessian else None), out[1], out[2]
    if strategy == "forward":
        d, logits, cls = grads_forward(head, acts, classes, coef=coef)
        return d, None, logits, cls
    raise ValueError(f"unknown strategy {strategy!r} (autograd | forward | compiled)")


def _cam_elementwise(d, acts):
    # channel weights of a folded affine head ([B, K, C], the same at every position) -> [B, K, C, h, w]
    return expand_channel_weights(d, acts.shape) if d.dim() == 3 else d


def _cam_trunk(exp, x, strategy):
    # the network up to the CAM layers; for the autograd strategy it runs under
    # inference_mode too (only the head is differentiated): its side values are cloned
    # out of inference mode so that the head may save them for backward (grads_autograd
    # clones the layer activation it differentiates)
    if strategy != "autograd" or torch.is_inference_mode_enabled():
        return exp.trunk(x)
    with torch.inference_mode():
        acts, sides = exp.trunk(x)
    return acts, tuple(tuple(v.clone() for v in side) for side in sides)


def _cam_heads(exp, sides):
    heads, rows = [], []
    for i, side in enumerate(sides):
        fn = getattr(exp, f"head{i}")

        def head(a, fn=fn, side=side):
            return fn(a, *side)

        def by_rows(r, bi, fn=fn, side=side):
            return fn(r, *[s[bi] for s in side])

        heads.append(head)
        rows.append(by_rows)
    return heads, rows


_CAM_CHANNEL = ("gradcam", "finercam", "shapleycam")  # need only mean_ij of the gradient
_CAM_ELEMENT = ("hirescam", "xgradcam", "gradcampp", "layercam", "gradcam_elementwise", "eigengradcam")


def cam_raw(exp, x, classes, strategy, progress=None):
    """The raw maps of every CAM layer of explainer `exp` for input x: (list of
    [B, K, h_l, w_l] (relu'd, at layer resolution), logits [B, N], classes [B, K]).
    exp provides method, seed, eigen_smooth, layers, model, trunk(x), head<i>(acts,
    *side) and, for the compiled strategy and cam, compiled<i>(acts, *side, spec,
    coef). classes: a select_classes spec or a LongTensor [B] / [B, K]. progress: None
    or a _CamProgress (stepped once per pass of a many-pass method)."""
    method = exp.method
    smooth = bool(exp.eigen_smooth)
    if method == "fullgrad":  # the whole network's gradients: no CAM layer
        m, logits, cls = fullgrad(exp, x, classes, strategy)
        return [m], logits, cls
    acts, sides = _cam_trunk(exp, x, strategy)
    heads, rows = _cam_heads(exp, sides)
    if method == "smoothgradcampp":
        return _cam_smoothgradcampp(exp, x, acts, heads, classes, strategy, smooth, exp.samples or 4,
                                    progress=progress)
    if not _cam_uses_gradient(method):
        logits = heads[0](acts[0])
        cls = _cam_classes_2d(logits, classes)
        raws = []
        for i, a in enumerate(acts):
            if method == "cam":
                _, _, j = getattr(exp, f"compiled{i}")(a, *sides[i], cls)
                raws.append(cam_weights(a, j * (a.shape[2] * a.shape[3]), smooth))
                continue
            raws.append(_cam_free(exp, method, x, a, rows[i], cls, smooth, progress))
        return raws, logits, cls
    coef = None
    cls = classes
    if method == "finercam":
        logits = heads[0](acts[0])
        cls = _cam_classes_2d(logits, classes)
        coef = finer_coefficients(logits, cls)
    need = "channel" if method in _CAM_CHANNEL else "element"
    raws = []
    logits = None
    for i, a in enumerate(acts):
        d, hv, out, cls = _cam_derivs(exp, i, a, sides[i], heads[i], cls, strategy, coef, need,
                                      method == "shapleycam")
        logits = out if logits is None else logits
        if method == "shapleycam":
            w = d - 0.5 * hv
            raws.append(cam_from_channel_weights(a, w if w.dim() == 3 else w.mean(dim=(-2, -1)), smooth))
        elif d.dim() == 3 and method in _CAM_CHANNEL:
            raws.append(cam_from_channel_weights(a, d, smooth))
        else:
            raws.append(cam_from_grads(method, a, _cam_elementwise(d, a), smooth))
    return raws, logits, cls


def _cam_free(exp, method, x, a, rows, cls, smooth, progress=None):
    k = cls.shape[1]
    b, _, h, w = a.shape
    if method == "eigencam":
        return eigencam(a).expand(b, k, h, w)
    if method == "kpcacam":
        return kpcacam(a).expand(b, k, h, w)
    if method == "fem":
        return fem(a).expand(b, k, h, w)
    if method == "randomcam":
        return randomcam(a, exp.seed, smooth).expand(b, k, h, w)
    if method == "scorecam":
        return scorecam(exp.model, x, a, cls, smooth=smooth, progress=progress)
    if method == "iscam":
        return iscam(exp.model, x, a, cls, samples=exp.samples or 10, smooth=smooth, progress=progress)
    if method == "sscam":
        return sscam(exp.model, x, a, cls, samples=exp.samples or 35, seed=exp.seed, smooth=smooth,
                     progress=progress)
    if method == "ablationcam":
        return ablationcam(rows, a, cls, smooth=smooth, progress=progress)
    if method == "reciprocam":
        return reciprocam(rows, a, cls, progress=progress)
    raise ValueError(f"unknown CAM method {method!r}")


def _cam_smoothgradcampp(exp, x, acts, heads, classes, strategy, smooth, samples=4, std=0.3, progress=None):
    # Smooth Grad-CAM++ (torchcam's defaults: 4 samples, noise std 0.3 on the input)
    logits = heads[0](acts[0])
    cls = _cam_classes_2d(logits, classes)
    n = len(acts)
    g1 = [None] * n
    g2 = [None] * n
    g3 = [None] * n
    gen = torch.Generator().manual_seed(int(exp.seed))
    _cam_plan(progress, samples)
    for _ in range(samples):
        noise = torch.randn(x.shape, generator=gen, dtype=torch.float32) * std
        xs = x + noise.to(device=x.device, dtype=x.dtype)
        acts_s, sides_s = _cam_trunk(exp, xs, strategy)
        heads_s, _ = _cam_heads(exp, sides_s)
        for i in range(n):
            side, head = sides_s[i], heads_s[i]
            d = _cam_derivs(exp, i, acts_s[i], side, head, cls, strategy, None, "element", False)[0]
            d = _cam_elementwise(d, acts_s[i]).to(torch.float64)  # sums of powers: float64
            g1[i] = d if g1[i] is None else g1[i] + d
            g2[i] = d * d if g2[i] is None else g2[i] + d * d
            g3[i] = d * d * d if g3[i] is None else g3[i] + d * d * d
        _cam_step(progress)
    raws = []
    for i, a in enumerate(acts):
        m1, m2, m3 = g1[i] / samples, g2[i] / samples, g3[i] / samples
        denom = 2.0 * m2 + (m3 * a.unsqueeze(1).to(torch.float64)).sum(dim=(-2, -1), keepdim=True)
        w = (_cam_div0(m2, denom) * torch.relu(m1)).sum(dim=(-2, -1))
        raws.append(cam_from_channel_weights(a, w.to(a.dtype), smooth))
    return raws, logits, cls


def _cam_bias(module):
    # FullGrad's bias [C] of a layer: a conv's bias, or batchnorm's implicit one
    # beta - running_mean * gamma / sqrt(running_var + eps) (the paper's implementation)
    if getattr(module, "running_var", None) is not None:
        var = module.running_var
        w = module.weight if module.weight is not None else torch.ones_like(var)
        b = module.bias if module.bias is not None else torch.zeros_like(var)
        return (b - module.running_mean * w / torch.sqrt(var + module.eps)).detach()
    return module.bias.detach()


def _cam_fullgrad_part(t, size):
    # t [B, K, C, h, w] -> |t|, each channel map of each image and class scaled to [0, 1] by
    # (t - min) / (max - min + 1e-7) (pytorch-grad-cam's scale_cam_image), resized to `size`
    # (bilinear), summed over the channels: [B, K, H, W]
    t = t.abs()
    t = t - t.amin(dim=(-2, -1), keepdim=True)
    t = t / (t.amax(dim=(-2, -1), keepdim=True) + 1e-7)
    b, k, c = t.shape[:3]
    t = upsample(t.reshape(b, k * c, t.shape[-2], t.shape[-1]), size, "bilinear")
    return t.reshape(b, k, c, t.shape[-2], t.shape[-1]).sum(dim=2)


def fullgrad(exp, x, classes, strategy):
    """FullGrad [B, K, H, W] (Srinivas & Fleuret 2019, as pytorch-grad-cam's FullGrad).

    With G_x the gradient of the explained score w.r.t. the input and G_l w.r.t. the
    output of every layer l with a bias b_l (exp.full: every conv2d with a bias and every
    batchnorm2d, whose implicit bias is beta - mean * gamma / sqrt(var + eps)), the map is
    sum_c post(|G_x * x|_c) + sum_l sum_c post(|b_l,c G_l,c|), where post scales each
    channel map of each image to [0, 1] ((t - min) / (max - min + 1e-7)) and resizes it
    bilinearly to the input size. The explainer's CAM layer is not used.
    strategy: autograd (one backward of the whole network per class column,
    torch.autograd.grad w.r.t. the input and the bias layers' outputs only) or compiled
    (exp.full_compiled: the same gradients emitted as ops). The forward strategy would
    need one JVP per input element and is refused.
    Returns (maps [B, K, H, W], logits [B, N], classes [B, K]).
    """
    size = (int(x.shape[-2]), int(x.shape[-1]))
    biases = exp.full_biases()
    if strategy == "compiled":
        logits, cls, grads = exp.full_compiled(x, classes)
    elif strategy == "autograd":
        if torch.is_inference_mode_enabled():
            raise RuntimeError("fullgrad: the autograd strategy cannot run inside torch.inference_mode()")
        xi = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            logits, outs = exp.full(xi)
            cls = _cam_classes_2d(logits.detach(), classes)
            sel = logits.gather(1, cls)
            k = cls.shape[1]
            cols = [torch.autograd.grad(sel[:, j].sum(), [xi, *outs], retain_graph=j < k - 1,
                                        allow_unused=True, materialize_grads=True) for j in range(k)]
        grads = [torch.stack([c[i] for c in cols], dim=1) for i in range(len(cols[0]))]
        logits = logits.detach()
    else:
        raise ValueError("fullgrad needs the gradient w.r.t. the input and every bias layer: strategy "
                         "autograd or compiled (forward would need one JVP per input element)")
    m = _cam_fullgrad_part(grads[0] * x.detach().unsqueeze(1), size)
    for g, bias in zip(grads[1:], biases):
        m = m + _cam_fullgrad_part(g * bias.to(g.dtype).reshape(1, 1, -1, 1, 1), size)
    return m, logits, cls


_CAM_AUGMENTATIONS = ((False, 1.0), (False, 0.9), (False, 1.1), (True, 1.0), (True, 0.9), (True, 1.1))


def _cam_aug_smooth(exp, x, classes, strategy, progress=None):
    # pytorch-grad-cam's aug_smooth (ttach: horizontal flip x brightness 0.9 / 1 / 1.1):
    # every augmented input explains the classes chosen on the clean input; each raw map
    # is flipped back, min-max normalised at layer resolution, and the six are averaged
    raws, logits, cls = cam_raw(exp, x, classes, strategy, progress)
    acc = [normalize(r, "minmax") for r in raws]
    for flip, factor in _CAM_AUGMENTATIONS[1:]:
        xa = (torch.flip(x, dims=(-1,)) if flip else x) * factor
        r_a, _, _ = cam_raw(exp, xa, cls, strategy, progress)
        for i, r in enumerate(r_a):
            acc[i] = acc[i] + normalize(torch.flip(r, dims=(-1,)) if flip else r, "minmax")
    return [r / len(_CAM_AUGMENTATIONS) for r in acc], logits, cls


def explain(exp, x, classes=None, strategy=None, progress=None):
    """What a generated explainer's forward does: the maps of exp.method for x.

    classes: None (the cam's own setting), a select_classes spec or a LongTensor.
    strategy: None (the explainer's) or autograd | forward | compiled.
    progress: None or a callable progress(done, total), called once per pass of a
    many-pass method (scorecam, iscam, sscam, ablationcam, reciprocam: one batched
    forward; smoothgradcampp: one noisy sample); `total` counts the passes announced so
    far (it grows by layer and, with aug_smooth, by augmentation). The maps do not
    depend on it.
    Gradient-free methods and the forward / compiled strategies run under
    torch.inference_mode(); autograd differentiates the head only (the trunk runs
    under inference_mode too, the head under enable_grad).
    """
    spec = exp.classes if classes is None else classes
    strategy = strategy or exp.strategy
    single = (isinstance(spec, torch.Tensor) and spec.dim() == 1) or (
        not isinstance(spec, torch.Tensor) and spec[0] in ("top1", "index"))
    grad = strategy == "autograd" and _cam_uses_gradient(exp.method)
    ctx = torch.no_grad() if grad else torch.inference_mode()
    with ctx:
        tick = None if progress is None else _CamProgress(progress)
        if exp.aug_smooth:
            raws, logits, cls = _cam_aug_smooth(exp, x, spec, strategy, tick)
        else:
            raws, logits, cls = cam_raw(exp, x, spec, strategy, tick)
        scores = gather_scores(logits, cls)
        if not _cam_uses_gradient(exp.method):
            strategy = "none"
        up, norm = exp.upsample_mode, exp.normalize_mode
        return finish_maps(raws, cls, scores, x.shape, up, norm, single, strategy)


def _cam_uses_gradient(method):
    return method in _CAM_CHANNEL + _CAM_ELEMENT + ("smoothgradcampp", "fullgrad")


CAM_CHUNK = 16  # classes upsampled at a time when the maps of several classes are built


def finish_maps(
    raws, cls, scores, input_size, upsample_mode="bilinear", normalize_mode="minmax", single=False,
    strategy="none",
):
    """Raw per-layer maps [B, K, h_l, w_l] -> CamResult: one layer: upsample ->
    normalize; several layers: combine_layers (each resized to the input size, or to
    the largest layer's grid when upsample is "none", min-max normalised, averaged)
    -> normalize. single: keep only the first class column ([B, H, W] maps), built
    here; several classes: the maps are built when first read, CAM_CHUNK classes at a
    time (CamResult.maps / maps_range / map_chunks)."""
    size = (int(input_size[-2]), int(input_size[-1]))
    if not single:
        if scores is not None and scores.dim() == 1:
            scores = scores.unsqueeze(1)
        fin = (list(raws), size, upsample_mode, normalize_mode, torch.is_inference_mode_enabled())
        return CamResult(None, cls, scores, raws, strategy, fin)
    maps = _cam_maps([r[:, :1] for r in raws], size, upsample_mode, normalize_mode)[:, 0]
    raws = [r[:, 0] for r in raws]
    cls = cls[:, 0]
    if scores is not None and scores.dim() == 2:
        scores = scores[:, 0]
    return CamResult(maps, cls, scores, raws, strategy)


def _cam_maps(raws, input_size, upsample_mode, normalize_mode):
    # raw maps [B, k, h_l, w_l] per layer -> maps [B, k, H, W] (see finish_maps)
    if len(raws) == 1:
        maps = raws[0]
        if upsample_mode != "none":
            maps = upsample(maps, input_size, upsample_mode)
    else:
        if upsample_mode == "none":
            big = max(raws, key=lambda r: r.shape[-2] * r.shape[-1])
            size = (big.shape[-2], big.shape[-1])
        else:
            size = (int(input_size[-2]), int(input_size[-1]))
        maps = combine_layers(raws, size, upsample_mode)
    return normalize(maps, normalize_mode)
