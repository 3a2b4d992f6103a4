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


@dataclass(frozen=True)
class PairedDifference:
    """The difference of two top-1s measured on the same images (reference minus other), in points, with its 95 %
    interval from the paired counts (Newcombe's method 10)."""

    value: float  # points: reference top-1 minus the other's
    low: float  # points
    high: float  # points
    n: int
    only_reference: int  # images the reference gets right and the other wrong (discordant pairs)
    only_other: int  # images the other gets right and the reference wrong

    def text(self) -> str:
        """'1.2 points (95 % CI -0.4 to 3.1, 12 images right only in fp32, 5 only in this file)'."""
        return (f"{self.value:.2f} points (95 % CI {self.low:.2f} to {self.high:.2f}; of {self.n} images, "
                f"{self.only_reference} right only with eager fp32, {self.only_other} only with this file)")


def paired_difference(reference: list[bool], other: list[bool], z: float = Z95) -> PairedDifference:
    """The 95 % interval of top-1(reference) - top-1(other) when both were measured on the same images.

    Why a paired interval: the two top-1s come from the same images and mostly agree image by image, so the
    information about their difference is in the discordant images (right in one, wrong in the other). Two
    separate Wilson intervals, or an unpaired interval of the difference, treat them as independent and come out
    several times too wide; the Wald interval of (b - c) / n has zero width when no image disagrees. Newcombe's
    hybrid score method 10 (Newcombe 1998, Stat. Med. 17:2635, "Improved confidence intervals for the difference
    between binomial proportions based on paired data") combines each top-1's Wilson interval with the observed
    correlation of the pairs: it stays inside -100..100 points, keeps its coverage at small counts and is not
    degenerate at zero discordant pairs. (McNemar's exact test answers "is there a difference", not "how large".)
    Its continuity-corrected correlation is the published one (as in Fagerland, Lydersen & Laake's
    contingencytables); the Bentur et al. (2009) table they work through (1, 1, 7, 12) gives -0.507 to -0.026.

    Raises:
        ValueError: the lists differ in length or are empty.
    """
    if len(reference) != len(other) or not reference:
        raise ValueError(f"need two equal, non-empty lists of outcomes (got {len(reference)} and {len(other)})")
    return paired_counts(*paired_table(reference, other), z=z)


def paired_table(reference: list[bool], other: list[bool]) -> tuple[int, int, int, int]:
    """The paired table's four counts: images right in both, only in the reference, only in the other, in neither
    (what shards sum before one interval is taken over every image)."""
    both = sum(1 for r, o in zip(reference, other) if r and o)
    only_ref = sum(1 for r, o in zip(reference, other) if r and not o)
    only_other = sum(1 for r, o in zip(reference, other) if o and not r)
    return both, only_ref, only_other, len(reference) - both - only_ref - only_other


def paired_counts(both: int, only_ref: int, only_other: int, neither: int, z: float = Z95) -> PairedDifference:
    """paired_difference from the paired table's four counts (paired_table).

    Raises:
        ValueError: a negative count, or no image.
    """
    n = both + only_ref + only_other + neither
    if n < 1 or min(both, only_ref, only_other, neither) < 0:
        raise ValueError(f"need four counts >= 0 of at least one image (got {both}, {only_ref}, {only_other}, "
                         f"{neither})")
    first, second = wilson(both + only_ref, n, z), wilson(both + only_other, n, z)
    p1, l1, u1 = first.value / 100, first.low / 100, first.high / 100
    p2, l2, u2 = second.value / 100, second.low / 100, second.high / 100
    spread = (both + only_ref) * (only_other + neither) * (both + only_other) * (only_ref + neither)
    phi = _paired_correlation(both * neither - only_ref * only_other, n, spread)
    below = math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    above = math.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    diff = p1 - p2
    return PairedDifference(100 * diff, 100 * max(diff - below, -1.0), 100 * min(diff + above, 1.0), n, only_ref,
                            only_other)


def _paired_correlation(cross: int, n: int, spread: int) -> float:
    """Newcombe's continuity-corrected correlation of the paired outcomes: (ad - bc - n/2) / sqrt(spread) when ad - bc
    exceeds n/2, 0 up to there, (ad - bc) / sqrt(spread) when negative; 0 when a margin is empty."""
    if spread <= 0:
        return 0.0
    if cross > n / 2:
        return (cross - n / 2) / math.sqrt(spread)
    return 0.0 if cross >= 0 else cross / math.sqrt(spread)
