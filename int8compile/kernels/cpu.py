"""The `cpu` target: C++ int8 kernels in csrc/cpu (AVX512-VNNI, AVX2 or portable scalar, picked at run
time from the CPU's flags), multi-threaded through at::parallel_for. docs/kernels_cpu.md has the design.

Importing this module builds nothing: the extension is compiled (torch.utils.cpp_extension + ninja,
cached by kernels/build.py) on the first kernel call or the first capability check. If the build
fails, every check returns the build error as its reason and the registry falls back to the reference
target (one warning, kernels/build.py:warn_once).

Instruction path: the best the CPU supports, or the one named by $INT8COMPILE_CPU_ISA
("avx512vnni", "avx2", "scalar"), or `set_isa(name)` (tests use it to run every path on one machine).
"""
from __future__ import annotations

import os
import threading
import weakref
from typing import Optional, Sequence

import torch
from torch import Tensor

from . import reference
from .build import BuildError, load_extension, warn_once
from .registry import OpCall, register

TARGET = "cpu"
PRIORITY = 10                    # above the reference (0)
EXTENSION = "int8compile_cpu"
SOURCES = ("cpu/bindings.cpp", "cpu/gemm_scalar.cpp", "cpu/gemm_avx2.cpp", "cpu/gemm_avx512vnni.cpp",
           "cpu/attention_avx512.cpp")
# -fopenmp: at::parallel_for is a header template that only runs in parallel when the extension
# itself is compiled with OpenMP (torch's OpenMP runtime, already loaded, is the one used)
CFLAGS = ("-O3", "-ffp-contract=off", "-fno-math-errno", "-Wno-unused-function", "-fopenmp")
LDFLAGS = ("-fopenmp",)
ISAS = ("avx512vnni", "avx2", "scalar")
MAX_K = 132104                   # docs/numerics.md section 3: int32 accumulation is exact for K below

_OUT_KIND = {torch.int8: 0, torch.float32: 1, torch.bfloat16: 2, torch.float16: 3}
_FLOAT_IN = (torch.float32, torch.bfloat16, torch.float16)

_lock = threading.Lock()
_ext = None
_build_error: Optional[str] = None
_forced_isa: Optional[str] = None


# ---- build and ISA selection ----------------------------------------------------------------------
def _load():
    """The compiled extension (built on first use), or raises BuildError."""
    global _ext, _build_error
    if _ext is not None:
        return _ext
    if _build_error is not None:
        raise BuildError(_build_error)
    with _lock:
        if _ext is None and _build_error is None:
            try:
                _ext = load_extension(EXTENSION, SOURCES, cflags=CFLAGS, ldflags=LDFLAGS)
            except BuildError as e:
                _build_error = str(e)
                warn_once(TARGET, _build_error)
                raise
    if _ext is None:
        raise BuildError(_build_error)
    return _ext


def build_error() -> Optional[str]:
    """None if the kernels build (building them now if needed), else the reason they do not."""
    try:
        _load()
        return None
    except BuildError as e:
        return str(e)


def supported_isas() -> list[str]:
    return list(_load().supported_isas())


def set_isa(name: Optional[str]) -> None:
    """Force an instruction path ("avx512vnni", "avx2", "scalar"); None restores automatic choice."""
    global _forced_isa
    if name is not None:
        if name not in ISAS:
            raise ValueError(f"unknown cpu ISA {name!r}; known: {ISAS}")
        if not _load().cpu_supports(name):
            raise RuntimeError(f"this CPU cannot run the {name!r} kernels")
    _forced_isa = name


_isa_memo: dict[tuple, str] = {}        # (forced, $INT8COMPILE_CPU_ISA) -> path; per kernel call


def active_isa() -> str:
    key = (_forced_isa, os.environ.get("INT8COMPILE_CPU_ISA"))
    name = _isa_memo.get(key) if _ext is not None else None
    if name is not None:
        return name
    ext = _load()
    name = key[0] or key[1] or ext.best_isa()
    if name not in ISAS or not ext.cpu_supports(name):
        warn_once(TARGET, f"INT8COMPILE_CPU_ISA={name!r} is not usable here; using {ext.best_isa()}")
        name = ext.best_isa()
    _isa_memo[key] = name
    return name


def prebuild() -> str:
    """Build (or load from the cache) the cpu kernels; one line saying what will run."""
    try:
        ext = _load()
    except BuildError as e:
        return f"cpu kernels unavailable: {e}"
    return (f"cpu kernels ready: ISA {active_isa()} (this CPU supports {', '.join(ext.supported_isas())}; "
            f"threads {torch.get_num_threads()})")


# ---- packed weights, cached per weight tensor --------------------------------------------------------
_packs: dict[tuple, tuple] = {}


