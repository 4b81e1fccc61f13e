"""A matched conv/linear layer: the unit the passes after `match` work on.

The match pass collapses each conv/linear subgraph (with folded batch-norm, residual add and clamp
activation) into one `call_module` node whose module is a `FloatLayer`. Run as is, that module computes
the float layer exactly as the original nodes did (up to batch-norm folding), so calibration observes
the true float network; convert later replaces it by int8 ops.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class LayerSpec:
    """Everything the later passes need to know about one layer."""
    name: str                                   # stable across recompiles: from the weight's source
    kind: str                                   # "conv" | "linear"
    weight: torch.Tensor                        # float, batch-norm folded; conv OIHW (conv1d: O,I,1,L) / linear [N, K]
    bias: Optional[torch.Tensor]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)   # top, bottom, left, right
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    conv1d: bool = False                        # a conv1d run as conv2d on [N, C, 1, L]
    clamp: tuple[float, float] = (-math.inf, math.inf)  # fused activation as a clamp
    fused: list[str] = field(default_factory=list)      # e.g. ["batch_norm", "add", "relu"]
    has_residual: bool = False
    act: Optional[str] = None                   # a curve after the op ("gelu"), linear only
    quantize: bool = True
    reason: str = ""                            # why it is (not) quantized
    scales: dict = field(default_factory=dict)  # set by convert: in / out / residual scales
    sqnr: Optional[float] = None                # dB vs float on the last calibration batch

    @property
    def op(self) -> str:
        if self.kind == "linear":
            return f"linear {self.weight.shape[1]}->{self.weight.shape[0]}"
        kh, kw = self.weight.shape[2:]
        dims = f"{kw}" if self.conv1d else f"{kh}x{kw}"
        extra = f" s{self.stride[1] if self.conv1d else self.stride[0]}" if max(self.stride) > 1 else ""
        extra += f" g{self.groups}" if self.groups > 1 else ""
        extra += f" d{max(self.dilation)}" if max(self.dilation) > 1 else ""
        return f"conv{'1d' if self.conv1d else '2d'} {dims}{extra}"


class FloatLayer(nn.Module):
    """The float semantics of a matched layer: clamp(op(x) + bias + residual), then gelu if fused."""

    def __init__(self, spec: LayerSpec):
        super().__init__()
        self.spec = spec

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        s = self.spec
        w = s.weight.to(x.dtype)
        b = s.bias.to(x.dtype) if s.bias is not None else None
        if s.kind == "linear":
            y = F.linear(x, w, b)
        else:
            y = self._conv(x, w, b)
        if residual is not None:
            y = y + residual
        lo, hi = s.clamp
        if math.isfinite(lo) or math.isfinite(hi):
            y = y.clamp(None if math.isinf(lo) else lo, None if math.isinf(hi) else hi)
        if s.act == "gelu":
            y = F.gelu(y)
        return y

    def _conv(self, x, w, b):
        s = self.spec
        top, bottom, left, right = s.padding
        if s.conv1d:
            x = x.unsqueeze(2)
        x = F.pad(x, (left, right, top, bottom))
        y = F.conv2d(x, w, b, s.stride, 0, s.dilation, s.groups)
        return y.squeeze(2) if s.conv1d else y

    def extra_repr(self) -> str:
        return f"{self.spec.op}, fused={self.spec.fused}"
