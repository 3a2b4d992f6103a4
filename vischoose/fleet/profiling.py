"""`vischoose profile --cluster`: each model measured on every kind of machine the cluster has (one node per kind,
or every node), the nodes in parallel, each job holding its whole node. Rows come back into this machine's store as
`results import` files them (by the machine each row names, one transaction per model); rows the store already has
for that kind under the same protocol are reused. A node lost mid-job fails the rows it had not sent back, naming
it; every other row is kept."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from vischoose.errors import ProfilingError, opt
from vischoose.fleet import jobs, kinds, weights
from vischoose.fleet.kinds import Kind, NodeReport
from vischoose.measure.options import check_models
from vischoose.models import catalog
from vischoose.models.catalog import ModelRef
from vischoose.records import Profile
from vischoose.requests.profile import ProfileRequest
from vischoose.runtimes import registry

if TYPE_CHECKING:
    from vischoose.fleet.cluster import Session
    from vischoose.measure.runner import ProfileRun

Progress = Callable[[str, str, float], None]  # (what, doing, seconds since the run started), as measure.runner's
REUSED_NOTE = f"reused: measured before on this kind of machine under the same protocol ({opt('fresh')} measures again)"


@dataclass
class KindProfile:
    """One kind's rows: measured now on `node`, or reused from the store."""

    kind: Kind
    node: NodeReport
    runs: list["ProfileRun"] = field(default_factory=list)


@dataclass
class FleetProfile:
    """Every kind's rows, and the nodes that could not take part."""

    parts: list[KindProfile]
    left_out: list[str] = field(default_factory=list)  # "node x (...): vischoose does not import: ..."

    @property
    def runs(self) -> list["ProfileRun"]:
        """Every row, kind after kind."""
        return [r for part in self.parts for r in part.runs]


def profile_fleet(session: "Session", request: ProfileRequest, progress: Progress | None = None,
                  keep: bool = True) -> FleetProfile:
    """Profile the request's models (default: the article's) on one node of each kind of the request's nodes (its
    on labels; every node with every_node), reusing the store's rows unless fresh; keep: store the rows here.

    Raises:
        UnknownModelError, UsageError (no node with those labels), StoreError, KeyboardInterrupt (after
        cancelling every job in flight; rows already back are kept).
    """
    from vischoose.measure.runner import article_models

    names = list(request.models or article_models())
    check_models([catalog.parse_model_ref(m) for m in names])
    reports = jobs.survey(session, kinds.select(session.nodes(), kinds.labels(request.on)), names)
    usable = [r for r in reports if r.error is None]
    result = FleetProfile([], [f"node {r.node.name}: {r.error}" for r in reports if r.error])
    result.parts = [KindProfile(kind, node) for kind in kinds.group(usable)
                    for node in (kind.nodes if request.every_node else kind.nodes[:1])]
    stored = [] if request.fresh else _stored()
    todo = [(part.node, name) for part in result.parts for name in _plan(part, names, request, stored)]
    shipped = {} if request.weights == "random" else weights.ship(list(dict.fromkeys(n for _, n in todo)),
                                                                   [node for node, _ in todo])
    placed: list[tuple[NodeReport, jobs.Job]] = [
        (node, jobs.ProfileJob(name, request, None if name in node.cached else shipped.get(name)))
        for node, name in todo]
    _run(session, placed, result, progress, keep)
    return result


def _plan(part: KindProfile, names: list[str], request: ProfileRequest, stored: list[Profile]) -> list[str]:
    """The models the part's node must measure; the others' stored rows (its kind's; its own, with every_node) go
    into the part, or, where the node cannot run the runtime, failed rows saying why."""
    from vischoose.measure.runner import ProfileRun

    why = part.node.missing(request.runtime)
    todo = []
    for name in names:
        found = None if why else reusable(stored, catalog.parse_model_ref(name), request, part.node,
                                          request.every_node)
        if why:
            part.runs += jobs.ProfileJob(name, request).lost(part.node, f"cannot run on node {part.node.node.name}: "
                                                             f"{why}")
        elif found:
            part.runs += [ProfileRun(p, (REUSED_NOTE,)) for p in found]
        else:
            todo.append(name)
    return todo


