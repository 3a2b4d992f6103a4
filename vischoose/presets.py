"""Deployment targets as data: read and validate presets/*.toml into frozen Preset values."""

import os
import re
from pathlib import Path
from typing import Any, NamedTuple

from vischoose import derived
from vischoose.errors import PresetError, opt
from vischoose.models import catalog
from vischoose.models.catalog import FAMILIES
from vischoose.runtimes import registry
from vischoose.runtimes.precision import PRECISIONS, TORCH_DTYPES, Variant, precision_of

RANK_KEYS = ("top1", "latency_ms", "throughput", "memory_mb", "params_m", "gflops", "serve_qps", "cost_per_million")
MEMORY_BASES = ("weights", "peak")
LATENCY_BASES = ("model", "end-to-end")  # what max_latency_ms limits: the model's batch-1 p90, or a photo's whole


class MeasureSpec(NamedTuple):
    """How a profile for this target is measured (a NamedTuple, as Constraints: see runtimes.precision.Variant)."""

    device: str = "auto"
    threads: int | None = None
    batch_sizes: tuple[int, ...] = (1,)
    dtype: str = "float32"
    channels_last: bool = False

    @property
    def batch_size(self) -> int:
        """The largest batch size: the one throughput constraints refer to."""
        return max(self.batch_sizes)


class Constraints(NamedTuple):
    """Limits a model must meet; None means no limit. Names match Profile fields."""

    max_memory_mb: float | None = None
    max_latency_ms: float | None = None
    min_throughput: float | None = None
    min_top1: float | None = None
    max_params_m: float | None = None
    memory_basis: str = "weights"  # "weights" at the target dtype, or measured "peak"
    max_cold_start_ms: float | None = None  # a fresh process's file -> first answer (Profile.cold_start_ms)
    latency_basis: str = "model"  # max_latency_ms on the model's batch-1 p90, or "end-to-end" (decode + preprocess too)


class ServeSpec(NamedTuple):
    """[serve]: the target as a service (recommend --serve): the p99 bound, the rate to sustain, one machine's price
    per hour in USD; None where not given."""

    slo_ms: float | None = None
    target_qps: float | None = None
    price_per_hour: float | None = None


class Preset(NamedTuple):
    """A deployment target: protocol, constraints, candidates and ranking (a NamedTuple: replaced, never mutated, and
    cheaper to create than a dataclass at every start-up)."""

    name: str
    description: str
    path: Path
    measure: MeasureSpec = MeasureSpec()
    constraints: Constraints = Constraints()
    families: tuple[str, ...] = FAMILIES
    models: tuple[str, ...] = ()
    prefer: tuple[str, ...] = ()
    sort: tuple[str, ...] = ("-top1",)
    deploy: tuple[Variant, ...] = ()  # [deploy]: what the target runs; () = torch at the [measure] dtype
    serve: ServeSpec = ServeSpec()  # [serve]: the service recommend --serve judges each model as

    @property
    def plain(self) -> Variant:
        """torch at the [measure] dtype: the variant `vischoose profile --target` measures."""
        return Variant(registry.TORCH, precision_of(self.measure.dtype))

    @property
    def variants(self) -> tuple[Variant, ...]:
        """The runtimes and precisions the target allows, in the preset's order."""
        return self.deploy or (self.plain,)

    def with_overrides(self, **values: Any) -> "Preset":
        """A copy with constraint or measure values replaced where the value is not None."""
        cons = {k: v for k, v in values.items() if v is not None and k in Constraints._fields}
        meas = {k: v for k, v in values.items() if v is not None and k in MeasureSpec._fields}
        serve = {k: v for k, v in values.items() if v is not None and k in ServeSpec._fields}
        unknown = set(values) - set(cons) - set(meas) - set(serve) - {k for k, v in values.items() if v is None}
        if unknown:
            raise PresetError(f"Unknown override(s): {', '.join(sorted(unknown))}.")
        preset = self._replace(constraints=self.constraints._replace(**cons), measure=self.measure._replace(**meas),
                               serve=self.serve._replace(**serve))
        _check_constraints(preset.constraints, "command line")
        _check_serve(serve, "command line")
        return preset


