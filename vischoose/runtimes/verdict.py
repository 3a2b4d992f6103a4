"""The check every deployed artifact gets: its logits against the eager fp32 model's on the same batch, and the
verdict (ok / rejected / unverified) with its wording. numpy only; torch where the eager logits are computed."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from vischoose.errors import DeployError

if TYPE_CHECKING:
    import numpy as np
    import torch

CHECK_BATCH = 8  # random inputs in the fixed check batch when no images are given
SEED = 0
# an fp32 graph may differ from eager by FP32_RTOL of the largest |logit| plus FP32_ATOL: rounding is ~1e-6,
# but ONNX's bicubic Resize (ViT position embeddings at another size) differs from torch's by ~0.2%
FP32_RTOL = 1e-2
FP32_ATOL = 1e-4
FP32_MIN_COSINE = 0.9999
MIN_AGREEMENT = 0.99  # int8 top-1 agreement with eager fp32 on real images, below which it is rejected
OK, REJECTED, UNVERIFIED = "ok", "rejected", "unverified"


@dataclass(frozen=True)
class Agreement:
    """How closely a graph's logits follow the reference (eager fp32) logits on the same inputs."""

    n_images: int
    top1_agreement: float  # fraction (0-1) of images whose top-1 class is the same
    max_abs_diff: float  # largest |logit difference|
    cosine: float  # smallest per-image cosine similarity of the logit vectors

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return asdict(self)


def agreement(reference: "np.ndarray", candidate: "np.ndarray") -> Agreement:
    """Top-1 agreement, max |difference| and smallest cosine between two (images x classes) logit arrays."""
    import numpy as np

    ref, cand = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    if ref.shape != cand.shape or ref.ndim != 2:
        raise DeployError(f"The graph's output has shape {tuple(cand.shape)}, the model's {tuple(ref.shape)}.")
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    cosine = np.where(norms > 0, (ref * cand).sum(axis=1) / np.where(norms > 0, norms, 1.0), 1.0)
    return Agreement(n_images=int(ref.shape[0]), top1_agreement=float((ref.argmax(1) == cand.argmax(1)).mean()),
                     max_abs_diff=float(np.abs(ref - cand).max()), cosine=float(cosine.min()))


def fp32_matches(found: Agreement, reference: "np.ndarray") -> bool:
    """Whether an fp32 graph reproduces eager fp32 up to float rounding."""
    import numpy as np

    tolerance = FP32_RTOL * float(np.abs(reference).max()) + FP32_ATOL
    return found.max_abs_diff <= tolerance and found.cosine >= FP32_MIN_COSINE


def random_batch(input_size: int, n: int = CHECK_BATCH, seed: int = SEED) -> "np.ndarray":
    """A fixed batch of normalised-image-like random inputs (standard normal), float32 NCHW."""
    import numpy as np

    return np.random.default_rng(seed).standard_normal((n, 3, input_size, input_size), dtype=np.float32)


def eager_logits(model: "torch.nn.Module", batch: "np.ndarray", chunk: int = 16) -> "np.ndarray":
    """The eager model's fp32 logits for a batch, computed in chunks."""
    import numpy as np
    import torch

    outs = []
    with torch.inference_mode():
        for start in range(0, len(batch), chunk):
            outs.append(model(torch.from_numpy(batch[start:start + chunk])).float().numpy())
    return np.concatenate(outs)




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
        return Verdict(UNVERIFIED, "checked on random inputs only: pass --calibration with your images")
    if not pretrained:
        return Verdict(UNVERIFIED, "random weights: agreement with them says nothing about accuracy")
    if found.top1_agreement >= min_agreement:
        return Verdict(OK)
    return Verdict(REJECTED, f"top-1 agreement {found.top1_agreement:.1%} < {min_agreement:.1%} on "
                             f"{found.n_images} images")
