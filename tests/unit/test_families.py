"""Families from timm architecture names (data/families.toml): the curated catalog's families unchanged, every zoo
architecture in one, the int8 recipe written for a row the one models/family.py picks from the built module, and
the errors for a family that does not exist."""

from __future__ import annotations

from fnmatch import fnmatchcase

import pytest

from vischoose.errors import UsageError
from vischoose.models import catalog, families, zoo


def test_the_catalogs_models_keep_their_family():
    for e in catalog.load().values():
        assert families.family_of(e.tag) == e.family, e.alias


@pytest.mark.parametrize("arch, family", [
    ("resnet50d", "resnet"), ("resnetrs101", "resnet"), ("resnetv2_50x1_bit", "resnet"), ("wide_resnet50_2", "resnet"),
    ("vit_small_r26_s32_224", "hybrid"), ("vit_base_r50_s16_384", "hybrid"), ("vit_tiny_r_s16_p8_224", "hybrid"),
    ("vit_base_patch16_224", "vit"), ("deit3_small_patch16_224", "deit"), ("eva02_base_patch14_448", "eva"),
    ("convnextv2_atto", "convnext"), ("tf_efficientnet_lite0", "efficientnet"),
    ("mobilenetv3_large_100", "mobilenetv3"),
    ("mobilenetv4_hybrid_medium", "mobilenetv4"), ("regnety_032", "regnet"), ("swinv2_tiny_window8_256", "swin"),
    ("fastvit_sa12", "fastvit"), ("test_vit", "test"), ("no_such_net", families.OTHER)])
def test_names_map_to_families_first_row_first(arch, family):
    assert families.family_of(arch) == family


def test_every_zoo_architecture_has_a_family_and_the_first_matching_row_decides():
    table = families.load()
    for arch in {t.arch for t in zoo.load().tags.values()}:
        row = table.row_of(arch)
        assert row is not None, f"{arch}: no row of data/families.toml matches it"
        first = next(r for r in table.rows if any(fnmatchcase(arch, p) for p in r.archs))
        assert row is first, arch


def test_all_is_every_family_but_timms_test_models():
    every = families.resolve(["all"])
    assert families.TEST not in every and set(every) | {families.TEST} == set(families.load().names)
    assert families.resolve(["convnext", " mobilenetv4", "convnext"]) == ("convnext", "mobilenetv4")


def test_an_unknown_family_is_one_line_with_the_closest_names():
    with pytest.raises(UsageError) as info:
        families.resolve(["convnxt"])
    assert str(info.value) == ("Unknown family 'convnxt' (92 families, or 'all'). Did you mean 'convnext', 'convit', "
                               "'convmixer'?")
    assert info.value.hint.startswith("vischoose models --zoo lists the families")


def test_int8_bytes_per_parameter_follow_the_recipe():
    per = families.load().int8_bytes_per_param
    assert families.int8_bytes_per_param("resnet50") == per["convolutional"]
    assert families.int8_bytes_per_param("vit_base_r50_s16_384") == per["hybrid"]
    assert families.int8_bytes_per_param("fastvit_t8") == per["depthwise"]
    assert families.int8_bytes_per_param("fastvit_sa12") == per["hybrid"]
    assert families.int8_bytes_per_param("no_such_net") is None


# one architecture of each row that has a small one, and every exception row's first name
SAMPLE = ["resnet18", "resnet51q", "vit_tiny_patch16_224", "vit_pwee_patch16_reg1_gap_256", "deit_tiny_patch16_224",
          "vit_tiny_r_s16_p8_224", "convnext_atto", "efficientnet_b0", "mobilenetv3_small_050",
          "mobilenetv4_conv_small", "mobilenetv4_hybrid_medium", "regnetx_002", "swin_tiny_patch4_window7_224",
          "fastvit_t8", "fastvit_sa12", "levit_128s", "levit_conv_128s", "crossvit_tiny_240", "mixer_s16_224",
          "cait_xxs24_224", "efficientvit_b0", "ghostnet_100", "test_resnet", "test_vit", "test_efficientnet"]


@pytest.mark.slow
@pytest.mark.parametrize("arch", SAMPLE)
def test_the_recipe_written_for_a_row_is_the_one_the_built_module_gets(arch):
    import timm
    import torch

    from vischoose.models.family import model_family

    with torch.device("meta"):
        net = timm.create_model(arch, pretrained=False)
    assert families.recipe_of(arch) == model_family(net)
