"""CLI paths no other test reaches: the full --optimize search, profile flags, pull --force, filters, JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.measure.test_optimize import TINY, seed_peaks
from vischoose.cli import app


@pytest.mark.slow
def test_optimize_json_reaches_compile_onnxruntime_and_the_batch_sweep(runner, isolated_home, monkeypatch):
    """A budget above EXPORT_ESTIMATE_S: the ONNX Runtime trials and the batch sweep run through the CLI.

    COMPILE_ESTIMATE_S is the planning figure for a ResNet-50-sized compile; test_resnet at 64 px compiles in a
    fraction of it, so it is lowered to let the (real) compile trial run on any machine within this budget.
    """
    from vischoose.measure import optimize

    seed_peaks(isolated_home)
    monkeypatch.setattr(optimize, "COMPILE_ESTIMATE_S", 1.0)
    # every trial times for the shortest budget: the paths are under test here, not the figures
    monkeypatch.setattr(optimize.Search, "trial_budget_s", lambda self: 0.5)
    # no dtype/layout trials (test_optimize runs those): plain fp32, the graphs, compile and the sweep are under test
    monkeypatch.setattr(optimize, "dtype_variants", lambda device, is_conv, batch: [])
    every = optimize.graph_settings  # ONNX Runtime's trials only: the budget is sized for them
    monkeypatch.setattr(optimize, "graph_settings", lambda batch: [s for s in every(batch) if s.runtime == "onnxruntime"])
    budget = 2 * optimize.EXPORT_ESTIMATE_S + 90
    result = runner.invoke(app, ["profile", TINY, "--optimize", "--time-budget", f"{budget:.0f}", "--device", "cpu",
                                 "--threads", "1", "--weights", "random", "--input-size", "64", "--json"])
    assert result.exit_code == 0, result.output
    envelope = json.loads(result.stdout)
    assert envelope["schema_version"] == 1 and envelope["kind"] == "profile-optimize"
    (model,) = envelope["data"]["models"]
    trials = {t["setting"]: t for t in model["trials"]}
    plain = trials["fp32, batch 8"]
    assert plain["status"] == "ok" and plain["top1_agreement"] == 1.0 and plain["profile"]["input_size"] == 64
    ort = [t for t in model["trials"] if t["runtime"] == "onnxruntime"]
    # the graphs are compared at the batch torch did best at, once torch's own doubling has run (#34 item 7)
    before = model["trials"][:model["trials"].index(ort[0])]
    at = max((t for t in before if t["runtime"] == "torch" and t["status"] == "ok"), key=lambda t: t["img_s"])
    assert [t["setting"] for t in ort[:2]] == [f"onnxruntime fp32, batch {at['batch_size']}",
                                               f"onnxruntime int8, batch {at['batch_size']}"]
    assert ort[0]["status"] == "ok" and ort[0]["img_s"] > 0
    # random weights: the int8 graph can only be checked on random inputs, and says so
    assert ort[1]["status"].startswith("unverified: ") and ort[1]["img_s"] > 0
    compiled = [t for t in model["trials"] if t["compile"]]
    assert compiled and compiled[0]["status"] == "ok" and compiled[0]["compile_s"] > 0, compiled
    swept = sorted({t["batch_size"] for t in model["trials"] if t["img_s"] is not None})
    assert swept[0] == 8 and len(swept) >= 2 and swept[1] == 16  # the sweep doubles the batch of the best so far
    best = model["best"]
    assert best["status"] == "ok" and best["img_s"] == max(t["img_s"] for t in model["trials"] if t["status"] == "ok")
    assert model["speedup"] == pytest.approx(best["img_s"] / plain["img_s"])


def test_models_filter_keeps_the_matching_aliases_and_tags(runner):
    result = runner.invoke(app, ["models", "--filter", "vit_*", "--json"])
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["data"]
    aliases = [r["alias"] for r in rows]
    # the pattern matches an alias or a timm tag: the hybrids' tags are vit_base_r50_..., so they are kept
    assert all(r["alias"].startswith("vit_") or r["tag"].startswith("vit_") for r in rows)
    assert "vit_b16" in aliases and "r50_vit_b16" in aliases and not any("resnet" in a for a in aliases)
    by_tag = runner.invoke(app, ["models", "--filter", "resnet50.a1*", "--json"])
    assert [r["alias"] for r in json.loads(by_tag.stdout)["data"]] == ["resnet50"]
    table = runner.invoke(app, ["models", "--filter", "vit_b16"]).stdout.split("\n\n")[0].splitlines()
    assert [line.split()[0] for line in table[2:]] == ["vit_b16"]


def test_presets_json_lists_every_preset_file(runner):
    from vischoose.presets import presets_dir

    result = runner.invoke(app, ["presets", "--json"])
    assert result.exit_code == 0, result.stderr
    envelope = json.loads(result.stdout)
    assert envelope["schema_version"] == 1 and envelope["kind"] == "presets"
    names = [p["name"] for p in envelope["data"]]
    assert sorted(names) == sorted(p.stem for p in presets_dir().glob("*.toml"))
    mobile = next(p for p in envelope["data"] if p["name"] == "mobile")
    import tomllib
    stated = tomllib.loads(Path(mobile["path"]).read_text())["deploy"]  # the file's order, every variant
    assert mobile["deploys"] == [{"runtime": r, "precision": p} for r, ps in stated.items() for p in ps]
    assert mobile["path"].endswith("mobile.toml")


@pytest.mark.slow
def test_evaluate_workers_and_checkpoint_through_the_cli(runner, tmp_path):
    """Labels set to a checkpoint's own top-1: 100 % with that checkpoint (any --workers), less with another."""
    from tests import hubfixtures
    from tests.inference.test_evaluation import make_images
    from vischoose.inference.prediction import predict

    mine = hubfixtures.write_model_folder(tmp_path / "mine", TINY, seed=3) / "model.safetensors"
    other = hubfixtures.write_model_folder(tmp_path / "other", TINY, seed=4) / "model.safetensors"
    images = make_images(tmp_path / "img", 8)
    ranked = predict(images, "test_resnet", checkpoint=str(mine), top_k=1).images
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\n" + "".join(f"img/{p.name},{r.predictions[0].index}\n"
                                               for p, r in zip(images, ranked)))

    def top1(checkpoint, *args):
        result = runner.invoke(app, ["evaluate", str(labels), "--model", "test_resnet", "--checkpoint",
                                     str(checkpoint), "--no-save", "--json", "--batch-size", "3", *args])
        assert result.exit_code == 0, result.stderr
        data = json.loads(result.stdout)["data"]
        assert data["images"] == 8 and data["weights"] == "pretrained (local)"
        return data["top1"]

    assert top1(mine) == 100.0
    assert top1(mine, "--workers", "2") == 100.0
    assert top1(other, "--workers", "2") == top1(other) < 100.0


