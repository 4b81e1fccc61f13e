"""match: find conv/linear subgraphs and collapse each into one FloatLayer node.

The rules are data. An ANCHOR recognises the op that carries the weight; then the EPILOGUE steps, in
order, absorb what follows it as long as each node is the only user of the layer so far: a residual
add, then a clamp-like activation. A zero F.pad in front of a conv is absorbed as (asymmetric) padding.
Candidates that look like layers but cannot be quantized are recorded with the reason.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import fx

from ..layers import FloatLayer, LayerSpec
from .context import PassContext

aten = torch.ops.aten
INF = math.inf

# What match found, summed over every graph compiled in this process (tests assert on it, as on
# inductor's counters): "conv", "linear", "batch_norm", "add", "relu", "clamp", "gelu", "pad", "rejected".
counters: Counter = Counter()


# ---- anchors: op -> LayerSpec (or a reason string when it is a candidate we must leave alone) ----

def _conv(node: fx.Node, ctx: PassContext):
    x, w, b, stride, padding, dilation, transposed, _, groups = node.args
    weight = ctx.constant(w)
    if weight is None:
        return "conv weight is computed at run time, not a frozen parameter"
    if transposed:
        return "transposed convolution is not supported"
    if weight.dim() not in (3, 4):
        return f"{weight.dim() - 2}-D convolution is not supported (conv1d and conv2d are)"
    conv1d = weight.dim() == 3
    if conv1d:
        weight = weight.unsqueeze(2)
        stride, padding, dilation = (1, stride[0]), (0, 0, padding[0], padding[0]), (1, dilation[0])
    else:
        padding = (padding[0], padding[0], padding[1], padding[1])
    return LayerSpec(name="", kind="conv", weight=weight, bias=ctx.constant(b),
                     stride=tuple(stride), padding=tuple(padding), dilation=tuple(dilation),
                     groups=groups, conv1d=conv1d)


def _linear_weight(w_kn: Optional[torch.Tensor]):
    return None if w_kn is None else w_kn.t().contiguous()


def _addmm(node: fx.Node, ctx: PassContext):
    b, x, w = node.args[:3]
    if node.kwargs.get("beta", 1) != 1 or node.kwargs.get("alpha", 1) != 1:
        return "addmm with beta/alpha != 1"
    weight, bias = _linear_weight(ctx.constant(w)), ctx.constant(b)
    if weight is None:
        return "matmul of two activations (no frozen weight operand)"
    if bias is None or bias.dim() != 1:
        return "addmm whose added term is not a constant bias vector"
    return LayerSpec(name="", kind="linear", weight=weight, bias=bias)


def _mm(node: fx.Node, ctx: PassContext):
    weight = _linear_weight(ctx.constant(node.args[1]))
    if weight is None:
        return "matmul of two activations (no frozen weight operand)"
    return LayerSpec(name="", kind="linear", weight=weight, bias=None)


@dataclass(frozen=True)
class Anchor:
    target: object
    kind: str                             # "conv" | "linear"
    weight_arg: int                       # which argument holds the weight (for the layer's name)
    input_arg: int                        # which argument is the activation
    build: Callable


ANCHORS = {a.target: a for a in (
    Anchor(aten.convolution.default, "conv", weight_arg=1, input_arg=0, build=_conv),
    Anchor(aten.addmm.default, "linear", weight_arg=2, input_arg=1, build=_addmm),
    Anchor(aten.mm.default, "linear", weight_arg=1, input_arg=0, build=_mm),
)}


# ---- epilogue steps: each absorbs the single user of the layer's current tail ----

def _arg(node: fx.Node, i: int, name: str, default):
    return node.args[i] if len(node.args) > i else node.kwargs.get(name, default)


def _none_inf(v, inf):
    return inf if v is None else float(v)


CLAMPS: dict[object, Callable[[fx.Node], tuple[float, float]]] = {
    aten.relu.default: lambda n: (0.0, INF),
    aten.hardtanh.default: lambda n: (float(_arg(n, 1, "min_val", -1.0)), float(_arg(n, 2, "max_val", 1.0))),
    aten.clamp.default: lambda n: (_none_inf(_arg(n, 1, "min", None), -INF), _none_inf(_arg(n, 2, "max", None), INF)),
    aten.clamp_min.default: lambda n: (float(n.args[1]), INF),
    aten.clamp_max.default: lambda n: (-INF, float(n.args[1])),
}
ADDS = (aten.add.Tensor,)
# Curves absorbed right after a linear (nothing else fused): the layer computes them in its epilogue
# when its output is int8 (ops.linear_gelu, docs/numerics.md section 6.1), else in PyTorch after it.
CURVES = {aten.gelu.default: "gelu"}


def _absorb_curve(spec: LayerSpec, user: fx.Node) -> bool:
    if user.target not in CURVES or spec.kind != "linear" or spec.fused or spec.act is not None:
        return False
    if _arg(user, 1, "approximate", "none") != "none":
        return False
    spec.act = CURVES[user.target]
    spec.fused.append(spec.act)
    return True


def _absorb_add(spec: LayerSpec, tail: fx.Node, user: fx.Node) -> Optional[fx.Node]:
    """A residual add of another same-shaped tensor: returns the residual operand."""
    if user.target not in ADDS or spec.has_residual or spec.fused[-1:] in (["relu"], ["clamp"]):
        return None
    if user.kwargs.get("alpha", 1) != 1 or len(user.args) != 2:
        return None
    other = user.args[1] if user.args[0] is tail else user.args[0]
    if not isinstance(other, fx.Node) or other is tail:
        return None
    shape_of = lambda n: tuple(n.meta["val"].shape) if "val" in n.meta else None
    if shape_of(other) is None or shape_of(other) != shape_of(tail):
        return None
    return other


def _absorb_clamp(spec: LayerSpec, user: fx.Node) -> bool:
    if user.target not in CLAMPS or any(f in ("relu", "clamp") for f in spec.fused):
        return False
    lo, hi = CLAMPS[user.target](user)
    spec.clamp = (max(spec.clamp[0], lo), min(spec.clamp[1], hi))
    spec.fused.append("relu" if user.target is aten.relu.default else "clamp")
    return True


def _absorb_pad(spec: LayerSpec, x: fx.Node) -> fx.Node:
    """F.pad(x, pads, value=0) -> conv: fold the pad into the conv's padding."""
    if spec.kind != "conv" or x.target != aten.constant_pad_nd.default or len(x.users) != 1:
        return x
    pads, value = x.args[1], _arg(x, 2, "value", 0)
    if value != 0 or any(p < 0 for p in pads):
        return x
    if spec.conv1d and len(pads) == 2:
        left, right = pads
        top = bottom = 0
    elif not spec.conv1d and len(pads) == 4:
        left, right, top, bottom = pads
    else:
        return x
    t, b, l, r = spec.padding
    spec.padding = (t + top, b + bottom, l + left, r + right)
    spec.fused.insert(0, "pad")
    return x.args[0]


