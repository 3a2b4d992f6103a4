"""`vischoose profile --optimize`: search the execution settings of each model, each variant in a fresh process.

Variants: dtype (fp32; bf16 autocast where the CPU has avx512_bf16/AMX or the GPU supports it; fp16 autocast on
GPU), channels_last for convolutional models, on CPU the exported graph on ONNX Runtime (fp32, and int8 with the
family's recipe: chosen only when verified on the user's images, vischoose.ortprofile), the CPU thread count, the
throughput batch size (doubled while img/s grows) and torch.compile (when the time budget leaves room for its
compilation). Every variant's logits
on a fixed input are compared with fp32's; one that disagrees is never the best. The plain fp32 setting and the
best one are saved to the store as Profile rows (each trial measures a full row, img/s first in a fresh process).

The child, run as ``python -m vischoose.optimize JOB.json``, times one variant and checks its agreement.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

from vischoose.measure.runner import ProfileOptions, ProfileRun, Progress, Runner, resolve_device, run_child

DEFAULT_BUDGET_S = 300.0  # per model, the whole search
MIN_TOP1_AGREEMENT = 0.75  # share of the fixed batch whose top-1 class must match fp32's (near-ties aside)
TIE_SHARE = 0.01  # classes whose fp32 logits are this close (share of the logit range) are a near-tie
MAX_REL_DIFF = 0.05  # largest logit difference from fp32, as a share of fp32's logit range
AGREE_BATCH = 8
SEARCH_SHARE = 0.95  # of a model's budget the search plans to use (a trial is only started when one fits)
COMPILE_ESTIMATE_S = 45.0  # what one torch.compile of a ResNet-50-sized model takes on a small CPU
ORT_ESTIMATE_S = 30.0  # export (+ quantization) of a ResNet-50-sized model, beyond an eager trial's cost
MIN_GAIN = 1.05  # a larger batch must bring 5% more img/s to go on doubling
MAX_BATCH_STEPS = 3


@dataclass(frozen=True)
class Variant:
    """One execution setting."""

    dtype: str = "float32"  # the forward's dtype; not float32: weights at dtype, forward under torch.autocast
    channels_last: bool = False
    compile: bool = False
    threads: int | None = None
    batch_size: int = 8
    runtime: str = "torch"  # or "onnxruntime" (dtype float32 or int8: the exported graph)

    @property
    def label(self) -> str:
        """'bf16 autocast + channels_last + compile, batch 8' or 'onnxruntime int8, batch 8'."""
        if self.runtime == "onnxruntime":
            threads = f", {self.threads} threads" if self.threads else ""
            return f"onnxruntime {'fp32' if self.dtype == 'float32' else self.dtype}{threads}, batch {self.batch_size}"
        parts = [{"float32": "fp32", "bfloat16": "bf16 autocast", "float16": "fp16 autocast"}[self.dtype]]
        parts += ["channels_last"] * self.channels_last + ["compile"] * self.compile
        threads = f", {self.threads} threads" if self.threads else ""
        return " + ".join(parts) + f"{threads}, batch {self.batch_size}"

    def options(self, base: ProfileOptions, time_budget_s: float) -> ProfileOptions:
        """The profiler options that run this variant."""
        if self.runtime == "onnxruntime":
            return replace(base, runtime="onnxruntime", dtype=self.dtype, autocast=False, channels_last=False,
                           compile=False, threads=self.threads or base.threads, batch_sizes=(self.batch_size,),
                           time_budget_s=time_budget_s)
        return replace(base, runtime="torch", calibration=None, dtype=self.dtype, autocast=self.dtype != "float32",
                       channels_last=self.channels_last, compile=self.compile, threads=self.threads or base.threads, batch_sizes=(self.batch_size,),
                       time_budget_s=time_budget_s)


@dataclass(frozen=True)
class Trial:
    """One variant as measured: img/s, compilation time, agreement with fp32, and whether it may be chosen."""

    variant: Variant
    img_s: float | None = None
    compile_s: float | None = None
    top1_agreement: float | None = None  # 0..1, plain top-1 match with fp32
    max_abs_diff: float | None = None  # of the logits, against fp32
    decisive_agreement: float | None = None  # 0..1, a switch between near-tied classes counted as agreeing
    rel_diff: float | None = None  # max_abs_diff over fp32's mean logit range
    status: str = "ok"  # ok | rejected: ... | failed: ... | skipped: ...
    wall_s: float = 0.0
    is_conv: bool = False
    run: ProfileRun | None = None  # the variant's full profile row (plain and best are saved)

    @property
    def ok(self) -> bool:
        """Measured and agreeing with fp32."""
        return self.status == "ok" and self.img_s is not None


@dataclass(frozen=True)
class Optimized:
    """One model's search: every trial, and the plain and best settings profiled in full."""

    model: str
    trials: tuple[Trial, ...]
    best: Trial | None
    plain_run: ProfileRun | None
    best_run: ProfileRun | None
    elapsed_s: float
    budget_s: float

    @property
    def speedup(self) -> float | None:
        """Best img/s over plain fp32 img/s, from the full profiles."""
        if not (self.plain_run and self.best_run):
            return None
        plain, best = self.plain_run.profile.throughput_img_s, self.best_run.profile.throughput_img_s
        return best / plain if plain and best else None