def profile_row(runner, *args):
    result = runner.invoke(app, ["profile", TINY, "--json", "--weights", "random", "--device", "cpu", "--threads", "1",
                                 "--time-budget", "0.5", "--no-save", "-b", "2", *args])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["data"]["profiles"]
    assert row["error"] is None and row["throughput_img_s"] > 0 and row["latency_ms_p50"] > 0
    return row


@pytest.mark.slow
def test_profile_bf16_channels_last_at_a_smaller_input_through_the_cli(runner, isolated_home):
    from tests.profhelpers import seed_peak
    from vischoose.measure import optimize

    if not optimize.bf16_supported("cpu"):
        pytest.skip("this CPU has no bf16 support")
    seed_peak(dtype="float32")
    seed_peaks(isolated_home)
    plain = profile_row(runner)
    row = profile_row(runner, "--dtype", "bfloat16", "--channels-last", "--input-size", "80")
    assert (row["dtype"], row["layout"], row["input_size"], row["batch_size"]) == ("bfloat16", "channels_last", 80, 2)
    assert (plain["dtype"], plain["layout"], plain["input_size"]) == ("float32", "contiguous", 160)
    # the work per image follows the input area (GMACs are counted, not timed): (80 / 160)^2 of the 160 px run
    assert row["gmacs"] == pytest.approx(plain["gmacs"] * (80 / 160) ** 2, rel=0.1)


@pytest.mark.slow
def test_profile_compile_through_the_cli(runner, isolated_home):
    seed_peaks(isolated_home)
    row = profile_row(runner, "--compile", "--input-size", "64")
    assert row["compiled"] is True and row["input_size"] == 64
