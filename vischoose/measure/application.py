"""What the application sees, on the parent's side: after a model's usual children (measure.runner), the children that
time what an app meets: a cold start in a fresh process (measure.coldstart, every profile), each photo's own cost
from JPEG to logits (measure.endtoend, with end_to_end or images) and where one inference's time goes, operator by
operator (measure.layers, with layers). Their figures join the model's result and become Profile fields here
(app_fields). Pure Python: no torch, no runtime.

timed_section is the one place the machine-wide measurement lock (measure.protocol.timed) wraps these timed phases.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from vischoose.measure import protocol
from vischoose.measure.protocol import Job
from vischoose.records import Profile

if TYPE_CHECKING:
    from collections import deque

COLD, END_TO_END, LAYERS = "coldstart", "endtoend", "layers"  # the child modes
KEYS = {COLD: "cold_start", END_TO_END: "end_to_end", LAYERS: "layer_profile"}  # what each adds to the result
WHAT = {COLD: "cold start", END_TO_END: "end to end", LAYERS: "layer profile"}
PHOTOS_FOLDER = "photos"  # beside the models' folders in a profile run's temporary folder: made once per run
Stopped = Callable[[dict[str, Any], int, "deque[str]"], "str | None"]


@contextlib.contextmanager
def timed_section(job: Job) -> Iterator[None]:
    """Around a timed phase of these children (the cold start, the end-to-end loop, the profiled runs): the machine's
    measurement lock, one timed measurement at a time per machine (measure.protocol.timed).

    Raises:
        MeasurementBusyError: the job says not to wait (--no-wait) and another process holds the lock.
    """
    with protocol.timed(job):
        yield


def modes(job: Job) -> list[str]:
    """The application children a profile runs: the cold start (unless turned off), end to end and layers when
    asked."""
    request = job.request
    return [m for m, asked in ((COLD, request.cold_start), (END_TO_END, request.end_to_end), (LAYERS, request.layers))
            if asked]


def run_children(child: Any, result: dict[str, Any], runner: Any, progress: Any, debug: bool,
                 stopped: Stopped) -> None:
    """Run a model's application children (after its timings) through its measure.runner.ChildJob and merge their
    figures into `result`; a child that fails leaves a note, never the row's error (its other figures stand)."""
    job: Job = child.job
    app: dict[str, Any] = {"preprocessing": result.get("preprocessing")}
    if job.request.end_to_end:
        app.update(images=job.request.images or str(Path(child.folder).parent / PHOTOS_FOLDER),
                   synthesized=job.request.images is None)
    child.job = job.but(app=app)
    for mode in modes(job):
        found, status, tail = child.attempt(mode, [1], runner, progress, debug)
        error = stopped(found, status, tail)
        if error is None and KEYS[mode] not in found:
            error = "the child wrote no figures"
        if error is not None:
            result.setdefault("notes", []).append(f"{child.ref.display}: {WHAT[mode]} not measured: {error}")
            continue
        result[KEYS[mode]] = found[KEYS[mode]]
        result.setdefault("notes", []).extend(n for n in found.get("notes", []) if n not in result["notes"])
    child.job = job


def split(stamps: list[tuple[float, float, float, float]]) -> dict[str, Any]:
    """End-to-end figures from each image's four clock readings (start, decoded, preprocessed, logits back), seconds:
    p50/p90 and mean of decode, preprocess, model and the whole (last minus first reading), ms. Each image's parts
    add up to its whole; the means add up too, the percentiles do not."""
    import statistics

    parts = {"decode": [b - a for a, b, _, _ in stamps], "preprocess": [c - b for _, b, c, _ in stamps],
             "model": [d - c for _, _, c, d in stamps], "total": [d - a for a, _, _, d in stamps]}
    out: dict[str, Any] = {"runs": len(stamps)}
    for name, values in parts.items():
        ms = sorted(v * 1e3 for v in values)
        out[name] = {"p50": statistics.median(ms), "p90": _p90(ms), "mean": statistics.fmean(ms)}
    return out


def _p90(ms: list[float]) -> float:
    from vischoose.measure.stats import quantile

    return quantile(ms, 0.9)


def app_fields(row: Profile, result: dict[str, Any]) -> Profile:
    """The row with what its application children measured: cold start, end to end, the layer profile."""
    cold, e2e = result.get("cold_start") or {}, result.get("end_to_end") or {}
    fields: dict[str, Any] = {"layer_profile": result.get("layer_profile")}
    if cold:
        fields.update(cold_import_ms=cold["import_ms"], cold_load_ms=cold["load_ms"], cold_first_ms=cold["first_ms"],
                      cold_start_ms=cold["load_ms"] + cold["first_ms"], cold_rss_mb=cold["rss_mb"])
    if e2e:
        total, model = e2e["total"], e2e["model"]
        fields.update(e2e_ms_p50=total["p50"], e2e_ms_p90=total["p90"], decode_ms_p50=e2e["decode"]["p50"],
                      decode_ms_p90=e2e["decode"]["p90"], preprocess_ms_p50=e2e["preprocess"]["p50"],
                      preprocess_ms_p90=e2e["preprocess"]["p90"], e2e_model_ms_p50=model["p50"],
                      e2e_model_ms_p90=model["p90"],
                      e2e_model_share=model["mean"] / total["mean"] if total["mean"] > 0 else None,
                      e2e_runs=e2e["runs"], e2e_photos=e2e["photos"], decoder=e2e["decoder"])
    return replace(row, **fields)
