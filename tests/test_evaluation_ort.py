"""evaluate --runtime onnxruntime: the deployed graph's accuracy on real photos (real EfficientNet-Lite0 weights),
its agreement with eager fp32, the calibration note, the stored result, and the option errors."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from tests import realweights
from vischoose import evaluate
from vischoose.cli import app
from vischoose.runtimes.ortbuild import recipe_for

STATIC = recipe_for("convolutional").name  # static-qdq-u8s8, or -u8s7 on an x86 CPU without VNNI

MODEL = realweights.TAG
IMAGES = 3 * len(realweights.photos())  # each photo, mirrored and cropped


@pytest.fixture
def photos(tmp_path):
    return realweights.labelled_folder(tmp_path / "photos")


def stored_eval():
    from vischoose.results.store import open_store

    with open_store() as store:
        (saved,) = store.evals(model=MODEL)
    return saved


@pytest.mark.slow
def test_fp32_graph_gives_the_torch_accuracy(lite0, shared_graphs, runner, photos):
    eager = evaluate(photos, MODEL, batch_size=4).result
    result = runner.invoke(app, ["evaluate", str(photos), "-m", MODEL, "--runtime", "onnxruntime", "--batch-size",
                                 "4", "--json"])
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)["data"]
    assert (out["images"], out["top1"], out["top5"]) == (IMAGES, eager.top1, eager.top5)
    assert (out["runtime"], out["dtype"], out["recipe"], out["device"]) == ("onnxruntime", "float32", None, "cpu")
    assert out["images_per_s"] > 0 and out["failed"] == []
    deployed = out["deployed"]
    assert (deployed["precision"], deployed["family"], deployed["calibration"], deployed["notes"]) == (
        "fp32", "depthwise", "none", [])
    # the graph's logits, not eager's, were counted: they differ from eager's by float rounding only
    assert deployed["top1_agreeing_images"] == IMAGES and 0 < deployed["agreement"]["max_abs_diff"] < 1e-3
    assert 10 < deployed["file_mb"] < 30  # 4.7 M fp32 parameters
    saved = stored_eval()
    assert (saved.runtime, saved.dtype, saved.top1, saved.images) == ("onnxruntime", "float32", eager.top1, IMAGES)


@pytest.mark.slow
def test_int8_graph_calibrated_on_the_evaluation_images(lite0, shared_graphs, runner, photos):
    """Recorded (onnxruntime 1.32, 9 photos): top-1 7/9 (eager 5/9), agreement 7/9: int8 flips both cat photos."""
    eager = evaluate(photos, MODEL).result
    result = runner.invoke(app, ["evaluate", str(photos), "-m", MODEL, "--runtime", "onnxruntime", "--precision",
                                 "int8"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    row = lines[2].split()
    assert (row[2], row[7], row[8]) == (str(IMAGES), "cpu", "int8")
    assert f"int8 ({STATIC}, depthwise family)" in lines[5]
    assert "img/s is end to end (decode, preprocess, ONNX Runtime)" in lines[5]
    agreeing = int(lines[6].split(" on ")[1].split(" of ")[0])
    assert lines[6].startswith(f"agreement with eager fp32: same top-1 class on {agreeing} of {IMAGES} images")
    assert IMAGES // 2 <= agreeing <= IMAGES  # a floor on int8 quality, not today's count
    # the one verdict, on the agreement over every evaluated image (pretrained weights, real photos)
    assert lines[7].startswith("verdict: ok (on the agreement" if agreeing == IMAGES else
                               f"verdict: rejected: top-1 agreement {agreeing / IMAGES:.1%} < 99.0% on {IMAGES} images")
    assert lines[8].startswith("top-1 drop from eager fp32 on the same images: ")
    assert lines[9] == (f"note: calibrated on {IMAGES} of the evaluation images: the int8 accuracy may be slightly "
                        "optimistic; pass --calibration FOLDER to calibrate on other images")
    saved = stored_eval()
    assert (saved.runtime, saved.dtype, saved.recipe, saved.images) == ("onnxruntime", "int8", STATIC,
                                                                       IMAGES)
    assert row[3] == f"{saved.top1:,.2f}" and saved.images_per_s > 0
    assert row[4] == f"{saved.top1_low:.1f}-{saved.top1_high:.1f}" and saved.top1_low <= saved.top1 <= saved.top1_high
    assert saved.fp32_top1 == eager.top1  # the reference: eager fp32 on the very same images
    assert lines[8].endswith(f"{eager.top1 - saved.top1:.2f} points, 95 % CI {saved.drop_low:.2f} to "
                             f"{saved.drop_high:.2f} (paired, Newcombe) (eager fp32 {eager.top1:.2f} %, this file "
                             f"{saved.top1:.2f} %).")
    assert saved.drop_low <= eager.top1 - saved.top1 <= saved.drop_high
    assert saved.variant_status == ("ok" if agreeing == IMAGES else "rejected")
    assert (saved.agreement_top1, saved.agreement_images) == (pytest.approx(agreeing / IMAGES), IMAGES)
    # an image whose top-1 is the same as eager's is right or wrong for both: accuracy moves only by the others
    assert abs(saved.top1 - eager.top1) <= 100.0 * (IMAGES - agreeing) / IMAGES + 1e-9


@pytest.mark.slow
def test_int8_calibrated_on_a_folder(lite0, shared_graphs, runner, photos, tmp_path):
    calib = tmp_path / "calib"
    calib.mkdir()
    for name, path in realweights.photos().items():
        Image.open(path).convert("RGB").resize((200, 150)).save(calib / f"{name}.jpg")
    (calib / "broken.jpg").write_text("not a jpeg")
    result = runner.invoke(app, ["evaluate", str(photos), "-m", MODEL, "--runtime", "onnxruntime", "--precision",
                                 "int8", "--calibration", str(calib), "--json", "--no-save"])
    assert result.exit_code == 0, result.stderr
    deployed = json.loads(result.stdout)["data"]["deployed"]
    n = len(realweights.photos())
    assert (deployed["calibration"], deployed["calibration_images"]) == ("folder", n)
    assert deployed["notes"][0] == f"calibrated on {n} images from {calib} (1 unreadable skipped)"
    assert deployed["agreement"]["n_images"] == IMAGES and deployed["agreement"]["cosine"] > 0.9


def test_export_failure_is_one_line(lite0, runner, photos, monkeypatch):
    import torch

    def broken(*args, **kwargs):
        raise torch.onnx.OnnxExporterError("export failed") from NotImplementedError("op aten::magic")

    monkeypatch.setattr(torch.onnx, "export", broken)
    result = runner.invoke(app, ["evaluate", str(photos), "-m", MODEL, "--runtime", "onnxruntime"])
    assert result.exit_code == 1
    assert result.stderr == (f"Error: Exporting {MODEL} to ONNX failed: NotImplementedError: op aten::magic\n"
                             "Hint: VISCHOOSE_DEBUG=1 shows the exporter's traceback.\n")


@pytest.mark.parametrize(("options", "error", "hint"), [
    (["--precision", "int8"], "--precision int8 needs --runtime onnxruntime: torch evaluates the model at --dtype.",
     "Add --runtime onnxruntime to evaluate the int8 graph you would deploy."),
    (["--precision", "fp32", "--dtype", "bfloat16"], "--precision fp32 contradicts --dtype bfloat16.",
     "Give one of the two."),
    (["--calibration", "calib"],
     "--calibration calibrates int8 graphs: it needs --runtime onnxruntime --precision int8.", None),
    (["--runtime", "onnxruntime", "--device", "cuda"],
     "--runtime onnxruntime evaluates on the CPU only (got --device cuda).",
     "Drop --device, or evaluate on the GPU with --runtime torch."),
    (["--runtime", "onnxruntime", "--dtype", "float16"],
     "--runtime onnxruntime evaluates a float32 or int8 graph, not --dtype float16.",
     "Use --precision fp32 or --precision int8 instead of --dtype."),
    (["--runtime", "onnxruntime", "--calibration", "calib"],
     "--calibration calibrates int8 graphs: it needs --precision int8.", None),
])
def test_option_errors(runner, photos, options, error, hint):
    result = runner.invoke(app, ["evaluate", str(photos), "-m", MODEL, *options])
    assert result.exit_code == 2
    assert result.stderr == f"Error: {error}\n" + (f"Hint: {hint}\n" if hint else "")


def test_onnxruntime_under_torchrun(runner, photos, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = runner.invoke(app, ["evaluate", str(photos), "-m", MODEL, "--runtime", "onnxruntime"])
    assert result.exit_code == 2
    assert result.stderr == ("Error: --runtime onnxruntime evaluates in one process, but WORLD_SIZE is 2 (torchrun).\n"
                             "Hint: Run vischoose evaluate without torchrun: ONNX Runtime uses every core by itself.\n")


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_bad_calibration_folder(lite0, runner, photos, tmp_path, make):
    calib = tmp_path / "calib"
    if make == "empty":
        calib.mkdir()
    result = runner.invoke(app, ["evaluate", str(photos), "-m", MODEL, "--runtime", "onnxruntime", "--precision",
                                 "int8", "--calibration", str(calib)])
    assert result.exit_code == 2
    first = result.stderr.splitlines()[0]
    if make == "missing":
        assert result.stderr == (f"Error: --calibration {calib} does not exist.\n"
                                 "Hint: Give a folder of your own images (a few dozen).\n")
    else:
        assert first.startswith(f"Error: {calib}: ") and "Traceback" not in result.stderr
