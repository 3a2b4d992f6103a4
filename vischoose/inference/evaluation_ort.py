"""`vischoose evaluate --runtime onnxruntime`: the accuracy of the deployed graph (fp32 or int8 ONNX on ONNX
Runtime) on labelled images, and how often its top-1 class agrees with the eager fp32 model's.

The model is exported (and quantized with its family's recipe) into a temporary folder; the images are read,
preprocessed and counted by evaluation's own loop, so only the forward pass differs from the torch
evaluation. onnxruntime, torch and timm are imported inside functions.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vischoose.inference import datasets
from vischoose.runtimes import onnxruntime as deploy
from vischoose.inference import evaluation
from vischoose.runtimes import export as exporting
from vischoose.inference import images as image_io
from vischoose.errors import DatasetError, UsageError
from vischoose.runtimes.export import MAX_CALIBRATION, PRECISIONS
from vischoose.measure.runner import RUNTIMES

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime
    import torch

    from vischoose.models.loading import LoadedModel
    from vischoose.inference.prediction import Classifier



@dataclass(frozen=True)
class Deployed:
    """How the evaluated graph was built, and how closely it follows eager fp32 on the evaluated images."""

    precision: str  # "fp32" or "int8"
    family: str
    recipe: str | None  # the int8 recipe; None for fp32
    file_mb: float  # the graph on disk, MiB
    export_s: float
    quantize_s: float | None
    calibration: str  # "evaluation images", "folder", or "none" (fp32 and dynamic recipes)
    calibration_images: int
    agreement: deploy.Agreement  # the graph's logits against eager fp32's on every evaluated image
    eager_images_per_s: float | None  # eager fp32 forward passes on the same batches (no decoding)
    onnxruntime_version: str
    notes: tuple[str, ...] = ()

    @property
    def agreeing(self) -> int:
        """Images whose top-1 class is the same as eager fp32's."""
        return round(self.agreement.top1_agreement * self.agreement.n_images)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return {**asdict(self), "top1_agreeing_images": self.agreeing, "notes": list(self.notes)}


def check_options(runtime: str, precision: str | None, device: str, dtype: str, calibration: str | Path | None,
                  world_size: int) -> str:
    """The precision to evaluate at (default: fp32), checked against the runtime, device, dtype and processes.

    Raises:
        UsageError: an unknown runtime or precision, or one the other options rule out.
    """
    if runtime not in RUNTIMES:
        raise UsageError(f"Unknown runtime '{runtime}' (expected one of: {', '.join(RUNTIMES)}).")
    if precision is not None and precision not in PRECISIONS:
        raise UsageError(f"Unknown precision '{precision}' (expected one of: {', '.join(PRECISIONS)}).")
    if runtime == "torch":
        if precision == "int8":
            raise UsageError("--precision int8 needs --runtime onnxruntime: torch evaluates the model at --dtype.",
                             hint="Add --runtime onnxruntime to evaluate the int8 graph you would deploy.")
        if precision == "fp32" and dtype != "float32":
            raise UsageError(f"--precision fp32 contradicts --dtype {dtype}.", hint="Give one of the two.")
        if calibration is not None:
            raise UsageError("--calibration calibrates int8 graphs: it needs --runtime onnxruntime --precision int8.")
        return "fp32"
    if device != "cpu":
        raise UsageError(f"--runtime onnxruntime evaluates on the CPU only (got --device {device}).",
                         hint="Drop --device, or evaluate on the GPU with --runtime torch.")
    if dtype != "float32":
        raise UsageError(f"--runtime onnxruntime evaluates a float32 or int8 graph, not --dtype {dtype}.",
                         hint="Use --precision fp32 or --precision int8 instead of --dtype.")
    if world_size > 1:
        raise UsageError(f"--runtime onnxruntime evaluates in one process, but WORLD_SIZE is {world_size} "
                         "(torchrun).", hint="Run vischoose evaluate without torchrun: ONNX Runtime uses "
                         "every core by itself.")
    precision = precision or "fp32"
    if calibration is not None and precision != "int8":
        raise UsageError("--calibration calibrates int8 graphs: it needs --precision int8.")
    return precision


