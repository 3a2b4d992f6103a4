"""vischoose profile on the command line: happy paths in a child process, error paths with their wording."""

from __future__ import annotations

import json

import pytest

from tests.hubfixtures import write_model_folder
from tests.profhelpers import seed_peak
from vischoose.cli import app
from vischoose.measure.runner import ProfileRun
from vischoose.records import Profile
from vischoose.report import profile as report_profile

TINY = "test_resnet.r160_in1k"
FAST = ["--device", "cpu", "--threads", "1", "--time-budget", "0.5", "--no-save"]


@pytest.mark.slow
@pytest.mark.cold_start
def test_profile_prints_every_column_and_the_conditions(runner, isolated_home, cached_model):
    seed_peak()
    repo = cached_model(TINY)
    result = runner.invoke(app, ["profile", TINY, "-b", "1,2", "--weights", "auto", *FAST])
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[0].split()
    for column in ("model", "weights", "px", "batch", "params", "MiB", "fp32", "GFLOPs", "GMACs", "p50", "p90",
                   "p99", "IQR", "img/s", "peak", "eff", "top-1", "@px", "error"):
        assert column in header
    rows = [line for line in result.stdout.split("\n\n")[0].splitlines() if line.startswith(TINY + "  ")]
    assert len(rows) == 2 and rows[0].split()[1:4] == [f"pretrained@{repo.commit[:12]}", "160", "1"]
    cold = result.stdout.split("\n\n")[-2].splitlines()  # the application table: one row per model and variant
    assert cold[0].split()[:4] == ["model", "variant", "import", "ms"] and cold[2].startswith(f"{TINY}  torch fp32  ")
    assert "Conditions: cpu (" in result.stdout and "threads 1, torch float32, contiguous, compile no, torch " in result.stdout
    assert f"{TINY}: latency batch 1 (" in result.stderr  # progress goes to stderr


@pytest.mark.slow
def test_profile_json_carries_the_figures_and_conditions(runner, isolated_home):
    seed_peak()
    result = runner.invoke(app, ["profile", TINY, "--json", "--weights", "auto", *FAST])  # nothing cached
    assert result.exit_code == 0, result.output
    envelope = json.loads(result.stdout)
    assert envelope["schema_version"] == 1 and envelope["kind"] == "profile"
    (row,) = envelope["data"]["profiles"]
    assert row["batch_size"] == 8  # the CPU default
    for key in ("params_m", "weights_mb", "weights_mb_fp32", "gflops", "gmacs", "latency_ms_p50", "latency_ms_p90",
                "latency_ms_p99", "latency_ms_iqr", "throughput_img_s", "throughput_iqr", "peak_memory_mb",
                "efficiency", "device_name", "threads", "torch_version", "timm_version", "machine"):
        assert row[key] is not None, key
    assert row["measurement"]["latency"]["samples"] >= 3
    assert row["weights"] == "random"
    assert f"{TINY}: no cached pretrained weights, so random init of the same architecture (speed and memory " \
           "do not depend on the weight values)." in envelope["data"]["notes"]
    assert Profile.from_dict(row).tag == TINY


@pytest.mark.slow
def test_a_row_failing_on_its_model_is_shown_and_exits_like_that_error(runner, tmp_path, isolated_home):
    seed_peak()
    folder = write_model_folder(tmp_path / "odd", TINY)
    config = json.loads((folder / "config.json").read_text())
    config["architecture"] = "no_such_arch"
    (folder / "config.json").write_text(json.dumps(config))
    result = runner.invoke(app, ["profile", str(folder), "--weights", "random", *FAST])
    assert result.exit_code == 2  # a model timm cannot build is bad input, as in predict
    assert "architecture 'no_such_arch' is not known to timm" in result.stdout
    assert result.stderr.splitlines()[-1] == \
        f"Error: 1 of 1 profile rows failed ({folder}); the error column says why."


@pytest.mark.slow
def test_weights_that_are_not_cached_exit_3_and_the_row_says_why(runner, isolated_home):
    seed_peak()
    result = runner.invoke(app, ["profile", TINY, "--weights", "pretrained", *FAST])
    assert result.exit_code == 3, result.output
    row = next(line for line in result.stdout.splitlines() if line.startswith(TINY))
    assert row.split()[1:3] == ["pretrained", "-"] and "not in the cache" in row


@pytest.mark.parametrize("args, code, message", [
    (["-b", "0"], 2, "Error: Invalid batch size '0': it must be a whole number of at least 1."),
    (["--dtype", "float64"], 2, "Error: Unknown dtype 'float64' (expected one of: float32, bfloat16, float16)."),
    (["--device", "gpu"], 2, "Error: Unknown device 'gpu' (expected auto, cpu, cuda or cuda:N)."),
    (["--json", "--csv"], 2, "Error: Choose one of --json, --csv and --markdown."),
    (["--target", "tablet"], 2, "Error: Unknown preset 'tablet' (known: "),
])
def test_profile_usage_errors(runner, args, code, message):
    result = runner.invoke(app, ["profile", TINY, *args])
    assert result.exit_code == code
    assert result.stderr.startswith(message)


def test_profile_on_a_missing_gpu_says_so(runner):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = runner.invoke(app, ["profile", TINY, "--device", "cuda"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"Error: Device 'cuda' is not available: torch {torch.__version__} sees no CUDA device on this machine.",
        "Hint: Use --device cpu, or --device auto to take a GPU when there is one."]


def test_profile_unknown_model_fails_before_measuring(runner):
    result = runner.invoke(app, ["profile", "resnet5", "--device", "cpu"])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: Unknown model 'resnet5'. Did you mean 'resnet50'")


def _runs() -> list[ProfileRun]:
    ok = Profile(model="resnet50", tag="resnet50.a1_in1k", device="cpu", dtype="float32", batch_size=8,
                 input_size=224, threads=2, params_m=25.557032, gflops=8.18, gmacs=4.09, latency_ms_p50=40.0,
                 throughput_img_s=30.0, top1=80.382, top1_size=224, device_name="AMD EPYC", machine="abc")
    bad = Profile(model="r50_vit_b16", tag="vit_base_r50_s16_384.orig_in21k_ft_in1k", device="cpu", dtype="float32",
                  batch_size=8, input_size=384, top1=84.99, top1_size=384, error="crashed: signal 9 (SIGKILL)")
    detail = {"latency": {"samples": 3, "warmup_runs": 1, "settled": False, "median_ci_pct": None},
              "throughput": None, "machine_peak_gflops_s": 200.0, "machine_peak_kernel": "conv3x3"}
    return [ProfileRun(ok, ("resnet50: a note.",), detail), ProfileRun(bad, (), {})]


def test_markdown_and_csv_renderings(capsys):
    report_profile.show_profiles(_runs(), "markdown")
    out = capsys.readouterr().out
    assert out.startswith("| model ")
    assert "| resnet50 " in out and "crashed: signal 9 (SIGKILL)" in out
    assert "- resnet50: a note." in out
    assert "- resnet50 batch 1: latency from 3 runs, too few for a 95% CI of the median (6 needed)" in out
    report_profile.show_profiles(_runs(), "csv")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("model,tag,device,dtype,batch_size,input_size,")
    assert len(lines) == 3 and lines[1].startswith("resnet50,resnet50.a1_in1k,cpu,float32,8,224,")
