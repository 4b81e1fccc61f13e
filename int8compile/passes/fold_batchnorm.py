"""fold_batchnorm: conv -> batch_norm (eval) becomes one conv with scaled weight and shifted bias."""
from __future__ import annotations

import operator

import torch
from torch import fx

from .context import PassContext

aten = torch.ops.aten
# (op, index of the `training` flag or None when the op is inference-only). Tracing CUDA inputs
# gives cudnn_batch_norm (same argument order as native_batch_norm), CPU inputs the other two.
BATCH_NORMS = {
    aten._native_batch_norm_legit_no_training.default: None,
    aten.native_batch_norm.default: 5,
    aten._native_batch_norm_legit.default: 5,
    aten.cudnn_batch_norm.default: 5,
    aten.miopen_batch_norm.default: 5,
}


def fold_batchnorm(gm: fx.GraphModule, ctx: PassContext) -> fx.GraphModule:
    for bn in list(gm.graph.nodes):
        conv = _foldable_pair(bn, ctx)
        if conv is None:
            continue
        x, w, b, *conv_args = conv.args
        mean, var, gamma, beta = (ctx.constant(n) for n in _bn_stats(bn))
        eps = bn.args[-1]
        weight = ctx.constant(w)
        inv_std = torch.rsqrt(var.double() + eps)
        g = gamma.double() if gamma is not None else torch.ones_like(inv_std)
        factor = g * inv_std
        new_w = (weight.double() * factor.reshape(-1, *[1] * (weight.dim() - 1))).to(weight.dtype)
        bias = ctx.constant(b).double() if b is not None else torch.zeros_like(factor)
        new_b = (bias - mean.double()) * factor + (beta.double() if beta is not None else 0)
        w_node = ctx.add_constant(gm, conv, new_w, f"{ctx.sources.get(w.name, w.name)}_bnfold")
        ctx.sources[w_node.name] = ctx.sources.get(w.name, w.name)   # keep the layer's name
        b_node = ctx.add_constant(gm, conv, new_b.to(weight.dtype), f"{w_node.name}_bias")
        conv.args = (x, w_node, b_node, *conv_args)
        conv.meta.setdefault("int8_fused", []).append("batch_norm")
        output = next(u for u in bn.users if u.target is operator.getitem and u.args[1] == 0)
        output.replace_all_uses_with(conv)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm


def _bn_stats(bn: fx.Node):
    # native_batch_norm(x, weight, bias, mean, var, training, momentum, eps) and
    # _native_batch_norm_legit_no_training(x, weight, bias, mean, var, momentum, eps)
    x, gamma, beta, mean, var = bn.args[:5]
    return mean, var, gamma, beta


def _foldable_pair(bn: fx.Node, ctx: PassContext):
    if bn.op != "call_function" or bn.target not in BATCH_NORMS:
        return None
    training_at = BATCH_NORMS[bn.target]
    if training_at is not None and bn.args[training_at]:
        return None
    conv = bn.args[0]
    if not (isinstance(conv, fx.Node) and conv.target == aten.convolution.default
            and len(conv.users) == 1 and ctx.constant(conv.args[1]) is not None
            and (conv.args[2] is None or ctx.constant(conv.args[2]) is not None)
            and not conv.args[6]):                                      # not transposed
        return None
    stats = _bn_stats(bn)
    if any(s is not None and ctx.constant(s) is None for s in stats) or \
            ctx.constant(stats[0]) is None or ctx.constant(stats[1]) is None:
        return None
    others = [u for u in bn.users if not (u.target is operator.getitem and u.args[1] == 0)]
    if others and any(u.users for u in others):
        return None                                                     # batch stats are used
    return conv
