"""Measure top-1 / top-5 accuracy of a model on a labelled image set, in one process or under torchrun, for
torch eager or (measure.deployed) the file a graph runtime would deploy.

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
from vischoose.inference import datasets, deployed
from vischoose.inference import images as image_io
from vischoose.inference.loop import Evaluation, Progress, build_result, run_batches
from vischoose.results.records import EvalResult
from vischoose.runtimes import registry

if TYPE_CHECKING:
    import torch

    from vischoose.models.loading import LoadedModel


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
             max_pixels: int = image_io.MAX_PIXELS, runtime: str | None = None, precision: str | None = None,
             calibration: str | Path | None = None, graph: str | Path | None = None) -> Evaluation:
    """Top-1 / top-5 accuracy (%) of a model's pretrained weights on a folder of class sub-folders or a CSV.

    A graph runtime (onnxruntime, ...) evaluates the deployed file at `precision` (fp32 or int8) instead, and
    `graph` a file built elsewhere, as written (its runtime from its name's ending): see deployed.evaluate_graph.

    Raises:
        DatasetError: a missing or unusable data set, or one where no image could be read.
        UsageError: bad limit, batch size, workers, device, dtype, runtime or precision; model errors as
            prediction.prepare.
        DeployError: (graph runtimes) the export or quantization failed.
    """
    from vischoose.inference.prediction import prepare

    if (limit is not None and limit < 1) or batch_size < 1 or workers < 0:
        raise UsageError(f"limit and batch_size must be at least 1 and workers at least 0 "
                         f"(got {limit}, {batch_size}, {workers}).")
    datasets.check_source(data)
    world = world_from_env()
    if graph is not None:
        runtime = deployed.check_graph(graph, runtime, calibration)
    runtime = runtime or registry.TORCH
    checked = deployed.check_options(runtime, precision, device, dtype, calibration, world.size)
    if registry.get(runtime).is_graph:
        return deployed.evaluate_graph(data, model, runtime, precision if graph else checked, calibration, labels,
                                       limit, batch_size, workers, checkpoint, progress, max_pixels, graph)
    device = _rank_device(device, world)
    classifier = prepare(model, device, dtype, checkpoint)
    labelled = datasets.read_dataset(data, classifier.classes, classifier.num_classes, labels).limited(limit)
    if world.size > 1:
        _init_process_group(classifier.device)
    try:
        shard = labelled.samples[world.rank::world.size]
        counts, failed, seconds = run_batches(classifier, shard, batch_size, workers, max_pixels,
                                              _scaled(progress, world, len(labelled.samples)))
        counts, failed, seconds = _reduce(counts, failed, seconds, world, classifier.device)
    finally:
        if world.size > 1:
            _destroy_process_group()
    result = build_result(classifier, labelled, counts, seconds, batch_size, world.size)
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


def save(result: EvalResult) -> int:
    """Add a result to the results store; returns its row id."""
    from vischoose.results.store import open_store

    with open_store() as store:
        return store.add_eval(result)
