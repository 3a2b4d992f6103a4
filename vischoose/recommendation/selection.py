"""Which models a recommendation judges, as catalog entries the ranking takes.

- no names, no zoo flag: the curated catalog's models of the preset's families (a family the catalog has none of
  comes from timm's zoo);
- `zoo`: every zoo architecture of the preset's families; `families` (names, or 'all'): of those families instead;
- names (`models`): catalog aliases, timm names, hub ids, folders, and fnmatch globs over the zoo ('resnet50*' on
  architecture names, 'vit_*.augreg*' on arch.tag names);
- an architecture is one candidate, its best published top-1 at the size it is deployed at (the others named in a
  note), unless `all_tags`; a zoo tag the catalog curates keeps its alias; the preset's preferred models stay
  candidates where they belong to the families judged.

A model outside the zoo gets counted figures (recommendation.unlisted) and no top-1. The zoo is read only when
something needs it: a zoo flag, a glob, a name outside the catalog, or a target that runs torch on a GPU (the
published GPU throughput).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vischoose.models import catalog
from vischoose.models.catalog import CatalogEntry
from vischoose.recommendation.presets import Preset
from vischoose.recommendation.ranking import Recommendation, on_gpu_kind

if TYPE_CHECKING:
    from vischoose.models.zoo import Zoo, ZooTag

LISTED = 3  # other tags named per architecture in a note


class Selection:
    """The candidates: entries with figures, (model, tag) pairs known only from measurements, what was done, and the
    other published tags of each architecture judged by its best (model -> tags, best first). A plain class: a
    NamedTuple would cost every `recommend` start-up a few tenths of a millisecond to create."""

    __slots__ = ("entries", "extra", "notes", "others")

    def __init__(self, entries: list[CatalogEntry], extra: list[tuple[str, str]], notes: tuple[str, ...] = (),
                 others: dict[str, tuple[str, ...]] | None = None) -> None:
        self.entries, self.extra, self.notes, self.others = entries, extra, notes, others or {}


def select(preset: Preset, models: list[str] | None = None, zoo: bool = False, family_names: list[str] | None = None,
           all_tags: bool = False) -> Selection:
    """The candidates for a preset (see the module's docstring).

    Raises:
        UsageError: an unknown family, or a glob that matches no zoo model (each with the closest names).
        UnknownModelError: a name that is no model.
    """
    chosen = _Chooser(all_tags)
    fams = None
    if family_names:
        from vischoose.models import families  # the table is read only for the zoo

        fams = families.resolve(family_names)
    names = list(dict.fromkeys(models or preset.models))
    if fams is not None or zoo:
        chosen.add_families(fams or preset.families, "every family" if "all" in (family_names or ()) else None)
        if not names:  # the guide's choice stays a candidate where it belongs to the families judged
            names = [p for p in preset.prefer if chosen.family_of(_timm_name(p)) in (fams or preset.families)]
    for text in names:
        chosen.add_name(text)
    if not names and fams is None and not zoo:
        chosen.add_curated(preset.families)
    if any(on_gpu_kind(preset, v) for v in preset.variants):
        chosen.add_speeds()
    return chosen.selection()


def _timm_name(name: str) -> str:
    """The timm name behind a catalog alias (the name itself otherwise)."""
    entry = catalog.load().get(name)
    return entry.tag if entry else name


class _Chooser:
    """Collects entries by tag (the first one named wins), reading the zoo only when asked for something in it."""

    def __init__(self, all_tags: bool) -> None:
        self.all_tags = all_tags
        self.entries: dict[str, CatalogEntry] = {}
        self.extra: list[tuple[str, str]] = []
        self.others: dict[str, tuple[str, ...]] = {}
        self.notes: list[str] = []
        self._zoo: Zoo | None = None

    @property
    def zoo(self) -> "Zoo":
        """The zoo, read on first use."""
        if self._zoo is None:
            from vischoose.models import zoo

            self._zoo = zoo.load()
        return self._zoo

    @staticmethod
    def family_of(name: str) -> str:
        """The family of a timm name, from the family table."""
        from vischoose.models import families

        return families.family_of(name)

    def add(self, e: CatalogEntry) -> None:
        """One candidate, unless its tag is one already."""
        self.entries.setdefault(e.tag, e)

    def add_curated(self, fams: tuple[str, ...]) -> None:
        """The catalog's models of these families; a family the catalog lacks comes from the zoo."""
        curated = [e for e in catalog.load().values() if e.family in fams]
        for e in curated:
            self.add(e)
        missing = [f for f in fams if all(e.family != f for e in curated)]
        if missing:
            self.add_families(tuple(missing))

    def add_families(self, fams: tuple[str, ...], label: str | None = None) -> None:
        """Every zoo architecture of these families (label: how to name them in the note)."""
        wanted = set(fams)
        tags = [t for t in self.zoo.tags.values() if self.family_of(t.arch) in wanted]
        archs = len({t.arch for t in tags})
        self.add_tags(tags)
        each = f"each of the {len(tags):,} tags" if self.all_tags else \
            "one per architecture, its best published top-1 at the size it is deployed at (--all-tags: each tag)"
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

        curated = catalog.by_tag(t.tag)
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
                                  f"its {len(tags)} tag(s) at their deployed sizes (--all-tags ranks each)")
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
        from vischoose.models import zoo

        for tag, e in self.entries.items():
            if not e.speeds and e.source != "counted here":
                self.entries[tag] = zoo.with_speeds(e, self.zoo)

    def selection(self) -> Selection:
        """What was chosen."""
        return Selection(list(self.entries.values()), self.extra, tuple(self.notes), self.others)


def notes(rec: Recommendation, sel: Selection, shown: int = 5) -> list[str]:
    """Sentences for the report: the other tags of the chosen model's architecture, and the models shown without a
    published top-1 (how to get one)."""
    out = []
    others = sel.others.get(rec.chosen.model)
    if others:
        more = f" and {len(others) - LISTED} more" if len(others) > LISTED else ""
        out.append(f"{rec.chosen.model} is the best published top-1 of {len(others) + 1} tags of its architecture at "
                   f"their deployed sizes; the others: {', '.join(others[:LISTED])}{more} (--all-tags ranks each)")
    unknown = [c.model for c in [rec.chosen, *rec.runners_up[:shown - 1]] if c.value("top1") is None]
    if unknown:
        out.append(f"top-1 unknown for {', '.join(unknown)}: nobody published one, so they rank after the models "
                   f"with one (evaluate it: vischoose evaluate DATA --model {unknown[0]})")
    return out
