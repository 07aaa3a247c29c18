"""The embedding API (normative names from the spec)."""

from __future__ import annotations

import builtins
import types
from pathlib import Path

from evo.compilation import Compilation
from evo.diagnostics import Diagnostic, EvoError, Span


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
        return self._comp.graph(network, args)

    def _require(self, name: str, pool: dict, what: str) -> None:
        if name not in pool:
            from evo.diagnostics import did_you_mean

            hint = did_you_mean(name, pool) or (f"defined: {', '.join(sorted(pool))}" if pool else None)
            code = {"network": "E0500", "hardware": "E0503", "cam": "E0505"}.get(what, "E0506")
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
        g = self.graph(name, **args)
        mod = self._namespace(name, args)
        cls = mod.NETWORKS[g.name]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls()
        return model.eval()

    # ------------------------------------------------------------------ cost
    def cost(self, network: str, hardware: str, batch: int = 1, objective: str = "latency", **args):
        """Per-layer, per-level cost report (see docs/cost-model.md)."""
        from evo.cost.network import cost_graph

        self._require(network, self.networks, "network")
        self._require(hardware, self.hardware, "hardware")
        if batch < 1:
            raise ValueError("batch must be at least 1")
        return cost_graph(self.graph(network, **args), self.hardware[hardware], batch=batch, objective=objective)

    # ------------------------------------------------------------------ cam
    def explainer(self, cam: str, model=None, **overrides):
        """A callable `exp(images) -> result` with `.maps`, `.classes`, `.scores`."""
        from evo.runtime.explain import make_explainer

        self._require(cam, self.cams, "cam")
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
        from evo.evolution import run_evolve

        self._require(name, self.evolves, "evolve")
        return run_evolve(self, name, **kw)


def compile(source: str, filename: str = "<string>", base_dir: str | Path | None = None) -> Program:  # noqa: A001
    """Compile evo source text.  Raises `evo.EvoError` for a bad program."""
    return Program(Compilation(source, filename, base_dir))


def compile_file(path: str | Path) -> Program:
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    return Program(Compilation(text, str(path), p.parent))
