"""recommend --data DIR: rank on the top-1 the file that would ship reaches on the user's labelled images.

Every candidate that meets the constraints has its deployed variant (runtime and precision, the graph that would
ship) evaluated on DIR with `vischoose evaluate`'s own loop; the ranking is then redone on those figures, and
whatever it now deploys that has no figure yet is evaluated in turn, until every candidate that fits has one.
Results already stored for this machine, model, variant and data set (the same file list and labels, wherever
the folder lives) are reused unless `fresh`. New results go to the results store like any evaluation.

torch, timm and the runtimes are imported only when something is evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vischoose.errors import NoModelFitsError
from vischoose.inference import intervals
from vischoose.recommendation import presets
from vischoose.recommendation.ranking import Candidate, Recommendation
from vischoose.results.records import EvalResult
from vischoose.runtimes import registry
from vischoose.runtimes.precision import Variant

IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class DataSet:
    """The user's labelled images, named by their fingerprint (datasets.LabelledImages.fingerprint)."""

    path: Path
    labels: Path | None
    fingerprint: str
    images: int


def read(data: str | Path, labels: str | Path | None = None) -> DataSet:
    """The data set, read with ImageNet-1k's classes before any model is loaded (every catalog model has them).

    Raises:
        DatasetError: a missing or empty data set, or labels that name no ImageNet class.
    """
    from vischoose.inference import datasets
    from vischoose.inference.prediction import class_labels

    labelled = datasets.read_dataset(data, class_labels({}, IMAGENET_CLASSES), IMAGENET_CLASSES, labels)
    return DataSet(Path(labelled.source), Path(labels) if labels else None, labelled.fingerprint(),
                   len(labelled.samples))


def on_data(evals: list[EvalResult], data: DataSet) -> list[EvalResult]:
    """The results measured on this data set (the same file list and labels)."""
    return [e for e in evals if e.dataset_id == data.fingerprint]


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
            log.append(f"{cand.model} at {cand.variant.label}: top-1 "
                       f"{intervals.wilson(round(result.top1 * result.images / 100), result.images).text()}")


def evaluate_candidate(cand: Candidate, preset: presets.Preset, data: DataSet,
                       progress: Callable[[int, int], None] | None = None) -> EvalResult:
    """The candidate's deployed variant evaluated on the data set (stored in the results store).

    Raises:
        the errors of inference.evaluation.evaluate (a model that cannot load, an export that fails).
    """
    from vischoose.inference import evaluation

    variant, spec = cand.variant, preset.measure
    if registry.is_graph(variant.runtime):
        outcome = evaluation.evaluate(data.path, cand.model, labels=data.labels, runtime=variant.runtime,
                                      precision=variant.precision, progress=progress)
    else:
        outcome = evaluation.evaluate(data.path, cand.model, labels=data.labels, device=spec.device,
                                      dtype=spec.dtype, progress=progress)
    evaluation.save(outcome.result)
    return outcome.result


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
