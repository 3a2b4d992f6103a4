"""`vischoose evaluate --cluster`: a labelled set sharded over the cluster's nodes, one shard per node (each job
holding its node), merged into the result one process gets (inference.loop.merge: the counts summed, so
top-1 / top-5 and the interval are exactly one process's). Every runtime: torch eager, a graph each node builds from
the same weights and calibration images (the merge checks that every shard ran the same bytes), or --graph FILE,
shipped to every node and run as written. The images must be at the same path on every node (a shared file
system); the data set's fingerprint, computed on each node, proves they are the same images and labels. A shard
whose node is lost runs again on another node, once."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vischoose.deploy.evaluate import judged
from vischoose.errors import ProfilingError, UsageError, opt
from vischoose.fleet import jobs, kinds, weights
from vischoose.fleet.kinds import NodeReport
from vischoose.inference.loop import merge
from vischoose.requests.evaluate import EvaluateRequest
from vischoose.runtimes import registry

if TYPE_CHECKING:
    from vischoose.fleet.cluster import Session
    from vischoose.inference.loop import Evaluation


def evaluate_fleet(session: "Session", request: EvaluateRequest) -> "Evaluation":
    """The request's evaluation sharded over its nodes (those with every one of its on labels) and merged.

    Raises:
        UsageError: no node that can run the runtime, nodes that see different data sets or built different files;
            ProfilingError: a shard failed twice; what evaluate raises.
    """
    nodes = _able(jobs.survey(session, kinds.select(session.nodes(), kinds.labels(request.on)), [request.model]),
                  request.runtime)
    shipped = weights.ship([request.model], nodes).get(request.model)
    packed = weights.pack(request.graph) if request.graph else None
    shards = [jobs.EvalShard(i, len(nodes), request, shipped, packed) for i in range(len(nodes))]
    found = _run(session, list(zip(nodes, shards, strict=True)), nodes)
    return _merged([found[i] for i in range(len(shards))], request.data, request.graph)


def _able(reports: list[NodeReport], runtime: str) -> list[NodeReport]:
    """The nodes that can run the runtime.

    Raises:
        UsageError: none can (the message says why for each).
    """
    able = [r for r in reports if r.missing(runtime) is None]
    if able:
        return able
    why = "; ".join(f"node {r.node.name}: {r.missing(runtime)}" for r in reports)
    raise UsageError(f"No node of the cluster can evaluate with {registry.title(runtime)}: {why}.")


def _run(session: "Session", placed: list[tuple[NodeReport, jobs.Job]],
         nodes: list[NodeReport]) -> dict[int, "Evaluation"]:
    """Each shard's evaluation by index; a shard that failed runs again once, on a node that did not fail it.

    Raises:
        ProfilingError: a shard failed twice, or once with no other node to take it.
    """
    found, failures = _attempt(session, placed)
    if not failures:
        return found
    failed_on = {node.node.node_id for node, _, _ in failures}
    alive = {n.node_id for n in session.nodes()}
    spare = [n for n in nodes if n.node.node_id in alive and n.node.node_id not in failed_on]
    if spare:
        again, failures = _attempt(session, [(spare[i % len(spare)], job) for i, (_, job, _) in enumerate(failures)])
        found.update(again)
    if failures:
        raise ProfilingError(f"Evaluating on the cluster failed: "
                             f"{'; '.join(f'{j.what}: {why}' for _, j, why in failures)}"
                             f"{'' if spare else ' (no other node could take it)'}.")
    return found


def _attempt(session: "Session", placed: list[tuple[NodeReport, jobs.Job]]
             ) -> tuple[dict[int, "Evaluation"], list[tuple[NodeReport, jobs.EvalShard, str]]]:
    """The shards' evaluations by index, and those that failed (node, shard, why)."""
    found: dict[int, "Evaluation"] = {}
    failures: list[tuple[NodeReport, jobs.EvalShard, str]] = []

    def arrived(node: NodeReport, job: jobs.EvalShard, value: Any, why: str | None) -> None:
        if why:
            failures.append((node, job, why))
        else:
            found[job.index] = value

    jobs.dispatch(session, placed, arrived)
    return found, failures


def _merged(parts: list["Evaluation"], data: str | Path, graph: str | Path | None) -> "Evaluation":
    """The shards merged, after checking they counted the same data set with the same file.

    Raises:
        UsageError: the nodes saw different images or labels at `data`, or built different files.
    """
    sets = {p.result.dataset_id for p in parts if p.result.images}
    if len(sets) > 1:
        raise UsageError(f"The nodes see different data sets at {data} ({len(sets)} different image lists or labels).",
                         hint="Put the same images at the same path on every node (a shared file system).")
    files = {p.deployed.sha256 for p in parts if p.deployed is not None}
    if len(files) > 1:
        raise UsageError("The nodes built different files from the same model and images (the runtime quantizes "
                         "differently on their CPUs), so one accuracy would mix them.",
                         hint=f"Export the file once (vischoose export ... --out FILE) and evaluate it with "
                              f"{opt('graph')} FILE {opt('cluster')}: every node then runs the same bytes.")
    merged = merge(parts)
    kinds_seen = {p.result.machine_kind for p in parts}
    named = str(graph) if graph else None
    result = replace(merged.result, graph=named, machine_kind=kinds_seen.pop() if len(kinds_seen) == 1 else "")
    found = replace(merged.deployed, graph=named) if merged.deployed else None
    return judged(replace(merged, result=result, deployed=found))
