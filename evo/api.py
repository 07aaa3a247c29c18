"""The embedding API (normative names from the spec)."""

from __future__ import annotations

import builtins
import os
import types
from pathlib import Path

from evo import codes as C
from evo.check.settings import OBJECTIVES
from evo.compilation import Compilation
from evo.diagnostics import Diagnostic, EvoError, Span
from evo.frontend.source import Source, UnreadableSource, from_string, read_path


def _name(value, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    return value


def _check_args(args: dict) -> None:
    """Network arguments are compile-time scalars (int, float, bool)."""
    for k, v in args.items():
        if not isinstance(v, (int, float, bool)):
            raise TypeError(f"network argument '{k}' must be an int, float or bool, not {type(v).__name__}")


class Program:
    """A checked program.  Networks, hardware, cams and targets by name; build,
    emit, cost, explain and evolve."""

    def __init__(self, comp: Compilation):
        self._comp = comp
        comp.checked  # check now: errors raise EvoError here
        self._modules: dict[tuple, types.ModuleType] = {}

    # ------------------------------------------------------------------ access
    @property
    def compilation(self) -> Compilation:
        return self._comp

    @property
    def networks(self) -> dict:
        return dict(self._comp.program.networks)

    @property
    def hardware(self) -> dict:
        return dict(self._comp.checked.hardware)

    @property
    def cams(self) -> dict:
        return dict(self._comp.checked.cams)

    @property
    def targets(self) -> dict:
        return dict(self._comp.checked.targets)

    @property
    def evolves(self) -> dict:
        return dict(self._comp.checked.evolves)

    def graph(self, network: str, **args):
        self._require(network, self.networks, "network")
        _check_args(args)
        return self._comp.graph(network, args)

    def _require(self, name: str, pool: dict, what: str) -> None:
        _name(name, f"the {what} name")
        if name not in pool:
            from evo.diagnostics import did_you_mean

            hint = did_you_mean(name, pool) or (f"defined: {', '.join(sorted(pool))}" if pool else None)
            code = {"network": C.UNKNOWN_NETWORK, "hardware": C.UNKNOWN_HARDWARE,
                    "cam": C.UNKNOWN_CAM}.get(what, C.UNKNOWN_TARGET)
            raise EvoError(Diagnostic(code,
                                      f"no {what} named '{name}'", Span.unknown(self._comp.filename), hint))

    # ------------------------------------------------------------------ code
    def emit_python(self) -> str:
        """Standalone PyTorch source for every network (at default arguments) and explainer."""
        return self._comp.python

    def _namespace(self, network: str, args: dict) -> types.ModuleType:
        key = (network, tuple(sorted(args.items())))
        mod = self._modules.get(key)
        if mod is None:
            if not args:
                src = self._comp.python
            else:
                from evo.codegen.python import generate

                src = generate([self.graph(network, **args)], self._comp.filename)
            mod = types.ModuleType(f"evo_generated_{len(self._modules)}")
            exec(builtins.compile(src, f"<evo:{self._comp.filename}>", "exec"), mod.__dict__)
            self._modules[key] = mod
        return mod

    def build(self, name: str, seed: int = 0, **args):
        """The network as a `torch.nn.Module` in eval mode, initialised from `seed`."""
        import torch

        self._require(name, self.networks, "network")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, not {type(seed).__name__}")
        g = self.graph(name, **args)
        mod = self._namespace(name, args)
        cls = mod.NETWORKS[g.name]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls()
        return model.eval()

    # ------------------------------------------------------------------ cost
    def cost(self, network: str, hardware: str, batch: int = 1, objective: str = "latency", *,
             sparsity: dict | None = None, constraints: dict | None = None, **args):
        """Per-layer, per-level cost report (see docs/cost-model.md).  `sparsity`: measured
        zero fractions per op, `evo.cost.sparsity.calibrate(prog, network, images)`;
        `constraints`: {op name: evo.cost.MappingConstraints}, parts of an op's mapping fixed."""
        from evo.cost.network import cost_graph

        self._require(network, self.networks, "network")
        self._require(hardware, self.hardware, "hardware")
        if isinstance(batch, bool) or not isinstance(batch, int):
            raise TypeError(f"batch must be an int, not {type(batch).__name__}")
        if batch < 1:
            raise ValueError("batch must be at least 1")
        from evo import limits

        if batch > limits.value("batch"):
            raise ValueError(f"{limits.exceeded('batch', batch, 'batch')}; {limits.LIMITS['batch'].how()}")
        _name(objective, "objective")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}")
        return cost_graph(self.graph(network, **args), self.hardware[hardware], batch=batch, objective=objective,
                          sparsity=sparsity, constraints=constraints)

    # ------------------------------------------------------------------ cam
    def explainer(self, cam: str, model=None, **overrides):
        """A callable `exp(images) -> result` with `.maps`, `.classes`, `.scores`."""
        from evo.runtime.explain import make_explainer

        self._require(cam, self.cams, "cam")
        if model is not None:
            import torch

            if not isinstance(model, torch.nn.Module):
                raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
        return make_explainer(self, cam, model, overrides)

    def export(self, cam: str, path=None, *, model=None, format: str = "onnx", **kw):  # noqa: A002
        """The network with the cam's compiled explainer (no autograd) as one ONNX model
        (`format="onnx"`, written to `path`, default `<cam>.onnx`; returns the path) or a
        `torch.export` program (`format="torch-export"`; returned, and saved when `path`
        is given).  Inputs `x` [B, 3, H, W] with a dynamic batch; outputs logits,
        classes, scores, maps.  `model`: the network with its weights (default: built
        from seed 0); `opset` (default 18) and cam overrides (layer, method, class_...)
        as keywords.  See docs/deployment.md."""
        from evo.runtime.export import export

        self._require(cam, self.cams, "cam")
        return export(self, cam, path, model=model, format=format, **kw)

    # ------------------------------------------------------------------ evolve
    def evolve(self, name: str, **kw):
        from evo.evolve.driver import run_evolve

        self._require(name, self.evolves, "evolve")
        unknown = sorted(set(kw) - {"generations", "population", "seed", "progress", "workers", "cluster"})
        if unknown:
            raise TypeError(f"evolve() got unexpected keyword arguments: {', '.join(unknown)}")
        for what in ("generations", "population", "seed"):
            v = kw.get(what)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise TypeError(f"{what} must be an int, not {type(v).__name__}")
        w = kw.get("workers")
        if w is not None and (isinstance(w, bool) or not isinstance(w, int)):
            raise TypeError(f"workers must be an int, not {type(w).__name__}")
        if kw.get("progress") is not None and not callable(kw["progress"]):
            raise TypeError("progress must be callable")
        return run_evolve(self, name, **kw)


