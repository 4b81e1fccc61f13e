"""Bit-exact tests of the `cuda` target against the reference target (docs/numerics.md, 0 LSB).

The GPU tests skip cleanly on a machine without CUDA (CI); they run on the GPU machine through
scripts/gpu_check.sh. Every run draws fresh random inputs and poisons the output buffer first, so an
element the kernel fails to write cannot pass. The tests at the top run everywhere (import must not
build anything; the capability checks must decline with a reason).
"""
from __future__ import annotations

import math
import os
from dataclasses import replace

import pytest
import torch

from int8compile import numerics
from int8compile.kernels import cuda as ck
from int8compile.kernels import reference as ref
from int8compile.kernels.registry import OpCall

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU (run scripts/gpu_check.sh on the device)")


# ---------------------------------------------------------------- runs everywhere
def test_import_does_not_build():
    assert "ext" not in ck._state or HAS_CUDA


def test_emulated_capability_parsing(monkeypatch):
    monkeypatch.setenv(ck.EMULATE_ENV, "75")
    assert ck._emulated() == (7, 5)
    assert ck._arch_flags((7, 5)) == ["-gencode=arch=compute_75,code=compute_75"]  # PTX, JIT onto the GPU
    monkeypatch.setenv(ck.EMULATE_ENV, "7.5")
    with pytest.raises(ValueError, match="expected a compute capability like 75"):
        ck._emulated()
    monkeypatch.delenv(ck.EMULATE_ENV)
    assert ck._emulated() is None
    assert ck._arch_flags((9, 0)) == ["-gencode=arch=compute_90a,code=sm_90a"]


def test_checks_decline_with_reason():
    call = OpCall("linear", "cpu", {"x": (4, 16), "weight": (8, 16)}, {"x": torch.int8, "out": torch.int8},
                  {"mode": "float"})
    assert "CUDA" in ck.check_linear(call)
    call = OpCall("linear", "cuda", {"x": (4, 200_000), "weight": (8, 200_000)},
                  {"x": torch.int8, "out": torch.int8}, {"mode": "float"})
    assert "K=" in ck.check_linear(call)
    call = OpCall("conv2d", "cuda", {"x": (1, 6, 8, 8), "weight": (4, 3, 3, 4)},
                  {"x": torch.int8, "out": torch.int8}, {"groups": 2, "mode": "fixed"})
    assert "groups" in ck.check_conv(call)
    call = OpCall("linear", "cuda", {"x": (4, 16), "weight": (8, 16)}, {"x": torch.int8, "out": torch.float16},
                  {"mode": "float", "residual": True})
    assert "residual" in ck.check_linear(call)
    if not HAS_CUDA:
        call = OpCall("linear", "cuda", {"x": (4, 16), "weight": (8, 16)}, {"x": torch.int8, "out": torch.int8},
                      {"mode": "float"})
        assert ck.check_linear(call) == "no CUDA device"


# ---------------------------------------------------------------- helpers
DEV = "cuda"
POISON = {torch.int8: 0x5A, torch.float32: float("nan"), torch.float16: float("nan"), torch.bfloat16: float("nan")}