# ---- the pass ----

def match(gm: fx.GraphModule, ctx: PassContext) -> fx.GraphModule:
    names: dict[str, int] = {}
    for node in list(gm.graph.nodes):
        anchor = ANCHORS.get(node.target) if node.op == "call_function" else None
        if anchor is None:
            continue
        weight_node = node.args[anchor.weight_arg]
        base = ctx.sources.get(getattr(weight_node, "name", ""), node.name)
        name = _layer_name(base, names)
        spec = anchor.build(node, ctx)
        if isinstance(spec, str):
            counters["rejected"] += 1
            ctx.rejected.append(LayerSpec(name=name, kind=anchor.kind, weight=torch.empty(0), bias=None,
                                          quantize=False, reason=spec))
            continue
        spec.name = name
        spec.fused = list(node.meta.get("int8_fused", []))
        _collapse(gm, ctx, node, spec, node.args[anchor.input_arg])
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.recompile()
    return gm


def _collapse(gm, ctx: PassContext, anchor: fx.Node, spec: LayerSpec, x: fx.Node) -> None:
    x = _absorb_pad(spec, x)
    tail, residual, absorbed = anchor, None, [anchor]
    while len(tail.users) == 1 and spec.act is None:      # nothing is absorbed after a curve
        user = next(iter(tail.users))
        other = _absorb_add(spec, tail, user)
        if other is not None:
            residual, spec.has_residual = other, True
            spec.fused.append("add")
        elif not (_absorb_clamp(spec, user) or _absorb_curve(spec, user)):
            break
        tail = user
        absorbed.append(user)
    counters[spec.kind] += 1
    counters.update(spec.fused)
    target = f"int8_layer_{len(ctx.layers)}"
    gm.add_submodule(target, FloatLayer(spec))
    ctx.layers[target] = spec
    with gm.graph.inserting_after(tail):
        args = (x, residual) if residual is not None else (x,)
        layer = gm.graph.call_module(target, args)
    layer.meta["val"] = tail.meta.get("val")
    layer.meta["int8_layer"] = spec.name
    tail.replace_all_uses_with(layer)
    for n in reversed(absorbed):
        gm.graph.erase_node(n)


def _layer_name(base: str, seen: dict[str, int]) -> str:
    base = base[:-len(".weight")] if base.endswith(".weight") else base
    seen[base] = seen.get(base, 0) + 1
    return base if seen[base] == 1 else f"{base}#{seen[base]}"
