"""The `reference` target: pure PyTorch integer arithmetic, the executable form of docs/numerics.md.

Every other target is tested bit for bit against these functions. Accumulation is done in float64,
which is exact here: every partial sum of int8 x int8 products is an integer below 2^53 in magnitude
(|acc| <= K * 128 * 127 and K < 2^38), so the order of summation cannot change the result.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .registry import register

TARGET = "reference"


def _check_int8(name: str, t: Tensor) -> None:
    if t.dtype != torch.int8:
        raise TypeError(f"{name} must be int8, got {t.dtype}")


@register("quantize", TARGET, priority=0)
def quantize(x: Tensor, inv_scale: float) -> Tensor:
    if not x.is_floating_point():
        raise TypeError(f"quantize takes a float tensor, got {x.dtype}")
    inv = torch.tensor(inv_scale, dtype=torch.float32, device=x.device)
    q = torch.round(x.to(torch.float32) * inv).clamp_(-128, 127).to(torch.int8)
    return q.contiguous(memory_format=torch.channels_last) if q.dim() == 4 else q.contiguous()


@register("dequantize", TARGET, priority=0)
def dequantize(q: Tensor, scale: float, out_dtype: torch.dtype) -> Tensor:
    _check_int8("dequantize input", q)
    s = torch.tensor(scale, dtype=torch.float32, device=q.device)
    return (q.to(torch.float32) * s).to(out_dtype)


def epilogue(acc: Tensor, bias: Optional[Tensor], scale: Tensor, mult: Optional[Tensor],
             shift: Optional[Tensor], residual: Optional[Tensor], res_mult: Optional[Tensor],
             res_scale: float, lo: float, hi: float, out_dtype: torch.dtype) -> Tensor:
    """Requantize an exact accumulator `acc` (int64, channels in the last dim) per docs/numerics.md."""
    if bias is not None:
        acc = acc + bias.to(torch.int64)
    if out_dtype != torch.int8:                                      # float output
        if residual is not None:
            raise ValueError("a residual add needs int8 output")
        y = acc.to(torch.float32) * scale
        return y.clamp(lo, hi).to(out_dtype)
    if mult is None:                                                 # float requant mode
        v = acc.to(torch.float32) * scale
        if residual is not None:
            r = residual.to(torch.float32) * torch.tensor(res_scale, dtype=torch.float32)
            v = v + r
        return torch.round(v.clamp(lo, hi)).to(torch.int8)
    v = acc * mult.to(torch.int64)                                   # fixed-point / power-of-two
    if residual is not None:
        v = v + residual.to(torch.int64) * res_mult.to(torch.int64)
    sh = shift.to(torch.int64)
    rounding = torch.where(sh > 0, torch.ones_like(sh) << (sh - 1).clamp_min(0), torch.zeros_like(sh))
    v = (v + rounding) >> sh
    return v.clamp(int(lo), int(hi)).to(torch.int8)


@register("linear", TARGET, priority=0)
def linear(x: Tensor, weight: Tensor, bias: Optional[Tensor], scale: Tensor, mult: Optional[Tensor],
           shift: Optional[Tensor], residual: Optional[Tensor], res_mult: Optional[Tensor],
           res_scale: float, lo: float, hi: float, out_dtype: torch.dtype) -> Tensor:
    _check_int8("linear input", x)
    _check_int8("linear weight", weight)
    acc = (x.to(torch.float64) @ weight.to(torch.float64).t()).to(torch.int64)
    return epilogue(acc, bias, scale, mult, shift, residual, res_mult, res_scale, lo, hi, out_dtype)


# GELU of the epilogue (docs/numerics.md section 6.1): exact binary32 constants (the hex literals of
# csrc/cpu/common.h), one rounding per multiply and add, in this order (Python's + is left to right).
GELU_RSQRT2 = float.fromhex("0x1.6a09e6p-1")
GELU_A = [float.fromhex(h) for h in ("-0x1.2bbe16p-32", "0x1.dbffdcp-26", "-0x1.19fea2p-19", "-0x1.dd85a4p-15",
                                     "-0x1.8158c6p-11", "-0x1.8343ecp-9", "-0x1.07b7a8p-6")]   # A13 .. A1
GELU_B = [float.fromhex(h) for h in ("-0x1.e8c19ap-17", "-0x1.bf7a52p-13", "-0x1.b9249cp-10", "-0x1.e337f0p-8",
                                     "-0x1.d36d4ep-7")]                                        # B8 .. B0


def gelu(v: Tensor) -> Tensor:
    """GELU (erf form) of a float32 tensor, bit for bit as the kernels compute it."""
    c = lambda value: torch.tensor(value, dtype=torch.float32, device=v.device)
    z = (v * c(GELU_RSQRT2)).clamp(-4.0, 4.0)
    z2 = z * z
    z4 = z2 * z2
    z8 = z4 * z4
    a13, a11, a9, a7, a5, a3, a1 = (c(a) for a in GELU_A)
    b8, b6, b4, b2, b0 = (c(b) for b in GELU_B)
    p = (a1 + a3 * z2 + z4 * (a5 + a7 * z2)) + z8 * ((a9 + a11 * z2) + z4 * a13)
    q = (b0 + b2 * z2) + z4 * ((b4 + b6 * z2) + z4 * b8)
    erf = ((z * p) / q).clamp(-1.0, 1.0)
    return (v * c(0.5)) * (erf + c(1.0))


@register("linear_gelu", TARGET, priority=0)
def linear_gelu(x: Tensor, weight: Tensor, bias: Optional[Tensor], scale: Tensor,
                inv_out_scale: float) -> Tensor:
    """int8 out = quantize(gelu(float output of section 5), inv_out_scale) (sections 5, 6.1, 2)."""
    v = linear(x, weight, bias, scale, None, None, None, None, 0.0, -float("inf"), float("inf"), torch.float32)
    return quantize(gelu(v), inv_out_scale)


@register("conv2d", TARGET, priority=0)
def conv2d(x: Tensor, weight: Tensor, bias: Optional[Tensor], scale: Tensor, mult: Optional[Tensor],
           shift: Optional[Tensor], residual: Optional[Tensor], res_mult: Optional[Tensor],
           res_scale: float, lo: float, hi: float, out_dtype: torch.dtype, stride: Sequence[int],
           padding: Sequence[int], dilation: Sequence[int], groups: int) -> Tensor:
    _check_int8("conv2d input", x)
    _check_int8("conv2d weight", weight)
    top, bottom, left, right = padding
    xp = F.pad(x.to(torch.float64), (left, right, top, bottom))
    w = weight.to(torch.float64).permute(0, 3, 1, 2)                # OHWI -> OIHW
    acc = F.conv2d(xp, w, None, list(stride), 0, list(dilation), groups).to(torch.int64)
    acc = acc.permute(0, 2, 3, 1)                                    # channels last for the epilogue
    res = residual.permute(0, 2, 3, 1) if residual is not None else None
    y = epilogue(acc, bias, scale, mult, shift, res, res_mult, res_scale, lo, hi, out_dtype)
    return y.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
