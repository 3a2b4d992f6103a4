"""`vischoose profile --cluster`: each model measured on every kind of machine the cluster has (one node per kind,
or every node), the nodes in parallel, each job holding its whole node. Rows come back into this machine's store as
`results import` files them (by the machine each row names, one transaction per model); rows the store already has
for that kind under the same protocol are reused. A node lost mid-job fails the rows it had not sent back, naming
it; every other row is kept."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from vischoose.errors import ProfilingError
from vischoose.fleet import jobs, kinds, weights
from vischoose.fleet.kinds import Kind, NodeReport
from vischoose.measure.options import ProfileOptions, check_models
from vischoose.models import catalog
from vischoose.models.catalog import ModelRef
from vischoose.results.records import Profile
from vischoose.runtimes import registry

if TYPE_CHECKING:
    from vischoose.fleet.cluster import Session
    from vischoose.measure.runner import ProfileRun

Progress = Callable[[str, str, float], None]  # (what, doing, seconds since the run started), as measure.runner's
REUSED_NOTE = "reused: measured before on this kind of machine under the same protocol (--fresh measures again)"


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


def profile_fleet(session: "Session", models: list[str] | None, options: ProfileOptions,
                  on: dict[str, str] | None = None, every_node: bool = False, fresh: bool = False,
                  progress: Progress | None = None, save: bool = True) -> FleetProfile:
    """Profile the models (default: the article's) on one node of each kind (every node with every_node).

    Raises:
        UnknownModelError, UsageError (no node with those labels), StoreError, KeyboardInterrupt (after
        cancelling every job in flight; rows already back are kept).
    """
    from vischoose.measure.runner import article_models

    names = list(models or article_models())
    check_models([catalog.parse_model_ref(m) for m in names])
    reports = jobs.survey(session, kinds.select(session.nodes(), on or {}), names)
    usable = [r for r in reports if r.error is None]
    result = FleetProfile([], [f"node {r.node.name}: {r.error}" for r in reports if r.error])
    targets = [(kind, node) for kind in kinds.group(usable) for node in (kind.nodes if every_node else kind.nodes[:1])]
    stored = [] if fresh else _stored()
    result.parts = [KindProfile(kind, node) for kind, node in targets]
    todo = [(part.node, name) for part in result.parts for name in _plan(part, names, options, stored, every_node)]
    nodes = [node for node, _ in todo]
    shipped = {} if options.weights == "random" else weights.ship(list(dict.fromkeys(n for _, n in todo)), nodes)
    placed: list[tuple[NodeReport, jobs.Job]] = [
        (node, jobs.ProfileJob(name, options, None if name in node.cached else shipped.get(name)))
        for node, name in todo]
    _run(session, placed, result, progress, save)
    return result


def _plan(part: KindProfile, names: list[str], options: ProfileOptions, stored: list[Profile],
          own: bool) -> list[str]:
    """The models the part's node must measure; the others' stored rows (its kind's; its own, with `own`) go into
    the part, or, where the node cannot run the runtime, failed rows saying why."""
    from vischoose.measure.runner import ProfileRun

    why = part.node.missing(options.runtime)
    todo = []
    for name in names:
        found = None if why else reusable(stored, catalog.parse_model_ref(name), options, part.node, own)
        if why:
            part.runs += jobs.ProfileJob(name, options).lost(part.node, f"cannot run on node {part.node.node.name}: "
                                                             f"{why}")
        elif found:
            part.runs += [ProfileRun(p, (REUSED_NOTE,)) for p in found]
        else:
            todo.append(name)
    return todo


def _run(session: "Session", placed: list[tuple[NodeReport, jobs.Job]], result: FleetProfile,
         progress: Progress | None, save: bool) -> None:
    """Dispatch the jobs; each model's rows are stored as they come back and put in its kind's part."""
    start = time.monotonic()
    parts = {id(part.node): part for part in result.parts}
    for node, job in placed:
        if progress:
            progress(f"{job.what} on {node.host}", "queued", 0.0)

    def arrived(node: NodeReport, job: jobs.Job, runs: list["ProfileRun"], why: str | None) -> None:
        if save:
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


def reusable(stored: list[Profile], ref: ModelRef, options: ProfileOptions, node: NodeReport,
             own: bool = False) -> list[Profile] | None:
    """The stored rows of this model measured on the node's kind (with `own`, on the node itself) under the same
    protocol, one per batch size the run would measure (the latest of each); None unless every batch size has one."""
    sizes = jobs.batch_sizes(options, node)
    latest: dict[int, Profile] = {}
    for p in stored:
        mine = p.machine == node.fingerprint if own else p.machine_kind == node.kind
        if mine and p.batch_size in sizes and same_protocol(p, ref, options, node):
            latest[p.batch_size] = p
    return [latest[s] for s in sizes] if len(latest) == len(sizes) else None


def same_protocol(p: Profile, ref: ModelRef, options: ProfileOptions, node: NodeReport) -> bool:
    """Whether a stored row was measured as this run would measure the model on the node."""
    graph = registry.get(options.runtime).is_graph
    runtime = options.runtime if graph else registry.TORCH + (" autocast" if options.autocast else "")
    device = "cpu" if options.device == "cpu" or graph or not node.node.gpus else "cuda"
    accepted = {"random": "random", "pretrained": "pretrained"}.get(options.weights, "")  # auto: either
    return (p.model == ref.display and p.dtype == options.dtype and p.runtime == runtime
            and p.device.split(":")[0] == device and p.threads_requested == options.threads
            and p.layout == ("channels_last" if options.channels_last else "contiguous")
            and p.compiled == options.compile and options.input_size in (None, p.input_size)
            and p.weights.startswith(accepted) and (options.calibration is None or p.agreement_source == "images"))


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
