from vischoose.models.loading import load_model


def test_cached_model_loads_through_timm(cached_model):
    repo = cached_model("test_resnet.r160_in1k")
    loaded = load_model("test_resnet.r160_in1k", weights="pretrained")
    assert loaded.commit == repo.commit
    assert loaded.weights_label == f"pretrained@{repo.commit[:12]}"
