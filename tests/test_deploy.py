"""Deployment runtimes: ONNX export, int8 recipes per family, ORT sessions, agreement checks (tiny timm models)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vischoose import machine
from vischoose.errors import DeployError, UsageError
from vischoose.inference import calibration
from vischoose.measure.timing import time_call
from vischoose.models.family import model_family
from vischoose.models.loading import LoadedModel, load_model
from vischoose.runtimes import files as artifacts
from vischoose.runtimes import ortbuild as deploy
from vischoose.runtimes.ortbuild import recipe_for

STATIC = recipe_for("convolutional").name  # static-qdq-u8s8, or -u8s7 on an x86 CPU without VNNI

SIZE = 64  # px; the tiny test models run at any size, and small inputs keep the suite fast


@pytest.fixture(scope="module")
def resnet() -> LoadedModel:
    return load_model("test_resnet.r160_in1k", weights="random")


@pytest.fixture(scope="module")
def vit() -> LoadedModel:
    return load_model("test_vit.r160_in1k", weights="random")


@pytest.fixture(scope="module")
def resnet_onnx(resnet, tmp_path_factory):
    return deploy.export_onnx(resnet, tmp_path_factory.mktemp("onnx") / "resnet.onnx", SIZE)


@pytest.fixture(scope="module")
def vit_onnx(vit, tmp_path_factory):
    return deploy.export_onnx(vit, tmp_path_factory.mktemp("onnx") / "vit.onnx", 160)


@pytest.fixture
def out_dir(tmp_path):
    """An empty folder for outputs (tmp_path also holds the test's hub cache and home)."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


# ---- family and recipe ----------------------------------------------------------------------------------

def _hybrid():
    """A CNN stem feeding an attention block, like R50+ViT."""
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, dim: int) -> None:
            super().__init__()
            self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    class Hybrid(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 32, 7), nn.Conv2d(32, 64, 3), nn.Conv2d(64, 64, 3))
            self.attn = Attention(64)
            self.head = nn.Linear(64, 10)

    return Hybrid()


@pytest.mark.parametrize("tag, family", [("test_resnet.r160_in1k", "convolutional"),
                                         ("test_vit.r160_in1k", "transformer"),
                                         ("test_efficientnet.r160_in1k", "depthwise")])
def test_model_family_of_timm_architectures(tag, family):
    assert model_family(load_model(tag, weights="random").model) == family


def test_model_family_of_a_cnn_stem_feeding_attention_is_hybrid():
    assert model_family(_hybrid()) == "hybrid"


def test_model_family_of_a_patch_embedding_feeding_mlps_is_mlp():
    from torch import nn

    mixer = nn.Sequential(nn.Conv2d(3, 16, 4, stride=4), nn.Flatten(2), nn.Linear(64, 64), nn.Linear(64, 64))
    assert model_family(mixer) == "mlp"


def test_recipes_per_family():
    conv, vit = deploy.recipe_for("convolutional"), deploy.recipe_for("transformer")
    assert conv.static and "uint8 activations" in conv.description and "per-channel" in conv.description
    assert not vit.static and "MatMul/Gemm" in vit.description
    assert deploy.recipe_for("hybrid").name == vit.name
    assert deploy.recipe_for("depthwise").name == conv.name and "measure" in deploy.recipe_for("depthwise").note


def _cpu(monkeypatch, arch: str, *flags: str) -> None:
    monkeypatch.setattr(machine, "arch", lambda: arch)
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset(flags))


def test_static_recipe_keeps_weights_to_7_bits_on_x86_without_vnni(monkeypatch):
    _cpu(monkeypatch, "x86_64", "avx2", "fma")
    reduced = deploy.recipe_for("convolutional")
    assert (reduced.name, reduced.reduce_range, reduced.static) == ("static-qdq-u8s7", True, True)
    assert "7-bit weights" in reduced.description and "no VNNI" in reduced.description
    assert deploy.recipe_for("depthwise").note == deploy.RECIPES["depthwise"].note  # the family's advice stays
    assert deploy.recipe_for("transformer") == deploy.RECIPES["transformer"]  # dynamic recipes are unchanged
    for arch, flags in (("x86_64", ("avx2", "avx512_vnni")), ("x86_64", ("avx2", "avx_vnni")),
                        ("x86_64", ("amx_int8",)), ("aarch64", ("asimd",))):
        _cpu(monkeypatch, arch, *flags)
        assert deploy.recipe_for("convolutional") == deploy.RECIPES["convolutional"]


