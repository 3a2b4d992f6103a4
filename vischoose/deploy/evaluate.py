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
from typing import TYPE_CHECKING, Any

from vischoose.deploy import graphcache
from vischoose.errors import DatasetError, UsageError, opt
from vischoose.inference import calibration as calibrating
from vischoose.inference import datasets
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

if TYPE_CHECKING:
    import numpy as np
    import torch

    from vischoose.inference.prediction import Classifier


def evaluate(request: EvaluateRequest, progress: Progress | None = None,
             labelled: datasets.LabelledImages | None = None) -> Evaluation:
    """Top-1 / top-5 accuracy (%) of a model as the request says: torch eager (sharded under torchrun:
    inference.evaluation), the file a graph runtime would deploy, or a file built elsewhere as written.

    labelled: the images already read (recommend --data passes the held-out half of its one split). With
    request.shard (index, count) only every count-th image from index is counted, alone, not under torchrun (a fleet
    node's share: inference.loop.merge sums the shards into what one process counting every image gets).

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
    return evaluate_graph(request, progress, labelled)


def evaluate_graph(request: EvaluateRequest, progress: Progress | None = None,
                   labelled: datasets.LabelledImages | None = None) -> Evaluation:
    """Top-1 / top-5 accuracy (%) of the model's deployed file (fp32, or int8 with the runtime's recipe), or of
    request.graph, a file built elsewhere, run as written with the model's preprocessing.

    int8 calibrates on request.calibration (a folder of images) or else on up to 64 of the evaluation images, spread
    over the set; the result's notes say which. A shard (request.shard) counts only its images, but calibrates on the
    whole set, so every shard builds the same file (its sha256 says so, for the merge).
    """
    from vischoose.inference.prediction import prepare

    precision, graph, shard = request.precision, request.graph, request.shard
    if graph is None:
        precision = request.evaluated_precision
    chosen = registry.get(request.runtime)
    classifier = prepare(request.model, "cpu", "float32", request.checkpoint)
    labelled = (labelled or datasets.read_dataset(request.data, classifier.classes, classifier.num_classes,
                                                  request.labels)).limited(request.limit)
    samples = labelled.samples if shard is None else labelled.samples[shard[0]::shard[1]]
    with tempfile.TemporaryDirectory(prefix="vischoose-eval-") as tmp:
        if graph is None:
            artifact, calib, source, notes = _built(chosen, classifier, labelled, precision, request.calibration,
                                                    Path(tmp), request.max_pixels)
        else:
            artifact, calib, source, notes = _as_written(chosen, classifier, graph, precision)
        # no spinning: the runtime's idle threads would compete with each batch's eager forward (~10% img/s)
        forward = GraphForward(classifier, chosen.session(artifact, None, interleaved=True))
        counts, failed, seconds = run_batches(classifier, samples, request.batch_size, request.workers,
                                              request.max_pixels, progress, forward=forward)
        digest = _sha256(artifact.path) if shard else None
    found = Deployed(precision=artifact.precision, family=model_family(classifier.loaded.model),
                     recipe=artifact.recipe, file_mb=artifact.file_mb, export_s=artifact.build_s,
                     quantize_s=artifact.quantize_s, calibration=source,
                     calibration_images=0 if calib is None else len(calib), agreement=forward.agreement(),
                     eager_images_per_s=_rate(counts[0], forward.eager_s), runtime=chosen.name,
                     runtime_version=chosen.version(), notes=tuple(notes),
                     graph=artifact.path if graph is not None else None, sha256=digest)
    hits = forward.reference_hits(_read_targets(samples, failed))
    tally = Tally(*counts, seconds=seconds - forward.eager_s, reference_hits=hits, eager_s=forward.eager_s)
    result = _graph_result(build_result(classifier, labelled, counts, 0.0, request.batch_size, 1,
                                        empty_ok=shard is not None), artifact, found, tally)
    return Evaluation(result=result, failed=tuple(failed), workers=request.workers, deployed=found, tally=tally)


def _graph_result(result: EvalResult, artifact: Artifact, found: Deployed, tally: Tally) -> EvalResult:
    """The loop's result with what the graph adds: its runtime, precision and recipe, its own images/s (eager's
    forward passes left out), its agreement with eager fp32 and eager's own top-1 on the same images."""
    return replace(result, runtime=found.runtime, recipe=artifact.recipe, file_mb=artifact.file_mb, graph=found.graph,
                   dtype="float32" if artifact.precision == "fp32" else artifact.precision,
                   images_per_s=_rate(tally.images, tally.seconds), agreement_top1=found.agreement.top1_agreement,
                   agreement_images=found.agreement.n_images,
                   fp32_top1=None if tally.reference_hits is None else 100.0 * tally.reference_hits / tally.images)


def _built(chosen: GraphRuntime, classifier: "Classifier", labelled: datasets.LabelledImages, precision: str,
           calibration: str | Path | None, tmp: Path, max_pixels: int) -> tuple[Artifact, Any, str, list[str]]:
    """The model built with the runtime's recipe into `tmp`, and how int8 was calibrated."""
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

    def __call__(self, batch: "torch.Tensor") -> "torch.Tensor":
        import numpy as np
        import torch

        start = time.perf_counter()
        graph = self.forward(np.ascontiguousarray(batch.numpy(), dtype=np.float32))
        middle = time.perf_counter()
        eager = self.classifier.logits(batch).numpy()
        self.eager_top1.extend(int(i) for i in eager.argmax(axis=-1))
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

    def agreement(self) -> agreement.Agreement:
        """Agreement with eager fp32 over every batch so far."""
        share = self.agreeing / self.images if self.images else 0.0
        return agreement.Agreement(n_images=self.images, top1_agreement=share, max_abs_diff=self.max_abs_diff,
                                 cosine=self.cosine)
