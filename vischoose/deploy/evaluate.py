"""`vischoose evaluate --runtime RUNTIME`: the accuracy of the deployed file (fp32 or int8, built by a graph runtime
of the registry) on labelled images, and how often its top-1 class agrees with the eager fp32 model's.

The model is built into a temporary folder with the runtime's recipe; the images are read, preprocessed and
counted by the evaluation loop every runtime shares (inference.loop), so only the forward pass differs from the
torch evaluation. The runtimes, torch and timm are imported inside functions.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from vischoose.deploy import check, graphcache
from vischoose.errors import DatasetError, UsageError, opt
from vischoose.inference import calibration as calibrating
from vischoose.inference import datasets, intervals
from vischoose.inference.loop import (
    Deployed,
    Evaluation,
    ImageSet,
    Progress,
    Tally,
    build_result,
    run_batches,
)
from vischoose.models.family import model_family
from vischoose.records import EvalResult
from vischoose.requests.evaluate import EvaluateRequest
from vischoose.runtimes import agreement, registry
from vischoose.runtimes.artifact import Artifact
from vischoose.runtimes.base import Forward, GraphRuntime

Phase = Callable[[str], None]  # "building its int8 ExecuTorch (XNNPACK) file": what the evaluation does now

if TYPE_CHECKING:
    import numpy as np
    import torch

    from vischoose.inference.prediction import Classifier


def evaluate(request: EvaluateRequest, progress: Progress | None = None,
             labelled: datasets.LabelledImages | None = None, phase: Phase | None = None) -> Evaluation:
    """Top-1 / top-5 accuracy (%) of a model as the request says: torch eager (sharded under torchrun:
    inference.evaluation), the file a graph runtime would deploy, or a file built elsewhere as written.

    labelled: the images already read (recommend --data passes the held-out half of its one split). With
    request.shard (index, count) only every count-th image from index is counted, alone, not under torchrun (a fleet
    node's share: inference.loop.merge sums the shards into what one process counting every image gets). phase:
    hears each step of a graph's evaluation before its images are counted (loading, building or opening the file).

    Raises:
        DatasetError: a missing or unusable data set, or one where no image could be read.
        UsageError: a file that does not fit the model, torchrun with a graph runtime; model errors as
            prediction.prepare.
        DeployError: (graph runtimes) the export or quantization failed, or the runtime could not run the file.
    """
    from vischoose.inference import evaluation

    world = evaluation.World(0, 1, 0) if request.shard else evaluation.world_from_env()
    if not registry.get(request.runtime).is_graph:
        return evaluation.evaluate_eager(request.data, request.model, request.labels, request.limit,
                                         request.batch_size, request.workers, request.device, request.dtype,
                                         request.checkpoint, progress, request.max_pixels, world, request.shard)
    if world.size > 1:
        raise UsageError(f"{opt('runtime')} {request.runtime} evaluates in one process, but WORLD_SIZE is "
                         f"{world.size} (torchrun).", hint=f"Run vischoose evaluate without torchrun: "
                         f"{registry.title(request.runtime)} uses every core by itself.", field="runtime")
    return evaluate_graph(request, progress, labelled, phase)


def evaluate_graph(request: EvaluateRequest, progress: Progress | None = None,
                   labelled: datasets.LabelledImages | None = None, phase: Phase | None = None) -> Evaluation:
    """Top-1 / top-5 accuracy (%) of the model's deployed file (fp32, or int8 with the runtime's recipe), or of
    request.graph, a file built elsewhere, run as written with the model's preprocessing.

    int8 calibrates on request.calibration (a folder of images) or else on up to 64 of the evaluation images, spread
    over the set; the result's notes say which. A shard (request.shard) counts only its images, but calibrates on the
    whole set, so every shard builds the same file (its sha256 says so, for the merge). `phase` hears each step
    before the images are counted.
    """
    from vischoose.inference.prediction import prepare

    tell, graph, shard = phase or (lambda what: None), request.graph, request.shard
    chosen = registry.get(request.runtime)
    tell(f"loading {request.model}")
    classifier = prepare(request.model, "cpu", "float32", request.checkpoint)
    labelled = (labelled or datasets.read_dataset(request.data, classifier.classes, classifier.num_classes,
                                                  request.labels)).limited(request.limit)
    samples = labelled.samples if shard is None else labelled.samples[shard[0]::shard[1]]
    with tempfile.TemporaryDirectory(prefix="vischoose-eval-") as tmp:
        if graph is None:
            tell(f"building its {request.evaluated_precision} {chosen.title} file")
            artifact, calib, source, notes = _built(chosen, classifier, labelled, request.evaluated_precision,
                                                    request.calibration, Path(tmp), request.max_pixels)
        else:
            tell(f"opening {Path(graph).name}")
            artifact, calib, source, notes = _as_written(chosen, classifier, graph, request.precision)
        tell(f"evaluating {len(samples)} images on {chosen.title} and eager fp32")
        # no spinning: the runtime's idle threads would compete with each batch's eager forward (~10% img/s)
        forward = GraphForward(classifier, chosen.session(artifact, None, interleaved=True))
        counts, failed, seconds = run_batches(classifier, samples, request.batch_size, request.workers,
                                              request.max_pixels, progress, forward=forward)
        digest = _sha256(artifact.path) if shard else None
    found = _deployed(chosen, classifier, artifact, (calib, source, notes), forward, counts[0],
                      artifact.path if graph is not None else None, digest)
    targets = _read_targets(samples, failed)
    tally = Tally(*counts, seconds=seconds - forward.eager_s, reference_hits=forward.reference_hits(targets),
                  eager_s=forward.eager_s, paired=forward.paired(targets), largest_logit=forward.largest_logit)
    result = _graph_result(build_result(classifier, labelled, counts, 0.0, request.batch_size, 1,
                                        empty_ok=shard is not None), artifact, found, tally)
    evaluated = Evaluation(result=result, failed=tuple(failed), workers=request.workers, deployed=found, tally=tally)
    return evaluated if shard else judged(evaluated)


def judged(found: Evaluation) -> Evaluation:
    """A graph's evaluation (one process's, or its shards' merged) with the verdict on its agreement with eager fp32
    over every evaluated image (deploy.check: the one rule and wording) and its top-1 drop's paired 95 % interval
    (Newcombe, inference.intervals: the two top-1s come from the same images)."""
    deployed, tally = found.deployed, found.tally
    if deployed is None or tally is None or not tally.images:
        return found
    verdict = check.judged_evaluated(deployed.precision, deployed.agreement, tally.largest_logit,
                                     found.result.weights != "random")
    extra: dict[str, Any] = {"variant_status": verdict.status, "verdict_note": verdict.note}
    if tally.paired is not None and sum(tally.paired):
        diff = intervals.paired_counts(*tally.paired)
        extra.update(drop_low=diff.low, drop_high=diff.high)
    return replace(found, result=replace(found.result, **extra))


def _graph_result(result: EvalResult, artifact: Artifact, found: Deployed, tally: Tally) -> EvalResult:
    """The loop's result with what the graph adds: its runtime, precision and recipe, its own images/s (eager's
    forward passes left out), its agreement with eager fp32 and eager's own top-1 on the same images."""
    return replace(result, runtime=found.runtime, recipe=artifact.recipe, file_mb=artifact.file_mb, graph=found.graph,
                   dtype="float32" if artifact.precision == "fp32" else artifact.precision,
                   images_per_s=_rate(tally.images, tally.seconds), agreement_top1=found.agreement.top1_agreement,
                   agreement_images=found.agreement.n_images,
                   fp32_top1=None if tally.reference_hits is None else 100.0 * tally.reference_hits / tally.images)


