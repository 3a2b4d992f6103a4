"""Which models a recommendation judges, as catalog entries the ranking takes.

- no names, no zoo flag: the curated catalog's models of the preset's families (a family the catalog has none of
  comes from timm's zoo);
- `zoo`: every zoo architecture of the preset's families; `families` (names, or 'all'): of those families instead;
- names (`models`): catalog aliases, timm names, hub ids, folders, and fnmatch globs over the zoo ('resnet50*' on
  architecture names, 'vit_*.augreg*' on arch.tag names);
- an architecture is one candidate, its best published top-1 at the size it is deployed at (the others named in a
  note), unless `all_tags`; a zoo tag the catalog curates keeps its alias; the preset's preferred models stay
  candidates where they belong to the families judged.

The catalog and the zoo come in through the Known (recommendation.pipeline.known), as for the ranking. This module
answers the default (the curated catalog, nothing else asked for) itself; everything else is picked by
recommendation.zoopick, imported only then. A model outside the zoo gets counted figures (recommendation.unlisted)
and no top-1. The zoo is read only when something
needs it: a zoo flag, a glob, a name outside the catalog, or a target that runs torch on a GPU (the published GPU
throughput). Nothing installed changes what is chosen: torch and timm, which count a model outside the zoo, are
vischoose's own dependencies.
"""

from __future__ import annotations

from vischoose.models.catalog import CatalogEntry
from vischoose.presets import Preset
from vischoose.recommendation.figures import Known, on_gpu_kind
from vischoose.requests.recommend import RecommendRequest


class Selection:
    """The candidates: entries with figures, (model, tag) pairs known only from measurements, what was done, and the
    other published tags of each architecture judged by its best (model -> tags, best first). A plain class: a
    NamedTuple would cost every `recommend` start-up a few tenths of a millisecond to create."""

    __slots__ = ("entries", "extra", "notes", "others")

    def __init__(self, entries: list[CatalogEntry], extra: list[tuple[str, str]], notes: tuple[str, ...] = (),
                 others: dict[str, tuple[str, ...]] | None = None) -> None:
        self.entries, self.extra, self.notes, self.others = entries, extra, notes, others or {}


def select(request: RecommendRequest, preset: Preset, known: Known) -> Selection:
    """The candidates for a preset (see the module's docstring): request.models, zoo, families and all_tags.

    Raises:
        UsageError: an unknown family, or a glob that matches no zoo model (each with the closest names).
        UnknownModelError: a name that is no model.
    """
    curated = [e for e in known.catalog.values() if e.family in preset.families]
    asked = request.models or preset.models or request.zoo or request.families
    if not asked and {e.family for e in curated} == set(preset.families) and \
            not any(on_gpu_kind(preset, v) for v in preset.variants):
        return Selection(curated, [])  # the default: no zoo to read, nothing more to import
    from vischoose.recommendation import zoopick

    return Selection(*zoopick.pick(request, preset, known))
