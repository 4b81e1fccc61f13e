"""Calibrators: from the values a tensor took during calibration to its range amax (scale = amax/127).

Every observer keeps a histogram of |x| (the TensorRT approach), so range choosers that need the
distribution (percentile, mse; entropy next) read the same statistics. Add a calibrator by writing
an `amax` rule and listing it in CALIBRATORS.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

BINS = 2048


class RangeError(ValueError):
    """Calibration data that cannot define a range (NaN/Inf, nothing observed)."""


class Histogram:
    """Running histogram of |x| over [0, hi] that widens (by re-binning) when larger values arrive."""

    def __init__(self, bins: int = BINS):
        self.bins = bins
        self.counts = torch.zeros(bins, dtype=torch.float64)
        self.hi = 0.0
        self.amax = 0.0
        self.batches = 0

    def add(self, x: torch.Tensor, key: str) -> None:
        a = x.detach().abs().float()
        if not bool(torch.isfinite(a).all()):
            raise RangeError(f"calibration data produced NaN/Inf at {key!r}; check the inputs "
                             f"(torch.isfinite) and the model before calibrating")
        amax = float(a.max()) if a.numel() else 0.0
        if amax > self.hi:
            self._widen(amax)
        if self.hi > 0 and a.numel():
            self.counts += torch.histc(a.flatten().cpu(), self.bins, 0.0, self.hi).double()
        self.amax = max(self.amax, amax)
        self.batches += 1

    def _widen(self, amax: float) -> None:
        new_hi = amax if self.hi == 0 else max(amax, 2 * self.hi)
        if self.counts.sum() > 0:       # move each old bin's mass to the new bin holding its centre
            centres = (torch.arange(self.bins, dtype=torch.float64) + 0.5) * (self.hi / self.bins)
            idx = (centres / new_hi * self.bins).long().clamp_(max=self.bins - 1)
            self.counts = torch.zeros_like(self.counts).index_add_(0, idx, self.counts)
        self.hi = new_hi

    def edges(self) -> torch.Tensor:
        return torch.linspace(0, self.hi, self.bins + 1, dtype=torch.float64)


def minmax_amax(h: Histogram, percentile: float) -> float:
    return h.amax


def percentile_amax(h: Histogram, percentile: float) -> float:
    total = h.counts.sum()
    if total == 0:
        return h.amax
    cdf = torch.cumsum(h.counts, 0) / total
    idx = int(torch.searchsorted(cdf, percentile / 100.0))
    return min(float(h.edges()[min(idx + 1, h.bins)]), h.amax)


MSE_CANDIDATES = 256   # clip points tried by mse_amax, evenly spaced over the histogram's bins


def mse_amax(h: Histogram, percentile: float) -> float:
    """The clip point that minimises the expected squared error of symmetric int8 quantization over
    the observed |x| histogram: values inside [0, a] cost the uniform rounding noise (a/127)^2 / 12,
    values above a cost their clipping error (v - a)^2 (bin centres stand for their bins)."""
    total = h.counts.sum()
    if total == 0 or h.hi == 0:
        return h.amax
    width = h.hi / h.bins
    v = (torch.arange(h.bins, dtype=torch.float64) + 0.5) * width
    c = h.counts
    n_in = torch.cumsum(c, 0)                       # counts of bins [0, i]
    s1, s2 = torch.cumsum(c * v, 0), torch.cumsum(c * v * v, 0)
    idx = torch.unique(torch.linspace(h.bins // MSE_CANDIDATES, h.bins, MSE_CANDIDATES).long().clamp(1, h.bins)) - 1
    a = (idx + 1).double() * width                  # clip at the upper edge of bin idx
    n_out, s1_out, s2_out = total - n_in[idx], s1[-1] - s1[idx], s2[-1] - s2[idx]
    clipped = s2_out - 2 * a * s1_out + a * a * n_out
    rounding = n_in[idx] * (a / 127.0) ** 2 / 12.0
    best = float(a[torch.argmin(clipped + rounding)])
    return min(best, h.amax)


CALIBRATORS: dict[str, Callable[[Histogram, float], float]] = {
    "minmax": minmax_amax,
    "percentile": percentile_amax,
    "mse": mse_amax,
}


def choose_amax(h: Histogram, calibrator: str, percentile: float, key: str) -> float:
    if h.batches == 0:
        raise RangeError(f"no calibration data reached {key!r}: run at least one batch inside "
                         f"`with int8compile.calibrate(model):`")
    amax = CALIBRATORS[calibrator](h, percentile)
    if not math.isfinite(amax):
        raise RangeError(f"range of {key!r} is not finite")
    return amax
