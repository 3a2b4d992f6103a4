"""`vischoose export`: the artifact a user ships. Load the model, preprocess the user's calibration images, build
the file with the runtime of the chosen format (fp32, and the requested precision with that runtime's recipe),
check every variant against eager fp32, and write only a variant that passes. torch, timm and the runtimes are
imported inside functions."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, TypeVar

from vischoose.deploy import accuracy, check, graphcache, verdict
from vischoose.errors import DeployError, opt
from vischoose.inference.calibration import (
    Calibration,
    load_calibration,
    preprocessing,
    spread,
    transform_for,
)
from vischoose.inference.datasets import LabelledImages, read_dataset
from vischoose.models.family import model_family
from vischoose.requests.export import ExportRequest
from vischoose.runtimes import agreement, files
from vischoose.runtimes.artifact import Artifact
from vischoose.runtimes.base import GraphRuntime

if TYPE_CHECKING:
    import numpy as np

    from vischoose.models.loading import LoadedModel

T = TypeVar("T")


@dataclass(frozen=True)
class BuiltVariant:
    """One file built for the export: its size, build time, and agreement with eager fp32."""

    precision: str  # "fp32", "bf16" or "int8"
    recipe: str  # "fp32" or the int8 recipe name
    file_mb: float  # MiB
    build_s: float  # export or quantization time, seconds
    agreement: agreement.Agreement
    status: str  # "ok", "rejected" (below the agreement threshold on real images) or "unverified"
    note: str | None = None
    img_s_batch1: float | None = None  # the runtime's throughput at batch 1, when measured


@dataclass(frozen=True)
class ExportReport:
    """What vischoose export built and checked, and where the shipped file went (None: nothing written)."""

    model: str
    tag: str
    weights: str
    family: str
    input_size: int
    opset: int | None  # ONNX files only
    preprocessing: dict[str, Any]
    check_source: str  # "images" or "random"
    check_images: int
    min_agreement: float
    variants: tuple[BuiltVariant, ...]
    precision: str
    out: str | None
    skipped: tuple[tuple[str, str], ...] = ()
    eager_img_s_batch1: float | None = None
    threads: int | None = None
    runtime_versions: dict[str, str] = field(default_factory=dict)
    runtime: str = ""
    format: str = ""
    accuracy: accuracy.AccuracyAware | None = None  # --max-accuracy-drop: the float layers and the held-out drop
    input_batch: tuple[int, int | None] | None = None  # the batches one call of the shipped file takes, as the file
    # itself declares them, read back after writing (smallest, largest; largest None: no bound); None: it does not say
    input_dtype: str = "float32"  # the shipped file's input tensor type, as the file declares it (LiteRT int8: int8)
    others_cpu_cores: float | None = None  # --measure: what the rest of the machine took meanwhile, cores
    contended: str | None = None  # --measure: others took too much, still after a pause and a second measurement

    @property
    def shipped(self) -> "BuiltVariant":
        """The variant of the requested precision that ships (with --max-accuracy-drop: the last one built)."""
        return self.variants[-1]

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return asdict(self)


class Timer(Protocol):
    """How export --measure times: measure.timing.MachineTimer, passed in by the caller (deploy does not import
    measure)."""

    def __call__(self, call: Callable[[], Any], seconds: float) -> float:
        """The median seconds per call of `call`, timed for about `seconds`."""

    def exclusive(self, what: str, timings: Callable[[], T], wait: bool,
                  threads: int | None) -> tuple[T, dict[str, Any]]:
        """timings() run holding the machine's measurement lock (MeasurementBusyError when wait is False and another
        holds it), measured again once after a pause when others took too much of the machine; with what they took:
        {"others_cpu_cores": cores, "contended": why or None}."""


def export_model(request: ExportRequest, timer: Timer | None = None,
                 split: "accuracy.Split | None" = None, phase: Callable[[str], None] | None = None) -> ExportReport:
    """Export a model in a runtime's format at a precision, checked against eager fp32 (deploy.check); write the file
    only if it passes.

    With request.data and max_accuracy_drop, layers go back to float until the top-1 drop holds (deploy.accuracy);
    without a calibration folder, the half of the images that chooses the layers calibrates. `split`: those images
    already split (recommend --data splits once and evaluates the held-out half itself). `timer` (measure.timing's
    MachineTimer, passed in by the caller) times each variant and eager fp32 at batch 1 when the request asks to
    measure, holding the machine's measurement lock (waiting for another vischoose unless request.wait is False) and
    reading what the rest of the machine took meanwhile. `phase` hears each step (loading, building, checking,
    timing) as it starts.

    Raises:
        UsageError: an unwritable out, a calibration folder without readable images.
        DeployError: export or quantization failed, or the fp32 file disagrees with the model.
        model errors as in models.load_model.
    """
    runtime = request.runtime if request.opset is None else type(request.runtime)(opset=request.opset)  # type: ignore[call-arg]
    out, tell = request.out_path, phase or (lambda what: None)
    files.check_writable(out)
    tell("loading")
    loaded = _seeded_load(request)
    size = request.input_size or loaded.input_size
    config = preprocessing(loaded, size)
    parts = None if request.max_accuracy_drop is None else _labelled_parts(loaded, config, request, split)
    calib = (load_calibration(request.calibration, config) if request.calibration is not None
             else _choice_calibration(parts))
    batch = calib.batch if calib else agreement.random_batch(size)
    reference = agreement.eager_logits(loaded.model, batch)
    with files.staging(out) as staged:
        tell(f"building the {runtime.title} file" + (f" (fp32, then {request.precision})"
                                                    if request.precision != "fp32" else ""))
        built = _build_all(runtime, loaded, request.precision, staged, size, calib, _metadata(loaded, config),
                           request.call_bound)
        aware = None
        if parts is not None:
            tell(f"keeping the layers int8 hurts most in float, within {request.max_accuracy_drop:g} points")
            built, aware = _reverted(runtime, loaded, built, calib, parts, request)
        tell("checking against eager fp32" + (" and timing" if timer and request.measure_s > 0 else ""))
        # with max_accuracy_drop the accuracy limit, not top-1 agreement, decides whether int8 ships
        judged_at = request.min_agreement if aware is None else 0.0
        variants = [_judged(runtime, loaded, a, calib, batch, reference, judged_at, request.threads) for a in built]
        variants = variants if aware is None else _within_drop(variants, aware)
        variants, eager_img_s, others = _measured(runtime, loaded, built, variants, size, request, timer)
        declared = runtime.inspect(Path(built[-1].path))  # what the file says it takes, not what was asked
        written = variants[-1].status != verdict.REJECTED
        if written:
            files.publish(Path(built[-1].path), out)
    return ExportReport(model=loaded.ref.display, tag=loaded.tag, weights=loaded.weights_label,
                        family=model_family(loaded.model), input_size=size, opset=built[0].facts.get("opset"),
                        preprocessing=config, check_source="images" if calib else "random",
                        check_images=len(batch), min_agreement=request.min_agreement, variants=tuple(variants),
                        precision=request.precision, out=str(out) if written else None,
                        skipped=calib.skipped if calib else (), eager_img_s_batch1=eager_img_s,
                        threads=request.threads, runtime_versions=_versions(runtime), runtime=runtime.name,
                        format=request.format, accuracy=aware, input_batch=declared.batch,
                        input_dtype=declared.input_dtype, **(others or {}))


def _seeded_load(request: ExportRequest) -> "LoadedModel":
    """The model; random weights from graphcache.RANDOM_SEED, as profile builds them, so that a random-weights file is
    the same file every time and the graph cache can hold it."""
    import torch

    from vischoose.models.loading import load_model

    torch.manual_seed(graphcache.RANDOM_SEED)
    return load_model(request.model, weights=request.weights)


def _labelled_parts(loaded: "LoadedModel", config: dict[str, Any], request: ExportRequest,
                    split: "accuracy.Split | None") -> tuple[accuracy.Labelled, accuracy.Labelled]:
    """The labelled images (read as evaluate reads them), split into the layer-choice and held-out parts,
    preprocessed for the model."""
    labelled = read_labelled(loaded, request.data, request.labels)
    split = split or accuracy.split_samples(labelled.samples)
    transform = transform_for(config)
    return (accuracy.preprocess(split.choice, transform, labelled.source),
            accuracy.preprocess(split.held_out, transform, labelled.source))


def read_labelled(loaded: "LoadedModel", data: str | Path | None,
                  labels: str | Path | None = None) -> "LabelledImages":
    """The labelled images in the model's classes, as evaluate reads them (the parts are split from these)."""
    from vischoose.inference.prediction import class_labels

    num_classes = int(getattr(loaded.model, "num_classes", 0) or 0)
    return read_dataset(str(data), class_labels(loaded.pretrained_cfg, num_classes), num_classes, labels)


