"""vischoose recommend through the CLI: presets, constraints, stored and imported measurements."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vischoose import machine
from vischoose.cli import app
from vischoose.models import catalog
from vischoose.records import Profile
from vischoose.results.store import open_store

# the built-in presets as a plain install (the README's first command) sees them: ONNX Runtime is the graph runtime
# that always ships; test_presets_extras.py covers the presets with the runtime extras installed
pytestmark = pytest.mark.usefixtures("plain_install")
ORT_MOBILE = str(Path(__file__).parent.parent / "data" / "presets" / "mobile-onnx.toml")  # mobile deploying ONNX Runtime only


def rec_json(runner, *args):
    result = runner.invoke(app, ["recommend", *args, "--json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["data"]


def test_mobile_150_mib_recommends_resnet50_and_rejects_big_models_with_sizes(runner):
    result = runner.invoke(app, ["recommend", "--budget-mb", "150", "--target", "mobile"])
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    # the preset's first runtime although it is not installed here: what is installed never changes the choice, it
    # only says how to measure it
    assert out.startswith("Recommended for 'mobile': resnet50 (resnet50.a1_in1k) at executorch fp32\n")
    assert ("  deployed as: executorch fp32 (97.5 MiB computed from parameters; torch fp32 figures stand in until "
            "measured: ExecuTorch (XNNPACK) is not installed here: pip install 'vischoose[mobile]', then vischoose "
            "profile --target mobile --runtime executorch --precision fp32 resnet50)\n") in out
    assert "  target runs: cpu, executorch fp32, batch 1\n" in out
    # vit_b16 (330.2 MiB in fp32) fits in int8; the ViT-L and the R50+ViT-L hybrid do not fit even so
    assert "  vit_b16 fits at executorch int8 (85.9 MiB computed size; accuracy cost not measured)\n" in out
    assert ("vit_l16      as executorch int8: 295.8 MiB > 150 MiB budget (computed, ONNX Runtime int8 file of "
            "this architecture, from the catalog, standing in for executorch int8 until measured)") in out
    assert "r50_vit_l32  as executorch int8: 392.6 MiB > 150 MiB budget" in out
    assert "Pareto front" in out and "Sources: M measured here, P published" in out


def test_cloud_and_experimental_follow_the_guide(runner):
    assert rec_json(runner, "--target", "cloud")["chosen"]["model"] == "vit_l16"
    exp = rec_json(runner, "--target", "experimental")
    assert exp["chosen"]["model"] == "r50_vit_b16"
    assert any("Not reproducible at the article's 224 px" in n for n in exp["notes"])


def test_json_labels_every_figure(runner):
    data = rec_json(runner, "--target", "mobile", "--budget-mb", "150")
    assert data["chosen"]["figures"]["memory_mb"]["source"] == "computed"
    assert data["chosen"]["figures"]["top1"] == {"value": 80.382, "source": "published",
                                                 "note": "ImageNet-1k at 224 px (timm results)"}
    assert data["chosen"]["variant"] == {
        "runtime": "executorch", "precision": "fp32", "plain": False, "verified": False,
        "note": "97.5 MiB computed from parameters; torch fp32 figures stand in until measured",
        "measure_with": "ExecuTorch (XNNPACK) is not installed here: pip install 'vischoose[mobile]', then vischoose "
                        "profile --target mobile --runtime executorch --precision fp32 resnet50"}
    vit = {r["model"]: r for r in data["runners_up"]}["vit_b16"]
    assert (vit["variant"]["runtime"], vit["variant"]["precision"]) == ("executorch", "int8")
    assert vit["figures"]["memory_mb"]["source"] == "computed"
    rejected = {r["model"]: r for r in data["rejected"]}
    assert rejected["vit_l16"]["rejected_because"] == [
        "295.8 MiB > 150 MiB budget (computed, ONNX Runtime int8 file of this architecture, from the catalog, "
        "standing in for executorch int8 until measured)"]
    assert data["constraints"]["max_memory_mb"] == 150
    # what the preset deploys, whether or not this machine can run it
    assert data["conditions"]["deploy"] == ["executorch fp32", "executorch int8", "litert fp32", "litert int8",
                                            "onnxruntime fp32", "onnxruntime int8"]


def test_nothing_fits_exits_4_with_the_closest(runner):
    result = runner.invoke(app, ["recommend", "--budget-mb", "5", "--target", "mobile"])
    assert result.exit_code == 4
    assert result.stderr.splitlines() == [
        "Error: No model fits target 'mobile'; closest: vit_ti16 (--budget-mb 6.7); r_vit_ti16 (--budget-mb 9.1); "
        "resnet18 (--budget-mb 11.3).",
        "Hint: Relax a constraint as shown, or add candidates with --models."]
    assert result.stdout == ""


def store_profile(model: str, latency: float, **kw) -> None:
    entry = catalog.load()[model]
    with open_store() as db:
        db.add_profile(Profile(model=model, tag=entry.tag, device="cpu", dtype="float32", batch_size=1,
                               input_size=entry.input_size, machine=machine.fingerprint(),
                               latency_ms_p50=latency * 0.9, latency_ms_p90=latency, **kw))


def test_stored_measurements_are_used_and_change_the_outcome(runner):
    before = rec_json(runner, "--target", "mobile", "--budget-mb", "150", "--max-latency-ms", "40")
    assert before["chosen"]["model"] == "resnet50"
    store_profile("resnet50", 55.0)
    store_profile("vit_s16", 25.0)
    after = rec_json(runner, "--target", "mobile", "--budget-mb", "150", "--max-latency-ms", "40")
    assert after["chosen"]["model"] != "resnet50"
    rejected = {r["model"]: r for r in after["rejected"]}
    assert rejected["resnet50"]["rejected_because"] == [
        "55.0 ms > 40 ms latency limit (measured, batch-1 p90, cpu torch float32, standing in for executorch fp32)"]
    figures = {c["model"]: c["figures"] for c in [after["chosen"], *after["runners_up"]]}
    assert figures["vit_s16"]["latency_ms"]["source"] == "measured"
    text = runner.invoke(app, ["recommend", "--target", "mobile", "--budget-mb", "150"]).stdout
    assert "  latency ms: 55.0 (measured; batch-1 p90, cpu torch float32, standing in for executorch fp32)\n" in text


def test_top_limits_the_runners_up_in_the_table_and_in_json(runner):
    args = ["recommend", "--target", "mobile", "--budget-mb", "150"]
    everyone = rec_json(runner, *args[1:])["runners_up"]
    assert len(everyone) >= 2  # otherwise --top 1 and --top 2 could not differ
    one = runner.invoke(app, [*args, "--top", "1"])
    assert one.exit_code == 0, one.stderr
    assert "Runners-up" not in one.stdout
    assert not any(f"\n{r['model']} " in one.stdout for r in everyone)
    two = runner.invoke(app, [*args, "--top", "2"]).stdout
    table = two.split("Runners-up (meet every constraint), best first:\n")[1].split("\n\n")[0].splitlines()
    assert [line.split()[0] for line in table[2:] if not line.startswith(" ")] == [everyone[0]["model"]]
    assert rec_json(runner, *args[1:], "--top", "1")["runners_up"] == []
    assert [r["model"] for r in rec_json(runner, *args[1:], "--top", "3")["runners_up"]] == \
        [r["model"] for r in everyone[:2]]


def test_preset_preferring_a_model_that_does_not_exist_exits_2_naming_it(runner, tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text('[candidates]\nprefer = ["resnet5O"]\n', encoding="utf-8")
    result = runner.invoke(app, ["recommend", "--target", str(path)])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        f"Error: {path} [candidates]: unknown model 'resnet5O' in 'prefer' (expected a catalog alias, timm "
        "arch.tag, hf-hub:ID or local-dir:PATH). Did you mean 'resnet50'?")
    assert result.stdout == ""


def test_profiles_of_another_machine_are_not_used_unless_given(runner, tmp_path):
    entry = catalog.load()["resnet50"]
    other = Profile(model="resnet50", tag=entry.tag, device="cpu", dtype="float32", batch_size=1, input_size=224,
                    machine="0123456789ab", latency_ms_p90=90.0)
    with open_store() as db:
        db.add_profile(other)
    assert rec_json(runner, "--target", "mobile", "--max-latency-ms", "40")["chosen"]["model"] == "resnet50"
    exported = tmp_path / "phone.json"
    export = runner.invoke(app, ["results", "export", "--format", "json", "--out", str(exported)])
    assert export.exit_code == 0, export.stderr
    data = rec_json(runner, "--target", "mobile", "--max-latency-ms", "40", "--results", str(exported))
    assert data["chosen"]["model"] != "resnet50"
    assert {r["model"]: r for r in data["rejected"]}["resnet50"]["rejected_because"][0].startswith("90.0 ms > 40 ms")


def test_models_option_restricts_candidates(runner):
    data = rec_json(runner, "--target", "mobile", "--models", "resnet18", "--models", "vit_ti16")
    models = {data["chosen"]["model"], *(r["model"] for r in data["runners_up"] + data["rejected"])}
    assert models == {"resnet18", "vit_ti16"}


@pytest.mark.parametrize("args, code, first_line", [
    (["--target", "tablet"], 2, "Error: Unknown preset 'tablet' (known: cloud, edge, experimental, mobile, server)."),
    (["--budget-mb", "-5"], 2, "Error: --budget-mb must be greater than 0 (got -5)."),
    (["--budget-mb", "0"], 2, "Error: --budget-mb must be greater than 0 (got 0)."),
    (["--min-top1", "101"], 2, "Error: --min-top1 must be a percentage from 0 to 100 (got 101)."),
    (["--memory-basis", "disk"], 2, "Error: --memory-basis must be one of: weights, peak (got 'disk')."),
    (["--models", "resnet5O"], 2, "Error: Unknown model 'resnet5O'."),
    (["--results", "/nonexistent/x.json"], 2, "Error: Results file '/nonexistent/x.json' does not exist."),
])
def test_bad_input(runner, args, code, first_line):
    result = runner.invoke(app, ["recommend", *args])
    assert result.exit_code == code
    assert result.stderr.splitlines()[0].startswith(first_line)
    assert "Traceback" not in result.stderr


def test_non_numeric_budget_is_a_usage_error(runner):
    result = runner.invoke(app, ["recommend", "--budget-mb", "lots"])
    assert result.exit_code == 2
    assert "Invalid value for '--budget-mb'" in result.stderr


def test_own_preset_file(runner):
    from pathlib import Path

    path = Path(__file__).parent.parent / "data" / "presets" / "tiny.toml"
    data = rec_json(runner, "--target", str(path))
    assert data["target"] == "tiny"
    assert data["chosen"]["model"] == "resnet18"  # resnet50 (97.5 MiB) breaks the 50 MiB budget
    assert "the guide's choice resnet50 was rejected" in data["reason"]


@pytest.mark.slow
def test_measure_profiles_missing_candidates_and_uses_them(runner, isolated_home, tmp_path):
    from tests.profhelpers import seed_peak

    preset = tmp_path / "probe.toml"
    preset.write_text('name = "probe"\n[measure]\ndevice = "cpu"\nthreads = 1\nbatch_size = 2\n'
                      '[constraints]\nmax_latency_ms = 10000\n[rank]\nsort = ["latency_ms"]\n')
    seed_peak(threads=1)
    args = ["recommend", "--target", str(preset), "--models", "test_resnet.r160_in1k", "--models", "test_vit.r160_in1k"]
    unmeasured = runner.invoke(app, [*args, "--json"])
    assert unmeasured.exit_code == 0, unmeasured.stderr  # timm's zoo publishes their batch-1 CPU latencies
    before = json.loads(unmeasured.stdout)["data"]
    for cand in [before["chosen"], *before["runners_up"]]:
        assert cand["figures"]["latency_ms"]["source"] == "published"
        assert "batch 1, float32" in cand["figures"]["latency_ms"]["note"]  # the CPU and its conditions named
    result = runner.invoke(app, [*args, "--measure", "--time-budget", "0.5", "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)["data"]
    for cand in [data["chosen"], *data["runners_up"]]:
        assert cand["figures"]["latency_ms"]["source"] == "measured"
        assert cand["figures"]["throughput"]["note"] == "batch 2, cpu"
    # the measurements were stored: the next recommend uses them without measuring
    again = runner.invoke(app, [*args, "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["data"]["chosen"]["model"] == data["chosen"]["model"]


@pytest.mark.slow
def test_measure_also_profiles_the_graphs_a_preset_deploys(runner, isolated_home, tmp_path):
    from tests.profhelpers import seed_peak

    preset = tmp_path / "phone.toml"
    preset.write_text('name = "phone"\n[measure]\ndevice = "cpu"\nthreads = 1\nbatch_size = 1\n'
                      '[constraints]\nmax_latency_ms = 10000\n[deploy]\nonnxruntime = ["int8"]\n'
                      '[rank]\nsort = ["latency_ms"]\n')
    seed_peak(threads=1)
    args = ["recommend", "--target", str(preset), "--models", "test_resnet.r160_in1k", "--json"]
    result = runner.invoke(app, [*args, "--measure", "--time-budget", "0.5"])
    assert result.exit_code == 0, result.stderr
    chosen = json.loads(result.stdout)["data"]["chosen"]
    assert chosen["variant"]["runtime"] == "onnxruntime" and chosen["variant"]["precision"] == "int8"
    assert chosen["figures"]["memory_mb"]["source"] == "measured"  # the int8 file's size, not an estimate
    assert chosen["figures"]["latency_ms"]["note"] == "batch-1 p90, cpu onnxruntime int8"
    with open_store() as db:
        stored = {(p.runtime, p.dtype) for p in db.profiles(model="test_resnet.r160_in1k")}
    assert stored == {("torch", "float32"), ("onnxruntime", "int8")}  # torch fp32: the speed-up reference


def store_ort(model: str, latency: float, file_mb: float, agreement: float = 0.994, status: str = "ok") -> None:
    """A row as `vischoose profile --runtime onnxruntime --precision int8` stores it."""
    entry = catalog.load()[model]
    with open_store() as db:
        db.add_profile(Profile(model=model, tag=entry.tag, device="cpu", dtype="int8", batch_size=1,
                               input_size=entry.input_size, machine=machine.fingerprint(), runtime="onnxruntime",
                               latency_ms_p50=latency, latency_ms_p90=latency * 1.1, file_mb=file_mb,
                               weights_mb=file_mb, agreement_top1=agreement, agreement_images=64,
                               agreement_source="images", variant_status=status, recipe="dynamic-matmul-s8"))


def test_stored_int8_graph_gives_the_size_speed_and_agreement(runner):
    store_profile("vit_b16", 34.0)  # torch fp32 here: p50 30.6 ms
    store_ort("vit_b16", 11.0, 85.9)
    data = rec_json(runner, "--target", "mobile", "--models", "vit_b16", "--models", "resnet18")
    vit = data["chosen"] if data["chosen"]["model"] == "vit_b16" else data["runners_up"][0]
    assert vit["variant"]["note"] == "85.9 MiB, measured 2.8x faster than torch fp32, top-1 agreement 99.4%"
    assert vit["variant"]["verified"] is True and vit["variant"]["measure_with"] is None
    assert vit["figures"]["memory_mb"] == {"value": 85.9, "source": "measured", "note": "onnxruntime int8 file"}
    assert vit["figures"]["latency_ms"]["value"] == pytest.approx(12.1)
    text = runner.invoke(app, ["recommend", "--target", "mobile", "--models", "vit_b16"]).stdout
    assert text.startswith("Recommended for 'mobile': vit_b16 (vit_base_patch16_224.augreg2_in21k_ft_in1k) at "
                           "onnxruntime int8\n")
    assert ("  deployed as: onnxruntime int8 (85.9 MiB, measured 2.8x faster than torch fp32, top-1 agreement "
            "99.4%)\n") in text


def test_stored_rejected_int8_graph_is_not_recommended(runner):
    store_ort("vit_b16", 11.0, 85.9, agreement=0.95, status="rejected")
    result = runner.invoke(app, ["recommend", "--target", ORT_MOBILE, "--models", "vit_b16", "--models", "resnet18"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("Recommended for 'mobile': resnet18")
    assert ("vit_b16  as onnxruntime fp32: 330.2 MiB > 100 MiB budget (computed, float32 weights); onnxruntime int8 "
            "not used: its graph was rejected (top-1 agreement 95.0% with eager fp32, ") in result.stdout
    only = runner.invoke(app, ["recommend", "--target", ORT_MOBILE, "--models", "vit_b16"])
    assert only.exit_code == 4
    assert only.stderr.startswith("Error: No model fits target 'mobile'; closest: vit_b16 (--budget-mb 330.3, "
                                  "onnxruntime int8 not used: its graph was rejected (top-1 agreement 95.0% with eager "
                                  "fp32, ")


def test_a_gpu_device_for_a_target_that_deploys_only_cpu_graphs_is_a_usage_error(runner):
    result = runner.invoke(app, ["recommend", "--target", "mobile", "--device", "cuda"])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: Target 'mobile' deploys only ExecuTorch (XNNPACK), LiteRT (XNNPACK) and "
                                    "ONNX Runtime graphs, which vischoose measures on the CPU: --device cuda admits none of them.\nHint: ")


# --- --memory-basis peak: the unmeasured are listed as not measured, never rejected (issue 33) ------------------------

def store_rows(rows) -> None:
    with open_store() as store:
        store.add_profiles(rows)


def test_recommend_peak_lists_the_unmeasured_as_not_measured_and_keeps_a_fitting_executorch_variant(runner):
    pytest.importorskip("executorch")
    from tests.unit.test_recommendation import prof

    et = prof("resnet50", latency=21.2, peak=96.0, runtime="executorch", file_mb=97.5, weights_mb=97.5,
              machine=machine.fingerprint(), variant_status="ok", agreement_top1=1.0,
              baseline_includes="a process with executorch imported", runtime_memory_mb=98.1)
    store_rows([et])
    result = runner.invoke(app, ["recommend", "--target", "mobile", "--budget-mb", "300", "--memory-basis", "peak",
                                 "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)["data"]
    assert data["chosen"]["model"] == "resnet50" and data["chosen"]["variant"]["runtime"] == "executorch"
    assert data["chosen"]["figures"]["memory_mb"]["source"] == "measured"
    rejected = {c["model"] for c in data["rejected"]}
    unmeasured = {c["model"]: c for c in data["not_measured"]}
    assert "vit_b16" in unmeasured and "vit_b16" not in rejected
    assert unmeasured["vit_b16"]["why_not_measured"].startswith("not measured here yet: recommend --measure")
    assert not any("no memory figure" in why for c in data["rejected"] for why in c["rejected_because"])
    text = runner.invoke(app, ["recommend", "--target", "mobile", "--budget-mb", "300", "--memory-basis", "peak"])
    out = text.stdout
    assert "\nNot measured (no figure yet for a limit only measuring checks; not rejected):\n" in out
    rejected_part = out.split("\nRejected:\n")[1].split("\nNot measured")[0] if "\nRejected:\n" in out else ""
    assert "vit_b16 " not in rejected_part
