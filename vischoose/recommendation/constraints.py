"""The preset's limits against a candidate's figures: which it breaks, by how much, and which it cannot be checked
against (no figure)."""

from __future__ import annotations

import math
from functools import cache
from typing import TYPE_CHECKING

from vischoose.presets import Constraints, Preset
from vischoose.recommendation import wording
from vischoose.runtimes.precision import Variant

if TYPE_CHECKING:
    from vischoose.recommendation.candidates import Candidate
    from vischoose.recommendation.figures import Figure


# constraint key (the request field that sets it) -> (figure name, is an upper limit, unit)
CONSTRAINTS = {
    "max_memory_mb": ("memory_mb", True, "MiB"),
    "max_latency_ms": ("latency_ms", True, "ms"),
    "min_throughput": ("throughput", False, "img/s"),
    "min_top1": ("top1", False, "%"),
    "max_params_m": ("params_m", True, "M params"),
    "max_cold_start_ms": ("cold_start_ms", True, "ms"),
}


FIGURE_WORDS = {"memory_mb": "memory", "latency_ms": "latency", "throughput": "throughput", "top1": "top-1",
                "params_m": "parameter count", "cold_start_ms": "cold-start"}


LABELS = {"max_memory_mb": "budget", "max_latency_ms": "latency limit", "min_throughput": "throughput floor",
           "min_top1": "top-1 floor", "max_params_m": "parameter limit", "max_cold_start_ms": "cold-start limit"}


def limits(figures: dict[str, Figure], preset: Preset, model: str,
            variant: Variant) -> tuple[tuple[str, ...], tuple[str, ...], float]:
    """(violated limits, limits without a figure to check, how far the worst violated limit is off)."""
    violations, missing, excess = [], [], 1.0
    for key, fig_name, is_max, unit, limit in active(preset.constraints):
        fig = figures.get(fig_name)
        if fig is None:
            missing.append(wording.not_measured(fig_name, FIGURE_WORDS[fig_name], LABELS[key], preset, model,
                                                variant))
            continue
        bad = fig.value > limit if is_max else fig.value < limit
        if bad:
            sign = ">" if is_max else "<"
            violations.append(f"{fig.value:,.1f} {unit} {sign} {limit:,.6g} {unit} {LABELS[key]}"
                              f" ({fig.source}{', ' + fig.note if fig.note else ''})")
            excess = max(excess, fig.value / limit if is_max else limit / max(fig.value, 1e-9))
    return tuple(violations), tuple(missing), excess


@cache
def active(constraints: Constraints) -> tuple[tuple[str, str, bool, str, float], ...]:
    """The limits set, in CONSTRAINTS order: (key, figure name, is an upper limit, unit, limit); worked out once per
    preset rather than for each candidate and variant."""
    return tuple((key, fig_name, is_max, unit, limit) for key, (fig_name, is_max, unit) in CONSTRAINTS.items()
                 if (limit := getattr(constraints, key)) is not None)


def broken(cand: Candidate, preset: Preset) -> tuple[str, ...]:
    """What a candidate breaks, in words, one per limit in CONSTRAINTS order: 'over the 150 MiB budget', or 'no top-1
    figure for the top-1 floor'; () where it fits or was rejected for another reason (a rejected graph)."""
    out = []
    for key, (fig_name, is_max, unit) in CONSTRAINTS.items():
        limit, value = getattr(preset.constraints, key), cand.value(fig_name)
        if limit is None:
            continue
        if value is None:
            out.append(f"no {FIGURE_WORDS[fig_name]} figure for the {LABELS[key]}")  # words, never a field name
        elif value > limit if is_max else value < limit:
            out.append(f"{'over' if is_max else 'under'} the {limit:,.6g} {unit} {LABELS[key]}")
    return tuple(out)


def shortfall(cand: Candidate, preset: Preset) -> float:
    """How far a candidate is off all its broken limits together: the product of the ratios (1 = fits)."""
    total = 1.0
    for _key, fig_name, is_max, _unit, limit in active(preset.constraints):
        value = cand.value(fig_name)
        if value is not None and (value > limit if is_max else value < limit):
            total *= value / limit if is_max else limit / max(value, 1e-9)
    return total


def round_to_admit(value: float, is_max: bool) -> str:

    return f"{math.ceil(value * 10) / 10:g}" if is_max else f"{math.floor(value * 10) / 10:g}"
