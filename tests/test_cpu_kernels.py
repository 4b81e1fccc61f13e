"""The `cpu` target against the reference, bit for bit (docs/numerics.md: 0 LSB), on every instruction
path this machine has (avx512vnni, avx2, scalar are forced one after the other), with fresh random
inputs over a shape sweep. The first test builds the extension (~40 s on 2 cores, cached afterwards).
"""
from __future__ import annotations

import math

import pytest
import torch

import int8compile  # noqa: F401  (op schemas)
from int8compile import numerics
from int8compile.kernels import cpu, reference, registry
from int8compile.kernels.registry import OpCall

ISAS = ("avx512vnni", "avx2", "scalar")


@pytest.fixture(scope="module")
def ext():
    err = cpu.build_error()
    if err is not None:
        pytest.fail(f"cpu kernels did not build: {err}")
    return cpu._load()


@pytest.fixture(params=ISAS)
def isa(request, ext):
    if not ext.cpu_supports(request.param):
        pytest.skip(f"this CPU has no {request.param}")
    cpu.set_isa(request.param)
    yield request.param
    cpu.set_isa(None)


def _gen(seed):
    g = torch.Generator().manual_seed(seed)
    return g


def rint8(g, *shape, lo=-128, hi=127):
    return torch.randint(lo, hi + 1, shape, generator=g, dtype=torch.int8)


# Epilogue configurations: (requant mode or out dtype, residual, (lo, hi))
EPILOGUES = [
    ("float", False, (-128.0, 127.0)),
    ("float", True, (0.0, 127.0)),
    ("fixed", False, (-128.0, 127.0)),
    ("fixed", True, (-20.0, 100.0)),
    ("pot", False, (0.0, 127.0)),
    ("pot", True, (-128.0, 127.0)),
    (torch.float32, False, (-math.inf, math.inf)),
    (torch.bfloat16, False, (0.0, 6.0)),
    (torch.float16, False, (-math.inf, math.inf)),
    (torch.float32, False, (-3.5, 1e30)),
]


def epilogue_args(g, kind, residual_shape, n, k):
    """Arguments (bias .. out_dtype) whose outputs saturate at both ends now and then."""
    acc_std = math.sqrt(k) * 74.0 * 74.0
    bias = (torch.randn(n, generator=g) * acc_std).round().to(torch.int32)
    if isinstance(kind, torch.dtype):                       # float output
        # log-uniform scales from 1e-10 to 10: fp16 subnormals and overflow to inf both happen
        scale = (10.0 ** (torch.rand(n, generator=g, dtype=torch.float64) * 11 - 10)).to(torch.float32)
        return bias, scale, None, None, None, None, 0.0, kind
    mode, res = kind
    m = (90.0 / acc_std) * (0.5 + torch.rand(n, generator=g, dtype=torch.float64))
    m_res = 0.3 + float(torch.rand(1, generator=g)) if res else None
    rq = numerics.requant_params(numerics.RequantMode(mode), m, m_res)
    residual = rint8(g, *residual_shape) if res else None
    return bias, rq.scale, rq.mult, rq.shift, residual, rq.res_mult, rq.res_scale, torch.int8


def _run_both(op, args):
    ref = getattr(reference, op)(*args)
    out = getattr(cpu, op)(*args)
    return ref, out


LINEAR_SHAPES = [  # (leading dims of x, K, N)
    ((1,), 3, 5), ((1,), 17, 16), ((7,), 131, 65), ((13,), 64, 64), ((37,), 300, 129),
    ((2,), 1030, 70), ((100,), 2100, 300), ((2, 5), 33, 48), ((97,), 4, 257),
]