def presets_dir() -> Path:
    """Where the built-in presets live: $VISCHOOSE_PRESETS, else the presets/ folder shipped with vischoose."""
    env = os.environ.get("VISCHOOSE_PRESETS")
    if env:
        if not Path(env).is_dir():
            raise PresetError(f"VISCHOOSE_PRESETS={env} is not a folder.",
                              hint="Point it at a folder of preset .toml files, or unset it for the built-in presets.")
        return Path(env)
    here = Path(__file__).resolve().parent  # the vischoose package folder
    for candidate in (here / "_presets", here.parent / "presets"):  # installed wheel, source checkout
        if candidate.is_dir():
            return candidate
    return here.parent / "presets"


def list_presets() -> list[Preset]:
    """Every preset in the presets folder, by name.

    Raises:
        PresetError: the folder holds no preset (a VISCHOOSE_PRESETS folder replaces the built-in ones).
    """
    folder = presets_dir()
    found = [load_preset(p) for p in sorted(folder.glob("*.toml"))]
    if not found:
        raise PresetError(f"No preset files (*.toml) in {folder}.",
                          hint="VISCHOOSE_PRESETS replaces the built-in presets: put .toml files there, or unset it.")
    return found


def load_preset(name_or_path: str | Path) -> Preset:
    """Read a preset by name (presets/NAME.toml) or from a .toml file.

    Raises:
        PresetError: not found, not TOML, unknown keys, or bad values (the file, table and key named).
    """
    path = _find(str(name_or_path))
    try:
        data = derived.toml(path)  # parsed once, then kept (vischoose.derived)
    except ValueError as err:  # tomllib.TOMLDecodeError, UnicodeDecodeError
        raise PresetError(f"{path}: not valid TOML ({err}).") from err
    except OSError as err:
        raise PresetError(f"{path}: cannot be read ({err.strerror}).") from err
    return _parse(path, data)


def _find(text: str) -> Path:
    if text.endswith(".toml") or os.sep in text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise PresetError(f"Preset file '{text}' does not exist.")
        return path
    path = presets_dir() / f"{text}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in presets_dir().glob("*.toml"))
        raise PresetError(f"Unknown preset '{text}' (known: {', '.join(known)}).",
                          hint="vischoose presets lists them; pass a .toml file for your own.")
    return path


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "a list",
               dict: "a table"}
_TABLES = {"name": str, "description": str, "measure": dict, "constraints": dict, "candidates": dict, "rank": dict,
           "deploy": dict, "serve": dict}


def _parse(path: Path, data: dict[str, Any]) -> Preset:
    _known_keys(path, None, data, _TABLES)
    measure = _parse_measure(path, data.get("measure", {}))
    constraints = _parse_constraints(path, data.get("constraints", {}))
    cands = data.get("candidates", {})
    _known_keys(path, "candidates", cands, {"families": list, "prefer": list, "models": list})
    families = tuple(_strings(path, "candidates", "families", cands.get("families", list(FAMILIES))))
    for fam in families:
        if fam not in FAMILIES and not _zoo_family(fam):
            raise PresetError(f"{path} [candidates]: unknown family '{fam}' in 'families' "
                              f"(expected: {', '.join(FAMILIES)}, or a family of timm's zoo: vischoose models --zoo)."
                              f"{_did_you_mean(fam, _all_families())}")
    models = tuple(_strings(path, "candidates", "models", cands.get("models", [])))
    prefer = tuple(_strings(path, "candidates", "prefer", cands.get("prefer", [])))
    for key, names in (("models", models), ("prefer", prefer)):
        for name in names:
            _check_model_name(path, key, name, models)
    rank = data.get("rank", {})
    _known_keys(path, "rank", rank, {"sort": list})
    sort = tuple(_strings(path, "rank", "sort", rank.get("sort", ["-top1"])))
    for key in sort:
        if key.lstrip("-") not in RANK_KEYS:
            raise PresetError(f"{path} [rank]: unknown sort key '{key}' (expected one of: {', '.join(RANK_KEYS)}, "
                              "with '-' for higher is better).")
    return Preset(name=data.get("name", path.stem), description=data.get("description", ""), path=path,
                  measure=measure, constraints=constraints, families=families,
                  models=models, prefer=prefer, sort=sort,
                  deploy=_parse_deploy(path, data["deploy"]) if "deploy" in data else (),
                  serve=_parse_serve(path, data.get("serve", {})))


