"""vischoose: choose a pretrained vision backbone from figures measured on your own machine.

Each capability takes one request (vischoose.requests: ProfileRequest, EvaluateRequest, ExportRequest,
RecommendRequest), checked when it is built; the functions here also build it from keywords, which are the request's
fields. `import vischoose` loads neither torch nor timm; each function imports what it needs when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable

if TYPE_CHECKING:
    from pathlib import Path

    from vischoose.deploy.export import ExportReport
    from vischoose.inference.loop import Evaluation
    from vischoose.inference.prediction import ImageInput, PredictResult
    from vischoose.models.loading import LoadedModel
    from vischoose.presets import Preset
    from vischoose.recommendation.choose import Recommendation
    from vischoose.records import Profile
    from vischoose.requests.evaluate import EvaluateRequest
    from vischoose.requests.export import ExportRequest
    from vischoose.requests.profile import ProfileRequest
    from vischoose.requests.recommend import RecommendRequest

__version__ = "0.1.0"
__all__ = ["__version__", "evaluate", "export", "load_model", "load_preset", "predict", "profile", "recommend",
           "EvaluateRequest", "ExportRequest", "ProfileRequest", "RecommendRequest"]
_REQUESTS = {"ProfileRequest": "profile", "EvaluateRequest": "evaluate", "ExportRequest": "export",
             "RecommendRequest": "recommend"}


def __getattr__(name: str) -> Any:
    """The request types, imported when first asked for (so `import vischoose` stays light)."""
    if name in _REQUESTS:
        import importlib

        return getattr(importlib.import_module(f"vischoose.requests.{_REQUESTS[name]}"), name)
    raise AttributeError(f"module 'vischoose' has no attribute '{name}'")


def predict(images: "ImageInput | Iterable[ImageInput]", model: "str | LoadedModel", top_k: int = 5,
            device: str = "cpu", dtype: str = "float32", batch_size: int = 16,
            checkpoint: str | None = None) -> "PredictResult":
    """Classify images (files, folders, globs or PIL images) with a model's pretrained weights."""
    from vischoose.inference.prediction import predict as _predict

    return _predict(images, model, top_k=top_k, device=device, dtype=dtype, batch_size=batch_size,
                    checkpoint=checkpoint)


def evaluate(request: "EvaluateRequest | str | Path", model: str | None = None, /, *, save: bool = False,
             progress: Callable[[int, int], None] | None = None, **fields: Any) -> "Evaluation":
    """Top-1 / top-5 accuracy on labelled images: evaluate(EvaluateRequest(...)) or evaluate(data, model, **fields)
    with EvaluateRequest's fields (runtime, precision, graph, limit, cluster, ...); save: add the result to the
    store."""
    from vischoose.deploy.evaluate import evaluate as _evaluate
    from vischoose.requests.evaluate import EvaluateRequest

    if not isinstance(request, EvaluateRequest):
        request = EvaluateRequest(data=str(request), model=str(model), **fields)
    if request.cluster:
        from vischoose.fleet import cluster, evaluating

        with cluster.connect(request.cluster) as session:
            outcome = evaluating.evaluate_fleet(session, request)
    else:
        outcome = _evaluate(request, progress)
    if save and outcome.is_main:
        from vischoose.results.store import keep_eval

        keep_eval(outcome.result)
    return outcome


def profile(request: "ProfileRequest | Iterable[str] | str | None" = None, /, *, target: str | None = None,
            precision: str | None = None, save: bool = True,
            progress: Callable[[str, str, float], None] | None = None, **fields: Any) -> "list[Profile]":
    """Profile models on this machine (or, with cluster, on each kind of machine of a Ray cluster):
    profile(ProfileRequest(...)) or profile(models, **fields) with ProfileRequest's fields (target: a preset's
    [measure] protocol first, and its [serve] values); save: keep the rows in the store. scenario="server" with slo_ms
    searches the highest rate each model sustains under that p99 bound (MLPerf LoadGen's Server scenario; the
    `serve` extra)."""
    from vischoose.measure.runner import profile_models
    from vischoose.requests.profile import SERVER, ProfileRequest

    if not isinstance(request, ProfileRequest):
        models = (request,) if isinstance(request, str) else tuple(request or ())
        request = ProfileRequest.build(target, precision=precision, models=models, **fields)
    if request.cluster:  # each kind of machine of a Ray cluster: its rows, stored here by machine
        from vischoose.fleet import cluster, profiling

        with cluster.connect(request.cluster) as session:
            return [r.profile for r in profiling.profile_fleet(session, request, progress, keep=save).runs]
    keep = None
    if save:
        from vischoose.results.store import keep_profiles as keep
    measure = profile_models
    if request.scenario == SERVER:
        from vischoose.measure.serving_runner import serve_models as measure
    return [r.profile for r in measure(request, progress=progress, keep=keep)]


def export(request: "ExportRequest | str", out: "str | Path | None" = None, /, **fields: Any) -> "ExportReport":
    """Write a model's deployable file, checked against eager fp32: export(ExportRequest(...)) or
    export(model, out, **fields) with ExportRequest's fields (format, precision, calibration, ...)."""
    from vischoose.deploy.export import export_model
    from vischoose.requests.export import ExportRequest

    if not isinstance(request, ExportRequest):
        request = ExportRequest(model=request, out=str(out), **fields)
    timer = None
    if request.measure:
        from vischoose.measure.timing import MachineTimer

        timer = MachineTimer()
    return export_model(request, timer)


def recommend(request: "RecommendRequest | str" = "cloud", /, **fields: Any) -> "Recommendation":
    """Recommend a model for a target: recommend(RecommendRequest(...)) or recommend(target, **fields) with
    RecommendRequest's fields (max_memory_mb, max_latency_ms, models, measure, data, ...)."""
    from vischoose.recommendation.pipeline import advise
    from vischoose.requests.recommend import RecommendRequest

    if not isinstance(request, RecommendRequest):
        request = RecommendRequest(target=request, **fields)
    if request.per_kind:
        from vischoose.errors import UsageError, opt

        raise UsageError(f"vischoose.recommend answers for one machine; {opt('machine')} and {opt('cluster')} give "
                         "one answer per kind of machine.", hint="Call vischoose.fleet.advising.advise_stored(request) "
                         "or advise_cluster(session, request).", field="machine" if request.machine else "cluster")
    return advise(request)


def load_model(model: str, weights: str = "pretrained", checkpoint: str | None = None) -> "LoadedModel":
    """Build a timm model in eval mode (weights: pretrained, auto or random); see models.loading.load_model."""
    from vischoose.models.loading import load_model as _load_model

    return _load_model(model, weights=weights, checkpoint=checkpoint)


def load_preset(name_or_path: "str | Path") -> "Preset":
    """Read a deployment target preset by name or from a .toml file."""
    from vischoose.presets import load_preset as _load_preset

    return _load_preset(name_or_path)
