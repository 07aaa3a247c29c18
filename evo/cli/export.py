"""`evoc export FILE --cam C`: the network with its compiled explainer as one ONNX model
or a torch.export program (see docs/deployment.md)."""

from __future__ import annotations

import sys
from pathlib import Path

from evo.cli.common import CommandError, UsageError, compile_program, pick
from evo.cli.output import write_output


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a network with its compiled explainer (ONNX or torch.export)")
    p.add_argument("file", metavar="FILE", help="evo program")
    p.add_argument("--cam", metavar="C", help="the cam (default: the program's only/first cam)")
    p.add_argument("--weights", metavar="W.pt", help="state_dict of the network (default: bundled weights "
                   "for the program, e.g. quickstart.pt; else random initialisation)")
    p.add_argument("--format", choices=("onnx", "torch-export"), default="onnx",
                   help="onnx (default) or torch-export (a .pt2 archive)")
    p.add_argument("--opset", type=int, default=18, metavar="N", help="ONNX opset (at least 17; default 18)")
    p.add_argument("-o", "--output", metavar="OUT", help="output file (default: <cam>.onnx or <cam>.pt2)")
    p.add_argument("--no-verify", action="store_true",
                   help="do not run the ONNX model with onnxruntime against the torch explainer")


def main(args) -> int:
    from evo.cli.run import load_program_weights
    from evo.runtime import export as ex

    if args.opset < ex.MIN_OPSET:
        raise UsageError(f"--opset must be at least {ex.MIN_OPSET}")
    if args.format == "onnx":
        try:
            import onnx.defs

            newest = onnx.defs.onnx_opset_version()
        except ImportError:
            newest = None
        if newest is not None and args.opset > newest:
            raise UsageError(f"--opset {args.opset}: the installed onnx knows opsets up to {newest}")
    prog = compile_program(args.file)
    cams = prog.cams
    if not cams:
        raise UsageError(f"{args.file} declares no cam")
    name = pick("cam", args.cam if args.cam is not None else next(iter(cams)), cams, list_defined=False)
    spec = cams[name]
    model = prog.build(spec.network)
    wpath = load_program_weights(model, Path(args.file), args.weights)
    module = ex.export_module(prog, name, model)  # EvoError (exit 1) for what export does not cover
    x = ex.example_input(prog, name)
    out = args.output or f"{name}.{'onnx' if args.format == 'onnx' else 'pt2'}"
    inputs = [args.file] + ([str(wpath)] if wpath else [])
    try:
        if args.format == "onnx":
            data = ex.onnx_bytes(module, x, args.opset)
        else:
            data = ex.torch_export_bytes(ex.to_torch_export(module, x))
    except ImportError as e:
        raise UsageError(f"ONNX export needs onnx and onnxscript: pip install 'evo-lang[export]' ({e})") from None
    verdict = None
    if args.format == "onnx" and not args.no_verify:
        verdict = _verify(ex, data, module, x)  # before writing: a model that disagrees is not written
    write_output(out, data, inputs=inputs, label=out)
    print(f"exported cam {name} ({spec.method}, strategy compiled, network {spec.network}) as {args.format} "
          f"-> {out} ({len(data) / 1e6:.2f} MB); input x [B, {', '.join(str(int(s)) for s in x.shape[1:])}], "
          "outputs logits, classes, scores, maps")
    if verdict is not None:
        print(verdict)
    return 0


MAP_TOLERANCE = 1e-4


def _verify(ex, data: bytes, module, x) -> str | None:
    """The onnxruntime check: the line to print when the model agrees with the torch explainer
    (a map difference above MAP_TOLERANCE with equal classes is float rounding: a warning);
    CommandError (exit 1) when onnxruntime cannot run it, it holds gradient operators or its
    classes differ; None, with a note, when onnxruntime is not installed."""
    try:
        v = ex.verify_onnx(data, module, x)
    except ImportError:
        print("evoc: note: onnxruntime is not installed: the model was not verified "
              "(pip install 'evo-lang[export]')", file=sys.stderr)
        return None
    except Exception as e:  # noqa: BLE001 - onnxruntime's own errors: the exported model does not run
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise CommandError(f"onnxruntime cannot run the exported model ({type(e).__name__}: {first}); "
                           "nothing was written", "--no-verify writes it without this check") from None
    line = (f"onnxruntime: max |map - torch| {v['max_map_diff']:.2e}, classes "
            f"{'equal' if v['classes_equal'] else 'DIFFER'}, {len(v['gradient_ops'])} gradient ops")
    if v["gradient_ops"]:
        raise CommandError(f"{line}: the exported model holds gradient operators "
                           f"({', '.join(sorted(set(v['gradient_ops'])))}); nothing was written")
    if not v["classes_equal"]:
        raise CommandError(f"{line}: onnxruntime and torch choose different classes on the example batch "
                           f"(max |logit - torch| {v['max_logit_diff']:.2e}); nothing was written",
                           "--no-verify writes it without this check")
    if not v["max_map_diff"] <= MAP_TOLERANCE:
        print(f"evoc: warning: onnxruntime's maps differ from torch's by up to {v['max_map_diff']:.2e}, "
              f"more than {MAP_TOLERANCE:g} (float rounding differs between the runtimes; the classes agree)",
              file=sys.stderr)
        return f"{line}: verified within the classes, maps above the tolerance"
    return f"{line}: verified"
