"""Quantization parameters, computed once on the host; docs/numerics.md is the normative text.

Everything here runs at convert time (float64 on the host), never in a kernel. Kernels only see the
results: int8 weights, int32 bias, and per-channel requant parameters in one of three modes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import torch

QMIN, QMAX = -128, 127          # int8 activations
WMAX = 127                      # weights use the restricted range [-127, 127]
MAX_SHIFT = 62                  # int64 product acc * mult must not overflow (docs/numerics.md)
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


class RequantMode(str, Enum):
    FLOAT = "float"             # y = rne(fp32(acc) * m_fp32[c])
    FIXED = "fixed"             # y = (acc * mult[c] + round) >> shift[c], mult in [2^30, 2^31)
    POT = "pot"                 # as FIXED with mult a power of two: shift-only hardware


def activation_scale(amax: float) -> float:
    """Symmetric per-tensor scale from an absolute maximum (a zero range gets scale 1)."""
    if not math.isfinite(amax):
        raise ValueError(f"activation range {amax} is not finite")
    return float(torch.tensor(amax / QMAX if amax > 0 else 1.0, dtype=torch.float32))


def inverse_scale(scale: float) -> float:
    """fp32(1 / s): the multiplier every quantize kernel uses (x * inv, never x / s)."""
    return float(torch.tensor(1.0 / scale, dtype=torch.float32))


def quantize_weight(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel symmetric int8 weights: (w_q int8, s_w float64[out])."""
    w64 = w.detach().to("cpu", torch.float64).reshape(w.shape[0], -1)      # host side, any device in
    amax = w64.abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / WMAX, torch.ones_like(amax))
    q = torch.round(w64 / scale[:, None]).clamp(-WMAX, WMAX).to(torch.int8)
    return q.reshape(w.shape), scale


def quantize_bias(b: torch.Tensor | None, s_x: float, s_w: torch.Tensor) -> torch.Tensor:
    """int32 bias with scale s_x * s_w[c], round half to even, saturated to int32."""
    if b is None:
        return torch.zeros(s_w.shape[0], dtype=torch.int32)
    q = torch.round(b.detach().to("cpu", torch.float64) / (s_x * s_w.cpu()))
    return q.clamp(INT32_MIN, INT32_MAX).to(torch.int32)


@dataclass(frozen=True)
class Requant:
    """Per-channel requantization parameters for one layer, in the layout the kernels take."""
    scale: torch.Tensor              # float32 [N]: m[c] (float mode, and float output)
    mult: torch.Tensor | None        # int32 [N]   (fixed / pot)
    shift: torch.Tensor | None       # int32 [N]   (fixed / pot), in [0, MAX_SHIFT]
    res_scale: float                 # fp32 m_r (float mode with residual)
    res_mult: torch.Tensor | None    # int32 [N]: m_r at the channel's shift (fixed / pot with residual)


def _fixed_point(m: float, m_res: float | None) -> tuple[int, int, int | None]:
    """(mult, shift, res_mult) with the larger multiplier in [2^30, 2^31) (single rounding)."""
    top = max(m, m_res or 0.0)
    _, e = math.frexp(top)                      # top = f * 2^e, f in [0.5, 1)
    shift = min(31 - e, MAX_SHIFT)
    if shift < 0:
        raise ValueError(f"requant multiplier {top} >= 2^31 cannot be represented")

    def at_shift(x: float) -> int:
        return min(int(round(x * 2.0**shift)), INT32_MAX)
    return at_shift(m), shift, (at_shift(m_res) if m_res is not None else None)


def _power_of_two(m: float, m_res: float | None) -> tuple[int, int, int | None]:
    """(mult, shift, res_mult) with every multiplier rounded to the nearest power of two in log2."""
    exps = [round(math.log2(x)) if x > 0 else -MAX_SHIFT for x in (m, m_res) if x is not None]
    shift = min(max(0, -min(exps)), MAX_SHIFT)
    mults = [1 << max(0, min(e + shift, 30)) if e + shift >= 0 else 0 for e in exps]
    return mults[0], shift, (mults[1] if m_res is not None else None)


def requant_params(mode: RequantMode, m: torch.Tensor, m_res: float | None = None) -> Requant:
    """Requant parameters for real multipliers m[c] = s_x * s_w[c] / s_y (float64 [N])."""
    m = m.detach().to(torch.float64).cpu()
    scale = m.to(torch.float32)
    res_scale = float(torch.tensor(m_res or 0.0, dtype=torch.float32))
    if mode == RequantMode.FLOAT:
        return Requant(scale, None, None, res_scale, None)
    split = _fixed_point if mode == RequantMode.FIXED else _power_of_two
    triples = [split(float(x), m_res) for x in m]
    mult = torch.tensor([t[0] for t in triples], dtype=torch.int32)
    shift = torch.tensor([t[1] for t in triples], dtype=torch.int32)
    res_mult = torch.tensor([t[2] for t in triples], dtype=torch.int32) if m_res is not None else None
    return Requant(scale, mult, shift, res_scale, res_mult)


def clamp_bounds(lo: float, hi: float, out_scale: float | None) -> tuple[float, float]:
    """Activation clamp in the output's domain: int8 codes (out_scale given) or float (None)."""
    if out_scale is None:
        return lo, hi
    q = lambda v: min(max(round(v / out_scale), QMIN), QMAX) if math.isfinite(v) else (QMIN if v < 0 else QMAX)
    return float(q(lo)), float(q(hi))


def sqnr_db(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB (inf when identical)."""
    ref = reference.detach().double()
    noise = (ref - approx.detach().double()).pow(2).sum()
    if noise == 0:
        return float("inf")
    return float(10 * torch.log10(ref.pow(2).sum().clamp_min(1e-30) / noise))
