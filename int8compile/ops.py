"""The int8 operator set: one torch.library schema per op, a fake implementation for tracing, and
dispatch to the kernel the lower pass chose (`target`, see kernels/registry.py).

Layout contract (docs/numerics.md, "Layouts"):
  * 4-D int8 activations are channels-last: logical NCHW shape, NHWC strides. Every op that returns a
    4-D tensor returns it channels-last; every op that takes one may assume it (callers make it so).
  * linear activations are [..., K] contiguous; linear weights are [N, K] contiguous int8.
  * conv weights are OHWI: [O, KH, KW, C / groups] contiguous int8.
  * padding is explicit and may be asymmetric: [top, bottom, left, right], zero (= int8 0) fill.
Epilogue arguments (shared by linear and conv2d): bias int32 [N]; scale float32 [N]; mult/shift int32 [N]
(integer requant modes, None for float mode); residual int8 like the output, res_mult int32 [N] or
res_scale; lo/hi the activation clamp in the output domain; out_dtype int8 or a float dtype.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from .kernels import registry

NAMESPACE = "int8compile"


def _run(op: str, target: str, *args):
    return registry.lookup(op, target).fn(*args)


def _channels_last(t: Tensor) -> Tensor:
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t.contiguous()


@torch.library.custom_op(f"{NAMESPACE}::quantize", mutates_args=())
def quantize(x: Tensor, inv_scale: float, target: str = "reference") -> Tensor:
    """float -> int8: q = sat8(rne(fp32(x) * fp32(inv_scale))); 4-D output is channels-last."""
    return _run("quantize", target, x, inv_scale)


@quantize.register_fake
def _(x, inv_scale, target="reference"):
    return _channels_last(torch.empty_like(x, dtype=torch.int8))


@torch.library.custom_op(f"{NAMESPACE}::dequantize", mutates_args=())
def dequantize(q: Tensor, scale: float, out_dtype: torch.dtype = torch.float32,
               target: str = "reference") -> Tensor:
    """int8 -> float: y = fp32(q) * fp32(scale), cast to out_dtype; keeps q's memory layout."""
    return _run("dequantize", target, q, scale, out_dtype)


@dequantize.register_fake
def _(q, scale, out_dtype=torch.float32, target="reference"):
    return torch.empty_like(q, dtype=out_dtype)


@torch.library.custom_op(f"{NAMESPACE}::linear", mutates_args=())
def linear(x: Tensor, weight: Tensor, bias: Optional[Tensor], scale: Tensor, mult: Optional[Tensor],
           shift: Optional[Tensor], residual: Optional[Tensor], res_mult: Optional[Tensor],
           res_scale: float, lo: float, hi: float, out_dtype: torch.dtype,
           target: str = "reference") -> Tensor:
    """y[..., n] = epilogue(sum_k x[..., k] * weight[n, k] + bias[n])."""
    return _run("linear", target, x, weight, bias, scale, mult, shift, residual, res_mult,
                res_scale, lo, hi, out_dtype)


@linear.register_fake
def _(x, weight, bias, scale, mult, shift, residual, res_mult, res_scale, lo, hi, out_dtype,
      target="reference"):
    return x.new_empty((*x.shape[:-1], weight.shape[0]), dtype=out_dtype)


def conv2d_output_size(size: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                       padding: Sequence[int], dilation: Sequence[int]) -> tuple[int, int]:
    """(OH, OW) for input (H, W) and padding [top, bottom, left, right]."""
    pads = ((padding[0], padding[1]), (padding[2], padding[3]))
    return tuple((size[i] + sum(pads[i]) - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1
                 for i in range(2))


@torch.library.custom_op(f"{NAMESPACE}::conv2d", mutates_args=())
def conv2d(x: Tensor, weight: Tensor, bias: Optional[Tensor], scale: Tensor, mult: Optional[Tensor],
           shift: Optional[Tensor], residual: Optional[Tensor], res_mult: Optional[Tensor],
           res_scale: float, lo: float, hi: float, out_dtype: torch.dtype, stride: Sequence[int],
           padding: Sequence[int], dilation: Sequence[int], groups: int,
           target: str = "reference") -> Tensor:
    """NHWC implicit-GEMM conv: x [N,C,H,W] channels-last int8, weight OHWI int8 -> [N,O,OH,OW]."""
    return _run("conv2d", target, x, weight, bias, scale, mult, shift, residual, res_mult,
                res_scale, lo, hi, out_dtype, stride, padding, dilation, groups)


@conv2d.register_fake
def _(x, weight, bias, scale, mult, shift, residual, res_mult, res_scale, lo, hi, out_dtype,
      stride, padding, dilation, groups, target="reference"):
    oh, ow = conv2d_output_size(x.shape[2:], weight.shape[1:3], stride, padding, dilation)
    out = x.new_empty((x.shape[0], weight.shape[0], oh, ow), dtype=out_dtype)
    return out.contiguous(memory_format=torch.channels_last)


# The overloads the passes put into graphs (printable as torch.ops.int8compile.<op>.default).
QUANTIZE = torch.ops.int8compile.quantize.default
DEQUANTIZE = torch.ops.int8compile.dequantize.default
LINEAR = torch.ops.int8compile.linear.default
CONV2D = torch.ops.int8compile.conv2d.default
OP_NAMES = {QUANTIZE: "quantize", DEQUANTIZE: "dequantize", LINEAR: "linear", CONV2D: "conv2d"}
