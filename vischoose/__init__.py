"""vischoose: choose a pretrained vision backbone from figures measured on your own machine.

`import vischoose` loads neither torch nor timm; each function imports what it needs when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from pathlib import Path

    from vischoose.inference.loop import Evaluation
    from vischoose.inference.prediction import PredictResult
    from vischoose.models.loading import LoadedModel
    from vischoose.recommendation.presets import Preset
    from vischoose.recommendation.ranking import Recommendation
    from vischoose.results.records import Profile

__version__ = "0.1.0"
__all__ = ["__version__", "evaluate", "load_model", "load_preset", "predict", "profile", "recommend"]


def predict(images: Any, model: "str | LoadedModel", **options: Any) -> "PredictResult":
    """Classify images (files, folders, globs or PIL images); see inference.prediction.predict for the options."""
    from vischoose.inference.prediction import predict as _predict

    return _predict(images, model, **options)


def evaluate(data: "str | Path", model: "str | LoadedModel", **options: Any) -> "Evaluation":
    """Top-1 / top-5 accuracy on a labelled folder or CSV; see inference.evaluation.evaluate for the options."""
    from vischoose.inference.evaluation import evaluate as _evaluate

    return _evaluate(data, model, **options)


def profile(models: Iterable[str] | None = None, **options: Any) -> "list[Profile]":
    """Profile models on this machine (default: the article's three); see measure.runner.profile for the options."""
    from vischoose.measure.runner import profile as _profile

    return _profile(models, **options)


def recommend(target: str = "cloud", **options: Any) -> "Recommendation":
    """Recommend a model for a target preset; see recommendation.pipeline.advise for the options."""
    from vischoose.recommendation.pipeline import advise

    return advise(target, **options)


def load_model(model: str, weights: str = "pretrained", checkpoint: str | None = None) -> "LoadedModel":
    """Build a timm model in eval mode (weights: pretrained, auto or random); see models.loading.load_model."""
    from vischoose.models.loading import load_model as _load_model

    return _load_model(model, weights=weights, checkpoint=checkpoint)


def load_preset(name_or_path: "str | Path") -> "Preset":
    """Read a deployment target preset by name or from a .toml file."""
    from vischoose.recommendation.presets import load_preset as _load_preset

    return _load_preset(name_or_path)
