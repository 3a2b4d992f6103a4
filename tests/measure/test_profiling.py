"""The profiler: FLOP counting, the timing loop, child processes, crashes, options."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

import vischoose
from vischoose import paths
from tests.hubfixtures import write_model_folder
from tests.profhelpers import FAST, SEEDED_PEAK_GFLOPS_S, seed_peak
from vischoose.errors import ProfilingError, UsageError
from vischoose.measure import options as protocol
from vischoose.measure import peak as peak_cache
from vischoose.measure import protocol as measure
from vischoose.measure import rows, timing
from vischoose.measure import runner as profiling
from vischoose.report.flags import flag_of
from vischoose.requests.profile import ProfileRequest
from vischoose.runtimes import torch_eager

TINY = "test_resnet.r160_in1k"


# --- the timing loop and the FLOP counter, in process -------------------------------------------------

def fake_timer(values):
    it = iter(values)
    return lambda fn: next(it)


def test_timed_phase_warms_up_then_stops_once_the_median_is_known():
    timer = fake_timer([5.0, 1.0, 1.0, 1.0] + [1.0] * 100)  # first call slow (lazy init), then steady
    samples, warm = timing.timed_phase(lambda: None, timer, budget_s=60.0, report=lambda n, w: None)
    assert warm == 4
    assert samples == [1.0] * 6  # the fewest samples with a 95% CI of the median, and it is +-0%


def test_timed_phase_stops_at_the_budget_with_a_minimum_of_runs():
    timer = fake_timer([1.0, 2.0, 0.5, 3.0, 0.1] * 20)  # never settles
    samples, warm = timing.timed_phase(lambda: None, timer, budget_s=0.0, report=lambda n, w: None)
    assert warm == 1
    assert len(samples) == timing.MIN_TIMED


def test_flops_of_a_linear_and_a_conv_layer_are_counted_by_hand():
    import torch

    linear = torch.nn.Linear(100, 10)
    assert torch_eager.count_flops(linear, torch.randn(1, 100)) == 2 * 100 * 10
    conv = torch.nn.Conv2d(3, 8, kernel_size=3)  # 10x10 in, 8x8 out, no padding
    assert torch_eager.count_flops(conv, torch.randn(1, 3, 10, 10)) == 2 * (8 * 8) * 8 * (3 * 3 * 3)


def test_attention_flops_are_counted_on_cpu():
    import torch

    class Attention(torch.nn.Module):
        def forward(self, q):
            return torch.nn.functional.scaled_dot_product_attention(q, q, q)

    heads, tokens, dim = 2, 16, 8
    # q @ k^T and attn @ v: two matmuls of tokens x tokens x dim per head, 2 FLOPs per multiply-add
    expected = 2 * (2 * heads * tokens * tokens * dim)
    assert torch_eager.count_flops(Attention(), torch.randn(1, heads, tokens, dim)) == expected


@pytest.mark.parametrize("arch, size, gmacs", [("resnet50", 224, 4.11), ("vit_base_patch16_224", 224, 17.58)])
def test_flops_of_real_models_match_timm_published_gmacs(arch, size, gmacs):
    import timm
    import torch

    from vischoose.units import flops_to_macs

    model = timm.create_model(arch, pretrained=False).eval()
    flops = torch_eager.count_flops(model, torch.randn(1, 3, size, size))
    assert flops_to_macs(flops) / 1e9 == pytest.approx(gmacs, rel=0.02)
    if arch == "resnet50":
        assert flops / 1e9 == pytest.approx(8.2, rel=0.02)


def test_machine_peak_is_the_best_of_small_kernels():
    import torch

    peak = peak_cache.machine_peak_gflops(torch.device("cpu"), torch.float32, sizes=(64, 128), reps=2)
    assert peak["gflops_s"] > 0.1
    assert peak["kernel"].startswith(("matmul", "conv3x3"))


# --- child processes ----------------------------------------------------------------------------------

def kill_when(model_text, phase, batch=None):
    """A runner that runs children normally, but SIGKILLs the one for `model_text` when it reaches a phase."""
    def runner(cmd, env, on_line):
        job = json.loads(open(cmd[-1]).read())
        if job["model"] != model_text:
            return profiling.run_child(cmd, env, on_line)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            on_line(line.rstrip("\n"))
            if line.startswith(measure.PROGRESS_PREFIX):
                event = json.loads(line[len(measure.PROGRESS_PREFIX):])
                if event.get("phase") == phase and event.get("batch_size") in (batch, None if batch else 1):
                    proc.send_signal(signal.SIGKILL)
        return proc.wait()
    return runner


@pytest.mark.slow
def test_a_cached_peak_the_model_beats_is_dropped_not_reported_as_over_100_percent(isolated_home):
    seed_peak()
    cache = paths.peak_cache()
    key = next(iter(json.loads(cache.read_text())))
    cache.write_text(json.dumps({key: {"gflops_s": 1e-6, "kernel": "measured on a busy machine", "reps": 0}}))
    runs = profiling.profile_models(ProfileRequest.build(models=(TINY,), batch_sizes=[2], **FAST))
    assert runs[0].profile.ok and runs[0].profile.throughput_img_s > 0
    assert runs[0].profile.efficiency is None
    assert any("above the cached machine peak" in n and "measured again next run" in n for n in runs[0].notes)
    assert key not in json.loads(cache.read_text())
    assert runs[0].profile.efficiency_note.startswith("not comparable: ")
    assert rows.efficiency(10.0, 5.0, 100.0) == (pytest.approx(0.5), None)
    assert rows.efficiency(10.0, 50.0, 100.0)[0] is None


@pytest.mark.slow
def test_profile_measures_a_model_in_a_child_and_saves_it(isolated_home):
    import timm

    from vischoose.results.store import open_store

    seed_peak()
    seen = []
    rows = vischoose.profile([TINY], batch_sizes=[1, 2], progress=lambda m, w, t: seen.append(w), **FAST)
    assert [p.batch_size for p in rows] == [1, 2]
    p = rows[1]
    assert p.error is None and p.ok
    assert p.params_m * 1e6 == sum(t.numel() for t in timm.create_model(TINY).parameters())
    assert p.gmacs == pytest.approx(p.gflops / 2)
    assert 0 < p.latency_ms_p50 <= p.latency_ms_p90 <= p.latency_ms_p99
    assert p.latency_ms_p50 == rows[0].latency_ms_p50  # batch-1 latency repeated on each row
    assert p.throughput_img_s > 0 and p.throughput_iqr >= 0
    assert p.peak_memory_mb > 0 and p.peak_reserved_mb is None
    assert p.efficiency == pytest.approx(p.gflops * p.throughput_img_s / SEEDED_PEAK_GFLOPS_S)
    assert (p.device, p.dtype, p.threads, p.layout, p.compiled, p.weights) == \
        ("cpu", "float32", 1, "contiguous", False, "random")
    assert p.input_size == 160 and p.torch_version and p.timm_version and p.device_name and p.machine
    assert "latency batch 1" in seen and "throughput batch 2" in seen
    with open_store() as store:
        assert sorted(s.batch_size for s in store.profiles(model=TINY)) == [1, 2]


@pytest.mark.slow
def test_a_killed_child_is_reported_in_its_rows_and_the_others_go_on(isolated_home):
    seed_peak()
    runs = profiling.profile_models(ProfileRequest.build(models=("test_vit.r160_in1k", TINY), **FAST),
                                    runner=kill_when("test_vit.r160_in1k", "latency"))
    vit, resnet = [r.profile for r in runs]
    assert vit.error == "crashed: signal 9 (SIGKILL) (killed: out of memory?) during latency at batch 1"
    assert vit.params_m is not None and vit.gflops is not None  # what finished before the kill is kept
    assert resnet.ok and resnet.throughput_img_s > 0
    with pytest.raises(ProfilingError, match=r"^1 of 2 profile rows failed \(test_vit.r160_in1k\)"):
        profiling.failed(runs)


@pytest.mark.slow
def test_a_child_killed_in_the_memory_pass_is_rerun_with_the_smaller_batches(isolated_home):
    seed_peak()
    runs = profiling.profile_models(ProfileRequest.build(models=(TINY,), batch_sizes=[1, 4], **FAST),
                                    runner=kill_when(TINY, "memory", 4))
    small, big = [r.profile for r in runs]
    assert small.batch_size == 1 and small.ok and small.throughput_img_s > 0
    assert big.error == "crashed: signal 9 (SIGKILL) (killed: out of memory?) during memory at batch 4"


@pytest.mark.slow
@pytest.mark.measures_peak
def test_the_machine_peak_is_measured_last_and_a_crash_there_spares_the_rows(isolated_home):
    runs = profiling.profile_models(ProfileRequest.build(models=(TINY,), **FAST),
                                    runner=kill_when(TINY, "machine peak (once)"))
    (row,) = [r.profile for r in runs]
    assert row.ok and row.throughput_img_s > 0 and row.peak_memory_mb > 0
    assert row.efficiency is None  # no peak to divide by
    assert not paths.peak_cache().exists()


@pytest.mark.slow
def test_a_model_whose_forward_fails_gets_an_error_row(tmp_path, isolated_home):
    seed_peak()
    folder = write_model_folder(tmp_path / "gray", TINY)
    config = json.loads((folder / "config.json").read_text())
    config["model_args"] = {"in_chans": 1}  # a one-channel model: the RGB input cannot go through it
    (folder / "config.json").write_text(json.dumps(config))
    rows = vischoose.profile([str(folder)], save=False, **FAST)
    assert len(rows) == 1
    assert rows[0].error.startswith("failed during memory at batch 8: RuntimeError: Given groups=1, weight of size [16, 1, 3, 3]")


# --- options ------------------------------------------------------------------------------------------

def test_options_come_from_the_preset_and_explicit_values_override_it():
    opts = ProfileRequest.build("mobile", dtype="bfloat16", channels_last=None)
    assert (opts.device, opts.threads, opts.batch_sizes, opts.dtype) == ("cpu", 4, (1,), "bfloat16")
    assert ProfileRequest.build("mobile", batch_sizes=["8,2", 2]).batch_sizes == (2, 8)
    assert ProfileRequest.build().batch_sizes is None  # chosen per device later: 8 on CPU, 64 on GPU


@pytest.mark.parametrize("given, message", [
    ({"batch_sizes": ["0"]}, "Invalid batch size '0': it must be a whole number of at least 1."),
    ({"batch_sizes": ["8,x"]}, "Invalid batch size 'x': it must be a whole number of at least 1."),
    ({"dtype": "float64"}, "Unknown dtype 'float64' (expected one of: float32, bfloat16, float16)."),
    ({"device": "gpu"}, "Unknown device 'gpu' (expected auto, cpu, cuda or cuda:N)."),
    ({"weights": "best"}, "Unknown weights mode 'best' (expected one of: auto, pretrained, random)."),
    ({"threads": 0}, "threads must be at least 1 (got 0)."),
    ({"time_budget_s": 0}, "time_budget_s must be more than 0 seconds (got 0)."),
])
def test_bad_options_are_usage_errors(given, message):
    with pytest.raises(UsageError) as err:
        ProfileRequest.build(**given)
    assert str(err.value) == message and err.value.exit_code == 2


def test_a_missing_gpu_is_a_usage_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UsageError) as err:
        protocol.resolve_device("cuda:7")
    assert str(err.value) == f"Device 'cuda:7' is not available: torch {torch.__version__} sees no CUDA device " \
                             "on this machine."
    assert err.value.exit_code == 2 and "--device cpu" in err.value.render(flag_of)[1]
    assert protocol.resolve_device("auto") == "cpu"


def test_exit_statuses_are_described():
    assert profiling.describe_exit(-9) == "signal 9 (SIGKILL)"
    assert profiling.describe_exit(-11) == "signal 11 (SIGSEGV)"
    assert profiling.describe_exit(1) == "exit code 1"


def test_the_default_models_are_the_articles_three():
    assert profiling.article_models() == ["resnet50", "vit_b16", "r50_vit_b16"]


@pytest.mark.gpu
def test_profile_on_the_gpu_reports_allocated_and_reserved_memory():
    rows = vischoose.profile([TINY], device="cuda", batch_sizes=[1, 8], weights="random", time_budget_s=2,
                             save=False)
    assert all(p.ok and p.peak_memory_mb > 0 and p.peak_reserved_mb >= p.peak_memory_mb for p in rows)
    assert rows[0].device == "cuda:0" and rows[0].efficiency > 0


@pytest.mark.slow
def test_compile_for_inference_freezes_the_weights_and_matches_eager():
    import shutil

    import torch
    import torch._inductor.config as inductor

    if not (shutil.which("g++") or shutil.which("c++")):
        pytest.skip("torch.compile's CPU backend needs a C++ compiler")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(8 * 14 * 14, 10)).eval()
    x = torch.randn(2, 3, 16, 16)
    before = inductor.freezing
    try:
        compiled = torch_eager.compile_for_inference(net)
        with torch.inference_mode():
            eager, found = net(x), compiled(x)
        assert inductor.freezing is True
    finally:
        inductor.freezing = before
    assert torch.allclose(found, eager, atol=1e-5)
