"""recommend --data DIR: rank on the top-1 the file that would ship reaches on the user's labelled images.

Every candidate that meets the constraints has its deployed variant (runtime and precision, the graph that would
ship) evaluated on DIR with `vischoose evaluate`'s own loop; the ranking is then redone on those figures, and
whatever it now deploys that has no figure yet is evaluated in turn, until every candidate that fits has one.
With `max_accuracy_drop`, an int8 candidate on a runtime that reverts layers is the accuracy-aware int8 file
(`vischoose export --max-accuracy-drop`): built with the layers int8 hurts most in float until the drop holds on
half the images, then evaluated as written on the other half; a limit no set of float layers meets rejects it.
Results already stored for this machine, model, variant and data set (the same file list and labels, wherever
the folder lives) are reused unless `fresh`. New results go to the results store like any evaluation.

torch, timm and the runtimes are imported only when something is evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from vischoose import presets
from vischoose.errors import NoModelFitsError
from vischoose.inference import intervals
from vischoose.recommendation.candidates import Candidate
from vischoose.recommendation.choose import Recommendation
from vischoose.recommendation.wording import drop_interval, float_layers, missed_limit, undecided
from vischoose.records import EvalResult
from vischoose.runtimes import registry
from vischoose.runtimes.precision import Variant

if TYPE_CHECKING:
    from vischoose.deploy.accuracy import Split

IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class DataSet:
    """The user's labelled images, named by their fingerprint (datasets.LabelledImages.fingerprint)."""

    path: Path
    labels: Path | None
    fingerprint: str
    images: int
    max_accuracy_drop: float | None = None  # top-1 points accuracy-aware int8 may lose against fp32 on it
    split: "Split | None" = None  # with max_accuracy_drop: the images that choose float layers, and the held-out ones


def read(data: str | Path, labels: str | Path | None = None, max_accuracy_drop: float | None = None) -> DataSet:
    """The data set, read with ImageNet-1k's classes before any model is loaded (every catalog model has them).

    Raises:
        DatasetError: a missing or empty data set, labels that name no ImageNet class, or, with max_accuracy_drop,
        too few images to split into the half that chooses the float layers and the half that measures the drop.
    """
    from vischoose.deploy.accuracy import split_samples
    from vischoose.inference import datasets
    from vischoose.inference.prediction import class_labels

    labelled = datasets.read_dataset(data, class_labels({}, IMAGENET_CLASSES), IMAGENET_CLASSES, labels)
    # split once, here: export chooses the float layers on one part, evaluation measures the other
    split = None if max_accuracy_drop is None else split_samples(labelled.samples)
    return DataSet(Path(labelled.source), Path(labels) if labels else None, labelled.fingerprint(),
                   len(labelled.samples), max_accuracy_drop, split)


def on_data(evals: list[EvalResult], data: DataSet) -> list[EvalResult]:
    """The results measured on this data set (the same file list and labels) that this run would ship: an int8
    graph of a runtime that reverts layers counts only at the same --max-accuracy-drop (or plain, without it)."""
    return [e for e in evals if e.dataset_id == data.fingerprint
            and (not _reverts(e.runtime, e.dtype) or e.max_accuracy_drop == data.max_accuracy_drop)]


def accuracy_aware(variant: Variant, data: DataSet) -> bool:
    """Whether this run ships the variant as accuracy-aware int8."""
    return data.max_accuracy_drop is not None and _reverts(variant.runtime, variant.dtype)


def _reverts(runtime: str, dtype: str) -> bool:
    return dtype == "int8" and registry.is_graph(runtime) and registry.get(runtime).reverts_layers


def deployed_eval(evals: list[EvalResult], cand: Candidate) -> EvalResult | None:
    """The latest result of the candidate's deployed variant among `evals` (already limited to one data set)."""
    own = [e for e in evals if e.tag == cand.tag and _is_variant(e, cand.variant)]
    return max(own, key=lambda e: e.created_at) if own else None


def _is_variant(ev: EvalResult, variant: Variant) -> bool:
    if ev.runtime != variant.runtime:
        return False
    return ev.runtime == registry.TORCH or ev.dtype == variant.dtype


Evaluator = Callable[[Candidate, presets.Preset, DataSet], EvalResult]
Rank = Callable[[list[EvalResult]], Recommendation]


def settle(rank: Rank, preset: presets.Preset, data: DataSet, stored: list[EvalResult], evaluate: Evaluator,
           fresh: bool = False) -> tuple[list[EvalResult], list[str]]:
    """Evaluate every fitting candidate's deployed variant on `data` until the ranking on those figures is stable.

    rank: the recommendation from a list of results on this data set. Returns the results on this data set
    (stored and new) and one log line per candidate. Each (model, variant) is evaluated at most once.
    """
    found = [] if fresh else on_data(stored, data)
    log: list[str] = []
    done: set[tuple[str, Variant]] = set()
    while True:
        try:
            rec = rank(found)
        except NoModelFitsError:
            return found, log  # nothing fits on the figures that need no data: the caller reports it
        todo = [c for c in [rec.chosen, *rec.runners_up]
                if deployed_eval(found, c) is None and (c.tag, c.variant) not in done]
        if not todo:
            return found, log
        for cand in todo:
            done.add((cand.tag, cand.variant))
            result = evaluate(cand, preset, data)
            found.append(result)
            log.append(_logged(cand, result))


