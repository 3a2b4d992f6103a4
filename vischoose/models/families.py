"""Model families from timm architecture names (data/families.toml): the family a preset or `--families` names, and
the structural family (convolutional, depthwise, transformer, hybrid, mlp) that picks the int8 recipe, known without
building the model. Read on first use: `recommend` on the curated catalog never opens the file."""

from functools import cache
from pathlib import Path
from typing import Callable, NamedTuple

from vischoose import derived
from vischoose.errors import UsageError, opt

OTHER = "other"  # an architecture no row matches
TEST = "test"  # timm's tiny test models: in the zoo, never among "all"
ALL = "all"
_WILD = frozenset("*?[")


class Row(NamedTuple):
    """One row of the table: architecture patterns -> family and int8 recipe."""

    family: str
    recipe: str
    archs: tuple[str, ...]


class Table(NamedTuple):
    """The family table: rows in file order, int8 bytes per parameter per recipe, and the patterns indexed by their
    first character ("": those starting with a wildcard, also in every letter's list) as (row number, matcher) in row
    order: a name is tried against the few rows that can match it."""

    rows: tuple[Row, ...]
    int8_bytes_per_param: dict[str, float]
    index: dict[str, list[tuple[int, Callable[[str], bool]]]]

    def row_of(self, arch: str) -> Row | None:
        """The first row whose patterns match the architecture name (the part before the dot)."""
        arch = arch.partition(".")[0]
        candidates = self.index.get(arch[:1]) or self.index.get("", [])
        return next((self.rows[i] for i, matches in candidates if matches(arch)), None)

    @property
    def names(self) -> tuple[str, ...]:
        """Every family name, in file order."""
        return tuple(dict.fromkeys(r.family for r in self.rows))


def matcher(pattern: str) -> Callable[[str], bool]:
    """An fnmatch pattern as a test: equality or a prefix where it is that simple (no regular expression to compile:
    the table's ~370 patterns would cost each zoo command ~10 ms), fnmatch otherwise."""
    if _WILD.isdisjoint(pattern):
        return pattern.__eq__
    head = pattern[:-1]
    if pattern.endswith("*") and _WILD.isdisjoint(head):
        return lambda name: name.startswith(head)
    from fnmatch import fnmatchcase

    return lambda name: fnmatchcase(name, pattern)


def table_path() -> Path:
    """Where the family table lives (inside the package)."""
    return Path(__file__).resolve().parent.parent / "data" / "families.toml"


@cache
def load(path: Path | None = None) -> Table:
    """Read the family table."""
    data = derived.toml(path or table_path())  # parsed once, then kept (vischoose.derived)
    rows = tuple(Row(r["family"], r["recipe"], tuple(r["archs"])) for r in data["row"])
    index: dict[str, list[tuple[int, Callable[[str], bool]]]] = {}
    for i, row in enumerate(rows):
        for p in row.archs:
            index.setdefault("" if p[0] in _WILD else p[0], []).append((i, matcher(p)))
    anywhere = index.get("", [])  # patterns that start with a wildcard join every letter's list, in row order
    index = {k: sorted(v + anywhere, key=lambda c: c[0]) if k else v for k, v in index.items()}
    return Table(rows, dict(data["int8_bytes_per_param"]), index)


@cache
def family_of(arch: str) -> str:
    """The family of a timm architecture or arch.tag name ('resnet50d' -> 'resnet'); 'other' where no row matches."""
    row = load().row_of(arch)
    return row.family if row else OTHER


def recipe_of(arch: str) -> str | None:
    """The structural family that picks the int8 recipe, where the table knows the architecture."""
    row = load().row_of(arch)
    return row.recipe if row else None


def int8_bytes_per_param(arch: str) -> float | None:
    """Bytes per parameter of an int8 file of this architecture, from its recipe (None: no row matches)."""
    recipe = recipe_of(arch)
    return load().int8_bytes_per_param.get(recipe) if recipe else None


def is_family(name: str) -> bool:
    """Whether the table has a family of that name."""
    return name in load().names


def resolve(names: list[str] | tuple[str, ...], field: str | None = None) -> tuple[str, ...]:
    """Family names as given ('all' = every family but timm's test models), checked against the table; field: the
    request field that names them, for the error.

    Raises:
        UsageError: a name that is no family, with the closest ones.
    """
    known = load().names
    out: list[str] = []
    for name in (n.strip() for n in names):
        if name == ALL:
            out += [f for f in known if f != TEST]
        elif name in known:
            out.append(name)
        else:
            raise unknown_family(name, known, field)
    return tuple(dict.fromkeys(out))


def unknown_family(name: str, known: tuple[str, ...], field: str | None = None) -> UsageError:
    """The error for a family the table does not have: the closest names, and where to see them all."""
    from difflib import get_close_matches

    close = get_close_matches(name, known, n=3, cutoff=0.6)
    did = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    where = f" in {opt(field)}" if field else ""
    return UsageError(f"Unknown family '{name}'{where} ({len(known)} families, or 'all').{did}",
                      hint="vischoose models --zoo lists the families; vischoose/data/families.toml maps names to "
                           "them.", field=field)
