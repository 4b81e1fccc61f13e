"""normalize: fold computations on frozen constants, so every weight is a plain constant.

After this pass `x @ W.t()`, `F.linear(x, W)` and `x @ W_kn` all read a constant weight directly:
chains like t(W), permute(W), W.view(...) or W * 2 are evaluated once at compile time.
"""
from __future__ import annotations

import torch
from torch import fx

from .context import PassContext

MAX_GROWTH = 4          # never fold an op whose result is much larger than its constant inputs


def normalize(gm: fx.GraphModule, ctx: PassContext) -> fx.GraphModule:
    for node in list(gm.graph.nodes):
        if _foldable(node, ctx):
            value = _evaluate(node, ctx)
            if value is not None:
                source = ctx.sources.get(node.all_input_nodes[0].name, node.name)
                folded = ctx.add_constant(gm, node, value, source)
                node.replace_all_uses_with(folded)
                gm.graph.erase_node(node)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm


def _foldable(node: fx.Node, ctx: PassContext) -> bool:
    if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
        return False
    if torch.Tag.nondeterministic_seeded in node.target.tags:
        return False
    inputs = node.all_input_nodes
    return bool(inputs) and all(ctx.constant(n) is not None for n in inputs)


def _evaluate(node: fx.Node, ctx: PassContext):
    args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), lambda n: ctx.constant(n))
    with torch.no_grad():
        value = node.target(*args, **kwargs)
    if not isinstance(value, torch.Tensor):
        return None
    biggest = max(ctx.constant(n).numel() for n in node.all_input_nodes)
    if value.numel() > MAX_GROWTH * max(biggest, 1):
        return None
    return value.contiguous()