def _logged(cand: Candidate, result: EvalResult) -> str:
    """'vit_s16 at onnxruntime int8: top-1 ...', and for accuracy-aware int8 its float layers and held-out drop."""
    head = f"{cand.model} at {cand.variant.label}"
    if result.max_accuracy_drop is None:
        return f"{head}: top-1 {intervals.wilson(round(result.top1 * result.images / 100), result.images).text()}"
    if not result.accuracy_met:
        return f"{head}: rejected, {missed_limit(result)}"
    size = f" at {result.file_mb:.2f} MiB" if result.file_mb is not None else ""
    drop = "?" if result.drop_pts is None else f"{result.drop_pts:.1f}"
    return (f"{head}: accuracy-aware int8{size}, {float_layers(result)} in float, top-1 "
            f"{intervals.wilson(round(result.top1 * result.images / 100), result.images).text()} on "
            f"{result.images} held-out images, drop {drop} points{drop_interval(result)} "
            f"(limit {result.max_accuracy_drop:g}){undecided(result)}")


def evaluate_candidate(cand: Candidate, preset: presets.Preset, data: DataSet,
                       progress: Callable[[int, int], None] | None = None) -> EvalResult:
    """The candidate's deployed variant evaluated on the data set (stored in the results store).

    Raises:
        the errors of deploy.evaluate.evaluate (a model that cannot load, an export that fails).
    """
    from vischoose.deploy.evaluate import evaluate
    from vischoose.requests.evaluate import EvaluateRequest
    from vischoose.results.store import keep_eval

    variant, spec = cand.variant, preset.measure
    if accuracy_aware(variant, data):
        return _accuracy_aware(cand, data, progress)
    labels = str(data.labels) if data.labels else None
    if registry.is_graph(variant.runtime):
        request = EvaluateRequest(str(data.path), cand.model, labels=labels, runtime=variant.runtime,
                                  precision=variant.precision)
    else:
        request = EvaluateRequest(str(data.path), cand.model, labels=labels, device=spec.device, dtype=spec.dtype)
    outcome = evaluate(request, progress)
    keep_eval(outcome.result)
    return outcome.result


def _accuracy_aware(cand: Candidate, data: DataSet,
                    progress: Callable[[int, int], None] | None) -> EvalResult:
    """The accuracy-aware int8 file built as `vischoose export --max-accuracy-drop` builds it, then evaluated as
    written on the held-out images (stored). When no set of float layers met the limit, or only all of them did, the
    best drop reached, not stored: the candidate's int8 is rejected and the next run tries again.

    Raises:
        the errors of deploy.export.export_model and deploy.evaluate.evaluate.
    """
    import tempfile

    from vischoose.deploy.evaluate import evaluate
    from vischoose.deploy.export import export_model
    from vischoose.inference.datasets import LabelledImages
    from vischoose.requests.evaluate import EvaluateRequest
    from vischoose.requests.export import ExportRequest
    from vischoose.results.store import keep_eval

    runtime, labels = registry.get(cand.variant.runtime), str(data.labels) if data.labels else None
    with tempfile.TemporaryDirectory(prefix="vischoose-aware-") as tmp:
        out = Path(tmp) / f"{cand.tag.replace('/', '_')}-int8{runtime.suffix}"
        built = export_model(ExportRequest(cand.model, str(out), format=runtime.format, precision="int8",
                                           data=str(data.path), labels=labels,
                                           max_accuracy_drop=data.max_accuracy_drop), split=data.split)
        aware = built.accuracy
        layers = list(aware.reverted_weights or aware.reverted) if aware else []
        facts = {"max_accuracy_drop": data.max_accuracy_drop, "reverted_layers": layers,
                 "quantizable_layers": (aware.candidates or None) if aware else None,  # None: nothing ranked
                 "choice_drop_pts": aware.choice_drop_pts if aware else None}
        # met only with every layer in float: that is the fp32 graph, not int8 (the preset's fp32, if listed, ships)
        if built.out is None or aware is None or (aware.reverted and len(aware.reverted) == aware.candidates):
            return EvalResult(model=cand.model, tag=cand.tag, dataset=str(data.path), dataset_id=data.fingerprint,
                              images=aware.held_out_images if aware else 0, top1=aware.top1 if aware else 0.0,
                              top5=float("nan"), fp32_top1=aware.fp32_top1 if aware else None,
                              runtime=runtime.name, dtype="int8", accuracy_met=False,
                              drop_low=aware.drop_low if aware else None,
                              drop_high=aware.drop_high if aware else None, **facts)
        held_out = LabelledImages(str(data.path), data.split.held_out if data.split else ())
        outcome = evaluate(EvaluateRequest(str(data.path), cand.model, labels=labels, graph=str(out)), progress,
                           labelled=held_out)
    result = replace(outcome.result, dataset=str(data.path), dataset_id=data.fingerprint, graph=None,
                     recipe=built.shipped.recipe, accuracy_met=True, **facts)
    keep_eval(result)
    return result


def separation_notes(rec: Recommendation, evals: list[EvalResult]) -> list[str]:
    """For each runner-up whose measured top-1 cannot be told apart from the chosen model's on this data: say so,
    and about how many images would tell them apart."""
    mine = deployed_eval(evals, rec.chosen)
    if mine is None:
        return []
    chosen = intervals.from_percent(mine.top1, mine.images)
    notes = []
    for other in rec.runners_up:
        theirs = deployed_eval(evals, other)
        if theirs is None:
            continue
        interval = intervals.from_percent(theirs.top1, theirs.images)
        if not chosen.overlaps(interval):
            continue
        needed = intervals.images_to_separate(mine.top1, theirs.top1)
        more = (f"about {needed:,} images each would separate {mine.top1:.1f} % from {theirs.top1:.1f} %"
                if needed else "their top-1 is the same")
        notes.append(f"{rec.chosen.model} and {other.model} are indistinguishable on this data: top-1 "
                     f"{chosen.low:.1f}-{chosen.high:.1f} % and {interval.low:.1f}-{interval.high:.1f} % (95 % CI, "
                     f"{mine.images} images) overlap; {more}")
    return notes
