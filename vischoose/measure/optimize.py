"""`vischoose profile --optimize`: search the execution settings of each model, each setting in a fresh process.

Settings: dtype (fp32; bf16 autocast where the CPU has avx512_bf16/AMX or the GPU supports it; fp16 autocast on
GPU), channels_last for convolutional models, the throughput batch size (doubled while img/s grows by MIN_GAIN; tried
straight after the dtypes, while the budget is whole: last in the search, the budget was always spent before it),
on CPU the exported graph on every runtime installed here (each precision it runs here; int8 chosen only when
verified on the user's images), the CPU thread count and torch.compile (when the time budget leaves room for its
compilation), then the batch of a graph that beat torch. Each skip and the end of each doubling say why.
Every setting's logits on a fixed input are compared with fp32's; one that disagrees is never the best. The plain
fp32 setting and the best one are saved to the store as Profile rows (each trial measures a full row, img/s first
in a fresh process). Trials run in measure.child ("trial" mode of measure.eager, or a graph's three children).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

from vischoose import machine
from vischoose.deploy import verdict
from vischoose.deploy.verdict import REJECTED, UNVERIFIED
from vischoose.errors import ProfilingError
from vischoose.measure import rows
from vischoose.measure.options import check_models, resolve_device
from vischoose.measure.runner import (
    ChildJob,
    Keep,
    ProfileRun,
    Progress,
    Runner,
    article_models,
    describe_exit,
    new_job,
    run_child,
)
from vischoose.models import catalog
from vischoose.requests.profile import ProfileRequest
from vischoose.runtimes import registry
from vischoose.runtimes.agreement import Agreement
from vischoose.runtimes.precision import dtype_of, precision_of

DEFAULT_BUDGET_S = 300.0  # per model, the whole search
MIN_TOP1_AGREEMENT = 0.75  # share of the fixed batch whose top-1 class must match fp32's (near-ties aside)
MAX_REL_DIFF = 0.05  # largest logit difference from fp32, as a share of fp32's logit range
SEARCH_SHARE = 0.95  # of a model's budget the search plans to use (a trial is only started when one fits)
COMPILE_ESTIMATE_S = 45.0  # what one torch.compile of a ResNet-50-sized model takes on a small CPU
EXPORT_ESTIMATE_S = 30.0  # export (+ quantization) of a ResNet-50-sized model, beyond an eager trial's cost
MIN_GAIN = 1.05  # a larger batch must bring 5% more img/s to go on doubling
MAX_BATCH_STEPS = 3
_AUTOCAST = {"float32": "fp32", "bfloat16": "bf16 autocast", "float16": "fp16 autocast"}


@dataclass(frozen=True)
class Setting:
    """One execution setting: torch eager (dtype, layout, compile) or an exported graph, threads, batch size."""

    dtype: str = "float32"  # the forward's dtype; not float32: weights at dtype, forward under torch.autocast
    channels_last: bool = False
    compile: bool = False
    threads: int | None = None
    batch_size: int = 8
    runtime: str = registry.TORCH  # or a graph runtime (at a precision it runs: the exported file)

    @property
    def is_graph(self) -> bool:
        """An exported file run by its runtime, not torch eager."""
        return registry.get(self.runtime).is_graph

    @property
    def label(self) -> str:
        """'bf16 autocast + channels_last + compile, batch 8' or 'onnxruntime int8, batch 8'."""
        threads = f", {self.threads} threads" if self.threads else ""
        if self.is_graph:
            return f"{self.runtime} {precision_of(self.dtype)}{threads}, batch {self.batch_size}"
        parts = [_AUTOCAST[self.dtype]] + ["channels_last"] * self.channels_last + ["compile"] * self.compile
        return " + ".join(parts) + f"{threads}, batch {self.batch_size}"

    def request(self, base: ProfileRequest, time_budget_s: float) -> ProfileRequest:
        """The profile request that runs this setting."""
        common = {"dtype": self.dtype, "threads": self.threads or base.threads, "batch_sizes": (self.batch_size,),
                  "time_budget_s": time_budget_s, "runtime": self.runtime, "device": "cpu" if self.is_graph else
                  base.device, "optimize": False, "cold_start": False}  # a trial times warm speed only
        if self.is_graph:
            return base.but(autocast=False, channels_last=False, compile=False, **common)
        return base.but(calibration=None, autocast=self.dtype != "float32", channels_last=self.channels_last,
                        compile=self.compile, **common)


@dataclass(frozen=True)
class Trial:
    """One variant as measured: img/s, compilation time, agreement with fp32, and whether it may be chosen."""

    variant: "Setting"
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

    @property
    def cost_s(self) -> float:
        """What running this setting again, or at another batch, costs: its wall time, a graph's build included (a
        runtime that plans memory for its largest batch builds again for a doubled one; the others' files come from
        the graph cache by then)."""
        return self.wall_s


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
    batch_notes: tuple[str, ...] = ()  # why each batch doubling stopped (or was not tried)

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
    return machine.has_bf16()


def dtype_variants(device: str, is_conv: bool, batch: int) -> list[Setting]:
    """The eager settings worth trying after plain fp32, most promising last."""
    dtypes = (["bfloat16"] if bf16_supported(device) else []) + (["float16"] if device.startswith("cuda") else [])
    found = [Setting(channels_last=True, batch_size=batch)] if is_conv else []
    for dtype in dtypes:
        found.append(Setting(dtype=dtype, batch_size=batch))
        if is_conv:
            found.append(Setting(dtype=dtype, channels_last=True, batch_size=batch))
    return found


def thread_counts(device: str) -> list[int]:
    """CPU thread counts worth trying besides torch's default (physical cores, when fewer than logical)."""
    if device != "cpu":
        return []
    import psutil

    physical, logical = psutil.cpu_count(logical=False), psutil.cpu_count()
    return [physical] if physical and logical and physical < logical else []