def _deployed(chosen: GraphRuntime, classifier: "Classifier", artifact: Artifact, built: tuple[Any, str, list[str]],
              forward: "GraphForward", images: int, graph: str | None, digest: str | None) -> Deployed:
    """How the evaluated file was built (`built`: calibration images, their source, notes) and ran; a doubt about
    int8's speed is dropped where the file ran faster than eager fp32 on the same batches."""
    calib, source, notes = built
    notes = [kept for n in notes if (kept := artifact.note_given_speed(n, _rate(images, forward.graph_s),
                                                                        _rate(images, forward.eager_s)))]
    return Deployed(precision=artifact.precision, family=model_family(classifier.loaded.model),
                    recipe=artifact.recipe, file_mb=artifact.file_mb, export_s=artifact.build_s,
                    quantize_s=artifact.quantize_s, calibration=source,
                    calibration_images=0 if calib is None else len(calib), agreement=forward.agreement(),
                    eager_images_per_s=_rate(images, forward.eager_s), runtime=chosen.name,
                    runtime_version=chosen.version(), notes=tuple(notes), graph=graph, sha256=digest,
                    graph_images_per_s=_rate(images, forward.graph_s))


def _built(chosen: GraphRuntime, classifier: "Classifier", labelled: datasets.LabelledImages, precision: str,
           calibration: str | Path | None, tmp: Path, max_pixels: int) -> tuple[Artifact, Any, str, list[str]]:
    """The model built with the runtime's recipe into `tmp`, and how int8 was calibrated: the file export ships by
    default (a runtime that plans memory for its largest batch builds for batch 1; the session then runs each batch
    as calls of what the file takes)."""
    calib, source, notes = (None, "none", []) if precision == "fp32" else \
        _calibration(classifier, labelled, calibration, max_pixels)
    size = int(classifier.data_config["input_size"][-1])
    artifact, _ = graphcache.build(chosen, classifier.loaded, precision, tmp / f"model{chosen.suffix}", size, calib,
                                   link=True)
    if artifact.calibration == "none":
        calib, source, notes = None, "none", _unused(calibration, artifact.recipe)
    if artifact.note:
        notes.append(artifact.note)
    return artifact, calib, source, notes


