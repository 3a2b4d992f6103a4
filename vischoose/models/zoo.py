"""timm's zoo as data (data/zoo.json, built by models/zoobuild.py from timm's results CSVs): every pretrained
ImageNet-1k tag with its published accuracy, and the published speed of its architecture on named machines.

Read on first use (a zoo flag, a GPU target, or a model named outside the catalog), never at start-up, and kept in
the home's cache (cache/zoo.marshal) for the next command: the tag names, each architecture's rows marshalled as
bytes of their own (unpacked when first asked for: a command looks at a few hundred architectures of ~1,000), and each
architecture's family and int8 recipe from data/families.toml. A fast format, remade whenever the bytes of the file,
the family table or the code that reads them change. A tag is deployed at its smallest evaluated size: timm evaluates each tag at its
pretrained `input_size` and, where it has a larger `test_input_size`, there too (true of every tag in timm 1.0.31;
tests/unit/test_zoo.py checks against timm).
"""

import marshal
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path
from typing import Collection, Iterator, Mapping, NamedTuple

from vischoose import derived
from vischoose.errors import UsageError
from vischoose.models import families
from vischoose.models.catalog import CatalogEntry

REFERENCE_CPU = "i9_10940x-fp32-compiled"  # the catalog's published CPU latency comes from this machine too
TIMM_BENCHMARK = "timm benchmark"
GLOB = frozenset("*?[")


class Speed(NamedTuple):
    """A published inference speed of one architecture at one input size, on a named machine."""

    machine: str  # the zoo's key, e.g. "5090-amp"
    kind: str  # "cpu" or "cuda"
    device: str  # "NVIDIA GeForce RTX 5090"
    precision: str  # "float16 (AMP)", "bfloat16", "float32"
    software: str  # "torch 2.9.1, CUDA 13.0, torch.compile"
    batch: int
    img_s: float
    step_ms: float  # one batch, ms

    def describe(self, size: int) -> str:
        """'NVIDIA GeForce RTX 5090, float16 (AMP), batch 1024, 224 px (timm benchmark, torch 2.9.1, CUDA 13.0)'."""
        return f"{self.device}, {self.precision}, batch {self.batch}, {size} px ({TIMM_BENCHMARK}, {self.software})"

    def matches(self, dtype: str) -> bool:
        """Whether it ran at a torch dtype ('bfloat16', 'float16', 'float32')."""
        return self.precision.split(" ")[0] == dtype


class Evaluation(NamedTuple):
    """One published ImageNet-1k evaluation of a tag at one input size."""

    size: int
    top1: float
    top5: float
    crop_pct: float
    interpolation: str
    real_top1: float | None  # ImageNet-ReaL labels
    v2_top1: float | None  # ImageNetV2 matched-frequency


class ZooTag(NamedTuple):
    """A pretrained tag and its published evaluations, smallest size (the one it is deployed at) first."""

    tag: str
    params_m: float
    evaluations: tuple[Evaluation, ...]

    @property
    def arch(self) -> str:
        """The architecture: the name before the dot."""
        return self.tag.partition(".")[0]

    @property
    def deployed(self) -> Evaluation:
        """The evaluation at the size the tag is deployed at (timm's pretrained input_size)."""
        return self.evaluations[0]

    @property
    def test(self) -> Evaluation | None:
        """The evaluation at a larger test size, where timm publishes one."""
        return self.evaluations[-1] if len(self.evaluations) > 1 else None


class Packed:
    """arch -> (its tags' rows, its benchmark rows), each unmarshalled from its own bytes when first asked for: the
    zoo's ~1,300 tags and ~1,200 benchmark rows are read as ~1,000 byte strings, and a command unpacks the few hundred
    architectures it looks at (~1 ms for a preset's families against ~5 ms for every row)."""

    def __init__(self, packed: dict[str, bytes]) -> None:
        self.packed = packed
        self.rows: dict[str, tuple[tuple, tuple]] = {}

    def __call__(self, arch: str) -> tuple[tuple, tuple]:
        """(tags: (tag, parameters M, evaluations smallest size first), bench: (size, GMACs, speed cells))."""
        found = self.rows.get(arch)
        if found is None:
            blob = self.packed.get(arch)
            found = self.rows[arch] = marshal.loads(blob) if blob is not None else ((), ())
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self.packed)

    def bench(self, where: tuple[str, int]) -> tuple | None:
        """The benchmark row of an architecture at an input size: (size, GMACs, speed cells), None where unpublished."""
        return next((row for row in self(where[0])[1] if row[0] == where[1]), None)


