"""evaluate --graph FILE: an exported file evaluated exactly as written (its runtime from its name, its precision
from the file), with the model's preprocessing; the 95 % interval and the data set's fingerprint on every result;
the one-line errors for files that do not fit the model."""

from __future__ import annotations

import json

import pytest

from tests import realweights
from tests.inference.test_evaluation import MODEL, synset_folder
from vischoose.cli import app
from vischoose.inference import datasets, intervals
from vischoose.inference.prediction import prepare

LITE0 = realweights.TAG


def tiny_onnx(path, side: int, tag: str | None = None, quantized: bool = False):
    """A valid ONNX graph taking [N, 3, side, side] whose logits put every image in class 967 (espresso)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.zeros((3, 1000), dtype=np.float32), "w")
    bias = np.zeros(1000, dtype=np.float32)
    bias[967] = 1.0
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["mm"]),
             helper.make_node("Add", ["mm", "b"], ["logits"])]
    if quantized:  # the quantize/dequantize pair ONNX Runtime's QDQ graphs are made of
        scale, zero = numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.uint8(0), "z")
        nodes = [helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"]),
                 helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]),
                 helper.make_node("GlobalAveragePool", ["dq"], ["pooled"])] + nodes[1:]
        inits = [weight, scale, zero]
    else:
        inits = [weight]
    inits.append(numpy_helper.from_array(bias, "b"))
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                            ["batch", 3, side, side])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1000])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    if tag:
        helper.set_model_props(proto, {"vischoose.tag": tag})
    onnx.save(proto, str(path))
    return path


@pytest.fixture
def model(cached_model):
    cached_model(MODEL)
    return MODEL


@pytest.fixture
def folder(tmp_path):
    return synset_folder(tmp_path / "data")


def evaluate_json(runner, *args):
    result = runner.invoke(app, ["evaluate", *map(str, args), "--json", "--no-save"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["data"]


def test_a_foreign_graph_runs_as_written_and_its_precision_is_read_from_it(model, runner, folder, tmp_path):
    """A graph that answers espresso for every image: top-1 is the share of espresso images, whatever eager says."""
    plain = evaluate_json(runner, folder, "-m", MODEL, "--graph", tiny_onnx(tmp_path / "zero.onnx", 160))
    quant = evaluate_json(runner, folder, "-m", MODEL, "--graph", tiny_onnx(tmp_path / "q.onnx", 160, quantized=True))
    for out, precision, dtype in ((plain, "fp32", "float32"), (quant, "int8", "int8")):
        assert (out["runtime"], out["dtype"], out["deployed"]["precision"]) == ("onnxruntime", dtype, precision)
        assert out["top1"] == pytest.approx(100 / 3)  # espresso, one class of three
        assert out["graph"].endswith(".onnx") and out["deployed"]["graph"] == out["graph"]
        assert out["deployed"]["calibration"] == "as written"
        assert out["fp32_top1"] is not None  # eager fp32 on the same images, beside it


def test_every_result_has_its_interval_and_data_set_fingerprint(model, runner, folder):
    out = evaluate_json(runner, folder, "-m", MODEL)
    expected = intervals.wilson(round(out["top1"] * out["images"] / 100), out["images"])
    assert (out["top1_low"], out["top1_high"]) == pytest.approx((expected.low, expected.high))
    assert out["top1_low"] <= out["top1"] <= out["top1_high"]
    classifier = prepare(MODEL, "cpu", "float32")
    labelled = datasets.read_dataset(folder, classifier.classes, classifier.num_classes)
    assert out["dataset_id"] == labelled.fingerprint()


def test_the_fingerprint_follows_the_file_list_and_labels_not_the_folder(tmp_path):
    from vischoose.inference.datasets import LabelledImages, Sample

    def fp(root, samples):
        return LabelledImages(str(root), tuple(Sample(str(root / p), t) for p, t in samples)).fingerprint()

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    same = [("x/1.png", 0), ("y/2.png", 3)]
    assert fp(a, same) == fp(b, list(reversed(same)))  # moved and reordered: the same data set
    assert fp(a, same) != fp(a, [("x/1.png", 0), ("y/2.png", 4)])  # a label changed
    assert fp(a, same) != fp(a, same[:1])  # an image fewer


@pytest.mark.parametrize(("make", "options", "error", "hint"), [
    (lambda p: tiny_onnx(p / "m.onnx", 100), [], "m.onnx takes 100 px inputs, but test_resnet.r160_in1k "
     "preprocesses images to 160 px.", "Pass the --model the file was exported from, at the input size it was "
     "exported at."),
    (lambda p: tiny_onnx(p / "m.onnx", 160, tag="resnet50.a1_in1k"), [], "m.onnx was exported from "
     "resnet50.a1_in1k, not --model test_resnet.r160_in1k.",
     "Pass --model resnet50.a1_in1k: its preprocessing and labels are the file's."),
    (lambda p: tiny_onnx(p / "m.onnx", 160), ["--precision", "int8"], "m.onnx is an fp32 ONNX Runtime file, not "
     "--precision int8.", "Drop --precision: the file's own precision is used."),
    (lambda p: tiny_onnx(p / "m.onnx", 160), ["--runtime", "openvino"], "--graph m.onnx is a ONNX Runtime file, "
     "not one --runtime openvino runs.", "Drop --runtime: the file's name says which runtime runs it."),
    (lambda p: tiny_onnx(p / "m.onnx", 160), ["--calibration", "calib"], "--calibration calibrates an int8 graph "
     "vischoose builds; --graph evaluates a file as written.", "Drop --calibration."),
    (lambda p: p / "absent.onnx", [], "Graph file '{tmp}/absent.onnx' does not exist.",
     "Give the file vischoose export wrote."),
    (lambda p: p / "model.mlmodel", [], "No runtime runs 'model.mlmodel': vischoose knows .onnx (ONNX Runtime), "
     ".pte (ExecuTorch (XNNPACK)), .tflite (LiteRT (XNNPACK)), .xml (OpenVINO).",
     "Give a file vischoose export wrote, keeping its name's ending."),
])
def test_a_graph_that_does_not_fit_is_one_line(model, runner, folder, tmp_path, make, options, error, hint):
    graph = make(tmp_path)
    result = runner.invoke(app, ["evaluate", str(folder), "-m", MODEL, "--graph", str(graph), *options])
    assert result.exit_code == 2, result.stdout
    assert result.stderr == f"Error: {error.format(tmp=tmp_path)}\nHint: {hint}\n"


def test_an_unreadable_graph_is_one_line(model, runner, folder, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x00not a protobuf at all")
    result = runner.invoke(app, ["evaluate", str(folder), "-m", MODEL, "--graph", str(broken)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {broken} is not an ONNX file onnx ")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 2


@pytest.mark.slow
def test_the_exported_lite0_int8_file_evaluates_as_deployed(lite0, shared_graphs, runner, tmp_path):
    """Real weights: the file vischoose export wrote is read as int8 and moves top-1 from eager fp32's only by the
    images whose class it changes."""
    photos = realweights.labelled_folder(tmp_path / "photos")
    out = tmp_path / "lite0-int8.onnx"
    result = runner.invoke(app, ["export", LITE0, "--precision", "int8", "--calibration", str(photos),
                                 "--min-agreement", "0.5", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    int8 = evaluate_json(runner, photos, "-m", LITE0, "--graph", out)
    assert (int8["deployed"]["precision"], int8["dtype"], int8["graph"]) == ("int8", "int8", str(out))
    assert int8["deployed"]["agreement"]["max_abs_diff"] > 1e-3  # int8 rounding, not float rounding: the int8 file
    changed = int8["images"] - int8["deployed"]["top1_agreeing_images"]
    assert abs(int8["top1"] - int8["fp32_top1"]) <= 100.0 * changed / int8["images"] + 1e-9
    assert int8["deployed"]["file_mb"] < 8  # 4.7 M parameters in int8 (fp32: about 18 MiB)
