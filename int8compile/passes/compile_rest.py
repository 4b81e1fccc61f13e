"""compile: everything that is not an int8 op is compiled by inductor (or run eagerly).

Our int8 ops are opaque custom ops with fake implementations, so inductor compiles and fuses the
float code around them. Graphs with symbolic shapes run eagerly (inductor would specialise them to
the calibration batch, and Dynamo's guards would not know).
"""
from __future__ import annotations

import logging
from typing import Callable

import torch
from torch import fx

from .context import PassContext

log = logging.getLogger(__name__)


def compile_rest(gm: fx.GraphModule, ctx: PassContext) -> Callable:
    if ctx.options.rest == "eager":
        ctx.compiled_by = "eager (option rest='eager')"
        return gm.forward
    if any(isinstance(x, torch.SymInt) or not isinstance(x, torch.Tensor) for x in ctx.example_inputs):
        ctx.compiled_by = "eager (dynamic shapes)"
        return gm.forward
    from torch._inductor import compile_fx, list_mode_options

    patches = list_mode_options(ctx.options.inductor_mode) if ctx.options.inductor_mode else {}
    ctx.compiled_by = f"inductor{' ' + ctx.options.inductor_mode if ctx.options.inductor_mode else ''}"
    return compile_fx.compile_fx(gm, list(ctx.example_inputs), config_patches=patches)
