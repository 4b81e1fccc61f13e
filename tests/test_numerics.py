"""The reference kernels against an independent numpy int64 implementation of docs/numerics.md."""
import math

import numpy as np
import pytest
import torch

from int8compile import numerics, ops
from int8compile.numerics import RequantMode


def np_rne(v):
    return np.rint(v)            # numpy rounds half to even


def np_epilogue(acc, bias, mode, rq, residual, lo, hi):
    """docs/numerics.md section 4, written from the text with numpy int64 / float32."""
    acc = acc.astype(np.int64) + bias.astype(np.int64)
    if mode == RequantMode.FLOAT:
        v = acc.astype(np.float32) * rq.scale.numpy().astype(np.float32)
        if residual is not None:
            v = (v + residual.astype(np.float32) * np.float32(rq.res_scale)).astype(np.float32)
        return np_rne(np.clip(v, lo, hi)).astype(np.int8)
    v = acc * rq.mult.numpy().astype(np.int64)
    if residual is not None:
        v = v + residual.astype(np.int64) * rq.res_mult.numpy().astype(np.int64)
    shift = rq.shift.numpy().astype(np.int64)
    half = np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 0)
    v = np.right_shift(v + half, shift)
    return np.clip(v, lo, hi).astype(np.int8)


def random_requant(mode, n, residual, gen):
    m = torch.rand(n, generator=gen, dtype=torch.float64) * 0.02 + 1e-4
    m_res = 0.7 if residual else None
    return numerics.requant_params(mode, m, m_res)


@pytest.mark.parametrize("mode", list(RequantMode))
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("m,n,k", [(1, 5, 3), (7, 33, 17), (16, 64, 131)])
def test_linear_reference_matches_numpy(mode, residual, m, n, k):
    gen = torch.Generator().manual_seed(1000 * m + n + k + residual)
    x = torch.randint(-128, 128, (m, k), dtype=torch.int8, generator=gen)
    w = torch.randint(-127, 128, (n, k), dtype=torch.int8, generator=gen)
    bias = torch.randint(-5000, 5000, (n,), dtype=torch.int32, generator=gen)
    res = torch.randint(-128, 128, (m, n), dtype=torch.int8, generator=gen) if residual else None
    rq = random_requant(mode, n, residual, gen)
    lo, hi = -128.0, 100.0
    got = ops.linear(x, w, bias, rq.scale, rq.mult, rq.shift, res, rq.res_mult, rq.res_scale,
                     lo, hi, torch.int8)
    acc = x.numpy().astype(np.int64) @ w.numpy().astype(np.int64).T
    want = np_epilogue(acc, bias.numpy(), mode, rq, None if res is None else res.numpy(), lo, hi)
    np.testing.assert_array_equal(got.numpy(), want)


def test_rounding_ties_and_saturation():
    """acc * m lands exactly on .5 and far past both ends of int8."""
    acc_values = [1, 3, 5, -1, -3, -5, 1000, -1000, 0, 2**30, -(2**30)]
    from int8compile.kernels.reference import epilogue
    acc = torch.tensor(acc_values, dtype=torch.int64).reshape(-1, 1)
    bias = torch.zeros(1, dtype=torch.int32)
    # float mode, m = 0.5: ties to even -> 0, 2, 2, -0, -2, -2
    rq = numerics.requant_params(RequantMode.FLOAT, torch.tensor([0.5], dtype=torch.float64))
    y = epilogue(acc, bias, rq.scale, None, None, None, None, 0.0, -128, 127, torch.int8).flatten()
    assert y.tolist() == [0, 2, 2, 0, -2, -2, 127, -128, 0, 127, -128]
    # fixed mode, m = 0.5: round half up -> 1, 2, 3, 0, -1, -2
    rq = numerics.requant_params(RequantMode.FIXED, torch.tensor([0.5], dtype=torch.float64))
    assert rq.mult.item() == 2**30 and rq.shift.item() == 31
    y = epilogue(acc, bias, rq.scale, rq.mult, rq.shift, None, None, 0.0, -128, 127, torch.int8).flatten()
    assert y.tolist() == [1, 2, 3, 0, -1, -2, 127, -128, 0, 127, -128]
    want = np_epilogue(acc.numpy(), bias.numpy(), RequantMode.FIXED, rq, None, -128, 127).flatten()
    assert want.tolist() == y.tolist()


def test_quantize_rounds_half_to_even_and_saturates():
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 200.0, -200.0, 127.49, -128.6])
    q = ops.quantize(x, 1.0)
    assert q.tolist() == [0, 2, 2, 0, -2, 127, -128, 127, -128]
    want = np.clip(np_rne(x.numpy().astype(np.float32) * np.float32(1.0)), -128, 127).astype(np.int8)
    np.testing.assert_array_equal(q.numpy(), want)


def test_quantize_uses_float32_inverse_scale():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1000, generator=gen) * 3
    inv = numerics.inverse_scale(0.0237)
    want = np.clip(np_rne(x.numpy() * np.float32(inv)), -128, 127).astype(np.int8)
    np.testing.assert_array_equal(ops.quantize(x, inv).numpy(), want)


