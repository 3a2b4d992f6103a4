"""`vischoose export`: the artifact a user ships. Load the model, preprocess the user's calibration images, build
the file with the runtime of the chosen format (fp32, and the requested precision with that runtime's recipe),
check every variant against eager fp32, and write only a variant that passes. torch, timm and the runtimes are
imported inside functions."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vischoose.errors import DeployError, UsageError
from vischoose.inference.calibration import Calibration, load_calibration, preprocessing, spread, transform_for
from vischoose.inference.datasets import LabelledImages, check_source, read_dataset
from vischoose.models.family import model_family
from vischoose.runtimes import accuracy, files, graphcache, registry, verdict
from vischoose.runtimes.artifact import Artifact
from vischoose.runtimes.base import Runtime

if TYPE_CHECKING:
    import numpy as np

    from vischoose.models.loading import LoadedModel


@dataclass(frozen=True)
class BuiltVariant:
    """One file built for the export: its size, build time, and agreement with eager fp32."""

    precision: str  # "fp32", "bf16" or "int8"
    recipe: str  # "fp32" or the int8 recipe name
    file_mb: float  # MiB
    build_s: float  # export or quantization time, seconds
    agreement: verdict.Agreement
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
    others_cpu_cores: float | None = None  # --measure: what the rest of the machine took meanwhile, cores
    contended: str | None = None  # --measure: others took too much, still after a pause and a second measurement

    @property
    def shipped(self) -> "BuiltVariant":
        """The variant of the requested precision that ships (with --max-accuracy-drop: the last one built)."""
        return self.variants[-1]

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return asdict(self)


def formats() -> dict[str, Runtime]:
    """The --format values: each graph runtime's file format."""
    return {r.format: r for r in registry.graph_runtimes() if r.format}


def export_model(model: str, out: str | Path, precision: str = "fp32", calibration: str | Path | None = None,
                 weights: str = "pretrained", input_size: int | None = None, opset: int | None = None,
                 min_agreement: float = verdict.MIN_AGREEMENT, measure_s: float = 0.0,
                 threads: int | None = None, format: str = "onnx", data: str | Path | None = None,
                 max_accuracy_drop: float | None = None, max_revert_steps: int = accuracy.MAX_STEPS,
                 labels: str | Path | None = None, wait: bool = True, on_wait: Any = None) -> ExportReport:
    """Export a model in a runtime's format at a precision, checked against eager fp32; write `out` only if it passes.

    Args:
        calibration: a folder of the user's images: calibrates int8 and is the agreement check set.
        measure_s: when above 0, seconds per variant timing batch 1 on the runtime (and eager fp32).
        data, max_accuracy_drop: labelled images, and the most top-1 points int8 may lose against fp32 on them:
            layers go back to float until it holds (runtimes.accuracy); without --calibration, the half of the
            images that chooses the layers calibrates. max_revert_steps: at most that many re-quantizations.
        labels: with data, a file mapping its folder names or CSV labels to classes, as for evaluate.
        wait, on_wait: with measure_s, wait for another vischoose timing on this machine (on_wait(holder, seconds)
            hears whom it waits for), or raise MeasurementBusyError (wait False: --no-wait).

    Raises:
        UsageError: bad options, an unwritable `out`, a calibration folder without readable images, a runtime
            whose extra is not installed (MissingExtraError).
        DeployError: export or quantization failed, or the fp32 file disagrees with the model.
        model errors as in models.load_model.
    """
    from vischoose.models.loading import load_model

    runtime = _check_options(format, precision, min_agreement, input_size)
    _check_accuracy(runtime, format, precision, data, max_accuracy_drop, labels)
    if opset is not None:
        if not hasattr(runtime, "opset"):
            raise UsageError(f"--opset applies to ONNX files, not to --format {format}.")
        runtime = type(runtime)(opset=opset)  # type: ignore[call-arg]
    out = Path(out)
    files.check_writable(out)
    loaded = load_model(model, weights=weights)
    size = input_size or loaded.input_size
    config = preprocessing(loaded, size)
    parts = None if max_accuracy_drop is None else _labelled_parts(loaded, config, data, labels)
    calib = load_calibration(calibration, config) if calibration is not None else _choice_calibration(parts)
    batch = calib.batch if calib else verdict.random_batch(size)
    reference = verdict.eager_logits(loaded.model, batch)
    with files.staging(out) as staged:
        built = _build_all(runtime, loaded, precision, staged, size, calib, _metadata(loaded, config))
        aware = None
        if parts is not None:
            built, aware = _reverted(runtime, loaded, built, calib, parts, max_accuracy_drop, max_revert_steps)
        # with --max-accuracy-drop the accuracy limit, not top-1 agreement, decides whether int8 ships
        judged_at = min_agreement if aware is None else 0.0
        variants = [_judged(runtime, loaded, a, calib, batch, reference, judged_at, threads) for a in built]
        variants = variants if aware is None else _within_drop(variants, aware)
        variants, eager_img_s, others = _measured(runtime, loaded, built, variants, size, measure_s, threads,
                                                  (wait, on_wait))
        written = variants[-1].status != verdict.REJECTED
        if written:
            files.publish(Path(built[-1].path), out)
    return ExportReport(model=loaded.ref.display, tag=loaded.tag, weights=loaded.weights_label,
                        family=model_family(loaded.model), input_size=size, opset=built[0].facts.get("opset"),
                        preprocessing=config, check_source="images" if calib else "random",
                        check_images=len(batch), min_agreement=min_agreement, variants=tuple(variants),
                        precision=precision, out=str(out) if written else None,
                        skipped=calib.skipped if calib else (), eager_img_s_batch1=eager_img_s,
                        threads=threads, runtime_versions=_versions(runtime), runtime=runtime.name, format=format,
                        accuracy=aware, **(others or {}))


