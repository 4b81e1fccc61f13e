"""The Dynamo backend: `torch.compile(model, backend="int8", mode=..., options={...})`."""
from __future__ import annotations

import itertools
import logging

import torch
from torch import fx

from . import pipeline
from .options import Options
from .passes.context import PassContext
from .program import Int8Subgraph

log = logging.getLogger(__name__)
_counter = itertools.count()


def int8_backend(gm: fx.GraphModule, example_inputs, mode=None, options=None) -> Int8Subgraph:
    """Prepare one captured subgraph for calibration (pipeline.prepare) and return its runner."""
    opts = Options.from_compile_args(mode, options)
    ctx = PassContext(options=opts, example_inputs=list(example_inputs))
    observed = pipeline.prepare(gm, ctx)
    frozen = {id(x) for x in example_inputs if isinstance(x, torch.Tensor) and
              (isinstance(x, torch.nn.Parameter) or getattr(x, "_dynamo_static_input_type", None))}
    sub = Int8Subgraph(observed, ctx, frozen, next(_counter))
    log.info("int8 subgraph %d: %d layer(s) to quantize, %d left float", sub.index,
             sum(s.quantize for s in ctx.layers.values()),
             sum(not s.quantize for s in ctx.layers.values()) + len(ctx.rejected))
    return sub


def register() -> None:
    """Make backend="int8" work after `import int8compile` even when the package is not installed
    (installed, the entry point in pyproject.toml registers it without any import)."""
    from importlib.metadata import entry_points
    from torch._dynamo.backends import registry

    if entry_points(group="torch_dynamo_backends", name="int8"):
        return
    if "int8" not in registry._COMPILER_FNS:
        registry.register_backend(int8_backend, name="int8")
