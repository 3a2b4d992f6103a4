"""How far a top-1 measured on a few hundred images can be trusted: Wilson score intervals, whether two
measured accuracies can be told apart, and how many images would tell them apart. No torch, no numpy.

The Wilson interval (Wilson 1927) stays inside 0-100 % and keeps its coverage at small counts and at
accuracies near 0 or 100 %, where the normal approximation (p +/- z sqrt(p(1-p)/n)) claims certainty it
does not have (a 100 % on 20 images is "100.0 +/- 0", Wilson says 83.9-100 %).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # two-sided 95 %


@dataclass(frozen=True)
class Interval:
    """A proportion measured on `n` trials, in percent, with its 95 % Wilson interval."""

    value: float  # %
    low: float  # %
    high: float  # %
    n: int

    def overlaps(self, other: "Interval") -> bool:
        """Whether the two intervals share any value: the data cannot tell the two accuracies apart."""
        return self.low <= other.high and other.low <= self.high

    def text(self) -> str:
        """'81.2 % (95 % CI 76.0-85.6, 200 images)'."""
        return f"{self.value:.1f} % (95 % CI {self.low:.1f}-{self.high:.1f}, {self.n} images)"


def wilson(hits: int, n: int, z: float = Z95) -> Interval:
    """The Wilson score interval of `hits` successes in `n` trials, in percent.

    Raises:
        ValueError: n < 1, or hits outside 0..n.
    """
    if n < 1 or not 0 <= hits <= n:
        raise ValueError(f"need 0 <= hits <= n and n >= 1 (got {hits} of {n})")
    p = hits / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if hits == 0 else max(0.0, centre - half)  # exactly 0 and 1 at the ends, not 1e-15 off them
    high = 1.0 if hits == n else min(1.0, centre + half)
    return Interval(100 * p, 100 * low, 100 * high, n)


def from_percent(top1: float, n: int) -> Interval:
    """The interval of a stored top-1 (%) on n images (the hit count is recovered by rounding)."""
    return wilson(min(max(round(top1 * n / 100), 0), n), n)


def images_to_separate(a: float, b: float, z: float = Z95) -> int | None:
    """About how many images each would need before 95 % intervals around accuracies a and b (%) stop overlapping.

    From the normal approximation: n > (z (sqrt(a(1-a)) + sqrt(b(1-b))) / |a - b|)^2. None when a == b (no
    number of images separates two equal accuracies).
    """
    pa, pb = a / 100, b / 100
    if math.isclose(pa, pb, abs_tol=1e-9):
        return None
    spread = math.sqrt(pa * (1 - pa)) + math.sqrt(pb * (1 - pb))
    if spread == 0:
        return 1
    return math.ceil((z * spread / abs(pa - pb)) ** 2)