def graph_settings(batch: int) -> list[Setting]:
    """The exported graphs worth trying on this CPU: each installed graph runtime at each precision it runs here."""
    return [Setting(dtype=dtype_of(p), batch_size=batch, runtime=r.name)
            for r in registry.graph_runtimes(installed_only=True) for p in r.precisions
            if r.precision_supported(p) is None]


class Search:
    """The search for one model, within its time budget."""

    def __init__(self, model: str, base: ProfileRequest, device: str, budget_s: float, folder: Path,
                 runner: Runner, progress: Progress | None) -> None:
        self.model, self.base, self.device, self.budget_s = model, base, device, budget_s
        self.folder, self.runner, self.progress = folder, runner, progress
        self.ref = catalog.parse_model_ref(model)
        self.start = time.monotonic()
        self.trials: list[Trial] = []

    def left_s(self) -> float:
        """Search seconds left."""
        return SEARCH_SHARE * self.budget_s - (time.monotonic() - self.start)

    def trial_budget_s(self) -> float:
        """Timed seconds each trial gets."""
        return max(min(self.base.time_budget_s, 0.04 * self.budget_s), 0.5)

    def run(self, setting: Setting, reference: Path) -> Trial:
        """Time one setting in its own child(ren) and check it against fp32."""
        if self.progress:
            self.progress(self.model, f"trying {setting.label}", time.monotonic() - self.start)
        trial = self._run_graph(setting) if setting.is_graph else self._run_eager(setting, reference)
        self.trials.append(trial)
        return trial

    def _run_graph(self, setting: Setting) -> Trial:
        """Build the graph and time it on its runtime, judged against eager fp32 (measure.graph)."""
        options = setting.request(self.base, self.trial_budget_s())
        job = new_job(options, self.ref.text, "cpu", (setting.batch_size,))
        begin = time.monotonic()
        folder = self.folder / f"graph-{len(self.trials)}"
        (run,) = ChildJob(self.ref, job, folder).run(self.runner, None, False)
        p = run.profile
        status = graph_status(setting, p, options.min_agreement)
        return Trial(setting, img_s=p.throughput_img_s, top1_agreement=p.agreement_top1,
                     max_abs_diff=p.agreement_max_abs_diff, status=status, wall_s=time.monotonic() - begin,
                     is_conv=self.trials[0].is_conv if self.trials else False, run=run)

    def _run_eager(self, setting: Setting, reference: Path) -> Trial:
        """One torch setting in the child's "trial" mode: img/s, memory, agreement with fp32's logits."""
        options = setting.request(self.base, self.trial_budget_s())
        job = new_job(options, self.ref.text, self.device, (setting.batch_size,)).but(batch=setting.batch_size,
                                                                                       reference=str(reference))
        child = ChildJob(self.ref, job, self.folder / f"trial-{len(self.trials)}")
        begin = time.monotonic()
        out, status, tail = child.attempt("trial", [setting.batch_size], self.runner, None, False)
        trial = judge(setting, out, status, list(tail), time.monotonic() - begin)
        if out.get("model"):
            error = None if trial.ok else trial.status
            row = rows.profile_row(self.ref, child.job, out, setting.batch_size, error)
            trial = replace(trial, run=ProfileRun(row, tuple(out["notes"]), rows.detail(out, setting.batch_size)))
        return trial

    def best(self, runtime: str | None = None) -> Trial | None:
        """The fastest trial that agrees with fp32 (of one runtime, if given)."""
        good = [t for t in self.trials if t.ok and runtime in (None, t.variant.runtime)]
        return max(good, key=lambda t: t.img_s or 0.0) if good else None


