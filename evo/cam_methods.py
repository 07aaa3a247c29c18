"""The one list of CAM methods: what each needs, how much work it does, its paper.

Everything else reads this table: the checker (`method = ...` values), the
explainer code generator (which strategy applies), the work estimate (passes per
image) and the docs' method table.  The math lives in the pasted runtime
(evo/codegen/cam_runtime.py, torch only), keyed by the same names.

kind:
  gradient -- needs d score / d layer: every strategy (autograd, forward, compiled)
  free     -- gradient-free: forwards of the head or the network only, batched under
              torch.inference_mode
  head     -- reads the weights of an affine head (global pooling + linear) when the
              explainer is built (the original CAM)
forward_tangents (gradient kinds): "channel" when per-channel weights are enough
  (the forward strategy then needs one JVP per channel), "element" when the method
  needs the full gradient (one JVP per element of the layer), "none" when the forward
  strategy does not apply (fullgrad: gradients w.r.t. the input and every bias layer).
passes: extra passes per image beyond one inference, as a formula of
  C (channels), P (positions h*w) and S (samples); see `passes()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evo.ir.node import Graph


@dataclass(frozen=True)
class CamMethod:
    name: str
    kind: str                       # gradient | free | head
    title: str                      # paper / origin
    forward_tangents: str = "element"
    random: bool = False            # takes `seed`
    smooth: bool = True             # honours eigen_smooth
    passes: str = ""                # extra forward passes: "" | "C" (head) | "CN" (network) | "P" | "S"
    samples: int = 1                # noisy / integration samples where the method takes several
    hessian: bool = False           # needs a Hessian-vector product
    whole: bool = False             # gradients w.r.t. the input and every bias layer (not one CAM layer)


_TABLE = (
    CamMethod("gradcam", "gradient", "Grad-CAM, Selvaraju et al. 2017 (arXiv 1610.02391)", "channel"),
    CamMethod("hirescam", "gradient", "HiResCAM, Draelos & Carin 2020 (arXiv 2011.08891)"),
    CamMethod("xgradcam", "gradient", "XGrad-CAM, Fu et al. 2020 (arXiv 2008.02312)"),
    CamMethod("gradcampp", "gradient", "Grad-CAM++, Chattopadhay et al. 2018 (arXiv 1710.11063)"),
    CamMethod("layercam", "gradient", "LayerCAM, Jiang et al. 2021 (IEEE TIP 30)"),
    CamMethod("eigencam", "free", "Eigen-CAM, Muhammad & Yeasin 2020 (arXiv 2008.00299)", smooth=False),
    CamMethod("scorecam", "free", "Score-CAM, Wang et al. 2020 (arXiv 1910.01279)", passes="CN"),
    CamMethod("cam", "head", "CAM, Zhou et al. 2016 (arXiv 1512.04150)"),
    CamMethod("eigengradcam", "gradient", "Eigen-Grad-CAM (pytorch-grad-cam): Eigen-CAM of G*A", smooth=False),
    CamMethod("gradcam_elementwise", "gradient", "Grad-CAM element-wise (pytorch-grad-cam): relu(G*A) summed"),
    CamMethod("ablationcam", "free", "Ablation-CAM, Desai & Ramaswamy 2020 (WACV)", passes="C"),
    CamMethod("kpcacam", "free", "KPCA-CAM, Karmani et al. 2024 (arXiv 2410.00267)", smooth=False),
    CamMethod("shapleycam", "gradient", "ShapleyCAM, Cai 2025 (arXiv 2501.06261)", "channel", hessian=True),
    CamMethod("finercam", "gradient", "Finer-CAM, Zhang et al. 2025 (arXiv 2501.11309)", "channel"),
    CamMethod("fem", "free", "FEM, Fuad et al. 2020 (IPTA, hal-02963298)", smooth=False),
    CamMethod("sscam", "free", "SS-CAM, Wang et al. 2020 (arXiv 2006.14255)", random=True, passes="CNS",
              samples=35),
    CamMethod("iscam", "free", "IS-CAM, Naidu et al. 2020 (arXiv 2010.03023)", passes="CNS", samples=10),
    CamMethod("smoothgradcampp", "gradient", "Smooth Grad-CAM++, Omeiza et al. 2019 (arXiv 1908.01224)",
              random=True, passes="S", samples=4),
    CamMethod("reciprocam", "free", "Recipro-CAM, Byun & Lee 2022 (arXiv 2209.14074)", smooth=False, passes="P"),
    CamMethod("randomcam", "free", "RandomCAM (pytorch-grad-cam): uniform random channel weights, a baseline",
              random=True),
    CamMethod("fullgrad", "gradient", "FullGrad, Srinivas & Fleuret 2019 (arXiv 1905.00780)", "none",
              smooth=False, whole=True),
)

BY_NAME: dict[str, CamMethod] = {m.name: m for m in _TABLE}
METHODS: tuple[str, ...] = tuple(m.name for m in _TABLE)
GRADIENT_FREE: tuple[str, ...] = tuple(m.name for m in _TABLE if m.kind != "gradient")
RANDOM: tuple[str, ...] = tuple(m.name for m in _TABLE if m.random)


def method(name: str) -> CamMethod:
    return BY_NAME[name]


@dataclass(frozen=True)
class Passes:
    """Extra forward passes of a gradient-free method, per image: `count` forwards of
    the whole network (`scope` "network") or of the head after `layer` ("head")."""
    scope: str
    layer: str
    count: int
    what: str


def free_passes(g: Graph, spec) -> list[Passes]:
    """The forwards a gradient-free method runs beyond one inference, per image (no
    backward pass), as the runtime (evo/codegen/cam_runtime.py) runs them: scorecam C
    network forwards, iscam / sscam C x samples, ablationcam C + 1 head forwards (the
    unablated score, then one per ablated channel) and reciprocam h*w; eigencam, kpcacam,
    fem, randomcam and cam none.  The one source of the work estimate and of the cost model's
    explainer cost (evo/cost/network.py) and of the work estimate (evo/cam_work.py)."""
    info = BY_NAME[spec.method]
    samples = spec.samples or info.samples
    out = []
    for layer in spec.layers:
        node = g.value(layer)
        c, h, w = int(node.shape[1]), int(node.shape[2]), int(node.shape[3])
        if spec.method in ("scorecam", "iscam", "sscam"):
            n = c * (1 if spec.method == "scorecam" else samples)
            out.append(Passes("network", layer, n, f"{n:,} network forwards for {layer}"))
        elif spec.method == "ablationcam":  # the unablated score, then one forward per ablated channel
            out.append(Passes("head", layer, c + 1, f"{c + 1:,} head forwards at {layer}"))
        elif spec.method == "reciprocam":
            out.append(Passes("head", layer, h * w, f"{h * w:,} head forwards at {layer}"))
    return out