def _choice_calibration(parts: tuple[accuracy.Labelled, accuracy.Labelled] | None) -> Calibration | None:
    """Without --calibration, int8 calibrates on the layer-choice images (never on the held-out ones)."""
    if parts is None:
        return None
    import numpy as np

    picked = spread(range(len(parts[0])), 64)
    return Calibration(batch=np.ascontiguousarray(parts[0].batch[picked]), images=())


def _reverted(runtime: GraphRuntime, loaded: "LoadedModel", built: list[Artifact], calib: Calibration | None,
              parts: tuple[accuracy.Labelled, accuracy.Labelled],
              request: ExportRequest) -> tuple[list[Artifact], accuracy.AccuracyAware]:
    """fp32, plain int8 and, when layers went back to float, that int8 file (beside the staged one)."""
    fp32, plain = built
    chosen, aware = accuracy.revert_within(runtime, loaded, fp32, plain, Path(plain.path),
                                           None if calib is None else calib.batch, *parts,
                                           max_drop_pts=float(request.max_accuracy_drop or 0.0),
                                           max_steps=request.max_revert_steps)
    return (built if chosen is plain else [fp32, plain, chosen]), aware


def _within_drop(variants: list[BuiltVariant], aware: accuracy.AccuracyAware) -> list[BuiltVariant]:
    """The int8 verdicts by the accuracy limit: only the shipped one can pass, and only when the drop holds."""
    fp32, plain, *rest = variants
    note = (f"{len(aware.reverted)} of {aware.candidates} quantizable layers kept in float, top-1 drop "
            f"{aware.drop_pts:.1f} points on {aware.held_out_images} held-out images")
    if len(aware.reverted) == aware.candidates:
        note += f"; every quantizable layer is in float, so the file is about fp32's size: {opt('precision')} fp32 ships it"
    reverted = [replace(v, recipe=f"{v.recipe} +{len(aware.reverted)} fp32 layers", note="; ".join(
        n for n in (note, v.note) if n), status=verdict.OK if aware.met else verdict.REJECTED) for v in rest]
    plain = replace(plain, status=verdict.OK if aware.met and not reverted else verdict.REJECTED)
    return [fp32, plain, *reverted]


