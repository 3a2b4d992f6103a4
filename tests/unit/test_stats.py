"""The statistics of repeated timings, on synthetic numbers."""

from __future__ import annotations

import math
import random

import pytest

from vischoose.measure import stats


def test_quantiles_interpolate_like_numpy():
    data = [4.0, 1.0, 3.0, 2.0]
    assert stats.median(data) == 2.5
    assert stats.quantile(data, 0.25) == 1.75
    assert stats.quantile(data, 0.75) == 3.25
    assert stats.iqr(data) == 1.5
    assert stats.quantile(data, 0.0) == 1.0 and stats.quantile(data, 1.0) == 4.0
    assert stats.median([7.0]) == 7.0


def test_quantile_rejects_nothing_and_bad_q():
    with pytest.raises(ValueError):
        stats.quantile([], 0.5)
    with pytest.raises(ValueError):
        stats.quantile([1.0], 1.5)


@pytest.mark.parametrize("n, ranks", [(5, None), (6, (1, 6)), (10, (2, 9)), (20, (6, 15)), (50, (18, 33)),
                                      (100, (40, 61))])
def test_median_ci_ranks_match_the_binomial_tables(n, ranks):
    assert stats.median_ci_ranks(n) == ranks


def test_median_ci_ranks_for_many_samples_use_the_normal_approximation():
    j, k = stats.median_ci_ranks(1000)
    assert (j, k) == (469, 532)
    assert stats.median_ci_ranks(100_000)[0] > 49_000  # no float overflow, still a narrow band


def test_median_ci_covers_the_true_median_about_95_percent_of_the_time():
    rng = random.Random(1)
    hits = 0
    for _ in range(2000):
        low, high = stats.median_ci([rng.expovariate(1.0) for _ in range(25)])
        hits += low <= math.log(2) <= high
    assert 0.93 <= hits / 2000 <= 0.99


def test_stop_rule_settles_on_tight_timings_only():
    rng = random.Random(0)
    tight = [10.0 * (1 + rng.uniform(-0.01, 0.01)) for _ in range(30)]
    wide = [10.0 * (1 + rng.uniform(-0.5, 0.5)) for _ in range(30)]
    assert stats.is_settled(tight)
    assert not stats.is_settled(wide)
    assert not stats.is_settled(tight[:5])  # too few for any CI of the median
    assert stats.relative_halfwidth(tight[:5]) is None


def test_stop_rule_ignores_rare_outliers_that_would_move_a_mean():
    times = [10.0] * 40 + [100.0, 200.0]  # two hiccups: the mean moves by 60%, the median not at all
    assert stats.is_settled(times)
    assert stats.median(times) == 10.0


def test_warmup_ends_when_the_last_three_timings_agree():
    assert not stats.warmup_done([50.0, 10.0, 10.1])  # the first call never counts
    assert stats.warmup_done([50.0, 10.0, 10.1, 9.95])
    assert not stats.warmup_done([50.0, 10.0, 14.0, 9.0])


def test_summarize_reports_median_spread_and_ci():
    s = stats.summarize([float(i) for i in range(1, 11)])
    assert (s.n, s.median, s.iqr) == (10, 5.5, 4.5)
    assert (s.ci_low, s.ci_high) == (2.0, 9.0)
    assert s.p90 == pytest.approx(9.1) and s.p99 == pytest.approx(9.91)
    assert not s.settled and s.rel_halfwidth == pytest.approx(3.5 / 5.5)
