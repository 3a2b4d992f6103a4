import pytest

from vischoose.errors import UnknownModelError, UsageError
from vischoose.models import catalog
from vischoose.models.catalog import parse_model_ref

ENTRIES = list(catalog.load().values())
REQUIRED = {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vit_ti16", "vit_s16", "vit_b16",
            "vit_b32", "vit_l16", "r50_vit_b16", "r26_vit_s32", "r50_vit_l32"}


def test_catalog_has_every_required_alias():
    assert REQUIRED <= set(catalog.load())
    assert {e.family for e in ENTRIES} == set(catalog.FAMILIES)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.alias)
def test_alias_is_a_real_timm_tag_with_an_imagenet_1k_head(entry):
    import timm
    import torch
    from timm.models import get_pretrained_cfg

    assert entry.tag in timm.list_pretrained(entry.tag)
    cfg = get_pretrained_cfg(entry.tag)
    assert cfg.num_classes == 1000
    assert cfg.hf_hub_id == entry.hf_hub_id
    assert cfg.input_size[-1] == entry.input_size
    with torch.device("meta"):
        model = timm.create_model(entry.tag, pretrained=False)
    assert sum(p.numel() for p in model.parameters()) == entry.params
    assert model.num_classes == 1000


def test_article_hybrid_is_the_384_px_in1k_tag():
    entry = catalog.load()["r50_vit_b16"]
    assert entry.tag == "vit_base_r50_s16_384.orig_in21k_ft_in1k"
    assert entry.input_size == entry.top1_size == 384


def test_sizes_are_mib_of_fp32_weights():
    # the article's "98 MB" ResNet50 is 25.56M fp32 parameters in MiB
    assert catalog.load()["resnet50"].weights_mb(4) == pytest.approx(97.49, abs=0.01)
    assert catalog.load()["vit_b16"].weights_mb(2) == pytest.approx(165.12, abs=0.01)


def test_gflops_are_twice_the_gmacs():
    entry = catalog.load()["resnet50"]
    assert entry.gmacs == 4.11 and entry.gflops == pytest.approx(8.22)


@pytest.mark.parametrize("text, kind, name", [
    ("resnet50", "catalog", "resnet50"),
    ("resnet50.a1_in1k", "timm", "resnet50.a1_in1k"),
    ("efficientnet_b0", "timm", "efficientnet_b0"),
    ("hf-hub:timm/resnet50.a1_in1k", "hf-hub", "timm/resnet50.a1_in1k"),
    ("hf-hub:org/model@v1.0", "hf-hub", "org/model"),
])
def test_parse_model_ref(text, kind, name):
    ref = parse_model_ref(text)
    assert (ref.kind, ref.name) == (kind, name)


def test_timm_tag_of_a_catalog_model_keeps_its_alias():
    assert parse_model_ref("resnet50.a1_in1k").display == "resnet50"
    assert parse_model_ref("hf-hub:timm/vit_base_patch16_224.augreg2_in21k_ft_in1k").display == "vit_b16"
    assert parse_model_ref("hf-hub:org/model@v1.0").revision == "v1.0"


def test_local_folder(tmp_path):
    ref = parse_model_ref(f"local-dir:{tmp_path}")
    assert ref.kind == "local-dir" and ref.path == tmp_path.resolve()
    with pytest.raises(UsageError, match="does not exist or is not a directory"):
        parse_model_ref(f"local-dir:{tmp_path / 'missing'}")


@pytest.mark.parametrize("text", ["hf-hub:../../etc", "hf-hub:org/..", "hf-hub:noslash", "hf-hub:a/b@bad rev"])
def test_bad_hub_ids_are_refused(text):
    with pytest.raises(UsageError):
        parse_model_ref(text)


def test_unknown_names_suggest_close_aliases():
    with pytest.raises(UnknownModelError) as info:
        parse_model_ref("ResNet-50!")
    assert str(info.value).startswith("Unknown model 'ResNet-50!'.")
    assert catalog.suggest("vit_b61")[0] == "vit_b16"
    assert catalog.suggest("resnet5")[0] == "resnet50"


def test_family_filter_and_pattern():
    assert [e.alias for e in catalog.list_entries("resnet")] == ["resnet18", "resnet34", "resnet50", "resnet101",
                                                                "resnet152"]
    # the pattern matches alias or tag: r50_vit_b16 is timm's vit_base_r50_s16_384
    assert {e.alias for e in catalog.list_entries(pattern="vit_b*")} == {"vit_b16", "vit_b32", "r50_vit_b16"}
    with pytest.raises(UsageError, match="Unknown family 'cnn'"):
        catalog.list_entries("cnn")
