"""The one evaluation loop every runtime shares: labelled images decoded and preprocessed by torch's DataLoader as
the model was evaluated, a forward pass per batch (eager, or a deployed file's runtime), top-1 / top-5 counted."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Callable

from vischoose import machine
from vischoose.errors import DatasetError, ImageError
from vischoose.inference import datasets, intervals
from vischoose.inference import images as image_io
from vischoose.records import EvalResult

if TYPE_CHECKING:
    import torch

    from vischoose.inference.prediction import Classifier
    from vischoose.runtimes.agreement import Agreement

Progress = Callable[[int, int], None]  # (images done, images in all)


@dataclass(frozen=True)
class Deployed:
    """How the evaluated file was built, and how closely it follows eager fp32 on the evaluated images."""

    precision: str  # "fp32" or "int8"
    family: str
    recipe: str | None  # the int8 recipe; None for fp32
    file_mb: float  # the file on disk, MiB
    export_s: float
    quantize_s: float | None
    calibration: str  # "evaluation images", "folder", or "none" (fp32 and recipes quantizing at run time)
    calibration_images: int
    agreement: "Agreement"  # the file's logits against eager fp32's on every evaluated image
    eager_images_per_s: float | None  # eager fp32 forward passes on the same batches (no decoding)
    runtime: str
    runtime_version: str
    notes: tuple[str, ...] = ()
    graph: str | None = None  # evaluate --graph: the file evaluated, as written
    sha256: str | None = None  # a shard's file and its companions: shards of one evaluation must run the same bytes
    graph_images_per_s: float | None = None  # the file's forward passes alone, on the same batches as eager's

    @property
    def agreeing(self) -> int:
        """Images whose top-1 class is the same as eager fp32's."""
        return round(self.agreement.top1_agreement * self.agreement.n_images)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON (the runtime's version under '<runtime>_version')."""
        data = asdict(self)
        version = data.pop("runtime_version")
        return {**data, f"{self.runtime}_version": version, "top1_agreeing_images": self.agreeing,
                "notes": list(self.notes)}


@dataclass(frozen=True)
class Tally:
    """What one process counted, for summing shards into one result (merge)."""

    images: int  # images read and classified
    top1_hits: int
    top5_hits: int
    seconds: float  # the forward passes the images/s figure is over (a graph's own, eager's left out)
    reference_hits: int | None = None  # graph runtimes: eager fp32's top-1 hits on the same images
    eager_s: float = 0.0  # graph runtimes: eager fp32's forward passes (the agreement check)
    paired: tuple[int, int, int, int] | None = None  # graph runtimes: images right with both eager fp32 and the file,
    # only eager, only the file, neither (intervals.paired_table: the drop's paired interval)
    largest_logit: float = 0.0  # graph runtimes: eager fp32's largest |logit| (an fp32 file's tolerance scales with it)


@dataclass(frozen=True)
class Evaluation:
    """An EvalResult, the images that could not be read, and whether this process is the one to report."""

    result: EvalResult
    failed: tuple[tuple[str, str], ...] = ()  # (path, reason)
    rank: int = 0
    workers: int = 0
    deployed: "Deployed | None" = None  # --runtime onnxruntime: the graph evaluated and its agreement with eager
    tally: Tally | None = None  # the counts behind the result (a shard's, for merge)

    @property
    def is_main(self) -> bool:
        """Whether this process reports and saves (rank 0, or the only process)."""
        return self.rank == 0


class ImageSet:
    """A map-style data set for torch's DataLoader: (tensor or None, target, path, error)."""

    def __init__(self, samples: tuple[datasets.Sample, ...], transform: Callable[[Any], Any],
                 max_pixels: int) -> None:
        self.samples, self.transform, self.max_pixels = samples, transform, max_pixels

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int, str, str | None]:
        sample = self.samples[index]
        try:
            return self.transform(image_io.load_image(sample.path, self.max_pixels)), sample.target, sample.path, None
        except ImageError as err:
            return None, sample.target, sample.path, err.reason


def collate(items: list[tuple[Any, int, str, str | None]]) -> tuple[Any, Any, list[tuple[str, str]]]:
    import torch

    good = [(x, t) for x, t, _, err in items if err is None]
    failed = [(path, err) for _, _, path, err in items if err is not None]
    if not good:
        return None, None, failed
    return torch.stack([x for x, _ in good]), torch.tensor([t for _, t in good]), failed


def run_batches(classifier: "Classifier", shard: tuple[datasets.Sample, ...], batch_size: int, workers: int,
         max_pixels: int, progress: Progress | None, forward: "Callable[[torch.Tensor], torch.Tensor] | None" = None,
         ) -> tuple[list[int], list[tuple[str, str]], float]:
    """Classify a shard; returns counts [images, top-1 hits, top-5 hits], failures and seconds.

    `forward` (default: the classifier's eager logits) maps a preprocessed batch to float32 CPU logits.
    """
    from torch.utils.data import DataLoader

    loader = DataLoader(ImageSet(shard, classifier.transform, max_pixels), batch_size=batch_size,
                        num_workers=workers, collate_fn=collate, shuffle=False,
                        pin_memory=classifier.device.type == "cuda")
    counts, failed, done = [0, 0, 0], [], 0
    k = min(5, classifier.num_classes)
    forward = forward or classifier.logits
    if progress:
        progress(0, len(shard))
    start = time.perf_counter()
    for batch, targets, bad in loader:
        failed.extend(bad)
        if batch is not None:
            top = forward(batch).topk(k, dim=-1).indices
            hits = top == targets[:, None]
            counts[0] += len(targets)
            counts[1] += int(hits[:, 0].sum())
            counts[2] += int(hits.any(dim=-1).sum())
        done += (0 if targets is None else len(targets)) + len(bad)
        if progress:
            progress(done, len(shard))
    return counts, failed, time.perf_counter() - start


