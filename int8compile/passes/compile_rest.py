"""compile: everything that is not an int8 op is compiled by inductor (or run eagerly).

Our int8 ops are opaque custom ops with fake implementations, so inductor compiles and fuses the
float code around them. A graph Dynamo made dynamic (symbolic sizes) is specialised per concrete
input shape and compiled once per shape (up to MAX_SHAPES, then eager), because inductor compiled
outside Dynamo cannot add guards of its own.
"""
from __future__ import annotations

import logging
from typing import Callable

import torch
from torch import fx
from torch.fx.experimental.proxy_tensor import make_fx

from .context import PassContext

log = logging.getLogger(__name__)
MAX_SHAPES = 8


def compile_rest(gm: fx.GraphModule, ctx: PassContext) -> Callable:
    if ctx.options.rest == "eager":
        ctx.compiled_by = "eager (option rest='eager')"
        return gm.forward
    if all(isinstance(x, torch.Tensor) for x in ctx.example_inputs):
        ctx.compiled_by = "inductor" + (f" {ctx.options.inductor_mode}" if ctx.options.inductor_mode else "")
        return _inductor(gm, ctx.example_inputs, ctx)
    ctx.compiled_by = f"inductor, one compile per input shape (dynamic graph; eager after {MAX_SHAPES})"
    return PerShape(gm, ctx)


def _inductor(gm: fx.GraphModule, args, ctx: PassContext) -> Callable:
    from torch._inductor import compile_fx, list_mode_options
    mode = ctx.options.inductor_mode
    return compile_fx.compile_fx(gm, list(args), config_patches=list_mode_options(mode) if mode else {})


def _signature(args) -> tuple:
    return tuple((tuple(a.shape), a.dtype, a.device) if isinstance(a, torch.Tensor) else a for a in args)


class PerShape:
    """Specialises a dynamic graph to each concrete shape it meets and compiles that with inductor."""

    def __init__(self, gm: fx.GraphModule, ctx: PassContext):
        self.gm, self.ctx = gm, ctx
        self.compiled: dict[tuple, Callable] = {}

    def __call__(self, *args):
        key = _signature(args)
        fn = self.compiled.get(key)
        if fn is None:
            if len(self.compiled) >= MAX_SHAPES:
                return self.gm(*args)
            with torch.no_grad():
                static = make_fx(self.gm, tracing_mode="fake", _allow_non_fake_inputs=True)(*args)
            fn = self.compiled[key] = _inductor(static, args, self.ctx)
            log.info("int8: compiled a specialisation for input shapes %s", key)
        return fn(*args)
