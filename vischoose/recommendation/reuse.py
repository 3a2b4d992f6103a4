"""Which stored timings recommend does not reuse, said where the answer is given: a row measured while the machine
was contended, or whose batch-1 throughput and latency contradict each other (records.Profile.flagged), is
never a measured figure; recommend --measure measures it again, and without a clean row the estimate stands."""

from __future__ import annotations

from vischoose.models.catalog import CatalogEntry
from vischoose.presets import Preset
from vischoose.recommendation.figures import matching_profiles
from vischoose.records import Profile


def flagged_lines(entries: list[CatalogEntry], extra: list[tuple[str, str]], preset: Preset,
                  profiles: list[Profile]) -> list[str]:
    """One line per candidate and variant whose only rows under the preset's protocol are flagged."""
    lines = []
    for model, tag in [(e.alias, e.tag) for e in entries] + list(extra):
        for variant in dict.fromkeys([preset.plain, *preset.variants]):
            if matching_profiles(profiles, model, tag, preset, variant):
                continue  # a clean row is used
            stored = matching_profiles(profiles, model, tag, preset, variant, flagged=True)
            if stored:
                row = stored[0]
                lines.append(f"{model} at {variant.label}: the row measured here on {row.created_at[:10]} is not "
                             f"used ({row.flagged}); figures for it are estimated or missing until it is measured on "
                             f"a quieter machine (vischoose recommend --measure, or vischoose profile --target "
                             f"{preset.name})")
    return lines
