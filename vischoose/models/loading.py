"""Build timm models from references, with pretrained or random weights. Imports torch/timm lazily."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vischoose.errors import (
    CorruptWeightsError,
    UnknownModelError,
    UsageError,
    WeightsUnavailableError,
)
from vischoose.models import hub
from vischoose.models.catalog import ModelRef, parse_model_ref

if TYPE_CHECKING:
    from pathlib import Path

    import torch

WEIGHT_MODES = ("auto", "pretrained", "random")


@dataclass
class LoadedModel:
    """A timm model in eval mode, with what it is and which weights it holds."""

    ref: ModelRef
    model: "torch.nn.Module"
    arch: str  # timm architecture name
    tag: str  # timm arch.tag (or the hub id / folder where there is no tag)
    weights: str  # "pretrained" or "random"
    commit: str | None  # hub snapshot sha of pretrained weights
    pretrained_cfg: dict[str, Any]

    @property
    def weights_label(self) -> str:
        """'pretrained@<sha12>', 'pretrained (local)' or 'random'."""
        if self.weights == "random":
            return "random"
        return f"pretrained@{self.commit[:12]}" if self.commit else "pretrained (local)"

    @property
    def params(self) -> int:
        """Number of parameters."""
        return sum(p.numel() for p in self.model.parameters())

    def data_config(self) -> dict[str, Any]:
        """timm's preprocessing config (input size, interpolation, crop, mean/std) for this model."""
        from timm.data import resolve_data_config

        return resolve_data_config(model=self.model)

    @property
    def input_size(self) -> int:
        """Square input side in pixels from the pretrained config."""
        return int(self.pretrained_cfg.get("input_size", (3, 224, 224))[-1])


def load_model(model: str | ModelRef, weights: str = "pretrained", checkpoint: str | None = None) -> LoadedModel:
    """Build a model in eval mode.

    Args:
        model: a reference string or ModelRef.
        weights: "pretrained" (download if needed), "random" (same architecture, random init),
            or "auto" (pretrained if cached, else random).
        checkpoint: a weights file for the architecture (safetensors, or a torch file loaded with
            weights_only=True); implies pretrained.

    Raises:
        UnknownModelError, UsageError, WeightsUnavailableError, CorruptWeightsError.
    """
    ref = model if isinstance(model, ModelRef) else parse_model_ref(model)
    if weights not in WEIGHT_MODES:
        raise UsageError(f"Unknown weights mode '{weights}' (expected one of: {', '.join(WEIGHT_MODES)}).")
    if checkpoint is not None:
        return _from_checkpoint(ref, checkpoint)
    if weights == "auto":
        weights = "pretrained" if hub.cached_weights(ref) else "random"
    if weights == "random" and ref.kind in ("catalog", "timm"):
        return _random(ref)
    files = hub.pull(ref) if weights == "pretrained" else (hub.cached_weights(ref) or hub.pull(ref))
    return _from_folder(ref, files, pretrained=weights == "pretrained")


def _random(ref: ModelRef) -> LoadedModel:
    import timm

    name = ref.timm_name or ref.name
    check_timm_name(name)
    net = timm.create_model(name, pretrained=False).eval()
    trained_like(net)
    return _loaded(ref, net, "random", None)


def trained_like(net: Any) -> int:
    """Set to one every norm weight that random init left all zero (timm's zero_init_last: each residual block's last
    BatchNorm), as trained weights never are; returns how many. With them at zero a block's branch adds exactly zero,
    and a converter that folds constants (LiteRT's) drops those layers: the file, its size and its speed would not be
    the architecture's."""
    import torch

    norms = [m for m in net.modules() if isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm,
                                                        torch.nn.LayerNorm))
             and getattr(m, "weight", None) is not None and not m.weight.detach().any()]
    with torch.no_grad():
        for m in norms:
            m.weight.fill_(1.0)
    return len(norms)


def check_timm_name(name: str) -> None:
    import timm
    from timm.models import is_model

    from vischoose.models.catalog import suggest

    arch = name.partition(".")[0]
    if not is_model(arch):
        raise UnknownModelError(name, suggest(name, timm.list_models(f"{arch[:3]}*")))


def _from_folder(ref: ModelRef, files: hub.Weights, pretrained: bool) -> LoadedModel:
    import timm
    from timm.models import is_model

    config = hub.read_config(files)
    arch = config["architecture"]
    if not is_model(arch):
        raise UsageError(f"{files.folder / hub.CONFIG_FILE}: architecture '{arch}' is not known to timm "
                         f"{timm.__version__}.", hint="Upgrade timm, or check the model's config.json.")
    if pretrained:
        hub.check_weights_file(files)
    try:
        net = timm.create_model(f"local-dir:{files.folder}", pretrained=pretrained)
    except (RuntimeError, ValueError, OSError, EOFError, pickle.UnpicklingError) as err:
        raise _load_error(files, err) from err
    if not pretrained:
        trained_like(net)
    return _loaded(ref, net.eval(), "pretrained" if pretrained else "random", files.commit)


def _load_error(files: hub.Weights, err: Exception) -> WeightsUnavailableError:
    full = str(err)
    text = full.splitlines()[0][:160] if full else type(err).__name__
    if any(mark in full for mark in ("Weights only load failed", "Unsupported global", "non-allowlisted", "weights_only")):
        return CorruptWeightsError(f"{files.weights_file}: refused to unpickle it: it holds more than tensors "
                                   "and loading it could run code.", hint="Convert it to safetensors.")
    if any(mark in full for mark in ("size mismatch", "Missing key", "Unexpected key", "Error(s) in loading state_dict")):
        return CorruptWeightsError(f"{files.weights_file}: the weights do not fit the architecture in "
                                   f"config.json ({_first_mismatch(full)}).")
    return hub.corrupt(files, f"cannot be loaded ({text})")


def _first_mismatch(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[1] if len(lines) > 1 else lines[0] if lines else "")[:160]


def check_checkpoint(checkpoint: str) -> Path:
    """The checkpoint's path. Raises UsageError when it is not a file."""
    from pathlib import Path

    path = Path(checkpoint)
    if not path.is_file():
        raise UsageError(f"Checkpoint '{checkpoint}' does not exist.")
    return path


def _from_checkpoint(ref: ModelRef, checkpoint: str) -> LoadedModel:
    from timm.models import load_checkpoint

    path = check_checkpoint(checkpoint)
    base = _random(ref) if ref.kind in ("catalog", "timm") else load_model(ref, weights="random")
    files = hub.Weights(folder=path.parent, weights_file=path)
    hub.check_weights_file(files)
    try:
        load_checkpoint(base.model, str(path), weights_only=True)
    except (RuntimeError, ValueError, OSError, EOFError, KeyError, pickle.UnpicklingError) as err:
        raise _load_error(files, err) from err
    base.weights, base.commit = "pretrained", None
    return base


def _loaded(ref: ModelRef, net: "torch.nn.Module", weights: str, commit: str | None) -> LoadedModel:
    cfg = dict(net.pretrained_cfg or {})
    arch = cfg.get("architecture") or type(net).__name__
    tag = cfg.get("tag")
    name = f"{arch}.{tag}" if tag else (ref.timm_name or ref.name)
    return LoadedModel(ref=ref, model=net, arch=arch, tag=name, weights=weights, commit=commit,
                       pretrained_cfg=cfg)
