"""Which models recommend judges: the curated catalog by default (without reading the zoo), zoo and families over
timm's zoo, globs and bare architecture names in models, one candidate per architecture unless all_tags; a GPU
target's published throughput; parameters counted from a safetensors header or on timm's meta device. The catalog and
the zoo come in through the Known, as for the ranking; what this machine has installed changes nothing here."""

from __future__ import annotations

from fnmatch import fnmatchcase

import pytest

from tests.profhelpers import known
from vischoose.models import catalog, families, sizes, zoo
from vischoose.presets import load_preset
from vischoose.recommendation import selection
from vischoose.recommendation.ranking import build_candidates, recommend
from vischoose.requests.recommend import RecommendRequest


def select(target="mobile", **kw):
    return selection.select(RecommendRequest(target=target, **kw), load_preset(target), known())


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
    chosen = select("mobile", families=("convnext", "mobilenetv4"))
    assert {e.family for e in chosen.entries} == {"convnext", "mobilenetv4"}
    assert "resnet50" not in {e.alias for e in chosen.entries}  # the guide's choice is not of those families
    assert {e.tag for e in select("mobile", families=("convnext,mobilenetv4",)).entries} == {
        e.tag for e in chosen.entries}  # comma-separated, as --families takes them
    every = select("mobile", families=("all",))
    assert "test" not in {e.family for e in every.entries} and len(every.entries) > 800


def test_an_unknown_family_is_refused_by_the_request_naming_its_field():
    from vischoose.errors import UsageError

    with pytest.raises(UsageError) as info:
        RecommendRequest(families=("convnext", "convnxt"))
    assert str(info.value) == ("Unknown family 'convnxt' in families (92 families, or 'all'). Did you mean "
                               "'convnext', 'convit', 'convmixer'?")
    assert info.value.field == "families" and info.value.exit_code == 2
    with pytest.raises(UsageError, match="^families names no family.$"):
        RecommendRequest(families=(" , ",))


def test_globs_pick_by_name_one_per_architecture_unless_all_tags():
    chosen = select("mobile", models=("vit_*_patch16_224.augreg*",))
    tags = [e.tag for e in chosen.entries]
    assert tags and all(fnmatchcase(t, "vit_*_patch16_224.augreg*") for t in tags)
    assert len({t.partition(".")[0] for t in tags}) == len(tags)
    every = select("mobile", models=("vit_*_patch16_224.augreg*",), all_tags=True)
    assert {e.tag for e in every.entries} == {t.tag for t in zoo.load().matching("vit_*_patch16_224.augreg*")}
    archs = {e.tag.partition(".")[0] for e in select("mobile", models=("resnet50*",)).entries}
    assert archs == {t.arch for t in zoo.load().matching("resnet50*")}


def test_a_bare_architecture_is_its_best_published_tag():
    chosen = select("mobile", models=("efficientnet_b0", "resnet50"))
    best = max(zoo.load().by_arch()["efficientnet_b0"], key=lambda t: t.deployed.top1)
    assert [e.tag for e in chosen.entries] == [best.tag, "resnet50.a1_in1k"]
    assert chosen.notes[0].startswith(f"efficientnet_b0 is judged as {best.tag}, the best published top-1 of its")


def test_a_gpu_target_shows_a_named_gpus_published_throughput_not_a_cpu_latency_turned_into_it():
    preset = load_preset("cloud")
    chosen = select("cloud")
    rec = recommend(build_candidates(chosen.entries, preset, [], [], known(), chosen.extra), preset)
    thr = rec.chosen.figures["throughput"]
    assert rec.chosen.model == "vit_l16" and thr.source == "published"
    assert thr.note.startswith("NVIDIA RTX PRO 6000 Blackwell Max-Q, bfloat16, batch ")  # the target's precision
    assert thr.value == zoo.gpu_speed(zoo.load().speeds[("vit_large_patch16_224", 224)], "bfloat16").img_s
    mobile = load_preset("mobile")
    cpu = recommend(build_candidates(select("mobile").entries, mobile, [], [], known()), mobile)
    assert cpu.chosen.figures["throughput"].note == "1000 / batch-1 latency"  # a CPU target at batch 1: its own


def test_the_choice_over_the_zoo_does_not_depend_on_the_runtimes_installed():
    preset, chosen = load_preset("mobile"), select("mobile", zoo=True)
    missing = {"executorch": "ExecuTorch (XNNPACK) is not installed", "openvino": "OpenVINO is not installed"}
    here = recommend(build_candidates(chosen.entries, preset, [], [], known(missing)), preset)
    every = recommend(build_candidates(chosen.entries, preset, [], [], known()), preset)
    assert (here.chosen.model, here.chosen.variant) == (every.chosen.model, every.chosen.variant)
    assert [c.model for c in here.runners_up] == [c.model for c in every.runners_up]


def test_parameters_counted_from_a_safetensors_header_equal_timms(tmp_path):
    import timm
    from safetensors.torch import save_file

    for arch in ("test_resnet", "test_vit", "test_efficientnet", "test_convnext", "test_nfnet", "resnet18"):
        net = timm.create_model(arch, pretrained=False)
        path = tmp_path / f"{arch}.safetensors"
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
        assert sizes.parameter_count(path) == sum(p.numel() for p in net.parameters()), arch


def test_counted_on_the_meta_device_a_timm_architecture_gives_timms_parameters_and_the_published_macs():
    from vischoose.recommendation import unlisted

    counted = unlisted.count_on_meta("vit_small_patch16_224")
    published = zoo.load().tags["vit_small_patch16_224.augreg_in21k_ft_in1k"]
    assert counted.input_size == published.deployed.size == 224
    assert abs(counted.params - published.params_m * 1e6) < 0.005e6  # the CSV rounds to 0.01 M
    assert counted.gmacs == pytest.approx(zoo.load().gmacs[("vit_small_patch16_224", 224)], abs=0.02)  # MACs, not FLOPs
