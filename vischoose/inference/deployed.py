"""`vischoose evaluate --runtime RUNTIME`: the accuracy of the deployed file (fp32 or int8, built by a graph runtime
of the registry) on labelled images, and how often its top-1 class agrees with the eager fp32 model's.

The model is built into a temporary folder with the runtime's recipe; the images are read, preprocessed and
counted by the evaluation loop every runtime shares (inference.loop), so only the forward pass differs from the
torch evaluation. The runtimes, torch and timm are imported inside functions.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vischoose.errors import DatasetError, UsageError
from vischoose.inference import calibration as calibrating
from vischoose.inference import datasets
from vischoose.inference import images as image_io
from vischoose.inference.loop import (
    Evaluation,
    ImageSet,
    Progress,
    Tally,
    build_result,
    run_batches,
)
from vischoose.models.family import model_family
from vischoose.runtimes import graphcache, registry, verdict
from vischoose.runtimes.artifact import Artifact
from vischoose.runtimes.base import Forward, Runtime
from vischoose.runtimes.precision import PRECISIONS

if TYPE_CHECKING:
    import numpy as np
    import torch

    from vischoose.inference.prediction import Classifier
    from vischoose.models.loading import LoadedModel


@dataclass(frozen=True)
class Deployed:
    """How the evaluated file was built, and how closely it follows eager fp32 on the evaluated images."""

    precision: str  # "fp32" or "int8"
    family: str
    recipe: str | None  # the int8 recipe; None for fp32
    file_mb: float  # the file on disk, MiB
    export_s: float
    quantize_s: float | None
    calibration: str  # "evaluation images", "folder", or "none" (fp32 and recipes quantizing at run time)
    calibration_images: int
    agreement: verdict.Agreement  # the file's logits against eager fp32's on every evaluated image
    eager_images_per_s: float | None  # eager fp32 forward passes on the same batches (no decoding)
    runtime: str
    runtime_version: str
    notes: tuple[str, ...] = ()
    graph: str | None = None  # evaluate --graph: the file evaluated, as written
    sha256: str | None = None  # of the file and its companions: shards of one evaluation must run the same bytes

    @property
    def agreeing(self) -> int:
        """Images whose top-1 class is the same as eager fp32's."""
        return round(self.agreement.top1_agreement * self.agreement.n_images)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON (the runtime's version under '<runtime>_version')."""
        data = asdict(self)
        version = data.pop("runtime_version")
        return {**data, f"{self.runtime}_version": version, "top1_agreeing_images": self.agreeing,
                "notes": list(self.notes)}


def check_options(runtime: str, precision: str | None, device: str, dtype: str, calibration: str | Path | None,
                  world_size: int) -> str:
    """The precision to evaluate at (default: fp32), checked against the runtime, device, dtype and processes.

    Raises:
        UsageError: an unknown runtime or precision, or one the other options rule out.
    """
    chosen = registry.get(runtime)
    if precision is not None and precision not in PRECISIONS:
        raise UsageError(f"Unknown precision '{precision}' (expected one of: {', '.join(PRECISIONS)}).")
    if not chosen.is_graph:
        return _check_torch(precision, dtype, calibration)
    flag = f"--runtime {runtime}"
    if precision is not None and precision not in chosen.precisions:
        raise UsageError(f"{flag} runs {', '.join(chosen.precisions)}, not --precision {precision}.")
    if device != "cpu":
        raise UsageError(f"{flag} evaluates on the CPU only (got --device {device}).",
                         hint="Drop --device, or evaluate on the GPU with --runtime torch.")
    if dtype != "float32":
        raise UsageError(f"{flag} evaluates a float32 or int8 graph, not --dtype {dtype}.",
                         hint="Use --precision fp32 or --precision int8 instead of --dtype.")
    if world_size > 1:
        raise UsageError(f"{flag} evaluates in one process, but WORLD_SIZE is {world_size} (torchrun).",
                         hint=f"Run vischoose evaluate without torchrun: {chosen.title} uses every core by itself.")
    precision = precision or "fp32"
    if calibration is not None and precision != "int8":
        raise UsageError("--calibration calibrates int8 graphs: it needs --precision int8.")
    chosen.require()
    return precision


def check_graph(graph: str | Path, runtime: str | None, calibration: str | Path | None) -> str:
    """The runtime that runs `graph` (by its name's ending), checked against --runtime and --calibration.

    Raises:
        UsageError: an ending no runtime writes, a --runtime that does not run it, or a calibration folder.
    """
    chosen = registry.for_file(graph)
    if runtime not in (None, chosen.name):
        raise UsageError(f"--graph {Path(graph).name} is a {chosen.title} file, not one --runtime {runtime} runs.",
                         hint="Drop --runtime: the file's name says which runtime runs it.")
    if calibration is not None:
        raise UsageError("--calibration calibrates an int8 graph vischoose builds; --graph evaluates a file as written.",
                         hint="Drop --calibration.")
    return chosen.name


def _check_torch(precision: str | None, dtype: str, calibration: str | Path | None) -> str:
    int8 = next(r.name for r in registry.graph_runtimes() if "int8" in r.precisions)
    if precision == "int8":
        raise UsageError(f"--precision int8 needs --runtime {int8}: torch evaluates the model at --dtype.",
                         hint=f"Add --runtime {int8} to evaluate the int8 graph you would deploy.")
    if precision not in (None, "fp32") or (precision == "fp32" and dtype != "float32"):
        raise UsageError(f"--precision {precision} contradicts --dtype {dtype}.", hint="Give one of the two.")
    if calibration is not None:
        raise UsageError(f"--calibration calibrates int8 graphs: it needs --runtime {int8} --precision int8.")
    return "fp32"


def evaluate_graph(data: str | Path, model: "str | LoadedModel", runtime: str, precision: str = "fp32",
                   calibration: str | Path | None = None, labels: str | Path | None = None, limit: int | None = None,
                   batch_size: int = 32, workers: int = 0, checkpoint: str | None = None,
                   progress: Progress | None = None, max_pixels: int = image_io.MAX_PIXELS,
                   graph: str | Path | None = None, shard: tuple[int, int] | None = None) -> Evaluation:
    """Top-1 / top-5 accuracy (%) of the model's deployed file (fp32, or int8 with the runtime's recipe), or of
    `graph`, a file built elsewhere, run as written with the model's preprocessing.

    int8 calibrates on `calibration` (a folder of images) or else on up to 64 of the evaluation images, spread over
    the set; the result's notes say which. Options are checked by check_options. shard (index, count): only every
    count-th image from index is counted (calibration still spreads over the whole set, so every shard builds the
    same file); see evaluation.evaluate.

    Raises:
        DatasetError: a missing or unusable data set, or one where no image could be read.
        UsageError: a calibration folder that is missing or holds no readable image; a graph file that does not
            fit the model; model errors as prediction.prepare.
        DeployError: the export or the quantization failed, or the runtime could not run the file.
    """
    from vischoose.inference.prediction import prepare

    chosen = registry.get(runtime)
    classifier = prepare(model, "cpu", "float32", checkpoint)
    labelled = datasets.read_dataset(data, classifier.classes, classifier.num_classes, labels).limited(limit)
    with tempfile.TemporaryDirectory(prefix="vischoose-eval-") as tmp:
        if graph is None:
            artifact, calib, source, notes = _built(chosen, classifier, labelled, precision, calibration,
                                                    Path(tmp), max_pixels)
        else:
            artifact, calib, source, notes = _as_written(chosen, classifier, graph, precision)
        # no spinning: the runtime's idle threads would compete with each batch's eager forward (~10% img/s)
        forward = GraphForward(classifier, chosen.session(artifact, None, interleaved=True))
        samples = labelled.samples if shard is None else labelled.samples[shard[0]::shard[1]]
        counts, failed, seconds = run_batches(classifier, samples, batch_size, workers, max_pixels,
                                              progress, forward=forward)
        digest = _sha256(artifact.path) if shard else None
    result = build_result(classifier, labelled, counts, 0.0, batch_size, 1, empty_ok=shard is not None)
    agreed, hits = forward.agreement(), forward.reference_hits(_read_targets(samples, failed))
    result = replace(result, runtime=runtime, dtype="float32" if artifact.precision == "fp32" else artifact.precision,
                     recipe=artifact.recipe, images_per_s=_rate(counts[0], seconds - forward.eager_s),
                     agreement_top1=agreed.top1_agreement, agreement_images=agreed.n_images,
                     fp32_top1=None if hits is None else 100.0 * hits / counts[0],
                     graph=artifact.path if graph is not None else None, file_mb=artifact.file_mb)
    found = Deployed(precision=artifact.precision, family=model_family(classifier.loaded.model),
                     recipe=artifact.recipe, file_mb=artifact.file_mb, export_s=artifact.build_s,
                     quantize_s=artifact.quantize_s, calibration=source,
                     calibration_images=0 if calib is None else len(calib), agreement=agreed,
                     eager_images_per_s=_rate(counts[0], forward.eager_s), runtime=runtime,
                     runtime_version=chosen.version(), notes=tuple(notes), graph=result.graph, sha256=digest)
    tally = Tally(*counts, seconds=seconds - forward.eager_s, reference_hits=hits, eager_s=forward.eager_s)
    return Evaluation(result=result, failed=tuple(failed), workers=workers, deployed=found, tally=tally)


def _built(chosen: Runtime, classifier: "Classifier", labelled: datasets.LabelledImages, precision: str,
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


def _as_written(chosen: Runtime, classifier: "Classifier", graph: str | Path,
                precision: str | None) -> tuple[Artifact, None, str, list[str]]:
    """A file built elsewhere, checked to take the model's input (and to come from it, where the file says)."""
    artifact = chosen.open_file(graph, precision)
    size = int(classifier.data_config["input_size"][-1])
    name, tag = Path(artifact.path).name, classifier.loaded.tag
    if artifact.input_size and artifact.input_size != size:
        raise UsageError(f"{name} takes {artifact.input_size} px inputs, but {tag} preprocesses images to {size} px.",
                         hint="Pass the --model the file was exported from, at the input size it was exported at.")
    made_from = chosen.inspect(Path(artifact.path)).model
    if made_from and made_from != tag:
        raise UsageError(f"{name} was exported from {made_from}, not --model {tag}.",
                         hint=f"Pass --model {made_from}: its preprocessing and labels are the file's.")
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
    return [f"--calibration was not used: the {recipe} recipe quantizes activations at run time"]


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
                           "int8 can be read.", hint="Check the images, or pass --calibration FOLDER.")
    note = (f"calibrated on {len(tensors)} of the evaluation images: the int8 accuracy may be slightly optimistic; "
            "pass --calibration FOLDER to calibrate on other images")
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
        found = verdict.agreement(eager, graph)
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

    def agreement(self) -> verdict.Agreement:
        """Agreement with eager fp32 over every batch so far."""
        share = self.agreeing / self.images if self.images else 0.0
        return verdict.Agreement(n_images=self.images, top1_agreement=share, max_abs_diff=self.max_abs_diff,
                                 cosine=self.cosine)