def bf16_supported(device: str) -> bool:
    """Whether bf16 has fast kernels here: avx512_bf16 or AMX on a CPU, is_bf16_supported on a GPU."""
    if device.startswith("cuda"):
        import torch

        return bool(torch.cuda.is_bf16_supported())
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def dtype_variants(device: str, is_conv: bool, batch: int) -> list[Variant]:
    """The eager settings worth trying after plain fp32, most promising last."""
    dtypes = (["bfloat16"] if bf16_supported(device) else []) + (["float16"] if device.startswith("cuda") else [])
    found = [Variant(channels_last=True, batch_size=batch)] if is_conv else []
    for dtype in dtypes:
        found.append(Variant(dtype=dtype, batch_size=batch))
        if is_conv:
            found.append(Variant(dtype=dtype, channels_last=True, batch_size=batch))
    return found


def thread_counts(device: str) -> list[int]:
    """CPU thread counts worth trying besides torch's default (physical cores, when fewer than logical)."""
    if device != "cpu":
        return []
    import psutil

    physical, logical = psutil.cpu_count(logical=False), psutil.cpu_count()
    return [physical] if physical and logical and physical < logical else []


class _Search:
    """The search for one model, within its time budget."""

    def __init__(self, model: str, base: ProfileOptions, device: str, budget_s: float, folder: Path,
                 runner: Runner, progress: Progress | None) -> None:
        self.model, self.base, self.device, self.budget_s = model, base, device, budget_s
        self.folder, self.runner, self.progress = folder, runner, progress
        self.start = time.monotonic()
        self.trials: list[Trial] = []

    def left_s(self) -> float:
        """Search seconds left."""
        return SEARCH_SHARE * self.budget_s - (time.monotonic() - self.start)

    def trial_budget_s(self) -> float:
        """Timed seconds each trial gets."""
        return max(min(self.base.time_budget_s, 0.04 * self.budget_s), 0.5)

    def run_ort(self, variant: Variant) -> Trial:
        """Export (and quantize) the model and time its graph on ONNX Runtime, judged against eager fp32."""
        from vischoose.models import catalog
        from vischoose.runtimes.ort_measure import OrtJob
        from vischoose.measure.runner import child_job

        if self.progress:
            self.progress(self.model, f"trying {variant.label}", time.monotonic() - self.start)
        options = variant.options(self.base, self.trial_budget_s())
        folder = self.folder / f"ort-{len(self.trials)}"
        job = {**child_job(options, "cpu"), "batch_sizes": [variant.batch_size]}
        begin = time.monotonic()
        (run,) = OrtJob(catalog.parse_model_ref(self.model), job, folder, options).run(self.runner, None, False)
        p = run.profile
        if p.error:
            status = f"failed: {p.error}"
        elif p.variant_status == "rejected":
            status = (f"rejected: top-1 agrees with eager fp32 on {100 * (p.agreement_top1 or 0):.0f}% of "
                      f"{p.agreement_images} images (< {100 * options.min_agreement:.0f}%)")
        elif p.variant_status == "unverified":
            status = "unverified: checked on random inputs or weights only (pass --calibration DIR with pretrained)"
        else:
            status = "ok"
        trial = Trial(variant, img_s=p.throughput_img_s, top1_agreement=p.agreement_top1,
                      max_abs_diff=p.agreement_max_abs_diff, status=status, wall_s=time.monotonic() - begin,
                      is_conv=self.trials[0].is_conv if self.trials else False, run=run)
        self.trials.append(trial)
        return trial

    def run(self, variant: Variant, reference: Path) -> Trial:
        """Time one variant in its own child and check it against the reference logits."""
        if variant.runtime == "onnxruntime":
            return self.run_ort(variant)
        from vischoose.models import catalog
        from vischoose.measure import machine
        from vischoose.measure.runner import PEAK_CACHE_FILE, _ChildJob
        from vischoose.results.store import home

        if self.progress:
            self.progress(self.model, f"trying {variant.label}", time.monotonic() - self.start)
        index = len(self.trials)
        job = {"model": self.model, "device": self.device, "dtype": variant.dtype, "autocast": variant.dtype !=
               "float32", "channels_last": variant.channels_last, "compile": variant.compile,
               "threads": variant.threads or self.base.threads, "input_size": self.base.input_size,
               "weights": self.base.weights, "batch": variant.batch_size, "time_budget_s": self.trial_budget_s(),
               "reference": str(reference), "result_path": str(self.folder / f"trial-{index}.json"),
               "machine": machine.fingerprint(), "peak_cache": str(home() / PEAK_CACHE_FILE)}
        job_path = self.folder / f"trial-{index}-job.json"
        job_path.write_text(json.dumps(job))
        env = dict(os.environ)
        if job["threads"]:
            env["OMP_NUM_THREADS"] = str(job["threads"])
        begin, tail = time.monotonic(), []
        status = self.runner([sys.executable, "-m", "vischoose.measure.optimize", str(job_path)], env, tail.append)
        path = Path(job["result_path"])
        out = json.loads(path.read_text()) if path.is_file() else {}
        trial = judge(variant, out, status, tail, time.monotonic() - begin)
        if out.get("model"):
            child = _ChildJob(catalog.parse_model_ref(self.model), job, self.folder, variant.options(self.base, 0))
            error = None if trial.ok else trial.status
            trial = replace(trial, run=ProfileRun(child._profile(out, variant.batch_size, error), tuple(out["notes"]),
                                                  child._detail(out, variant.batch_size)))
        self.trials.append(trial)
        return trial

    def best(self, runtime: str | None = None) -> Trial | None:
        """The fastest trial that agrees with fp32 (of one runtime, if given)."""
        good = [t for t in self.trials if t.ok and runtime in (None, t.variant.runtime)]
        return max(good, key=lambda t: t.img_s or 0.0) if good else None