def _version(t: Tensor):
    try:
        return t._version
    except Exception:            # inference tensors track no version
        return None


def packed_weight(weight2d: Tensor, groups: int, isa: str, fold: bool = False) -> tuple[Tensor, Optional[Tensor]]:
    """(packed bytes, int32 column sums) of an [O, ...] int8 weight (groups=-1: depthwise taps, no
    column sums), cached while the tensor lives and is not modified in place (keyed by the tensor
    object, checked by its version counter). fold: an OHWI conv weight packed as [O, KH, KW * C] with each
    kernel row zero-padded to a multiple of 4 bytes (the AVX512 direct convolution's layout for
    C % 4 != 0, csrc/cpu/bindings.cpp conv_fold)."""
    key = (id(weight2d), fold)
    entry = _packs.get(key)
    ver = _version(weight2d)
    if entry is not None:
        ref, e_ver, e_groups, e_isa, e_shape, e_ptr, packed, colsum = entry
        # (inference tensors have no version counter: they cannot change outside inference mode)
        if (ref() is weight2d and e_ver == ver and e_groups == groups and e_isa == isa
                and e_shape == tuple(weight2d.shape) and e_ptr == weight2d.data_ptr()):
            return packed, colsum
    if groups == -1:                                 # depthwise taps (csrc/cpu/bindings.cpp)
        packed, colsum = _load().pack_depthwise(weight2d), None
    elif fold:
        o, kh, kw, cg = weight2d.shape
        rows = torch.nn.functional.pad(weight2d.reshape(o, kh, kw * cg), (0, (-kw * cg) % 4))
        packed, colsum = _load().pack_weight(rows.reshape(o, -1), groups, isa)
    else:
        packed, colsum = _load().pack_weight(weight2d.reshape(weight2d.shape[0], -1), groups, isa)
    if groups != -1 and weight2d.dim() == 4:
        # conv: per-tap column sums [taps][O] after the [O] column sums (a tap is a kernel row when
        # folded); the AVX512 direct convolution skips taps that lie in the padding for a whole row
        # group and adds 128 * their sum to the accumulators' starting value instead
        o, kh, kw, cg = weight2d.shape
        taps = weight2d.reshape(o, kh, kw * cg) if fold else weight2d.reshape(o, kh * kw, cg)
        colsum = torch.cat([colsum, taps.sum(-1, dtype=torch.int32).t().reshape(-1)])
    try:
        ref = weakref.ref(weight2d, lambda _r, k=key: _packs.pop(k, None))
        _packs[key] = (ref, ver, groups, isa, tuple(weight2d.shape), weight2d.data_ptr(), packed, colsum)
    except TypeError:
        pass
    return packed, colsum


def clear_cache() -> None:
    _packs.clear()


# ---- capability checks ------------------------------------------------------------------------------
def _common(call: OpCall) -> Optional[str]:
    if call.device != "cpu":
        return f"the cpu target runs on CPU tensors only (device is {call.device})"
    err = build_error()
    if err is not None:
        warn_once(TARGET, err)
        return f"cpu kernels unavailable: {err}"
    return None


def _gemm_check(call: OpCall, k: int) -> Optional[str]:
    x_dtype = call.dtypes.get("x", torch.int8)
    if x_dtype != torch.int8:
        return f"input dtype {x_dtype} is not int8"
    w_dtype = call.dtypes.get("weight", torch.int8)
    if w_dtype != torch.int8:
        return f"weight dtype {w_dtype} is not int8"
    out = call.dtypes.get("out", torch.int8)
    if out not in _OUT_KIND:
        return f"output dtype {out} is not int8, float32, bfloat16 or float16"
    if k <= 0:
        return f"reduction size K={k} is empty"
    if k >= MAX_K:
        return f"K={k} >= {MAX_K}: the int32 accumulator could overflow (docs/numerics.md section 3)"
    if call.params.get("residual") and out != torch.int8:
        return "a residual add needs int8 output"
    mode = call.params.get("mode", "float")
    if mode not in ("float", "fixed", "pot"):
        return f"unknown requant mode {mode!r}"
    return None


def check_linear(call: OpCall) -> Optional[str]:
    reason = _common(call)
    if reason:
        return reason
    w = call.shapes.get("weight")
    if w is None or len(w) != 2:
        return f"linear weight shape {w} is not [N, K]"
    return _gemm_check(call, int(w[1]))


