"""Quality metrics of CAM maps (torch only).

Every function takes the network as `model_fn` (x -> logits [B, N]), the
(normalised) input batch `x` [B, C, H, W], saliency `maps` [B, H, W] at the input
resolution (any scale: only their order, or their [0, 1] values for the
multiplicative metrics, matter) and the explained `classes` [B]. Scores are the
softmax probabilities of the explained class. Per-image results are tensors [B];
`evaluate` aggregates them.

* pointing game (Zhang et al. 2016): the map's maximum (first in row-major order)
  lies inside the object's box (x0, y0, x1, y1, pixels, x1 / y1 exclusive), grown
  by `tolerance` pixels.
* deletion / insertion (Petsiuk et al., RISE 2018): pixels ordered by saliency
  (descending, ties by position); after step s of `steps` the first
  floor(s * H * W / steps) pixels are set to the baseline (deletion: 0, the
  normalised mean colour) or copied from x into a blurred copy (insertion:
  Gaussian blur, kernel 11, sigma 5, as RISE); the curve is the class
  probability at steps 0..steps and the AUC its trapezoid area on [0, 1]
  (deletion: lower is better; insertion: higher).
* Average Drop / Increase in Confidence (Chattopadhay et al., Grad-CAM++ 2018):
  with Y the probability for x and O for x * map: drop = max(0, Y - O) / Y,
  increase = [O > Y]; the averages are the metrics (torchcam's convention:
  fractions, not percent).
* confidence change of the CAM-multiplied image (pytorch-grad-cam's
  CamMultImageConfidenceChange): O - Y.
* ROAD (Rong et al. 2022): for every p in `percentiles`, remove the p % most
  (MoRF) or least (LeRF) relevant pixels (by rank), fill them by noisy linear
  imputation (each removed pixel the weighted mean of its 8 neighbours, 1/6 for
  edge and 1/12 for corner neighbours, solved by conjugate gradients, plus
  N(0, noise^2) noise from torch.Generator().manual_seed(seed)) and take the
  probability change; MoRF / LeRF are the means over p, combined = (LeRF - MoRF) / 2
  (pytorch-grad-cam's ROADCombined; higher is better).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["average_drop_increase", "cam_mult_confidence_change", "deletion_insertion", "evaluate",
           "impute_linear", "pointing_game", "road", "METRICS"]

# name -> (what it is, True when higher is better)
METRICS = {
    "pointing": ("pointing game hit rate (needs boxes)", True),
    "deletion_auc": ("deletion AUC", False),
    "insertion_auc": ("insertion AUC", True),
    "avg_drop": ("Average Drop", False),
    "avg_increase": ("Increase in Confidence", True),
    "conf_change": ("confidence change of x * map", True),
    "road_morf": ("ROAD most relevant first (probability change)", False),
    "road_lerf": ("ROAD least relevant first (probability change)", True),
    "road_combined": ("ROAD combined (LeRF - MoRF) / 2", True),
}


def _prob(model_fn, x, classes, chunk: int = 64) -> torch.Tensor:
    outs = []
    with torch.inference_mode():
        for s in range(0, x.shape[0], chunk):
            outs.append(torch.softmax(model_fn(x[s:s + chunk]).to(torch.float64), dim=1))
    p = torch.cat(outs)
    return p.gather(1, classes.reshape(-1, 1).to(torch.long)).squeeze(1)


def pointing_game(maps: torch.Tensor, boxes, tolerance: int = 0) -> torch.Tensor:
    """Hits [B] (bool): the first maximum of maps[b] (row-major) is inside boxes[b]
    grown by `tolerance` pixels; a box of None counts as no hit."""
    b, h, w = maps.shape
    flat = maps.reshape(b, -1)
    idx = (flat == flat.max(dim=1, keepdim=True).values).to(torch.int8).argmax(dim=1)  # first maximum
    out = torch.zeros(b, dtype=torch.bool)
    for i in range(b):
        if boxes[i] is None:
            continue
        y, x = divmod(int(idx[i]), w)
        x0, y0, x1, y1 = (float(v) for v in boxes[i])
        out[i] = (x0 - tolerance <= x < x1 + tolerance) and (y0 - tolerance <= y < y1 + tolerance)
    return out


def _order(maps: torch.Tensor) -> torch.Tensor:
    # pixel indices by descending saliency, ties by position
    return torch.sort(maps.reshape(maps.shape[0], -1), dim=1, descending=True, stable=True).indices


def gaussian_blur(x: torch.Tensor, kernel: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """Per-channel Gaussian blur (reflect padding)."""
    r = torch.arange(kernel, dtype=x.dtype) - (kernel - 1) / 2
    k1 = torch.exp(-(r * r) / (2 * sigma * sigma))
    k1 = k1 / k1.sum()
    c = x.shape[1]
    pad = kernel // 2
    y = F.pad(x, (pad, pad, pad, pad), mode="reflect" if min(x.shape[-2:]) > pad else "replicate")
    y = F.conv2d(y, k1.reshape(1, 1, 1, -1).expand(c, 1, 1, kernel), groups=c)
    return F.conv2d(y, k1.reshape(1, 1, -1, 1).expand(c, 1, kernel, 1), groups=c)


def deletion_insertion(model_fn, x, maps, classes, steps: int = 16, deletion_baseline=None,
                       insertion_baseline=None) -> dict[str, torch.Tensor]:
    """{"deletion": curves [B, steps+1], "insertion": [B, steps+1], "deletion_auc": [B],
    "insertion_auc": [B]} (see the module docstring)."""
    b, c, h, w = x.shape
    p = h * w
    order = _order(maps)
    dbase = torch.zeros_like(x) if deletion_baseline is None else deletion_baseline.expand_as(x)
    ibase = gaussian_blur(x) if insertion_baseline is None else insertion_baseline.expand_as(x)
    counts = torch.tensor([(s * p) // steps for s in range(steps + 1)])
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(p).expand(b, p).contiguous())
    first = (rank.unsqueeze(1) < counts.reshape(1, -1, 1)).reshape(b, steps + 1, 1, h, w)  # [B, S+1, 1, H, W]
    xs = x.unsqueeze(1)
    cls = classes.reshape(b, 1).expand(b, steps + 1).reshape(-1)
    dels = torch.where(first, dbase.unsqueeze(1), xs).reshape(-1, c, h, w)
    ins = torch.where(first, xs, ibase.unsqueeze(1)).reshape(-1, c, h, w)
    curves = {"deletion": _prob(model_fn, dels, cls).reshape(b, steps + 1),
              "insertion": _prob(model_fn, ins, cls).reshape(b, steps + 1)}
    out = dict(curves)
    for k in ("deletion", "insertion"):
        cv = curves[k]
        out[f"{k}_auc"] = (cv.sum(dim=1) - (cv[:, 0] + cv[:, -1]) / 2) / steps
    return out


def average_drop_increase(model_fn, x, maps, classes) -> tuple[torch.Tensor, torch.Tensor]:
    """(drop [B], increase [B]): max(0, Y - O) / Y and [O > Y], O for x * maps."""
    y = _prob(model_fn, x, classes)
    o = _prob(model_fn, x * maps.unsqueeze(1).to(x.dtype), classes)
    return torch.clamp(y - o, min=0) / y, (o > y).to(torch.float64)


def cam_mult_confidence_change(model_fn, x, maps, classes) -> torch.Tensor:
    """O - Y [B]: the class probability of x * maps minus that of x."""
    return _prob(model_fn, x * maps.unsqueeze(1).to(x.dtype), classes) - _prob(model_fn, x, classes)


def impute_linear(x: torch.Tensor, removed: torch.Tensor, noise: float = 0.0, generator=None,
                  tol: float = 1e-6, max_iter: int = 2000) -> torch.Tensor:
    """ROAD's noisy linear imputation: x [B, C, H, W], removed [B, H, W] (bool). Every
    removed pixel becomes the weighted mean of its in-image neighbours (weights
    1/6 edge, 1/12 corner), the system solved per image and channel by conjugate
    gradients (float64), then N(0, noise^2) is added to the imputed pixels. The many
    small iterations run on one thread (restored afterwards): extra threads only
    contend on tensors this small."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _impute(x, removed, noise, generator, tol, max_iter)
    finally:
        torch.set_num_threads(threads)