def _check_options(format: str, precision: str, min_agreement: float, input_size: int | None) -> Runtime:
    found = formats()
    if format not in found:
        raise UsageError(f"Unknown format '{format}' (expected one of: {', '.join(found)}).")
    runtime = found[format]
    if precision not in runtime.precisions:
        raise UsageError(f"Unknown precision '{precision}' (expected one of: {', '.join(runtime.precisions)}).")
    if not 0.0 <= min_agreement <= 1.0:
        raise UsageError(f"--min-agreement must be between 0 and 1 (got {min_agreement}).")
    if input_size is not None and input_size < 16:
        raise UsageError(f"--input-size must be at least 16 px (got {input_size}).")
    runtime.require()
    why = runtime.precision_supported(precision)
    if why:
        raise UsageError(f"--format {format} --precision {precision} cannot run here: {why}.")
    return runtime


def _check_accuracy(runtime: Runtime, format: str, precision: str, data: str | Path | None,
                    max_drop: float | None, labels: str | Path | None = None) -> None:
    """--data and --max-accuracy-drop go together, with --precision int8, on a runtime that reverts layers."""
    if labels is not None and data is None:
        raise UsageError("--labels maps the classes of --data: it needs --data DIR.",
                         hint="Add --data with your labelled images, or drop --labels.")
    if max_drop is None:
        if data is not None:
            raise UsageError("--data is the labelled images for --max-accuracy-drop: give both, or neither.")
        return
    if data is None:
        raise UsageError("--max-accuracy-drop needs --data DIR: labelled images to measure the top-1 drop on.",
                         hint="Give a folder of class sub-folders (or a CSV of path,label) of your own images.")
    if precision != "int8":
        raise UsageError(f"--max-accuracy-drop applies to --precision int8, not --precision {precision}.")
    if not runtime.reverts_layers:
        able = ", ".join(f"--format {r.format} ({r.title})" for r in registry.graph_runtimes() if r.reverts_layers)
        raise UsageError(f"--max-accuracy-drop works with {able} only for now, not --format {format}.")
    if max_drop < 0:
        raise UsageError(f"--max-accuracy-drop is top-1 points int8 may lose, 0 or more (got {max_drop:g}).")
    check_source(data)


def _labelled_parts(loaded: "LoadedModel", config: dict[str, Any], data: str | Path | None,
                    labels: str | Path | None) -> tuple[accuracy.Labelled, accuracy.Labelled]:
    """The labelled images (read as evaluate reads them), split into the layer-choice and held-out parts."""
    labelled = read_labelled(loaded, data, labels)
    split = accuracy.split_samples(labelled.samples)
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


