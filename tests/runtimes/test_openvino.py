"""OpenVINO: real IRs and sessions on tiny timm models (dynamic batch, fp32 = eager), NNCF int8 and its verdict on
real photos through real EfficientNet-Lite0 weights, bf16 only where the CPU has it, the missing extra and CPU, and an
operator the converter cannot take."""

from __future__ import annotations

import pytest
import torch

from tests import realweights
from vischoose import machine
from vischoose.deploy import verdict
from vischoose.errors import DeployError, MissingExtraError, UsageError
from vischoose.models.loading import load_model
from vischoose.runtimes import agreement
from vischoose.runtimes import openvino as ovrt
from vischoose.runtimes.openvino import OpenVino

pytest.importorskip("openvino")
pytest.importorskip("nncf")
SIZE = 160
THREADS = 2


@pytest.fixture(scope="module")
def models():
    return {name: load_model(name, weights="random") for name in ("test_resnet", "test_vit")}


@pytest.fixture(scope="module")
def built(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("ov")
    return {(name, p): OpenVino().build(loaded, p, out / f"{name}-{p}.xml", SIZE, None)
            for name, loaded in models.items() for p in ("fp32", "int8")}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["test_resnet", "test_vit"])
def test_fp32_ir_matches_eager_at_any_batch(models, built, name):
    art = built[name, "fp32"]
    assert (art.runtime, art.precision, art.calibration, art.facts["batch"]) == ("openvino", "fp32", "none", "dynamic")
    xml = art.path
    assert xml.endswith(".xml") and art.file_mb == pytest.approx(ovrt.ir_mb(xml)) and art.file_mb > 1.0
    forward = OpenVino().session(art, THREADS)
    for n in (1, 5):
        batch = agreement.random_batch(SIZE, n)
        reference = agreement.eager_logits(models[name].model, batch)
        logits = forward(batch)
        assert logits.shape == (n, 1000)
        assert agreement.fp32_matches(agreement.compare(reference, logits), reference)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "recipe"), [("test_resnet", "nncf-ptq-default"),
                                              ("test_vit", "nncf-ptq-transformer")])
def test_int8_ir_runs_with_the_family_recipe(models, built, name, recipe):
    art = built[name, "int8"]
    assert (art.precision, art.recipe, art.calibration, art.calibration_images) == ("int8", recipe, "random", 0)
    assert art.file_mb < built[name, "fp32"].file_mb / 2
    batch = agreement.random_batch(SIZE, 4)
    found = agreement.compare(agreement.eager_logits(models[name].model, batch), OpenVino().session(art, THREADS)(batch))
    # random weights calibrated on random images: test_vit's int8 logits measured at cosine 0.965-0.995 with fp32
    # (it moves with the thread count and the weights); broken scales or a dropped layer give far less
    assert found.cosine > 0.9
    assert verdict.judge(found, real_images=False, pretrained=False).status == verdict.UNVERIFIED


@pytest.mark.slow
def test_lite0_int8_verdict_on_real_photos(lite0, tmp_path):
    from vischoose.inference.calibration import load_calibration, preprocessing

    loaded = load_model(realweights.TAG, weights="pretrained")
    size = loaded.input_size
    photos = load_calibration(realweights.labelled_folder(tmp_path / "photos"), preprocessing(loaded, size)).batch
    art = OpenVino().build(loaded, "int8", tmp_path / "lite0-int8.xml", size, photos)
    assert (art.calibration, art.calibration_images, art.recipe) == ("images", len(photos), "nncf-ptq-default")
    found = agreement.compare(agreement.eager_logits(loaded.model, photos), OpenVino().session(art, THREADS)(photos))
    result = verdict.judge(found, real_images=True, pretrained=True)
    expected = verdict.OK if found.top1_agreement >= verdict.MIN_AGREEMENT else verdict.REJECTED
    assert result.status == expected and found.n_images == len(photos)


def test_bf16_needs_the_cpu_flags(tmp_path, monkeypatch):
    with_amx, without = tmp_path / "amx", tmp_path / "plain"
    with_amx.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n")
    assert machine.has_bf16(str(with_amx)) and not machine.has_bf16(str(without))
    assert not machine.has_bf16(str(tmp_path / "absent"))
    monkeypatch.setattr(machine, "has_bf16", lambda: False)
    assert OpenVino().precision_supported("bf16") == ("bf16 on OpenVINO needs a CPU with AVX-512 bf16 or AMX "
                                                      "(avx512_bf16, amx_bf16); this one has neither")
    assert OpenVino().precision_supported("fp32") is None
    assert OpenVino().precision_supported("fp16") == "openvino runs fp32, bf16, int8, not fp16"


