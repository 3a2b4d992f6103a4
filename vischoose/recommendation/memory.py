"""recommend's peak inference memory (--memory-basis peak): which stored peak stands for the deployed model, and an
estimate where none was measured. Pure: stored rows and the runtimes' facts (a Known) in, (value, source, note) out;
recommendation.figures makes Figures of them.

A peak is RSS over a baseline taken once the runtime's host binding is loaded (Runtime.prepare_host). For a runtime
whose binding loads what a device would not have (ExecuTorch's Python bindings import torch), that baseline is what
makes the figure the on-device one; a row stored before vischoose said what its baseline held (baseline_includes
None) counted the binding as the model's (ExecuTorch resnet50: 807 MiB, 700 of them torch) and is not used.

Estimate: peak / weights of the models measured here at the same runtime, precision and family (their median), times
this model's weights; its error is the leave-one-out error of that rule over those models (unknown with one).
"""

from typing import TYPE_CHECKING, NamedTuple

from vischoose.runtimes.precision import Variant

if TYPE_CHECKING:
    from vischoose.recommendation.figures import Known
    from vischoose.records import Profile

Group = tuple[str, str, str | None]  # (runtime, dtype, family)


class Peer(NamedTuple):
    """A model measured here: its weights as deployed (file or parameters) and its peak, MiB."""

    model: str
    weights_mb: float
    peak_mb: float


def usable(row: "Profile", known: "Known") -> bool:
    """Whether a row's peak is the model's: measured, and over a baseline that held the host binding where the
    binding loads what a device would not have."""
    if row.peak_memory_mb is None:
        return False
    return not known.runtime(row.runtime).host_only or row.baseline_includes is not None


def peak_figure(rows: "list[Profile]", variant: Variant, label: str, known: "Known") -> tuple[float, str, str] | None:
    """The newest usable peak of the variant's rows, with what it is: on-device where the host binding was left out."""
    row = next((p for p in rows if usable(p, known)), None)
    if row is None:
        return None
    host_only = known.runtime(variant.runtime).host_only
    note = f"peak inference memory, {label}"
    if host_only:
        note += f", the on-device figure: over a process with the host binding loaded ({host_only})"
    if row.runtime_memory_mb is not None:
        note += f"; the runtime's own accounting {row.runtime_memory_mb:,.1f} MiB ({row.runtime_memory_note or '-'})"
    return row.peak_memory_mb, "measured", note


def peer_weights(row: "Profile") -> float | None:
    """A measured model's weights as deployed: its file for a graph, its weights at the dtype for torch."""
    return row.file_mb if row.file_mb else row.weights_mb


def group_peers(rows: "list[tuple[Group, Profile]]", known: "Known") -> dict[Group, list[Peer]]:
    """Models measured here with a usable peak, by runtime, dtype and family (one row each: the newest)."""
    found: dict[Group, dict[str, Peer]] = {}
    for group, row in rows:
        weights = peer_weights(row)
        if weights and usable(row, known) and row.model not in found.get(group, {}):
            found.setdefault(group, {})[row.model] = Peer(row.model, weights, row.peak_memory_mb)
    return {g: list(peers.values()) for g, peers in found.items()}


def estimate(model: str, weights_mb: float, group: Group, peers: dict[Group, list[Peer]]
             ) -> tuple[float, str, str] | None:
    """This model's peak from the others measured in its group (peak per weight MiB, their median), with the rule's
    leave-one-out error; None without another measured model in the group."""
    others = [p for p in peers.get(group, []) if p.model != model]
    if not others:
        return None
    from statistics import median

    ratio = median(p.peak_mb / p.weights_mb for p in others)
    if len(others) < 2:
        error = "error unknown: one model measured"
    else:
        errors = [abs(median(q.peak_mb / q.weights_mb for q in others if q is not p) * p.weights_mb - p.peak_mb)
                  / p.peak_mb for p in others]
        error = f"leave-one-out median error {100 * median(errors):.0f}%"
    names = ", ".join(p.model for p in others[:4]) + (", ..." if len(others) > 4 else "")
    return (ratio * weights_mb, "estimated",
            f"peak {ratio:.2f}x the weights, as measured here for {names} ({group[0]} {group[1]}; {error})")