def _impute(x, removed, noise, generator, tol, max_iter):
    b, c, h, w = x.shape
    xd = x.to(torch.float64)
    u_mask = removed.to(torch.float64).unsqueeze(1).expand(b, c, h, w)

    def conv(v):  # sum of the 8 neighbours' weighted values (0 outside the image), by shifted slices
        vp = F.pad(v, (1, 1, 1, 1))
        edge = vp[..., :-2, 1:-1] + vp[..., 2:, 1:-1] + vp[..., 1:-1, :-2] + vp[..., 1:-1, 2:]
        corner = vp[..., :-2, :-2] + vp[..., :-2, 2:] + vp[..., 2:, :-2] + vp[..., 2:, 2:]
        return edge / 6 + corner / 12

    deg = conv(torch.ones_like(xd))  # sum of in-image neighbour weights

    def matvec(v):  # (D - W_uu) v on the removed pixels
        return (deg * v - conv(v * u_mask)) * u_mask

    rhs = conv(xd * (1 - u_mask)) * u_mask
    inv = torch.where(deg > 0, 1.0 / torch.where(deg > 0, deg, torch.ones_like(deg)), torch.zeros_like(deg))
    # start from a normalised convolution of the known pixels (a smooth fill), then CG
    known = 1 - u_mask
    num = gaussian_blur(xd * known, 33, 8.0)
    den0 = gaussian_blur(known, 33, 8.0)
    fill = torch.where(den0 > 1e-12, num / den0.clamp(min=1e-12), torch.zeros_like(num))
    v = fill * u_mask
    r = rhs - matvec(v)
    z = r * inv  # Jacobi preconditioner
    pdir = z.clone()
    rz = (r * z).sum(dim=(2, 3), keepdim=True)
    r0 = (rhs * rhs).sum(dim=(2, 3), keepdim=True).clamp(min=1e-300)
    for _ in range(max_iter):
        if bool(((r * r).sum(dim=(2, 3), keepdim=True) <= tol * tol * r0).all()):
            break
        ap = matvec(pdir)
        den = (pdir * ap).sum(dim=(2, 3), keepdim=True)
        alpha = torch.where(den > 0, rz / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(den))
        v = v + alpha * pdir
        r = r - alpha * ap
        z = r * inv
        rz_new = (r * z).sum(dim=(2, 3), keepdim=True)
        beta = torch.where(rz > 0, rz_new / torch.where(rz > 0, rz, torch.ones_like(rz)), torch.zeros_like(rz))
        pdir = z + beta * pdir
        rz = rz_new
    if noise:
        v = v + noise * torch.randn(v.shape, generator=generator, dtype=torch.float64) * u_mask
    return torch.where(u_mask > 0, v, xd).to(x.dtype)


