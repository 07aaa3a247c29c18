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

GRADIENT_METHODS = ("gradcam", "hirescam", "xgradcam", "gradcampp", "layercam")
CAM_METHODS = GRADIENT_METHODS + ("eigencam", "scorecam")


class CamResult:
    """What an explainer returns.

    maps     -- [B, H, W] (one class per image: `top1` or a single index) or
                [B, K, H, W] (topk / list / all), upsampled to the input size unless
                upsample is "none", in [0, 1] when normalize is "minmax".
    classes  -- LongTensor [B] or [B, K]: the explained class indices.
    scores   -- the selected logits, same shape as `classes`.
    raw      -- list with one entry per CAM layer: the relu'd maps before upsampling
                and normalisation ([B, h, w] or [B, K, h, w], like `maps`).
    strategy -- how the gradient was obtained ("autograd", "forward", "compiled",
                or "none" for eigencam / scorecam).
    """

    __slots__ = ("classes", "maps", "raw", "scores", "strategy")

    def __init__(self, maps, classes, scores, raw, strategy):
        self.maps = maps
        self.classes = classes
        self.scores = scores
        self.raw = raw
        self.strategy = strategy

    def __repr__(self):
        maps = None if self.maps is None else tuple(self.maps.shape)
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


# --------------------------------------------------------------------------- CAM math


def cam_from_grads(method, acts, grads):
    """Raw CAM maps [B, K, h, w] (relu applied, not normalised) from the layer
    activations acts [B, C, h, w] and the gradients grads [B, K, C, h, w] of the K
    selected class scores with respect to acts (A = acts, G = grads):

    gradcam   : w_c = mean_ij G_cij;                         relu(sum_c w_c A_c)
    hirescam  :                                              relu(sum_c G_c * A_c)
    xgradcam  : w_c = sum_ij(G_cij A_cij) / (sum_ij A_cij + 1e-7); relu(sum_c w_c A_c)
    gradcampp : alpha = G^2 / (2 G^2 + sum_ij(A_c) G^3), 0 where that denominator is 0
                (pytorch-grad-cam adds eps=1e-6 instead);
                w_c = sum_ij alpha_cij relu(G_cij);          relu(sum_c w_c A_c)
    layercam  :                                              relu(sum_c relu(G_c) * A_c)
    """
    if acts.dim() != 4 or grads.dim() != 5:
        raise ValueError(
            "cam_from_grads: need acts [B,C,h,w] and grads [B,K,C,h,w], got "
            f"{tuple(acts.shape)} and {tuple(grads.shape)}"
        )
    a = acts.unsqueeze(1)  # [B, 1, C, h, w]
    g = grads
    if method == "gradcam":
        return cam_from_channel_weights(acts, g.mean(dim=(-2, -1)))
    if method == "hirescam":
        return torch.relu((g * a).sum(dim=2))
    if method == "xgradcam":
        w = (g * a).sum(dim=(-2, -1)) / (a.sum(dim=(-2, -1)) + 1e-7)
        return cam_from_channel_weights(acts, w)
    if method == "gradcampp":
        g2 = g * g
        g3 = g2 * g
        denom = 2.0 * g2 + a.sum(dim=(-2, -1), keepdim=True) * g3
        nz = denom != 0
        alpha = torch.where(nz, g2 / torch.where(nz, denom, torch.ones_like(denom)), torch.zeros_like(denom))
        w = (alpha * torch.relu(g)).sum(dim=(-2, -1))
        return cam_from_channel_weights(acts, w)
    if method == "layercam":
        return torch.relu((torch.relu(g) * a).sum(dim=2))
    raise ValueError(
        f"cam_from_grads: unknown gradient method {method!r} (expected one of {', '.join(GRADIENT_METHODS)})"
    )


def cam_from_channel_weights(acts, weights):
    """relu(sum_c weights[b, k, c] * acts[b, c]) -> [B, K, h, w].

    acts [B, C, h, w], weights [B, K, C] (e.g. Grad-CAM weights from the forward
    strategy, or the folded constant weights of an affine head).
    """
    if weights.dim() != 3:
        raise ValueError(f"cam_from_channel_weights: weights must be [B, K, C], got {tuple(weights.shape)}")
    return torch.relu(torch.einsum("bkc,bchw->bkhw", weights.to(acts.dtype), acts))


def expand_channel_weights(weights, size):
    """View per-channel weights [B, K, C] as spatially constant gradients
    [B, K, C, h, w] (no copy). Exact for every gradient method when the head's
    gradient does not depend on the position (e.g. global average pooling followed
    by an affine head: dScore_k/dA_cij = W[k, c] / (h*w)); in that case pass
    W[classes] / (h*w) here and feed the result to cam_from_grads.
    """
    h, w = int(size[-2]), int(size[-1])
    return weights[..., None, None].expand(*weights.shape, h, w)


