"""Latency estimates from what was measured on this machine, with the expected error of each.

Within one runtime, precision and model family, a batch-1 p90 is modelled as compute plus weight traffic:

    ms = a * GFLOPs + b * weight MiB        (a, b >= 0)

fitted to the models measured here by least squares on the relative error. At batch 1 every weight is read once per
image, so a model with many parameters for its FLOPs (ViT-B/32, a ResNet-50 hybrid at 384 px against one at 224)
is slower than its FLOPs alone say; one effective GFLOP/s per group missed those by 20% and more. With fewer than
three models measured in the group the two terms cannot be told apart and one rate is used (ms = GFLOPs / median
effective GFLOP/s). The expected error is a leave-one-out check: each measured model predicted from the others by
the same rule. Pure: rows in, figures out (bench/recommend_measure.py checks the rule against measured rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from vischoose.models.catalog import MIB, CatalogEntry
from vischoose.results.records import Profile
from vischoose.runtimes.precision import bytes_per_param

Group = tuple[str, str, str]  # (runtime, dtype, family)
MIN_FOR_TWO_TERMS = 3  # measured models a group needs before compute and weight traffic are fitted apart


@dataclass(frozen=True)
class Point:
    """One model measured here: its published size and its batch-1 p90."""

    model: str
    gflops: float  # per image at its input size (published GMACs x 2)
    weights_mib: float  # parameters at the group's precision
    latency_ms: float  # batch-1 p90 measured here


@dataclass(frozen=True)
class Fit:
    """ms = ms_per_gflop * GFLOPs + ms_per_mib * weight MiB."""

    ms_per_gflop: float
    ms_per_mib: float = 0.0

    def latency_ms(self, gflops: float, weights_mib: float) -> float:
        """The modelled batch-1 p90."""
        return self.ms_per_gflop * gflops + self.ms_per_mib * weights_mib

    def describe(self) -> str:
        """'GFLOPs / 205 GFLOP/s + weight MiB / 3,100 MiB/s'."""
        terms = [f"GFLOPs / {1000.0 / self.ms_per_gflop:,.0f} GFLOP/s" if self.ms_per_gflop else "",
                 f"weight MiB / {1000.0 / self.ms_per_mib:,.0f} MiB/s" if self.ms_per_mib else ""]
        return " + ".join(t for t in terms if t) or "0"


@dataclass(frozen=True)
class LocalEstimate:
    """An estimated batch-1 p90 latency and how far such estimates were off here."""

    latency_ms: float
    models: int  # measured models it is based on
    fit: Fit
    loo_error: float | None  # median |estimate - measured| / measured over the group (None: one model measured)

    def note(self, group: Group) -> str:
        """Where the estimate comes from, in words."""
        runtime, dtype, family = group
        error = f"expected error +-{100 * self.loo_error:.0f}% (leave-one-out over them)" if self.loo_error \
            is not None else "error unknown (one model measured)"
        return (f"{self.fit.describe()} effective, from {self.models} {family} model(s) measured here at {runtime} "
                f"{dtype}; {error}")


def point(entry: CatalogEntry, dtype: str, latency_ms: float) -> Point:
    """The entry's published size at `dtype` with a latency (measured, or 0 for one to be estimated)."""
    return Point(entry.alias, entry.gflops, entry.params * bytes_per_param(dtype) / MIB, latency_ms)


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
        found.setdefault(group, []).append(point(entry, group[1], p.latency_ms_p90))
    return found


def fit(group: list[Point]) -> Fit:
    """The group's model (at least one point): two terms from MIN_FOR_TWO_TERMS points on, else one rate."""
    from statistics import median  # here: statistics costs recommend's start-up ~6 ms (fractions, decimal)

    rate = Fit(median(p.latency_ms / p.gflops for p in group))
    if len(group) < MIN_FOR_TWO_TERMS:
        return rate
    # minimise sum((a x + b y - 1)^2) with x = GFLOPs / ms, y = MiB / ms: the squared relative error, a, b >= 0
    xy = [(p.gflops / p.latency_ms, p.weights_mib / p.latency_ms) for p in group]
    sxx, syy = sum(x * x for x, _ in xy), sum(y * y for _, y in xy)
    sxy, sx, sy = sum(x * y for x, y in xy), sum(x for x, _ in xy), sum(y for _, y in xy)
    options = [Fit(sx / sxx), Fit(0.0, sy / syy)] if syy else [Fit(sx / sxx)]
    det = sxx * syy - sxy * sxy
    if det > 1e-9 * sxx * syy:  # not collinear: the unconstrained optimum, where both terms come out positive
        a, b = (sx * syy - sy * sxy) / det, (sy * sxx - sx * sxy) / det
        if a >= 0 and b >= 0:
            options.append(Fit(a, b))

    def loss(f: Fit) -> float:
        return sum((f.ms_per_gflop * x + f.ms_per_mib * y - 1.0) ** 2 for x, y in xy)
    return min(options, key=loss)


def leave_one_out(group: list[Point]) -> float | None:
    """Median relative error of predicting each model's latency from the others' fit (None: one model)."""
    from statistics import median

    if len(group) < 2:
        return None
    errors = []
    for held in group:
        f = fit([p for p in group if p is not held])
        errors.append(abs(f.latency_ms(held.gflops, held.weights_mib) / held.latency_ms - 1.0))
    return median(errors)


def estimate(entry: CatalogEntry, group: Group, found: dict[Group, list[Point]]) -> LocalEstimate | None:
    """The entry's batch-1 p90 from the other models measured in its group, or None without any."""
    others = [p for p in found.get(group, []) if p.model != entry.alias]
    if not others:
        return None
    f = fit(others)
    target = point(entry, group[1], 0.0)
    return LocalEstimate(f.latency_ms(target.gflops, target.weights_mib), len(others), f,
                         leave_one_out(found.get(group, [])))
