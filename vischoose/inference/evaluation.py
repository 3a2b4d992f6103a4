"""Measure top-1 / top-5 accuracy of a model in torch eager on a labelled image set, in one process or under
torchrun (deploy.evaluate is the entry for every runtime).

Under ``torchrun --nproc-per-node N -m vischoose evaluate ...`` (WORLD_SIZE > 1) every process takes
every N-th image (gloo on CPU, nccl on GPU); the counts are summed across processes, so the result
equals the single-process one exactly, and only rank 0 reports and saves it. torch is imported lazily.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vischoose.errors import UsageError
from vischoose.inference import datasets
from vischoose.inference import images as image_io
from vischoose.inference.loop import (
    Evaluation,
    Progress,
    Tally,
    build_result,
    run_batches,
)

if TYPE_CHECKING:
    import torch

    from vischoose.models.loading import LoadedModel


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int


def world_from_env() -> World:
    """Rank, world size and local rank as torchrun sets them (RANK, WORLD_SIZE, LOCAL_RANK); 0/1/0 alone."""
    try:
        return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                      int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError as err:
        raise UsageError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers ({err}).") from err


def evaluate_eager(data: str | Path, model: "str | LoadedModel", labels: str | Path | None = None,
                   limit: int | None = None, batch_size: int = 32, workers: int = 0, device: str = "cpu",
                   dtype: str = "float32", checkpoint: str | None = None, progress: Progress | None = None,
                   max_pixels: int = image_io.MAX_PIXELS, world: World | None = None,
                   shard: tuple[int, int] | None = None) -> Evaluation:
    """Top-1 / top-5 accuracy (%) of a model in torch eager on a folder of class sub-folders or a CSV; under
    torchrun each process takes every world-size-th image and the counts are summed (deploy.evaluate is the entry
    that checks the options and picks eager or a graph). shard (index, count): only every count-th image from
    index, counted alone (a fleet node's share; inference.loop.merge sums the shards).

    Raises:
        DatasetError: a missing or unusable data set, or one where no image could be read.
        UsageError: model errors as prediction.prepare.
    """
    from vischoose.inference.prediction import prepare

    world = World(0, 1, 0) if shard else world or world_from_env()
    device = _rank_device(device, world)
    classifier = prepare(model, device, dtype, checkpoint)
    labelled = datasets.read_dataset(data, classifier.classes, classifier.num_classes, labels).limited(limit)
    if world.size > 1:
        _init_process_group(classifier.device)
    index, count = shard or (world.rank, world.size)
    try:
        counts, failed, seconds = run_batches(classifier, labelled.samples[index::count], batch_size, workers,
                                              max_pixels, _scaled(progress, world, len(labelled.samples)))
        counts, failed, seconds = _reduce(counts, failed, seconds, world, classifier.device)
    finally:
        if world.size > 1:
            _destroy_process_group()
    result = build_result(classifier, labelled, counts, seconds, batch_size, world.size, empty_ok=bool(shard))
    return Evaluation(result=result, failed=tuple(failed), rank=world.rank, workers=workers,
                      tally=Tally(*counts, seconds=seconds))


def _rank_device(device: str, world: World) -> str:
    """Under torchrun on GPUs each process takes the GPU of its local rank."""
    if world.size > 1 and device == "cuda":
        return f"cuda:{world.local_rank}"
    return device


def _scaled(progress: Progress | None, world: World, total: int) -> Progress | None:
    """Rank 0's progress stands for all ranks' (the shards are the same size to within one image)."""
    if progress is None or world.rank != 0:
        return None
    return lambda done, _shard: progress(min(done * world.size, total), total)


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


def _reduce(counts: list[int], failed: list[tuple[str, str]], seconds: float, world: World,
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
