"""The structural family of a timm model (convolutional, depthwise, transformer, hybrid, mlp): it picks the int8
recipe of each runtime. torch is imported inside the function."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

FAMILIES = ("convolutional", "depthwise", "transformer", "hybrid", "mlp")


def model_family(model: "torch.nn.Module") -> str:
    """The family that picks the int8 recipe: convolutional, depthwise, transformer, hybrid or mlp.

    Attention blocks (a module named *Attention* holding Linear or Conv2d layers) make a transformer; one
    with more convolutions than a patch embedding, holding at least 5% of the non-head weights, is a
    hybrid (a CNN stem feeding attention). Without attention: depthwise convolutions make a mobile-style
    depthwise net, else Linear weights outnumbering convolution weights an MLP (Mixer), else convolutional.
    """
    from torch import nn

    head = _classifier(model)
    attention = any(isinstance(m, nn.MultiheadAttention) or ("Attention" in type(m).__name__ and any(
        isinstance(c, (nn.Linear, nn.Conv2d)) for c in m.modules())) for m in model.modules())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear) and m is not head]
    conv_params = sum(m.weight.numel() for m in convs)
    linear_params = sum(m.weight.numel() for m in linears)
    if attention:
        share = conv_params / max(1, conv_params + linear_params)
        return "hybrid" if len(convs) > 1 and share >= 0.05 else "transformer"
    if any(c.groups > 1 and c.groups == c.in_channels for c in convs):
        return "depthwise"
    return "mlp" if linear_params > conv_params else "convolutional"


def _classifier(model: "torch.nn.Module") -> Any:
    get = getattr(model, "get_classifier", None)
    return get() if callable(get) else None
