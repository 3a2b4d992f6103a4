"""Wilson intervals, overlap and the images that would separate two accuracies: checked against the formula's
known values and its defining properties."""

from __future__ import annotations

import math

import pytest

from vischoose.inference import intervals


def test_wilson_matches_the_published_values():
    # Newcombe (1998), Table I, method 3 (score, no continuity correction): 81/263 0.2553-0.3662, 15/148 0.0624-0.1605
    assert (intervals.wilson(81, 263).low, intervals.wilson(81, 263).high) == pytest.approx((25.53, 36.62), abs=0.01)
    assert (intervals.wilson(15, 148).low, intervals.wilson(15, 148).high) == pytest.approx((6.24, 16.05), abs=0.01)


@pytest.mark.parametrize(("hits", "n"), [(0, 1), (0, 20), (20, 20), (1, 3), (500, 1000), (999, 1000)])
def test_the_interval_holds_the_estimate_and_stays_in_range(hits, n):
    found = intervals.wilson(hits, n)
    assert 0.0 <= found.low <= found.value <= found.high <= 100.0
    assert found.value == pytest.approx(100 * hits / n)
    assert (found.low == 0.0) == (hits == 0) and (found.high == 100.0) == (hits == n)


def test_more_images_narrow_the_interval():
    widths = [intervals.wilson(n // 2, n) for n in (10, 100, 1000)]
    assert widths[0].high - widths[0].low > widths[1].high - widths[1].low > widths[2].high - widths[2].low


def test_overlap_and_the_images_that_would_separate():
    a, b = intervals.wilson(80, 100), intervals.wilson(75, 100)
    assert a.overlaps(b) and b.overlaps(a)
    n = intervals.images_to_separate(80.0, 75.0)
    assert n > 100
    # at that many images each, 95 % intervals around the same accuracies no longer overlap
    assert not intervals.wilson(round(0.80 * n), n).overlaps(intervals.wilson(round(0.75 * n), n))
    assert intervals.images_to_separate(80.0, 80.0) is None


def test_bad_counts_are_refused():
    for hits, n in ((1, 0), (-1, 5), (6, 5)):
        with pytest.raises(ValueError):
            intervals.wilson(hits, n)
    assert math.isclose(intervals.from_percent(100 / 3, 9).value, 100 / 3)


def _pairs(both: int, only_ref: int, only_other: int, neither: int) -> tuple[list[bool], list[bool]]:
    """Outcomes per image of the reference and the other (right/wrong), from the paired table's four counts."""
    reference = [True] * (both + only_ref) + [False] * (only_other + neither)
    other = [True] * both + [False] * only_ref + [True] * only_other + [False] * neither
    return reference, other


def test_paired_difference_matches_the_published_worked_example():
    # Bentur et al. (2009) as worked in Fagerland, Lydersen & Laake's contingencytables: -0.507 to -0.026
    found = intervals.paired_difference(*_pairs(1, 1, 7, 12))
    assert found.value == pytest.approx(100 * (1 - 7) / 21)
    assert (round(found.low / 100, 3), round(found.high / 100, 3)) == (-0.507, -0.026)
    assert (found.only_reference, found.only_other, found.n) == (1, 7, 21)


def test_paired_difference_holds_the_difference_and_is_narrower_than_unpaired():
    # 200 images, 180 right in both, 8 only in fp32, 2 only in the int8 file: a 3-point drop
    found = intervals.paired_difference(*_pairs(180, 8, 2, 10))
    assert found.value == pytest.approx(3.0) and found.low < found.value < found.high
    first, second = intervals.wilson(188, 200), intervals.wilson(182, 200)
    unpaired_width = ((first.high - first.low) ** 2 + (second.high - second.low) ** 2) ** 0.5  # Newcombe, unpaired
    assert found.high - found.low < unpaired_width  # the pairs carry the information
    same = intervals.paired_difference(*_pairs(150, 0, 0, 50))  # no image disagrees: not a zero-width interval
    assert same.value == 0.0 and same.low < 0 < same.high
    assert -100.0 <= intervals.paired_difference(*_pairs(0, 5, 0, 0)).low


def test_paired_difference_needs_equal_non_empty_lists():
    with pytest.raises(ValueError):
        intervals.paired_difference([True], [True, False])
    with pytest.raises(ValueError):
        intervals.paired_difference([], [])
