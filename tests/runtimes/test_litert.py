"""LiteRT (XNNPACK): real conversions through litert-torch and runs on the ai-edge-litert interpreter on tiny timm
models (fp32 = eager, int8 with int8 kernels inside), an int8 build that stays float refused, an operator the
converter cannot lower named, the int8 verdict on real photos through real EfficientNet-Lite0 weights, the missing
extra, and `export --format tflite` / `evaluate --graph` on the file it writes."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests import realweights
from vischoose.deploy import verdict
from vischoose.errors import DeployError, MissingExtraError, UsageError
from vischoose.models.loading import load_model
from vischoose.report.flags import flag_of
from vischoose.runtimes import agreement
from vischoose.runtimes import litert as litert_rt
from vischoose.runtimes.litert import LiteRT

SIZE = 160  # test_resnet's and test_vit's native input side
THREADS = 2
needs_litert = pytest.mark.skipif(LiteRT().missing() is not None, reason="needs vischoose[litert]")


@pytest.fixture(scope="module")
def models():
    return {name: load_model(name, weights="random") for name in ("test_resnet", "test_vit")}


@pytest.fixture(scope="module")
def built(models, tmp_path_factory):
    """test_resnet at fp32 and int8 (random calibration) and test_vit at fp32, built once for the module."""
    out = tmp_path_factory.mktemp("litert")
    return {(name, p): LiteRT().build(models[name], p, out / f"{name}-{p}.tflite", SIZE, None)
            for name, p in (("test_resnet", "fp32"), ("test_resnet", "int8"), ("test_vit", "fp32"))}


@needs_litert
@pytest.mark.slow
@pytest.mark.parametrize("name", ["test_resnet", "test_vit"])
def test_fp32_file_matches_eager_image_by_image(models, built, name):
    art = built[name, "fp32"]
    assert (art.runtime, art.precision, art.recipe, art.calibration, art.input_size) == ("litert", "fp32", None,
                                                                                         "none", SIZE)
    assert art.path.endswith(".tflite") and art.file_mb > 0.1
    facts = LiteRT().inspect(art.path)
    assert (facts.precision, facts.input_size, facts.extra["batch"], facts.extra["layout"]) == ("fp32", SIZE, 1, "NCHW")
    assert art.facts["batch"] == 1 and art.note.startswith("a batch-1 file: a batch of N runs as N batch-1 inferences")
    batch = agreement.random_batch(SIZE, 3)  # a batch of 3 through the batch-1 file
    reference = agreement.eager_logits(models[name].model, batch)
    logits = LiteRT().session(art, THREADS)(batch)
    assert logits.shape == (3, 1000)
    assert agreement.fp32_matches(agreement.compare(reference, logits), reference)


@needs_litert
@pytest.mark.slow
def test_int8_file_runs_int8_kernels_and_random_calibration_stays_unverified(models, built):
    art = built["test_resnet", "int8"]
    assert (art.precision, art.recipe, art.calibration, art.calibration_images) == (
        "int8", "litert-pt2e-symmetric-per-channel", "random", 0)
    assert art.quantize_s > 0
    facts = art.facts
    # every conv and the head run int8 (the model's 16 conv/linear layers all kept, none folded away)
    assert facts["int8_compute_ops"] == facts["compute_ops"] == facts["file_layers"] == facts["model_layers"]
    declared = LiteRT().inspect(art.path)  # what export prints: the file's own input type and batch
    assert facts["io_dtype"] == declared.input_dtype == "int8" and declared.precision == "int8"
    assert declared.batch == (1, 1) and LiteRT().max_call_batch(facts) == 1
    batch = agreement.random_batch(SIZE, 4)
    found = agreement.compare(agreement.eager_logits(models["test_resnet"].model, batch),
                              LiteRT().session(art, THREADS)(batch))
    assert found.cosine > 0.99
    assert verdict.judge(found, real_images=False, pretrained=False).status == verdict.UNVERIFIED
    with pytest.raises(UsageError) as caught:
        LiteRT().open_file(art.path, "fp32")
    assert caught.value.render(flag_of)[0].endswith("is an int8 LiteRT (XNNPACK) file, not --precision fp32.")


def _tiny(loaded, module, tag):
    """`loaded` holding another (small) module: quick conversions of a chosen operator."""
    return dataclasses.replace(loaded, model=module.eval(), tag=tag)


@needs_litert
@pytest.mark.slow
def test_int8_that_the_converter_leaves_float_is_refused(models, monkeypatch, tmp_path):
    """Without litert-torch's QuantConfig the converter keeps float kernels between quantize/dequantize pairs: the
    file says int8 nowhere but in those pairs, and is bigger. vischoose reads it back and refuses it."""
    import torch

    quantize = litert_rt._quantized_module

    def without_config(*args, **kwargs):
        module, _, facts = quantize(*args, **kwargs)
        return module, None, facts

    monkeypatch.setattr(litert_rt, "_quantized_module", without_config)
    net = _tiny(models["test_resnet"], torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(),
                                                           torch.nn.Flatten(), torch.nn.LazyLinear(10)), "tiny")
    net.model(torch.zeros(1, 3, 16, 16))  # materialise the lazy layer
    with pytest.raises(DeployError) as caught:
        LiteRT().build(net, "int8", tmp_path / "tiny.tflite", 16, None)
    assert str(caught.value) == ("int8 conversion of tiny for LiteRT stayed float: none of its 2 conv/fully-connected/"
                                 "matmul operators takes int8 inputs (CONV_2D x1, FULLY_CONNECTED x1); nothing was "
                                 "written.")
    assert [p.name for p in tmp_path.iterdir() if "tiny" in p.name] == []  # nor the staging folder


@needs_litert
@pytest.mark.slow
def test_an_operator_the_converter_cannot_lower_is_named(models, tmp_path):
    import torch

    class Resize(torch.nn.Module):
        def forward(self, x):  # antialiased bicubic: litert-torch 0.10 has no lowering for it
            return torch.nn.functional.interpolate(x, size=(8, 8), mode="bicubic", antialias=True).flatten(1)

    with pytest.raises(DeployError) as caught:
        LiteRT().build(_tiny(models["test_resnet"], Resize(), "resize"), "fp32", tmp_path / "r.tflite", 16, None)
    assert str(caught.value).startswith("conversion of resize for LiteRT failed at operator "
                                        "aten._upsample_bicubic2d_aa.default: ")
    assert not (tmp_path / "r.tflite").exists()


@needs_litert
@pytest.mark.slow
def test_lite0_int8_verdict_on_real_photos(lite0, tmp_path):
    from vischoose.inference.calibration import load_calibration, preprocessing

    loaded = load_model(realweights.TAG, weights="pretrained")
    size = loaded.input_size
    photos = load_calibration(realweights.labelled_folder(tmp_path / "photos"), preprocessing(loaded, size)).batch
    art = LiteRT().build(loaded, "int8", tmp_path / "lite0-int8.tflite", size, photos)
    assert (art.calibration, art.calibration_images) == ("images", len(photos))
    assert art.facts["int8_compute_ops"] > 0
    found = agreement.compare(agreement.eager_logits(loaded.model, photos), LiteRT().session(art, THREADS)(photos))
    result = verdict.judge(found, real_images=True, pretrained=True)
    expected = verdict.OK if found.top1_agreement >= verdict.MIN_AGREEMENT else verdict.REJECTED
    assert result.status == expected and found.n_images == len(photos)
    if expected == verdict.REJECTED:
        assert result.note == f"top-1 agreement {found.top1_agreement:.1%} < 99.0% on {len(photos)} images"


def test_missing_extra_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(LiteRT, "module", "ai_edge_litert_not_installed_here")
    with pytest.raises(MissingExtraError) as caught:
        LiteRT().require()
    assert caught.value.exit_code == 2
    assert caught.value.hint == "pip install 'vischoose[litert]'"
    assert caught.value.render(flag_of)[0] == "--runtime litert is not available here: LiteRT (XNNPACK) is not installed."


def test_missing_converter_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(LiteRT, "converter", "litert_torch_not_installed_here")
    monkeypatch.setattr(LiteRT, "module", "json")  # the interpreter's module present: only the converter is missing
    with pytest.raises(MissingExtraError) as caught:
        LiteRT().require()
    assert caught.value.render(flag_of)[0] == ("--runtime litert is not available here: litert-torch (the converter) is "
                                               "not installed.")
    assert caught.value.hint == "pip install 'vischoose[litert]'"


@pytest.mark.parametrize("args", [["export", "test_resnet", "--format", "tflite", "--out", "m.tflite"],
                                  ["profile", "test_resnet", "--runtime", "litert"]])
def test_cli_without_the_extra_exits_2_with_the_pip_command(runner, plain_install, args, tmp_path, monkeypatch):
    from vischoose.cli import app

    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr == ("Error: --runtime litert is not available here: LiteRT (XNNPACK) is not installed.\n"
                             "Hint: pip install 'vischoose[litert]'\n")
    assert not (tmp_path / "m.tflite").exists()


@needs_litert
@pytest.mark.slow
def test_export_writes_a_file_the_interpreter_loads_and_evaluate_reads_it_as_written(runner, cached_model, tmp_path):
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from tests.inference.test_evaluation import synset_folder
    from vischoose.cli import app

    tag = "test_resnet.r160_in1k"
    cached_model(tag)
    out = tmp_path / "resnet.tflite"
    result = runner.invoke(app, ["export", tag, "--format", "tflite", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    row = result.stdout.splitlines()[2].split()
    assert row[:3] == ["fp32", "litert", "fp32"] and row[-1] == "ok"
    assert "; input float32 [1, 3, 160, 160]: batch 1 only (a batch of N runs as N calls)." in result.stdout
    interpreter = Interpreter(model_path=str(out))
    interpreter.allocate_tensors()
    declared = interpreter.get_input_details()[0]
    assert declared["shape"].tolist() == [1, 3, 160, 160] and declared["dtype"] == np.float32
    interpreter.set_tensor(declared["index"], np.zeros(declared["shape"], np.float32))
    interpreter.invoke()
    assert interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).shape == (1, 1000)
    result = runner.invoke(app, ["evaluate", str(synset_folder(tmp_path / "data")), "-m", tag, "--graph", str(out),
                                 "--json", "--no-save"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)["data"]
    assert (data["runtime"], data["dtype"], data["images"]) == ("litert", "float32", 6)


@needs_litert
@pytest.mark.slow
def test_layer_profile_says_what_it_cannot_time_and_names_what_xnnpack_left(models, tmp_path):
    """ai-edge-litert has no per-operator profiler for Python: the profile says so, times the whole invoke, and names
    the operators XNNPACK did not take: test_resnet's PADV2 and a planted cumsum."""
    import copy

    import torch

    class Cumsum(torch.nn.Module):
        def forward(self, x):
            return torch.cumsum(x, dim=-1)

    net = copy.deepcopy(models["test_resnet"].model)
    net.fc = torch.nn.Sequential(Cumsum(), net.fc)
    planted = LiteRT().build(_tiny(models["test_resnet"], net, "planted"), "fp32", tmp_path / "p.tflite", SIZE, None)
    found = LiteRT().layer_profile(planted, 1, 1, runs=3)
    assert found.layers == () and found.total_ms > 0 and found.profiler.endswith(": whole invoke only")
    assert found.note.startswith(f"ai-edge-litert {LiteRT().version()} exposes no per-operator profiler to Python")
    assert any(line.startswith("CUMSUM x1: on LiteRT's own kernel") for line in found.unprofiled)
    assert any(line.startswith("PADV2 x") for line in found.unprofiled)


def test_random_weights_have_no_norm_that_zeroes_a_branch():
    """timm's init zero-initialises each ResNet block's last norm (trained weights never are); vischoose's random
    weights set those to one, so no branch adds exactly zero for a converter to drop."""
    import timm
    import torch

    def zero_norms(net) -> int:
        return sum(1 for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                   and not m.weight.detach().any())

    assert zero_norms(timm.create_model("test_resnet", pretrained=False)) > 0  # what timm gives
    assert zero_norms(load_model("test_resnet", weights="random").model) == 0


@needs_litert
@pytest.mark.slow
def test_a_random_weights_file_keeps_every_layer_of_the_architecture(built):
    """LiteRT's converter folds away layers whose output is always zero; on vischoose's random weights none is."""
    facts = built["test_resnet", "fp32"].facts
    assert facts["file_layers"] == facts["model_layers"] > 0