@pytest.mark.parametrize("stride,padding,dilation,groups,cin,cout", [
    ((1, 1), (1, 1, 1, 1), (1, 1), 1, 3, 8),
    ((2, 2), (0, 1, 2, 0), (1, 1), 1, 5, 7),
    ((1, 2), (2, 2, 2, 2), (2, 2), 1, 4, 6),
    ((1, 1), (1, 1, 1, 1), (1, 1), 8, 8, 8),       # depthwise
    ((2, 2), (1, 1, 1, 1), (1, 1), 2, 6, 4),       # grouped
])
@pytest.mark.parametrize("mode", list(RequantMode))
def test_conv_reference_matches_numpy(stride, padding, dilation, groups, cin, cout, mode):
    gen = torch.Generator().manual_seed(cin * 100 + cout + groups)
    x = torch.randint(-128, 128, (2, cin, 7, 9), dtype=torch.int8, generator=gen)
    x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randint(-127, 128, (cout, 3, 3, cin // groups), dtype=torch.int8, generator=gen)  # OHWI
    bias = torch.randint(-3000, 3000, (cout,), dtype=torch.int32, generator=gen)
    rq = random_requant(mode, cout, False, gen)
    got = ops.conv2d(x, w, bias, rq.scale, rq.mult, rq.shift, None, None, 0.0, 0.0, 127.0,
                     torch.int8, list(stride), list(padding), list(dilation), groups)
    assert got.is_contiguous(memory_format=torch.channels_last)
    acc = np_conv(x.numpy(), w.numpy(), stride, padding, dilation, groups)
    want = np_epilogue(acc, bias.numpy(), mode, rq, None, 0.0, 127.0)      # NHWC
    np.testing.assert_array_equal(got.permute(0, 2, 3, 1).numpy(), want)


def np_conv(x, w, stride, padding, dilation, groups):
    """Direct loops over NCHW input and OHWI weights -> NHWC int64 accumulators."""
    n, c, h, wd = x.shape
    o, kh, kw, cg = w.shape
    t, b, l, r = padding
    xp = np.zeros((n, c, h + t + b, wd + l + r), dtype=np.int64)
    xp[:, :, t:t + h, l:l + wd] = x
    oh = (h + t + b - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + l + r - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, oh, ow, o), dtype=np.int64)
    og = o // groups
    for oc in range(o):
        g = oc // og
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * cg:(g + 1) * cg,
                           i * dilation[0]: i * dilation[0] + stride[0] * (oh - 1) + 1: stride[0],
                           j * dilation[1]: j * dilation[1] + stride[1] * (ow - 1) + 1: stride[1]]
                out[..., oc] += np.einsum("nchw,c->nhw", patch, w[oc, i, j].astype(np.int64))
    return out


def test_fixed_point_parameters():
    rq = numerics.requant_params(RequantMode.FIXED, torch.tensor([0.75, 3e-5, 1.5], dtype=torch.float64))
    for m, mult, shift in zip([0.75, 3e-5, 1.5], rq.mult.tolist(), rq.shift.tolist()):
        assert 2**30 <= mult < 2**31
        assert math.isclose(mult / 2**shift, m, rel_tol=2**-30)


def test_power_of_two_parameters():
    rq = numerics.requant_params(RequantMode.POT, torch.tensor([0.3, 0.01], dtype=torch.float64), 0.9)
    # per channel: log2(.3) ~ -1.74 -> 2^-2, log2(.01) ~ -6.6 -> 2^-7, residual 0.9 -> 2^0
    assert rq.shift.tolist() == [2, 7]
    assert rq.mult.tolist() == [1, 1]
    assert rq.res_mult.tolist() == [2**2, 2**7]


def test_dequantize_and_float_output():
    q = torch.tensor([-128, -1, 0, 5, 127], dtype=torch.int8)
    y = ops.dequantize(q, 0.1, torch.float32)
    np.testing.assert_array_equal(y.numpy(), q.numpy().astype(np.float32) * np.float32(0.1))
    x = torch.tensor([[3, -4]], dtype=torch.int8)
    w = torch.tensor([[1, 1], [2, 0]], dtype=torch.int8)
    scale = torch.tensor([0.5, 0.25])
    y = ops.linear(x, w, None, scale, None, None, None, None, 0.0, 0.0, math.inf, torch.float32)
    assert y.tolist() == [[0.0, 1.5]]                             # relu(-0.5) = 0, 6 * .25


def test_reference_rejects_wrong_dtypes():
    with pytest.raises(TypeError, match="int8"):
        ops.linear(torch.zeros(2, 3), torch.zeros(4, 3, dtype=torch.int8), None, torch.ones(4),
                   None, None, None, None, 0.0, -128.0, 127.0, torch.int8)
    with pytest.raises(TypeError, match="float"):
        ops.quantize(torch.zeros(3, dtype=torch.int32), 1.0)