def _run(session: "Session", placed: list[tuple[NodeReport, jobs.Job]], result: FleetProfile,
         progress: Progress | None, keep: bool) -> None:
    """Dispatch the jobs; each model's rows are stored as they come back and put in its kind's part."""
    start = time.monotonic()
    parts = {id(part.node): part for part in result.parts}
    for node, job in placed:
        if progress:
            progress(f"{job.what} on {node.host}", "queued", 0.0)

    def arrived(node: NodeReport, job: jobs.Job, runs: list["ProfileRun"], why: str | None) -> None:
        if keep:
            store_rows(runs, f"ray {node.host}")
        parts[id(node)].runs += runs
        if progress:
            progress(f"{job.what} on {node.host}", "failed" if why else "done",
                     time.monotonic() - start)

    jobs.dispatch(session, placed, arrived)


def store_rows(runs: list["ProfileRun"], source: str) -> None:
    """File a job's rows as `results import` files rows from another machine: one transaction, by their machine."""
    found = [r.profile for r in runs if r.saveable]
    if found:
        from vischoose.results.store import open_store

        with open_store() as store:
            store.import_results(found, source=source)


def _stored() -> list[Profile]:
    """The store's measured rows that name their kind."""
    from vischoose.results.store import open_store

    with open_store() as store:
        return [p for p in store.profiles() if p.ok and p.machine_kind]


def reusable(stored: list[Profile], ref: ModelRef, request: ProfileRequest, node: NodeReport,
             own: bool = False) -> list[Profile] | None:
    """The stored rows of this model measured on the node's kind (with `own`, on the node itself) under the same
    protocol, one per batch size the run would measure (the latest of each); None unless every batch size has one."""
    sizes = jobs.batch_sizes(request, node)
    latest: dict[int, Profile] = {}
    for p in stored:
        mine = p.machine == node.fingerprint if own else p.machine_kind == node.kind
        if mine and p.batch_size in sizes and same_protocol(p, ref, request, node):
            latest[p.batch_size] = p
    return [latest[s] for s in sizes] if len(latest) == len(sizes) else None


def same_protocol(p: Profile, ref: ModelRef, request: ProfileRequest, node: NodeReport) -> bool:
    """Whether a stored row was measured as this run would measure the model on the node."""
    graph = registry.get(request.runtime).is_graph
    runtime = request.runtime if graph else registry.TORCH + (" autocast" if request.autocast else "")
    device = "cpu" if request.device == "cpu" or graph or not node.node.gpus else "cuda"
    accepted = {"random": "random", "pretrained": "pretrained"}.get(request.weights, "")  # auto: either
    return (p.model == ref.display and p.dtype == request.dtype and p.runtime == runtime
            and p.device.split(":")[0] == device and p.threads_requested == request.threads
            and p.layout == ("channels_last" if request.channels_last else "contiguous")
            and p.compiled == request.compile and request.input_size in (None, p.input_size)
            and p.weights.startswith(accepted) and (request.calibration is None or p.agreement_source == "images"))


def failed(result: FleetProfile) -> None:
    """Raise ProfilingError (exit 1) summing up the rows that failed and the nodes left out, when there are any."""
    runs = result.runs
    bad = [r.profile for r in runs if not r.profile.ok]
    if not bad and not result.left_out:
        return
    reasons: dict[str, list[str]] = {}
    for p in bad:
        reasons.setdefault(p.error or "", []).append(f"{p.model} batch {p.batch_size}")
    lines = [f"{why} ({', '.join(rows)})" for why, rows in reasons.items()] + result.left_out
    raise ProfilingError(f"{len(bad)} of {len(runs)} profile rows failed; every other row is stored. "
                         + "; ".join(lines))
