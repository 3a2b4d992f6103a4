"""predict: labels, top-k, batching, preprocessing from the model's config, model sources, options, API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests import hubfixtures
from vischoose.cli import app
from vischoose.inference.prediction import (
    Prediction,
    class_labels,
    eval_data_config,
    predict,
)

MODEL = "test_resnet.r160_in1k"


def photos(folder: Path, n: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"img{i}.png"
        Image.new("RGB", (64 + 8 * i, 48), (40 * i, 200 - 30 * i, 90)).save(path)
        paths.append(path)
    return paths


def small_head_files(labels: list[str], descriptions: dict[str, str] | None = None,
                     **cfg_extra) -> dict[str, bytes]:
    """config.json + weights of test_resnet with a len(labels)-class head and label names in its config."""
    import tempfile

    import timm
    from safetensors.torch import save_file

    model = timm.create_model("test_resnet.r160_in1k", num_classes=len(labels))
    config = json.loads(hubfixtures.config_json(model))
    config["label_names"] = labels
    if descriptions:
        config["label_descriptions"] = descriptions
    config["pretrained_cfg"].update(cfg_extra)
    with tempfile.TemporaryDirectory() as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{tmp}/m.safetensors")
        weights = Path(f"{tmp}/m.safetensors").read_bytes()
    return {"config.json": json.dumps(config).encode(), "model.safetensors": weights}


def test_top_k_imagenet_labels(cached_model, tmp_path):
    repo = cached_model(MODEL)
    result = predict(photos(tmp_path), MODEL, top_k=3)
    assert result.tag == MODEL and result.weights == f"pretrained@{repo.commit[:12]}"
    assert (result.device, result.dtype) == ("cpu", "float32")
    for item in result.images:
        probs = [p.probability for p in item.predictions]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
        first = item.predictions[0]
        assert isinstance(first, Prediction) and first.class_id.startswith("n") and len(first.class_id) == 9
    assert class_labels({}, 1000).label(967) == "espresso"


def test_several_images_go_through_one_forward_pass(cached_model, tmp_path):
    from vischoose.models.loading import load_model

    cached_model(MODEL)
    loaded = load_model(MODEL)
    batches = []
    loaded.model.register_forward_hook(lambda _m, args, _out: batches.append(args[0].shape[0]))
    predict(photos(tmp_path, 5), loaded, batch_size=4)
    assert batches == [4, 1]


def test_preprocessing_is_the_models_eval_config_with_its_test_size(cached_model, tmp_path):
    files = small_head_files(["cat", "dog", "bird"], test_input_size=[3, 192, 192], test_crop_pct=1.0,
                             interpolation="bicubic", mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    cached_model(MODEL, files=files)
    result = predict(photos(tmp_path, 1), MODEL)
    assert result.preprocessing == {"input_size": [3, 192, 192], "interpolation": "bicubic",
                                    "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "crop_pct": 1.0,
                                    "crop_mode": "center"}


def test_the_models_own_label_names(cached_model, tmp_path):
    cached_model(MODEL, files=small_head_files(["cat", "dog", "n07920052"], {"cat": "a cat", "dog": "a dog",
                                                                             "n07920052": "coffee"}))
    item = predict(photos(tmp_path, 1), MODEL, top_k=10).images[0]
    assert len(item.predictions) == 3  # top-k capped at the number of classes
    assert {(p.label, p.class_id) for p in item.predictions} == \
        {("a cat", "cat"), ("a dog", "dog"), ("coffee", "n07920052")}


def test_pil_images_and_bfloat16(cached_model):
    cached_model(MODEL)
    result = predict(Image.new("RGBA", (30, 30)), MODEL, dtype="bf16", top_k=1)
    assert result.dtype == "bfloat16" and result.images[0].path == "<image 0>" and result.images[0].ok


def test_local_dir_and_checkpoint_give_the_same_predictions(tmp_path, runner):
    folder = hubfixtures.write_model_folder(tmp_path / "mine", MODEL, seed=3)
    images = [str(p) for p in photos(tmp_path / "img")]
    by_folder = runner.invoke(app, ["predict", *images, "--model", f"local-dir:{folder}", "--json"])
    by_checkpoint = runner.invoke(app, ["predict", *images, "--model", "test_resnet",
                                        "--checkpoint", str(folder / "model.safetensors"), "--json"])
    assert by_folder.exit_code == by_checkpoint.exit_code == 0, by_folder.stderr + by_checkpoint.stderr
    first, second = (json.loads(r.stdout)["data"] for r in (by_folder, by_checkpoint))
    assert first["weights"] == second["weights"] == "pretrained (local)"
    assert first["images"] == second["images"]


def test_table_output(cached_model, runner, tmp_path):
    cached_model(MODEL)
    result = runner.invoke(app, ["predict", str(photos(tmp_path, 1)[0]), "-m", MODEL, "-k", "2"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["image", "#", "class", "id", "prob", "%"]
    assert lines[2].startswith(str(tmp_path / "img0.png")) and lines[3].split()[0] == "2"
    assert "preprocessing: 160x160 px, bilinear resize, crop_pct 0.95 (center)" in result.stdout


@pytest.mark.parametrize("option, message", [
    (["--dtype", "float8"], "Error: Unknown dtype 'float8' (expected one of: float32, bfloat16, float16)."),
    (["--device", "tpu"], "Error: Unknown device 'tpu' (expected cpu, cuda, cuda:N or mps)."),
    (["--device", "cuda:7"], "Error: Device 'cuda:7' is not available: torch "),
])
def test_bad_device_or_dtype(cached_model, runner, tmp_path, option, message):
    cached_model(MODEL)
    result = runner.invoke(app, ["predict", str(photos(tmp_path, 1)[0]), "-m", MODEL, *option])
    assert result.exit_code == 2
    assert result.stderr.startswith(message)


def test_model_errors_are_reported_before_any_image(runner, tmp_path):
    result = runner.invoke(app, ["predict", str(tmp_path / "none.jpg"), "-m", "resnet5"])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: Unknown model 'resnet5'.")
    missing = runner.invoke(app, ["predict", str(tmp_path / "x.jpg"), "-m", MODEL, "--checkpoint", "nope.pt"])
    assert (missing.exit_code, missing.stderr.splitlines()[0]) == (2, "Error: Checkpoint 'nope.pt' does not exist.")


def test_model_without_classifier_head(tmp_path, runner):
    import timm
    from safetensors.torch import save_file

    model = timm.create_model(MODEL, num_classes=0)
    folder = tmp_path / "headless"
    folder.mkdir()
    (folder / "config.json").write_bytes(hubfixtures.config_json(model))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    result = runner.invoke(app, ["predict", str(photos(tmp_path, 1)[0]), "-m", f"local-dir:{folder}"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: local-dir:{folder} has no classifier head (num_classes 0): it cannot "
                                    "classify images.")


def test_eval_config_prefers_test_size():
    import timm

    model = timm.create_model("resnet50.a1_in1k", pretrained=False)
    assert eval_data_config(model)["input_size"] == (3, 288, 288)


def test_python_api_is_lazy():
    code = ("import sys, vischoose\nassert callable(vischoose.predict) and callable(vischoose.evaluate)\n"
            "print('torch' in sys.modules, 'timm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_python_api_predict(cached_model, tmp_path):
    import vischoose

    cached_model(MODEL)
    result = vischoose.predict(photos(tmp_path, 2), MODEL, top_k=1)
    assert [len(i.predictions) for i in result.images] == [1, 1]
