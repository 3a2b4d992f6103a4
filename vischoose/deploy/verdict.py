"""The verdict every deployed artifact gets from its agreement with eager fp32 (runtimes.agreement): ok, rejected or
unverified, with its wording."""

from __future__ import annotations

from dataclasses import dataclass

from vischoose.errors import opt
from vischoose.runtimes.agreement import Agreement

MIN_AGREEMENT = 0.99  # int8 top-1 agreement with eager fp32 on real images, below which it is rejected
OK, REJECTED, UNVERIFIED = "ok", "rejected", "unverified"


@dataclass(frozen=True)
class Verdict:
    """Whether an artifact may be deployed: ok, rejected (disagrees on the user's images) or unverified."""

    status: str  # OK | REJECTED | UNVERIFIED
    note: str | None = None  # why, in words; None for ok


def judge(found: Agreement, real_images: bool, pretrained: bool, min_agreement: float = MIN_AGREEMENT) -> Verdict:
    """The verdict on an artifact's agreement with eager fp32.

    Only real images through pretrained weights say anything about accuracy: anything else is unverified.
    Below `min_agreement` top-1 agreement on them it is rejected, never recommended.
    """
    if not real_images:
        return Verdict(UNVERIFIED, f"checked on random inputs only: pass {opt('calibration')} with your images")
    if not pretrained:
        return Verdict(UNVERIFIED, "random weights: agreement with them says nothing about accuracy")
    if found.top1_agreement >= min_agreement:
        return Verdict(OK)
    return Verdict(REJECTED, f"top-1 agreement {found.top1_agreement:.1%} < {min_agreement:.1%} on "
                             f"{found.n_images} images")


def describe(found: Verdict) -> str:
    """'ok', or 'rejected: top-1 agreement 95.0% < 99.0% on 37 images': the one wording of a verdict."""
    return found.status if found.note is None else f"{found.status}: {found.note}"