def _build_all(runtime: GraphRuntime, loaded: "LoadedModel", precision: str, staged: Path, size: int,
               calib: Calibration | None, metadata: dict[str, str], max_batch: int = 1) -> list[Artifact]:
    """The fp32 file (beside the staged one unless fp32 ships) and, for another precision, the one that ships, each
    taking up to `max_batch` images a call where the runtime plans for it; each from the graph cache when these
    pinned weights, images, bound and versions built it before (its note says so)."""
    fp32_path = staged if precision == "fp32" else staged.with_name("fp32-" + staged.name)
    seeded = loaded.weights == "random"  # _seeded_load
    fp32 = _noted(*graphcache.build(runtime, loaded, "fp32", fp32_path, size, metadata=metadata,
                                    link=precision != "fp32", seeded=seeded, max_batch=max_batch))
    if precision == "fp32":
        return [fp32]
    other = _noted(*graphcache.build(runtime, loaded, precision, staged, size,
                                     None if calib is None else calib.batch, metadata=metadata, source=fp32,
                                     seeded=seeded, max_batch=max_batch))
    return [fp32, other]


def _noted(artifact: Artifact, reused: bool) -> Artifact:
    if not reused:
        return artifact
    note = "built before from these weights, images and versions: copied from the graph cache (seconds of that build)"
    return replace(artifact, note="; ".join(n for n in (note, artifact.note) if n))


def _judged(runtime: GraphRuntime, loaded: "LoadedModel", artifact: Artifact, calib: Calibration | None,
            batch: "np.ndarray", reference: "np.ndarray", min_agreement: float,
            threads: int | None) -> BuiltVariant:
    """A built file checked against eager fp32 (deploy.check): fp32 must reproduce it, other precisions get the
    verdict. It runs on the thread count that is measured next."""
    checked = check.check(runtime, artifact, batch, reference, calib is not None, loaded.weights != "random",
                          min_agreement, threads)
    notes = [n for n in (checked.verdict.note, artifact.note) if n]
    build_s = artifact.quantize_s if artifact.quantize_s is not None else artifact.build_s
    return BuiltVariant(artifact.precision, artifact.recipe or artifact.precision, artifact.file_mb,
                        artifact.build_s if artifact.precision == "fp32" else build_s, checked.agreement,
                        checked.verdict.status, "; ".join(notes) or None)