def evaluate_onnx(data: str | Path, model: "str | LoadedModel", precision: str = "fp32",
                  calibration: str | Path | None = None, labels: str | Path | None = None, limit: int | None = None,
                  batch_size: int = 32, workers: int = 0, checkpoint: str | None = None,
                  progress: evaluation.Progress | None = None,
                  max_pixels: int = image_io.MAX_PIXELS) -> evaluation.Evaluation:
    """Top-1 / top-5 accuracy (%) of the model's ONNX graph (fp32, or int8 with its family's recipe) on ONNX Runtime.

    Static int8 recipes calibrate on `calibration` (a folder of images) or else on up to 64 of the evaluation
    images, spread over the set; the result's notes say which. Options are checked by check_options.

    Raises:
        DatasetError: a missing or unusable data set, or one where no image could be read.
        UsageError: a calibration folder that is missing or holds no readable image; model errors as prediction.prepare.
        DeployError: the export or the quantization failed, or ONNX Runtime could not run the graph.
    """
    import onnxruntime

    from vischoose.inference.prediction import prepare

    classifier = prepare(model, "cpu", "float32", checkpoint)
    labelled = datasets.read_dataset(data, classifier.classes, classifier.num_classes, labels).limited(limit)
    loaded = classifier.loaded
    family = deploy.model_family(loaded.model)
    recipe = deploy.recipe_for(family) if precision == "int8" else None
    static = recipe is not None and recipe.static
    calib, source, notes = _calibration(classifier, labelled, calibration, max_pixels) if static else (None, "none", [])
    if recipe is not None and not recipe.static and calibration is not None:
        notes.append(f"--calibration was not used: the {recipe.name} recipe quantizes activations at run time")
    if recipe is not None and recipe.note:
        notes.append(recipe.note)
    size = int(classifier.data_config["input_size"][-1])
    with tempfile.TemporaryDirectory(prefix="vischoose-eval-") as tmp:
        exported = deploy.export_onnx(loaded, Path(tmp) / "fp32.onnx", size)
        path, file_mb, quantize_s = exported.path, exported.file_mb, None
        if recipe is not None:
            quant = deploy.quantize_int8(path, Path(tmp) / "int8.onnx", family, None if calib is None else [calib])
            path, file_mb, quantize_s = quant.path, quant.file_mb, quant.quantize_s
        # no spinning: ONNX Runtime's idle threads would compete with each batch's eager forward (~10% img/s)
        forward = _Forward(classifier, deploy.ort_session(path, spinning=False))
        counts, failed, seconds = evaluation._run(classifier, labelled.samples, batch_size, workers, max_pixels,
                                                  progress, forward=forward)
    result = evaluation._result(classifier, labelled.source, counts, 0.0, batch_size, 1)
    result = replace(result, runtime="onnxruntime", dtype="float32" if recipe is None else "int8",
                     recipe=None if recipe is None else recipe.name,
                     images_per_s=_rate(counts[0], seconds - forward.eager_s))  # end to end, as torch's
    agreed = forward.agreement()
    result = replace(result, agreement_top1=agreed.top1_agreement, agreement_images=agreed.n_images)
    deployed = Deployed(precision=precision, family=family, recipe=result.recipe, file_mb=file_mb,
                        export_s=exported.export_s, quantize_s=quantize_s, calibration=source,
                        calibration_images=0 if calib is None else len(calib), agreement=agreed,
                        eager_images_per_s=_rate(counts[0], forward.eager_s),
                        onnxruntime_version=onnxruntime.__version__, notes=tuple(notes))
    return evaluation.Evaluation(result=result, failed=tuple(failed), workers=workers, deployed=deployed)


def _calibration(classifier: "Classifier", labelled: datasets.LabelledImages, folder: str | Path | None,
                 max_pixels: int) -> tuple["np.ndarray", str, list[str]]:
    """Preprocessed calibration images: the user's folder, else a spread sample of the evaluation images."""
    import numpy as np

    from vischoose.inference.prediction import describe_preprocessing

    if folder is not None:
        found = exporting.load_calibration(folder, describe_preprocessing(classifier.data_config), MAX_CALIBRATION)
        skipped = f" ({len(found.skipped)} unreadable skipped)" if found.skipped else ""
        return found.batch, "folder", [f"calibrated on {len(found.batch)} images from {folder}{skipped}"]
    picked = evaluation._Images(tuple(exporting.spread(labelled.samples, MAX_CALIBRATION)), classifier.transform,
                                max_pixels)
    tensors = [x.numpy() for x, _, _, err in (picked[i] for i in range(len(picked))) if err is None]
    if not tensors:
        raise DatasetError(f"Data set '{labelled.source}': none of the {len(picked)} images sampled to calibrate "
                           "int8 can be read.", hint="Check the images, or pass --calibration FOLDER.")
    note = (f"calibrated on {len(tensors)} of the evaluation images: the int8 accuracy may be slightly optimistic; "
            "pass --calibration FOLDER to calibrate on other images")
    return np.stack(tensors).astype(np.float32), "evaluation images", [note]


def _rate(images: int, seconds: float) -> float | None:
    return images / seconds if seconds > 0 else None


class _Forward:
    """Each batch through the graph (timed: its logits are the ones counted) and through eager fp32 (agreement)."""

    def __init__(self, classifier: "Classifier", session: "onnxruntime.InferenceSession") -> None:
        self.classifier, self.session = classifier, session
        self.graph_s = self.eager_s = 0.0
        self.images = self.agreeing = 0
        self.max_abs_diff, self.cosine = 0.0, 1.0

    def __call__(self, batch: "torch.Tensor") -> "torch.Tensor":
        import numpy as np
        import torch

        start = time.perf_counter()
        graph = deploy.run_session(self.session, np.ascontiguousarray(batch.numpy(), dtype=np.float32))
        middle = time.perf_counter()
        eager = self.classifier.logits(batch).numpy()
        self.graph_s += middle - start
        self.eager_s += time.perf_counter() - middle
        found = deploy.agreement(eager, graph)
        self.images += found.n_images
        self.agreeing += round(found.top1_agreement * found.n_images)
        self.max_abs_diff = max(self.max_abs_diff, found.max_abs_diff)
        self.cosine = min(self.cosine, found.cosine)
        return torch.from_numpy(graph)

    def agreement(self) -> deploy.Agreement:
        """Agreement with eager fp32 over every batch so far."""
        share = self.agreeing / self.images if self.images else 0.0
        return deploy.Agreement(n_images=self.images, top1_agreement=share, max_abs_diff=self.max_abs_diff,
                                cosine=self.cosine)
