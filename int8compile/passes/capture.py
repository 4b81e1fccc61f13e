"""capture: Dynamo's torch-level FX graph -> an ATen graph, with parameters and buffers marked frozen.

Tracing to ATen gives one canonical op set (nn.Linear, F.linear, x @ W.t() and torch.addmm all become
t/mm/addmm; every conv becomes aten.convolution). The trace is symbolic over Dynamo's fake inputs, so
graphs that Dynamo made dynamic stay dynamic. Placeholders keep Dynamo's order, so the compiled
program takes exactly the arguments Dynamo passes.
"""
from __future__ import annotations

import torch
from torch import fx
from torch._guards import detect_fake_mode
from torch.fx.experimental.proxy_tensor import make_fx

from .context import PassContext, readable_source


def capture(gm: fx.GraphModule, ctx: PassContext) -> fx.GraphModule:
    dynamo_placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    fakes = [n.meta.get("example_value", x) for n, x in zip(dynamo_placeholders, ctx.example_inputs)]
    fake_mode = detect_fake_mode(fakes)
    with torch.no_grad():
        if fake_mode is not None:
            with fake_mode:
                aten = make_fx(gm, tracing_mode="fake")(*fakes)
        else:                                    # called outside Dynamo (tests): trace real inputs
            aten = make_fx(gm, tracing_mode="fake")(*ctx.example_inputs)
    aten_placeholders = [n for n in aten.graph.nodes if n.op == "placeholder"]
    for dyn, node, value in zip(dynamo_placeholders, aten_placeholders, ctx.example_inputs):
        if _is_frozen(dyn, value):
            ctx.constants[node.name] = value.detach()
            grapharg = dyn.meta.get("grapharg")
            source = grapharg.source.name if grapharg is not None else dyn.name
            ctx.sources[node.name] = readable_source(source() if callable(source) else source)
    tensors = [v for v in ctx.example_inputs if isinstance(v, torch.Tensor)]
    if tensors:
        ctx.device = tensors[-1].device
    _drop_dead_code(aten)
    return aten


def _is_frozen(placeholder: fx.Node, value) -> bool:
    """Parameters and buffers of modules (Dynamo marks them static inputs) are frozen constants."""
    if not isinstance(value, torch.Tensor):
        return False
    return isinstance(value, torch.nn.Parameter) or \
        getattr(value, "_dynamo_static_input_type", None) is not None


def _drop_dead_code(gm: fx.GraphModule) -> None:
    # make_fx leaves e.g. an unused aten.empty from batch_norm's reserve buffer.
    gm.graph.eliminate_dead_code()
    gm.recompile()