def _parse_serve(path: Path, table: dict[str, Any]) -> ServeSpec:
    """[serve]: slo_ms, target_qps, price_per_hour, each a positive number."""
    _known_keys(path, "serve", table, {key: (int, float) for key in ServeSpec._fields})
    _check_serve(table, f"{path} [serve]")
    return ServeSpec(**{key: float(value) for key, value in table.items()})


def _check_serve(values: dict[str, Any], where: str) -> None:
    """Raise PresetError on a [serve] value that is not a positive number; `where` names the file and table, or
    "command line" (fields named)."""
    for key, value in values.items():
        if not value > 0:  # nan too
            name = opt(key) if where == "command line" else f"{where}: '{key}'"
            raise PresetError(f"{name} must be greater than 0 (got {value:g}).")


def _zoo_family(name: str) -> bool:
    """Whether the family table knows the name (read only for a family beyond the catalog's three)."""
    from vischoose.models import families

    return families.is_family(name)


def _all_families() -> tuple[str, ...]:
    from vischoose.models import families

    return FAMILIES + families.load().names


def _parse_deploy(path: Path, table: dict[str, Any]) -> tuple[Variant, ...]:
    """[deploy]: one key per runtime listing the precisions the target runs it at (torch = ["fp16"])."""
    for runtime in table:
        if runtime not in registry.KINDS:
            raise PresetError(f"{path} [deploy]: unknown runtime '{runtime}' "
                              f"(expected one of: {', '.join(registry.names())})."
                              f"{_did_you_mean(runtime, registry.names())}")
    _known_keys(path, "deploy", table, {runtime: list for runtime in registry.names()})
    variants: list[Variant] = []
    for runtime, listed in table.items():
        for precision in dict.fromkeys(_strings(path, "deploy", runtime, listed)):
            if precision not in PRECISIONS:
                raise PresetError(f"{path} [deploy]: unknown precision '{precision}' in '{runtime}' "
                                  f"(expected one of: {', '.join(PRECISIONS)}).{_did_you_mean(precision, PRECISIONS)}")
            runs = registry.kind(runtime).precisions
            if precision not in runs:
                raise PresetError(f"{path} [deploy]: {runtime} cannot run {precision} (it runs: {', '.join(runs)}).")
            variants.append(Variant(runtime, precision))
    if not variants:
        raise PresetError(f"{path} [deploy]: no runtime and precision listed, so no model could be deployed "
                          "(e.g. onnxruntime = [\"fp32\", \"int8\"]; leave [deploy] out for torch at the "
                          "[measure] dtype).")
    return tuple(variants)


# a model name that is no catalog alias must name a timm arch.tag, a hub id or a folder; a bare word such as
# 'resnet5O' is a typo of an alias far more often than a timm architecture someone meant (checked without timm,
# so that recommend stays instant)
_EXPLICIT_NAME = r"^([a-z0-9_]+\.[a-z0-9_]+|hf-hub:.+|local-dir:.+)$"  # compiled on first use


def _check_model_name(path: Path, key: str, name: str, listed: tuple[str, ...]) -> None:
    """Raise PresetError unless `name` is an alias, a catalog tag, a name in [candidates] models, or explicit."""
    entries = catalog.load()
    explicit = re.match(_EXPLICIT_NAME, name)
    if name in entries or catalog.by_tag(name) or (key == "prefer" and name in listed) or explicit:
        return
    hint = _did_you_mean(name, [n for n in (*entries, *listed) if n != name])
    raise PresetError(f"{path} [candidates]: unknown model '{name}' in '{key}' (expected a catalog alias, "
                      f"timm arch.tag, hf-hub:ID or local-dir:PATH).{hint}",
                      hint="vischoose models lists the aliases.")


