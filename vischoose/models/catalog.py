"""The model catalog (data/catalog.toml) and model references.

A model reference is what a user types for a model: a catalog alias (``resnet50``), a timm name
(``resnet50.a1_in1k`` or ``efficientnet_b0``), a hub id (``hf-hub:timm/resnet50.a1_in1k[@rev]``) or a
folder holding config.json + model weights (``local-dir:PATH``, or an existing directory path).
Parsing never imports torch or timm: timm names are checked when a model is built.
"""

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from vischoose import derived
from vischoose.errors import UnknownModelError, UsageError
from vischoose.units import MIB, macs_to_flops

if TYPE_CHECKING:
    from vischoose.models.zoo import Speed

FAMILIES = ("resnet", "vit", "hybrid")
# patterns, compiled (and cached by re) on first use: compiling them at import cost every start-up
_REPO_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}$"
_TIMM_NAME = r"^[a-z0-9_]+(\.[a-z0-9_]+)?$"
_REVISION = r"^[A-Za-z0-9_.\-/]{1,128}$"


class CatalogEntry(NamedTuple):
    """One catalog row: a timm pretrained tag with its published figures (a NamedTuple: see ModelRef)."""

    alias: str
    tag: str
    hf_hub_id: str
    family: str
    label: str
    top1: float | None  # None: no published top-1 (a model outside timm's results)
    top5: float | None
    top1_size: int
    params: int
    gmacs: float
    input_size: int
    license: str
    source: str
    top1_test: float | None = None
    top1_test_size: int | None = None
    ref_cpu_latency_ms: float | None = None
    ref_cpu: str | None = None
    article_top1: float | None = None
    article_img_s: float | None = None
    article_memory_mb: float | None = None
    article_params_m: float | None = None
    article_input_size: int | None = None
    caveat: str | None = None  # where the source article's figure cannot be reproduced with timm
    int8_mib: float | None = None  # the int8 ONNX file of this architecture with its family's recipe, MiB
    # from the zoo (models/zoo.py) and for models outside it (recommendation/unlisted.py):
    speeds: tuple["Speed", ...] = ()  # published speeds of the architecture at input_size, on named machines
    int8_bytes_per_param: float | None = None  # int8 file size per parameter of its recipe (data/families.toml)
    counted: str | None = None  # how the parameters were counted here, where nobody published them
    gmacs_counted: str | None = None  # how the GMACs were counted here, where nobody published them

    @property
    def params_m(self) -> float:
        """Parameters in millions."""
        return self.params / 1e6

    @property
    def gflops(self) -> float:
        """Published GMACs as FLOPs (2 per multiply-accumulate), per image at input_size."""
        return macs_to_flops(self.gmacs)

    def weights_mb(self, bytes_per_param: float = 4.0) -> float:
        """Weight size in MiB at the given bytes per parameter (4 = fp32, 2 = bf16/fp16, 1 = int8)."""
        return self.params * bytes_per_param / MIB


class ModelRef(NamedTuple):
    """A parsed model reference. Like CatalogEntry a NamedTuple: immutable and hashable as a frozen dataclass, at a
    tenth of its class-creation cost, which every `recommend` pays at start-up (runtimes.precision.Variant)."""

    text: str
    kind: str  # "catalog" | "timm" | "hf-hub" | "local-dir"
    name: str  # alias, timm name, repo id, or folder path
    revision: str | None = None
    entry: CatalogEntry | None = None

    @property
    def display(self) -> str:
        """Short name for tables: the alias where there is one."""
        return self.entry.alias if self.entry else self.text

    @property
    def timm_name(self) -> str | None:
        """The timm ``arch.tag`` name, where the reference names one without reading a config."""
        if self.entry:
            return self.entry.tag
        return self.name if self.kind == "timm" else None

    @property
    def path(self) -> Path | None:
        """The model folder of a local-dir reference."""
        return Path(self.name) if self.kind == "local-dir" else None


def catalog_path() -> Path:
    """Where the catalog file lives (inside the package)."""
    return Path(__file__).resolve().parent.parent / "data" / "catalog.toml"


@cache
def load(path: Path | None = None) -> dict[str, CatalogEntry]:
    """Read the catalog into entries keyed by alias, in file order."""
    data = derived.toml(path or catalog_path())  # parsed once, then kept (vischoose.derived)
    return {alias: CatalogEntry(alias=alias, **row) for alias, row in data["models"].items()}


def list_entries(family: str | None = None, pattern: str | None = None) -> list[CatalogEntry]:
    """Catalog entries, optionally filtered by family and an fnmatch pattern on alias or tag."""
    if family is not None and family not in FAMILIES:
        raise UsageError(f"Unknown family '{family}' (expected one of: {', '.join(FAMILIES)}).")
    entries = list(load().values())
    if family:
        entries = [e for e in entries if e.family == family]
    if pattern:
        from fnmatch import fnmatch

        entries = [e for e in entries if fnmatch(e.alias, pattern) or fnmatch(e.tag, pattern)]
    return entries


def by_tag(tag: str) -> CatalogEntry | None:
    """The catalog entry for a timm tag, if the catalog has it."""
    return next((e for e in load().values() if e.tag == tag), None)


def suggest(name: str, extra: list[str] | None = None, n: int = 3) -> list[str]:
    """Close matches for a mistyped model name among the aliases (and extra names)."""
    from difflib import (
        get_close_matches,  # here, on an error path: difflib costs every start-up ~1 ms
    )

    pool = list(load()) + list(extra or [])
    return get_close_matches(name, pool, n=n, cutoff=0.6)


def parse_model_ref(text: str) -> ModelRef:
    """Parse what a user typed for a model into a ModelRef.

    Raises:
        UnknownModelError: the text is no alias and not shaped like any other kind of reference.
        UsageError: a malformed hub id, revision, or a local-dir path that is not a folder.
    """
    text = text.strip()
    entries = load()
    if text in entries:
        return ModelRef(text=text, kind="catalog", name=text, entry=entries[text])
    if text.startswith("hf-hub:"):
        repo, _, revision = text.removeprefix("hf-hub:").partition("@")
        if not re.match(_REPO_ID, repo) or ".." in repo:
            raise UsageError(f"'{text}' is not a valid hub id (expected hf-hub:org/name[@revision]).")
        if revision and not re.match(_REVISION, revision):
            raise UsageError(f"'{revision}' is not a valid revision in '{text}'.")
        entry = by_tag(repo.removeprefix("timm/")) if repo.startswith("timm/") else None
        return ModelRef(text=text, kind="hf-hub", name=repo, revision=revision or None, entry=entry)
    if text.startswith("local-dir:") or "/" in text or text.startswith("."):
        path = Path(text.removeprefix("local-dir:")).expanduser()
        if not path.is_dir():
            raise UsageError(f"Model folder '{path}' does not exist or is not a directory.",
                             hint="A model folder holds config.json and model.safetensors.")
        return ModelRef(text=text, kind="local-dir", name=str(path.resolve()))
    if re.match(_TIMM_NAME, text):
        return ModelRef(text=text, kind="timm", name=text, entry=by_tag(text))
    raise UnknownModelError(text, suggest(text))
