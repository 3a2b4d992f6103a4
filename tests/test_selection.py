"""Which models recommend judges: the curated catalog by default (without reading the zoo), --zoo and --families over
timm's zoo, globs and bare architecture names in --models, one candidate per architecture unless --all-tags, and a
model outside the zoo with counted figures and no top-1. No torch except to write weights and count parameters."""

from __future__ import annotations

import json
from fnmatch import fnmatchcase

import pytest

from vischoose.cli import app
from vischoose.models import catalog, families, sizes, zoo
from vischoose.recommendation import selection
from vischoose.recommendation.presets import load_preset
from vischoose.recommendation.ranking import build_candidates, recommend

pytestmark = pytest.mark.usefixtures("plain_install")


def select(target="mobile", **kw):
    return selection.select(load_preset(target), **kw)


def test_by_default_the_curated_catalog_and_the_zoo_is_not_read():
    zoo.load.cache_clear()
    chosen = select("mobile")
    assert [e.alias for e in chosen.entries] == list(catalog.load())
    assert zoo.load.cache_info().currsize == 0  # recommend on the catalog stays instant
    assert chosen.notes == () and chosen.extra == []


def test_zoo_widens_the_presets_families_to_each_architecture_once():
    chosen = select("mobile", zoo=True)
    wanted = {"resnet", "vit", "hybrid"}
    archs = {t.arch for t in zoo.load().tags.values() if families.family_of(t.arch) in wanted}
    by_arch: dict[str, list[str]] = {}
    for e in chosen.entries:
        by_arch.setdefault(e.tag.partition(".")[0], []).append(e.alias)
    assert set(by_arch) == archs
    assert by_arch["resnet50"] == ["resnet50.fb_swsl_ig1b_ft_in1k", "resnet50"]  # its best tag, and the guide's choice
    assert all(len(models) == 1 for arch, models in by_arch.items() if arch != "resnet50")
    best = max(zoo.load().by_arch()["vit_base_patch16_224"], key=lambda t: t.deployed.top1)
    assert by_arch["vit_base_patch16_224"] == ["vit_b16"] and best.tag == catalog.load()["vit_b16"].tag  # alias kept
    assert chosen.others["resnet50.fb_swsl_ig1b_ft_in1k"][0] == "resnet50.a1_in1k"  # 80.38 at 224, next best


def test_families_select_those_families_and_all_leaves_out_timms_test_models():
    chosen = select("mobile", family_names=["convnext", "mobilenetv4"])
    assert {e.family for e in chosen.entries} == {"convnext", "mobilenetv4"}
    assert "resnet50" not in {e.alias for e in chosen.entries}  # the guide's choice is not of those families
    every = select("mobile", family_names=["all"])
    assert "test" not in {e.family for e in every.entries} and len(every.entries) > 800


def test_globs_pick_by_name_one_per_architecture_unless_all_tags():
    chosen = select("mobile", models=["vit_*_patch16_224.augreg*"])
    tags = [e.tag for e in chosen.entries]
    assert tags and all(fnmatchcase(t, "vit_*_patch16_224.augreg*") for t in tags)
    assert len({t.partition(".")[0] for t in tags}) == len(tags)
    every = select("mobile", models=["vit_*_patch16_224.augreg*"], all_tags=True)
    assert {e.tag for e in every.entries} == {t.tag for t in zoo.load().matching("vit_*_patch16_224.augreg*")}
    archs = {e.tag.partition(".")[0] for e in select("mobile", models=["resnet50*"]).entries}
    assert archs == {t.arch for t in zoo.load().matching("resnet50*")}


def test_a_bare_architecture_is_its_best_published_tag():
    chosen = select("mobile", models=["efficientnet_b0", "resnet50"])
    best = max(zoo.load().by_arch()["efficientnet_b0"], key=lambda t: t.deployed.top1)
    assert [e.tag for e in chosen.entries] == [best.tag, "resnet50.a1_in1k"]
    assert chosen.notes[0].startswith(f"efficientnet_b0 is judged as {best.tag}, the best published top-1 of its")


def test_a_gpu_target_shows_a_named_gpus_published_throughput_not_a_cpu_latency_turned_into_it():
    preset = load_preset("cloud")
    chosen = selection.select(preset)
    rec = recommend(build_candidates(chosen.entries, preset, [], [], chosen.extra), preset)
    thr = rec.chosen.figures["throughput"]
    assert rec.chosen.model == "vit_l16" and thr.source == "published"
    assert thr.note.startswith("NVIDIA RTX PRO 6000 Blackwell Max-Q, bfloat16, batch ")  # the target's precision
    assert thr.value == zoo.gpu_speed(zoo.load().speeds[("vit_large_patch16_224", 224)], "bfloat16").img_s
    mobile = load_preset("mobile")
    cpu = recommend(build_candidates(select("mobile").entries, mobile, [], []), mobile).chosen.figures["throughput"]
    assert cpu.note == "1000 / batch-1 latency"  # a CPU target at batch 1: its own latency


