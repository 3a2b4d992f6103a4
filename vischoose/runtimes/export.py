"""`vischoose export`: the artifact a user ships. Load the model, preprocess the user's calibration images,
export fp32 ONNX, quantize to int8 with the family's recipe, check every variant against eager fp32, and
write only a variant that passes. torch, timm, onnx and onnxruntime are imported inside functions.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, TypeVar

from vischoose.runtimes import files as artifacts
from vischoose.runtimes import onnxruntime as deploy
from vischoose.errors import DeployError, ImageError, UsageError

if TYPE_CHECKING:
    import numpy as np

    from vischoose.models.loading import LoadedModel

FORMATS = ("onnx",)
PRECISIONS = ("fp32", "int8")
MAX_CALIBRATION = 64  # images; a few dozen calibrate int8 well, more only slow the export down
T = TypeVar("T")


@dataclass(frozen=True)
class Calibration:
    """Preprocessed images from the user's folder, and the ones that could not be read."""

    batch: "np.ndarray"  # float32 NCHW, preprocessed with the model's evaluation transform
    images: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = ()  # (path, reason)


@dataclass(frozen=True)
class Variant:
    """One graph built for the export: its size, build time, and agreement with eager fp32."""

    precision: str  # "fp32" or "int8"
    recipe: str  # "fp32" or the int8 recipe name
    file_mb: float  # MiB
    build_s: float  # export or quantization time, seconds
    agreement: deploy.Agreement
    status: str  # "ok", "rejected" (below the agreement threshold on real images) or "unverified"
    note: str | None = None
    img_s_batch1: float | None = None  # ONNX Runtime throughput at batch 1, when measured


@dataclass(frozen=True)
class ExportReport:
    """What vischoose export built and checked, and where the shipped file went (None: nothing written)."""

    model: str
    tag: str
    weights: str
    family: str
    input_size: int
    opset: int
    preprocessing: dict[str, Any]
    check_source: str  # "images" or "random"
    check_images: int
    min_agreement: float
    variants: tuple[Variant, ...]
    precision: str
    out: str | None
    skipped: tuple[tuple[str, str], ...] = ()
    eager_img_s_batch1: float | None = None
    threads: int | None = None
    runtime_versions: dict[str, str] = field(default_factory=dict)

    @property
    def shipped(self) -> Variant:
        """The variant of the requested precision."""
        return next(v for v in self.variants if v.precision == self.precision)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return asdict(self)


def export_model(model: str, out: str | Path, precision: str = "fp32", calibration: str | Path | None = None,
                 weights: str = "pretrained", input_size: int | None = None, opset: int | None = None,
                 min_agreement: float = deploy.MIN_AGREEMENT, measure_s: float = 0.0,
                 threads: int | None = None) -> ExportReport:
    """Export a model to ONNX at a precision, checked against eager fp32; write `out` only if it passes.

    Args:
        calibration: a folder of the user's images: calibrates int8 and is the agreement check set.
        measure_s: when above 0, seconds per variant timing batch 1 on ONNX Runtime (and eager fp32).

    Raises:
        UsageError: bad options, an unwritable `out`, a calibration folder without readable images.
        DeployError: export or quantization failed, or the fp32 graph disagrees with the model.
        model errors as in models.load_model.
    """
    from vischoose.models.loading import load_model

    _check_options(precision, min_agreement, input_size)
    out = Path(out)
    artifacts.check_writable(out)
    loaded = load_model(model, weights=weights)
    size = input_size or loaded.input_size
    config = preprocessing(loaded, size)
    calib = load_calibration(calibration, config) if calibration is not None else None
    batch = calib.batch if calib else deploy.random_batch(size)
    reference = deploy.eager_logits(loaded.model, batch)
    meta = _metadata(loaded, config)
    with artifacts.staging(out) as staged:
        fp32_path = staged if precision == "fp32" else staged.with_name("fp32-" + out.name)
        exported = deploy.export_onnx(loaded, fp32_path, size, opset, batch, reference, metadata=meta)
        variants = [Variant("fp32", "fp32", exported.file_mb, exported.export_s, exported.agreement, "ok")]
        if precision == "int8":
            variants.append(_int8_variant(loaded, exported.path, staged, calib, batch, reference, min_agreement))
        paths = {"fp32": fp32_path, "int8": staged}
        variants, eager_img_s = _measured(loaded, paths, variants, size, measure_s, threads)
        written = variants[-1].status != "rejected"
        if written:
            artifacts.publish(staged, out)
    return ExportReport(model=loaded.ref.display, tag=loaded.tag, weights=loaded.weights_label,
                        family=deploy.model_family(loaded.model), input_size=size, opset=exported.opset,
                        preprocessing=config, check_source="images" if calib else "random",
                        check_images=len(batch), min_agreement=min_agreement, variants=tuple(variants),
                        precision=precision, out=str(out) if written else None,
                        skipped=calib.skipped if calib else (), eager_img_s_batch1=eager_img_s,
                        threads=threads, runtime_versions=_versions())


def _check_options(precision: str, min_agreement: float, input_size: int | None) -> None:
    if precision not in PRECISIONS:
        raise UsageError(f"Unknown precision '{precision}' (expected one of: {', '.join(PRECISIONS)}).")
    if not 0.0 <= min_agreement <= 1.0:
        raise UsageError(f"--min-agreement must be between 0 and 1 (got {min_agreement}).")
    if input_size is not None and input_size < 16:
        raise UsageError(f"--input-size must be at least 16 px (got {input_size}).")