@pytest.mark.parametrize("lead,k,n", LINEAR_SHAPES)
def test_linear_bit_exact(isa, lead, k, n):
    g = _gen(hash((lead, k, n)) % 2**31)
    x = rint8(g, *lead, k)
    w = rint8(g, n, k, lo=-127)
    for kind in EPILOGUES:
        key = kind[0] if isinstance(kind[0], torch.dtype) else (kind[0], kind[1])
        bias, scale, mult, shift, res, res_mult, res_scale, out_dtype = epilogue_args(g, key, (*lead, n), n, k)
        lo, hi = kind[2]
        args = (x, w, bias if kind[1] or n % 2 else None, scale, mult, shift, res, res_mult, res_scale,
                lo, hi, out_dtype)
        ref, out = _run_both("linear", args)
        assert out.dtype == ref.dtype and out.shape == ref.shape
        assert torch.equal(out, ref), f"{isa} linear {lead}x{k}x{n} {kind}: " \
            f"{(out.to(torch.float64) - ref.to(torch.float64)).abs().max()} max diff"


def test_linear_saturates_both_ends(isa):
    g = _gen(7)
    x = rint8(g, 9, 40)
    w = rint8(g, 33, 40, lo=-127)
    bias, scale, mult, shift, res, res_mult, res_scale, _ = epilogue_args(g, ("fixed", False), (9, 33), 33, 40)
    scale = scale * 8
    rq = numerics.requant_params(numerics.RequantMode.FLOAT, scale.double())
    ref, out = _run_both("linear", (x, w, bias, rq.scale, None, None, None, None, 0.0, -128.0, 127.0,
                                    torch.int8))
    assert (ref == 127).any() and (ref == -128).any()
    assert torch.equal(out, ref)


@pytest.mark.parametrize("lead,k,n", LINEAR_SHAPES)
def test_linear_gelu_bit_exact(isa, lead, k, n):
    """GELU epilogue (docs/numerics.md 6.1): float value, GELU, quantize; saturates at both ends."""
    g = _gen(hash(("gelu", lead, k, n)) % 2**31)
    x = rint8(g, *lead, k)
    w = rint8(g, n, k, lo=-127)
    acc_std = math.sqrt(k) * 74.0 * 74.0
    bias = (torch.randn(n, generator=g) * acc_std).round().to(torch.int32)
    # float values with a spread of about +-8 per channel: the whole GELU curve, clamped erf included
    scale = ((3.0 / acc_std) * (0.5 + torch.rand(n, generator=g, dtype=torch.float64))).to(torch.float32)
    for inv in (1 / 0.03, 1 / 0.004, 40.0):
        ref, out = _run_both("linear_gelu", (x, w, bias if n % 2 else None, scale, inv))
        assert out.dtype == torch.int8 and out.shape == ref.shape == (*lead, n)
        assert torch.equal(out, ref), f"{isa} linear_gelu {lead}x{k}x{n} inv {inv}: " \
            f"{(out.int() - ref.int()).abs().max()} max diff"
    assert (ref == 127).any() or n * x[..., 0].numel() < 50


def test_gelu_definition_matches_erf_gelu():
    """The epilogue's rational erf: GELU within 2e-6 (relative beyond |v| = 1), 0 / v far out."""
    v = torch.cat([torch.linspace(-30, 30, 600_001), torch.tensor([0.0, -0.0, 1e-30, -1e30, 1e30])])
    exact = torch.nn.functional.gelu(v.double())
    err = (reference.gelu(v).double() - exact).abs() / v.double().abs().clamp_min(1.0)
    assert float(err.max()) < 2e-6
    assert float(reference.gelu(torch.tensor([-1e30]))) == 0.0 and float(reference.gelu(torch.tensor([-6.0]))) == 0.0
    assert abs(float(reference.gelu(torch.tensor([50.0]))) - 50.0) <= 50.0 * 2**-23


@pytest.mark.parametrize("shape,kernel,stride,padding,dilation,ceil", [
    ((2, 64, 15, 15), [3, 3], [2, 2], [1, 1], [1, 1], False),     # ResNet's stem pool
    ((1, 7, 10, 9), [2, 3], [2, 1], [1, 0], [1, 1], True),
    ((2, 33, 11, 12), [3, 3], [1, 2], [1, 1], [2, 1], False),
    ((1, 16, 9, 9), [3, 3], [3, 3], [0, 0], [1, 1], True),
])
def test_max_pool2d_int8_equals_float_pool(ext, shape, kernel, stride, padding, dilation, ceil):
    g = _gen(sum(shape))
    x = rint8(g, *shape)
    ref = torch.nn.functional.max_pool2d(x.float(), kernel, stride, padding, dilation, ceil).to(torch.int8)
    for xin in (x, x.contiguous(memory_format=torch.channels_last)):
        out = torch.ops.int8compile.max_pool2d(xin, kernel, stride, padding, dilation, ceil)
        assert out.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(out, ref)