def _measured(runtime: GraphRuntime, loaded: "LoadedModel", built: list[Artifact], variants: list[BuiltVariant],
              size: int, request: ExportRequest,
              timer: Timer | None) -> tuple[list[BuiltVariant], float | None, dict[str, Any] | None]:
    """Batch-1 throughput of each variant (on its runtime) and of eager fp32, when the request asks to measure, with
    the machine held (timer.exclusive: measured again once after a pause when others took too much of it). Returns
    the variants, eager's img/s and what others took ({others_cpu_cores, contended})."""
    if request.measure_s <= 0 or timer is None:
        return variants, None, None
    (timed, eager_img_s), others = timer.exclusive(
        f"{loaded.tag} at {runtime.name}", lambda: _timed(runtime, loaded, built, variants, size, request, timer),
        request.wait, request.threads)
    return timed, eager_img_s, others


def _timed(runtime: GraphRuntime, loaded: "LoadedModel", built: list[Artifact], variants: list[BuiltVariant],
           size: int, request: ExportRequest, timer: Timer) -> tuple[list[BuiltVariant], float]:
    import torch

    one = agreement.random_batch(size, n=1)
    timed: list[BuiltVariant] = []
    for artifact, v in zip(built, variants):
        forward = runtime.session(artifact, request.threads)
        img_s = 1.0 / timer(lambda: forward(one), request.measure_s)
        note = artifact.note_given_speed(v.note, img_s, timed[0].img_s_batch1 if timed else None)
        timed.append(replace(v, img_s_batch1=img_s, note=note))
    if request.threads:
        torch.set_num_threads(request.threads)
    x = torch.from_numpy(one)

    def eager() -> None:
        with torch.inference_mode():
            loaded.model(x)
    return timed, 1.0 / timer(eager, request.measure_s)


def _metadata(loaded: "LoadedModel", config: dict[str, Any]) -> dict[str, str]:
    """Key/values stored in the file where its format has room: what the model is and how to preprocess its input."""
    import timm
    import torch

    from vischoose.runtimes.onnx import INPUT_NAME

    return {"vischoose.model": loaded.ref.display, "vischoose.tag": loaded.tag,
            "vischoose.weights": loaded.weights_label, "vischoose.preprocessing": json.dumps(config),
            "vischoose.input": f"{INPUT_NAME}: float32 [batch, 3, H, W], normalised with mean/std",
            "vischoose.versions": f"torch {torch.__version__}, timm {timm.__version__}"}


def _versions(runtime: GraphRuntime) -> dict[str, str]:
    import torch

    return {"torch": torch.__version__, **runtime.versions()}


def require_written(report: ExportReport) -> None:
    """Raise DeployError when the requested variant was rejected and nothing was written."""
    if report.out is None and report.accuracy is not None:
        aware = report.accuracy
        raise DeployError(f"No int8 graph of {report.tag} keeps top-1 within {opt('max_accuracy_drop')} "
                          f"{aware.max_drop_pts:g} points: the best found ({len(aware.reverted)} of "
                          f"{aware.candidates} layers in float, {len(aware.steps)} quantizations) drops it by "
                          f"{aware.drop_pts:.1f} points on {aware.held_out_images} held-out images "
                          f"({aware.choice_drop_pts:.1f} on the {aware.choice_images} that chose the layers); "
                          "nothing was written.", hint=f"Ship {opt('precision')} fp32, raise "
                          f"{opt('max_accuracy_drop')}, or give more labelled images with {opt('data')}.")
    if report.out is None:
        found = report.shipped.agreement
        raise DeployError(f"The {report.precision} graph of {report.tag} was rejected: its top-1 class agrees with "
                          f"eager fp32 on {found.top1_agreement:.1%} of {found.n_images} images, below "
                          f"{opt('min_agreement')} {report.min_agreement:.1%}; nothing was written.",
                          hint=f"Ship {opt('precision')} fp32, calibrate with more images, or lower "
                          f"{opt('min_agreement')} if the differences are acceptable.")