def poisoned(shape, dtype, channels_last=False):
    t = torch.empty(shape, dtype=dtype, device=DEV,
                    memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    t.fill_(POISON[dtype] if dtype != torch.int8 else 0x5A)
    return t


def rand_i8(shape, g, lo=-128, hi=127):
    return torch.randint(lo, hi + 1, shape, generator=g, dtype=torch.int8)


def epilogue_args(N, K, mode, residual, out_dtype, act, g, out_shape):
    """Random but realistic requant parameters whose outputs saturate at both ends."""
    std = 73.0 * 73.0 * math.sqrt(max(K, 1))
    s_x = 0.02
    s_w = torch.rand(N, generator=g, dtype=torch.float64) * 0.02 + 0.001
    target = 60.0 * (0.5 + 1.5 * torch.rand(N, generator=g, dtype=torch.float64))  # output spread in codes
    s_y = float(s_x * s_w.mean() * std / 60.0)
    m = s_x * s_w / s_y * (target / 60.0)
    bias = torch.randint(-2**20, 2**20, (N,), generator=g, dtype=torch.int32)
    if N > 2:
        bias[0] = 2**31 - 1      # int64 bias add must not wrap
        bias[1] = -2**31
    res = rand_i8(out_shape, g) if residual else None
    m_res = 0.3 + float(torch.rand(1, generator=g)) if residual else None
    if out_dtype != torch.int8:
        scale = (s_x * s_w).to(torch.float32) * float(1.0 / std)
        lo, hi = {"none": (-math.inf, math.inf), "relu": (0.0, math.inf), "relu6": (0.0, 6.0),
                  "clamp": (-0.37, 0.61)}[act]
        return dict(bias=bias, scale=scale, mult=None, shift=None, residual=None, res_mult=None, res_scale=0.0,
                    lo=lo, hi=hi)
    rq = numerics.requant_params(numerics.RequantMode(mode), m, m_res)
    lo, hi = {"none": (-128.0, 127.0), "relu": (0.0, 127.0), "relu6": (0.0, 50.0), "clamp": (-20.0, 30.0)}[act]
    return dict(bias=bias, scale=rq.scale, mult=rq.mult, shift=rq.shift, residual=res, res_mult=rq.res_mult,
                res_scale=rq.res_scale, lo=lo, hi=hi)


def to_dev(d):
    return {k: (v.to(DEV) if isinstance(v, torch.Tensor) else v) for k, v in d.items()}


def algos_linear():
    if not HAS_CUDA:
        return []
    cc = ck._capability()  # the emulated one under INT8COMPILE_CUDA_EMULATE_CC
    a = ["mma", "mma64", "dp4a"] if cc >= (7, 5) else ["dp4a"]
    if cc == (9, 0):
        a = ([f"sm90:{c}" for c in ck.SM90_TILES] + ["sm90:7:3", "sm90:4:2", "sm90:2:5", "sm90"]
             + ["sm90:4:1:3", "sm90:0:1:2", "sm90:2:2:3", "sm90:1:1:5", "sm90:9:1:3"]  # several tiles per CTA
             + a)
    return a


def parse_algo(algo):
    """'sm90:cfg:splits:max_ctas' -> (name, cfg, splits, max_ctas); missing parts: heuristic."""
    parts = algo.split(":")
    name = parts[0]
    cfg = int(parts[1]) if len(parts) > 1 else None
    splits = int(parts[2]) if len(parts) > 2 else None
    max_ctas = int(parts[3]) if len(parts) > 3 else 0
    return name, cfg, splits, max_ctas


EPI_VARIANTS = [  # (mode, residual, out_dtype, act)
    ("float", False, torch.int8, "none"), ("float", True, torch.int8, "relu"),
    ("fixed", False, torch.int8, "relu6"), ("fixed", True, torch.int8, "none"),
    ("pot", False, torch.int8, "clamp"), ("pot", True, torch.int8, "relu"),
    ("float", False, torch.float32, "none"), ("float", False, torch.float16, "relu6"),
    ("float", False, torch.bfloat16, "clamp"),
]
LINEAR_SHAPES = [  # (M, K, N)
    (1, 16, 5), (1, 3, 33), (7, 17, 5), (64, 131, 33), (65, 128, 64), (130, 256, 256), (300, 1040, 300),
    (257, 4096, 520), (1024, 512, 1000), (129, 48, 392),
    (200, 96, 336),  # N a multiple of 16 but not of the tile: TMA stores / residual loads clipped at the N edge
]


# ---------------------------------------------------------------- linear
@needs_cuda
@pytest.mark.parametrize("algo", algos_linear())
@pytest.mark.parametrize("shape", LINEAR_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_linear_bitexact(algo, shape):
    M, K, N = shape
    g = torch.Generator().manual_seed(hash((algo, shape)) & 0xFFFF_FFFF)
    failures = []
    for mode, residual, out_dtype, act in EPI_VARIANTS:
        x = rand_i8((M, K), g).to(DEV)
        w = rand_i8((N, K), g, -127, 127).to(DEV)
        e = to_dev(epilogue_args(N, K, mode, residual, out_dtype, act, g, (M, N)))
        expect = ref.linear(x, w, e["bias"], e["scale"], e["mult"], e["shift"], e["residual"], e["res_mult"],
                            e["res_scale"], e["lo"], e["hi"], out_dtype)
        out = poisoned((M, N), out_dtype)
        name, cfg, splits, max_ctas = parse_algo(algo)
        got = ck.linear_impl(x, w, e["bias"], e["scale"], e["mult"], e["shift"], e["residual"], e["res_mult"],
                             e["res_scale"], e["lo"], e["hi"], out_dtype, algo=name, cfg=cfg, splits=splits,
                             max_ctas=max_ctas, out=out)
        torch.cuda.synchronize()
        if not torch.equal(got, expect):
            diff = (got.double() - expect.double()).abs()
            failures.append(f"{mode} res={residual} {out_dtype} {act}: {int((diff != 0).sum())} of {diff.numel()} "
                            f"differ (max {float(diff.nan_to_num(999).max())})")
    assert not failures, failures


@needs_cuda
@pytest.mark.skipif(HAS_CUDA and ck._capability() != (9, 0), reason="sm90 only")
def test_splitk_workspace_left_zeroed():
    g = torch.Generator().manual_seed(5)
    for (M, K, N, cfg, sp) in [(33, 1024, 200, 7, 4), (100, 2048, 300, 4, 3), (5, 4096, 4096, 7, 8)]:
        x = rand_i8((M, K), g).to(DEV)
        w = rand_i8((N, K), g, -127, 127).to(DEV)
        e = to_dev(epilogue_args(N, K, "float", True, torch.int8, "none", g, (M, N)))
        args = (e["bias"], e["scale"], e["mult"], e["shift"], e["residual"], e["res_mult"], e["res_scale"], e["lo"],
                e["hi"], torch.int8)
        expect = ref.linear(x, w, *args)
        for _ in range(3):
            got = ck.linear_impl(x, w, *args, algo="sm90", cfg=cfg, splits=sp)
            assert torch.equal(got, expect)
        ws, cnt = ck._workspace(torch.device(DEV), M, N)
        assert int(ws.abs().max()) == 0 and int(cnt.abs().max()) == 0


@needs_cuda
def test_linear_batched_and_saturation():
    """3-D input through the registered kernel; extreme inputs (all -128 / 127) saturate both ends."""
    g = torch.Generator().manual_seed(7)
    for fill in (-128, 127):
        x = torch.full((2, 3, 64), fill, dtype=torch.int8, device=DEV)
        w = rand_i8((40, 64), g, -127, 127).to(DEV)
        w[:20] = 127
        w[20:] = -127
        for mode in ("float", "fixed"):
            e = to_dev(epilogue_args(40, 64, mode, False, torch.int8, "none", g, (2, 3, 40)))
            e["scale"] = e["scale"] * 0 + 0.5 if mode == "float" else e["scale"]
            expect = ref.linear(x, w, None, e["scale"], e["mult"], e["shift"], None, None, 0.0, -128.0, 127.0,
                                torch.int8)
            got = ck.linear(x, w, None, e["scale"], e["mult"], e["shift"], None, None, 0.0, -128.0, 127.0,
                            torch.int8)
            assert torch.equal(got, expect)
            assert int(expect.max()) == 127 or int(expect.min()) == -128


# ---------------------------------------------------------------- conv2d
CONV_CASES = [  # N, C, H, W, O, KH, KW, stride, padding, dilation, groups
    (2, 3, 17, 19, 8, 7, 7, (2, 2), (3, 3, 3, 3), (1, 1), 1),       # stem: 7x7 s2, 3 channels
    (1, 16, 8, 8, 32, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),       # 1x1
    (2, 32, 9, 7, 48, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),       # 3x3
    (1, 32, 10, 10, 33, 3, 3, (2, 2), (1, 0, 1, 0), (1, 1), 1),     # stride 2, asymmetric padding
    (1, 16, 12, 12, 16, 3, 3, (1, 1), (2, 2, 2, 2), (2, 2), 1),     # dilation 2
    (1, 64, 14, 14, 64, 1, 1, (2, 2), (0, 0, 0, 0), (1, 1), 1),     # 1x1 stride 2 (downsample)
    (2, 64, 8, 8, 64, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 4),       # grouped, Cg = 16
    (1, 12, 6, 6, 18, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 3),       # grouped, Cg = 4 (byte path), Og = 6
    (2, 32, 9, 9, 32, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 32),      # depthwise
    (1, 6, 7, 7, 6, 5, 5, (2, 2), (2, 2, 2, 2), (1, 1), 6),         # depthwise, C % 4 != 0, stride 2
    (1, 17, 5, 5, 5, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),        # odd channels
    (4, 64, 14, 14, 128, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),    # M = 784
    (2, 512, 7, 7, 96, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),      # 1x1, C >= 512: wgmma GEMM on sm90
    (1, 512, 9, 9, 40, 1, 1, (2, 2), (0, 0, 0, 0), (1, 1), 1),      # 1x1 stride 2, C >= 512
    # wgmma im2col conv on sm90 (groups 1, C % 64 == 0): tiles crossing image boundaries, M / O tails
    (3, 128, 11, 13, 200, 3, 3, (2, 2), (1, 0, 1, 0), (1, 1), 1),   # k-block 128, stride 2, asym. padding
    (2, 64, 12, 10, 64, 3, 3, (1, 1), (2, 2, 2, 2), (2, 2), 1),     # k-block 64, dilation 2, O = 64
    (2, 128, 9, 9, 72, 5, 5, (1, 1), (2, 2, 2, 2), (1, 1), 1),      # 5x5
    (1, 192, 7, 7, 130, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),     # C = 192: three 64-channel k-blocks per tap
    (2, 64, 23, 23, 64, 7, 7, (2, 2), (3, 3, 3, 3), (1, 1), 1),     # 7x7 stride 2
    (5, 256, 14, 14, 256, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),   # 1x1, M = 980 (tiled A map, no im2col)
    (3, 64, 9, 11, 200, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),     # 1x1, C = 64, M = 297 and O tails
    (2, 32, 15, 15, 40, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),     # C = 32: 32-byte k-blocks
    (1, 96, 9, 9, 64, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1), 1),       # C = 96
    FOLDED_STEM := (3, 3, 40, 38, 64, 7, 7, (2, 2), (3, 3, 3, 3), (1, 1), 1),  # stem, folded: KW * C = 21
    (1, 4, 13, 11, 16, 3, 5, (1, 2), (1, 1, 2, 0), (2, 1), 1),      # folded, stride / dilation / padding mixed
    (2, 3, 17, 15, 16, 5, 5, (3, 2), (2, 1, 2, 2), (1, 1), 1),      # folded, 3 rows (row stride 3), KH % 3 != 0
    (1, 3, 20, 18, 64, 7, 7, (2, 2), (3, 2, 3, 2), (1, 1), 1),      # folded, 2 rows, asymmetric padding
    # the built-A stem kernel on sm90 (algo "stem"): W * C % 4 == 0
    STEM := (2, 3, 24, 20, 64, 7, 7, (2, 2), (3, 3, 3, 3), (1, 1), 1),  # 7x7 stride 2, M = 240
    (1, 4, 13, 12, 16, 3, 5, (1, 2), (1, 1, 2, 0), (2, 1), 1),      # row dilation, asymmetric padding
    (3, 3, 9, 8, 72, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),        # O = 72: two column blocks
]
SM90_CONV_CASES = [c for c in CONV_CASES if c[10] == 1 and c[1] % 32 == 0]


def algos_conv():
    if not HAS_CUDA:
        return []
    cc = ck._capability()
    algos = ["auto", "mma", "mma64", "dp4a"] if cc >= (7, 5) else ["auto", "dp4a"]
    return algos + (["sm90", "fold", "stem"] if cc == (9, 0) else [])


def conv_mismatch(case, variant, g, algo, cfg=None, splits=None):
    """Run one conv case in one epilogue variant on fresh inputs through conv2d_impl(algo, cfg, splits) and
    the reference; None when bit-exact, else what differs."""
    N, C, H, W, O, KH, KW, stride, padding, dilation, groups = case
    mode, residual, out_dtype, act = variant
    from int8compile.ops import conv2d_output_size
    oh, ow = conv2d_output_size((H, W), (KH, KW), stride, padding, dilation)
    x = rand_i8((N, C, H, W), g).to(DEV).contiguous(memory_format=torch.channels_last)
    w = rand_i8((O, KH, KW, C // groups), g, -127, 127).to(DEV)
    e = to_dev(epilogue_args(O, KH * KW * C // groups, mode, residual, out_dtype, act, g, (N, O, oh, ow)))
    if e["residual"] is not None:
        e["residual"] = e["residual"].contiguous(memory_format=torch.channels_last)
    expect = ref.conv2d(x, w, e["bias"], e["scale"], e["mult"], e["shift"], e["residual"], e["res_mult"],
                        e["res_scale"], e["lo"], e["hi"], out_dtype, stride, padding, dilation, groups)
    out = poisoned((N, O, oh, ow), out_dtype, channels_last=True)
    got = ck.conv2d_impl(x, w, e["bias"], e["scale"], e["mult"], e["shift"], e["residual"], e["res_mult"],
                         e["res_scale"], e["lo"], e["hi"], out_dtype, stride, padding, dilation, groups,
                         algo=algo, out=out, cfg=cfg, splits=splits)
    torch.cuda.synchronize()
    if torch.equal(got, expect):
        return None
    diff = (got.double() - expect.double()).abs()
    return (f"{algo} cfg {cfg} splits {splits} {mode} res={residual} {out_dtype} {act}: {int((diff != 0).sum())} of "
            f"{diff.numel()} differ")


@needs_cuda
@pytest.mark.parametrize("algo", algos_conv())
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c[0]}x{c[1]}x{c[2]}x{c[3]}-o{c[4]}k{c[5]}x{c[6]}"
                                                           f"s{c[7][0]}d{c[9][0]}g{c[10]}")
def test_conv2d_bitexact(algo, case):
    g = torch.Generator().manual_seed(hash((algo, case)) & 0xFFFF_FFFF)
    failures = [f for v in EPI_VARIANTS if (f := conv_mismatch(case, v, g, algo))]
    assert not failures, failures


@needs_cuda
@pytest.mark.skipif(HAS_CUDA and ck._capability() != (9, 0), reason="sm90 only")
@pytest.mark.parametrize("case", SM90_CONV_CASES, ids=lambda c: f"{c[0]}x{c[1]}x{c[2]}x{c[3]}-o{c[4]}k{c[5]}s{c[7][0]}")
def test_conv2d_sm90_every_tile(case):
    """Every wgmma conv tile config whose k-block divides C, bit-exact with each of the four int8
    epilogues (each its own specialised kernel: float / fixed requant, with and without residual) and
    a float output (the kernel with every epilogue)."""
    g = torch.Generator().manual_seed(hash(case) & 0xFFFF_FFFF)
    variants = [EPI_VARIANTS[i] for i in (0, 1, 2, 3, 7)]
    failures = [f for cfg, (_, _, bk) in ck.SM90_CONV_TILES.items() if case[1] % bk == 0 and cfg not in ck.HALO_CONFIGS
                for v in variants if (f := conv_mismatch(case, v, g, "sm90", cfg))]
    assert not failures, failures


@needs_cuda
@pytest.mark.skipif(HAS_CUDA and ck._capability() != (9, 0), reason="sm90 only")
@pytest.mark.parametrize("case", [(2, 64, 16, 16, 2200, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),
                                  (1, 64, 12, 12, 2200, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1)],
                         ids=["1x1", "3x3"])
def test_conv2d_sm90_tiles_without_fixed_columns(case):
    """O = 2200 makes more than 16 column blocks for every tile config, so no CTA keeps one column block
    (fixed_n) and each tile stages its own channel parameters: in the float-requant kernels that
    includes the bias quads the accumulators start from (bias_init), staged before the tile's MMAs.
    Channels 0 / 1 carry +-2^31 biases, so their tiles also take the bias back out (bias_remove)."""
    g = torch.Generator().manual_seed(hash(("columns", case)) & 0xFFFF_FFFF)
    failures = [f for cfg, (_, _, bk) in ck.SM90_CONV_TILES.items() if case[1] % bk == 0 and cfg not in ck.HALO_CONFIGS
                for v in EPI_VARIANTS[:3] if (f := conv_mismatch(case, v, g, "sm90", cfg))]
    assert not failures, failures


@needs_cuda
@pytest.mark.skipif(HAS_CUDA and ck._capability() != (9, 0), reason="sm90 only")
def test_conv2d_sm90_residual_by_byte_loads(monkeypatch):
    """INT8COMPILE_SM90_TMA_RESIDUAL=0: the epilogue reads the residual from global memory at the point of
    use instead of a TMA-loaded tile; bit-exact with float (channel-permuted kernels, four channels per
    read) and fixed requant, O a multiple of 16, through every non-halo tile config."""
    monkeypatch.setenv("INT8COMPILE_SM90_TMA_RESIDUAL", "0")
    case = (2, 64, 12, 10, 80, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    g = torch.Generator().manual_seed(1234)
    failures = [f for cfg, (_, _, bk) in ck.SM90_CONV_TILES.items() if case[1] % bk == 0 and cfg not in ck.HALO_CONFIGS
                for v in (EPI_VARIANTS[1], EPI_VARIANTS[3]) if (f := conv_mismatch(case, v, g, "sm90", cfg))]
    assert not failures, failures


HALO_CASES = [  # (config, conv case: N, C, H, W, O, KH, KW, stride, padding, dilation, groups), C = 64
    (18, (3, 64, 9, 11, 208, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1)),   # 1x1; tiles past the right / bottom
    (18, (2, 64, 21, 16, 64, 4, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1)),   # the folded stem's 4x1 shape
    (18, (2, 64, 20, 12, 80, 3, 1, (1, 1), (1, 1, 0, 0), (1, 1), 1)),   # padded rows, two column blocks
    (19, (2, 64, 20, 12, 64, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1)),   # 3x3, three column boxes
    (19, (1, 64, 9, 11, 80, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1)),    # 3x3, edges, two column blocks
    (19, (2, 64, 17, 10, 64, 3, 2, (1, 1), (2, 0, 1, 0), (1, 1), 1)),   # 3x2, asymmetric padding
]


@needs_cuda
@pytest.mark.skipif(HAS_CUDA and ck._capability() != (9, 0), reason="sm90 only")
@pytest.mark.parametrize("cfg,case", HALO_CASES,
                         ids=[f"cfg{c}-{x[0]}x{x[2]}x{x[3]}-o{x[4]}k{x[5]}x{x[6]}" for c, x in HALO_CASES])
def test_conv2d_sm90_halo(cfg, case):
    """The halo-fed convs (configs 18, 19: 16 x 8-pixel tiles, KW column-shifted input halo boxes per
    tile, each filter tap's A operand at a fixed offset in them) bit-exact with int8 out, float / fixed
    requant, with the clamp-free (none, relu) and the min/max (relu6) epilogues."""
    g = torch.Generator().manual_seed(hash(("halo", cfg, case)) & 0xFFFF_FFFF)
    failures = [f for mode in ("float", "fixed") for act in ("none", "relu", "relu6")
                if (f := conv_mismatch(case, (mode, False, torch.int8, act), g, "sm90", cfg))]
    assert not failures, failures


@needs_cuda
@pytest.mark.skipif(HAS_CUDA and ck._capability() != (9, 0), reason="sm90 only")
@pytest.mark.parametrize("cfg", sorted(ck.HALO_CONFIGS))
def test_halo_ring_wraps(cfg):
    """12 halo tiles per SM: every CTA runs more tiles than its config has stages, so each stage's
    mbarrier phases wrap (the small halo cases run one tile per CTA)."""
    KH, KW = (3, 3) if ck.HALO_CONFIGS[cfg][0] >= 9 else (4, 1)
    pad = (KH // 2, KH // 2, KW // 2, KW // 2)
    N = -(-12 * ck._num_sms(0) // 8)                      # 28 x 28 outputs: 2 x 4 tiles per image
    case = (N, 64, 28 + KH - 1 - 2 * pad[0], 28, 64, KH, KW, (1, 1), pad, (1, 1), 1)
    g = torch.Generator().manual_seed(hash(("wrap", cfg)) & 0xFFFF_FFFF)
    failures = [f for v in (("float", False, torch.int8, "none"), ("fixed", False, torch.int8, "relu6"))
                if (f := conv_mismatch(case, v, g, "sm90", cfg))]
    assert not failures, failures


@needs_cuda
@pytest.mark.skipif(HAS_CUDA and ck._capability() != (9, 0), reason="sm90 only")
def test_folded_stem_on_the_halo_conv():
    """fold_window's output (not 16-byte input rows: byte staging) through config 18, forced."""
    g = torch.Generator().manual_seed(11)
    failures = [f for v in (EPI_VARIANTS[0], ("fixed", False, torch.int8, "relu"))
                if (f := conv_mismatch(FOLDED_STEM, v, g, "fold", ck.HALO_CFG))]
    assert not failures, failures


@needs_cuda
@pytest.mark.skipif(HAS_CUDA and ck._capability() != (9, 0), reason="sm90 only")
@pytest.mark.parametrize("case,algo,planned", [
    ((5, 64, 56, 56, 64, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1), "auto", "sm90 halo 16x8 px x 64 (cfg 19)"),
    ((9, 3, 128, 64, 64, 7, 7, (2, 2), (3, 3, 3, 3), (1, 1), 1), "fold", None),  # 16-byte rows; 4x1 on 18
], ids=["3x3-auto", "stem-fold"])
def test_halo_routing_bitexact(case, algo, planned):
    """Convs that fill a wave of halo tiles, through the planner (cfg=None): the plan names the halo
    config, and int8 out without residual (halo) and with a residual (im2col) are both bit-exact."""
    N, C, H, W, O, KH, KW, stride, padding, dilation, groups = case
    x = torch.empty((N, C, H, W), dtype=torch.int8, device=DEV, memory_format=torch.channels_last)
    w = torch.empty((O, KH, KW, C), dtype=torch.int8, device=DEV)
    if planned:
        q = replace(ck._conv_query(x, w, stride, padding, dilation, groups), int8_out=True)
        assert str(ck.plan_conv(q)) == planned
    else:  # the row-folded stem: a 4x1 conv over 2 rows x 7 columns x 3 channels (64), 9 x 4 x 4 tiles
        oh, ow = ck._conv_query(x, w, stride, padding, dilation, groups).out_hw
        rows = ck.fold_row_layout(2, KH, H, oh, padding[0])[0]
        folded = ck.ConvQuery(N, 64, rows, ow, O, 4, 1, 64, (1, 1), (0, 0, 0, 0), (1, 1), 1, 16, 16, (9, 0),
                              ck._num_sms(0), True)
        assert ck.halo_config(folded) == 18
    g = torch.Generator().manual_seed(13)
    failures = [f for v in (EPI_VARIANTS[0], EPI_VARIANTS[2], EPI_VARIANTS[1])
                if (f := conv_mismatch(case, v, g, algo))]
    assert not failures, failures


@needs_cuda
@pytest.mark.skipif(HAS_CUDA and ck._capability() != (9, 0), reason="sm90 only")
def test_halo_conv_declines_what_it_cannot_take():
    """Stride 2, output rows not 16-byte aligned (O = 200), a residual or a float output on the halo
    config: a clear error, never a wrong result."""
    g = torch.Generator().manual_seed(12)
    with pytest.raises(RuntimeError, match="halo conv"):
        conv_mismatch((1, 64, 14, 14, 64, 1, 1, (2, 2), (0, 0, 0, 0), (1, 1), 1), EPI_VARIANTS[0], g, "sm90",
                      ck.HALO_CFG)
    unaligned = (1, 64, 9, 11, 200, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1)
    with pytest.raises(RuntimeError, match="halo conv: output rows"):     # fixed requant
        conv_mismatch(unaligned, EPI_VARIANTS[2], g, "sm90", ck.HALO_CFG)
    with pytest.raises(RuntimeError, match="halo conv .*O % 16 == 0"):    # float: O % 16 != 0 runs EPI_ANY
        conv_mismatch(unaligned, EPI_VARIANTS[0], g, "sm90", ck.HALO_CFG)
    for variant in (EPI_VARIANTS[1], EPI_VARIANTS[6]):   # residual; float32 out
        with pytest.raises(RuntimeError, match="halo conv"):
            conv_mismatch(HALO_CASES[0][1], variant, g, "sm90", ck.HALO_CFG)


@needs_cuda
@pytest.mark.skipif(HAS_CUDA and ck._capability() != (9, 0), reason="sm90 only")
@pytest.mark.parametrize("case", [c for c in CONV_CASES if c[1] <= 4 and c[6] > 1],
                         ids=lambda c: f"{c[0]}x{c[1]}x{c[2]}x{c[3]}-o{c[4]}k{c[5]}x{c[6]}s{c[7][0]}")
def test_fold_columns_only(case, monkeypatch):
    """INT8COMPILE_FOLD_ROWS=1: few-channel convs folded by filter columns only (32 channels, the row
    stride and padding left to the folded conv), the layout before rows were folded too."""
    monkeypatch.setenv("INT8COMPILE_FOLD_ROWS", "1")
    test_conv2d_bitexact("fold", case)


ACT_CASES = [CONV_CASES[11], (5, 256, 14, 14, 256, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),
             (3, 64, 9, 11, 200, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1)]


@needs_cuda
@pytest.mark.skipif(HAS_CUDA and ck._capability() != (9, 0), reason="sm90 only")
@pytest.mark.parametrize("case", ACT_CASES, ids=lambda c: f"{c[0]}x{c[1]}x{c[2]}x{c[3]}-o{c[4]}k{c[5]}")
def test_conv2d_sm90_activations(case):
    """Each specialised int8 kernel (float / fixed requant, with and without residual) with every clamp:
    none and relu saturate in the packing instruction (fast_pair's ACT_NONE / ACT_RELU), relu6 and
    clamp take min / max (ACT_CLAMP)."""
    g = torch.Generator().manual_seed(hash(("act", case)) & 0xFFFF_FFFF)
    failures = [f for mode in ("float", "fixed") for res in (False, True) for act in ("none", "relu", "relu6", "clamp")
                if (f := conv_mismatch(case, (mode, res, torch.int8, act), g, "sm90"))]
    assert not failures, failures


@needs_cuda
@pytest.mark.skipif(HAS_CUDA and ck._capability() != (9, 0), reason="sm90 only")
@pytest.mark.parametrize("O", [72, 128])   # 72: byte-loaded residual, 16-byte copies out; 128: both by TMA
@pytest.mark.parametrize("scale", [0.5, 1.5, 1e30])
def test_conv2d_sm90_ties_and_extremes(scale, O):
    """Float requant where rounding ties are common (v = odd / 2 with scale 0.5, or odd * 1.5; the
    residual adds halves too) and, with scale 1e30, |v| far beyond int8 and int32: the clamp-free
    packing must round half to even and saturate exactly like the reference."""
    g = torch.Generator().manual_seed(int(scale * 7 + O) & 0xFFFF)
    N, C, H = 3, 64, 9
    x = rand_i8((N, C, H, H), g, -3, 3).to(DEV).contiguous(memory_format=torch.channels_last)
    w = rand_i8((O, 1, 1, C), g, -3, 3).to(DEV)
    bias = torch.randint(-200, 200, (O,), generator=g, dtype=torch.int32).to(DEV)
    scale_t = torch.full((O,), scale, dtype=torch.float32, device=DEV)
    res = rand_i8((N, O, H, H), g).to(DEV).contiguous(memory_format=torch.channels_last)
    failures = []
    for residual, res_scale in ((None, 0.0), (res, 0.5)):
        for lo, hi in ((-128.0, 127.0), (0.0, 127.0), (0.0, 6.0)):
            args = (x, w, bias, scale_t, None, None, residual, None, res_scale, lo, hi, torch.int8,
                    (1, 1), (0, 0, 0, 0), (1, 1), 1)
            expect = ref.conv2d(*args)
            got = ck.conv2d_impl(*args, algo="sm90", out=poisoned(expect.shape, torch.int8, channels_last=True))
            if not torch.equal(got, expect):
                failures.append(f"res={residual is not None} [{lo}, {hi}]: {int((got != expect).sum())} differ")
    assert not failures, failures


@needs_cuda
@pytest.mark.skipif(HAS_CUDA and ck._capability() != (9, 0), reason="sm90 only")
@pytest.mark.parametrize("case", [c for c in SM90_CONV_CASES if c[5] * c[6] > 1],
                         ids=lambda c: f"{c[0]}x{c[1]}x{c[2]}x{c[3]}-o{c[4]}k{c[5]}s{c[7][0]}")
def test_conv2d_sm90_split_k(case):
    """Split-K over (filter tap, channel block) k-blocks, 2 / 3 / 5 splits (an uneven last split),
    bit-exact, and the workspace left zeroed for the next call."""
    g = torch.Generator().manual_seed(hash(("splitk", case)) & 0xFFFF_FFFF)
    cfg = 0 if case[1] % 128 == 0 else (1 if case[1] % 64 == 0 else 6)
    failures = [f for sp in (2, 3, 5) for v in (EPI_VARIANTS[3], EPI_VARIANTS[7])
                if (f := conv_mismatch(case, v, g, "sm90", cfg, sp))]
    assert not failures, failures
    ws, cnt = ck._workspace(torch.device(DEV), 1, 1)
    assert int(ws.abs().sum()) == 0 and int(cnt.abs().sum()) == 0


def test_sm90_conv_splits_opt_in(monkeypatch):
    monkeypatch.delenv("INT8COMPILE_SM90_CONV_SPLITS", raising=False)
    assert ck.sm90_conv_splits() == 1
    monkeypatch.setenv("INT8COMPILE_SM90_CONV_SPLITS", "3")
    assert ck.sm90_conv_splits() == 3


def test_conv_query_reads_shapes_and_alignment():
    """The router's view of real tensors (its decisions are tested in test_cuda_plan.py)."""
    buf = torch.empty(64 * 8 * 8 + 32, dtype=torch.int8)
    x = torch.empty(1, 64, 8, 8, dtype=torch.int8).contiguous(memory_format=torch.channels_last)
    w = torch.empty(64, 3, 3, 64, dtype=torch.int8)
    q = ck._conv_query(x, w, [1, 1], [1, 1, 1, 1], [1, 1], 1)
    assert (q.N, q.C, q.H, q.W, q.O, q.KH, q.KW, q.Cg, q.out_hw) == (1, 64, 8, 8, 64, 3, 3, 64, (8, 8))
    assert q.x_align == 16 and ck.im2col_unfit(q) is None
    off = (-buf.data_ptr()) % 16 + 4                      # a view 4 bytes past a 16-byte boundary
    x4 = buf[off:off + 64 * 64].as_strided((1, 64, 8, 8), (4096, 1, 512, 64))
    assert ck._conv_query(x4, w, [1, 1], [1, 1, 1, 1], [1, 1], 1).x_align == 4


# ---------------------------------------------------------------- quantize / dequantize
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape,layout", [((3, 5, 7, 9), "nchw"), ((3, 5, 7, 9), "nhwc"), ((2, 64, 33, 17), "nchw"),
                                          ((2, 64, 33, 17), "nhwc"), ((1001,), "flat"), ((64, 128), "flat"),
                                          ((4, 3, 8, 8), "strided")])
def test_quantize_bitexact(dtype, shape, layout):
    g = torch.Generator().manual_seed(11)
    s = numerics.activation_scale(3.0)
    inv = numerics.inverse_scale(s)
    # values on half-steps of the scale (ties), far outside the range (saturation), and random
    x = torch.randn(shape, generator=g) * 2.0
    ties = (torch.randint(-300, 300, shape, generator=g) + 0.5) * s
    pick = torch.rand(shape, generator=g)
    x = torch.where(pick < 0.3, ties, x)
    x = torch.where(pick > 0.95, x * 100, x).to(dtype).to(DEV)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        x = x.transpose(2, 3)
    expect = ref.quantize(x, inv)
    got = ck.quantize(x, inv)
    torch.cuda.synchronize()
    assert torch.equal(got, expect)
    if x.dim() == 4:
        assert got.is_contiguous(memory_format=torch.channels_last)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape,layout", [((3, 5, 7, 9), "nhwc"), ((2, 16, 8, 8), "nchw"), ((1001,), "flat"),
                                          ((64, 128), "flat")])
def test_dequantize_bitexact(dtype, shape, layout):
    g = torch.Generator().manual_seed(12)
    q = rand_i8(shape, g).to(DEV)
    if layout == "nhwc":
        q = q.contiguous(memory_format=torch.channels_last)
    s = numerics.activation_scale(5.7)
    expect = ref.dequantize(q, s, dtype)
    got = ck.dequantize(q, s, dtype)
    torch.cuda.synchronize()
    assert torch.equal(got, expect)


# ---------------------------------------------------------------- registry
@needs_cuda
def test_registry_selects_cuda():
    from int8compile.kernels import registry
    call = OpCall("linear", "cuda", {"x": (8, 64), "weight": (16, 64)}, {"x": torch.int8, "out": torch.int8},
                  {"mode": "fixed", "residual": False})
    kernel, rejected = registry.select(call)
    assert kernel.target == "cuda", rejected
    call = OpCall("conv2d", "cuda", {"x": (1, 16, 8, 8), "weight": (16, 3, 3, 1)},
                  {"x": torch.int8, "out": torch.float16}, {"groups": 16, "mode": "float"})
    kernel, rejected = registry.select(call, "cuda_dp4a")
    assert kernel.target == "cuda_dp4a", rejected


@needs_cuda
@pytest.mark.skipif(os.environ.get("I8C_SANITIZER") != "1", reason="only under compute-sanitizer (gpu_check.sh)")
def test_sanitizer_small():
    """A small pass over every kernel, run once under compute-sanitizer memcheck by gpu_check.sh."""
    g = torch.Generator().manual_seed(3)
    for algo in algos_linear():
        name, cfg, splits, max_ctas = parse_algo(algo)
        for (M, K, N) in [(5, 48, 37), (130, 131, 70)]:
            x = rand_i8((M, K), g).to(DEV)
            w = rand_i8((N, K), g, -127, 127).to(DEV)
            e = to_dev(epilogue_args(N, K, "fixed", True, torch.int8, "none", g, (M, N)))
            expect = ref.linear(x, w, e["bias"], e["scale"], e["mult"], e["shift"], e["residual"], e["res_mult"],
                                e["res_scale"], e["lo"], e["hi"], torch.int8)
            got = ck.linear_impl(x, w, e["bias"], e["scale"], e["mult"], e["shift"], e["residual"], e["res_mult"],
                                 e["res_scale"], e["lo"], e["hi"], torch.int8, algo=name, cfg=cfg, splits=splits,
                                 max_ctas=max_ctas)
            assert torch.equal(got, expect), algo
    for case in (CONV_CASES[0], CONV_CASES[3], CONV_CASES[7], CONV_CASES[9]) + tuple(SM90_CONV_CASES[-6:-1]):
        test_conv2d_bitexact("auto", case)
    if ck._capability() == (9, 0):
        test_conv2d_bitexact("fold", FOLDED_STEM)
        test_conv2d_bitexact("stem", STEM)
        test_conv2d_sm90_every_tile(SM90_CONV_CASES[0])
    test_quantize_bitexact(torch.float16, (3, 5, 7, 9), "nchw")
    test_dequantize_bitexact(torch.bfloat16, (1001,), "flat")
