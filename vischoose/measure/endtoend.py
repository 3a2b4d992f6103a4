"""The child mode "endtoend": each photo's own cost, as an app classifying one photo at a time pays it. For each image,
four clock readings: before reading the file, after decoding it to 8-bit RGB (inference.images.load_image: Pillow,
EXIF orientation), after the model's own evaluation preprocessing (timm's transform from the model's data config:
resize, centre crop, to tensor, normalise; inference.calibration.transform_for), after the logits are back (the
model at batch 1: the runtime's session, or the eager module). The parts of each image add up to its whole.

The photos are the user's (`images`) or phone-camera JPEGs made once per profile run (inference.photos). A graph
runtime's process imports torch here, for timm's transform: the preprocessing is the model's own, not a rewrite.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from vischoose.measure import application, stats
from vischoose.measure.protocol import Job, Result, phase_reporter
from vischoose.runtimes import registry

MIN_RUNS = 5  # images timed at least, whatever the budget
MAX_RUNS = 200
BUDGET_SHARE = 0.25  # of the profile's time budget (per model) spent here at most, beyond MIN_RUNS
Stamps = tuple[float, float, float, float]


def endtoend(job: Job, result: Result) -> None:
    """Decode, preprocess and run each photo, timed apart, until the median whole is known or the budget ends."""
    from vischoose.inference import calibration, photos
    from vischoose.inference.images import images_in_folder, load_image

    app = job.app or {}
    phase = phase_reporter(job, result)
    phase("photos" if app.get("synthesized") else "end to end", 1)
    paths = photos.synthesize(app["images"]) if app.get("synthesized") else images_in_folder(Path(app["images"]))
    model, config = (_graph_model if registry.get(job.runtime).is_graph else _eager_model)(job, result)
    transform = calibration.transform_for(config)
    phase("end to end", 1)
    with application.timed_section(job):
        stamps = time_images(paths, load_image, transform, model, max(job.time_budget_s * BUDGET_SHARE, 1.0))
    result["end_to_end"] = {**application.split(stamps), "photos": photos.describe(paths, bool(app.get("synthesized"))),
                            "decoder": photos.decoder(), "preprocessing": config}
    result.update(status="done", phase="done", batch_size=None)


def time_images(paths: list[Path], decode: Callable[[Path], Any], preprocess: Callable[[Any], Any],
                model: Callable[[Any], Any], budget_s: float) -> list[Stamps]:
    """Each image's four readings (start, decoded, preprocessed, answered), the images taken in turn after one
    untimed warm-up pass; at least MIN_RUNS (and each image once), then until the median whole is known within +-2%
    or budget_s has passed, at most MAX_RUNS."""
    model(preprocess(decode(paths[0])))
    stamps: list[Stamps] = []
    start = time.monotonic()
    while len(stamps) < MAX_RUNS:
        path = paths[len(stamps) % len(paths)]
        first = time.perf_counter()
        image = decode(path)
        decoded = time.perf_counter()
        x = preprocess(image)
        ready = time.perf_counter()
        model(x)
        stamps.append((first, decoded, ready, time.perf_counter()))
        enough = len(stamps) >= max(MIN_RUNS, len(paths))
        if enough and (time.monotonic() - start >= budget_s or stats.is_settled([s[3] - s[0] for s in stamps])):
            break
    return stamps


def _graph_model(job: Job, result: Result) -> tuple[Callable[[Any], Any], dict[str, Any]]:
    """The runtime's session, taking one preprocessed image (a tensor from timm's transform) as a batch of 1; the
    model's preprocessing, as its build child read it from the model's data config."""
    from vischoose.runtimes.artifact import Artifact

    forward = registry.get(job.runtime).session(Artifact.from_dict(job.artifact), job.threads)
    return (lambda x: forward(x.numpy()[None])), (job.app or {})["preprocessing"]


def _eager_model(job: Job, result: Result) -> tuple[Callable[[Any], Any], dict[str, Any]]:
    """The eager module at the run's dtype and layout, taking one preprocessed image, its logits back on the host;
    the model's own preprocessing (timm's data config, at the measured input size)."""
    import torch

    from vischoose.inference.prediction import describe_preprocessing, eval_data_config
    from vischoose.measure import eager

    eager.start(job, result)
    net, make_input = eager.prepare(job, result)
    reference = make_input(1)
    config = eval_data_config(getattr(net, "net", net))  # autocast wraps the timm module as .net
    config["input_size"] = (3, result["model"]["input_size"], result["model"]["input_size"])

    def model(x: Any) -> Any:
        with torch.inference_mode():
            batch = x[None].to(reference.device, reference.dtype).contiguous(memory_format=_layout(reference))
            return net(batch).float().cpu()

    return model, describe_preprocessing(config)


def _layout(reference: Any) -> Any:
    import torch

    channels_last = reference.is_contiguous(memory_format=torch.channels_last) and not reference.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


MODES: dict[str, Callable[[Job, Result], None]] = {application.END_TO_END: endtoend}