def _reverted(runtime: Runtime, loaded: "LoadedModel", built: list[Artifact], calib: Calibration | None,
              parts: tuple[accuracy.Labelled, accuracy.Labelled], max_drop: float | None,
              max_steps: int) -> tuple[list[Artifact], accuracy.AccuracyAware]:
    """fp32, plain int8 and, when layers went back to float, that int8 file (beside the staged one)."""
    fp32, plain = built
    chosen, aware = accuracy.revert_within(runtime, loaded, fp32, plain, Path(plain.path),
                                           None if calib is None else calib.batch, *parts,
                                           max_drop_pts=float(max_drop or 0.0), max_steps=max_steps)
    return (built if chosen is plain else [fp32, plain, chosen]), aware


def _within_drop(variants: list[BuiltVariant], aware: accuracy.AccuracyAware) -> list[BuiltVariant]:
    """The int8 verdicts by the accuracy limit: only the shipped one can pass, and only when the drop holds."""
    fp32, plain, *rest = variants
    note = (f"{len(aware.reverted)} of {aware.candidates} quantizable layers kept in float, top-1 drop "
            f"{aware.drop_pts:.1f} points on {aware.held_out_images} held-out images")
    if len(aware.reverted) == aware.candidates:
        note += "; every quantizable layer is in float, so the file is about fp32's size: --precision fp32 ships it"
    reverted = [replace(v, recipe=f"{v.recipe} +{len(aware.reverted)} fp32 layers", note="; ".join(
        n for n in (note, v.note) if n), status=verdict.OK if aware.met else verdict.REJECTED) for v in rest]
    plain = replace(plain, status=verdict.OK if aware.met and not reverted else verdict.REJECTED)
    return [fp32, plain, *reverted]


def _build_all(runtime: Runtime, loaded: "LoadedModel", precision: str, staged: Path, size: int,
               calib: Calibration | None, metadata: dict[str, str]) -> list[Artifact]:
    """The fp32 file (beside the staged one unless fp32 ships) and, for another precision, the one that ships; each
    from the graph cache when these pinned weights, images and versions built it before (its note says so)."""
    fp32_path = staged if precision == "fp32" else staged.with_name("fp32-" + staged.name)
    fp32 = _noted(*graphcache.build(runtime, loaded, "fp32", fp32_path, size, metadata=metadata,
                                    link=precision != "fp32"))
    if precision == "fp32":
        return [fp32]
    other = _noted(*graphcache.build(runtime, loaded, precision, staged, size,
                                     None if calib is None else calib.batch, metadata=metadata, source=fp32))
    return [fp32, other]


def _noted(artifact: Artifact, reused: bool) -> Artifact:
    if not reused:
        return artifact
    note = "built before from these weights, images and versions: copied from the graph cache (seconds of that build)"
    return replace(artifact, note="; ".join(n for n in (note, artifact.note) if n))


def _judged(runtime: Runtime, loaded: "LoadedModel", artifact: Artifact, calib: Calibration | None,
            batch: "np.ndarray", reference: "np.ndarray", min_agreement: float,
            threads: int | None) -> BuiltVariant:
    """A built file checked against eager fp32: fp32 must reproduce it, other precisions get the verdict.

    It runs on the thread count that is measured next: ExecuTorch's thread pool cannot change size afterwards.
    """
    found = verdict.agreement(reference, runtime.session(artifact, threads)(batch))
    if artifact.precision == "fp32":
        if not verdict.fp32_matches(found, reference):
            raise DeployError(f"The {runtime.title} fp32 file of {loaded.tag} disagrees with the eager model "
                              f"(max |logit diff| {found.max_abs_diff:.3g}, cosine {found.cosine:.6f}); nothing "
                              "was written.")
        return BuiltVariant("fp32", "fp32", artifact.file_mb, artifact.build_s, found, verdict.OK, artifact.note)
    judged = verdict.judge(found, calib is not None, loaded.weights != "random", min_agreement)
    note = judged.note
    if artifact.calibration == "random":
        note = "calibrated on random data; " + (note or "")
    notes = [n for n in (note, artifact.note) if n]
    return BuiltVariant(artifact.precision, artifact.recipe or artifact.precision, artifact.file_mb,
                        artifact.quantize_s if artifact.quantize_s is not None else artifact.build_s, found,
                        judged.status, "; ".join(notes) or None)