def check_conv2d(call: OpCall) -> Optional[str]:
    reason = _common(call)
    if reason:
        return reason
    x, w = call.shapes.get("x"), call.shapes.get("weight")
    if x is None or w is None or len(x) != 4 or len(w) != 4:
        return f"conv2d needs 4-D input and OHWI weight, got {x} and {w}"
    groups = int(call.params.get("groups", 1))
    if groups <= 0 or x[1] % groups or w[0] % groups or w[3] * groups != x[1]:
        return f"channels {x[1]} / weight {w} do not match groups={groups}"
    for name in ("stride", "dilation"):
        if any(int(v) <= 0 for v in call.params.get(name, (1, 1))):
            return f"{name} {call.params.get(name)} is not positive"
    if any(int(v) < 0 for v in call.params.get("padding", (0, 0, 0, 0))):
        return f"negative padding {call.params.get('padding')}"
    return _gemm_check(call, int(w[1] * w[2] * w[3]))


def check_quantize(call: OpCall) -> Optional[str]:
    reason = _common(call)
    if reason:
        return reason
    dt = call.dtypes.get("x", torch.float32)
    if dt not in _FLOAT_IN:
        return f"quantize input dtype {dt} is not float32, bfloat16 or float16"
    return None


def check_dequantize(call: OpCall) -> Optional[str]:
    reason = _common(call)
    if reason:
        return reason
    if call.dtypes.get("x", torch.int8) != torch.int8:
        return f"dequantize input dtype {call.dtypes.get('x')} is not int8"
    out = call.dtypes.get("out", torch.float32)
    if out not in _FLOAT_IN:
        return f"dequantize output dtype {out} is not float32, bfloat16 or float16"
    return None


# ---- kernels ------------------------------------------------------------------------------------------
def _runnable(*tensors: Optional[Tensor]) -> Optional[str]:
    """None if these arguments can run here; else why the call goes to the reference instead."""
    for t in tensors:
        if t is not None and not t.is_cpu:
            return "the cpu target runs on CPU tensors only"
    return None if _ext is not None else build_error()


@register("quantize", TARGET, priority=PRIORITY, check=check_quantize, device="cpu")
def quantize(x: Tensor, inv_scale: float) -> Tensor:
    reason = _runnable(x)
    if reason is None and x.dtype not in _FLOAT_IN:
        reason = f"dtype {x.dtype}"
    if reason is not None:
        warn_once(TARGET, reason)
        return reference.quantize(x, inv_scale)
    return _load().quantize(x, float(inv_scale), active_isa())


@register("dequantize", TARGET, priority=PRIORITY, check=check_dequantize, device="cpu")
def dequantize(q: Tensor, scale: float, out_dtype: torch.dtype) -> Tensor:
    reason = _runnable(q)
    if reason is None and (q.dtype != torch.int8 or out_dtype not in _FLOAT_IN):
        reason = f"dtypes {q.dtype} -> {out_dtype}"
    if reason is not None:
        warn_once(TARGET, reason)
        return reference.dequantize(q, scale, out_dtype)
    return _load().dequantize(q, float(scale), _OUT_KIND[out_dtype], active_isa())


def _gemm_args_ok(x: Tensor, weight: Tensor, out_dtype, residual, k: int) -> Optional[str]:
    if x.dtype != torch.int8 or weight.dtype != torch.int8:
        return f"dtypes {x.dtype} x {weight.dtype}"
    if out_dtype not in _OUT_KIND:
        return f"output dtype {out_dtype}"
    if residual is not None and out_dtype != torch.int8:
        return "a residual add needs int8 output"
    if not 0 < k < MAX_K:
        return f"K={k}"
    return None


@register("linear", TARGET, priority=PRIORITY, check=check_linear, device="cpu")
def linear(x: Tensor, weight: Tensor, bias: Optional[Tensor], scale: Tensor, mult: Optional[Tensor],
           shift: Optional[Tensor], residual: Optional[Tensor], res_mult: Optional[Tensor],
           res_scale: float, lo: float, hi: float, out_dtype: torch.dtype) -> Tensor:
    reason = _runnable(x, weight, bias, scale, mult, shift, residual, res_mult)
    if reason is None:
        reason = _gemm_args_ok(x, weight, out_dtype, residual, weight.shape[1])
    if reason is not None:
        warn_once(TARGET, reason)
        return reference.linear(x, weight, bias, scale, mult, shift, residual, res_mult, res_scale,
                                lo, hi, out_dtype)
    isa = active_isa()
    packed, colsum = packed_weight(weight, 1, isa)
    return _load().linear(x, packed, colsum, weight.shape[0], bias, scale, mult, shift, residual,
                          res_mult, float(res_scale), float(lo), float(hi), _OUT_KIND[out_dtype], isa)


def check_linear_gelu(call: OpCall) -> Optional[str]:
    return check_linear(call)


