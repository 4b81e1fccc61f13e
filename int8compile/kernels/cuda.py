"""The `cuda` target (and `cuda_dp4a`): custom int8 CUDA kernels from csrc/cuda, bit-exact with the
reference target (docs/numerics.md, 0 LSB).

Kernels (csrc/cuda):
  * linear, Hopper (sm_90a): persistent warp-specialised wgmma GEMM, TMA loads, fused requant epilogue
    (gemm_sm90.cu); needs K % 16 == 0 and 16-byte aligned operands, else the mma.sync path runs.
  * conv2d, Hopper: the same wgmma kernel as an implicit GEMM, its A tiles loaded by TMA in im2col mode
    (padding and stride done by the TMA unit); groups == 1, C % 32 == 0 (`cuda_plan.im2col_unfit` says why not).
  * conv2d with KW * C <= 32 (the RGB stem), Hopper: the wgmma kernel with A tiles built from x by the
    producer warpgroup ("stem"), or the fold pass + the im2col conv over the folded channels ("fold": a
    stride-2 stem folds 2 rows x 7 columns x 3 channels into 64).
  * linear / conv2d, sm75+: implicit-GEMM on mma.sync m16n8k32 (igemm.cu), 128x128 tiles, 64x64 tiles for
    small M; any K (tails are zero-filled, 16-byte cp.async when Cg % 16 == 0, byte gathers otherwise).
    The same kernel built for sm75 runs four m8n8k16 per m16n8k32 with plain loads instead of cp.async;
    it is verified by emulation (INT8COMPILE_CUDA_EMULATE_CC=75 on a newer GPU).
  * conv2d depthwise (groups == C == O): direct kernel.
  * dp4a path (sm61+, no int8 tensor cores): target "cuda_dp4a", or INT8COMPILE_CUDA_ALGO=dp4a.
  * quantize / dequantize: vectorised elementwise, NCHW -> NHWC transposing quantize.

Which kernel runs a call is decided by cuda_plan.py (plan_conv / plan_linear); this module executes it.
Importing this module never builds or touches CUDA; the extension is compiled on first use
(torch.utils.cpp_extension + ninja, cached by build.py). Environment knobs (testing / benchmarking):
  INT8COMPILE_CUDA_ALGO = auto | sm90 | mma | dp4a    force one linear/conv algorithm family
  INT8COMPILE_SM90_CFG  = one of SM90_TILES          force the wgmma GEMM tile (see gemm_sm90.cu)
  INT8COMPILE_SM90_CONV_CFG = one of SM90_CONV_TILES force the wgmma conv tile (see conv_sm90.cu)
  INT8COMPILE_SM90_SPLITS / _SM90_CONV_SPLITS = n    split-K factor of the wgmma GEMM / conv (default 1)
  INT8COMPILE_FOLD_ROWS = 1                          fold only filter columns into channels (A/B)
  INT8COMPILE_SM90_CONV_GENERIC = 1                  int8 convs on the kernels with every epilogue compiled in
                                                     instead of the epilogue-specialised ones (A/B)
  INT8COMPILE_CUDA_EMULATE_CC = 75                   act as a GPU of that compute capability: build PTX for
                                                     it (JIT-compiled onto this GPU by the driver) and route
                                                     as there, so an older GPU's code paths run here
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import replace
from typing import Optional, Sequence

import torch
from torch import Tensor

from . import build
from .cuda_plan import (FOLD_CHANNELS, HALO_CFG, HALO_CONFIGS, MMA_MIN_CC, SM90_CONV_TILES,  # noqa: F401
                        SM90_TILES, ConvQuery, alignment, fold_channels, fold_row_layout, fold_rows_for,
                        forced_algo, halo_config, halo_unfit, im2col_unfit, plan_conv, plan_linear, route_env,
                        sm90_config, sm90_conv_config, sm90_conv_splits, describe_plan, folded_query)
from .registry import OpCall, register

TARGET = "cuda"
TARGET_DP4A = "cuda_dp4a"
PRIORITY = 20           # above cpu targets; reference is 0
PRIORITY_DP4A = 5       # only picked when the tensor-core kernels decline (or asked for by name)
K_LIMIT = 132_104       # int32 accumulation bound (docs/numerics.md section 3)
SOURCES = ("cuda/binding.cpp", "cuda/gemm_sm90.cu", "cuda/conv_sm90.cu", "cuda/conv_sm90_float.cu",
           "cuda/conv_sm90_float_res.cu", "cuda/conv_sm90_fixed.cu", "cuda/conv_sm90_fixed_res.cu", "cuda/igemm.cu",
           "cuda/quant.cu")
FLOAT_OUT = (torch.float32, torch.float16, torch.bfloat16)
EMULATE_ENV = "INT8COMPILE_CUDA_EMULATE_CC"
# MMA_MIN_CC (cuda_plan): the mma.sync target's minimum compute capability. sm75 runs the m8n8k16 build;
# it was verified by the `sm75` stage of scripts/gpu_check.sh (the kernel tests with
# INT8COMPILE_CUDA_EMULATE_CC=75 on an H100, 2026-11-25: 170 passed), not on sm75 hardware.
OUT_DTYPES = (torch.int8,) + FLOAT_OUT

_state: dict = {}


def _emulated() -> Optional[tuple[int, int]]:
    v = os.environ.get(EMULATE_ENV, "")
    if not v:
        return None
    if not (v.isdigit() and len(v) == 2):
        raise ValueError(f"{EMULATE_ENV}={v!r}: expected a compute capability like 75")
    return int(v[0]), int(v[1])


def _capability() -> Optional[tuple[int, int]]:
    """The compute capability the kernels are built for and routed by (the device's, or the emulated one)."""
    if not torch.cuda.is_available():
        return None
    real = torch.cuda.get_device_capability()
    emu = _emulated()
    if emu is not None and emu > real:
        raise ValueError(f"{EMULATE_ENV}: cannot emulate sm_{emu[0]}{emu[1]} on an sm_{real[0]}{real[1]} GPU")
    return emu or real


def _arch_flags(cc: tuple[int, int]) -> list[str]:
    if _emulated() is not None:  # PTX only: the driver JIT-compiles it for the real GPU
        return [f"-gencode=arch=compute_{cc[0]}{cc[1]},code=compute_{cc[0]}{cc[1]}"]
    if cc == (9, 0):
        return ["-gencode=arch=compute_90a,code=sm_90a"]
    return [f"-gencode=arch=compute_{cc[0]}{cc[1]},code=sm_{cc[0]}{cc[1]}"]


def ext():
    """The compiled extension (built on first use), or raise build.BuildError."""
    if "ext" in _state:
        return _state["ext"]
    if "error" in _state:
        raise build.BuildError(_state["error"])
    cc = _capability()
    if cc is None:
        raise build.BuildError("no CUDA device")
    try:
        mod = build.load_extension(
            f"int8compile_cuda_sm{cc[0]}{cc[1]}" + ("_ptx" if _emulated() else ""), SOURCES,
            cflags=("-O2", "-std=c++17"),
            cuda_cflags=tuple(_arch_flags(cc)) + ("-O3", "-std=c++17", "--fmad=false", "-lineinfo"))
    except build.BuildError as e:
        _state["error"] = str(e)
        build.warn_once(TARGET, str(e))
        raise
    _state["ext"] = mod
    return mod


def prebuild() -> str:
    """Build (or load from cache) the CUDA extension now; one line describing it."""
    cc = _capability()
    if cc is None:
        return "skipped: no CUDA device here (the kernels build on the GPU machine on first use)"
    ext()
    return f"cuda kernels ready for sm_{cc[0]}{cc[1]} ({torch.cuda.get_device_name()})"


def _unavailable(min_cc: tuple[int, int]) -> Optional[str]:
    cc = _capability()
    if cc is None:
        return "no CUDA device"
    if cc < min_cc:
        return f"compute capability {cc[0]}.{cc[1]} < {min_cc[0]}.{min_cc[1]}"
    try:
        ext()
    except build.BuildError as e:
        return f"cuda kernels unavailable: {e}"
    return None


def _check_epilogue(call: OpCall) -> Optional[str]:
    out = call.dtypes.get("out", torch.int8)
    if out not in OUT_DTYPES:
        return f"output dtype {out} not supported (int8, fp32, fp16, bf16)"
    if call.params.get("residual") and out != torch.int8:
        return "a residual add needs int8 output"
    mode = call.params.get("mode", "float")
    if str(getattr(mode, "value", mode)) not in ("float", "fixed", "pot"):
        return f"unknown requant mode {mode!r}"
    return None


def _check_operands(call: OpCall) -> Optional[str]:
    if call.device != "cuda":
        return "tensors are not on a CUDA device"
    for name in ("x", "weight"):
        dt = call.dtypes.get(name, torch.int8)
        if dt != torch.int8:
            return f"{name} must be int8, got {dt}"
    return None


def _check_linear(call: OpCall, min_cc: tuple[int, int]) -> Optional[str]:
    reason = _check_operands(call)
    if reason:
        return reason
    x, w = call.shapes.get("x"), call.shapes.get("weight")
    if x is None or w is None or len(w) != 2 or x[-1] != w[1]:
        return f"bad linear shapes x={x} weight={w}"
    if w[1] >= K_LIMIT:
        return f"K={w[1]} >= {K_LIMIT} may overflow the int32 accumulator"
    m = 1
    for d in x[:-1]:
        m *= d
    if m >= 2**31 or w[0] >= 2**31:
        return "M or N too large for 32-bit indexing"
    return _check_epilogue(call) or _unavailable(min_cc)


def _check_conv(call: OpCall, min_cc: tuple[int, int]) -> Optional[str]:
    reason = _check_operands(call)
    if reason:
        return reason
    x, w = call.shapes.get("x"), call.shapes.get("weight")
    groups = int(call.params.get("groups", 1))
    if x is None or w is None or len(x) != 4 or len(w) != 4:
        return f"bad conv shapes x={x} weight={w}"
    if x[1] % groups or w[0] % groups or w[3] * groups != x[1]:
        return f"channels {x[1]} / out {w[0]} do not match groups={groups}, weight={w}"
    if groups > 65535:
        return "more than 65535 groups"
    if w[1] * w[2] * w[3] >= K_LIMIT:
        return f"K={w[1] * w[2] * w[3]} >= {K_LIMIT} may overflow the int32 accumulator"
    if x[0] * x[2] * x[3] * max(1, x[1]) >= 2**31:
        return "input too large for 32-bit row indexing"
    return _check_epilogue(call) or _unavailable(min_cc)


def check_linear(call: OpCall) -> Optional[str]:
    return _check_linear(call, MMA_MIN_CC)


def check_conv(call: OpCall) -> Optional[str]:
    return _check_conv(call, MMA_MIN_CC)


def check_linear_dp4a(call: OpCall) -> Optional[str]:
    return _check_linear(call, (6, 1))


def check_conv_dp4a(call: OpCall) -> Optional[str]:
    return _check_conv(call, (6, 1))


def check_quantize(call: OpCall) -> Optional[str]:
    if call.device != "cuda":
        return "tensors are not on a CUDA device"
    dt = call.dtypes.get("x", torch.float32)
    if dt not in FLOAT_OUT:
        return f"quantize input dtype {dt} not supported (fp32, fp16, bf16)"
    x = call.shapes.get("x", ())
    if len(x) == 4 and (x[0] > 65535 or (x[1] + 31) // 32 > 65535):
        return "4-D input too large for the transposing kernel"
    return _unavailable((6, 1))


def check_dequantize(call: OpCall) -> Optional[str]:
    if call.device != "cuda":
        return "tensors are not on a CUDA device"
    if call.dtypes.get("x", torch.int8) != torch.int8:
        return "dequantize takes int8"
    out = call.dtypes.get("out", torch.float32)
    if out not in FLOAT_OUT:
        return f"dequantize output dtype {out} not supported"
    return _unavailable((6, 1))


# ----------------------------------------------------------------------------------------------
def _dev(t: Optional[Tensor], device, dtype=None) -> Optional[Tensor]:
    if t is None:
        return None
    if dtype is not None and t.dtype != dtype:
        t = t.to(dtype)
    return t.to(device).contiguous()


def _epi_args(device, out_dtype, bias, scale, mult, shift, residual, res_mult):
    if residual is not None and out_dtype != torch.int8:
        raise ValueError("a residual add needs int8 output")
    if out_dtype != torch.int8:
        mult = shift = res_mult = None
    if mult is None:
        res_mult = None
    return (_dev(bias, device, torch.int32), _dev(scale, device, torch.float32),
            _dev(mult, device, torch.int32), _dev(shift, device, torch.int32), mult is None, res_mult)


@functools.cache
def _num_sms(dev: int) -> int:
    return torch.cuda.get_device_properties(dev).multi_processor_count


def _conv_query(x: Tensor, w: Tensor, stride, padding, dilation, groups: int, int8_out: bool = False) -> ConvQuery:
    cc = _capability() or (0, 0)
    return ConvQuery(*x.shape, *w.shape, tuple(stride), tuple(padding), tuple(dilation), groups,
                     alignment(x.data_ptr()), alignment(w.data_ptr()), cc,
                     _num_sms(x.device.index or 0) if x.is_cuda else 132, int8_out)


_WS: dict = {}


def _workspace(device, M: int, N: int) -> tuple[Tensor, Tensor]:
    """Zeroed int32 split-K workspace [>= M*N] and counters; the kernel leaves both zeroed again."""
    key = (device.type, device.index)
    ws, cnt = _WS.get(key, (None, None))
    if ws is None or ws.numel() < M * N:
        ws = torch.zeros(max(M * N, 1 << 16), dtype=torch.int32, device=device)
    need = 2 * (-(-M // 64)) * (-(-N // 64)) + 2
    if cnt is None or cnt.numel() < need:
        cnt = torch.zeros(max(need, 4096), dtype=torch.int32, device=device)
    _WS[key] = (ws, cnt)
    return ws, cnt


def linear_impl(x: Tensor, weight: Tensor, bias, scale, mult, shift, residual, res_mult, res_scale: float,
                lo: float, hi: float, out_dtype: torch.dtype, algo: str = "auto", cfg: Optional[int] = None,
                max_ctas: int = 0, out: Optional[Tensor] = None, splits: Optional[int] = None) -> Tensor:
    """Run the linear kernel that cuda_plan.plan_linear picks. algo: auto | sm90 | mma | mma64 | dp4a."""
    dev = x.device
    K = x.shape[-1]
    N = weight.shape[0]
    x2 = x.reshape(-1, K).contiguous()
    w = weight.contiguous()
    M = x2.shape[0]
    bias, scale, mult, shift, _, res_mult = _epi_args(dev, out_dtype, bias, scale, mult, shift, residual, res_mult)
    res_mult = _dev(res_mult, dev, torch.int32)
    res = residual.reshape(M, N).contiguous() if residual is not None else None
    if out is None:
        out = torch.empty((M, N), dtype=out_dtype, device=dev)
    else:
        out = out.view(M, N)
        assert out.dtype == out_dtype and out.is_contiguous()
    if M == 0 or N == 0:
        return out.reshape(*x.shape[:-1], N)
    aligned = x2.data_ptr() % 16 == 0 and w.data_ptr() % 16 == 0
    plan = plan_linear(M, N, K, aligned, _capability(), _num_sms(dev.index or 0), algo, cfg, splits, forced_algo())
    epi = (bias, scale, mult, shift, res, res_mult, res_scale, lo, hi)
    if plan.algo == "sm90":
        ws, cnt = _workspace(dev, M, N) if plan.splits > 1 else (None, None)
        ext().linear(x2, w, out, *epi, 0, plan.cfg, max_ctas, plan.splits, ws, cnt)
    else:
        ext().linear(x2, w, out, *epi, {"mma": 1, "mma64": 2, "dp4a": 3}[plan.algo], 0, 0, 1, None, None)
    return out.reshape(*x.shape[:-1], N)


def conv2d_impl(x: Tensor, weight: Tensor, bias, scale, mult, shift, residual, res_mult, res_scale: float,
                lo: float, hi: float, out_dtype: torch.dtype, stride: Sequence[int], padding: Sequence[int],
                dilation: Sequence[int], groups: int, algo: str = "auto", out: Optional[Tensor] = None,
                cfg: Optional[int] = None, splits: Optional[int] = None) -> Tensor:
    """Run the conv kernel that cuda_plan.plan_conv picks. algo: auto | sm90 | stem | fold | mma | mma64 | dp4a |
    depthwise (cfg: sm90 conv tile, splits: its split-K factor)."""
    dev = x.device
    xc = x.contiguous(memory_format=torch.channels_last)
    w = weight.contiguous()
    stride, padding, dilation = list(stride), list(padding), list(dilation)
    q = _conv_query(xc, w, stride, padding, dilation, groups)
    Nb, O, (oh, ow) = q.N, q.O, q.out_hw
    bias, scale, mult, shift, _, res_mult = _epi_args(dev, out_dtype, bias, scale, mult, shift, residual, res_mult)
    res_mult = _dev(res_mult, dev, torch.int32)
    res = residual.contiguous(memory_format=torch.channels_last) if residual is not None else None
    if out is None:
        out = torch.empty((Nb, O, oh, ow), dtype=out_dtype, device=dev, memory_format=torch.channels_last)
    if out.shape != (Nb, O, oh, ow) or not out.is_contiguous(memory_format=torch.channels_last):
        raise ValueError(f"conv2d out must be a channels-last {(Nb, O, oh, ow)} tensor, got {tuple(out.shape)}")
    if out.numel() == 0:
        return out
    q = replace(q, int8_out=out_dtype == torch.int8 and res is None and alignment(out.data_ptr()) == 16)
    plan = plan_conv(q, algo, cfg, splits, route_env())
    epi = (bias, scale, mult, shift, res, res_mult, res_scale, lo, hi)
    if plan.algo == "stem":
        ext().conv2d_stem(xc, _fold_weight(w), out, *epi, q.KW, stride, padding, dilation)
    elif plan.algo == "fold":
        _conv2d_folded(xc, w, q, epi, out_dtype, out, plan.cfg, plan.fold_rows)
    elif plan.algo == "sm90":
        ws, cnt = _workspace(dev, q.rows, O) if plan.splits > 1 else (None, None)
        ext().conv2d(xc, w, out, *epi, stride, padding, dilation, groups, 4, plan.cfg, plan.splits, ws, cnt)
    else:
        if plan.pad_channels:
            xc, w = _pad_channels(xc, w, plan.pad_channels)
        code = {"mma": 0, "mma64": 1, "dp4a": 2, "depthwise": 3}[plan.algo]
        ext().conv2d(xc, w, out, *epi, stride, padding, dilation, groups, code, 0, 1, None, None)
    return out


def _pad_channels(x: Tensor, w: Tensor, c4: int) -> tuple[Tensor, Tensor]:
    """x and w with C zero-padded to c4 channels (exact: zero channels add nothing to the sums)."""
    Nb, C, H, W = x.shape
    xp = torch.empty((Nb, c4, H, W), dtype=torch.int8, device=x.device, memory_format=torch.channels_last)
    xp[:, C:] = 0
    xp[:, :C] = x
    wp = torch.zeros((*w.shape[:3], c4), dtype=torch.int8, device=w.device)
    wp[..., :C] = w
    return xp, wp


def _fold_weight(w: Tensor, rows: int = 1) -> Tensor:
    """[O, KH, KW, C] -> [O, ceil(KH / rows), Cp]: each group of `rows` filter rows' rows * KW * C bytes
    (filter rows past KH are zero), zero-padded to Cp = fold_channels(...) bytes."""
    O, KH, KW, C = w.shape
    taps = -(-KH // rows)
    wr = torch.zeros((O, taps * rows, KW, C), dtype=torch.int8, device=w.device)
    wr[:, :KH] = w
    wf = torch.zeros((O, taps, fold_channels(rows, KW, C)), dtype=torch.int8, device=w.device)
    wf[:, :, :rows * KW * C] = wr.reshape(O, taps, rows * KW * C)
    return wf


def _conv2d_folded(x: Tensor, w: Tensor, q: ConvQuery, epi: tuple, out_dtype, out: Tensor,
                   cfg: Optional[int] = None, rows: int = 1) -> Tensor:
    """A conv with few input channels (the RGB stem) as a conv over its window folded into channels by
    fold_window: `rows` input rows x KW filter columns x C channels per folded pixel. rows = 1: a KH x 1
    conv with the row stride and padding; rows = the row stride: a ceil(KH / rows) x 1 conv with stride 1
    and no padding (folded row i holds input rows i * rows - top padding + r); cuda_plan.folded_query
    gives that conv. Same sums, so bit-exact. The folded input is Cp / (C * column stride) times the
    input (2.7x for a 7x7 stride-2 RGB stem)."""
    f = folded_query(q, rows)
    _, row_step, row_off = fold_row_layout(rows, q.KH, q.H, q.out_hw[0], q.padding[0])
    xf = torch.empty((f.N, f.C, f.H, f.W), dtype=torch.int8, device=x.device, memory_format=torch.channels_last)
    ext().fold_window(x, xf, q.KW, q.stride[1], q.dilation[1], q.padding[2], rows, row_step, row_off)
    wf = _fold_weight(w, rows).unsqueeze(2)
    return conv2d_impl(xf, wf, *epi, out_dtype, f.stride, f.padding, f.dilation, 1, algo="sm90", out=out, cfg=cfg)


def describe_linear(call: OpCall) -> str:
    """The kernel plan_linear will pick for this call on this GPU (operands assumed 16-byte aligned)."""
    cc = _capability()
    if cc is None:
        return ""
    *rows, K = call.shapes["x"]
    return str(plan_linear(math.prod(rows), call.shapes["weight"][0], K, True, cc, _num_sms(torch.cuda.current_device()),
                           forced=forced_algo()))


def describe_conv(call: OpCall) -> str:
    """The kernel plan_conv will pick for this call on this GPU (operands assumed 16-byte aligned)."""
    cc = _capability()
    if cc is None:
        return ""
    p = call.params
    q = ConvQuery(*call.shapes["x"], *call.shapes["weight"], tuple(p["stride"]), tuple(p["padding"]),
                  tuple(p["dilation"]), p["groups"], 16, 16, cc, _num_sms(torch.cuda.current_device()),
                  call.dtypes.get("out") == torch.int8 and not p.get("residual"))
    env = route_env()
    return describe_plan(q, plan_conv(q, env=env), env)


@register("linear", TARGET, priority=PRIORITY, check=check_linear, device="cuda", describe=describe_linear)
def linear(x, weight, bias, scale, mult, shift, residual, res_mult, res_scale, lo, hi, out_dtype):
    return linear_impl(x, weight, bias, scale, mult, shift, residual, res_mult, res_scale, lo, hi, out_dtype)


@register("conv2d", TARGET, priority=PRIORITY, check=check_conv, device="cuda", describe=describe_conv)
def conv2d(x, weight, bias, scale, mult, shift, residual, res_mult, res_scale, lo, hi, out_dtype, stride,
           padding, dilation, groups):
    return conv2d_impl(x, weight, bias, scale, mult, shift, residual, res_mult, res_scale, lo, hi, out_dtype,
                       stride, padding, dilation, groups)


@register("linear", TARGET_DP4A, priority=PRIORITY_DP4A, check=check_linear_dp4a, device="cuda")
def linear_dp4a(x, weight, bias, scale, mult, shift, residual, res_mult, res_scale, lo, hi, out_dtype):
    return linear_impl(x, weight, bias, scale, mult, shift, residual, res_mult, res_scale, lo, hi, out_dtype,
                       algo="dp4a")


@register("conv2d", TARGET_DP4A, priority=PRIORITY_DP4A, check=check_conv_dp4a, device="cuda")
def conv2d_dp4a(x, weight, bias, scale, mult, shift, residual, res_mult, res_scale, lo, hi, out_dtype, stride,
                padding, dilation, groups):
    return conv2d_impl(x, weight, bias, scale, mult, shift, residual, res_mult, res_scale, lo, hi, out_dtype,
                       stride, padding, dilation, groups, algo="dp4a")


@register("quantize", TARGET, priority=PRIORITY, check=check_quantize, device="cuda")
def quantize(x: Tensor, inv_scale: float) -> Tensor:
    if not x.is_floating_point():
        raise TypeError(f"quantize takes a float tensor, got {x.dtype}")
    m = ext()
    if x.dtype not in FLOAT_OUT:
        x = x.to(torch.float32)
    if x.dim() == 4:
        q = torch.empty(x.shape, dtype=torch.int8, device=x.device, memory_format=torch.channels_last)
        if x.is_contiguous(memory_format=torch.channels_last):
            m.quantize(x, q, inv_scale, 0, 0, 0, 0)
        elif x.is_contiguous():
            n, c, h, w = x.shape
            m.quantize(x, q, inv_scale, 1, n, c, h * w)
        else:
            m.quantize(x.contiguous(memory_format=torch.channels_last), q, inv_scale, 0, 0, 0, 0)
        return q
    xc = x.contiguous()
    q = torch.empty(x.shape, dtype=torch.int8, device=x.device)
    m.quantize(xc, q, inv_scale, 0, 0, 0, 0)
    return q


@register("dequantize", TARGET, priority=PRIORITY, check=check_dequantize, device="cuda")
def dequantize(q: Tensor, scale: float, out_dtype: torch.dtype) -> Tensor:
    if q.dtype != torch.int8:
        raise TypeError(f"dequantize input must be int8, got {q.dtype}")
    m = ext()
    if not (q.is_contiguous() or (q.dim() == 4 and q.is_contiguous(memory_format=torch.channels_last))):
        q = q.contiguous()
    y = torch.empty_like(q, dtype=out_dtype)
    m.dequantize(q, y, scale)
    return y
