"""Export: the network with its compiled explainer as ONNX (run by onnxruntime) and as
a torch.export program, checked against the torch explainer and a textbook Grad-CAM
(tests/refcam.py: hooks and a full backward) on the bundled model and a ResNet-18 mirror."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
import refcam
import refmodels
import torch

import evo
from evo.runtime.images import list_images, load_images

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart.evo"
WEIGHTS = ROOT / "evo" / "data" / "quickstart.pt"


def _quickstart():
    prog = evo.compile_file(QUICKSTART)
    model = prog.build("QuickNet")
    model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True), strict=True)
    return prog, model


def _bundled_images(prog):
    spec = prog.cams["Shapes"]
    x, _ = load_images(list_images(ROOT / "examples" / "images"), 64, spec.mean, spec.std)
    return x


def _run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["x"]
    assert [o.name for o in sess.get_outputs()] == ["logits", "classes", "scores", "maps"]
    return [torch.from_numpy(a) for a in sess.run(None, {"x": x.numpy()})]


def _onnx_facts(path):
    m = onnx.load(str(path))
    opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    batch = m.graph.input[0].type.tensor_type.shape.dim[0]
    ops = {(n.domain, n.op_type) for n in m.graph.node}
    return opset, batch, ops


@pytest.fixture(scope="module")
def quickstart_onnx(tmp_path_factory):
    prog, model = _quickstart()
    path = prog.export("Shapes", tmp_path_factory.mktemp("onnx") / "shapes.onnx", model=model)
    return prog, model, Path(path)


def test_onnx_matches_the_torch_explainer_on_the_bundled_model(quickstart_onnx):
    prog, model, path = quickstart_onnx
    x = _bundled_images(prog)
    assert x.shape[0] == 8
    compiled = prog.explainer("Shapes", model, strategy="compiled")(x)
    autograd = prog.explainer("Shapes", model, strategy="autograd")(x)
    for batch in (x, x[:3], x[5:6]):  # the batch dimension is dynamic
        logits, classes, scores, maps = _run(path, batch)
        n = batch.shape[0]
        start = {8: 0, 3: 0, 1: 5}[n]
        assert maps.shape == (n, 64, 64)
        assert torch.equal(classes, autograd.classes[start:start + n])
        torch.testing.assert_close(maps, autograd.maps[start:start + n], atol=1e-4, rtol=0)
        torch.testing.assert_close(maps, compiled.maps[start:start + n], atol=1e-4, rtol=0)
        torch.testing.assert_close(scores, autograd.scores[start:start + n], atol=1e-4, rtol=1e-5)
        with torch.no_grad():
            torch.testing.assert_close(logits, model(batch), atol=1e-4, rtol=1e-5)
    # the bundled model recognises the bundled images (file names say the class)
    names = [Path(p).stem.split("_")[1] for p in list_images(ROOT / "examples" / "images")]
    logits, classes, _, _ = _run(path, x)
    assert [prog.cams["Shapes"].labels[int(c)] for c in classes] == names


def test_onnx_graph_is_opset_17_plus_dynamic_batch_without_gradient_ops(quickstart_onnx):
    _, _, path = quickstart_onnx
    opset, batch, ops = _onnx_facts(path)
    assert opset >= 17
    assert batch.dim_param and not batch.HasField("dim_value")
    assert not [op for op in ops if op[1] == "Gradient" or op[0].startswith("ai.onnx.preview.training")]
    from evo.runtime.export import gradient_ops

    assert gradient_ops(path) == []


RESNET_SRC = (ROOT / "examples" / "resnet18.evo").read_text(encoding="utf-8") \
    .replace("Tensor[N, 3, 224, 224]", "Tensor[N, 3, 64, 64]") \
    .replace("classes: int = 1000", "classes: int = 10") \
    .replace("layer = layer4", "layer = layer3")


def test_onnx_resnet18_mirror_matches_torch_and_a_textbook_gradcam(tmp_path):
    # layer3: the head (layer4, pool, fc) is not affine, so the compiled gradient is
    # emitted as ops (transposed convs, relu masks), not folded to channel weights
    assert "layer = layer3" in RESNET_SRC and "Tensor[N, 3, 64, 64]" in RESNET_SRC
    prog = evo.compile(RESNET_SRC, "resnet18_64.evo")
    torch.manual_seed(0)
    ref = refmodels.resnet18(10).eval()
    model = prog.build("ResNet18")
    model.load_state_dict(ref.state_dict(), strict=True)
    path = prog.export("Explain", tmp_path / "r18.onnx", model=model)
    _, _, ops = _onnx_facts(path)
    assert ("", "ConvTranspose") in ops  # the gradient really is part of the graph
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    logits, classes, scores, maps = _run(path, x)
    torch_res = prog.explainer("Explain", model, strategy="compiled")(x)
    assert torch.equal(classes, torch_res.classes)
    torch.testing.assert_close(maps, torch_res.maps, atol=1e-4, rtol=0)
    with torch.no_grad():
        ref_logits = ref(x)
    assert torch.equal(classes, ref_logits.argmax(1))
    raw = refcam.reference_cam(ref, x, ref.layer3, "gradcam", classes)
    expected = refcam.reference_normalize(refcam.reference_upsample(raw, 64))
    torch.testing.assert_close(maps, expected, atol=1e-4, rtol=0)
    from evo.runtime.export import gradient_ops

    assert gradient_ops(path) == []


def test_torch_export_program_round_trips(tmp_path):
    prog, model = _quickstart()
    x = _bundled_images(prog)
    ep = prog.export("Shapes", tmp_path / "shapes.pt2", model=model, format="torch-export")
    assert isinstance(ep, torch.export.ExportedProgram)
    loaded = torch.export.load(str(tmp_path / "shapes.pt2"))
    ref = prog.explainer("Shapes", model, strategy="autograd")(x)
    for prog_ in (ep, loaded):
        logits, classes, scores, maps = prog_.module()(x[:5])
        assert torch.equal(classes, ref.classes[:5])
        torch.testing.assert_close(maps, ref.maps[:5], atol=1e-4, rtol=0)
    # no autograd node in the exported graph
    targets = {str(n.target) for n in loaded.graph.nodes if n.op == "call_function"}
    assert not [t for t in targets if "backward" in t or "autograd" in t]


def test_export_refuses_gradient_free_methods_and_other_strategies():
    prog, model = _quickstart()
    with pytest.raises(evo.EvoError, match="export does not cover"):
        prog.export("Shapes", "unused.onnx", model=model, method="eigencam")
    with pytest.raises(evo.EvoError, match="compiled strategy"):
        prog.export("Shapes", "unused.onnx", model=model, strategy="autograd")
    with pytest.raises(evo.EvoError, match="no cam named"):
        prog.export("Nope", "unused.onnx")
    assert not Path("unused.onnx").exists()


def test_cli_export_writes_verified_onnx_and_torch_export(tmp_path, capsys):
    from evo.cli import main as evoc

    out = tmp_path / "q.onnx"
    assert evoc(["export", str(QUICKSTART), "--cam", "Shapes", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "0 gradient ops: verified" in printed and "as onnx" in printed
    # evoc used the bundled weights: its model agrees with the bundled network
    prog, model = _quickstart()
    x = _bundled_images(prog)
    _, classes, _, maps = _run(out, x)
    ref = prog.explainer("Shapes", model, strategy="autograd")(x)
    assert torch.equal(classes, ref.classes)
    torch.testing.assert_close(maps, ref.maps, atol=1e-4, rtol=0)
    pt2 = tmp_path / "q.pt2"
    assert evoc(["export", str(QUICKSTART), "--format", "torch-export", "-o", str(pt2)]) == 0
    _, classes, _, maps = torch.export.load(str(pt2)).module()(x)
    assert torch.equal(classes, ref.classes)
    torch.testing.assert_close(maps, ref.maps, atol=1e-4, rtol=0)


def test_cli_export_errors(tmp_path, capsys):
    from evo.cli import main as evoc

    eigen = tmp_path / "eigen.evo"
    eigen.write_text(QUICKSTART.read_text(encoding="utf-8").replace("method = gradcam", "method = eigencam"),
                     encoding="utf-8")
    assert evoc(["export", str(eigen), "-o", str(tmp_path / "e.onnx")]) == 1
    assert "export does not cover" in capsys.readouterr().err
    assert evoc(["export", str(QUICKSTART), "--opset", "16", "-o", str(tmp_path / "o.onnx")]) == 2
    assert "--opset must be at least 17" in capsys.readouterr().err
    assert evoc(["export", str(QUICKSTART), "--opset", "99999", "-o", str(tmp_path / "o.onnx")]) == 2
    assert "knows opsets up to" in capsys.readouterr().err  # was a logged traceback, then exit 0
    assert evoc(["export", str(QUICKSTART), "--cam", "Nope", "-o", str(tmp_path / "n.onnx")]) == 2
    assert not list(tmp_path.glob("*.onnx"))


def test_cli_export_that_onnxruntime_disagrees_with_is_an_error_never_exit_3(tmp_path, capsys, monkeypatch):
    """onnxruntime runs the exported bytes for real; here they are made to differ from the
    torch explainer (the classifier of the exported copy reversed, so the classes differ;
    a batchnorm bias nudged by 0.02, so only the maps move; bytes that are no model).  A
    disagreement is exit 1 with nothing written; float-rounding-sized map differences
    with equal classes are a warning.  (One real export, of the network evoc builds; the
    skews are made in its ONNX initializers: the classifier's weight negated, and the bias
    of the convolution that the batchnorm was folded into raised by 0.02, which is what
    raising the batchnorm's own bias does.)"""
    import onnx
    from onnx import numpy_helper

    from evo.cli import main as evoc
    from evo.runtime import export as ex

    real = ex.onnx_bytes
    exported = []

    def skewed(how):
        def onnx_bytes(module, x, opset=ex.DEFAULT_OPSET):
            if how == "garbage":
                return b"not an onnx model"
            if not exported:
                exported.append(real(module, x, opset))
            m = onnx.load_from_string(exported[0])
            inits = {i.name: i for i in m.graph.initializer}
            name, change = {"classes": ("explainer.model.fc.weight", lambda w: -w),
                            "maps": ("explainer.model.features.8.weight_bias", lambda b: b + 2e-2)}[how]
            # the batchnorm (features.9) follows the convolution features.8 and is folded into its bias
            assert name in inits, sorted(inits)
            inits[name].CopyFrom(numpy_helper.from_array(change(numpy_helper.to_array(inits[name])), name))
            return m.SerializeToString()
        return onnx_bytes

    for how, status in (("classes", 1), ("garbage", 1), ("maps", 0)):
        monkeypatch.setattr(ex, "onnx_bytes", skewed(how))
        out = tmp_path / f"{how}.onnx"
        assert evoc(["export", str(QUICKSTART), "-o", str(out)]) == status, how
        r = capsys.readouterr()
        assert "Traceback" not in r.err and "internal error" not in r.err
        if status == 1:
            assert r.err.startswith("evoc: error: ") and "nothing was written" in r.err and not out.exists()
            assert ("classes DIFFER" in r.err) if how == "classes" else ("onnxruntime cannot run" in r.err)
        else:
            assert out.exists() and "evoc: warning: onnxruntime's maps differ" in r.err, r.err
    # --no-verify writes what was exported, unchecked
    monkeypatch.setattr(ex, "onnx_bytes", skewed("garbage"))
    out = tmp_path / "unchecked.onnx"
    assert evoc(["export", str(QUICKSTART), "-o", str(out), "--no-verify"]) == 0
    assert out.read_bytes() == b"not an onnx model"
    capsys.readouterr()


def test_an_op_the_exporter_cannot_translate_is_a_program_error_naming_it():
    # eigengradcam takes an SVD, which ONNX has no operator for
    prog, model = _quickstart()
    with pytest.raises(evo.EvoError, match=r"cannot be exported to ONNX: it has no translation for aten\._linalg_svd"):
        prog.export("Shapes", "unused.onnx", model=model, method="eigengradcam")
    assert not Path("unused.onnx").exists()


def test_topk_classes_export_with_torch_export_and_are_refused_by_onnx(tmp_path):
    prog, model = _quickstart()
    x = _bundled_images(prog)[:3]
    with pytest.raises(evo.EvoError, match="topk classes, which ONNX cannot select"):
        prog.export("Shapes", tmp_path / "t.onnx", model=model, class_="topk(2)")
    ep = prog.export("Shapes", model=model, format="torch-export", class_="topk(2)")
    ref = prog.explainer("Shapes", model, strategy="autograd", class_="topk(2)")(x)
    _, classes, _, maps = ep.module()(x)
    assert maps.shape == (3, 2, 64, 64) and torch.equal(classes, ref.classes)
    torch.testing.assert_close(maps, ref.maps, atol=1e-4, rtol=0)
    # all classes (no sort) go to ONNX
    path = prog.export("Shapes", tmp_path / "all.onnx", model=model, class_="all")
    _, classes, _, maps = _run(path, x)
    ref = prog.explainer("Shapes", model, strategy="autograd", class_="all")(x)
    assert maps.shape == (3, 4, 64, 64) and torch.equal(classes, ref.classes)
    torch.testing.assert_close(maps, ref.maps, atol=1e-4, rtol=0)
