"""compile: everything that is not an int8 op is compiled by inductor (or run eagerly).

Our int8 ops are opaque custom ops with fake implementations, so inductor compiles and fuses the
float code around them. Inductor sees only the real inputs: the frozen parameters Dynamo passes as
arguments become constants of the graph (or vanish when only the int8 ops used them), held as plain
tensor attributes rather than buffers, so CUDA graphs (mode="reduce-overhead", the default on a GPU) do
not copy them into static buffers on every call. A graph Dynamo made dynamic (symbolic sizes) is
specialised per concrete input shape and compiled once per shape (up to MAX_SHAPES, then eager),
because inductor compiled outside Dynamo cannot add guards of its own.
"""
from __future__ import annotations

import copy
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
    gm = fx.GraphModule(gm, copy.deepcopy(gm.graph))   # a graph of its own; the int8 graph stays as reported
    keep = _frozen_inputs_to_constants(gm, ctx)
    _buffers_to_plain_tensors(gm)
    if all(isinstance(x, torch.Tensor) for x in ctx.example_inputs):
        mode = inductor_mode(ctx)
        ctx.compiled_by = "inductor" + (f" {mode}" if mode else "")
        compiled = _inductor(gm, [ctx.example_inputs[i] for i in keep], ctx)
    else:
        ctx.compiled_by = f"inductor, one compile per input shape (dynamic graph; eager after {MAX_SHAPES})"
        compiled = PerShape(gm, ctx)
    return compiled if len(keep) == len(ctx.example_inputs) else TakeInputs(compiled, keep)


def _frozen_inputs_to_constants(gm: fx.GraphModule, ctx: PassContext) -> list[int]:
    """Frozen parameter placeholders become get_attr constants (dropped if unused); returns the
    positions of the arguments the graph still takes."""
    keep = []
    for i, node in enumerate([n for n in gm.graph.nodes if n.op == "placeholder"]):
        value = ctx.constant(node)
        if value is None:
            keep.append(i)
            continue
        if node.users:
            node.replace_all_uses_with(ctx.add_constant(gm, node, value, ctx.sources.get(node.name, node.name)))
        gm.graph.erase_node(node)
    gm.recompile()
    return keep


def _buffers_to_plain_tensors(gm: fx.GraphModule) -> None:
    """AOTAutograd lifts parameters and buffers into graph inputs, and for a graph that is not Dynamo's
    own it cannot tell they are static: CUDA graphs then copied all of them on every call (ResNet-50:
    166 copies, ~1 ms of host time, measured on an H200). Plain tensor attributes it embeds as constants."""
    for name, value in list(gm.named_buffers()) + list(gm.named_parameters()):
        owner_name, _, attr = name.rpartition(".")
        owner = gm.get_submodule(owner_name)
        owner._buffers.pop(attr, None)
        owner._parameters.pop(attr, None)
        setattr(owner, attr, value.detach())


class TakeInputs:
    """Calls `fn` with the arguments at positions `keep` (the compiled graph's real inputs)."""

    def __init__(self, fn: Callable, keep: list[int]):
        self.fn, self.keep = fn, keep

    def __call__(self, *args):
        return self.fn(*[args[i] for i in self.keep])


def inductor_mode(ctx: PassContext) -> str | None:
    """The option, with `auto` resolved: CUDA graphs (reduce-overhead) when the graph runs on a GPU. Each
    int8 op costs tens of microseconds of host time (dispatch, launch); replayed as one graph, ResNet-50 at
    batch 64 ran 1.42x fp16 inductor instead of 0.83x (H200, benchmarks/results/cuda_2026-11-26.md)."""
    mode = ctx.options.inductor_mode
    if mode != "auto":
        return None if mode == "default" else mode
    on_gpu = any(isinstance(x, torch.Tensor) and x.is_cuda for x in ctx.example_inputs)
    return "reduce-overhead" if on_gpu else None


def _inductor(gm: fx.GraphModule, args, ctx: PassContext) -> Callable:
    from torch._inductor import compile_fx, list_mode_options
    mode = inductor_mode(ctx)
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