def test_cpu_flags_read_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 avx512_vnni\n\nprocessor\t: 1\n")
    assert machine.cpu_flags(str(info)) == {"fpu", "avx2", "avx512_vnni"}
    assert machine.cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_the_fingerprint_is_sha256_of_the_machine_key_without_hashlib(monkeypatch):
    # recommend avoids hashlib's OpenSSL binding at start-up; the fingerprint must stay the one stored rows carry
    import hashlib

    assert machine._sha256(b"host|cpu|2|24|x86_64").hexdigest() == hashlib.sha256(b"host|cpu|2|24|x86_64").hexdigest()
    monkeypatch.setattr(machine, "_uname", lambda: ("host", "x86_64"))
    monkeypatch.setattr(machine, "cpu_name", lambda: "cpu")
    monkeypatch.setattr(machine, "memory_bytes", lambda: 24 * 2**30)
    monkeypatch.setattr(machine.os, "cpu_count", lambda: 2)
    machine.fingerprint.cache_clear()
    try:
        assert machine.fingerprint() == hashlib.sha256(b"host|cpu|2|24|x86_64").hexdigest()[:12]
    finally:
        machine.fingerprint.cache_clear()


def test_reduced_range_int8_weights_stay_within_7_bits(resnet_onnx, tmp_path, monkeypatch):
    """The 7-bit recipe really writes weights in [-64, 64]; the 8-bit one uses the int8 range."""
    import onnx

    def widest_int8_weight(path) -> int:
        graph = onnx.load(str(path)).graph
        return max(int(abs(onnx.numpy_helper.to_array(t).astype(np.int32)).max()) for t in graph.initializer
                   if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4)

    _cpu(monkeypatch, "x86_64", "avx2")
    reduced = deploy.quantize_int8(resnet_onnx.path, tmp_path / "q7.onnx", "convolutional")
    _cpu(monkeypatch, "x86_64", "avx2", "avx512_vnni")
    full = deploy.quantize_int8(resnet_onnx.path, tmp_path / "q8.onnx", "convolutional")
    assert (reduced.recipe.name, full.recipe.name) == ("static-qdq-u8s7", "static-qdq-u8s8")
    assert widest_int8_weight(reduced.path) <= 64 < widest_int8_weight(full.path)


def test_unknown_family_is_a_usage_error():
    with pytest.raises(UsageError) as info:
        deploy.recipe_for("rnn")
    assert str(info.value) == ("Unknown model family 'rnn' (expected one of: convolutional, depthwise, "
                               "transformer, hybrid, mlp).")


# ---- agreement ------------------------------------------------------------------------------------------

def test_agreement_of_identical_logits():
    ref = np.random.default_rng(1).standard_normal((4, 10))
    found = deploy.compare(ref, ref.copy())
    assert found == deploy.Agreement(n_images=4, top1_agreement=1.0, max_abs_diff=0.0, cosine=pytest.approx(1.0))


def test_agreement_counts_flipped_top1_and_reports_worst_cosine():
    ref = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    cand = np.array([[3.0, 1.0, 0.0], [0.0, 1.0, 2.0]])  # second image: top-1 moves from class 1 to 2
    found = deploy.compare(ref, cand)
    assert found.top1_agreement == 0.5 and found.max_abs_diff == 1.0
    assert found.cosine == pytest.approx(4.0 / 5.0)


def test_agreement_refuses_mismatched_shapes():
    with pytest.raises(DeployError, match=r"The graph's output has shape \(2, 5\), the model's \(2, 4\)\."):
        deploy.compare(np.zeros((2, 4)), np.zeros((2, 5)))


# ---- export ---------------------------------------------------------------------------------------------