def judge(variant: Variant, out: dict[str, Any], status: int, tail: list[str], wall_s: float) -> Trial:
    """A Trial from a child's result: failed, rejected (disagrees with fp32) or ok."""
    from vischoose.measure.runner import describe_exit

    base = Trial(variant, out.get("img_s"), out.get("compile_s"), out.get("top1_agreement"),
                 out.get("max_abs_diff"), out.get("decisive_agreement"), out.get("rel_diff"), "ok", wall_s,
                 bool(out.get("is_conv")))
    if out.get("error") or status != 0 or base.img_s is None:
        last = next((line.strip() for line in reversed(tail) if line.strip()), "")
        why = out.get("error") or f"{describe_exit(status)} ({last[:120]})"
        return replace(base, status=f"failed: {why}")
    if base.decisive_agreement is not None and base.decisive_agreement < MIN_TOP1_AGREEMENT:
        return replace(base, status=f"rejected: top-1 agrees with fp32 on {100 * base.decisive_agreement:.0f}% "
                                    f"of the fixed batch, near-ties aside (< {100 * MIN_TOP1_AGREEMENT:.0f}%)")
    if base.rel_diff is not None and base.rel_diff > MAX_REL_DIFF:
        return replace(base, status=f"rejected: logits differ from fp32 by {100 * base.rel_diff:.1f}% of their "
                                    f"range (> {100 * MAX_REL_DIFF:.0f}%)")
    return base


