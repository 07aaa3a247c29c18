"""`evoc import PYTHON_PATH:ATTR [--input-shape N,3,224,224] [-o FILE.evo] [--name NAME]`."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

from evo.cli.common import EXIT_OK, CommandError, UsageError
from evo.cli.output import write_output

DEFAULT_SHAPE = "1,3,224,224"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "import", help="import a PyTorch model as evo source",
        description="Trace a PyTorch model and write it as a readable evo program whose module names "
                    "follow the model (its state_dict loads with strict=True).")
    p.add_argument("target", metavar="PYTHON_PATH:ATTR",
                   help="a .py file or a dotted module name, ':' and an nn.Module instance or a zero-argument "
                        "factory/class in it (e.g. models.py:Net or torchvision.models:resnet18)")
    p.add_argument("--input-shape", default=DEFAULT_SHAPE, metavar="N,C,H,W",
                   help=f"example input shape; the first dimension is the batch and may be written N "
                        f"(default: {DEFAULT_SHAPE})")
    p.add_argument("-o", "--output", metavar="FILE.evo", help="output file (default: stdout)")
    p.add_argument("--name", help="the network's name (default: the model's class name)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip compiling the result and comparing its outputs with the model's")


def main(args) -> int:
    """Errors take evoc's one path: a bad target, shape or path is a UsageError (exit 2); a
    model that fails to import, build or convert is a CommandError (exit 1)."""
    shape = parse_shape(args.input_shape)
    if args.name is not None:
        from evo.importer.tree import legal_name

        if not legal_name(args.name):
            raise UsageError(f"--name '{args.name}': a network name is an evo identifier (letters, digits and _, "
                             "not starting with a digit) and not a keyword or built-in function")
    model = load_model(args.target)
    import torch

    from evo.importer.api import ConversionError, from_torch

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=gen)
    try:
        src = from_torch(model, x, name=args.name, verify=not args.no_verify)
    except ConversionError as e:
        hint = None
        if any(p.startswith("the model fails on the example input") for p in e.problems):
            hint = f"give the model's input shape with --input-shape (now {args.input_shape})"
        raise CommandError(str(e), hint) from None
    model_file = args.target.rsplit(":", 1)[0]
    write_output(args.output, src, inputs=[model_file] if model_file.endswith(".py") else [])
    if args.output not in (None, "-"):
        print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK


def parse_shape(text: str) -> tuple[int, ...]:
    dims = []
    parts = [p.strip() for p in text.replace("x", ",").split(",") if p.strip()]
    for i, p in enumerate(parts):
        if i == 0 and p.upper() == "N":
            dims.append(2)  # the batch: any size works; 2 catches batch-specific reshapes
            continue
        try:
            d = int(p)
        except ValueError:
            raise UsageError(f"--input-shape: '{p}' is not a positive integer") from None
        if d <= 0:
            raise UsageError(f"--input-shape: '{p}' is not a positive integer")
        dims.append(d)
    if len(dims) < 2:
        raise UsageError("--input-shape needs a batch dimension and at least one more, e.g. N,3,224,224")
    return tuple(dims)


def load_model(target: str):
    """The nn.Module named by PYTHON_PATH:ATTR."""
    from torch import nn

    if ":" not in target:
        raise UsageError(f"'{target}': expected PYTHON_PATH:ATTR, e.g. models.py:Net")
    path, attr = target.rsplit(":", 1)
    if not path or not attr:
        raise UsageError(f"'{target}': expected PYTHON_PATH:ATTR, e.g. models.py:Net")
    mod = _import(path)
    obj = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            have = sorted(k for k in vars(mod) if not k.startswith("_")) if obj is mod else []
            hint = f" (it defines: {', '.join(have[:12])})" if have else ""
            raise UsageError(f"{path} has no attribute '{attr}'{hint}")
        obj = getattr(obj, part)
    if isinstance(obj, nn.Module):
        return obj
    if callable(obj):
        try:
            made = obj()
        except (Exception, SystemExit) as e:  # noqa: BLE001 -- the user's code (sys.exit included)
            raise CommandError(f"calling {attr}() failed: {_what(e)}") from None
        if isinstance(made, nn.Module):
            return made
        raise CommandError(f"{attr}() returned {type(made).__name__}, not an nn.Module")
    raise UsageError(f"{attr} is a {type(obj).__name__}, not an nn.Module or a factory")


def _what(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return f"it called sys.exit({e.code!r})"
    return f"{type(e).__name__}: {e}"


def _import(path: str):
    p = Path(path)
    if path.endswith(".py") or os.sep in path or "/" in path:
        if not p.is_file():
            raise UsageError(f"cannot read {path}: no such file")
        name = f"_evo_import_{p.stem}"
        spec = importlib.util.spec_from_file_location(name, p)
        if spec is None or spec.loader is None:
            raise UsageError(f"cannot import {path}")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        sys.path.insert(0, str(p.resolve().parent))
        try:
            spec.loader.exec_module(mod)
        except (Exception, SystemExit) as e:  # noqa: BLE001 -- the user's code (sys.exit included)
            raise CommandError(f"importing {path} failed: {_what(e)}") from None
        finally:
            try:
                sys.path.remove(str(p.resolve().parent))
            except ValueError:
                pass
        return mod
    if str(Path.cwd()) not in sys.path and "" not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as e:
        if e.name and path.startswith(e.name):
            raise UsageError(f"no module named '{path}'") from None
        raise CommandError(f"importing {path} failed: {type(e).__name__}: {e}") from None
    except (Exception, SystemExit) as e:  # noqa: BLE001 -- the user's code (sys.exit included)
        raise CommandError(f"importing {path} failed: {_what(e)}") from None
