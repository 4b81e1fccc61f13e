"""observe: name every tensor a quantized layer reads or writes, and hook an observer onto it.

A tensor's key is stable across recompiles and graph breaks, so all subgraphs of one model calibrate
into one table of ranges: a layer's output is "<layer>:out"; any other tensor is named after the
first quantized layer that reads it, "<layer>:in". Ops that pass values through unchanged (views) or
only select among them (max pooling) commute with quantization, so their output shares the key of
their input, and after convert they run on the int8 tensor itself.
"""
from __future__ import annotations

import operator

import torch
from torch import fx, nn

from .. import calibration
from .context import PassContext

aten = torch.ops.aten
VALUE_PRESERVING = {aten.view.default, aten._unsafe_view.default, aten.reshape.default,
                    aten.unsqueeze.default, aten.squeeze.dim, aten.squeeze.dims, aten.clone.default,
                    aten.alias.default, aten.flatten.using_ints}
MAX_POOLS = {aten.max_pool2d_with_indices.default, aten.max_pool1d_with_indices.default}


def passthrough_input(node: fx.Node):
    """The input whose values `node` passes through or selects from (same scale), else None."""
    if node.op != "call_function":
        return None
    if node.target in VALUE_PRESERVING:
        return node.args[0]
    if node.target is operator.getitem and node.args[1] == 0 and \
            getattr(node.args[0], "target", None) in MAX_POOLS:
        return node.args[0].args[0]
    return None


class ObserveHook(nn.Module):
    """Hands the tensor to the active calibration session (a no-op outside calibration)."""

    def __init__(self, key: str):
        super().__init__()
        self.key = key

    def forward(self, x):
        calibration.record(self.key, x)
        return x

    def extra_repr(self) -> str:
        return repr(self.key)


def root(node: fx.Node) -> fx.Node:
    """Walk back through pass-through ops to the node that produced the values."""
    while passthrough_input(node) is not None:
        node = passthrough_input(node)
    return node


def observe(gm: fx.GraphModule, ctx: PassContext) -> fx.GraphModule:
    keys: dict[fx.Node, str] = {}
    for node in gm.graph.nodes:
        spec = ctx.layers.get(node.target) if node.op == "call_module" else None
        if spec is None or not spec.quantize:
            continue
        for operand in node.args:
            src = root(operand)
            if src not in keys:
                src_spec = ctx.layers.get(src.target) if src.op == "call_module" else None
                keys[src] = f"{src_spec.name}:out" if src_spec is not None and src_spec.quantize \
                    else f"{spec.name}:in"
        keys[node] = f"{spec.name}:out"
    for node, key in keys.items():
        hook = f"int8_observe_{len(ctx.tensor_keys)}"
        gm.add_submodule(hook, ObserveHook(key))
        with gm.graph.inserting_after(node):
            gm.graph.call_module(hook, (node,))
        ctx.tensor_keys[node.name] = key
    gm.recompile()
    return gm