@pytest.mark.slow
def test_bf16_session_refuses_a_cpu_without_it(built, monkeypatch):
    from dataclasses import replace

    monkeypatch.setattr(machine, "has_bf16", lambda: False)
    art = replace(built["test_resnet", "fp32"], precision="bf16")
    with pytest.raises(UsageError, match="this one has neither"):
        OpenVino().session(art, THREADS)


def test_missing_extra_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(OpenVino, "module", "openvino_not_installed_here")
    with pytest.raises(MissingExtraError) as caught:
        OpenVino().require()
    assert (caught.value.exit_code, caught.value.hint) == (2, "pip install 'vischoose[openvino]'")


def test_a_non_x86_cpu_is_said_so(monkeypatch):
    monkeypatch.setattr(ovrt.machine, "arch", lambda: "aarch64")
    assert OpenVino().missing() == "vischoose runs OpenVINO on x86-64 CPUs only, and this one is aarch64"


class Histogram(torch.nn.Module):
    """A classifier over a histogram of the pixels: aten::histc has no OpenVINO conversion."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.histc(x, bins=10).expand(x.shape[0], 10)


def test_unconvertible_operator_is_named(tmp_path):
    from types import SimpleNamespace

    loaded = SimpleNamespace(model=Histogram().eval(), tag="histogram")
    with pytest.raises(DeployError) as caught:
        OpenVino().build(loaded, "fp32", tmp_path / "h.xml", 8, None)
    assert str(caught.value).startswith("Converting histogram to OpenVINO failed at operator aten::histc: ")
    assert not (tmp_path / "h.xml").exists() and not (tmp_path / "h.bin").exists()


@pytest.mark.slow
def test_a_built_ir_opened_as_written_reads_its_precision_and_runs_the_same(built, cached_model, runner, tmp_path):
    """evaluate --graph on an IR: the precision comes from the file (FakeQuantize: int8), the logits are the file's."""
    import json

    from tests.inference.test_evaluation import synset_folder
    from vischoose.cli import app

    batch = agreement.random_batch(SIZE, 2)
    for precision in ("fp32", "int8"):
        art = built["test_resnet", precision]
        opened = OpenVino().open_file(art.path)
        assert (opened.precision, opened.input_size, opened.file_mb) == (precision, SIZE, pytest.approx(art.file_mb))
        assert (OpenVino().session(opened, THREADS)(batch) == OpenVino().session(art, THREADS)(batch)).all()
    assert OpenVino().open_file(built["test_resnet", "fp32"].path, "bf16").precision == "bf16"  # a hint, not a build
    cached_model("test_resnet.r160_in1k")
    result = runner.invoke(app, ["evaluate", str(synset_folder(tmp_path / "data")), "-m", "test_resnet.r160_in1k",
                                 "--graph", built["test_resnet", "int8"].path, "--json", "--no-save"])
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)["data"]
    assert (out["runtime"], out["dtype"], out["images"]) == ("openvino", "int8", 6)


