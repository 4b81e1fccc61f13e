"""annotate: decide, per matched layer, whether it is quantized, and record why (not)."""
from __future__ import annotations

import fnmatch

from torch import fx

from ..layers import LayerSpec
from .context import PassContext

MAX_K = 132_104          # int32 accumulation bound, docs/numerics.md section 3


def annotate(gm: fx.GraphModule, ctx: PassContext) -> fx.GraphModule:
    for spec in ctx.layers.values():
        reason = _why_not(spec, ctx)
        spec.quantize = reason is None
        spec.reason = reason or "quantized"
    return gm


def _why_not(spec: LayerSpec, ctx: PassContext):
    opts = ctx.options
    if spec.kind not in opts.quantize:
        return f"option quantize={opts.quantize} excludes {spec.kind}"
    hit = next((p for p in opts.skip if fnmatch.fnmatchcase(spec.name, p)), None)
    if hit is not None:
        return f"skipped by option skip={hit!r}"
    if not spec.weight.is_floating_point():
        return f"weight dtype {spec.weight.dtype} is not floating point"
    k = spec.weight[0].numel()
    if k >= MAX_K:
        return f"reduction size {k} >= {MAX_K} could overflow the int32 accumulator"
    return None