def search(s: _Search, reference: Path) -> None:
    """Plain fp32, then dtype/layout, threads, compile and batch size, while the budget lasts."""
    base_batch = (s.base.batch_sizes or (64 if s.device.startswith("cuda") else 8,))[0]
    plain = s.run(Variant(batch_size=base_batch), reference)
    if not plain.ok:
        return
    cost = plain.wall_s  # what one more eager trial costs, about

    def room(extra_s: float = 0.0) -> bool:
        return s.left_s() >= cost + extra_s

    for variant in dtype_variants(s.device, plain.is_conv, base_batch):
        if not room():
            s.trials.append(Trial(variant, status="skipped: time budget", is_conv=plain.is_conv))
            continue
        s.run(variant, reference)
    if s.device == "cpu":  # the deployed graph: ONNX Runtime on the CPU
        for dtype in ("float32", "int8"):
            variant = Variant(dtype=dtype, batch_size=base_batch, runtime="onnxruntime")
            if room(ORT_ESTIMATE_S):
                s.run(variant, reference)
            else:
                s.trials.append(Trial(variant, status=f"skipped: exporting takes about {ORT_ESTIMATE_S:.0f} s, "
                                                      f"{max(s.left_s(), 0):.0f} s of the search budget left"))
    for threads in thread_counts(s.device):
        if room():
            s.run(replace(s.best().variant, threads=threads), reference)
    best = s.best(runtime="torch")
    compiled = replace(best.variant, compile=True)
    if room(COMPILE_ESTIMATE_S):
        s.run(compiled, reference)
    else:
        s.trials.append(Trial(compiled, status=f"skipped: compiling takes about {COMPILE_ESTIMATE_S:.0f} s, "
                                              f"{max(s.left_s(), 0):.0f} s of the search budget left"))
    sweep_batch(s, reference, room)


def sweep_batch(s: _Search, reference: Path, room: Any) -> None:
    """Double the best setting's batch size while img/s grows by MIN_GAIN and it runs."""
    for _ in range(MAX_BATCH_STEPS):
        best = s.best()
        rebuild = COMPILE_ESTIMATE_S if best and best.variant.compile else ORT_ESTIMATE_S if best and \
            best.variant.runtime == "onnxruntime" else 0.0
        if best is None or not room(rebuild):
            return  # a compiled model compiles again for a new batch size
        bigger = s.run(replace(best.variant, batch_size=2 * best.variant.batch_size), reference)
        if not bigger.ok or bigger.img_s < MIN_GAIN * best.img_s:
            return


def optimize_models(models: list[str], base: ProfileOptions, budget_s: float, progress: Progress | None = None,
                    runner: Runner = run_child, save: bool = True) -> list[Optimized]:
    """Search each model's settings within budget_s seconds; the plain and best rows are saved to the store."""
    from vischoose.models import catalog
    from vischoose.measure.runner import check_models, save_runs

    check_models([catalog.parse_model_ref(m) for m in models])
    device = resolve_device(base.device)
    base = replace(base, device=device)
    found: list[Optimized] = []
    try:
        with tempfile.TemporaryDirectory(prefix="vischoose-optimize-") as tmp:
            for i, model in enumerate(models):
                folder = Path(tmp) / str(i)
                folder.mkdir()
                s = _Search(model, base, device, budget_s, folder, runner, progress)
                search(s, folder / "reference.pt")
                best = s.best()
                found.append(Optimized(model, tuple(s.trials), best, s.trials[0].run, best.run if best else None,
                                       time.monotonic() - s.start, budget_s))
    finally:  # on Ctrl-C too: what finished is kept
        if save:
            save_runs(list(iter_rows(found)))
    return found


# --- the child ----------------------------------------------------------------------------------------