CONV_SHAPES = [  # N, C, H, W, O, KH, KW, stride, padding (t, b, l, r), dilation, groups
    (2, 16, 5, 7, 24, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),      # 1x1 direct GEMM
    (2, 16, 9, 9, 20, 1, 1, (2, 2), (0, 0, 0, 0), (1, 1), 1),      # 1x1 stride 2
    (2, 3, 11, 13, 8, 3, 3, (2, 2), (0, 1, 1, 2), (1, 1), 1),      # channels 3, stride 2, asym pad
    (1, 8, 12, 12, 16, 3, 3, (1, 1), (2, 2, 2, 2), (2, 2), 1),     # dilation 2
    (2, 12, 8, 8, 18, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 3),      # grouped
    (1, 16, 6, 6, 32, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 4),      # grouped 1x1
    (1, 8, 5, 4, 600, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 2),      # grouped 1x1, 300 > 256 columns/group
    (2, 20, 3, 5, 520, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),     # 1x1, several column blocks
    (2, 40, 9, 9, 40, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 40),     # depthwise
    (1, 17, 13, 11, 17, 5, 5, (2, 2), (1, 2, 2, 1), (1, 1), 17),   # depthwise 5x5 s2 asym
    (1, 24, 10, 10, 24, 3, 3, (1, 1), (2, 2, 2, 2), (2, 2), 24),   # depthwise dilation 2
    (1, 4, 7, 7, 8, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 4),        # depthwise, channel multiplier 2
    (2, 64, 9, 20, 64, 3, 3, (2, 2), (0, 0, 0, 0), (1, 1), 64),    # depthwise, no padding, stride 2
    (1, 33, 3, 3, 33, 5, 5, (1, 1), (2, 2, 2, 2), (1, 1), 33),     # depthwise, kernel larger than input
    (1, 8, 6, 11, 8, 3, 3, (1, 2), (0, 2, 3, 0), (1, 1), 8),       # depthwise, one-sided padding
    (1, 3, 20, 20, 16, 7, 7, (2, 2), (3, 3, 3, 3), (1, 1), 1),     # ResNet stem
    (1, 130, 6, 6, 20, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),     # K = 1170 > one K block
    (1, 5, 3, 3, 6, 5, 5, (1, 1), (2, 2, 2, 2), (1, 1), 1),        # kernel larger than input
    (1, 7, 9, 6, 70, 2, 3, (3, 1), (0, 2, 1, 0), (2, 1), 1),       # odd everything
    # direct convolution (AVX512: channels per group a multiple of 4, no im2col buffer)
    (1, 132, 6, 7, 300, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),    # K = 1188, 2 column blocks, 44-wide tail
    (2, 8, 7, 9, 16, 3, 3, (2, 1), (0, 1, 2, 1), (1, 2), 2),       # grouped (Cg = 4), asym pad, dilation
    (3, 64, 5, 5, 64, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),      # rows cross images within a 6-row tile
    (1, 16, 5, 5, 8, 5, 5, (1, 1), (0, 0, 0, 0), (1, 1), 1),       # kernel = input, one pixel
    # C % 4 != 0, groups 1, dilation 1 along W: whole kernel rows as taps, padded to 4 bytes
    (2, 3, 5, 6, 8, 3, 3, (1, 1), (0, 0, 0, 0), (1, 1), 1),        # no padding: reads up to the last byte
    (1, 3, 9, 9, 8, 3, 3, (1, 1), (1, 1, 1, 1), (1, 2), 1),        # dilation 2 along W: im2col gather
    (2, 3, 4, 5, 20, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),       # 1x1, C = 3
    (1, 1, 6, 7, 4, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),        # C = 1 (not depthwise: O = 4)
    (1, 6, 7, 7, 70, 3, 3, (2, 2), (1, 0, 0, 1), (1, 1), 1),       # C = 6, kernel rows of 18 -> 20 bytes
]


