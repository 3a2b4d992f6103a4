"""Weights from a hub cache laid out by hand (HF_HUB_OFFLINE=1): loading, integrity and safety."""

from __future__ import annotations

import io
import json
import pickle

import pytest

from tests import hubfixtures
from vischoose.errors import (
    CorruptWeightsError,
    UnknownModelError,
    UsageError,
    WeightsUnavailableError,
)
from vischoose.models import hub
from vischoose.models.catalog import parse_model_ref
from vischoose.models.loading import load_model

TAG = "test_resnet.r160_in1k"


def test_offline_and_not_cached_fails_at_once():
    with pytest.raises(WeightsUnavailableError) as info:
        hub.pull(parse_model_ref("resnet50"))
    assert info.value.exit_code == 3
    assert str(info.value).startswith("resnet50: weights for timm/resnet50.a1_in1k are not in the cache at ")
    assert info.value.hint.startswith("Connect to the internet, set HF_ENDPOINT to a hub mirror")


def test_cached_snapshot_is_found_and_loads(cached_model):
    repo = cached_model(TAG)
    weights = hub.pull(parse_model_ref(TAG))
    assert weights.commit == repo.commit and weights.folder == repo.snapshot and weights.is_safetensors
    loaded = load_model(TAG)
    assert loaded.params == 469_688 and loaded.weights == "pretrained"


def test_weights_auto_falls_back_to_random_when_not_cached():
    loaded = load_model(TAG, weights="auto")
    assert loaded.weights_label == "random" and loaded.tag == TAG


def test_random_weights_keep_the_pretrained_config():
    loaded = load_model("r50_vit_b16", weights="random")
    assert loaded.input_size == 384 and loaded.tag == "vit_base_r50_s16_384.orig_in21k_ft_in1k"


def test_pretrained_weights_are_really_loaded(cached_model):
    import torch

    cached_model(TAG, seed=3)
    loaded = load_model(TAG)
    random = load_model(TAG, weights="random")
    from safetensors.torch import load_file

    stored = load_file(str(hub.cached_weights(parse_model_ref(TAG)).weights_file))
    name = "fc.weight"
    assert torch.equal(loaded.model.state_dict()[name], stored[name])
    assert not torch.equal(random.model.state_dict()[name], stored[name])


def test_truncated_safetensors_is_detected_and_named(cached_model):
    config, weights = hubfixtures._built(TAG, 0)
    repo = cached_model(TAG, files={"config.json": config, "model.safetensors": weights[: len(weights) // 2]})
    with pytest.raises(CorruptWeightsError) as info:
        load_model(TAG)
    assert str(info.value).startswith(f"{repo.weights}: the safetensors file is truncated or corrupt (")
    assert info.value.hint == "Download it again with: vischoose pull --force MODEL"


def test_garbage_safetensors_is_detected(cached_model):
    config, _ = hubfixtures._built(TAG, 0)
    cached_model(TAG, files={"config.json": config, "model.safetensors": b"\xff" * 64})
    with pytest.raises(CorruptWeightsError, match="truncated or corrupt"):
        load_model(TAG)


def test_checksum_mismatch_of_an_lfs_blob(cached_model):
    repo = cached_model(TAG)
    blob = repo.weights.resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # same size, one bit of a tensor flipped
    blob.write_bytes(bytes(data))
    with pytest.raises(CorruptWeightsError, match="its sha256 does not match the hub's checksum"):
        hub.verify_checksum(hub.cached_weights(parse_model_ref(TAG)))


def test_pickle_weights_load_with_weights_only(cached_model):
    import torch

    config, _ = hubfixtures._built(TAG, 0)
    state = load_model(TAG, weights="random").model.state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    cached_model(TAG, files={"config.json": config, "pytorch_model.bin": buf.getvalue()})
    loaded = load_model(TAG)
    assert torch.equal(loaded.model.state_dict()["fc.weight"], state["fc.weight"])


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("touch EXPLOITED",))


def test_malicious_pickle_is_refused_and_never_runs(cached_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config, _ = hubfixtures._built(TAG, 0)
    repo = cached_model(TAG, files={"config.json": config, "pytorch_model.bin": pickle.dumps({"x": _Exploit()})})
    with pytest.raises(CorruptWeightsError) as info:
        load_model(TAG)
    assert str(info.value).startswith(f"{repo.weights}: refused to unpickle it")
    assert not (tmp_path / "EXPLOITED").exists()


def test_config_naming_an_unknown_architecture(cached_model):
    cfg = {"architecture": "resnet9000", "num_classes": 1000, "pretrained_cfg": {}}
    _, weights = hubfixtures._built(TAG, 0)
    repo = cached_model(TAG, files={"config.json": json.dumps(cfg).encode(), "model.safetensors": weights})
    with pytest.raises(UsageError) as info:
        load_model(TAG)
    assert str(info.value).startswith(f"{repo.snapshot / 'config.json'}: architecture 'resnet9000' is not known to timm")


def test_config_that_is_not_json(cached_model):
    _, weights = hubfixtures._built(TAG, 0)
    cached_model(TAG, files={"config.json": b"{nope", "model.safetensors": weights})
    with pytest.raises(CorruptWeightsError, match="not a timm config.json"):
        load_model(TAG)


def test_weights_that_do_not_fit_the_architecture(cached_model):
    config, _ = hubfixtures._built(TAG, 0)
    _, other = hubfixtures._built("test_vit.r160_in1k", 0)
    cached_model(TAG, files={"config.json": config, "model.safetensors": other})
    with pytest.raises(CorruptWeightsError, match="the weights do not fit the architecture in config.json"):
        load_model(TAG)


def test_local_folder_model(tmp_path):
    folder = hubfixtures.write_model_folder(tmp_path / "mine", TAG)
    loaded = load_model(f"local-dir:{folder}")
    assert loaded.weights_label == "pretrained (local)" and loaded.params == 469_688
    with pytest.raises(UsageError, match="has no config.json"):
        load_model(f"local-dir:{tmp_path}")


def test_checkpoint_file_for_an_architecture(tmp_path):
    folder = hubfixtures.write_model_folder(tmp_path / "mine", TAG, seed=5)
    loaded = load_model(TAG, checkpoint=str(folder / "model.safetensors"))
    assert loaded.weights == "pretrained"
    with pytest.raises(UsageError, match="Checkpoint '.*nope.pt' does not exist."):
        load_model(TAG, checkpoint=str(tmp_path / "nope.pt"))


def test_unknown_timm_architecture_suggests():
    with pytest.raises(UnknownModelError) as info:
        load_model("resnet5000", weights="random")
    assert str(info.value).startswith("Unknown model 'resnet5000'.")