def agreement(net: Any, job: dict[str, Any], size: int, layout: Any) -> dict[str, Any]:
    """Logits on a fixed batch against the reference's (written here by the first, fp32, trial)."""
    import torch

    gen, batch = torch.Generator().manual_seed(0), job["batch"]
    x = torch.randn(AGREE_BATCH, 3, size, size, generator=gen).to(job["device"]).contiguous(memory_format=layout)
    if not job["autocast"]:
        x = x.to(getattr(torch, job["dtype"]))
    with torch.inference_mode():  # at the timed batch size, so that a compiled model is not compiled again
        if batch >= AGREE_BATCH:
            logits = net(x.repeat(-(-batch // AGREE_BATCH), 1, 1, 1)[:batch])[:AGREE_BATCH]
        else:
            logits = torch.cat([net(x[i:i + batch]) for i in range(0, AGREE_BATCH, batch)])
    logits = logits.float().cpu()
    path = Path(job["reference"])
    if not path.is_file():
        torch.save(logits, path)
    ref = torch.load(path)
    span = ref.max(1).values - ref.min(1).values
    # a switch to a class whose fp32 logit is within TIE_SHARE of the range of fp32's best is a near-tie:
    # rounding decides it (random weights give many), not a wrong kernel
    chosen = ref.gather(1, logits.argmax(1, keepdim=True)).squeeze(1)
    decisive = chosen >= ref.max(1).values - TIE_SHARE * span
    diff = (logits - ref).abs().max().item()
    return {"top1_agreement": (logits.argmax(1) == ref.argmax(1)).float().mean().item(), "max_abs_diff": diff,
            "decisive_agreement": decisive.float().mean().item(), "rel_diff": diff / max(span.mean().item(), 1e-12)}


def trial_main(job: dict[str, Any], result: dict[str, Any]) -> None:
    """One variant in this fresh process: img/s first (as a new serving process), then its peak memory, agreement
    with fp32, batch-1 latency (eager variants), FLOPs and the machine peak; `result` is shaped as measure's."""
    import gc

    import torch

    from vischoose.measure import child as measure

    phase, device_name = measure._start(job, result)
    device, batch = torch.device(job["device"]), job["batch"]
    gc.collect()
    baseline_mb, _ = measure.rss_mb(), measure.reset_peak_rss()
    torch.manual_seed(0)  # random init: the same weights in every trial
    net, make_input = measure.prepare(job, result)
    eager = net
    result["is_conv"] = sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) > 1  # a ViT has one: its stem
    x, timer = make_input(batch), measure.make_timer(device)
    with torch.inference_mode():
        if job["compile"]:
            begin, net = time.perf_counter(), measure.compile_for_inference(net)
            net(x)  # compiles for this shape
            result["compile_s"] = time.perf_counter() - begin
        phase("throughput", batch)
        samples, warm = measure.timed_phase(lambda: net(x), timer, job["time_budget_s"], lambda n, w: None)
    result["throughput"][str(batch)] = {**measure.summary_dict([batch / s for s in samples]), "warmup": warm}
    result["img_s"] = result["throughput"][str(batch)]["median"]
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else \
        measure.peak_rss_mb() - baseline_mb
    result["memory"][str(batch)] = {"peak_mb": peak}
    layout = torch.channels_last if job["channels_last"] else torch.contiguous_format
    result.update(agreement(net, job, x.shape[-1], layout))
    if not job["compile"]:  # batch 1 would compile the model again
        phase("latency", 1)
        x = make_input(1)
        with torch.inference_mode():
            samples, warm = measure.timed_phase(lambda: net(x), timer, job["time_budget_s"] / 3, lambda n, w: None)
        result["latency"] = {**measure.summary_dict(samples, 1e3), "warmup": warm}
    result["flops_per_image"] = measure.count_flops(eager, make_input(1))
    del net, eager, x
    key = measure.peak_key(job["machine"], job["device"], device_name, job["dtype"], torch.get_num_threads())
    result["peak_gflops_s"] = measure.cached_peak(job, device, getattr(torch, job["dtype"]), key)["gflops_s"]


def main(argv: list[str]) -> int:
    """Child entry point: one variant; the result file says what happened."""
    job = json.loads(Path(argv[0]).read_text())
    result: dict[str, Any] = {"notes": [], "memory": {}, "throughput": {}, "phase": "starting", "batch_size": None}
    try:
        trial_main(job, result)
    except Exception as err:  # a variant can fail in any way (compiler, kernels, memory): it is that trial's error
        traceback.print_exc()
        result["error"] = f"{type(err).__name__}: {err}"[:300]
    Path(job["result_path"]).write_text(json.dumps(result))
    return 0


def failed(found: list[Optimized]) -> None:
    """Raise ProfilingError when a model had no setting that could be measured (the table says why)."""
    from vischoose.errors import ProfilingError

    bad = [o.model for o in found if o.best is None]
    if bad:
        raise ProfilingError(f"No setting of {', '.join(bad)} could be measured; the status column says why.")


def iter_rows(found: list[Optimized]) -> Iterator[ProfileRun]:
    """The full profile runs (plain, best) of every model."""
    for opt in found:
        yield from (r for r in (opt.plain_run, opt.best_run if opt.best_run is not opt.plain_run else None) if r)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
