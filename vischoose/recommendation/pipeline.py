"""recommend end to end: preset + overrides, figures from the store or exported files, optional measuring."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from vischoose.errors import UsageError
from vischoose.models import catalog
from vischoose.recommendation import presets
from vischoose.recommendation.ranking import Recommendation, build_candidates, recommend
from vischoose.results.records import EvalResult, Profile
from vischoose.runtimes import registry
from vischoose.runtimes.precision import Variant

if TYPE_CHECKING:
    from vischoose.recommendation import ondata

MEASURE_BUDGET_S = 20.0  # seconds of timed runs per model when recommend --measure profiles candidates


def advise(target: str = "cloud", models: list[str] | None = None, results: list[Path] | None = None,
           measure: bool | str = False, device: str | None = None, memory_basis: str | None = None,
           show_progress: bool = False, time_budget_s: float | None = None, fresh: bool = False,
           data: str | Path | None = None, labels: str | Path | None = None,
           max_accuracy_drop: float | None = None, wait: bool = True, **constraints: float | None) -> Recommendation:
    """Recommend a model for a target preset, using measured figures where this machine (or --results) has them.

    measure: False, True / "decision" (only what can change the answer) or "all" (every candidate and variant);
    fresh: measure (and evaluate) again what this machine already measured under the preset's protocol;
    data: a labelled folder or CSV: rank on the top-1 each fitting candidate's deployed file reaches on it
    (recommendation.ondata); labels: its label file, as for evaluate; max_accuracy_drop: with data, int8
    candidates are the accuracy-aware int8 file that loses at most that many top-1 points on it (else rejected);
    wait: False (--no-wait) stops with MeasurementBusyError rather than wait for another measurement on this machine.

    Raises:
        PresetError, UnknownModelError, StoreError, NoModelFitsError, UsageError (an unknown measure mode).
    """
    preset = _preset(target, device, memory_basis, constraints)
    entries, extra = _candidates(preset, models)
    dataset = _dataset(data, labels, max_accuracy_drop)  # a bad data set fails here, before anything is measured
    profiles, evals = _figures(results)
    evals = shippable(evals, dataset)
    lines, skipped = _unused_limit(preset, dataset), []
    if measure:
        from vischoose.recommendation import measuring  # only here: recommend on stored figures starts fast

        mode = "decision" if measure is True else str(measure)
        if mode not in measuring.MODES:
            raise UsageError(f"Unknown --measure mode '{mode}' (expected one of: {', '.join(measuring.MODES)}).")
        measurer = _Measurer(preset, show_progress, time_budget_s or MEASURE_BUDGET_S, wait)
        try:
            measured, log = measuring.measure_for_decision(preset, entries, extra, profiles, evals, measurer, mode,
                                                           fresh, on_plan=measurer.plan)
        finally:
            measurer.close()
        profiles, lines, skipped = profiles + measured, lines + log.lines(), log.skipped
    flagged = _flagged(entries, extra, preset, profiles)

    def rank(found: list[EvalResult]) -> Recommendation:
        return recommend(build_candidates(entries, preset, profiles, found, extra), preset)

    if dataset is None:
        rec = rank(evals)
    else:
        from vischoose.recommendation import ondata

        evals, evaluated = ondata.settle(rank, preset, dataset, evals, _evaluator(show_progress), fresh)
        lines += [f"evaluated on {dataset.path} ({dataset.images} images): {line}" for line in evaluated]
        rec = rank(evals)
        rec = rec._replace(notes=rec.notes + tuple(ondata.separation_notes(rec, evals)))
    rec = rec._replace(notes=rec.notes + tuple(flagged), unmeasured_why=tuple(skipped))
    return rec._replace(measure_log=tuple(lines)) if lines else rec


def _flagged(entries: list[catalog.CatalogEntry], extra: list[tuple[str, str]], preset: presets.Preset,
             profiles: list[Profile]) -> list[str]:
    """Lines for the candidates whose timings here are flagged and not reused (recommendation.reuse)."""
    if not any(p.flagged for p in profiles):
        return []
    from vischoose.recommendation import reuse

    return reuse.flagged_lines(entries, extra, preset, profiles)


def _preset(target: str, device: str | None, memory_basis: str | None,
            constraints: dict[str, float | None]) -> presets.Preset:
    preset = presets.load_preset(target).with_overrides(device=device, memory_basis=memory_basis, **constraints)
    if preset.measure.device.startswith("cuda") and all("cuda" not in registry.get(v.runtime).devices
                                                         for v in preset.variants):
        runs = " and ".join(dict.fromkeys(registry.title(v.runtime) for v in preset.variants))
        raise UsageError(f"Target '{preset.name}' deploys only {runs} graphs, which vischoose measures on the "
                         f"CPU: --device {preset.measure.device} admits none of them.",
                         hint="Drop --device, or pick a target that deploys torch on a GPU (cloud, edge).")
    return preset


def _dataset(data: str | Path | None, labels: str | Path | None,
             max_accuracy_drop: float | None = None) -> "ondata.DataSet | None":
    if labels is not None and data is None:
        raise UsageError("--labels maps the classes of --data: it needs --data DIR.",
                         hint="Add --data with your labelled images, or drop --labels.")
    if max_accuracy_drop is not None and data is None:
        raise UsageError("--max-accuracy-drop is measured on labelled images: it needs --data DIR.",
                         hint="Add --data with your labelled images (class folders or a path,label CSV).")
    if max_accuracy_drop is not None and not max_accuracy_drop >= 0:  # nan too
        raise UsageError(f"--max-accuracy-drop is top-1 points int8 may lose, 0 or more (got {max_accuracy_drop:g}).")
    if data is None:
        return None
    from vischoose.recommendation import ondata  # only with --data

    return ondata.read(data, labels, max_accuracy_drop)


def shippable(evals: list[EvalResult], dataset: "ondata.DataSet | None") -> list[EvalResult]:
    """The results that stand for a variant this run ships, for measuring and ranking alike: never a file evaluated
    as written (`evaluate --graph`: its recipe and float layers are its own); with --data, the results on that data
    set at this run's --max-accuracy-drop (ondata.on_data); without, no accuracy-aware int8 (it ships only with
    --data)."""
    plain = [e for e in evals if e.graph is None]
    if dataset is None:
        return [e for e in plain if e.max_accuracy_drop is None]
    from vischoose.recommendation import ondata

    return ondata.on_data(plain, dataset)


def _unused_limit(preset: presets.Preset, dataset: "ondata.DataSet | None") -> list[str]:
    """A line for the report when --max-accuracy-drop has nothing to act on: the target deploys no int8 on a runtime
    that keeps layers in float."""
    if dataset is None or dataset.max_accuracy_drop is None:
        return []
    from vischoose.recommendation import ondata

    if any(ondata.accuracy_aware(v, dataset) for v in preset.variants):
        return []
    return [f"--max-accuracy-drop {dataset.max_accuracy_drop:g} changes nothing: target '{preset.name}' deploys no "
            "int8 on a runtime that can keep layers in float"]


def _evaluator(show_progress: bool) -> "Callable[..., EvalResult]":
    """Evaluates one candidate on the data set, with a progress bar on a terminal."""
    from vischoose.recommendation import ondata
    from vischoose.report.tables import ProgressBar

    def run(cand, preset: presets.Preset, data) -> EvalResult:
        bar = ProgressBar(f"{cand.model} at {cand.variant.label}") if show_progress else None
        try:
            return ondata.evaluate_candidate(cand, preset, data, bar)
        finally:
            if bar:
                bar.close()
    return run


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
    from vischoose.results import store

    if results:
        from vischoose.results import exchange

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


class _Measurer:
    """Profiles (model, tag) pairs at one variant under the preset's protocol, with progress and an ETA."""

    def __init__(self, preset: presets.Preset, show_progress: bool, time_budget_s: float, wait: bool = True) -> None:
        from vischoose.report.profile import ProfileProgress

        self.preset, self.time_budget_s, self.wait = preset, time_budget_s, wait
        self.progress = ProfileProgress() if show_progress else None
        self.runs, self.started, self.left = 0, time.monotonic(), 0

    def plan(self, runs_left: int) -> None:
        """The most runs still to come, this one included (measuring.Plan): the ETA's basis."""
        self.left = runs_left

    def __call__(self, todo: list[tuple[str, str]], variant: Variant) -> list[Profile]:
        from vischoose.measure.runner import profile

        spec = self.preset.measure
        protocol = {"threads": spec.threads, "batch_sizes": tuple(sorted({1, *spec.batch_sizes})), "weights": "auto",
                    "time_budget_s": self.time_budget_s, "progress": self._progress(variant),
                    "threads_from": self.preset.name, "wait": self.wait}
        if registry.is_graph(variant.runtime):  # the exported file on its runtime, on the CPU
            found = profile([m for m, _ in todo], device="cpu", runtime=variant.runtime, dtype=variant.dtype,
                            **protocol)
        else:
            found = profile([m for m, _ in todo], device=spec.device, dtype=spec.dtype,
                            channels_last=spec.channels_last, **protocol)
        self.runs += len(todo)
        return found

    def _progress(self, variant: Variant) -> "Callable[[str, str, float], None] | None":
        if self.progress is None:
            return None
        progress, done, left, spent = self.progress, self.runs, self.left, time.monotonic() - self.started
        of = f" of at most {done + left}" if left > 1 else ""

        def show(model: str, what: str, elapsed: float) -> None:
            eta_s = spent / done * left - elapsed if done else 0.0  # this run overran the average: no guess
            eta = f", at most ~{_duration(eta_s)} left" if eta_s >= 1 else ""
            progress(f"{model} at {variant.label} (run {done + 1}{of}{eta})", what, elapsed)
        return show

    def close(self) -> None:
        """Clear the progress line."""
        if self.progress:
            self.progress.close()


def _duration(seconds: float) -> str:
    """'45 s' or '3 min 20 s'."""
    seconds = max(round(seconds), 0)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"
