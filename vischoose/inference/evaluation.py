"""Measure top-1 / top-5 accuracy of a model on a labelled image set, in one process or under torchrun.

Under ``torchrun --nproc-per-node N -m vischoose evaluate ...`` (WORLD_SIZE > 1) every process takes
every N-th image (gloo on CPU, nccl on GPU); the counts are summed across processes, so the result
equals the single-process one exactly, and only rank 0 reports and saves it. torch is imported lazily.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from vischoose.inference import datasets
from vischoose.measure import machine
from vischoose.inference import images as image_io
from vischoose.errors import DatasetError, ImageError, UsageError
from vischoose.results.records import EvalResult

if TYPE_CHECKING:
    import torch

    from vischoose.inference.evaluation_ort import Deployed
    from vischoose.models.loading import LoadedModel
    from vischoose.inference.prediction import Classifier

Progress = Callable[[int, int], None]  # (images done, images in all)


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


@dataclass(frozen=True)
class _World:
    rank: int
    size: int
    local_rank: int


def world_from_env() -> _World:
    """Rank, world size and local rank as torchrun sets them (RANK, WORLD_SIZE, LOCAL_RANK); 0/1/0 alone."""
    try:
        return _World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                      int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError as err:
        raise UsageError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers ({err}).") from err


def evaluate(data: str | Path, model: "str | LoadedModel", labels: str | Path | None = None,
             limit: int | None = None, batch_size: int = 32, workers: int = 0, device: str = "cpu",
             dtype: str = "float32", checkpoint: str | None = None, progress: Progress | None = None,
             max_pixels: int = image_io.MAX_PIXELS, runtime: str = "torch", precision: str | None = None,
             calibration: str | Path | None = None) -> Evaluation:
    """Top-1 / top-5 accuracy (%) of a model's pretrained weights on a folder of class sub-folders or a CSV.

    runtime "onnxruntime" evaluates the deployed ONNX graph at `precision` (fp32 or int8) instead: see
    evaluation_ort.evaluate_onnx.

    Raises:
        DatasetError: a missing or unusable data set, or one where no image could be read.
        UsageError: bad limit, batch size, workers, device, dtype, runtime or precision; model errors as
            prediction.prepare.
        DeployError: (onnxruntime) the export or quantization failed.
    """
    from vischoose.inference.prediction import prepare

    if (limit is not None and limit < 1) or batch_size < 1 or workers < 0:
        raise UsageError(f"limit and batch_size must be at least 1 and workers at least 0 "
                         f"(got {limit}, {batch_size}, {workers}).")
    datasets.check_source(data)
    world = world_from_env()
    if runtime != "torch" or precision is not None or calibration is not None:
        from vischoose.inference import evaluation_ort

        precision = evaluation_ort.check_options(runtime, precision, device, dtype, calibration, world.size)
        if runtime == "onnxruntime":
            return evaluation_ort.evaluate_onnx(data, model, precision, calibration, labels, limit, batch_size,
                                                workers, checkpoint, progress, max_pixels)
    device = _rank_device(device, world)
    classifier = prepare(model, device, dtype, checkpoint)
    labelled = datasets.read_dataset(data, classifier.classes, classifier.num_classes, labels).limited(limit)
    if world.size > 1:
        _init_process_group(classifier.device)
    try:
        shard = labelled.samples[world.rank::world.size]
        counts, failed, seconds = _run(classifier, shard, batch_size, workers, max_pixels,
                                       _scaled(progress, world, len(labelled.samples)))
        counts, failed, seconds = _reduce(counts, failed, seconds, world, classifier.device)
    finally:
        if world.size > 1:
            _destroy_process_group()
    result = _result(classifier, labelled.source, counts, seconds, batch_size, world.size)
    return Evaluation(result=result, failed=tuple(failed), rank=world.rank, workers=workers)


def _rank_device(device: str, world: _World) -> str:
    """Under torchrun on GPUs each process takes the GPU of its local rank."""
    if world.size > 1 and device == "cuda":
        return f"cuda:{world.local_rank}"
    return device


def _scaled(progress: Progress | None, world: _World, total: int) -> Progress | None:
    """Rank 0's progress stands for all ranks' (the shards are the same size to within one image)."""
    if progress is None or world.rank != 0:
        return None
    return lambda done, _shard: progress(min(done * world.size, total), total)


class _Images:
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


def _collate(items: list[tuple[Any, int, str, str | None]]) -> tuple[Any, Any, list[tuple[str, str]]]:
    import torch

    good = [(x, t) for x, t, _, err in items if err is None]
    failed = [(path, err) for _, _, path, err in items if err is not None]
    if not good:
        return None, None, failed
    return torch.stack([x for x, _ in good]), torch.tensor([t for _, t in good]), failed


def _run(classifier: "Classifier", shard: tuple[datasets.Sample, ...], batch_size: int, workers: int,
         max_pixels: int, progress: Progress | None, forward: "Callable[[torch.Tensor], torch.Tensor] | None" = None,
         ) -> tuple[list[int], list[tuple[str, str]], float]:
    """Classify a shard; returns counts [images, top-1 hits, top-5 hits], failures and seconds.

    `forward` (default: the classifier's eager logits) maps a preprocessed batch to float32 CPU logits.
    """
    from torch.utils.data import DataLoader

    loader = DataLoader(_Images(shard, classifier.transform, max_pixels), batch_size=batch_size,
                        num_workers=workers, collate_fn=_collate, shuffle=False,
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


def _init_process_group(device: "torch.device") -> None:
    import torch.distributed as dist

    if device.type == "cuda":
        import torch

        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def _destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def _reduce(counts: list[int], failed: list[tuple[str, str]], seconds: float, world: _World,
            device: "torch.device") -> tuple[list[int], list[tuple[str, str]], float]:
    """Sum the counts over processes, gather the failures, and take the slowest process's time."""
    if world.size == 1:
        return counts, failed, seconds
    import torch
    import torch.distributed as dist

    where = device if device.type == "cuda" else torch.device("cpu")
    total = torch.tensor(counts, dtype=torch.int64, device=where)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    slowest = torch.tensor([seconds], dtype=torch.float64, device=where)
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    gathered: list[Any] = [None] * world.size
    dist.all_gather_object(gathered, failed)
    return [int(v) for v in total.tolist()], [f for part in gathered for f in part], float(slowest.item())


def _result(classifier: "Classifier", source: str, counts: list[int], seconds: float, batch_size: int,
            world_size: int) -> EvalResult:
    import timm
    import torch

    from vischoose.inference.prediction import dtype_name

    images, top1_hits, top5_hits = counts
    if images == 0:
        raise DatasetError(f"Data set '{source}': no image could be read, so there is nothing to measure.")
    loaded = classifier.loaded
    return EvalResult(
        model=loaded.ref.display, tag=loaded.tag, dataset=source, images=images,
        top1=100.0 * top1_hits / images, top5=100.0 * top5_hits / images, weights=loaded.weights_label,
        device=str(classifier.device), dtype=dtype_name(classifier.dtype), batch_size=batch_size,
        input_size=int(classifier.data_config["input_size"][-1]),
        images_per_s=images / seconds if seconds > 0 else None, world_size=world_size,
        machine=machine.fingerprint(), torch_version=torch.__version__, timm_version=timm.__version__)


def save(result: EvalResult) -> int:
    """Add a result to the results store; returns its row id."""
    from vischoose.results.store import open_store

    with open_store() as store:
        return store.add_eval(result)