@pytest.mark.parametrize("shape", CONV_SHAPES, ids=lambda s: "x".join(map(str, s[:7])) + f"g{s[-1]}")
def test_conv2d_bit_exact(isa, shape):
    n, c, h, w_, o, kh, kw, stride, padding, dilation, groups = shape
    g = _gen(hash(shape) % 2**31)
    x = rint8(g, n, c, h, w_).contiguous(memory_format=torch.channels_last)
    wt = rint8(g, o, kh, kw, c // groups, lo=-127)
    from int8compile.ops import conv2d_output_size
    oh, ow = conv2d_output_size((h, w_), (kh, kw), stride, padding, dilation)
    k = kh * kw * (c // groups)
    for kind in EPILOGUES:
        key = kind[0] if isinstance(kind[0], torch.dtype) else (kind[0], kind[1])
        bias, scale, mult, shift, res, res_mult, res_scale, out_dtype = epilogue_args(g, key, (n, oh, ow, o), o, k)
        if res is not None:
            res = res.permute(0, 3, 1, 2)                    # channels-last view of [N, O, OH, OW]
        lo, hi = kind[2]
        args = (x, wt, bias if kind[1] or o % 2 == 0 else None, scale, mult, shift, res, res_mult,
                res_scale, lo, hi, out_dtype, stride, padding, dilation, groups)
        ref, out = _run_both("conv2d", args)
        assert out.shape == ref.shape and out.dtype == ref.dtype
        assert out.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(out, ref), f"{isa} conv {shape} {kind}"


def test_conv2d_nchw_input_and_threads(isa):
    """A contiguous (NCHW) int8 input is accepted; results do not depend on the thread count."""
    g = _gen(11)
    x = rint8(g, 2, 8, 10, 10)
    wt = rint8(g, 12, 3, 3, 8, lo=-127)
    bias, scale, mult, shift, res, res_mult, res_scale, od = epilogue_args(g, ("fixed", False), None, 12, 72)
    args = (x, wt, bias, scale, mult, shift, None, None, 0.0, -128.0, 127.0, od, (1, 1), (1, 1, 1, 1),
            (1, 1), 1)
    ref = reference.conv2d(*args)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = cpu.conv2d(*args)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, ref) and torch.equal(cpu.conv2d(*args), ref)


# ---- quantize / dequantize ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "2d", "3d"])
def test_quantize_bit_exact(isa, dtype, layout):
    g = _gen(3)
    shape = {"nchw": (2, 3, 17, 19), "channels_last": (2, 5, 6, 7), "2d": (33, 70), "3d": (3, 9, 41)}[layout]
    x = (torch.randn(shape, generator=g) * 3).to(dtype)
    x.view(-1)[:4] = torch.tensor([1e30, -1e30, math.inf, -math.inf]).to(dtype) if dtype != torch.float16 \
        else torch.tensor([6e4, -6e4, math.inf, -math.inf]).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    inv = numerics.inverse_scale(numerics.activation_scale(3.9))
    ref, out = reference.quantize(x, inv), cpu.quantize(x, inv)
    assert out.dtype == torch.int8 and out.shape == ref.shape
    if x.dim() == 4:
        assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, ref)


def test_quantize_ties_round_to_even(isa):
    # x * inv lands exactly on k + 0.5 for every k (power-of-two scale): ties go to the even code
    k = torch.arange(-140, 140, dtype=torch.float32)
    x = ((k + 0.5) / 4).reshape(1, 4, 7, 10)
    out = cpu.quantize(x, 4.0)
    expected = torch.round(k + 0.5).clamp(-128, 127).to(torch.int8).reshape(1, 4, 7, 10)
    assert torch.equal(out, expected)
    assert torch.equal(out, reference.quantize(x, 4.0))
    assert out[0, 0, 0, 0] == -128 and out.flatten()[-1] == 127


