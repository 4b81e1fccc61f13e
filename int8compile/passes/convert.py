"""convert: replace each calibrated FloatLayer by quantize -> int8 op, keeping int8 between layers.

A layer's int8 output feeds the next quantized layer directly; only float consumers get a
dequantize. A layer none of whose consumers is quantized emits float straight from its epilogue
(docs/numerics.md section 5). Weights are quantized here, so parameters are frozen at this moment.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Optional

import torch
from torch import fx

from .. import numerics, ops
from ..kernels import registry
from ..layers import LayerSpec
from .context import PassContext
from .observe import MAX_POOLS, VALUE_PRESERVING, ObserveHook, passthrough_input, root

aten = torch.ops.aten


@dataclass
class Int8Value:
    node: fx.Node          # the int8 tensor in the graph
    scale: float


def convert(gm: fx.GraphModule, ctx: PassContext) -> fx.GraphModule:
    _remove_observers(gm)
    layers = [(n, ctx.layers[n.target]) for n in gm.graph.nodes
              if n.op == "call_module" and n.target in ctx.layers and ctx.layers[n.target].quantize]
    # read scales while the graph still has its float form (rewriting changes node inputs)
    keys = {n: _scales_of(n, spec, ctx) for n, spec in layers}
    int8: dict[fx.Node, Int8Value] = {}
    for node, spec in layers:
        _convert_layer(gm, ctx, node, spec, int8, *keys[node])
    _views_to_reshapes(gm)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.graph.lint()
    gm.recompile()
    return gm


def _remove_observers(gm: fx.GraphModule) -> None:
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), ObserveHook):
            gm.graph.erase_node(node)


def _views_to_reshapes(gm: fx.GraphModule) -> None:
    """int8 convs return channels-last tensors where the float graph had contiguous ones, so a
    later .view may no longer be legal; reshape is the same op where it is, and copies where not."""
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target is aten.view.default:
            node.target = aten.reshape.default


def _scales_of(layer: fx.Node, spec: LayerSpec, ctx: PassContext):
    """(s_x, s_residual or None, s_y or None when the layer can emit float) of a float layer node."""
    scale = lambda node: ctx.scales[ctx.tensor_keys[root(node).name]]
    residual = layer.args[1] if len(layer.args) > 1 else None
    out_int8 = spec.has_residual or _feeds_quantized_layer(layer, ctx)
    return scale(layer.args[0]), (scale(residual) if residual is not None else None), \
        (scale(layer) if out_int8 else None)


def _convert_layer(gm, ctx: PassContext, layer: fx.Node, spec: LayerSpec, int8,
                   s_x: float, s_r: Optional[float], s_y: Optional[float]) -> None:
    """Replace one FloatLayer node: [quantize] -> int8 linear/conv2d -> [dequantize]."""
    x, residual = layer.args[0], (layer.args[1] if len(layer.args) > 1 else None)
    w_q, s_w = numerics.quantize_weight(spec.weight)
    float_dtype = layer.meta["val"].dtype if "val" in layer.meta else torch.float32
    const = lambda value, what: ctx.add_constant(gm, layer, value.to(ctx.device), f"{spec.name}_{what}")
    with gm.graph.inserting_before(layer):
        views = spec.kind == "linear"       # conv inputs must stay channels-last: no reshaped reuse
        xq = _int8_input(gm, ctx, x, s_x, int8, spec.conv1d, views)
        rq = _int8_input(gm, ctx, residual, s_r, int8, spec.conv1d, views) if residual is not None else None
    if spec.act == "gelu":
        _convert_gelu_layer(gm, ctx, layer, spec, int8, const, xq, w_q, s_x, s_w, s_y, float_dtype)
        return
    epilogue = _epilogue(ctx, spec, const, s_x, s_w, s_y, s_r, rq, float_dtype)
    with gm.graph.inserting_before(layer):
        if spec.kind == "linear":
            out = gm.graph.call_function(ops.LINEAR, (xq, const(w_q, "weight"), *epilogue))
        else:
            w_ohwi = w_q.permute(0, 2, 3, 1).contiguous()
            out = gm.graph.call_function(ops.CONV2D, (xq, const(w_ohwi, "weight"), *epilogue,
                                                      list(spec.stride), list(spec.padding),
                                                      list(spec.dilation), spec.groups))
        out.meta["int8_layer"] = spec.name                  # the op node: lower records its kernel
        if spec.conv1d:
            out = gm.graph.call_function(aten.squeeze.dim, (out, 2))
        out.meta.update(int8_layer_output=spec.name, int8_scale=s_y)   # what report measures
        replacement = out
        if s_y is not None:                                 # int8 out: float consumers dequantize
            replacement = gm.graph.call_function(ops.DEQUANTIZE, (out, s_y, float_dtype))
            int8[replacement] = Int8Value(out, s_y)
    layer.replace_all_uses_with(replacement)
    gm.graph.erase_node(layer)
    spec.scales = {"in": s_x, "out": s_y, "residual": s_r}


def _convert_gelu_layer(gm, ctx: PassContext, layer: fx.Node, spec: LayerSpec, int8, const, xq: fx.Node,
                        w_q: torch.Tensor, s_x: float, s_w: torch.Tensor, s_y: Optional[float],
                        float_dtype) -> None:
    """linear + GELU. int8 output: one ops.linear_gelu (GELU in the epilogue, docs/numerics.md 6.1).
    Float output, or no fast linear_gelu kernel on this device: float linear, then aten.gelu."""
    scale = numerics.requant_params(numerics.RequantMode.FLOAT, s_x * s_w).scale
    bias = const(numerics.quantize_bias(spec.bias, s_x, s_w), "bias")
    fused = s_y is not None and (ctx.options.target == "reference" or
                                 registry.has_fast_kernel("linear_gelu", ctx.device.type))
    with gm.graph.inserting_before(layer):
        if fused:
            out = gm.graph.call_function(ops.LINEAR_GELU, (xq, const(w_q, "weight"), bias, const(scale, "scale"),
                                                           numerics.inverse_scale(s_y)))
            out.meta["int8_layer"] = spec.name
            out.meta.update(int8_layer_output=spec.name, int8_scale=s_y)
            replacement = gm.graph.call_function(ops.DEQUANTIZE, (out, s_y, float_dtype))
            int8[replacement] = Int8Value(out, s_y)
        else:                                     # the consumers quantize the GELU output themselves
            inf = float("inf")
            out = gm.graph.call_function(ops.LINEAR, (xq, const(w_q, "weight"), bias, const(scale, "scale"),
                                                      None, None, None, None, 0.0, -inf, inf, float_dtype))
            out.meta["int8_layer"] = spec.name
            replacement = gm.graph.call_function(aten.gelu.default, (out,))
            replacement.meta.update(int8_layer_output=spec.name, int8_scale=None)
    layer.replace_all_uses_with(replacement)
    gm.graph.erase_node(layer)
    spec.scales = {"in": s_x, "out": s_y if fused else None, "residual": None}


def _epilogue(ctx: PassContext, spec: LayerSpec, const, s_x: float, s_w: torch.Tensor,
              s_y: Optional[float], s_r: Optional[float], residual: Optional[fx.Node], float_dtype):
    """The epilogue arguments of ops.linear / ops.conv2d (docs/numerics.md sections 4-6)."""
    if s_y is not None:
        rq = numerics.requant_params(ctx.options.requant_mode, s_x * s_w / s_y,
                                     s_r / s_y if s_r is not None else None)
    else:
        rq = numerics.requant_params(numerics.RequantMode.FLOAT, s_x * s_w)
    optional = lambda value, what: const(value, what) if value is not None else None
    lo, hi = numerics.clamp_bounds(*spec.clamp, s_y)
    return (const(numerics.quantize_bias(spec.bias, s_x, s_w), "bias"), const(rq.scale, "scale"),
            optional(rq.mult, "mult"), optional(rq.shift, "shift"), residual,
            optional(rq.res_mult, "res_mult"), rq.res_scale, lo, hi,
            torch.int8 if s_y is not None else float_dtype)


def _feeds_quantized_layer(node: fx.Node, ctx: PassContext) -> bool:
    for user in node.users:
        if user.op == "call_module":
            spec = ctx.layers.get(user.target)
            if spec is not None and spec.quantize:
                return True
        if user.target in MAX_POOLS:                   # look through to the pooled values
            user = next((u for u in user.users if passthrough_input(u) is node), None)
            if user is None:
                continue
        if passthrough_input(user) is node and _feeds_quantized_layer(user, ctx):
            return True
    return False


def _int8_input(gm, ctx: PassContext, x: fx.Node, scale: float, int8: dict, four_d: bool,
                views: bool) -> fx.Node:
    """The int8 form of float node `x` at `scale`: reuse a layer's int8 output, else quantize."""
    value = _reuse(gm, x, int8, views)
    if value is None:
        # quantize where the values come from, once: q, k and v projections read three views
        # of one tensor and share one quantize
        src = x
        while views and src.op == "call_function" and src.target in VALUE_PRESERVING:
            src = src.args[0]
        q = gm.graph.call_function(ops.QUANTIZE, (src if not four_d else _unsqueeze(gm, src),
                                                  numerics.inverse_scale(scale)))
        if four_d:
            q = gm.graph.call_function(aten.squeeze.dim, (q, 2))
        int8[src] = Int8Value(q, scale)
        value = _reuse(gm, x, int8, views)
    return _unsqueeze(gm, value.node) if four_d else value.node


