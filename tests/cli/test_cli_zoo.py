"""recommend over timm's zoo from the command line, as a plain install sees it (no runtime extra): --zoo keeps the
guide's choice, --families and globs fail in one line with the closest names, and a model outside the zoo is ranked
on its counted size with top-1 unknown."""

from __future__ import annotations

import json

import pytest

from vischoose.cli import app

pytestmark = pytest.mark.usefixtures("plain_install")


def test_cli_zoo_mobile_keeps_the_guides_choice_and_says_where_candidates_come_from(runner):
    result = runner.invoke(app, ["recommend", "--budget-mb", "150", "--target", "mobile", "--zoo", "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)["data"]
    assert data["chosen"]["model"] == "resnet50"
    assert any(n.startswith("candidates from timm's zoo (timm results @aa4b585): ") for n in data["notes"])
    assert not any("`" in n for n in data["notes"])  # fields named in notes are written as flags: --all-tags
    assert any("(--all-tags: each tag)" in n for n in data["notes"])


@pytest.mark.parametrize("args, message", [
    (["--families", "convnxt"], "Error: Unknown family 'convnxt' in --families (92 families, or 'all'). Did you mean "
                                "'convnext', 'convit', 'convmixer'?"),
    (["--models", "resnt50*"], "Error: No model in timm's zoo matches 'resnt50*' (1,266 tags). Did you mean "
                               "'resnet50*', 'resnet50s*', 'resnet50d*'?"),
])
def test_an_unknown_family_or_a_glob_matching_nothing_is_a_one_line_error(runner, args, message):
    result = runner.invoke(app, ["recommend", "--target", "mobile", *args])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0] == message and len(lines) == 2 and lines[1].startswith("Hint: ")
    assert result.stdout == ""


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


def test_a_timm_architecture_outside_the_zoo_is_counted_on_the_meta_device(runner):
    result = runner.invoke(app, ["recommend", "--target", "cloud", "--models", "test_vit4", "--json"])
    data = json.loads(result.stdout)["data"]
    cand = data["chosen"]
    assert cand["model"] == "test_vit4" and "top1" not in cand["figures"]
    assert cand["figures"]["params_m"]["source"] == "computed"
    assert cand["figures"]["params_m"]["note"] == "counted on timm's architecture (meta device, no weights)"
    assert cand["figures"]["gflops"]["source"] == "computed" and cand["figures"]["gflops"]["value"] > 0