def graph_status(setting: Setting, p: Any, min_agreement: float) -> str:
    """A graph trial's status from its row: failed, not compared (it ran as calls of fewer images than its batch),
    rejected, unverified or ok."""
    if p.error:
        return f"failed: {p.error}"
    if p.call_batch and p.call_batch < setting.batch_size:
        return (f"not compared: measured as {-(-setting.batch_size // p.call_batch)} x batch {p.call_batch} (the file "
                f"takes at most {p.call_batch} images per call), not at batch {setting.batch_size}")
    if p.variant_status in (REJECTED, UNVERIFIED):  # the verdict the row got, in deploy.verdict's one wording
        found = Agreement(p.agreement_images or 0, p.agreement_top1 or 0.0, p.agreement_max_abs_diff or 0.0,
                          p.agreement_cosine or 0.0)
        return verdict.describe(verdict.judge(found, p.agreement_source == "images", p.weights != "random",
                                              min_agreement))
    return "ok"


def judge(setting: Setting, out: dict[str, Any], status: int, tail: list[str], wall_s: float) -> Trial:
    """A Trial from a child's result: failed, rejected (disagrees with fp32) or ok."""
    base = Trial(setting, out.get("img_s"), out.get("compile_s"), out.get("top1_agreement"),
                 out.get("max_abs_diff"), out.get("decisive_agreement"), out.get("rel_diff"), "ok", wall_s,
                 bool(out.get("is_conv")))
    if out.get("error") or out.get("status") == "failed" or status != 0 or base.img_s is None:
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


class Room:
    """Whether the search budget still holds a trial (about one eager trial's cost, plus what a step adds)."""

    def __init__(self, s: Search, cost_s: float) -> None:
        self.s, self.cost_s = s, cost_s

    def __call__(self, extra_s: float = 0.0) -> bool:
        return self.s.left_s() >= self.cost_s + extra_s

    def why_not(self, what: str, extra_s: float = 0.0) -> str:
        """'skipped: exporting takes about 30 s on top of a trial's 12 s; 35 s of the search budget left'."""
        needs = f"{what} takes about {extra_s:.0f} s on top of a trial's {self.cost_s:.0f} s" if extra_s else \
            f"a trial takes about {self.cost_s:.0f} s"
        return f"skipped: {needs}; {max(self.s.left_s(), 0):.0f} s of the search budget left"