def eigencam(acts):
    """Eigen-CAM [B, 1, h, w]: the projection of the activations on their first
    principal component, as in pytorch-grad-cam's get_2d_projection: per image,
    reshape A to X [h*w, C], subtract the mean over positions, SVD, project X onto
    the first right-singular vector, reshape to [h, w]; NaNs count as 0.
    The SVD's sign is arbitrary, so it is fixed: the projection p is flipped when
    sum_ij p_ij * m_ij < 0, where m = mean over channels of A (i.e. p correlates
    positively with the mean activation; p has zero mean, so this is the sign of
    their covariance); when that sum is exactly 0, the entry of largest |p| (first
    one on ties) is made positive. Then relu.
    """
    b, c, h, w = acts.shape
    a = torch.nan_to_num(acts, nan=0.0)
    x = a.reshape(b, c, h * w).transpose(1, 2)  # [B, hw, C]
    xc = x - x.mean(dim=1, keepdim=True)
    vh = torch.linalg.svd(xc, full_matrices=False).Vh  # [B, min(hw, C), C]
    p = torch.bmm(xc, vh[:, 0, :].unsqueeze(2)).squeeze(2)  # [B, hw]
    corr = (p * a.mean(dim=1).reshape(b, h * w)).sum(dim=1)  # [B]
    peak = p.gather(1, p.abs().argmax(dim=1, keepdim=True)).squeeze(1)
    sign = torch.where(corr != 0, torch.sign(corr), torch.sign(peak))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    p = p * sign.unsqueeze(1)
    return torch.relu(p).reshape(b, 1, h, w)


def scorecam(model_fn, x, acts, classes, batch_size=32):
    """Score-CAM [B, K, h, w].

    For every channel c of image b: upsample acts[b, c] to the input size (bilinear,
    align_corners=False), min-max normalise it to [0, 1] (all 0 when constant),
    multiply the input x[b] by it, run model_fn (the whole network, x -> logits
    [*, N]) and keep the logits of the selected classes. The weights are the
    softmax over channels of those logits (per image and class), and the map is
    relu(sum_c w_c A_c). The B*C masked inputs are run in chunks of `batch_size`
    (image-major, channel-minor), under torch.no_grad().
    classes: LongTensor [B] or [B, K] (or a select_classes spec, then the logits of
    model_fn(x) are used to select).
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
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(n, start + batch_size), device=acts.device)
            bi = torch.div(idx, c, rounding_mode="floor")
            mask = normalize(upsample(flat_acts[idx], size, "bilinear"), "minmax")  # [m, 1, H, W]
            out = model_fn(x[bi] * mask.to(x.dtype))
            chunks.append(out.gather(1, cls[bi]))  # [m, K]
        scores = torch.cat(chunks, dim=0).reshape(b, c, k)
        weights = torch.softmax(scores.transpose(1, 2), dim=-1)  # [B, K, C]
        return cam_from_channel_weights(acts, weights)


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


def grads_autograd(head, acts, classes, batched=False):
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
        sel = logits.gather(1, cls)  # [B, K]
        k = sel.shape[1]
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


def weights_forward(head, acts, classes, chunk_size=None):
    """Grad-CAM channel weights by forward mode only (no backward pass).

    For every channel c one JVP of head at A with the tangent that is 1/(h*w) on
    channel c (and 0 elsewhere), identical for every sample: since sample b's
    logits depend on A_b only, the JVP's output [B, N] is mean_ij dlogit[b, n] /
    dA[b, c, i, j], i.e. the Grad-CAM weight of EVERY class at once. The C JVPs
    are vmapped (torch.func.vmap of torch.func.jvp) in chunks of `chunk_size`
    tangents (default: about 2**24 tangent elements per chunk), under no_grad.
    classes: LongTensor [B] / [B, K] or a select_classes spec.
    Returns (weights [B, K, C], logits [B, N], classes [B, K]); feed the weights to
    cam_from_channel_weights (exact for gradcam only).
    """
    a = acts.detach()
    b, c, h, w = a.shape
    with torch.no_grad():
        logits = head(a)
        cls = _cam_classes_2d(logits, classes)
        step = _cam_chunk(c, b * c * h * w, chunk_size)
        parts = []
        for start in range(0, c, step):
            stop = min(c, start + step)
            t = torch.zeros(stop - start, c, h, w, dtype=a.dtype, device=a.device)
            t[torch.arange(stop - start), torch.arange(start, stop)] = 1.0 / (h * w)
            parts.append(_cam_jvp_columns(head, a, t))  # [m, B, N]
        full = torch.cat(parts, dim=0).permute(1, 2, 0)  # [B, N, C]
        weights = full.gather(1, cls.unsqueeze(2).expand(b, cls.shape[1], c))
    return weights, logits, cls


def grads_forward(head, acts, classes, chunk_size=None):
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
            parts.append(out.gather(2, cls.unsqueeze(0).expand(stop - start, b, k)))  # [m, B, K]
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
    if method not in CAM_METHODS:
        raise ValueError(f"run_cam: unknown CAM method {method!r} (expected one of {', '.join(CAM_METHODS)})")
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
    maps = normalize(maps, normalize_mode)
    if single:
        maps = maps[:, 0]
        raws = [r[:, 0] for r in raws]
        cls = cls[:, 0]
        if scores is not None and scores.dim() == 2:
            scores = scores[:, 0]
    elif scores is not None and scores.dim() == 1:
        scores = scores.unsqueeze(1)
    if method in ("eigencam", "scorecam"):
        strategy = "none"
    return CamResult(maps, cls, scores, raws, strategy)