@register("linear_gelu", TARGET, priority=PRIORITY, check=check_linear_gelu, device="cpu")
def linear_gelu(x: Tensor, weight: Tensor, bias: Optional[Tensor], scale: Tensor,
                inv_out_scale: float) -> Tensor:
    reason = _runnable(x, weight, bias, scale)
    if reason is None:
        reason = _gemm_args_ok(x, weight, torch.int8, None, weight.shape[1])
    if reason is None and not inv_out_scale > 0:
        reason = f"inv_out_scale {inv_out_scale}"
    if reason is not None:
        warn_once(TARGET, reason)
        return reference.linear_gelu(x, weight, bias, scale, inv_out_scale)
    isa = active_isa()
    packed, colsum = packed_weight(weight, 1, isa)
    return _load().linear_gelu(x, packed, colsum, weight.shape[0], bias, scale, float(inv_out_scale), isa)


_ATTN_DV = (16, 32, 48, 64)


def attention_unsupported(q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor]) -> Optional[str]:
    """None if `attention` can run these arguments on the AVX512 kernel, else the reason."""
    for t in (q, k, v, mask):
        if t is not None and (not t.is_cpu or t.dtype != torch.float32):
            return "attention kernel: fp32 CPU tensors only"
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4 or v.shape[3] not in _ATTN_DV:
        return f"attention kernel: 4-D q/k/v with head size of v in {_ATTN_DV}"
    if q.shape[:2] != k.shape[:2] or k.shape[:3] != v.shape[:3] or q.shape[3] != k.shape[3]:
        return "attention kernel: q/k/v shapes do not match"
    if mask is not None and (mask.dim() != 4 or any(m not in (1, s) for m, s in
                                                     zip(mask.shape, (*q.shape[:3], k.shape[2])))):
        return "attention kernel: mask not broadcastable to [B, H, Sq, Sk]"
    if _ext is None and build_error() is not None:
        return "cpu kernels unavailable"
    if active_isa() != "avx512vnni":
        return "attention kernel: needs the AVX512 path"
    return None


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor], scale: float) -> Tensor:
    """fp32 softmax(q k^T * scale + mask) v (csrc/cpu/attention_avx512.cpp), else aten's SDPA."""
    if attention_unsupported(q, k, v, mask) is not None:
        y = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default(
            q, k, v, attn_mask=mask, scale=scale)[0]
        # the layout the kernel (and the op's fake implementation) promises: [B, Sq, H, Dv] memory
        out = y.new_empty((y.shape[0], y.shape[2], y.shape[1], y.shape[3])).transpose(1, 2)
        return out.copy_(y)
    return _load().attention(q, k, v, mask, float(scale))


@register("conv2d", TARGET, priority=PRIORITY, check=check_conv2d, device="cpu")
def conv2d(x: Tensor, weight: Tensor, bias: Optional[Tensor], scale: Tensor, mult: Optional[Tensor],
           shift: Optional[Tensor], residual: Optional[Tensor], res_mult: Optional[Tensor],
           res_scale: float, lo: float, hi: float, out_dtype: torch.dtype, stride: Sequence[int],
           padding: Sequence[int], dilation: Sequence[int], groups: int) -> Tensor:
    reason = _runnable(x, weight, bias, scale, mult, shift, residual, res_mult)
    if reason is None:
        o, kh, kw, cg = weight.shape
        reason = _gemm_args_ok(x, weight, out_dtype, residual, kh * kw * cg)
        if reason is None and (x.dim() != 4 or cg * groups != x.shape[1] or o % groups):
            reason = f"shapes {tuple(x.shape)} / {tuple(weight.shape)} with groups={groups}"
    if reason is not None:
        warn_once(TARGET, reason)
        return reference.conv2d(x, weight, bias, scale, mult, shift, residual, res_mult, res_scale,
                                lo, hi, out_dtype, stride, padding, dilation, groups)
    isa = active_isa()
    depthwise = (groups == x.shape[1] and weight.shape[3] == 1 and weight.shape[0] == groups
                 and weight.shape[1] * weight.shape[2] <= 128)   # csrc/cpu/bindings.cpp: conv2d
    # groups = 1, C % 4 != 0, dilation 1 along W (a C = 3 stem): whole kernel rows padded to 4 bytes
    fold = not depthwise and _load().conv_weight_fold(isa, int(groups), int(weight.shape[3]), int(dilation[1]))
    packed, colsum = packed_weight(weight, -1 if depthwise else groups, isa, fold)
    return _load().conv2d(x, weight, packed, colsum, bias, scale, mult, shift, residual, res_mult,
                          float(res_scale), float(lo), float(hi), _OUT_KIND[out_dtype],
                          [int(s) for s in stride], [int(p) for p in padding],
                          [int(d) for d in dilation], int(groups), isa)
