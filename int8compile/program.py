"""The callable the backend hands to Dynamo for one captured subgraph.

It runs one of three programs, by calibration state:
  * inside `calibrate(...)`: the observed float graph (observer hooks record ranges);
  * once calibrated: the int8 graph, compiled;
  * before calibration: the float graph, with one warning (or an error, option before_calibration).
"""
from __future__ import annotations

import logging
import warnings
from typing import Callable, Optional

import torch
from torch import fx

from . import calibration, pipeline
from .numerics import sqnr_db
from .passes.context import PassContext

log = logging.getLogger(__name__)


class NotCalibratedError(RuntimeError):
    pass


class Int8Subgraph:
    def __init__(self, observed: fx.GraphModule, ctx: PassContext, frozen_ids: set[int], index: int):
        self.observed = observed
        self.ctx = ctx
        self.frozen_ids = frozen_ids
        self.index = index
        self.quantized: Optional[fx.GraphModule] = None
        self.compiled: Optional[Callable] = None
        self.last_args: Optional[tuple] = None
        self.uncalibrated_reason = "the model has not been calibrated"
        self._warned = False
        calibration.SUBGRAPHS.add(self)

    @property
    def needs_calibration(self) -> bool:
        return bool(self.ctx.tensor_keys)

    def __call__(self, *args):
        session = calibration.active()
        if session is not None:
            session.attach(self)
            self.last_args = args
            return self.observed(*args)
        if self.compiled is None:
            if not self.needs_calibration:
                self.finalize({}, args)                   # nothing to quantize: just compile
            elif (session := calibration.adopt(self)) is not None:
                self.finalize(session.scales, args)
        if self.compiled is not None:
            return self.compiled(*args)
        return self._run_float(args)

    def finalize(self, scales: dict[str, float], args) -> None:
        """observed graph + scales -> int8 graph -> compiled callable (pipeline.finalize)."""
        self.ctx.scales = {k: scales[k] for k in set(self.ctx.tensor_keys.values())}
        self.ctx.example_inputs = list(args)
        self.quantized, self.compiled = pipeline.finalize(self.observed, self.ctx)
        self.ctx.example_inputs = []                      # do not keep a batch of activations alive

    def reset(self) -> None:
        self.quantized = self.compiled = None

    def _run_float(self, args):
        if self.ctx.options.before_calibration == "error":
            raise NotCalibratedError(f"int8 subgraph {self.index} cannot run: {self.uncalibrated_reason}. "
                                     f"Calibrate first: `with int8compile.calibrate(model): model(x)`")
        if not self._warned:
            warnings.warn(f"int8compile: running float because {self.uncalibrated_reason}; "
                          f"calibrate with `with int8compile.calibrate(model): model(x)`",
                          RuntimeWarning, stacklevel=2)
            self._warned = True
        return self.observed(*args)

    def measure_error(self, float_values: dict[str, torch.Tensor]) -> None:
        """SQNR of each layer's int8 output against float, on the last calibration batch."""
        if self.quantized is None or self.last_args is None:
            return
        outputs = _LayerOutputs(self.quantized).run(*self.last_args)
        for spec in self.ctx.layers.values():
            ref = float_values.get(f"{spec.name}:out")
            if spec.name in outputs and ref is not None:
                spec.sqnr = sqnr_db(ref, outputs[spec.name])


class _LayerOutputs(fx.Interpreter):
    """Runs the int8 graph and keeps every layer's output, dequantized."""

    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm)
        self.outputs: dict[str, torch.Tensor] = {}

    def run_node(self, n: fx.Node):
        value = super().run_node(n)
        layer = n.meta.get("int8_layer_output")
        if layer is not None:
            scale = n.meta.get("int8_scale")
            self.outputs[layer] = value.float() * scale if scale is not None else value
        return value

    def run(self, *args):
        with torch.no_grad():
            super().run(*args)
        return self.outputs