class Speeds:
    """(arch, size) -> the published speeds there, built from the architecture's rows when first asked for (a
    command needs a few of the ~1,200)."""

    def __init__(self, packed: Packed, machines: dict[str, dict], keys: list[str]) -> None:
        self.packed, self.machines, self.keys = packed, machines, keys
        self.built: dict[tuple[str, int], tuple[Speed, ...]] = {}

    def get(self, where: tuple[str, int], default: tuple[Speed, ...] = ()) -> tuple[Speed, ...]:
        """The speeds of an architecture at an input size (default where nothing was published)."""
        if where not in self.built:
            row = self.packed.bench(where)
            if row is None:
                return default
            cells = row[2]
            self.built[where] = tuple(
                Speed(key, m["kind"], m["device"], m["precision"], m["software"], cells[3 * i + 2], cells[3 * i],
                      cells[3 * i + 1])
                for i, key in enumerate(self.keys) if cells[3 * i] is not None for m in (self.machines[key],))
        return self.built[where]

    def __getitem__(self, where: tuple[str, int]) -> tuple[Speed, ...]:
        if self.packed.bench(where) is None:
            raise KeyError(where)
        return self.get(where)


class Gmacs(Mapping[tuple[str, int], float]):
    """(arch, size) -> multiply-accumulates per image, G (timm's benchmark), read from the architecture's rows."""

    def __init__(self, packed: Packed) -> None:
        self.packed = packed

    def __getitem__(self, where: tuple[str, int]) -> float:
        row = self.packed.bench(where)
        if row is None:
            raise KeyError(where)
        return row[1]

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return ((arch, row[0]) for arch in self.packed for row in self.packed(arch)[1])

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Tags(Mapping[str, ZooTag]):
    """tag -> ZooTag, each built from its architecture's rows when first asked for (a command needs a few hundred of
    ~1,300)."""

    def __init__(self, names: tuple[str, ...], packed: Packed) -> None:
        self.names, self.packed = names, packed
        self.built: dict[str, ZooTag] = {}
        self._known: frozenset[str] | None = None

    def __getitem__(self, tag: str) -> ZooTag:
        found = self.built.get(tag)
        if found is None:
            row = next((r for r in self.packed(tag.partition(".")[0])[0] if r[0] == tag), None)
            if row is None:
                raise KeyError(tag)
            found = self.built[tag] = ZooTag(tag, row[1], tuple(map(Evaluation._make, row[2])))
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, tag: object) -> bool:
        if self._known is None:
            self._known = frozenset(self.names)
        return tag in self._known


class Zoo(NamedTuple):
    """The whole zoo: tags, per-architecture benchmarks, the machines, and where it all comes from."""

    tags: Tags
    gmacs: Gmacs  # (arch, size) -> multiply-accumulates per image, G
    speeds: Speeds
    pretrain: dict[str, str]  # arch -> pretraining data (timm's model_metadata-in1k.csv)
    commit: str
    archs: dict[str, tuple[str, float | None]]  # arch -> (family, int8 bytes per parameter) from the family table
    by_family: dict[str, tuple[str, ...]]  # family -> its tags, as the zoo file lists them

    def family_of(self, arch: str) -> str:
        """The family of an architecture or arch.tag name (the family table's answer, looked up once per zoo file)."""
        return self._table(arch)[0]

    def int8_bytes_per_param(self, arch: str) -> float | None:
        """Bytes per parameter of an int8 file of an architecture or arch.tag, from its family's recipe."""
        return self._table(arch)[1]

    def _table(self, name: str) -> tuple[str, float | None]:
        arch = name.partition(".")[0]
        return self.archs.get(arch) or (families.family_of(arch), families.int8_bytes_per_param(arch))

    def by_arch(self) -> dict[str, list[ZooTag]]:
        """Tags grouped by architecture, best published top-1 at the deployed size first."""
        found: dict[str, list[ZooTag]] = {}
        for t in self.tags.values():
            found.setdefault(t.arch, []).append(t)
        return {a: sorted(ts, key=rank_tag) for a, ts in sorted(found.items())}

    def matching(self, pattern: str) -> list[ZooTag]:
        """Tags whose name matches an fnmatch pattern: on arch.tag where the pattern has a dot, else on the arch."""
        if "." in pattern:
            return [self.tags[name] for name in self.tags if fnmatchcase(name, pattern)]
        return [self.tags[name] for name in self.tags if fnmatchcase(name.partition(".")[0], pattern)]

    def of_families(self, wanted: Collection[str]) -> list[ZooTag]:
        """The tags of every architecture of these families (only they are built), family by family."""
        return [self.tags[name] for family in dict.fromkeys(wanted) for name in self.by_family.get(family, ())]

    @property
    def source(self) -> str:
        """Where the figures come from, for notes."""
        return f"timm results @{self.commit[:7]}"


