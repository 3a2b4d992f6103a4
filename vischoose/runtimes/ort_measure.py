"""`vischoose profile --runtime onnxruntime`: each model measured as it would be deployed, an ONNX graph (fp32, or
int8 with its family's recipe) run by ONNX Runtime on the CPU, checked against the eager fp32 model.

Three child processes per model (``python -m vischoose.ortprofile JOB.json``), like the torch profiler's:
"build" (torch: export, quantize, agreement with eager fp32 on a fixed batch, FLOPs), then "memory" and
"timing", which import onnxruntime but not torch, as a deployed process would: peak RSS over the idle process
at each batch size, then throughput at each batch size from a fresh session and batch-1 latency.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from vischoose.runtimes import onnxruntime as deploy
from vischoose.measure.child import child_main, emit, peak_rss_mb, report_phase, reset_peak_rss, rss_mb, summary_dict
from vischoose.measure.runner import ProfileRun, _ChildJob

PRECISIONS = {"float32": "fp32", "int8": "int8"}  # the profile dtype -> the graph's precision


class OrtJob(_ChildJob):
    """One model's three children: build the graph and check it, then its memory, then its timings."""

    child_module = "vischoose.runtimes.ort_measure"

    def run(self, runner: Any, progress: Any, debug: bool) -> list[ProfileRun]:
        """The model's rows, one per batch size."""
        batches = list(self.job["batch_sizes"])
        self.job = {**self.job, "graph_dir": str(self.folder), "calibration": self.options.calibration,
                    "min_agreement": self.options.min_agreement}
        built, status, tail = self._attempt("build", batches, runner, progress, debug)
        result = {"memory": {}, "throughput": {}, "notes": [], **built}
        error = self._crash(built, status, tail) or (built.get("error") if built.get("status") == "failed" else None)
        if error is None:
            self.job["graph"] = built["graph"]
            for mode in ("memory", "timing"):
                found, status, tail = self._attempt(mode, batches, runner, progress, debug)
                for key in ("memory", "throughput"):
                    result[key].update(found.get(key, {}))
                for key in ("latency", "baseline_rss_mb", "ort_version"):
                    if key in found:
                        result[key] = found[key]
                error = self._crash(found, status, tail) or (found.get("error") if found.get("status") == "failed"
                                                             else None)
                if error:
                    break
        notes = tuple(result.get("notes", [])) + self._size_notes(result)
        saveable = result.get("error_kind") != "setup"
        return [ProfileRun(self._row(result, b, self._row_error(result, b, error)), notes,
                           self._detail(result, b), saveable) for b in batches]

    def _row(self, result: dict[str, Any], batch: int, error: str | None) -> Any:
        row = self._profile(result, batch, error)
        graph = result.get("graph_facts", {})
        agree = graph.get("agreement") or {}
        efficiency = row.efficiency if self.options.dtype == "float32" else None  # no int8 peak is measured
        return replace(row, runtime="onnxruntime", runtime_version=result.get("ort_version"),
                       weights_mb=graph.get("file_mb"), file_mb=graph.get("file_mb"),
                       export_s=graph.get("export_s"), quantize_s=graph.get("quantize_s"), recipe=graph.get("recipe"),
                       agreement_top1=agree.get("top1_agreement"), agreement_max_abs_diff=agree.get("max_abs_diff"),
                       agreement_cosine=agree.get("cosine"), agreement_images=agree.get("n_images"),
                       agreement_source=graph.get("check_source"), variant_status=graph.get("status"),
                       efficiency=efficiency, peak_reserved_mb=None)


# --- the children -----------------------------------------------------------------------------------


def build(job: dict[str, Any], result: dict[str, Any]) -> None:
    """Export the graph (and quantize it), check it against eager fp32, count FLOPs, read the fp32 peak."""
    import timm
    import torch

    from vischoose.runtimes import export as exporting
    from vischoose.measure import machine
    from vischoose.measure import child as measure
    from vischoose.errors import VischooseError
    from vischoose.models.loading import load_model

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    result["conditions"] = {"device": "cpu", "device_name": machine.cpu_name(), "threads": _threads(job),
                            "torch_version": torch.__version__, "timm_version": timm.__version__}
    report_phase(job, result, "loading")
    try:
        loaded = load_model(job["model"], weights=job["weights"])
        size = job["input_size"] or loaded.input_size
        if size != loaded.input_size and hasattr(loaded.model, "set_input_size"):
            loaded.model.set_input_size(img_size=(size, size))
        calib = None
        if job.get("calibration"):
            calib = exporting.load_calibration(job["calibration"], exporting.preprocessing(loaded, size))
    except VischooseError as err:
        result.update(status="failed", error=str(err), error_kind="setup", exit_code=err.exit_code)
        return
    if job["weights"] == "auto" and loaded.weights == "random":
        result["notes"].append(f"{job['model']}: no cached pretrained weights, so random init of the same "
                               "architecture: speed and size hold, agreement with fp32 says little.")
    result["model"] = {"tag": loaded.tag, "arch": loaded.arch, "params": loaded.params,
                       "weights": loaded.weights_label, "input_size": size, "pretrained_input_size": loaded.input_size}
    batch = calib.batch if calib else deploy.random_batch(size)
    reference = deploy.eager_logits(loaded.model, batch)
    folder = Path(job["graph_dir"])
    report_phase(job, result, "exporting")
    try:
        exported = deploy.export_onnx(loaded, folder / "model-fp32.onnx", size, check_batch=batch, reference=reference)
    except VischooseError as err:
        result.update(status="failed", error=str(err), error_kind="measure")
        return
    facts: dict[str, Any] = {"file_mb": exported.file_mb, "export_s": exported.export_s,
                             "check_source": "images" if calib else "random"}
    graph, found, status = exported.path, exported.agreement, "ok"
    if job["dtype"] == "int8":
        report_phase(job, result, "quantizing")
        family = deploy.model_family(loaded.model)
        try:
            quant = deploy.quantize_int8(exported.path, folder / "model-int8.onnx", family,
                                         [calib.batch] if calib else None)
            found = deploy.agreement(reference, deploy.run_session(deploy.ort_session(quant.path), batch))
        except VischooseError as err:
            result.update(status="failed", error=str(err), error_kind="measure")
            return
        graph = quant.path
        status = judge(found, calib is not None, loaded.weights != "random", job["min_agreement"])
        facts.update(file_mb=quant.file_mb, quantize_s=quant.quantize_s, recipe=quant.recipe.name)
        if quant.recipe.note:
            result["notes"].append(f"{job['model']}: {quant.recipe.note}.")
        if status != "ok":
            result["notes"].append(f"{job['model']} int8: {_status_note(status, found, job['min_agreement'])}")
    facts.update(agreement=found.to_dict(), status=status)
    result.update(graph=str(graph), graph_facts=facts)
    report_phase(job, result, "flops")
    result["flops_per_image"] = measure.count_flops(loaded.model, torch.randn(1, 3, size, size))
    del loaded
    if job["dtype"] == "float32":  # efficiency against the fp32 matmul peak (no int8 peak is measured)
        key = measure.peak_key(job["machine"], "cpu", result["conditions"]["device_name"], "float32",
                               result["conditions"]["threads"])
        peak = measure.cached_peak(job, torch.device("cpu"), torch.float32, key)
        result.update(peak_gflops_s=peak["gflops_s"], peak_kernel=peak.get("kernel"))
    result.update(status="done", phase="done", batch_size=None)


