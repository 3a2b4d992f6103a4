"""Accuracy-aware int8 (`vischoose export --precision int8 --data DIR --max-accuracy-drop PTS`): quantize with the
family's recipe, and while top-1 on the user's labelled images drops more than PTS points below the same model's
fp32 graph, put the layers int8 hurts most back in float and measure again.

The labelled images are split in two, deterministically and spread over the classes: the layers are chosen on one
part (which also calibrates int8 unless --calibration is given) and the drop is reported, and judged, on the
other, so the figure shipped with the file is not fitted to itself. Layers are ranked once, by the error each adds
when quantized (the runtime's `rank_layers`; ONNX Runtime: runtimes.sensitivity, OpenVINO: runtimes.ovsensitivity), and reverted in doubling steps
(1, 2, 4, ... layers, then all of them), at most `max_steps` quantizations. Only a runtime with `reverts_layers`
does this; numpy and the runtime are imported inside functions.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from vischoose.errors import DatasetError, opt
from vischoose.inference import images as image_io
from vischoose.inference.calibration import spread
from vischoose.inference.datasets import Sample
from vischoose.inference.intervals import paired_difference
from vischoose.runtimes import files
from vischoose.runtimes.artifact import Artifact
from vischoose.runtimes.base import Forward, GraphRuntime

if TYPE_CHECKING:
    import numpy as np

    from vischoose.models.loading import LoadedModel

MAX_STEPS = 8  # quantizations after the plain one: 1, 2, 4, ..., 64 layers, or all of them sooner
MAX_PART_IMAGES = 500  # per part, spread over it: both stay in memory preprocessed (about 0.6 MB an image at 224 px)
MAX_RANKING_IMAGES = 16  # images the per-layer ranking runs on: it reads every layer's tensors
BATCH = 32  # images per forward pass when counting top-1


@dataclass(frozen=True)
class Split:
    """The labelled images that choose the float layers, and the held-out ones the drop is reported on."""

    choice: tuple[Sample, ...]
    held_out: tuple[Sample, ...]


@dataclass(frozen=True)
class Labelled:
    """Preprocessed images (float32 NCHW) and their class indices."""

    batch: "np.ndarray"
    targets: "np.ndarray"

    def __len__(self) -> int:
        return len(self.targets)


@dataclass(frozen=True)
class Step:
    """One quantization of the search: how many layers stayed in float, and the top-1 drop on the choice images."""

    reverted: int
    choice_drop_pts: float


@dataclass(frozen=True)
class AccuracyAware:
    """What the search found: the float layers, and top-1 (%) on the held-out images against fp32 and plain int8."""

    max_drop_pts: float
    met: bool  # the drop is within max_drop_pts on the choice images and on the held-out ones
    reverted: tuple[str, ...]  # node names in the fp32 graph, most sensitive first
    reverted_weights: tuple[str, ...]  # their weights, which name the model's layers (blocks.0.0.conv_pw.weight)
    choice_images: int
    held_out_images: int
    fp32_top1: float  # held-out
    int8_top1: float  # plain int8, held-out
    top1: float  # the int8 graph with `reverted` in float, held-out
    drop_pts: float  # fp32_top1 - top1
    plain_drop_pts: float  # fp32_top1 - int8_top1
    choice_drop_pts: float  # the same drop on the choice images
    steps: tuple[Step, ...]
    candidates: int  # quantizable layers the ranking covered
    drop_low: float | None = None  # drop_pts' 95 % interval on the held-out images (paired, Newcombe), points
    drop_high: float | None = None
    plain_drop_low: float | None = None  # plain_drop_pts' interval
    plain_drop_high: float | None = None

    def decided(self) -> str:
        """How the limit judged the shipped file: within, above, or indistinguishable from it at this sample size (the
        drop's 95 % interval holds values on both sides of the limit)."""
        if self.drop_low is None or self.drop_high is None:
            return "within" if self.met else "above"
        if self.drop_low <= self.max_drop_pts < self.drop_high:
            return (f"{'within' if self.met else 'above'} on these images, but indistinguishable from the limit at "
                    f"this sample size ({self.held_out_images} held-out images: the interval holds both sides)")
        return "within" if self.met else "above"
    ranking: str = "sqnr-lost-db"  # per-layer SQNR lost, fp32 vs int8 (runtimes.sensitivity)


@dataclass(frozen=True)
class _Candidate:
    artifact: Artifact
    layers: tuple[Any, ...]
    drop: float  # choice images, points


def split_samples(samples: Sequence[Sample]) -> Split:
    """Alternate images of each class (by path) between the two parts; classes alternate which part gets the odd
    image, so both stay spread over the classes and about the same size. A part over MAX_PART_IMAGES keeps that
    many, evenly spaced over it (so over the classes).

    Raises:
        DatasetError: fewer than two images.
    """
    by_class: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_class[sample.target].append(sample)
    parts: tuple[list[Sample], list[Sample]] = ([], [])
    for rank, target in enumerate(sorted(by_class)):
        for i, sample in enumerate(sorted(by_class[target], key=lambda s: s.path)):
            parts[(i + rank) % 2].append(sample)
    if not parts[0] or not parts[1]:
        raise DatasetError(f"{opt('max_accuracy_drop')} needs at least 2 labelled images (got {len(samples)}): half choose "
                           "the float layers, half measure the drop.", hint="Give a few labelled images per class.")
    return Split(*(tuple(spread(part, MAX_PART_IMAGES)) for part in parts))


def preprocess(samples: Sequence[Sample], transform: Any, source: str,
               max_pixels: int = image_io.MAX_PIXELS) -> Labelled:
    """The images decoded and preprocessed as evaluation does (inference.loop.ImageSet); unreadable ones dropped.

    Raises:
        DatasetError: none of the images can be read.
    """
    import numpy as np

    from vischoose.inference.loop import ImageSet

    images = ImageSet(tuple(samples), transform, max_pixels)
    read = [(x.numpy(), target) for x, target, _, err in (images[i] for i in range(len(images))) if err is None]
    if not read:
        raise DatasetError(f"Data set '{source}': none of {len(images)} images can be read.")
    return Labelled(np.stack([x for x, _ in read]).astype(np.float32), np.array([t for _, t in read]))


def top1(forward: Forward, labelled: Labelled) -> float:
    """Top-1 accuracy (%) of a forward pass on preprocessed labelled images."""
    found = right(forward, labelled)
    return 100.0 * sum(found) / len(found)


def right(forward: Forward, labelled: Labelled) -> list[bool]:
    """Whether the forward pass gets each image's class right, in order (what a paired interval is taken over)."""
    hits: list[bool] = []
    for i in range(0, len(labelled), BATCH):
        logits = forward(labelled.batch[i:i + BATCH])
        hits += [bool(h) for h in logits.argmax(axis=-1) == labelled.targets[i:i + BATCH]]
    return hits


def within(drop_pts: float, max_drop_pts: float) -> bool:
    """Whether a top-1 drop meets the limit (1e-9 points of slack: 100 * hits / n is not exact in binary)."""
    return drop_pts <= max_drop_pts + 1e-9


def revert_sizes(candidates: int, max_steps: int) -> list[int]:
    """How many layers each step keeps in float: 1, 2, 4, ... below `candidates`, then all; at most max_steps."""
    sizes, k = [], 1
    while k < candidates:
        sizes.append(k)
        k *= 2
    return (sizes + [candidates])[:max_steps] if candidates else []


def revert_within(runtime: GraphRuntime, loaded: "LoadedModel", fp32: Artifact, plain: Artifact, out: Path,
                  calibration: "np.ndarray | None", choice: Labelled, held_out: Labelled, max_drop_pts: float,
                  max_steps: int = MAX_STEPS) -> tuple[Artifact, AccuracyAware]:
    """The int8 artifact with the fewest float layers found within max_drop_pts on the choice images (else the one
    closest to it), and the search's figures; candidate files go in folders beside `out`, all but that one removed.
    """
    fp32_run = runtime.session(fp32, None)
    fp32_choice = top1(fp32_run, choice)
    best = _Candidate(plain, (), fp32_choice - top1(runtime.session(plain, None), choice))
    steps, ranked = [Step(0, best.drop)], []
    if not within(best.drop, max_drop_pts):
        ranked = runtime.rank_layers(loaded, fp32, plain, choice.batch[:MAX_RANKING_IMAGES], calibration)
        for i, n in enumerate(revert_sizes(len(ranked), max_steps)):
            found = _try(runtime, loaded, fp32, _candidate_path(out, i), calibration, ranked[:n], fp32_choice,
                         choice)
            steps.append(Step(n, found.drop))
            best = _better(best, found)
            if within(found.drop, max_drop_pts):
                break
    return best.artifact, _figures(runtime, fp32_run, plain, best, held_out, max_drop_pts, len(choice),
                                   tuple(steps), len(ranked))


def _candidate_path(out: Path, step: int) -> Path:
    """Step `step`'s file: a sub-folder beside `out`, same file name (external data files keep their reference)."""
    folder = out.parent / f"revert-{step}"
    folder.mkdir(exist_ok=True)
    return folder / out.name


def _try(runtime: GraphRuntime, loaded: "LoadedModel", fp32: Artifact, path: Path, calibration: "np.ndarray | None",
         layers: Sequence[Any], fp32_choice: float, choice: Labelled) -> _Candidate:
    """int8 with `layers` in float, and its top-1 drop on the choice images."""
    artifact = runtime.build_excluding(loaded, fp32, path, calibration, [layer.node for layer in layers])
    return _Candidate(artifact, tuple(layers), fp32_choice - top1(runtime.session(artifact, None), choice))


def _better(best: _Candidate, found: _Candidate) -> _Candidate:
    """The candidate with the lower drop (the earlier, with fewer float layers, on a tie); the other's file removed."""
    keep, drop = (found, best) if found.drop < best.drop else (best, found)
    if drop.layers:  # the plain int8 file is the export's own variant: never removed here
        files.remove(drop.artifact.path)
    return keep


def _figures(runtime: GraphRuntime, fp32_run: Forward, plain: Artifact, best: _Candidate, held_out: Labelled,
             max_drop_pts: float, choice_images: int, steps: tuple[Step, ...], candidates: int) -> AccuracyAware:
    """The chosen candidate measured on the held-out images, beside fp32 and plain int8."""
    fp32 = right(fp32_run, held_out)
    plain_right = right(runtime.session(plain, None), held_out)
    shipped = right(runtime.session(best.artifact, None), held_out) if best.layers else plain_right
    drop, plain_drop = paired_difference(fp32, shipped), paired_difference(fp32, plain_right)
    met = within(best.drop, max_drop_pts) and within(drop.value, max_drop_pts)
    return AccuracyAware(max_drop_pts=max_drop_pts, met=met, reverted=tuple(layer.node for layer in best.layers),
                         reverted_weights=tuple(layer.weight for layer in best.layers), choice_images=choice_images,
                         held_out_images=len(held_out), fp32_top1=100.0 * sum(fp32) / len(fp32),
                         int8_top1=100.0 * sum(plain_right) / len(fp32), top1=100.0 * sum(shipped) / len(fp32),
                         drop_pts=drop.value, plain_drop_pts=plain_drop.value, choice_drop_pts=best.drop, steps=steps,
                         candidates=candidates, drop_low=drop.low, drop_high=drop.high, plain_drop_low=plain_drop.low,
                         plain_drop_high=plain_drop.high)