def test_export_writes_a_checked_graph_with_a_dynamic_batch(resnet, resnet_onnx):
    result = resnet_onnx
    assert result.path.is_file() and result.opset >= 17 and result.input_size == SIZE
    assert result.file_mb == pytest.approx(result.path.stat().st_size / 2**20)
    assert result.agreement.top1_agreement == 1.0 and result.agreement.cosine > 0.9999
    assert [p.name for p in result.path.parent.iterdir()] == ["resnet.onnx"]  # no staging left behind
    session = deploy.ort_session(result.path, threads=1)
    assert isinstance(session.get_inputs()[0].shape[0], str)  # symbolic batch dimension
    for n in (1, 3):
        batch = deploy.random_batch(SIZE, n=n, seed=5)
        found = deploy.compare(deploy.eager_logits(resnet.model, batch), deploy.run_session(session, batch))
        assert found.max_abs_diff < 1e-3


def test_export_stores_metadata(resnet, tmp_path):
    import onnx

    path = tmp_path / "m.onnx"
    deploy.export_onnx(resnet, path, SIZE, metadata={"vischoose.tag": resnet.tag})
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    assert props["vischoose.tag"] == "test_resnet.r160_in1k"


def test_export_refuses_a_graph_that_disagrees_and_writes_nothing(resnet, out_dir):
    batch = deploy.random_batch(SIZE, n=2)
    wrong = deploy.eager_logits(resnet.model, batch) + 1.0  # as if the graph computed something else
    with pytest.raises(DeployError) as info:
        deploy.export_onnx(resnet, out_dir / "m.onnx", SIZE, check_batch=batch, reference=wrong)
    assert str(info.value).startswith("The ONNX graph of test_resnet.r160_in1k disagrees with the eager model on "
                                      "2 inputs (max |logit diff| 1, cosine ")
    assert str(info.value).endswith("; nothing was written.")
    assert list(out_dir.iterdir()) == []


def test_export_failure_is_a_deploy_error(out_dir):
    import torch

    class DataDependent(torch.nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x  # control flow on a value: torch.export cannot trace it

    loaded = load_model("test_resnet.r160_in1k", weights="random")
    loaded.model, loaded.tag = DataDependent().eval(), "data_dependent"
    with pytest.raises(DeployError) as info:
        deploy.export_onnx(loaded, out_dir / "m.onnx", 8)
    assert str(info.value).startswith("Exporting data_dependent to ONNX failed: GuardOnDataDependentSymNode: "
                                      "Could not guard on data-dependent expression")
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "missing" / "m.onnx", "Cannot write {tmp}/missing/m.onnx: {tmp}/missing does not exist."),
    (lambda tmp: tmp / "file.txt" / "m.onnx", "Cannot write {tmp}/file.txt/m.onnx: {tmp}/file.txt is a file, "
                                              "not a folder."),
    (lambda tmp: tmp, "Cannot write {tmp}: it is a folder."),
])
def test_unwritable_paths_are_usage_errors(resnet, tmp_path, make, message):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UsageError) as info:
        deploy.export_onnx(resnet, make(tmp_path), SIZE)
    assert str(info.value) == message.format(tmp=tmp_path)


# ---- int8 -----------------------------------------------------------------------------------------------

def _op_types(path) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}


def test_static_int8_of_a_cnn_with_calibration(resnet, resnet_onnx, tmp_path):
    calib = [deploy.random_batch(SIZE, n=5, seed=9)]
    quant = deploy.quantize_int8(resnet_onnx.path, tmp_path / "q.onnx", "convolutional", calib)
    assert quant.calibration == "images" and quant.calibration_images == 5
    assert quant.recipe.name == deploy.recipe_for("convolutional").name and quant.file_mb < resnet_onnx.file_mb / 2
    assert {"QuantizeLinear", "DequantizeLinear"} <= _op_types(quant.path)
    batch = deploy.random_batch(SIZE)
    found = deploy.compare(deploy.eager_logits(resnet.model, batch),
                             deploy.run_session(deploy.ort_session(quant.path), batch))
    assert found.cosine > 0.99


def test_static_int8_without_images_calibrates_on_random_data(resnet_onnx, tmp_path):
    quant = deploy.quantize_int8(resnet_onnx.path, tmp_path / "q.onnx", "convolutional")
    assert quant.calibration == "random" and quant.calibration_images == 0 and quant.path.is_file()