def road(model_fn, x, maps, classes, percentiles=(10, 20, 30, 40, 50, 60, 70, 80, 90), noise: float = 0.01,
         seed: int = 0) -> dict[str, torch.Tensor]:
    """{"morf": [B], "lerf": [B], "combined": [B]}: mean probability change after
    removing the p % most / least relevant pixels (noisy linear imputation)."""
    b, _, h, w = x.shape
    p = h * w
    order = _order(maps)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(p).expand(b, p).contiguous())
    y = _prob(model_fn, x, classes)
    gen = torch.Generator().manual_seed(int(seed))
    morf = torch.zeros(b, dtype=torch.float64)
    lerf = torch.zeros(b, dtype=torch.float64)
    for pc in percentiles:
        n = (int(pc) * p) // 100
        top = (rank < n).reshape(b, h, w)
        bottom = (rank >= p - n).reshape(b, h, w)
        morf += _prob(model_fn, impute_linear(x, top, noise, gen), classes) - y
        lerf += _prob(model_fn, impute_linear(x, bottom, noise, gen), classes) - y
    morf /= len(percentiles)
    lerf /= len(percentiles)
    return {"morf": morf, "lerf": lerf, "combined": (lerf - morf) / 2}


def evaluate(model_fn, x, maps, classes, boxes=None, steps: int = 16, seed: int = 0,
             metrics=None) -> dict[str, torch.Tensor]:
    """Every metric per image ([B] tensors, float64), plus the deletion / insertion curves."""
    want = set(metrics or METRICS)
    out: dict[str, torch.Tensor] = {}
    if boxes is not None and "pointing" in want:
        out["pointing"] = pointing_game(maps, boxes).to(torch.float64)
    if want & {"deletion_auc", "insertion_auc"}:
        di = deletion_insertion(model_fn, x, maps, classes, steps)
        out.update({"deletion_auc": di["deletion_auc"], "insertion_auc": di["insertion_auc"],
                    "deletion_curve": di["deletion"], "insertion_curve": di["insertion"]})
    if want & {"avg_drop", "avg_increase"}:
        out["avg_drop"], out["avg_increase"] = average_drop_increase(model_fn, x, maps, classes)
    if "conf_change" in want:
        out["conf_change"] = cam_mult_confidence_change(model_fn, x, maps, classes)
    if want & {"road_morf", "road_lerf", "road_combined"}:
        r = road(model_fn, x, maps, classes, seed=seed)
        out.update({"road_morf": r["morf"], "road_lerf": r["lerf"], "road_combined": r["combined"]})
    return out