def judge(found: deploy.Agreement, real_images: bool, pretrained: bool, min_agreement: float) -> str:
    """'ok', 'rejected' (below the threshold on real images) or 'unverified' (random inputs or weights)."""
    if not (real_images and pretrained):
        return "unverified"
    return "ok" if found.top1_agreement >= min_agreement else "rejected"


def _status_note(status: str, found: deploy.Agreement, min_agreement: float) -> str:
    if status == "rejected":
        return (f"rejected: top-1 agrees with eager fp32 on {found.top1_agreement:.1%} of {found.n_images} images "
                f"(< {min_agreement:.0%}); never recommended.")
    return ("unverified: its agreement with fp32 was checked on random inputs or random weights only; profile "
            "pretrained weights with --calibration DIR (your images) to verify it.")


def _threads(job: dict[str, Any]) -> int:
    if job["threads"]:
        return int(job["threads"])
    import psutil

    return psutil.cpu_count(logical=False) or psutil.cpu_count() or 1


def _session(job: dict[str, Any], result: dict[str, Any]) -> Any:
    import onnxruntime

    result["ort_version"] = onnxruntime.__version__
    return deploy.ort_session(job["graph"], job["threads"])


def memory(job: dict[str, Any], result: dict[str, Any]) -> None:
    """Peak RSS over the idle process (onnxruntime imported) of one run at each batch size, smallest first."""
    import numpy  # noqa: F401  (imported before the baseline: a deployed process has it too)
    import onnxruntime  # noqa: F401

    baseline = rss_mb()
    result["baseline_rss_mb"] = baseline
    session = _session(job, result)
    side = session.get_inputs()[0].shape[-1]
    for batch in sorted(job["batch_sizes"]):
        report_phase(job, result, "memory", batch)
        reset_peak_rss()
        deploy.run_session(session, deploy.random_batch(side, n=batch))
        result["memory"][str(batch)] = {"peak_mb": peak_rss_mb() - baseline}
    result.update(status="done", phase="done", batch_size=None)


def timing(job: dict[str, Any], result: dict[str, Any]) -> None:
    """Throughput at each batch size from a fresh session, then batch-1 latency; one time budget."""
    from vischoose.measure.child import timed_phase

    session = _session(job, result)
    side, name = session.get_inputs()[0].shape[-1], session.get_inputs()[0].name
    start, batches = time.monotonic(), sorted(job["batch_sizes"])

    def budget(phases_left: int) -> float:
        return max(job["time_budget_s"] - (time.monotonic() - start), 0.0) / phases_left

    def report(n: int, width: float | None) -> None:
        emit("progress", n=n, ci_pct=None if width is None else 100 * width)

    for i, batch in enumerate(batches):
        report_phase(job, result, "throughput", batch)
        feed = {name: deploy.random_batch(side, n=batch)}
        samples, warm = timed_phase(lambda: session.run(None, feed), deploy.cpu_timer, budget(len(batches) - i + 1),
                                    report)
        result["throughput"][str(batch)] = {**summary_dict([batch / s for s in samples]), "warmup": warm}
    report_phase(job, result, "latency", 1)
    feed = {name: deploy.random_batch(side, n=1)}
    samples, warm = timed_phase(lambda: session.run(None, feed), deploy.cpu_timer, budget(1), report)
    result["latency"] = {**summary_dict(samples, 1e3), "warmup": warm}
    result.update(status="done", phase="done", batch_size=None)


def main(argv: list[str]) -> int:
    """Child entry point: read the job file, do its mode, leave the result file behind."""
    modes = {"build": build, "memory": memory, "timing": timing}
    return child_main(argv, lambda job, result: modes[job["mode"]](job, result))

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
