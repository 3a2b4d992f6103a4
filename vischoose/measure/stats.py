"""Statistics of repeated timings: median, quantiles, IQR, a distribution-free CI of the median, stop rules.

Pure Python, no torch: the profiler's child process feeds it raw timings, tests feed it synthetic ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from statistics import NormalDist
from typing import Sequence

CONFIDENCE = 0.95  # of the median's confidence interval
REL_PRECISION = 0.02  # stop once the median is known within +-2%
EXACT_MAX_N = 200  # above this, the binomial tail is approximated by the normal (and 2^n overflows floats)


def quantile(samples: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation between order statistics (numpy's default)."""
    if not samples:
        raise ValueError("quantile of no samples")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} is outside 0..1")
    ordered = sorted(samples)
    pos = q * (len(ordered) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median(samples: Sequence[float]) -> float:
    """The median."""
    return quantile(samples, 0.5)


def iqr(samples: Sequence[float]) -> float:
    """Interquartile range: 75th minus 25th percentile."""
    return quantile(samples, 0.75) - quantile(samples, 0.25)


@cache
def median_ci_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, int] | None:
    """1-based ranks (j, n+1-j) of the order statistics bounding an exact CI of the median.

    The interval [x(j), x(n+1-j)] covers the true median with probability 1 - 2 P(B <= j-1),
    B ~ Binomial(n, 1/2), whatever the distribution. Returns the narrowest such interval with at
    least the requested coverage, or None when n is too small for any (n < 6 at 95%).
    """
    alpha = 1.0 - confidence
    if n > EXACT_MAX_N:
        z = NormalDist().inv_cdf(1.0 - alpha / 2.0)
        j = max(1, math.floor(n / 2.0 - z * math.sqrt(n) / 2.0))
        return j, n + 1 - j
    best = None
    tail = 0.0  # P(B <= j-1)
    for j in range(1, n // 2 + 1):
        tail += math.comb(n, j - 1) / 2.0**n
        if 2.0 * tail > alpha:
            break
        best = (j, n + 1 - j)
    return best


def median_ci(samples: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Distribution-free confidence interval of the median, or None with too few samples."""
    ranks = median_ci_ranks(len(samples), confidence)
    if ranks is None:
        return None
    ordered = sorted(samples)
    return ordered[ranks[0] - 1], ordered[ranks[1] - 1]


def relative_halfwidth(samples: Sequence[float], confidence: float = CONFIDENCE) -> float | None:
    """The larger distance from the median to a CI bound, as a fraction of the median (None: no CI yet)."""
    ci = median_ci(samples, confidence)
    if ci is None:
        return None
    mid = median(samples)
    if mid <= 0:
        return math.inf
    return max(mid - ci[0], ci[1] - mid) / mid


def is_settled(samples: Sequence[float], rel: float = REL_PRECISION, confidence: float = CONFIDENCE) -> bool:
    """Stop rule: the median is known within +-rel at the given confidence."""
    width = relative_halfwidth(samples, confidence)
    return width is not None and width <= rel


def warmup_done(times: Sequence[float], window: int = 3, tol: float = 0.10) -> bool:
    """Warm-up stop rule: the last `window` timings spread by at most `tol` of their median."""
    if len(times) < window + 1:  # the first call (lazy init, allocation) never counts as settled
        return False
    last = times[-window:]
    mid = median(last)
    return mid > 0 and (max(last) - min(last)) / mid <= tol


@dataclass(frozen=True)
class Summary:
    """Timings summarised: median, spread, tail percentiles and how well the median is known."""

    n: int
    median: float
    p90: float
    p99: float
    iqr: float
    ci_low: float | None
    ci_high: float | None
    rel_halfwidth: float | None  # of the median's CI, a fraction of the median
    settled: bool  # the median is known within REL_PRECISION


def summarize(samples: Sequence[float], rel: float = REL_PRECISION) -> Summary:
    """Median, p90, p99, IQR and the median's CI of a list of timings."""
    ci = median_ci(samples)
    width = relative_halfwidth(samples)
    return Summary(n=len(samples), median=median(samples), p90=quantile(samples, 0.90),
                   p99=quantile(samples, 0.99), iqr=iqr(samples),
                   ci_low=ci[0] if ci else None, ci_high=ci[1] if ci else None,
                   rel_halfwidth=width, settled=width is not None and width <= rel)