def load_plugins() -> None:
    """Load the op plugins (`evo.ops` entry points, EVO_PLUGINS) once: the entry points
    (`compile`, `compile_file`, `evoc`) call this before compiling."""
    from evo.extend import load_plugins as _load

    _load()


def compile_source(src: Source) -> Program:
    """Compile what the source reader read (the command line's entry point)."""
    load_plugins()
    return Program(Compilation(src.text, src.name, src.base_dir))


def compile(source: str, filename: str = "<string>", base_dir: str | Path | None = None) -> Program:  # noqa: A001
    """Compile evo source text.  Its imports are relative to `base_dir` (default: the
    current directory); absolute import paths are taken as they are.  Raises
    `evo.EvoError` for a bad program."""
    src = from_string(source, filename, base_dir)
    return compile_source(Source(src.text, src.name, Path(base_dir) if base_dir is not None else None))


def compile_file(path: str | Path) -> Program:
    """Compile a program file.  Raises `evo.EvoError` for a bad program, and for a path
    that is not a readable regular file (E0109) or text that is not UTF-8 (E0001)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or a pathlib.Path, not {type(path).__name__}")
    shown = os.fspath(path)
    if not isinstance(shown, str):
        raise TypeError("path must be a str or a pathlib.Path, not bytes")
    try:
        src = read_path(path, shown)
    except UnreadableSource as e:
        raise EvoError(Diagnostic(C.UNREADABLE_FILE, str(e), Span.unknown(shown if "\0" not in shown else "<path>"),
                                  "give the path of an evo program (a regular file)")) from None
    return compile_source(src)