def _int8_variant(loaded: "LoadedModel", fp32_path: Path, staged: Path, calib: Calibration | None,
                  batch: "np.ndarray", reference: "np.ndarray", min_agreement: float) -> Variant:
    """Quantize with the family's recipe into `staged` and judge it against eager fp32."""
    family = deploy.model_family(loaded.model)
    quant = deploy.quantize_int8(fp32_path, staged, family, [calib.batch] if calib else None)
    found = deploy.agreement(reference, deploy.run_session(deploy.ort_session(quant.path), batch))
    if calib is None:
        status, note = "unverified", "checked on random inputs only: pass --calibration with your images"
    elif loaded.weights == "random":
        status, note = "unverified", "random weights: agreement with them says nothing about accuracy"
    elif found.top1_agreement >= min_agreement:
        status, note = "ok", None
    else:
        status, note = "rejected", (f"top-1 agreement {found.top1_agreement:.1%} < {min_agreement:.1%} "
                                    f"on {found.n_images} images")
    if quant.calibration == "random":
        note = "calibrated on random data; " + (note or "")
    notes = [n for n in (note, quant.recipe.note) if n]
    return Variant("int8", quant.recipe.name, quant.file_mb, quant.quantize_s, found, status,
                   "; ".join(notes) or None)


def _measured(loaded: "LoadedModel", paths: dict[str, Path], variants: list[Variant], size: int,
              measure_s: float, threads: int | None) -> tuple[list[Variant], float | None]:
    """Batch-1 throughput of each variant (ONNX Runtime) and of eager fp32, when measure_s > 0."""
    if measure_s <= 0:
        return variants, None
    from dataclasses import replace

    one = deploy.random_batch(size, n=1)
    timed = []
    for v in variants:
        summary = deploy.time_session(deploy.ort_session(paths[v.precision], threads), one, measure_s)
        timed.append(replace(v, img_s_batch1=1.0 / summary.median))
    return timed, 1.0 / deploy.time_eager(loaded.model, one, measure_s, threads).median


def preprocessing(loaded: "LoadedModel", input_size: int) -> dict[str, Any]:
    """The model's evaluation preprocessing (timm data config) at the export's input size, JSON-able."""
    from vischoose.inference.prediction import describe_preprocessing, eval_data_config

    config = eval_data_config(loaded.model)
    config["input_size"] = (3, input_size, input_size)
    return describe_preprocessing(config)


def load_calibration(folder: str | Path, config: dict[str, Any], limit: int = MAX_CALIBRATION) -> Calibration:
    """Up to `limit` images from a folder (spread over it), preprocessed as the model was evaluated.

    Raises:
        UsageError: the folder does not exist or is not a folder.
        ImageError: the folder holds no images, or none of them can be read.
    """
    import numpy as np
    from timm.data import create_transform

    from vischoose.inference import images

    folder = Path(folder)
    if not folder.is_dir():
        why = "is not a folder" if folder.exists() else "does not exist"
        raise UsageError(f"Calibration folder {folder} {why}.", hint="Give a folder of your own images (a few dozen).")
    found = images.expand_inputs([folder])
    if isinstance(found[0], ImageError):
        raise found[0]
    paths = spread([p for p in found if isinstance(p, Path)], limit)
    transform = create_transform(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
    tensors, names, skipped = [], [], []
    for path in paths:
        try:
            tensors.append(transform(images.load_image(path)).numpy())
            names.append(str(path))
        except ImageError as err:
            skipped.append((err.path, err.reason))
    if not tensors:
        raise ImageError(str(folder), f"none of its {len(paths)} images can be read (first: {skipped[0][0]}: "
                         f"{skipped[0][1]})")
    return Calibration(batch=np.stack(tensors).astype(np.float32), images=tuple(names), skipped=tuple(skipped))


def spread(items: Sequence[T], limit: int) -> list[T]:
    """At most `limit` items, evenly spaced over the sorted list (so every sub-folder is represented)."""
    if len(items) <= limit:
        return list(items)
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def _metadata(loaded: "LoadedModel", config: dict[str, Any]) -> dict[str, str]:
    """Key/values stored in the ONNX file: what the model is and how to preprocess its input."""
    import timm
    import torch

    return {"vischoose.model": loaded.ref.display, "vischoose.tag": loaded.tag,
            "vischoose.weights": loaded.weights_label, "vischoose.preprocessing": json.dumps(config),
            "vischoose.input": f"{deploy.INPUT_NAME}: float32 [batch, 3, H, W], normalised with mean/std",
            "vischoose.versions": f"torch {torch.__version__}, timm {timm.__version__}"}


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def require_written(report: ExportReport) -> None:
    """Raise DeployError when the requested variant was rejected and nothing was written."""
    if report.out is None:
        found = report.shipped.agreement
        raise DeployError(f"The {report.precision} graph of {report.tag} was rejected: its top-1 class agrees with "
                          f"eager fp32 on {found.top1_agreement:.1%} of {found.n_images} images, below "
                          f"--min-agreement {report.min_agreement:.1%}; nothing was written.",
                          hint="Ship --precision fp32, calibrate with more images, or lower --min-agreement if the "
                          "differences are acceptable.")
