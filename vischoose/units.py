"""Units every layer shares, named once: sizes in MiB, FLOPs from multiply-accumulates."""

from __future__ import annotations

MIB = 2**20  # bytes in a MiB: every size vischoose shows is MiB


def macs_to_flops(macs: float) -> float:
    """The one place MACs become FLOPs: one multiply-accumulate is two floating-point operations."""
    return 2.0 * macs


def flops_to_macs(flops: float) -> float:
    """The inverse of macs_to_flops: FLOPs (2 per multiply-accumulate) as multiply-accumulates."""
    return flops / 2.0
