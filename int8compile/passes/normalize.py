"""normalize: fold computations on frozen constants, and move clamps in front of reshapes.

After this pass `x @ W.t()`, `F.linear(x, W)` and `x @ W_kn` all read a constant weight directly:
chains like t(W), permute(W), W.view(...) or W * 2 are evaluated once at compile time. A batched
linear is traced as view -> mm -> view, so `relu(linear(x3d))` arrives as relu(view(mm)); clamps
commute with reshapes, so they are swapped to relu(mm) first and match can fuse them (GELU too).
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
    _clamps_before_views(gm)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm


def _clamps_before_views(gm: fx.GraphModule) -> None:
    from .match import CLAMPS, CURVES
    from .observe import VALUE_PRESERVING
    elementwise = {**CLAMPS, **CURVES}
    for clamp in list(gm.graph.nodes):
        view = clamp.args[0] if clamp.op == "call_function" and clamp.target in elementwise else None
        if not (isinstance(view, fx.Node) and view.target in VALUE_PRESERVING and len(view.users) == 1
                and isinstance(view.args[0], fx.Node) and len(view.args[0].users) == 1):
            continue
        with gm.graph.inserting_before(view):
            moved = gm.graph.call_function(clamp.target, (view.args[0], *clamp.args[1:]), clamp.kwargs)
            moved.meta = dict(view.args[0].meta)
        view.replace_input_with(view.args[0], moved)
        clamp.replace_all_uses_with(view)
        gm.graph.erase_node(clamp)


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
