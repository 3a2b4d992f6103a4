"""Latency estimates from what was measured on this machine: the effective GFLOP/s of each runtime, precision and
model family (batch-1 p90), applied to an unmeasured model's GFLOPs, with the expected error of doing so from a
leave-one-out check over the measured models. Pure: rows in, figures out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from vischoose.models.catalog import CatalogEntry
from vischoose.results.records import Profile

Group = tuple[str, str, str]  # (runtime, dtype, family)


@dataclass(frozen=True)
class Rate:
    """One measured model's effective compute rate at batch 1 on this machine."""

    model: str
    gflops_per_s: float  # GFLOPs per image / batch-1 p90 seconds


@dataclass(frozen=True)
class LocalEstimate:
    """An estimated batch-1 p90 latency and how far such estimates were off here."""

    latency_ms: float
    models: int  # measured models it is based on
    rate_gflops_s: float
    loo_error: float | None  # median |estimate - measured| / measured over the group (None: too few models)

    def note(self, group: Group) -> str:
        """Where the estimate comes from, in words."""
        runtime, dtype, family = group
        error = f"expected error +-{100 * self.loo_error:.0f}% (leave-one-out over them)" if self.loo_error \
            is not None else "error unknown (one model measured)"
        return (f"GFLOPs / {self.rate_gflops_s:,.0f} GFLOP/s effective, from {self.models} {family} model(s) measured "
                f"here at {runtime} {dtype}; {error}")


def rates(rows: Iterable[tuple[Group, Profile]]) -> dict[Group, list[Rate]]:
    """The newest measured rate per model in each group."""
    newest: dict[tuple[Group, str], Profile] = {}
    for group, p in rows:
        if p.ok and p.latency_ms_p90 and p.gflops:
            key = (group, p.model)
            if key not in newest or p.created_at > newest[key].created_at:
                newest[key] = p
    found: dict[Group, list[Rate]] = {}
    for (group, model), p in newest.items():
        found.setdefault(group, []).append(Rate(model, p.gflops / (p.latency_ms_p90 / 1000.0)))
    return found


def leave_one_out(group: list[Rate]) -> float | None:
    """Median relative error of predicting each model's rate (so its latency) from the others' median rate."""
    from statistics import median  # here: statistics costs recommend's start-up ~6 ms (fractions, decimal)

    if len(group) < 2:
        return None
    errors = []
    for i, held in enumerate(group):
        others = median(r.gflops_per_s for j, r in enumerate(group) if j != i)
        errors.append(abs(held.gflops_per_s / others - 1.0))  # latency ratio error = rate ratio error
    return median(errors)


def estimate(entry: CatalogEntry, group: Group, found: dict[Group, list[Rate]]) -> LocalEstimate | None:
    """The entry's batch-1 p90 latency from the other models measured in its group, or None without any."""
    others = [r for r in found.get(group, []) if r.model != entry.alias]
    if not others:
        return None
    from statistics import median  # only here, past the return: with nothing measured, recommend never imports it

    rate = median(r.gflops_per_s for r in others)
    return LocalEstimate(1000.0 * entry.gflops / rate, len(others), rate, leave_one_out(found.get(group, [])))
