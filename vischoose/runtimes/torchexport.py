"""torch.export of a timm model as the mobile runtimes (ExecuTorch, LiteRT) build it: the same arithmetic in the
operators their lowerings take. Each helper is a context manager that changes the model (or timm) only while
exporting and puts it back. Imports torch and timm inside the functions: a build process has them, a session does not
import this module."""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING, Any, Iterator

from vischoose.errors import DeployError
from vischoose.runtimes import files

if TYPE_CHECKING:
    import torch

    from vischoose.models.loading import LoadedModel

OPERATOR = r"aten(?:::|\.)[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?"  # compiled on first use (re caches it): start-up


def lowering_error(loaded: "LoadedModel", step: str, err: BaseException, runtime: str, hint: str) -> DeployError:
    """A failed export or lowering of `loaded` for `runtime`, naming the aten operator the error names (if any)."""
    found = re.search(OPERATOR, str(err))
    operator_part = f" at operator {found.group(0)}" if found else ""
    return DeployError(f"{step} of {loaded.tag} for {runtime} failed{operator_part}: {files.first_line(err)}", hint=hint)


@contextlib.contextmanager
def exportable(model: "torch.nn.Module") -> Iterator[tuple[int, int]]:
    """The model as a mobile runtime exports it: attention unfused and weight standardisation done (yields how many
    of each); every export of ExecuTorch and LiteRT goes through here, so ranking and building see the same graph."""
    with unfused_attention(model) as unfused, standardized_convs(model) as std:
        yield unfused, std


@contextlib.contextmanager
def unfused_attention(model: "torch.nn.Module") -> Iterator[int]:
    """Switch timm's attention blocks to the explicit q @ k^T, softmax, @ v while exporting (yields how many).

    Fused attention (F.scaled_dot_product_attention) decomposes into masking operators that XNNPACK does not take
    (any, eq, where, logical_not of the NaN-safe softmax), which split a ViT into dozens of delegated pieces with
    portable kernels between them, and litert-torch does not lower it at all; the explicit form is the same
    arithmetic and is delegated whole.
    """
    blocks = [m for m in model.modules() if getattr(m, "fused_attn", None) is True]
    for block in blocks:
        block.fused_attn = False
    try:
        yield len(blocks)
    finally:
        for block in blocks:
            block.fused_attn = True


@contextlib.contextmanager
def standardized_convs(model: "torch.nn.Module") -> Iterator[int]:
    """Swap timm's weight-standardised convolutions (StdConv2d, StdConv2dSame: the ResNet stems of the hybrids) for
    plain ones holding the standardised weight while exporting (yields how many).

    A StdConv2d standardises its weight on every call. Exported as it is, that is a batch norm over the weight and a
    convolution whose weight is computed rather than constant, which XNNPACK does not take: the whole ResNet stem ran
    on portable kernels, 36-130x slower than in torch (bench/results/estimates-intel-xeon-2threads.txt). The weight
    is fixed at inference, so it is standardised once here, as a deployed model would be; the arithmetic is the same.
    """
    import torch
    from timm.layers import Conv2dSame
    from timm.layers.std_conv import StdConv2d, StdConv2dSame

    swapped = []
    for parent in list(model.modules()):
        for name, conv in list(parent.named_children()):
            if type(conv) not in (StdConv2d, StdConv2dSame):
                continue
            plain = (Conv2dSame if getattr(conv, "same_pad", False) else torch.nn.Conv2d)(
                conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
                device=conv.weight.device, dtype=conv.weight.dtype)
            with torch.no_grad():
                flat = conv.weight.reshape(1, conv.out_channels, -1)
                plain.weight.copy_(torch.nn.functional.batch_norm(flat, None, None, training=True, momentum=0.0,
                                                                  eps=conv.eps).reshape_as(conv.weight))
                if conv.bias is not None:
                    plain.bias.copy_(conv.bias)
            plain.train(conv.training)
            setattr(parent, name, plain)
            swapped.append((parent, name, conv))
    try:
        yield len(swapped)
    finally:
        for parent, name, conv in swapped:
            setattr(parent, name, conv)


@contextlib.contextmanager
def as_sized() -> Iterator[Any]:
    """timm resamples a ViT's position embeddings to the input's grid while exporting even when the grid is the one
    they have (so that an exported graph could take other sizes): an antialiased bicubic resize of a grid to itself,
    the identity, which litert-torch cannot lower (aten._upsample_bicubic2d_aa). A file of one input side keeps timm's
    same-size shortcut while converting; a resize to another size is still exported (and fails, named)."""
    from timm.layers import pos_embed

    exporting = pos_embed.is_exporting
    pos_embed.is_exporting = lambda: False
    try:
        yield
    finally:
        pos_embed.is_exporting = exporting