def rank_tag(t: ZooTag) -> tuple[float, int, str]:
    """Best first: highest top-1 at the deployed size, then the smaller size, then the name."""
    return (-t.deployed.top1, t.deployed.size, t.tag)


def zoo_path() -> Path:
    """Where the zoo file lives (inside the package)."""
    return Path(__file__).resolve().parent.parent / "data" / "zoo.json"


@cache
def load(path: Path | None = None) -> Zoo:
    """Read the zoo file: its parsed rows from the home's cache where they were made from this file's bytes, the family
    table's and the code's (vischoose.derived; ~4 ms in a fresh process), else the JSON (~25 ms with the families),
    then kept where the home is writable. Sources not on disk (a frozen app): the JSON is simply read."""
    text = (path or zoo_path()).read_bytes()
    try:
        code = (families.table_path().read_bytes(), Path(__file__).read_bytes(), Path(families.__file__).read_bytes())
    except OSError:
        return _build(_plain(text))
    return _build(derived.cached(CACHE_FILE, (text, *code), lambda: _plain(text)))


def _plain(text: bytes) -> tuple:
    """The zoo file's rows shaped as the Zoo is built from them (plain values only, so marshal can keep them): the tag
    names, each architecture's tags (evaluations smallest size first) and benchmark rows packed as its own marshal
    bytes, each architecture's family and int8 recipe, and the machines."""
    import json  # only where the cache misses

    data = json.loads(text)
    evaluations: dict[str, list[tuple]] = {}
    params: dict[str, float] = {}
    for tag, size, top1, top5, crop, interp, params_m, real, v2 in data["tags"]:
        evaluations.setdefault(tag, []).append((size, top1, top5, crop, interp, real, v2))
        params[tag] = params_m
    rows: dict[str, tuple[list, list]] = {}
    for tag, evs in evaluations.items():
        rows.setdefault(tag.partition(".")[0], ([], []))[0].append((tag, params[tag], tuple(sorted(evs))))
    for arch, size, macs, *cells in data["bench"]:
        rows.setdefault(arch, ([], []))[1].append((size, macs, tuple(cells)))
    packed = {arch: marshal.dumps((tuple(tags), tuple(bench))) for arch, (tags, bench) in sorted(rows.items())}
    archs = {a: (families.family_of(a), families.int8_bytes_per_param(a))
             for a in sorted({t.partition(".")[0] for t in evaluations})}
    by_family: dict[str, list[str]] = {}
    for tag in evaluations:
        by_family.setdefault(archs[tag.partition(".")[0]][0], []).append(tag)
    keys = list(dict.fromkeys(c.split(":")[0] for c in data["bench_columns"][3:]))
    return (tuple(evaluations), packed, data["machines"], keys, data.get("pretrain", {}), data["source"]["commit"],
            archs, {f: tuple(tags) for f, tags in by_family.items()})


def _build(plain: tuple) -> Zoo:
    names, packed, machines, keys, pretrain, commit, archs, by_family = plain
    rows = Packed(packed)
    return Zoo(Tags(names, rows), Gmacs(rows), Speeds(rows, machines, keys), pretrain, commit, archs, by_family)


CACHE_FILE = "zoo.marshal"