def _did_you_mean(name: str, pool) -> str:
    from difflib import get_close_matches

    close = get_close_matches(name, list(pool), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def _parse_measure(path: Path, table: dict[str, Any]) -> MeasureSpec:
    _known_keys(path, "measure", table, {"device": str, "threads": int, "batch_size": (int, list),
                                         "dtype": str, "channels_last": bool})
    batch = table.get("batch_size", 1)
    batches = tuple(batch) if isinstance(batch, list) else (batch,)
    if not batches or any(not isinstance(b, int) or isinstance(b, bool) or b < 1 for b in batches):
        raise PresetError(f"{path} [measure]: 'batch_size' must be a positive integer or a list of them.")
    threads = table.get("threads")
    if threads is not None and threads < 1:
        raise PresetError(f"{path} [measure]: 'threads' must be at least 1 (got {threads}).")
    dtype = table.get("dtype", "float32")
    if dtype not in TORCH_DTYPES:
        raise PresetError(f"{path} [measure]: unknown dtype '{dtype}' (expected one of: {', '.join(TORCH_DTYPES)}).")
    device = table.get("device", "auto")
    if not (device in ("auto", "cpu", "cuda") or device.startswith("cuda:")):
        raise PresetError(f"{path} [measure]: unknown device '{device}' (expected auto, cpu, cuda or cuda:N).")
    return MeasureSpec(device=device, threads=threads, batch_sizes=batches, dtype=dtype,
                       channels_last=table.get("channels_last", False))


def _parse_constraints(path: Path, table: dict[str, Any]) -> Constraints:
    numeric = ("max_memory_mb", "max_latency_ms", "min_throughput", "min_top1", "max_params_m", "max_cold_start_ms")
    _known_keys(path, "constraints", table, {**{k: (int, float) for k in numeric}, "memory_basis": str,
                                             "latency_basis": str})
    constraints = Constraints(**table)
    _check_constraints(constraints, f"{path} [constraints]")
    return constraints


def _check_constraints(c: Constraints, where: str) -> None:
    """Raise PresetError on a bad value; `where` names the file and table, or "command line" (fields named)."""
    def name(key: str) -> str:
        return opt(key) if where == "command line" else f"{where}: '{key}'"

    for key in ("max_memory_mb", "max_latency_ms", "min_throughput", "max_params_m", "max_cold_start_ms"):
        value = getattr(c, key)
        if value is not None and value <= 0:
            raise PresetError(f"{name(key)} must be greater than 0 (got {value:g}).")
    if c.min_top1 is not None and not 0 <= c.min_top1 <= 100:
        raise PresetError(f"{name('min_top1')} must be a percentage from 0 to 100 (got {c.min_top1:g}).")
    if c.memory_basis not in MEMORY_BASES:
        raise PresetError(f"{name('memory_basis')} must be one of: {', '.join(MEMORY_BASES)} "
                          f"(got '{c.memory_basis}').")
    if c.latency_basis not in LATENCY_BASES:
        raise PresetError(f"{name('latency_basis')} must be one of: {', '.join(LATENCY_BASES)} "
                          f"(got '{c.latency_basis}').")


def _known_keys(path: Path, table: str | None, data: dict[str, Any], schema: dict[str, Any]) -> None:
    where = f"{path} [{table}]" if table else str(path)
    for key, value in data.items():
        if key not in schema:
            raise PresetError(f"{where}: unknown key '{key}' (expected one of: {', '.join(schema)})."
                              f"{_did_you_mean(key, schema)}")
        kind = schema[key]
        if isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise PresetError(f"{where}: '{key}' must not be a boolean.")
        if not isinstance(value, kind):
            expected = " or ".join(_TYPE_NAMES[k] for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise PresetError(f"{where}: '{key}' must be {expected} (got {_TYPE_NAMES.get(type(value), type(value).__name__)}).")


def _strings(path: Path, table: str, key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PresetError(f"{path} [{table}]: '{key}' must be a list of strings.")
    return list(value)


def to_toml(preset: Preset) -> str:
    """The preset file's text as stored."""
    return preset.path.read_text(encoding="utf-8")