def search(s: Search, reference: Path) -> list[str]:
    """Plain fp32, then dtype/layout, the batch size, graphs, threads, compile and a graph's batch, while the budget
    lasts; returns why each batch doubling stopped."""
    base_batch = (s.base.batch_sizes or (64 if s.device.startswith("cuda") else 8,))[0]
    plain = s.run(Setting(batch_size=base_batch), reference)
    if not plain.ok:
        return []
    room = Room(s, plain.wall_s)
    for variant in dtype_variants(s.device, plain.is_conv, base_batch):
        if room():
            s.run(variant, reference)
        else:
            s.trials.append(Trial(variant, status=room.why_not("a trial"), is_conv=plain.is_conv))
    notes = [sweep_batch(s, reference, room, registry.TORCH)]
    if s.device == "cpu":  # the deployed graphs: every runtime installed here, at each precision it runs here
        batch = s.best(registry.TORCH).variant.batch_size  # compared at the batch torch does best at
        for setting in graph_settings(batch):
            if room(EXPORT_ESTIMATE_S):
                s.run(setting, reference)
            else:
                s.trials.append(Trial(setting, status=room.why_not("exporting", EXPORT_ESTIMATE_S)))
    for threads in thread_counts(s.device):
        if room():
            s.run(replace(s.best().variant, threads=threads), reference)
    compiled = replace(s.best(registry.TORCH).variant, compile=True)
    if room(COMPILE_ESTIMATE_S):
        s.run(compiled, reference)
    else:
        s.trials.append(Trial(compiled, status=room.why_not("compiling", COMPILE_ESTIMATE_S)))
    best = s.best()
    if best is not None and best.variant.runtime != registry.TORCH:
        notes.append(sweep_batch(s, reference, Room(s, best.cost_s), best.variant.runtime))
    return [n for n in notes if n]


def sweep_batch(s: Search, reference: Path, room: Room, runtime: str) -> str:
    """Double the batch of the runtime's best setting while img/s grows by MIN_GAIN; returns why it stopped."""
    for _ in range(MAX_BATCH_STEPS):
        best = s.best(runtime)
        if best is None:
            return ""
        name = best.variant.label
        if best.variant.compile:  # a compiled model compiles again for a new batch size
            return f"{name}: the batch was not doubled: compiling again for it is not planned"
        if not room():
            return f"{name}: the batch was not doubled: {room.why_not('a trial').removeprefix('skipped: ')}"
        bigger = s.run(replace(best.variant, batch_size=2 * best.variant.batch_size), reference)
        if not bigger.ok:
            return f"{name}: doubling stopped: batch {bigger.variant.batch_size} {bigger.status[:160]}"
        if bigger.img_s < MIN_GAIN * best.img_s:
            return (f"{name}: doubling stopped at batch {bigger.variant.batch_size}: {bigger.img_s:,.1f} img/s, "
                    f"{100 * (bigger.img_s / best.img_s - 1):+.2f}% (it goes on at +{100 * (MIN_GAIN - 1):.0f}% or more)")
    best = s.best(runtime)
    return f"{best.variant.label}: doubling stopped after {MAX_BATCH_STEPS} doublings (the most the search plans)"


def optimize_models(base: ProfileRequest, budget_s: float, progress: Progress | None = None,
                    runner: Runner = run_child, keep: Keep | None = None) -> list[Optimized]:
    """Search each model's settings within budget_s seconds; keep hears each model's plain and best rows."""
    models = list(base.models) or article_models()
    check_models([catalog.parse_model_ref(m) for m in models])
    device = resolve_device(base.device)
    base = base.but(device=device)
    found: list[Optimized] = []
    with tempfile.TemporaryDirectory(prefix="vischoose-optimize-") as tmp:
        for i, model in enumerate(models):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            s = Search(model, base, device, budget_s, folder, runner, progress)
            notes = search(s, folder / "reference.pt")
            best = s.best()
            found.append(Optimized(model, tuple(s.trials), best, s.trials[0].run, best.run if best else None,
                                   time.monotonic() - s.start, budget_s, tuple(notes)))
            if keep is not None:
                keep([r.profile for r in iter_rows(found[-1:]) if r.saveable])
    return found


def failed(found: list[Optimized]) -> None:
    """Raise ProfilingError when a model had no setting that could be measured (the table says why)."""
    bad = [o.model for o in found if o.best is None]
    if bad:
        raise ProfilingError(f"No setting of {', '.join(bad)} could be measured; the status column says why.")


def iter_rows(found: list[Optimized]) -> Iterator[ProfileRun]:
    """The full profile runs (plain, best) of every model."""
    for opt in found:
        yield from (r for r in (opt.plain_run, opt.best_run if opt.best_run is not opt.plain_run else None) if r)
