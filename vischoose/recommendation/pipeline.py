"""recommend end to end: preset + overrides, figures from the store or exported files, optional measuring."""

from __future__ import annotations

from pathlib import Path

from vischoose.errors import UsageError
from vischoose.models import catalog
from vischoose.recommendation import presets
from vischoose.recommendation.ranking import Recommendation, build_candidates, recommend
from vischoose.results.records import EvalResult, Profile
from vischoose.runtimes import registry

MEASURE_BUDGET_S = 20.0  # seconds of timed runs per model when recommend --measure profiles candidates


def advise(target: str = "cloud", models: list[str] | None = None, results: list[Path] | None = None,
           measure: bool = False, device: str | None = None, memory_basis: str | None = None,
           show_progress: bool = False, time_budget_s: float | None = None,
           **constraints: float | None) -> Recommendation:
    """Recommend a model for a target preset, using measured figures where this machine (or --results) has them.

    Raises:
        PresetError, UnknownModelError, StoreError, NoModelFitsError.
    """
    preset = presets.load_preset(target).with_overrides(device=device, memory_basis=memory_basis, **constraints)
    if preset.measure.device.startswith("cuda") and all("cuda" not in registry.get(v.runtime).devices
                                                         for v in preset.variants):
        runs = " and ".join(dict.fromkeys(registry.title(v.runtime) for v in preset.variants))
        raise UsageError(f"Target '{preset.name}' deploys only {runs} graphs, which vischoose measures on the "
                         f"CPU: --device {preset.measure.device} admits none of them.",
                         hint="Drop --device, or pick a target that deploys torch on a GPU (cloud, edge).")
    entries, extra = _candidates(preset, models)
    profiles, evals = _figures(results)
    if measure:
        measured = _measure_missing(preset, entries, extra, profiles, show_progress,
                                    time_budget_s or MEASURE_BUDGET_S)
        profiles = profiles + measured
    return recommend(build_candidates(entries, preset, profiles, evals, extra), preset)


def _candidates(preset: presets.Preset, models: list[str] | None) -> tuple[list[catalog.CatalogEntry], list[tuple[str, str]]]:
    names = list(models or preset.models)
    if not names:
        return [e for e in catalog.load().values() if e.family in preset.families], []
    entries, extra = [], []
    for text in dict.fromkeys(names):
        ref = catalog.parse_model_ref(text)
        if ref.entry:
            entries.append(ref.entry)
        else:
            extra.append((ref.text, ref.timm_name or ref.name))
    return entries, extra


def _figures(results: list[Path] | None) -> tuple[list[Profile], list[EvalResult]]:
    from vischoose.results import exchange, store

    if results:
        profiles: list[Profile] = []
        evals: list[EvalResult] = []
        for path in results:
            if not Path(path).is_file():
                raise UsageError(f"Results file '{path}' does not exist.",
                                 hint="Make one on the deployment machine with: vischoose results export --format json --out FILE")
            for record in exchange.read_results_file(Path(path)):
                (profiles if isinstance(record, Profile) else evals).append(record)
        return profiles, evals
    from vischoose.measure.machine import fingerprint

    db = store.open_store()
    return db.profiles(machine=fingerprint()), db.evals(machine=fingerprint())


def _measure_missing(preset: presets.Preset, entries: list[catalog.CatalogEntry], extra: list[tuple[str, str]],
                     profiles: list[Profile], show_progress: bool, time_budget_s: float) -> list[Profile]:
    """Profile what the candidates lack under the preset's protocol: torch at its [measure] dtype (the speed-up
    reference, and the stand-in for graphs), then each exported graph its [deploy] table allows."""
    from vischoose.measure.runner import profile
    from vischoose.recommendation.ranking import matching_profiles
    from vischoose.report.profile import ProfileProgress

    spec = preset.measure
    progress = ProfileProgress() if show_progress else None
    names = [(e.alias, e.tag) for e in entries] + list(extra)
    variants = [preset.plain] + [v for v in preset.variants if registry.is_graph(v.runtime)]
    measured: list[Profile] = []
    for variant in variants:
        todo = [m for m, t in names if not matching_profiles(profiles, m, t, preset, variant)]
        if not todo:
            continue
        protocol = {"threads": spec.threads, "batch_sizes": tuple(sorted({1, *spec.batch_sizes})), "weights": "auto",
                    "time_budget_s": time_budget_s, "progress": progress, "threads_from": preset.name}
        if registry.is_graph(variant.runtime):  # the exported graph on its runtime, on the CPU
            measured += profile(todo, device="cpu", runtime=variant.runtime, dtype=variant.dtype, **protocol)
        else:
            measured += profile(todo, device=spec.device, dtype=spec.dtype, channels_last=spec.channels_last,
                                **protocol)
    return measured