def _as_written(chosen: GraphRuntime, classifier: "Classifier", graph: str | Path,
                precision: str | None) -> tuple[Artifact, None, str, list[str]]:
    """A file built elsewhere, checked to take the model's input (and to come from it, where the file says)."""
    artifact = chosen.open_file(graph, precision)
    size = int(classifier.data_config["input_size"][-1])
    name, tag = Path(artifact.path).name, classifier.loaded.tag
    if artifact.input_size and artifact.input_size != size:
        raise UsageError(f"{name} takes {artifact.input_size} px inputs, but {tag} preprocesses images to {size} px.",
                         hint=f"Pass the {opt('model')} the file was exported from, at the input size it was "
                         "exported at.", field="model")
    made_from = chosen.inspect(Path(artifact.path)).model
    if made_from and made_from != tag:
        raise UsageError(f"{name} was exported from {made_from}, not {opt('model')} {tag}.",
                         hint=f"Pass {opt('model')} {made_from}: its preprocessing and labels are the file's.",
                         field="model")
    return artifact, None, "as written", [artifact.note] if artifact.note else []


def _read_targets(samples: tuple[datasets.Sample, ...], failed: list[tuple[str, str]]) -> list[int]:
    """The classes of the images that could be read, in evaluation order (the loop does not shuffle)."""
    unread = {path for path, _ in failed}
    return [s.target for s in samples if s.path not in unread]


def _sha256(path: str | Path) -> str:
    """sha256 of a file and its companions (external data, an IR's weights), by name."""
    import hashlib

    from vischoose.runtimes.files import companions

    digest = hashlib.sha256()
    for each in companions(path):
        digest.update(each.name.encode() + b"\0" + each.read_bytes())
    return digest.hexdigest()


def _unused(folder: str | Path | None, recipe: str | None) -> list[str]:
    """The note for a --calibration folder that the recipe did not need."""
    if folder is None:
        return []
    return [f"{opt('calibration')} was not used: the {recipe} recipe quantizes activations at run time"]