@pytest.mark.slow
def test_dynamic_int8_of_a_transformer(vit, vit_onnx, tmp_path):
    quant = deploy.quantize_int8(vit_onnx.path, tmp_path / "q.onnx", "transformer")
    assert quant.calibration == "none" and quant.recipe.name == "dynamic-matmul-s8"
    ops = _op_types(quant.path)
    assert "MatMulInteger" in ops and "QLinearConv" not in ops and "QuantizeLinear" not in ops
    batch = deploy.random_batch(160)
    found = deploy.compare(deploy.eager_logits(vit.model, batch),
                             deploy.run_session(deploy.ort_session(quant.path), batch))
    assert found.cosine > 0.99


def test_quantizing_a_broken_graph_is_a_deploy_error(out_dir):
    bad = out_dir / "bad.onnx"
    bad.write_bytes(b"\x08\x07not an onnx model" * 50)
    with pytest.raises(DeployError) as info:
        deploy.quantize_int8(bad, out_dir / "q.onnx", "convolutional")
    assert str(info.value).startswith(f"Quantizing bad.onnx to int8 ({STATIC}) failed: ")
    assert sorted(p.name for p in out_dir.iterdir()) == ["bad.onnx"]


def test_quantizing_a_missing_graph_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match=r"^.*/nothing\.onnx does not exist\.$"):
        deploy.quantize_int8(tmp_path / "nothing.onnx", tmp_path / "q.onnx", "transformer")


# ---- sessions -------------------------------------------------------------------------------------------

def test_session_on_a_broken_file_is_a_deploy_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    with pytest.raises(DeployError, match=r"^ONNX Runtime \S+ cannot load .*bad\.onnx: "):
        deploy.ort_session(bad)


def test_time_session_uses_the_profile_statistics(resnet_onnx):
    session, one = deploy.ort_session(resnet_onnx.path, threads=1), deploy.random_batch(SIZE, n=1)
    summary = time_call(lambda: deploy.run_session(session, one), budget_s=0.3)
    assert summary.n >= 3 and 0 < summary.median < 1.0 and summary.iqr >= 0


def test_file_mb_counts_external_data(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"x" * 1024)
    (tmp_path / "m.onnx.data").write_bytes(b"x" * 2**20)
    assert artifacts.file_mb(tmp_path / "m.onnx") == pytest.approx(1 + 1 / 1024)


# ---- export orchestration (vischoose.exporting) -----------------------------------------------------------

CONFIG = {"input_size": [3, 32, 32], "interpolation": "bilinear", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
          "crop_pct": 1.0, "crop_mode": "center"}


def test_calibration_images_are_spread_over_the_folder_and_preprocessed(tmp_path):
    from PIL import Image


    for cls in ("a", "b", "c"):
        (tmp_path / "photos" / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (40, 30), (255, 0, 0)).save(tmp_path / "photos" / cls / f"{i}.png")
    calib = calibration.load_calibration(tmp_path / "photos", CONFIG, limit=3)
    assert [Path(p).parent.name for p in calib.images] == ["a", "b", "c"]
    assert calib.batch.shape == (3, 3, 32, 32) and calib.batch.dtype == np.float32
    assert calib.batch[0, 0].max() == pytest.approx(1.0) and calib.batch[0, 1].max() == pytest.approx(-1.0)


def test_unknown_precision_is_a_usage_error(tmp_path):
    from vischoose.requests.export import ExportRequest

    with pytest.raises(UsageError) as info:
        ExportRequest("test_resnet.r160_in1k", str(tmp_path / "m.onnx"), precision="fp16")
    assert str(info.value) == "format onnx runs fp32 or int8 graphs, not fp16."


@pytest.mark.slow
def test_the_catalogs_int8_size_is_what_the_recipe_builds_today(tmp_path):
    """catalog.toml's int8_mib comes from bench/int8_sizes.py; a new exporter or quantizer would change it."""
    from vischoose.models import catalog

    entries = catalog.load()
    assert all(1.0 <= e.int8_mib * 2**20 / e.params <= 2.5 for e in entries.values())  # int8, some layers fp32
    loaded = load_model("resnet18", weights="random")
    exported = deploy.export_onnx(loaded, tmp_path / "r18.onnx", 224)
    quant = deploy.quantize_int8(exported.path, tmp_path / "r18.int8.onnx", model_family(loaded.model))
    assert quant.file_mb == pytest.approx(entries["resnet18"].int8_mib, abs=0.1)
