"""The one evaluation loop every runtime shares: labelled images decoded and preprocessed by torch's DataLoader as
the model was evaluated, a forward pass per batch (eager, or a deployed file's runtime), top-1 / top-5 counted."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
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
class Evaluation:
    """An EvalResult, the images that could not be read, and whether this process is the one to report."""

    result: EvalResult
    failed: tuple[tuple[str, str], ...] = ()  # (path, reason)
    rank: int = 0
    workers: int = 0
    deployed: "Deployed | None" = None  # --runtime onnxruntime: the graph evaluated and its agreement with eager

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
                 batch_size: int, world_size: int) -> EvalResult:
    import timm
    import torch

    from vischoose.inference.prediction import dtype_name

    images, top1_hits, top5_hits = counts
    if images == 0:
        raise DatasetError(f"Data set '{labelled.source}': no image could be read, so there is nothing to measure.")
    loaded = classifier.loaded
    interval = intervals.wilson(top1_hits, images)
    return EvalResult(
        model=loaded.ref.display, tag=loaded.tag, dataset=labelled.source, images=images,
        top1_low=interval.low, top1_high=interval.high, dataset_id=labelled.fingerprint(),
        top1=100.0 * top1_hits / images, top5=100.0 * top5_hits / images, weights=loaded.weights_label,
        device=str(classifier.device), dtype=dtype_name(classifier.dtype), batch_size=batch_size,
        input_size=int(classifier.data_config["input_size"][-1]),
        images_per_s=images / seconds if seconds > 0 else None, world_size=world_size,
        machine=machine.fingerprint(), torch_version=torch.__version__, timm_version=timm.__version__)