def test_cli_zoo_mobile_keeps_the_guides_choice_and_says_where_candidates_come_from(runner):
    result = runner.invoke(app, ["recommend", "--budget-mb", "150", "--target", "mobile", "--zoo", "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)["data"]
    assert data["chosen"]["model"] == "resnet50"
    assert any(n.startswith("candidates from timm's zoo (timm results @aa4b585): ") for n in data["notes"])


@pytest.mark.parametrize("args, message", [
    (["--families", "convnxt"], "Error: Unknown family 'convnxt' (92 families, or 'all'). Did you mean 'convnext', "
                                "'convit', 'convmixer'?"),
    (["--models", "resnt50*"], "Error: No model in timm's zoo matches 'resnt50*' (1,266 tags). Did you mean "
                               "'resnet50*', 'resnet50s*', 'resnet50d*'?"),
])
def test_an_unknown_family_or_a_glob_matching_nothing_is_a_one_line_error(runner, args, message):
    result = runner.invoke(app, ["recommend", "--target", "mobile", *args])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0] == message and len(lines) == 2 and lines[1].startswith("Hint: ")
    assert result.stdout == ""


def test_parameters_counted_from_a_safetensors_header_equal_timms(tmp_path):
    import timm
    from safetensors.torch import save_file

    for arch in ("test_resnet", "test_vit", "test_efficientnet", "test_convnext", "test_nfnet", "resnet18"):
        net = timm.create_model(arch, pretrained=False)
        path = tmp_path / f"{arch}.safetensors"
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
        assert sizes.parameter_count(path) == sum(p.numel() for p in net.parameters()), arch


def test_a_model_outside_the_zoo_is_ranked_on_its_counted_size_with_top1_unknown(runner, cached_model):
    cached_model("test_vit.r160_in1k", repo_id="someone/tiny-vit")  # someone's weights: no published top-1
    args = ["recommend", "--target", "mobile", "--models", "hf-hub:someone/tiny-vit", "--models", "resnet18"]
    data = json.loads(runner.invoke(app, [*args, "--json"]).stdout)["data"]
    assert data["chosen"]["model"] == "resnet18"  # a published top-1 ranks first
    tiny = next(c for c in data["runners_up"] if c["model"] == "hf-hub:someone/tiny-vit")
    import timm

    params = sum(p.numel() for p in timm.create_model("test_vit", pretrained=False).parameters())
    assert tiny["figures"]["params_m"] == {"value": params / 1e6, "source": "computed",
                                           "note": "counted from the safetensors header of the cached weights"}
    assert tiny["figures"]["memory_mb"]["value"] == pytest.approx(params * 4 / 2**20)
    assert "top1" not in tiny["figures"] and tiny["fits"]
    assert any(n.startswith("top-1 unknown for hf-hub:someone/tiny-vit: nobody published one") for n in data["notes"])
    text = runner.invoke(app, args).stdout
    assert "Note: top-1 unknown for hf-hub:someone/tiny-vit: nobody published one, so they rank after the models " \
           "with one (evaluate it: vischoose evaluate DATA --model hf-hub:someone/tiny-vit)" in text


def test_counted_on_the_meta_device_a_timm_architecture_gives_timms_parameters_and_the_published_macs():
    from vischoose.recommendation import unlisted

    counted = unlisted.count_on_meta("vit_small_patch16_224")
    published = zoo.load().tags["vit_small_patch16_224.augreg_in21k_ft_in1k"]
    assert counted.input_size == published.deployed.size == 224
    assert abs(counted.params - published.params_m * 1e6) < 0.005e6  # the CSV rounds to 0.01 M
    assert counted.gmacs == pytest.approx(zoo.load().gmacs[("vit_small_patch16_224", 224)], abs=0.02)  # MACs, not FLOPs


def test_a_timm_architecture_outside_the_zoo_is_counted_on_the_meta_device(runner):
    result = runner.invoke(app, ["recommend", "--target", "cloud", "--models", "test_vit4", "--json"])
    data = json.loads(result.stdout)["data"]
    cand = data["chosen"]
    assert cand["model"] == "test_vit4" and "top1" not in cand["figures"]
    assert cand["figures"]["params_m"]["source"] == "computed"
    assert cand["figures"]["params_m"]["note"] == "counted on timm's architecture (meta device, no weights)"
    assert cand["figures"]["gflops"]["source"] == "computed" and cand["figures"]["gflops"]["value"] > 0
