"""The clamp-free int8 rounding of the sm90 epilogue (fast_pair in csrc/cuda/common.cuh), emulated
instruction by instruction on the CPU against the spec's rne(clamp(v, lo, hi)) (docs/numerics.md).
The GPU tests (test_cuda_kernels.py, on the device) check the kernels themselves; this pins the
arithmetic argument on every machine, CI included:
  fma(v, 2^-149, c * 2^-149) rounded to float32 has the int32 bits rne(v) + c (c even) while
  |v + c| < 2^24, and larger positive / negative ints beyond; cvt.pack.sat then saturates them."""
import numpy as np
import pytest

SUB = 2.0 ** -149   # the smallest float32 subnormal


def fma_to_f32(v: np.ndarray, c: int) -> np.ndarray:
    """fma.rn.f32(v, 2^-149, c * 2^-149): the exact sum (float64 holds it for the v drawn below) rounded
    once to float32 (numpy rounds to nearest even and keeps subnormals)."""
    return (v.astype(np.float64) * SUB + c * SUB).astype(np.float32)


def pack_sat(bits: np.ndarray, signed: bool) -> np.ndarray:
    """cvt.pack.sat.{s8,u8}.s32: the int32 saturated to the byte's range, as its two's-complement byte."""
    lo, hi = (-128, 127) if signed else (0, 255)
    return (np.clip(bits.astype(np.int64), lo, hi) & 0xFF).astype(np.uint8)


def packed_epilogue(v: np.ndarray, act: str) -> np.ndarray:
    """fast_pair's float path for one element: ACT_NONE and ACT_RELU."""
    if act == "none":
        byte = pack_sat(fma_to_f32(v, 128).view(np.int32), signed=False) ^ 0x80
    else:
        byte = pack_sat((v.astype(np.float32) * np.float32(SUB)).view(np.int32), signed=True) & 0x7F
    return byte.astype(np.uint8).view(np.int8)


def spec(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.rint(np.clip(v.astype(np.float64), lo, hi)).astype(np.int8)   # np.rint: half to even


def values(rng: np.random.Generator) -> np.ndarray:
    k = np.arange(-400, 401)
    ties = np.concatenate([k + 0.5, k + 0.25, k.astype(np.float64)])       # halves: the rounding ties
    mags = 2.0 ** rng.uniform(-20, 29, 200_000)                            # tiny to far past int8
    wide = mags * rng.choice([-1.0, 1.0], mags.size)
    near = rng.uniform(-300, 300, 200_000)
    special = np.array([0.0, -0.0, 2.0 ** 23, -2.0 ** 23, 2.0 ** 24, -2.0 ** 24, 1e30, -1e30, 3e38, -3e38,
                        -128.5, -128.49, 127.5, 127.49, -0.5, 0.5, -0.49, 1e-30, -1e-30])
    return np.concatenate([ties, wide, near, special]).astype(np.float32)


@pytest.mark.parametrize("act,lo,hi", [("none", -128.0, 127.0), ("relu", 0.0, 127.0)])
def test_clamp_free_rounding_matches_the_spec(act, lo, hi):
    v = values(np.random.default_rng(7))
    got, want = packed_epilogue(v, act), spec(v, lo, hi)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, [(float(v[i]), int(got[i]), int(want[i])) for i in bad[:10]]


def test_the_emulation_can_fail():
    """The same check with an odd offset (c = 127) must disagree on ties: rne(v + c) = rne(v) + c needs
    an even c, which is why fast_pair only takes lo = -128 (c = 128) and lo = 0."""
    v = np.array([0.5, 1.5, 2.5, -0.5], dtype=np.float32)
    odd = (pack_sat(fma_to_f32(v, 127).view(np.int32), signed=False).astype(np.int64) - 127).astype(np.int8)
    assert not np.array_equal(odd, spec(v, -128.0, 127.0))