def _calibration(classifier: "Classifier", labelled: datasets.LabelledImages, folder: str | Path | None,
                 max_pixels: int) -> tuple["np.ndarray", str, list[str]]:
    """Preprocessed calibration images: the user's folder, else a spread sample of the evaluation images."""
    import numpy as np

    from vischoose.inference.prediction import describe_preprocessing

    if folder is not None:
        found = calibrating.load_calibration(folder, describe_preprocessing(classifier.data_config))
        skipped = f" ({len(found.skipped)} unreadable skipped)" if found.skipped else ""
        return found.batch, "folder", [f"calibrated on {len(found.batch)} images from {folder}{skipped}"]
    picked = ImageSet(tuple(calibrating.spread(labelled.samples, calibrating.MAX_CALIBRATION)),
                      classifier.transform, max_pixels)
    tensors = [x.numpy() for x, _, _, err in (picked[i] for i in range(len(picked))) if err is None]
    if not tensors:
        raise DatasetError(f"Data set '{labelled.source}': none of the {len(picked)} images sampled to calibrate "
                           "int8 can be read.", hint=f"Check the images, or pass {opt('calibration')} FOLDER.")
    note = (f"calibrated on {len(tensors)} of the evaluation images: the int8 accuracy may be slightly optimistic; "
            f"pass {opt('calibration')} FOLDER to calibrate on other images")
    return np.stack(tensors).astype(np.float32), "evaluation images", [note]


def _rate(images: int, seconds: float) -> float | None:
    return images / seconds if seconds > 0 else None


class GraphForward:
    """Each batch through the file (its logits are the ones counted) and through eager fp32 (agreement)."""

    def __init__(self, classifier: "Classifier", forward: Forward) -> None:
        self.classifier, self.forward = classifier, forward
        self.graph_s = self.eager_s = 0.0
        self.images = self.agreeing = 0
        self.max_abs_diff, self.cosine = 0.0, 1.0
        self.eager_top1: list[int] = []  # eager fp32's top-1 class per image, in order
        self.graph_top1: list[int] = []  # the file's top-1 class per image, in order
        self.largest_logit = 0.0  # eager fp32's largest |logit| so far (the fp32 tolerance scales with it)

    def __call__(self, batch: "torch.Tensor") -> "torch.Tensor":
        import numpy as np
        import torch

        start = time.perf_counter()
        graph = self.forward(np.ascontiguousarray(batch.numpy(), dtype=np.float32))
        middle = time.perf_counter()
        eager = self.classifier.logits(batch).numpy()
        self.eager_top1.extend(int(i) for i in eager.argmax(axis=-1))
        self.graph_top1.extend(int(i) for i in graph.argmax(axis=-1))
        self.largest_logit = max(self.largest_logit, float(np.abs(eager).max()))
        self.graph_s += middle - start
        self.eager_s += time.perf_counter() - middle
        found = agreement.compare(eager, graph)
        self.images += found.n_images
        self.agreeing += round(found.top1_agreement * found.n_images)
        self.max_abs_diff = max(self.max_abs_diff, found.max_abs_diff)
        self.cosine = min(self.cosine, found.cosine)
        return torch.from_numpy(graph)

    def reference_hits(self, targets: list[int]) -> int | None:
        """How many of the images so far eager fp32 classifies right, given their classes in order."""
        if not self.eager_top1 or len(targets) != len(self.eager_top1):
            return None
        return sum(p == t for p, t in zip(self.eager_top1, targets))

    def paired(self, targets: list[int]) -> tuple[int, int, int, int] | None:
        """The paired table of eager fp32's and the file's top-1 against the classes (intervals.paired_table)."""
        if len(targets) != len(self.eager_top1):
            return None
        return intervals.paired_table([e == t for e, t in zip(self.eager_top1, targets)],
                                      [g == t for g, t in zip(self.graph_top1, targets)])

    def agreement(self) -> agreement.Agreement:
        """Agreement with eager fp32 over every batch so far."""
        share = self.agreeing / self.images if self.images else 0.0
        return agreement.Agreement(n_images=self.images, top1_agreement=share, max_abs_diff=self.max_abs_diff,
                                 cosine=self.cosine)
