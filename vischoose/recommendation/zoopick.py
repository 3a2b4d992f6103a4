"""Candidates from the catalog and timm's zoo by family, glob and name, one per architecture unless all_tags
(recommendation.selection says the rules; it answers the default itself and imports this module for the rest)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vischoose.errors import UsageError, opt
from vischoose.models import catalog
from vischoose.models.catalog import CatalogEntry
from vischoose.presets import Preset
from vischoose.recommendation.figures import Known, on_gpu_kind
from vischoose.requests.recommend import RecommendRequest

if TYPE_CHECKING:
    from vischoose.models.zoo import Zoo, ZooTag

Picked = tuple[list[CatalogEntry], list[tuple[str, str]], tuple[str, ...], dict[str, tuple[str, ...]]]


def pick(request: RecommendRequest, preset: Preset, known: Known) -> Picked:
    """The candidates for a preset (recommendation.selection's rules): (entries, (model, tag) pairs known only from
    measurements, notes, the other tags of each architecture judged by its best).

    Raises:
        UsageError: an unknown family, or a glob that matches no zoo model (each with the closest names).
        UnknownModelError: a name that is no model.
    """
    chosen = _Chooser(request.all_tags, known)
    fams = None
    if request.families:
        from vischoose.models import families  # the table is read only for the zoo

        fams = families.resolve(request.families)  # checked by the request: the names are the table's
    names = list(dict.fromkeys(request.models or preset.models))
    if fams is not None or request.zoo:
        judged = fams or preset.families
        chosen.add_families(judged, "every family" if "all" in request.families else None)
        if not names:  # the guide's choice stays a candidate where it belongs to the families judged
            names = [p for p in preset.prefer if chosen.zoo.family_of(_timm_name(p, known)) in judged]
    for text in names:
        chosen.add_name(text)
    if not names and fams is None and not request.zoo:
        chosen.add_curated(preset.families)
    if any(on_gpu_kind(preset, v) for v in preset.variants):
        chosen.add_speeds()
    return chosen.picked()


def _timm_name(name: str, known: Known) -> str:
    """The timm name behind a catalog alias (the name itself otherwise)."""
    entry = known.catalog.get(name)
    return entry.tag if entry else name


class _Chooser:
    """Collects entries by tag (the first one named wins), reading the zoo only when asked for something in it."""

    def __init__(self, all_tags: bool, known: Known) -> None:
        self.all_tags, self.known = all_tags, known
        self.entries: dict[str, CatalogEntry] = {}
        self.extra: list[tuple[str, str]] = []
        self.others: dict[str, tuple[str, ...]] = {}
        self.notes: list[str] = []
        self._zoo: Zoo | None = None

    @property
    def zoo(self) -> "Zoo":
        """The zoo, read on first use (through the Known)."""
        if self._zoo is None:
            if self.known.zoo is None:
                raise UsageError("No zoo of published models was given to choose from.",
                                 hint=f"Name the candidates with {opt('models')}: catalog aliases or timm names.")
            self._zoo = self.known.zoo()
        return self._zoo

    def by_tag(self, tag: str) -> CatalogEntry | None:
        """The catalog's entry for a timm tag, where it curates it."""
        return next((e for e in self.known.catalog.values() if e.tag == tag), None)

    def add(self, e: CatalogEntry) -> None:
        """One candidate, unless its tag is one already."""
        self.entries.setdefault(e.tag, e)

    def add_curated(self, fams: tuple[str, ...]) -> None:
        """The catalog's models of these families; a family the catalog lacks comes from the zoo."""
        curated = [e for e in self.known.catalog.values() if e.family in fams]
        for e in curated:
            self.add(e)
        missing = [f for f in fams if all(e.family != f for e in curated)]
        if missing:
            self.add_families(tuple(missing))

    def add_families(self, fams: tuple[str, ...], label: str | None = None) -> None:
        """Every zoo architecture of these families (label: how to name them in the note)."""
        tags = self.zoo.of_families(set(fams))
        archs = len({t.arch for t in tags})
        self.add_tags(tags)
        each = f"each of the {len(tags):,} tags" if self.all_tags else \
            (f"one per architecture, its best published top-1 at the size it is deployed at ({opt('all_tags')}: "
             "each tag)")
        self.notes.append(f"candidates from timm's zoo ({self.zoo.source}): {archs:,} architectures of "
                          f"{label or ', '.join(fams)}; {each}")

    def add_tags(self, tags: list["ZooTag"]) -> None:
        """Zoo tags: each one with all_tags, else the best of each architecture, the others named."""
        from vischoose.models.zoo import rank_tag

        by_arch: dict[str, list[ZooTag]] = {}
        for t in sorted(tags, key=rank_tag):
            by_arch.setdefault(t.arch, []).append(t)
        for group in by_arch.values():
            for t in group if self.all_tags else group[:1]:
                e = self.entry(t)
                self.add(e)
                if not self.all_tags and len(group) > 1:
                    self.others[e.alias] = tuple(o.tag for o in group[1:])

    def entry(self, t: "ZooTag", alias: str | None = None) -> CatalogEntry:
        """The catalog's entry where it curates the tag (its alias kept), else the zoo's."""
        from vischoose.models import zoo

        curated = self.by_tag(t.tag)
        return zoo.with_speeds(curated, self.zoo) if curated else zoo.entry(t, self.zoo, alias)

    def add_name(self, text: str) -> None:
        """A name or glob the user gave."""
        from vischoose.models import zoo as zoo_data

        if zoo_data.is_glob(text):
            found = self.zoo.matching(text)
            if not found:
                raise zoo_data.no_match(text, self.zoo)
            self.add_tags(found)
            return
        ref = catalog.parse_model_ref(text)
        if ref.entry is not None:
            self.add(ref.entry)
            return
        name = ref.name.removeprefix("timm/") if ref.kind == "hf-hub" else ref.name
        if ref.kind in ("timm", "hf-hub") and name in self.zoo.tags:
            self.add(self.entry(self.zoo.tags[name], alias=ref.text))
        elif ref.kind == "timm" and "." not in name and (tags := self.zoo.matching(name)):
            self.add_tags(tags)  # a bare architecture: its best published tag
            if not self.all_tags:
                from vischoose.models.zoo import rank_tag

                self.notes.append(f"{text} is judged as {min(tags, key=rank_tag).tag}, the best published top-1 of "
                                  f"its {len(tags)} tag(s) at their deployed sizes ({opt('all_tags')} ranks each)")
        else:
            self.add_unlisted(ref)

    def add_unlisted(self, ref: catalog.ModelRef) -> None:
        """A model outside the zoo: counted figures, else only what was measured for it."""
        from vischoose.recommendation import unlisted

        e = unlisted.entry_for(ref, self.zoo)
        if e is None:
            self.extra.append((ref.text, ref.timm_name or ref.name))
        else:
            self.add(e)

    def add_speeds(self) -> None:
        """The zoo's published speeds for catalog entries (a GPU target shows a GPU's published throughput)."""
        if self.known.zoo is None:
            return
        from vischoose.models import zoo

        for tag, e in self.entries.items():
            if not e.speeds and e.source != "counted here":
                self.entries[tag] = zoo.with_speeds(e, self.zoo)

    def picked(self) -> Picked:
        """What was chosen."""
        return list(self.entries.values()), self.extra, tuple(self.notes), self.others

