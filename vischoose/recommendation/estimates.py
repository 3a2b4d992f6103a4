"""Latency estimates from what was measured on this machine, with the expected error of each.

Within one runtime, precision and model family, a batch-1 p90 is modelled as a power of the model's FLOPs:

    ms = k * GFLOPs ** p        (0.6 <= p <= 1)

fitted to the models measured here by least squares on log(ms), the relative error. p below 1 because a small model
keeps the cores less busy than a large one (short matrix products, per-operator overhead): measured on a 2-core
Xeon at batch 1 (bench/results/estimates-intel-xeon-2threads.txt), the ms per GFLOP of one family fell by up to 4x
from its smallest model to its largest, which one effective GFLOP/s per group missed by 17% (median, 80% for the
hybrids); the power law by 11%. A ms = a GFLOPs + b weight MiB fit (weight traffic) did worse (20%). p is held in
[0.6, 1]: a larger model is never slower per FLOP in these families, and three points do not justify a steeper
curve. With fewer than three models measured in the group, one rate is used (p = 1, k = the median ms per GFLOP).
Where a family has fewer than three models measured here but the runtime and precision have three or more over all
families, the curve is fitted to all of them instead (a model of a family nobody measured gets an estimate from this
machine rather than from another machine's publication), with the larger error that mixing families brings.
The expected error is a leave-one-out check: each measured model predicted from the others by the same rule. Pure:
rows in, figures out (bench/recommend_measure.py checks the rule against measured rows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from vischoose.models.catalog import CatalogEntry
from vischoose.records import Profile

Group = tuple[str, str, str]  # (runtime, dtype, family)
MIN_FOR_CURVE = 3  # measured models a group needs before the exponent is fitted (below: one rate)
EXPONENT_RANGE = (0.6, 1.0)


@dataclass(frozen=True)
class Point:
    """One model measured here: its published FLOPs and its batch-1 p90."""

    model: str
    gflops: float  # per image at its input size (published GMACs x 2)
    latency_ms: float  # batch-1 p90 measured here


@dataclass(frozen=True)
class Fit:
    """ms = scale * GFLOPs ** exponent."""

    scale: float  # ms at 1 GFLOP
    exponent: float = 1.0

    def latency_ms(self, gflops: float) -> float:
        """The modelled batch-1 p90."""
        return self.scale * gflops ** self.exponent

    def describe(self) -> str:
        """'1000 x GFLOPs / 205 GFLOP/s' for one rate, '4.1 x GFLOPs^0.85' for a curve (both in ms)."""
        if self.exponent == 1.0:
            return f"1000 x GFLOPs / {1000.0 / self.scale:,.0f} GFLOP/s"
        return f"{self.scale:.3g} x GFLOPs^{self.exponent:.2f}"


@dataclass(frozen=True)
class LocalEstimate:
    """An estimated batch-1 p90 latency and how far such estimates were off here."""

    latency_ms: float
    models: int  # measured models it is based on
    fit: Fit
    loo_error: float | None  # median |estimate - measured| / measured over the group (None: one model measured)
    scope: str | None = None  # "every family" when fitted across families, else the group's own family

    def note(self, group: Group) -> str:
        """Where the estimate comes from, in words."""
        runtime, dtype, family = group
        error = f"expected error +-{100 * self.loo_error:.0f}% (leave-one-out over them)" if self.loo_error \
            is not None else "error unknown (one model measured)"
        models = f"{family} model(s)" if self.scope is None else f"models of {self.scope} (too few {family} ones)"
        return (f"ms = {self.fit.describe()}, fitted to {self.models} {models} measured here at {runtime} {dtype}; "
                f"{error}")


def points(rows: Iterable[tuple[Group, CatalogEntry, Profile]]) -> dict[Group, list[Point]]:
    """The newest measured batch-1 p90 per model in each group."""
    newest: dict[tuple[Group, str], tuple[CatalogEntry, Profile]] = {}
    for group, entry, p in rows:
        if p.ok and p.latency_ms_p90 and entry.gflops:
            key = (group, entry.alias)
            if key not in newest or p.created_at > newest[key][1].created_at:
                newest[key] = (entry, p)
    found: dict[Group, list[Point]] = {}
    for (group, _), (entry, p) in newest.items():
        found.setdefault(group, []).append(Point(entry.alias, entry.gflops, p.latency_ms_p90))
    return found


def fit(group: list[Point]) -> Fit:
    """The group's curve (at least one point): the exponent fitted from MIN_FOR_CURVE points on, else one rate."""
    from statistics import (
        median,  # here: statistics costs recommend's start-up ~6 ms (fractions, decimal)
    )

    if len(group) < MIN_FOR_CURVE:
        return Fit(median(p.latency_ms / p.gflops for p in group))
    xs = [math.log(p.gflops) for p in group]
    ys = [math.log(p.latency_ms) for p in group]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 1.0
    exponent = min(max(slope, EXPONENT_RANGE[0]), EXPONENT_RANGE[1])
    return Fit(math.exp(my - exponent * mx), exponent)  # the least-squares scale for the held exponent


def leave_one_out(group: list[Point]) -> float | None:
    """Median relative error of predicting each model's latency from the others' fit (None: one model)."""
    from statistics import median

    if len(group) < 2:
        return None
    errors = [abs(fit([p for p in group if p is not held]).latency_ms(held.gflops) / held.latency_ms - 1.0)
              for held in group]
    return median(errors)


def estimate(entry: CatalogEntry, group: Group, found: dict[Group, list[Point]]) -> LocalEstimate | None:
    """The entry's batch-1 p90 from the other models measured in its group (its family's curve from three on), else
    from every family measured at the group's runtime and precision (three or more), else from its family's one or
    two; None without any, or without the entry's FLOPs."""
    if not entry.gflops:
        return None
    others = [p for p in found.get(group, []) if p.model != entry.alias]
    pooled = [p for g, points in found.items() if g[:2] == group[:2] for p in points]
    pooled_others = [p for p in pooled if p.model != entry.alias]
    if len(others) < MIN_FOR_CURVE <= len(pooled_others):
        f = fit(pooled_others)
        return LocalEstimate(f.latency_ms(entry.gflops), len(pooled_others), f, leave_one_out(pooled), "every family")
    if not others:
        return None
    f = fit(others)
    return LocalEstimate(f.latency_ms(entry.gflops), len(others), f, leave_one_out(found.get(group, [])))
