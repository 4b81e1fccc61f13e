"""The `inductor` target: quantize and dequantize written into the graph as plain ATen ops.

Where inductor compiles the float remainder, a quantize right after a layer-norm or GELU (or a
dequantize right before a pooling) then becomes part of the same generated loop instead of one
more pass over memory. The ATen ops are the reference formula op by op (docs/numerics.md section
2): fp32 multiply by a float32 constant, round half to even, clamp, convert. Inductor compiles
without fp contraction or unsafe math, so its code is bit-exact with the reference
(tests/test_inductor_target.py checks it).
"""
from __future__ import annotations

import torch
from torch import fx

from . import reference
from .registry import OpCall, register

TARGET = "inductor"
PRIORITY = 100                       # beats a standalone kernel: fusion saves a whole pass
aten = torch.ops.aten


def _check(call: OpCall):
    if call.params.get("rest") != "inductor":
        return "only where inductor compiles the graph (option rest='inductor')"
    return None


# Eager forms, used if the op is ever called with target="inductor" outside a compiled graph.
register("quantize", TARGET, priority=PRIORITY, check=_check)(reference.quantize)
register("dequantize", TARGET, priority=PRIORITY, check=_check)(reference.dequantize)


def inline(graph: fx.Graph, node: fx.Node, scalar_constant) -> fx.Node:
    """Replace a quantize/dequantize node by its ATen ops; returns the new output node.

    `scalar_constant(value)` must return a node holding a 0-d float32 tensor (a graph constant)."""
    call = lambda op, *args, **kw: graph.call_function(op, args, kw)
    with graph.inserting_before(node):
        if node.target is torch.ops.int8compile.quantize.default:
            x, inv_scale = node.args[:2]
            v = call(aten.mul.Tensor, call(aten._to_copy.default, x, dtype=torch.float32),
                     scalar_constant(inv_scale))
            q = call(aten._to_copy.default, call(aten.clamp.default, call(aten.round.default, v), -128, 127),
                     dtype=torch.int8)
            out = call(aten.clone.default, q, memory_format=torch.channels_last) \
                if node.meta["val"].dim() == 4 else q
        else:
            q, scale, out_dtype = node.args[:3]
            v = call(aten.mul.Tensor, call(aten._to_copy.default, q, dtype=torch.float32),
                     scalar_constant(scale))
            out = call(aten._to_copy.default, v, dtype=out_dtype)
    out.meta["val"] = node.meta["val"]
    out.meta["int8_op"] = "quantize" if node.target is torch.ops.int8compile.quantize.default else "dequantize"
    node.replace_all_uses_with(out)
    graph.erase_node(node)
    return out