@pytest.mark.slow
def test_sessions_freed_in_the_order_they_were_made_leave_the_process_able_to_take_a_signal(built):
    """Each OpenVINO Core's CPU plugin swaps the thread's signal stack and puts back the one it found when it goes:
    Cores freed first-made-first used to put back an unmapped stack, and the next handled signal killed the process
    (SIGSEGV). In a new process: two sessions, freed in that order, then a signal with a handler."""
    code = """if True:
        import gc, json, os, signal, sys
        from vischoose.deploy import verdict
        from vischoose.runtimes import agreement
        from vischoose.runtimes.artifact import Artifact
        from vischoose.runtimes.openvino import OpenVino
        arts = [Artifact.from_dict(a) for a in json.loads(sys.argv[1])]
        batch = agreement.random_batch(int(sys.argv[2]), 1)
        first, second = (OpenVino().session(a, 1) for a in arts)
        first(batch), second(batch)
        del first
        gc.collect()
        del second
        gc.collect()
        signal.signal(signal.SIGUSR1, lambda *_: print("handled", flush=True))
        os.kill(os.getpid(), signal.SIGUSR1)
        print("alive")
    """
    import json
    import subprocess
    import sys

    arts = [built["test_resnet", "fp32"].to_dict(), built["test_resnet", "int8"].to_dict()]
    done = subprocess.run([sys.executable, "-c", code, json.dumps(arts), str(SIZE)], capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.split()[-2:] == ["handled", "alive"]


@pytest.mark.slow
def test_export_writes_the_ir_with_its_weights_and_it_runs_as_written(cached_model, runner, tmp_path):
    """`vischoose export --format openvino` publishes the .xml and the .bin beside it (the .bin once stayed in
    the staging folder, leaving an IR that cannot load); the written pair opens and matches the eager model."""
    from vischoose.cli import app

    cached_model("test_resnet.r160_in1k")
    out = tmp_path / "out" / "net.xml"
    out.parent.mkdir()
    result = runner.invoke(app, ["export", "test_resnet.r160_in1k", "--format", "openvino", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["net.bin", "net.xml"]
    opened = OpenVino().open_file(out)
    assert opened.file_mb == pytest.approx(ovrt.ir_mb(out)) and out.with_suffix(".bin").stat().st_size > 10_000
    loaded = load_model("test_resnet.r160_in1k")
    batch = agreement.random_batch(SIZE, 2)
    found = agreement.compare(agreement.eager_logits(loaded.model, batch), OpenVino().session(opened, THREADS)(batch))
    assert agreement.fp32_matches(found, agreement.eager_logits(loaded.model, batch))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["test_resnet.r160_in1k", "test_vit.r160_in1k"])
def test_ranks_the_quantized_nodes_and_keeps_the_excluded_ones_in_float(tmp_path, name):
    """OpenVINO (random weights): the ranked nodes are the int8 IR's quantized ones, named as in the fp32 IR; the
    two worst, excluded, reach the IR with float weights and every other stays quantized."""
    from vischoose.runtimes import ovsensitivity
    from vischoose.runtimes.openvino import core

    runtime = OpenVino()
    loaded = load_model(name, weights="random")
    fp32 = runtime.build(loaded, "fp32", tmp_path / "net.xml", loaded.input_size, None)
    plain = runtime.build(loaded, "int8", tmp_path / "net-int8.xml", loaded.input_size, None, source=fp32)
    ranked = runtime.rank_layers(loaded, fp32, plain, agreement.random_batch(loaded.input_size, n=2), None)

    def quantized(path):
        return {op.get_friendly_name() for op in core().read_model(path).get_ordered_ops()
                if op.get_type_name() in ovsensitivity.QUANTIZABLE and ovsensitivity.weight_quantized(op)}

    assert ranked and {layer.node for layer in ranked} == quantized(plain.path)
    assert {layer.node for layer in ranked} <= {op.get_friendly_name() for op in core().read_model(fp32.path).get_ops()}
    assert [layer.added_db for layer in ranked] == sorted((layer.added_db for layer in ranked), reverse=True)
    assert all(layer.weight for layer in ranked)
    kept = {layer.node for layer in ranked[:2]}
    reverted = runtime.build_excluding(loaded, fp32, tmp_path / "net-mixed.xml", None, sorted(kept))
    assert quantized(reverted.path) == quantized(plain.path) - kept


@pytest.mark.slow
def test_layer_profile_names_a_layer_executed_in_f32_inside_an_int8_ir(models, built, tmp_path):
    """A planted slow path: int8 with one convolution in NNCF's ignored scope runs it in f32, and OpenVINO's
    performance counters name it with the kernel that ran it; plain int8 runs every convolution in int8."""
    runtime = OpenVino()
    fp32, plain = built[("test_resnet", "fp32")], built[("test_resnet", "int8")]
    first_conv = next(op.get_friendly_name() for op in ovrt.core().read_model(fp32.path).get_ops()
                      if op.get_type_name() == "Convolution")
    planted = runtime.build_excluding(models["test_resnet"], fp32, tmp_path / "mixed.xml", None, [first_conv])
    clean, found = runtime.layer_profile(plain, 1, 1, runs=3), runtime.layer_profile(planted, 1, 1, runs=3)
    assert clean.layers and not clean.off_fast_path
    slow = found.off_fast_path
    assert len(slow) == 1 and slow[0].op == "Convolution" and slow[0].kernel.lower().endswith("_f32")
    assert slow[0].slow == f"executed in f32, not i8 ({slow[0].kernel})"
    assert found.profiler.startswith("OpenVINO ") and 0 < found.accounted_ms
    assert all(layer.ms >= 0 for layer in found.layers)
