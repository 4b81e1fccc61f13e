"""lower: pick a kernel target for every int8 op node through the registry's capability checks.

The choice is written into the node (its `target` argument), so the printed graph says which kernel
runs each op, and every target that was passed over is recorded with its reason for the report.
The `inductor` target is the exception: its quantize/dequantize are written out as ATen ops in
place of the node, for inductor to fuse with their neighbours.
"""
from __future__ import annotations

import torch
from torch import fx
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.passes.fake_tensor_prop import FakeTensorProp

from .. import ops
from ..kernels import inductor, registry
from .context import PassContext


def lower(gm: fx.GraphModule, ctx: PassContext) -> fx.GraphModule:
    _propagate_shapes(gm, ctx)
    for node in list(gm.graph.nodes):
        op = ops.OP_NAMES.get(node.target)
        if op is None:
            continue
        call = _op_call(op, node, ctx)
        kernel, rejected = registry.select(call, ctx.options.target)
        if kernel.target == inductor.TARGET:          # written out as ATen ops for inductor to fuse
            scalar = lambda v, n=node: ctx.add_constant(gm, n, torch.tensor(v, dtype=torch.float32,
                                                                            device=ctx.device), "scalar")
            inductor.inline(gm.graph, node, scalar)
            continue
        node.update_kwarg("target", kernel.target)
        layer = node.meta.get("int8_layer")
        if layer is not None:
            ctx.kernels[layer] = {"target": kernel.target, "rejected": rejected,
                                  "variant": kernel.describe(call) if kernel.describe else "",
                                  "in": call.shapes["x"], "out": call.shapes["out"]}
    gm.recompile()
    return gm


def _propagate_shapes(gm: fx.GraphModule, ctx: PassContext) -> None:
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    FakeTensorProp(gm, mode).propagate(*ctx.example_inputs)


def _shape(arg):
    if isinstance(arg, fx.Node) and isinstance(arg.meta.get("val"), torch.Tensor):
        return tuple(int(d) for d in arg.meta["val"].shape)
    return None


def _op_call(op: str, node: fx.Node, ctx: PassContext) -> registry.OpCall:
    args = node.args
    x = args[0]
    shapes = {"x": _shape(x), "out": _shape(node)}
    dtypes = {"x": x.meta["val"].dtype, "out": node.meta["val"].dtype}
    params = {"rest": ctx.options.rest}
    if op == "linear_gelu":
        shapes["weight"] = _shape(args[1])
        params.update(mode="float", residual=False)
    if op in ("linear", "conv2d"):
        shapes["weight"] = _shape(args[1])
        params["mode"] = "float" if args[4] is None else ctx.options.requant
        params["residual"] = args[6] is not None
    if op == "conv2d":
        params.update(stride=tuple(args[12]), padding=tuple(args[13]), dilation=tuple(args[14]),
                      groups=args[15])
    return registry.OpCall(op=op, device=ctx.device.type, shapes=shapes, dtypes=dtypes, params=params)
