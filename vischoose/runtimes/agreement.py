"""How closely an artifact's logits follow the eager fp32 model's on the same batch (deploy.verdict judges it), and
the fixed batches both run on. numpy only; torch where the eager logits are computed."""

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


def compare(reference: "np.ndarray", candidate: "np.ndarray") -> Agreement:
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
