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

from typing import Sequence

import torch
from torch import Tensor

from .kernels import registry

NAMESPACE = "int8compile"
_LIB = torch.library.Library(NAMESPACE, "DEF")
EPILOGUE = ("Tensor? bias, Tensor scale, Tensor? mult, Tensor? shift, Tensor? residual, "
            "Tensor? res_mult, float res_scale, float lo, float hi, ScalarType out_dtype")
SCHEMAS = {
    "quantize": "quantize(Tensor x, float inv_scale, str target='reference') -> Tensor",
    "dequantize": "dequantize(Tensor q, float scale, ScalarType out_dtype, "
                  "str target='reference') -> Tensor",
    "linear": f"linear(Tensor x, Tensor weight, {EPILOGUE}, str target='reference') -> Tensor",
    "conv2d": f"conv2d(Tensor x, Tensor weight, {EPILOGUE}, int[] stride, int[] padding, "
              f"int[] dilation, int groups, str target='reference') -> Tensor",
    "linear_gelu": "linear_gelu(Tensor x, Tensor weight, Tensor? bias, Tensor scale, float inv_out_scale, "
                   "str target='reference') -> Tensor",
}


def _define(op: str):
    """Define `op` and implement it (CPU and CUDA) by dispatching to the kernel named by `target`.

    Library.impl keeps the per-call overhead at a few microseconds (torch.library.custom_op adds
    about 10 us more), which matters for small layers."""
    _LIB.define(SCHEMAS[op])
    n_args = len(getattr(torch.ops.int8compile, op).default._schema.arguments)

    def impl(*args, target: str = "reference"):
        if len(args) == n_args:                  # target given positionally (it is the last)
            *args, target = args
        return registry.lookup(op, target).fn(*args)

    def wrap(fake):
        for key in ("CPU", "CUDA"):
            _LIB.impl(op, impl, key)
        torch.library.register_fake(f"{NAMESPACE}::{op}", fake, lib=_LIB)
        return getattr(torch.ops.int8compile, op).default
    return wrap


def _channels_last(t: Tensor) -> Tensor:
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t.contiguous()


@_define("quantize")
def quantize(x, inv_scale, target="reference"):
    """float -> int8: q = sat8(rne(fp32(x) * fp32(inv_scale))); 4-D output is channels-last."""
    return _channels_last(torch.empty_like(x, dtype=torch.int8))


@_define("dequantize")
def dequantize(q, scale, out_dtype, target="reference"):
    """int8 -> float: y = fp32(q) * fp32(scale), cast to out_dtype; keeps q's memory layout."""
    return torch.empty_like(q, dtype=out_dtype)


@_define("linear")
def linear(x, weight, bias, scale, mult, shift, residual, res_mult, res_scale, lo, hi, out_dtype,
           target="reference"):
    """y[..., n] = epilogue(sum_k x[..., k] * weight[n, k] + bias[n])."""
    return x.new_empty((*x.shape[:-1], weight.shape[0]), dtype=out_dtype)


@_define("linear_gelu")
def linear_gelu(x, weight, bias, scale, inv_out_scale, target="reference"):
    """int8 y[..., n] = quantize(gelu(fp32(sum_k x[..., k] * weight[n, k] + bias[n]) * scale[n]))."""
    return x.new_empty((*x.shape[:-1], weight.shape[0]), dtype=torch.int8)


def conv2d_output_size(size: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                       padding: Sequence[int], dilation: Sequence[int]) -> tuple[int, int]:
    """(OH, OW) for input (H, W) and padding [top, bottom, left, right]."""
    pads = ((padding[0], padding[1]), (padding[2], padding[3]))
    return tuple((size[i] + sum(pads[i]) - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1
                 for i in range(2))


@_define("conv2d")
def conv2d(x, weight, bias, scale, mult, shift, residual, res_mult, res_scale, lo, hi, out_dtype,
           stride, padding, dilation, groups, target="reference"):
    """NHWC implicit-GEMM conv: x [N,C,H,W] channels-last int8, weight OHWI int8 -> [N,O,OH,OW]."""
    oh, ow = conv2d_output_size(x.shape[2:], weight.shape[1:3], stride, padding, dilation)
    out = x.new_empty((x.shape[0], weight.shape[0], oh, ow), dtype=out_dtype)
    return out.contiguous(memory_format=torch.channels_last)


# fp32 attention: float code that the cpu target runs faster than aten's SDPA at small head sizes
# (passes/attention.py puts it into graphs; not an int8 op, so not in the kernel registry).
_LIB.define("attention(Tensor q, Tensor k, Tensor v, Tensor? mask, float scale) -> Tensor")


def _attention_cpu(q, k, v, mask, scale):
    from .kernels import cpu
    return cpu.attention(q, k, v, mask, scale)


_LIB.impl("attention", _attention_cpu, "CPU")


@torch.library.register_fake(f"{NAMESPACE}::attention", lib=_LIB)
def _attention_fake(q, k, v, mask, scale):
    b, h, sq, _ = q.shape
    return q.new_empty((b, sq, h, v.shape[3])).transpose(1, 2)


ATTENTION = torch.ops.int8compile.attention.default

# int8 max pooling (NHWC in and out): exact, since max commutes with the monotone quantization.
# Arguments as aten.max_pool2d_with_indices after normalization (two-element lists).
_LIB.define("max_pool2d(Tensor x, int[] kernel_size, int[] stride, int[] padding, int[] dilation, "
            "bool ceil_mode) -> Tensor")


def _pool_size(size, k, s, p, d, ceil):
    o = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)) // s + 1
    if ceil and (o - 1) * s >= size + p:
        o -= 1
    return o


def _max_pool2d_cpu(x, kernel_size, stride, padding, dilation, ceil_mode):
    from .kernels import cpu
    oh, ow = (_pool_size(x.shape[2 + i], kernel_size[i], stride[i], padding[i], dilation[i], ceil_mode)
              for i in range(2))
    if x.dim() == 4 and x.dtype == torch.int8 and cpu.build_error() is None:
        return cpu._load().max_pool2d(x, *kernel_size, *stride, *padding, *dilation, oh, ow)
    y = torch.nn.functional.max_pool2d(x.float(), kernel_size, stride, padding, dilation, ceil_mode)
    return _channels_last(y.to(x.dtype))


_LIB.impl("max_pool2d", _max_pool2d_cpu, "CPU")


@torch.library.register_fake(f"{NAMESPACE}::max_pool2d", lib=_LIB)
def _max_pool2d_fake(x, kernel_size, stride, padding, dilation, ceil_mode):
    oh, ow = (_pool_size(x.shape[2 + i], kernel_size[i], stride[i], padding[i], dilation[i], ceil_mode)
              for i in range(2))
    return _channels_last(x.new_empty((x.shape[0], x.shape[1], oh, ow)))


MAX_POOL2D = torch.ops.int8compile.max_pool2d.default

# The overloads the passes put into graphs (printable as torch.ops.int8compile.<op>.default).
QUANTIZE, DEQUANTIZE, LINEAR, CONV2D, LINEAR_GELU = quantize, dequantize, linear, conv2d, linear_gelu
OP_NAMES = {QUANTIZE: "quantize", DEQUANTIZE: "dequantize", LINEAR: "linear", CONV2D: "conv2d",
            LINEAR_GELU: "linear_gelu"}
