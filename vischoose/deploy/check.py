"""The one path from a model to a file that may ship: build it through the graph cache, run it beside the eager
fp32 model on the same batch, and judge it (deploy.verdict). profile (measure.graph), export, evaluate and
recommend --data all take their files from here, so a file is checked, and its verdict worded, one way.

An fp32 file must reproduce eager fp32 up to rounding (DeployError otherwise); another precision gets the verdict:
ok, rejected (disagrees on the user's images) or unverified (random inputs or random weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vischoose.deploy import graphcache, verdict
from vischoose.errors import DeployError
from vischoose.runtimes import agreement
from vischoose.runtimes.artifact import Artifact
from vischoose.runtimes.base import GraphRuntime

if TYPE_CHECKING:
    import numpy as np

    from vischoose.models.loading import LoadedModel


@dataclass(frozen=True)
class Checked:
    """A built file, how closely it follows eager fp32 on the check batch, and its verdict."""

    artifact: Artifact
    agreement: agreement.Agreement
    verdict: verdict.Verdict
    reused: bool = False  # taken from the graph cache: built before from these weights, images and versions


def judged(artifact: Artifact, found: agreement.Agreement, reference: "np.ndarray", real_images: bool,
           pretrained: bool, min_agreement: float, title: str = "") -> verdict.Verdict:
    """The verdict on a file's agreement with eager fp32 (`reference`: eager's logits on the same images).

    Raises:
        DeployError: an fp32 file that does not reproduce the eager model.
    """
    if artifact.precision == "fp32":
        if not agreement.fp32_matches(found, reference):
            raise DeployError(f"The {title or 'exported'} fp32 file disagrees with the eager model (max |logit diff| "
                              f"{found.max_abs_diff:.3g}, cosine {found.cosine:.6f}); nothing was written.")
        return verdict.Verdict(verdict.OK)
    judged_ = verdict.judge(found, real_images, pretrained, min_agreement)
    if artifact.calibration == "random" and judged_.status != verdict.OK:
        return verdict.Verdict(judged_.status, f"calibrated on random data; {judged_.note}")
    return judged_


def judged_evaluated(precision: str, found: agreement.Agreement, largest_logit: float, pretrained: bool,
                     min_agreement: float = verdict.MIN_AGREEMENT) -> verdict.Verdict:
    """The verdict on a file of `precision` evaluated on the user's labelled images (real images), from its agreement
    with eager fp32 over every evaluated image (`largest_logit`: eager's largest |logit| there): the one verdict, as
    `judged`, but an fp32 file that does not reproduce eager is rejected rather than raised, its figures already
    counted."""
    import numpy as np

    if precision == "fp32":
        if agreement.fp32_matches(found, np.array([largest_logit])):
            return verdict.Verdict(verdict.OK)
        return verdict.Verdict(verdict.REJECTED, f"an fp32 file that does not reproduce eager fp32 (max |logit diff| "
                                                 f"{found.max_abs_diff:.3g}, cosine {found.cosine:.6f})")
    return verdict.judge(found, True, pretrained, min_agreement)


def check(runtime: GraphRuntime, artifact: Artifact, batch: "np.ndarray", reference: "np.ndarray", real_images: bool,
          pretrained: bool, min_agreement: float, threads: int | None = None) -> Checked:
    """Run the file on `batch` on the thread count that is measured next (ExecuTorch's pool cannot change size
    afterwards) and judge it against eager fp32's logits."""
    found = agreement.compare(reference, runtime.session(artifact, threads)(batch))
    return Checked(artifact, found, judged(artifact, found, reference, real_images, pretrained, min_agreement,
                                           runtime.title))


def build_checked(runtime: GraphRuntime, loaded: "LoadedModel", precision: str, out: Path, size: int,
                  images: "np.ndarray | None", min_agreement: float, threads: int | None = None,
                  **build: object) -> Checked:
    """Build (graph cache) and check the model's file at a precision; `images` calibrate int8 and are the check
    batch (random inputs without them). `build` passes on to graphcache.build (metadata, source, link, ...)."""
    artifact, reused = graphcache.build(runtime, loaded, precision, out, size, images, **build)  # type: ignore[arg-type]
    batch = images if images is not None else agreement.random_batch(size)
    reference = agreement.eager_logits(loaded.model, batch)
    found = check(runtime, artifact, batch, reference, images is not None, loaded.weights != "random",
                  min_agreement, threads)
    return Checked(found.artifact, found.agreement, found.verdict, reused)
