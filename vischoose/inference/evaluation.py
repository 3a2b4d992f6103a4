"""Measure top-1 / top-5 accuracy of a model on a labelled image set, in one process or under torchrun, for
torch eager or (measure.deployed) the file a graph runtime would deploy.

Under ``torchrun --nproc-per-node N -m vischoose evaluate ...`` (WORLD_SIZE > 1) every process takes
every N-th image (gloo on CPU, nccl on GPU); the counts are summed across processes, so the result
equals the single-process one exactly, and only rank 0 reports and saves it. torch is imported lazily.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vischoose.errors import DatasetError, UsageError
from vischoose.inference import datasets, deployed, intervals
from vischoose.inference import images as image_io
from vischoose.inference.loop import Evaluation, Progress, Tally, build_result, run_batches
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
             calibration: str | Path | None = None, graph: str | Path | None = None,
             shard: tuple[int, int] | None = None) -> Evaluation:
    """Top-1 / top-5 accuracy (%) of a model's pretrained weights on a folder of class sub-folders or a CSV.

    A graph runtime (onnxruntime, ...) evaluates the deployed file at `precision` (fp32 or int8) instead, and
    `graph` a file built elsewhere, as written (its runtime from its name's ending): see deployed.evaluate_graph.
    shard (index, count): only every count-th image from index, counted alone, not under torchrun (a fleet node's
    share; inference.loop.merge sums the shards into the result one process gets).

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
    world = _World(0, 1, 0) if shard else world_from_env()
    if graph is not None:
        runtime = deployed.check_graph(graph, runtime, calibration)
    runtime = runtime or registry.TORCH
    checked = deployed.check_options(runtime, precision, device, dtype, calibration, world.size)
    if registry.get(runtime).is_graph:
        return deployed.evaluate_graph(data, model, runtime, precision if graph else checked, calibration, labels,
                                       limit, batch_size, workers, checkpoint, progress, max_pixels, graph, shard)
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


def merge(parts: list[Evaluation]) -> Evaluation:
    """Shards' evaluations (evaluate(shard=...)) as one: their counts summed, so top-1 / top-5 and the interval are
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
    refs = [t.reference_hits for t in tallies]
    tally = Tally(images, top1, top5, seconds, None if None in refs else sum(r or 0 for r in refs),
                  max(t.eager_s for t in tallies))
    found = _merged_deployed([p.deployed for p in parts if p.deployed is not None], tally)
    if found is not None:
        result = replace(result, agreement_top1=found.agreement.top1_agreement,
                         agreement_images=found.agreement.n_images,
                         fp32_top1=None if tally.reference_hits is None else 100.0 * tally.reference_hits / images)
    return Evaluation(result=result, failed=tuple(f for p in parts for f in p.failed), workers=parts[0].workers,
                      deployed=found, tally=tally)


def _merged_deployed(parts: list[deployed.Deployed], tally: Tally) -> deployed.Deployed | None:
    """One graph's agreement with eager over every shard's images (the shards ran the same file)."""
    if not parts:
        return None
    from vischoose.runtimes.verdict import Agreement

    n = sum(d.agreement.n_images for d in parts)
    agreement = Agreement(n_images=n, top1_agreement=sum(d.agreeing for d in parts) / n if n else 0.0,
                          max_abs_diff=max(d.agreement.max_abs_diff for d in parts),
                          cosine=min(d.agreement.cosine for d in parts))
    eager = tally.images / tally.eager_s if tally.eager_s > 0 else None
    return replace(parts[0], agreement=agreement, eager_images_per_s=eager)
