"""The graph cache on real ONNX Runtime builds of a tiny timm model: a second build is a copy of the first, a file
handed out can be edited without touching the cache, int8 quantizes the cached fp32 file, unpinned weights are never
cached, and an ONNX file with external data is never renamed out of the cache."""

from __future__ import annotations

import numpy as np
import pytest

from vischoose.deploy import graphcache
from vischoose.models.loading import load_model
from vischoose.runtimes import registry

SIZE = 64


@pytest.fixture
def seeded_model():
    import torch

    torch.manual_seed(graphcache.RANDOM_SEED)
    return load_model("test_resnet", weights="random")


@pytest.mark.slow
def test_a_second_build_is_a_copy_that_can_be_edited_without_touching_the_cache(isolated_home, seeded_model,
                                                                                 tmp_path):
    ort = registry.get("onnxruntime")
    first, reused = graphcache.build(ort, seeded_model, "fp32", tmp_path / "a.onnx", SIZE, seeded=True)
    assert not reused and first.path == str(tmp_path / "a.onnx")
    original = (tmp_path / "a.onnx").read_bytes()
    (tmp_path / "a.onnx").write_bytes(b"edited by the user")  # a copy: the cache keeps its own file
    second, reused = graphcache.build(ort, seeded_model, "fp32", tmp_path / "b.onnx", SIZE, seeded=True)
    assert reused and second.path == str(tmp_path / "b.onnx") and (tmp_path / "b.onnx").read_bytes() == original
    assert second.file_mb == first.file_mb and second.build_s == first.build_s  # the build it came from
    forward = ort.session(second, 1)
    assert forward(np.zeros((1, 3, SIZE, SIZE), np.float32)).shape == (1, 1000)
    assert len(list(graphcache.folder().iterdir())) == 1


@pytest.mark.slow
def test_int8_quantizes_the_cached_fp32_file_and_other_images_are_another_int8(isolated_home, seeded_model,
                                                                               tmp_path):
    ort = registry.get("onnxruntime")
    images = np.random.default_rng(0).standard_normal((4, 3, SIZE, SIZE)).astype(np.float32)
    out = tmp_path / "out"
    out.mkdir()
    int8, reused = graphcache.build(ort, seeded_model, "int8", out / "q.onnx", SIZE, images, seeded=True)
    assert not reused and int8.precision == "int8" and int8.calibration_images == 4
    assert sorted(p.name for p in out.iterdir()) == ["q.onnx"]  # the fp32 it came from is not left beside it
    assert len(list(graphcache.folder().iterdir())) == 2  # fp32 and int8
    _, reused = graphcache.build(ort, seeded_model, "fp32", tmp_path / "f.onnx", SIZE, seeded=True)
    assert reused  # the fp32 file int8 was quantized from
    _, reused = graphcache.build(ort, seeded_model, "int8", tmp_path / "q2.onnx", SIZE, images[:2], seeded=True)
    assert not reused and len(list(graphcache.folder().iterdir())) == 3


@pytest.mark.slow
def test_weights_that_are_not_pinned_are_not_cached(isolated_home, tmp_path):
    ort = registry.get("onnxruntime")
    loaded = load_model("test_resnet", weights="random")  # not seeded: another init next time
    built, reused = graphcache.build(ort, loaded, "fp32", tmp_path / "a.onnx", SIZE)
    assert not reused and (tmp_path / "a.onnx").is_file() and built.path == str(tmp_path / "a.onnx")
    assert not graphcache.folder().exists()


def test_an_onnx_file_with_external_data_keeps_its_name(tmp_path):
    from vischoose.runtimes.artifact import Artifact

    entry = tmp_path / "cache" / "k"
    entry.mkdir(parents=True)
    (entry / "model.onnx").write_bytes(b"graph naming model.onnx.data")
    (entry / "model.onnx.data").write_bytes(b"weights")
    cached = Artifact(str(entry / "model.onnx"), "onnxruntime", "fp32", 1.0, 1.0, SIZE)
    assert graphcache.place(cached, tmp_path / "out" / "other.onnx") is None  # its data file's name is inside it
    placed = graphcache.place(cached, tmp_path / "out" / "model.onnx", link=True)
    assert placed is not None and (tmp_path / "out" / "model.onnx.data").read_bytes() == b"weights"
    ir = tmp_path / "cache" / "ir"
    ir.mkdir()
    (ir / "model.xml").write_text("<net/>")
    (ir / "model.bin").write_bytes(b"w")
    moved = graphcache.place(Artifact(str(ir / "model.xml"), "openvino", "fp32", 1.0, 1.0, SIZE), tmp_path / "x.xml")
    assert moved is not None and (tmp_path / "x.bin").read_bytes() == b"w"  # an IR's .bin follows its .xml's name


def test_the_key_holds_the_batch_bound_where_the_runtime_plans_memory_for_it():
    """Another max_batch is another file for a runtime that plans its buffers for it, and the same file for one whose
    files take any batch (or batch 1): the bound is in the key only where it changes the file."""
    def key(name: str, max_batch: int) -> str | None:
        return graphcache.key(registry.get(name), "fp32", "test_resnet.r160_in1k", "pretrained@abc", SIZE, None,
                              {"torch": "2"}, max_batch=max_batch)

    planned = [r.name for r in registry.graph_runtimes() if r.batch_bound == "planned"]
    others = [r.name for r in registry.graph_runtimes() if r.batch_bound != "planned"]
    assert planned and others
    for name in planned:
        assert key(name, 1) != key(name, 8) and key(name, 8) == key(name, 8)
    for name in others:
        assert key(name, 1) == key(name, 8)
