"""attention: aten's CPU flash attention -> int8compile.attention (fp32, csrc/cpu/attention_avx512.cpp).

At BERT-like shapes (head size 32, 128 tokens) aten's flash attention runs its small blocks through
generic GEMM calls; the cpu target's kernel keeps a whole (batch, head) in registers and L1 and is
about twice as fast. This is float code, so it changes results by float rounding only (~1e-6
relative), not by anything docs/numerics.md specifies. The rewrite rules are data: the op, the
arguments that must have their default value, and the only output that may be used.
"""
from __future__ import annotations

import operator
from collections import Counter

import torch
from torch import fx

from .. import ops
from .context import PassContext

aten = torch.ops.aten
counters: Counter = Counter()      # "attention": nodes rewritten, summed over the process

# op -> (positional index of (q, k, v), arguments that must keep their default {name: (index, value)})
RULES = {
    aten._scaled_dot_product_flash_attention_for_cpu.default:
        dict(qkv=(0, 1, 2), defaults={"dropout_p": (3, 0.0), "is_causal": (4, False)}),
}


def fuse_attention(gm: fx.GraphModule, ctx: PassContext) -> fx.GraphModule:
    if ctx.device.type != "cpu" or ctx.options.target not in ("auto", "cpu") or not _kernel_available():
        return gm
    for node in list(gm.graph.nodes):
        rule = RULES.get(node.target) if node.op == "call_function" else None
        if rule is None or not _matches(node, rule):
            continue
        q, k, v = (node.args[i] for i in rule["qkv"])
        mask = node.kwargs.get("attn_mask")
        scale = node.kwargs.get("scale")
        if scale is None:
            scale = float(q.meta["val"].shape[-1]) ** -0.5
        with gm.graph.inserting_before(node):
            new = gm.graph.call_function(ops.ATTENTION, (q, k, v, mask, float(scale)))
        out = next(iter(node.users))
        new.meta["val"] = out.meta.get("val")
        out.replace_all_uses_with(new)
        gm.graph.erase_node(out)
        gm.graph.erase_node(node)
        counters["attention"] += 1
    gm.graph.lint()
    gm.recompile()
    return gm


def _kernel_available() -> bool:
    from ..kernels import cpu
    return cpu.build_error() is None and cpu.active_isa() == "avx512vnni"


def _matches(node: fx.Node, rule: dict) -> bool:
    for name, (i, default) in rule["defaults"].items():
        value = node.args[i] if len(node.args) > i else node.kwargs.get(name, default)
        if value != default:
            return False
    users = list(node.users)                  # only the attention output, not the logsumexp
    if len(users) != 1 or users[0].target is not operator.getitem or users[0].args[1] != 0:
        return False
    vals = [a.meta.get("val") for a in node.args[:3]]
    return all(isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.dim() == 4 for t in vals) \
        and vals[2].shape[3] in (16, 32, 48, 64)          # the kernel's head sizes (kernels/cpu.py)