def _reuse(gm, x: fx.Node, int8: dict, views: bool) -> Optional[Int8Value]:
    """int8 form of x if x is a dequantized layer output, possibly behind pass-through ops
    (re-applied to the int8 tensor: reshape for views, max pooling computed exactly via float)."""
    if x in int8:
        return int8[x]
    src = passthrough_input(x)
    inner = _reuse(gm, src, int8, views) if src is not None else None
    if inner is None:
        return None
    if x.target in VALUE_PRESERVING:
        if not views:
            return None
        # the same op on the int8 tensor (a view of a channels-last tensor may need a copy)
        target = aten.reshape.default if x.target in (aten.view.default, aten._unsafe_view.default) \
            else x.target
        node = gm.graph.call_function(target, (inner.node, *x.args[1:]), dict(x.kwargs))
    elif _int8_pool_args(x.args[0]) is not None:                   # getitem(max_pool2d(...), 0), CPU
        node = gm.graph.call_function(ops.MAX_POOL2D, (inner.node, *_int8_pool_args(x.args[0])))
    else:                                                          # getitem(max_pool(...), 0)
        pool = x.args[0]
        as_float = gm.graph.call_function(aten._to_copy.default, (inner.node,), {"dtype": torch.float32})
        pooled = gm.graph.call_function(pool.target, (as_float, *pool.args[1:]), pool.kwargs)
        values = gm.graph.call_function(operator.getitem, (pooled, 0))
        node = gm.graph.call_function(aten._to_copy.default, (values,), {"dtype": torch.int8})
    int8[x] = Int8Value(node, inner.scale)
    return int8[x]


def _int8_pool_args(pool: fx.Node):
    """(kernel, stride, padding, dilation, ceil_mode) for ops.max_pool2d (the cpu int8 pool), or None
    when the pool is not a CPU max_pool2d."""
    val = pool.meta.get("val")                                     # (values, indices)
    val = val[0] if isinstance(val, (tuple, list)) and val else None
    if pool.target is not aten.max_pool2d_with_indices.default or not isinstance(val, torch.Tensor) \
            or val.device.type != "cpu":
        return None
    pair = lambda v, default: [int(v), int(v)] if isinstance(v, int) else \
        ([int(v[0])] * 2 if len(v) == 1 else [int(a) for a in v]) if len(v) else default
    kernel = pair(pool.args[1], None)
    get = lambda i, name, default: pool.args[i] if len(pool.args) > i else pool.kwargs.get(name, default)
    stride = pair(get(2, "stride", []), kernel)
    return (kernel, stride, pair(get(3, "padding", 0), [0, 0]), pair(get(4, "dilation", 1), [1, 1]),
            bool(get(5, "ceil_mode", False)))


def _unsqueeze(gm, node: fx.Node) -> fx.Node:
    return gm.graph.call_function(aten.unsqueeze.default, (node, 2))
