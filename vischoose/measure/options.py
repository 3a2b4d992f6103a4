"""What a measurement resolves when it runs, beyond the request's own checks (requests.profile): the device that
--device auto or cuda:N names here, and timm names that timm does not know."""

from __future__ import annotations

from vischoose.errors import UsageError, opt
from vischoose.models.catalog import ModelRef


def resolve_device(device: str) -> str:
    """'cpu' or 'cuda:N' for a valid device option, checking that the GPU exists.

    Raises:
        UsageError: a CUDA device that this machine does not have (bad input, as in predict).
    """
    if device == "cpu":
        return "cpu"
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "auto":
        return "cuda:0" if count else "cpu"
    index = int(device.partition(":")[2] or 0)
    if index >= count:
        seen = f"sees {count} CUDA device(s)" if count else "sees no CUDA device"
        raise UsageError(f"Device '{device}' is not available: torch {torch.__version__} {seen} on this "
                         "machine.", hint=f"Use {opt('device')} cpu, or {opt('device')} auto to take a GPU when "
                         "there is one.", field="device")
    return f"cuda:{index}"


def check_models(refs: list[ModelRef]) -> None:
    """Fail fast on timm names that timm does not know, before any child starts."""
    names = [r.timm_name for r in refs if r.kind == "timm" and r.entry is None and r.timm_name]
    if names:
        from vischoose.models.loading import check_timm_name

        for name in names:
            check_timm_name(name)