def _measured(runtime: Runtime, loaded: "LoadedModel", built: list[Artifact], variants: list[BuiltVariant],
              size: int, measure_s: float, threads: int | None,
              waiting: tuple[bool, Any]) -> tuple[list[BuiltVariant], float | None, dict[str, Any] | None]:
    """Batch-1 throughput of each variant (on its runtime) and of eager fp32, when measure_s > 0, holding the
    machine's measurement lock; measured again once after a pause when others took too much of the machine
    (measure.contention). Returns the variants, eager's img/s and what others took ({others_cpu_cores, contended})."""
    if measure_s <= 0:
        return variants, None, None
    from vischoose.measure import contention, lock, process

    with lock.exclusive(f"{loaded.tag} at {runtime.name}, for: {lock.command_line()}", *waiting):
        meter = contention.Meter(process.capped_threads(threads))
        mark = meter.start()
        timed, eager_img_s = _timed(runtime, loaded, built, variants, size, measure_s, threads)
        reading = meter.read(mark)
        if reading.contended:
            meter.wait_quiet()
            mark = meter.start()
            timed, eager_img_s = _timed(runtime, loaded, built, variants, size, measure_s, threads)
            reading = meter.read(mark)
    return timed, eager_img_s, {"others_cpu_cores": round(reading.others_cores, 3),
                                "contended": reading.why() if reading.contended else None}


def _timed(runtime: Runtime, loaded: "LoadedModel", built: list[Artifact], variants: list[BuiltVariant],
           size: int, measure_s: float, threads: int | None) -> tuple[list[BuiltVariant], float]:
    from vischoose.measure.timing import time_call
    from vischoose.runtimes.torch_eager import time_eager

    one = verdict.random_batch(size, n=1)
    timed = []
    for artifact, v in zip(built, variants):
        forward = runtime.session(artifact, threads)
        timed.append(replace(v, img_s_batch1=1.0 / time_call(lambda: forward(one), measure_s).median))
    return timed, 1.0 / time_eager(loaded.model, one, measure_s, threads).median


def _metadata(loaded: "LoadedModel", config: dict[str, Any]) -> dict[str, str]:
    """Key/values stored in the file where its format has room: what the model is and how to preprocess its input."""
    import timm
    import torch

    from vischoose.runtimes.onnx import INPUT_NAME

    return {"vischoose.model": loaded.ref.display, "vischoose.tag": loaded.tag,
            "vischoose.weights": loaded.weights_label, "vischoose.preprocessing": json.dumps(config),
            "vischoose.input": f"{INPUT_NAME}: float32 [batch, 3, H, W], normalised with mean/std",
            "vischoose.versions": f"torch {torch.__version__}, timm {timm.__version__}"}


def _versions(runtime: Runtime) -> dict[str, str]:
    import torch

    return {"torch": torch.__version__, **runtime.versions()}


def require_written(report: ExportReport) -> None:
    """Raise DeployError when the requested variant was rejected and nothing was written."""
    if report.out is None and report.accuracy is not None:
        aware = report.accuracy
        raise DeployError(f"No int8 graph of {report.tag} keeps top-1 within --max-accuracy-drop "
                          f"{aware.max_drop_pts:g} points: the best found ({len(aware.reverted)} of "
                          f"{aware.candidates} layers in float, {len(aware.steps)} quantizations) drops it by "
                          f"{aware.drop_pts:.1f} points on {aware.held_out_images} held-out images "
                          f"({aware.choice_drop_pts:.1f} on the {aware.choice_images} that chose the layers); "
                          "nothing was written.", hint="Ship --precision fp32, raise --max-accuracy-drop, or give "
                          "more labelled images with --data.")
    if report.out is None:
        found = report.shipped.agreement
        raise DeployError(f"The {report.precision} graph of {report.tag} was rejected: its top-1 class agrees with "
                          f"eager fp32 on {found.top1_agreement:.1%} of {found.n_images} images, below "
                          f"--min-agreement {report.min_agreement:.1%}; nothing was written.",
                          hint="Ship --precision fp32, calibrate with more images, or lower --min-agreement if the "
                          "differences are acceptable.")