def build_result(classifier: "Classifier", labelled: datasets.LabelledImages, counts: list[int], seconds: float,
                 batch_size: int, world_size: int, empty_ok: bool = False) -> EvalResult:
    """The result of counts [images, top-1 hits, top-5 hits]; with empty_ok (a shard), no image read gives zeros.

    Raises:
        DatasetError: no image could be read (and not empty_ok).
    """
    import timm
    import torch

    from vischoose.inference.prediction import dtype_name

    images, top1_hits, top5_hits = counts
    if images == 0 and not empty_ok:
        raise DatasetError(f"Data set '{labelled.source}': no image could be read, so there is nothing to measure.")
    loaded = classifier.loaded
    interval = intervals.wilson(top1_hits, images) if images else None
    return EvalResult(
        model=loaded.ref.display, tag=loaded.tag, dataset=labelled.source, images=images,
        top1_low=interval.low if interval else None, top1_high=interval.high if interval else None,
        dataset_id=labelled.fingerprint(), top1=100.0 * top1_hits / max(images, 1),
        top5=100.0 * top5_hits / max(images, 1), weights=loaded.weights_label,
        device=str(classifier.device), dtype=dtype_name(classifier.dtype), batch_size=batch_size,
        input_size=int(classifier.data_config["input_size"][-1]),
        images_per_s=images / seconds if seconds > 0 else None, world_size=world_size,
        machine=machine.fingerprint(), machine_kind=machine.kind(), torch_version=torch.__version__,
        timm_version=timm.__version__)


def merge(parts: list[Evaluation]) -> Evaluation:
    """Shards' evaluations (EvaluateRequest.shard) as one: their counts summed, so top-1 / top-5 and the interval are
    what one process counting every image gets; images/s over the slowest shard; a graph's agreement with eager
    fp32 over every image.

    Raises:
        DatasetError: no shard could read an image.
    """
    tallies = [p.tally for p in parts if p.tally is not None]
    images, top1, top5 = (sum(t.images for t in tallies), sum(t.top1_hits for t in tallies),
                          sum(t.top5_hits for t in tallies))
    if images == 0:
        raise DatasetError(f"Data set '{parts[0].result.dataset}': no image could be read, so there is nothing to "
                           "measure.")
    seconds = max(t.seconds for t in tallies)
    interval = intervals.wilson(top1, images)
    result = replace(next(p.result for p in parts if p.result.images), images=images, top1=100.0 * top1 / images,
                     top5=100.0 * top5 / images, top1_low=interval.low, top1_high=interval.high,
                     images_per_s=images / seconds if seconds > 0 else None, world_size=len(parts))
    refs, pairs = [t.reference_hits for t in tallies], [t.paired for t in tallies]
    tally = Tally(images, top1, top5, seconds, None if None in refs else sum(r or 0 for r in refs),
                  max(t.eager_s for t in tallies), _summed(pairs), max(t.largest_logit for t in tallies))
    found = _merged_deployed([p.deployed for p in parts if p.deployed is not None], tally)
    if found is not None:
        result = replace(result, agreement_top1=found.agreement.top1_agreement,
                         agreement_images=found.agreement.n_images,
                         fp32_top1=None if tally.reference_hits is None else 100.0 * tally.reference_hits / images)
    return Evaluation(result=result, failed=tuple(f for p in parts for f in p.failed), workers=parts[0].workers,
                      deployed=found, tally=tally)


def _summed(pairs: list[tuple[int, int, int, int] | None]) -> tuple[int, int, int, int] | None:
    """The shards' paired tables added up (None where a shard has none)."""
    if any(p is None for p in pairs):
        return None
    both, only_reference, only_other, neither = (sum(p[i] for p in pairs if p) for i in range(4))
    return both, only_reference, only_other, neither


def _merged_deployed(parts: list[Deployed], tally: Tally) -> Deployed | None:
    """One graph's agreement with eager over every shard's images (the shards ran the same file)."""
    if not parts:
        return None
    from vischoose.runtimes.agreement import Agreement

    n = sum(d.agreement.n_images for d in parts)
    agreement = Agreement(n_images=n, top1_agreement=sum(d.agreeing for d in parts) / n if n else 0.0,
                          max_abs_diff=max(d.agreement.max_abs_diff for d in parts),
                          cosine=min(d.agreement.cosine for d in parts))
    eager = tally.images / tally.eager_s if tally.eager_s > 0 else None
    graph = tally.images / tally.seconds if tally.seconds > 0 else None
    return replace(parts[0], agreement=agreement, eager_images_per_s=eager, graph_images_per_s=graph)