def entry(t: ZooTag, zoo: Zoo, alias: str | None = None) -> CatalogEntry:
    """A zoo tag as a catalog entry, deployed at its smallest evaluated size, with every published speed there."""
    d, test, arch = t.deployed, t.test, t.arch
    speeds = zoo.speeds.get((arch, d.size), ())
    cpu = reference_cpu(speeds)
    return CatalogEntry(
        alias=alias or t.tag, tag=t.tag, hf_hub_id=f"timm/{t.tag}", family=zoo.family_of(arch), label=t.tag,
        top1=d.top1, top5=d.top5, top1_size=d.size, params=round(t.params_m * 1e6),
        gmacs=zoo.gmacs.get((arch, d.size)) or 0.0, input_size=d.size, license="see the model card",
        source=f"{zoo.source} (results-imagenet.csv, benchmark GMACs)",
        top1_test=test.top1 if test else None, top1_test_size=test.size if test else None,
        ref_cpu_latency_ms=cpu.step_ms if cpu else None, ref_cpu=cpu_note(cpu, d.size) if cpu else None,
        speeds=speeds, int8_bytes_per_param=zoo.int8_bytes_per_param(arch), caveat=larger_size_caveat(t))


def larger_size_caveat(t: ZooTag) -> str | None:
    """Where timm also publishes a top-1 at a larger test size, that it is not the one used (the model is deployed at
    its input size)."""
    d, test = t.deployed, t.test
    if test is None:
        return None
    return (f"its top-1 here, {d.top1:.2f}%, is timm's at {d.size} px, the size it is deployed at; timm also "
            f"publishes {test.top1:.2f}% at its {test.size} px test size")


def reference_cpu(speeds: tuple[Speed, ...]) -> Speed | None:
    """The published batch-1 CPU run a latency is taken from: the catalog's machine where it ran, else the first."""
    cpus = [s for s in speeds if s.kind == "cpu" and s.batch == 1]
    return next((s for s in cpus if s.machine == REFERENCE_CPU), cpus[0] if cpus else None)


def cpu_note(s: Speed, size: int) -> str:
    """Where a published CPU latency comes from, in words."""
    return f"{s.device}, batch 1, {s.precision}, {size} px ({TIMM_BENCHMARK}, {s.software})"


def with_speeds(e: CatalogEntry, zoo: Zoo) -> CatalogEntry:
    """A catalog entry with the zoo's published speeds of its architecture at its input size (and the zoo's CPU
    latency where the catalog lists none)."""
    speeds = zoo.speeds.get((e.tag.partition(".")[0], e.input_size), ())
    cpu = reference_cpu(speeds) if e.ref_cpu_latency_ms is None else None
    if cpu:
        e = e._replace(ref_cpu_latency_ms=cpu.step_ms, ref_cpu=cpu_note(cpu, e.input_size))
    return e._replace(speeds=speeds)


def gpu_speed(speeds: tuple[Speed, ...], dtype: str) -> Speed | None:
    """The published GPU throughput to show for a target running at `dtype`: one measured at that precision where
    there is one, else the first GPU's (its label names its precision)."""
    gpus = [s for s in speeds if s.kind == "cuda"]
    return next((s for s in gpus if s.matches(dtype)), gpus[0] if gpus else None)


def is_glob(text: str) -> bool:
    """Whether a model name is an fnmatch pattern."""
    return not GLOB.isdisjoint(text)


def no_match(pattern: str, zoo: Zoo) -> UsageError:
    """The error for a glob that matches nothing: the closest names, with the same wildcard."""
    from difflib import get_close_matches

    stem = pattern.rstrip("*?")
    pool = list(zoo.tags) if "." in pattern else sorted({name.partition(".")[0] for name in zoo.tags})
    close = [] if is_glob(stem) else [c + pattern[len(stem):] for c in get_close_matches(stem, pool, n=3, cutoff=0.6)]
    did = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return UsageError(f"No model in timm's zoo matches '{pattern}' ({len(zoo.tags):,} tags).{did}",
                      hint="A pattern matches architecture names ('resnet50*'), or arch.tag names when it has a dot "
                           "('vit_*.augreg*'); vischoose models --zoo --filter PATTERN lists what it matches.")
