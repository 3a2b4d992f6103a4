"""vischoose."""
__version__ = "0.1.0"


def predict(images, model, **options):  # type: ignore[no-untyped-def]
    """Classify images (files, folders, globs or PIL images) -> prediction.PredictResult; see prediction.predict."""
    from vischoose.inference.prediction import predict as _predict

    return _predict(images, model, **options)


def evaluate(data, model, **options):  # type: ignore[no-untyped-def]
    """Top-1 / top-5 accuracy on a labelled folder or CSV -> evaluation.Evaluation; see evaluation.evaluate."""
    from vischoose.inference.evaluation import evaluate as _evaluate

    return _evaluate(data, model, **options)


def profile(models=None, **options):  # type: ignore[no-untyped-def]
    """Profile models on this machine -> list[records.Profile]; see vischoose.profiling.profile."""
    from vischoose.measure.runner import profile as _profile

    return _profile(models, **options)


def recommend(target="cloud", **options):  # type: ignore[no-untyped-def]
    """Recommend a model for a target preset -> recommendation.Recommendation; see vischoose.advisor.advise."""
    from vischoose.recommendation.pipeline import advise

    return advise(target, **options)


def load_model(model, weights="pretrained", checkpoint=None):  # type: ignore[no-untyped-def]
    """Build a timm model in eval mode -> models.LoadedModel; see vischoose.models.load_model."""
    from vischoose.models.loading import load_model as _load_model

    return _load_model(model, weights=weights, checkpoint=checkpoint)


def load_preset(name_or_path):  # type: ignore[no-untyped-def]
    """Read a deployment target preset -> presets.Preset."""
    from vischoose.recommendation.presets import load_preset as _load_preset

    return _load_preset(name_or_path)