@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_dequantize_bit_exact(isa, out_dtype):
    g = _gen(5)
    for q in (rint8(g, 3, 50), rint8(g, 2, 9, 5, 4).contiguous(memory_format=torch.channels_last),
              rint8(g, 1000)):
        for scale in (0.0123, 1.0 / 3.0, 1e-9, 700.0):
            ref, out = reference.dequantize(q, scale, out_dtype), cpu.dequantize(q, scale, out_dtype)
            assert out.dtype == out_dtype and out.stride() == ref.stride()
            assert torch.equal(out, ref)


# ---- through the op schemas and the registry ------------------------------------------------------------
def test_ops_dispatch_to_cpu(ext):
    g = _gen(9)
    x = torch.randn(4, 32, generator=g)
    q = torch.ops.int8compile.quantize(x, 10.0, "cpu")
    assert torch.equal(q, torch.ops.int8compile.quantize(x, 10.0, "reference"))
    w = rint8(g, 16, 32, lo=-127)
    scale = torch.full((16,), 0.01)
    args = (q, w, None, scale, None, None, None, None, 0.0, -128.0, 127.0, torch.int8)
    assert torch.equal(torch.ops.int8compile.linear(*args, "cpu"), torch.ops.int8compile.linear(*args, "reference"))
    args = (q, w, None, scale, 7.5)
    assert torch.equal(torch.ops.int8compile.linear_gelu(*args, "cpu"),
                       torch.ops.int8compile.linear_gelu(*args, "reference"))


def test_weight_pack_cache_tracks_in_place_updates(ext):
    g = _gen(13)
    x = rint8(g, 5, 20)
    w = rint8(g, 7, 20, lo=-127)
    scale = torch.full((7,), 0.003)
    args = lambda: (x, w, None, scale, None, None, None, None, 0.0, -128.0, 127.0, torch.int8)
    assert torch.equal(cpu.linear(*args()), reference.linear(*args()))
    w.neg_()                                            # same tensor, new contents: must repack
    assert torch.equal(cpu.linear(*args()), reference.linear(*args()))


def test_declines_with_reason(ext):
    call = OpCall("linear", "cuda", {"x": (4, 8), "weight": (8, 8)}, {"x": torch.int8, "out": torch.int8})
    assert "CPU tensors only" in cpu.check_linear(call)
    big = OpCall("linear", "cpu", {"x": (1, 132104), "weight": (8, 132104)}, {"x": torch.int8, "out": torch.int8})
    reason = cpu.check_linear(big)
    assert reason is not None and "132104" in reason
    kernel, rejected = registry.select(big, "cpu")
    assert kernel.target == "reference" and "132104" in rejected["cpu"]
    bad = OpCall("quantize", "cpu", {"x": (3,)}, {"x": torch.int32})
    assert "dtype" in cpu.check_quantize(bad)
    ok = OpCall("conv2d", "cpu", {"x": (1, 8, 5, 5), "weight": (4, 3, 3, 8)}, {"x": torch.int8, "out": torch.int8},
                {"stride": (1, 1), "padding": (1, 1, 1, 1), "dilation": (1, 1), "groups": 1, "mode": "fixed"})
    assert cpu.check_conv2d(ok) is None
    assert registry.select(ok, "auto")[0].target == "cpu"


def test_build_failure_declines_with_the_error(ext, monkeypatch):
    monkeypatch.setattr(cpu, "_ext", None)
    monkeypatch.setattr(cpu, "_build_error", "building 'int8compile_cpu' failed: simulated")
    call = OpCall("linear", "cpu", {"x": (4, 8), "weight": (8, 8)}, {"x": torch.int8, "out": torch.int8})
    with pytest.warns(RuntimeWarning):
        cpu.warn_once.cache_clear()
        reason = cpu.check_linear(call)
    assert "simulated" in reason
    kernel, rejected = registry.select(call, "cpu")
    assert kernel.target == "reference" and "simulated" in rejected["cpu"]
