"""recommend per kind of machine. `recommend --machine KIND` judges by the rows measured on that kind (a kind id or
machine fingerprint prefix, words of its CPU's name, or `all`; one section per kind it matches); with --cluster,
by the kinds of the cluster's nodes, and --measure measures on each kind's node only what can change that kind's
answer (recommendation.measuring, through fleet.jobs), the kinds in parallel."""

from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from vischoose.errors import NoModelFitsError, UsageError, opt
from vischoose.fleet import jobs, kinds, profiling
from vischoose.fleet.kinds import Kind, NodeReport
from vischoose.records import EvalResult, Profile
from vischoose.requests.recommend import RecommendRequest

if TYPE_CHECKING:
    from vischoose.fleet.cluster import Session
    from vischoose.presets import Preset
    from vischoose.recommendation.choose import Recommendation
    from vischoose.recommendation.measuring import Measure
    from vischoose.runtimes.precision import Variant

ALL = "all"


@dataclass(frozen=True)
class KindAdvice:
    """One kind's recommendation, or why there is none (NoModelFitsError: nothing fits on that kind)."""

    kind: str  # machine.kind of its rows
    title: str  # "Graviton3, 16 cores, 32 GiB (instance-type=c7g.4xlarge)"
    nodes: int  # the cluster's nodes of that kind; 0 when judged from stored rows alone
    recommendation: "Recommendation | None" = None
    error: NoModelFitsError | None = None


@dataclass(frozen=True)
class _Rows:
    kind: str
    title: str
    profiles: list[Profile]
    evals: list[EvalResult]


def stored_kinds() -> list[_Rows]:
    """Every kind the store has rows of (rows that name their kind), by title."""
    from vischoose.results.store import open_store

    with open_store() as store:
        profiles, evals = store.profiles(), store.evals()
    found = {r.machine_kind for r in [*profiles, *evals] if r.machine_kind}
    rows = [_Rows(k, _title([p for p in profiles if p.machine_kind == k]),
                  [p for p in profiles if p.machine_kind == k], [e for e in evals if e.machine_kind == k])
            for k in found]
    return sorted(rows, key=lambda r: (r.title, r.kind))


def _title(profiles: list[Profile]) -> str:
    """'Sim CPU A (2 machines)': the rows' device, and how many machines of the kind measured them."""
    names = Counter(p.device_name for p in profiles if p.device_name)
    machines = len({p.machine for p in profiles})
    name = names.most_common(1)[0][0] if names else "rows without a device name"
    return f"{name} ({machines} machine{'s' if machines != 1 else ''})"


def matching(query: str, candidates: list[tuple[str, str, set[str]]]) -> list[str]:
    """The kinds (id, title, machine fingerprints) a --machine query names: all; an id or fingerprint prefix (4 hex
    digits or more); else every word of it in the title (case aside).

    Raises:
        UsageError: none matches (the message lists the kinds).
    """
    text = query.strip().lower()
    if text == ALL:
        return [kind for kind, _, _ in candidates]
    if re.fullmatch(r"[0-9a-f]{4,12}", text):
        found = [kind for kind, _, machines in candidates if kind.startswith(text) or
                 any(m.startswith(text) for m in machines)]
    else:
        found = [kind for kind, title, _ in candidates if all(w in title.lower() for w in text.split())]
    if found:
        return found
    listed = "; ".join(f"{kind} ({title})" for kind, title, _ in candidates) or "none (no row names its kind)"
    raise UsageError(f"No kind of machine matches {opt('machine')} '{query}'. Kinds: {listed}.", field="machine",
                     hint="Give a kind id (or its first digits), words of its CPU's name, or all.")


def advise_stored(request: RecommendRequest) -> list[KindAdvice]:
    """recommend with request.machine on stored rows: a section per kind it matches.

    Raises:
        UsageError (no kind matches), and what recommendation.pipeline.advise raises, NoModelFitsError aside.
    """
    rows = stored_kinds()
    wanted = matching(request.machine or ALL, [(r.kind, r.title, {p.machine for p in r.profiles}) for r in rows])
    return [_advise(_one_kind(request), r.kind, r.title, 0, (r.profiles, r.evals), None) for r in rows
            if r.kind in wanted]


def _one_kind(request: RecommendRequest) -> RecommendRequest:
    """What pipeline.advise answers for one kind: the request without what chose the kinds."""
    return request.but(machine=None, cluster=None, on=())


def _advise(request: RecommendRequest, kind: str, title: str, nodes: int,
            figures: tuple[list[Profile], list[EvalResult]],
            measure_with: "Callable[[Preset], Measure] | None") -> KindAdvice:
    from vischoose.recommendation.pipeline import advise

    try:
        rec = advise(request, figures=figures, measure_with=measure_with)
    except NoModelFitsError as err:
        return KindAdvice(kind, title, nodes, error=err)
    return KindAdvice(kind, title, nodes, rec)


def advise_cluster(session: "Session", request: RecommendRequest) -> list[KindAdvice]:
    """recommend on a cluster: a section per kind of the request's nodes (those request.machine matches); with
    request.measure, each kind's node measures what its answer needs, every kind at once.

    Raises:
        UsageError (no node or kind matches), KeyboardInterrupt (after cancelling every job), and what
        recommendation.pipeline.advise raises, NoModelFitsError aside.
    """
    nodes = kinds.select(session.nodes(), kinds.labels(request.on))
    found = kinds.group([r for r in jobs.survey(session, nodes, []) if r.error is None])
    if request.machine:
        wanted = matching(request.machine, [(k.id, k.title, {n.fingerprint for n in k.nodes}) for k in found])
        found = [k for k in found if k.id in wanted]
    stored = {r.kind: r for r in stored_kinds()}
    figures = {k.id: (stored[k.id].profiles, stored[k.id].evals) if k.id in stored else ([], []) for k in found}
    results: dict[str, KindAdvice] = {}
    one_kind = _one_kind(request)

    def one(kind: Kind) -> None:
        measurer = (lambda preset: KindMeasurer(session, kind.nodes[0], preset, request.time_budget_s))
        results[kind.id] = _advise(one_kind, kind.id, kind.title, len(kind.nodes), figures[kind.id],
                                   measurer if request.measure else None)

    _each(found, one)
    return [results[k.id] for k in found]


def unfit(found: list[KindAdvice]) -> None:
    """Raise NoModelFitsError (exit 4) when nothing fits on one of the kinds, naming them."""
    titles = [a.title for a in found if a.error]
    if titles:
        raise NoModelFitsError(f"No model fits on {len(titles)} of {len(found)} kinds of machine: "
                               f"{'; '.join(titles)}.")


def _each(found: list[Kind], work: Callable[[Kind], None]) -> None:
    """work(kind) for every kind, each in a thread of its own; the first error raised in one is raised here, after
    all have ended (a Ctrl-C here cancels every job in flight: each thread then ends)."""
    errors: list[BaseException] = []

    def guarded(kind: Kind) -> None:
        try:
            work(kind)
        except BaseException as err:  # handed to the calling thread as it is, re-raised below
            errors.append(err)

    threads = [threading.Thread(target=guarded, args=(k,), daemon=True) for k in found]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)
    if errors:
        raise errors[0]


class KindMeasurer:
    """recommend --measure's measurements for one kind: the preset's protocol, on that kind's node (fleet.jobs),
    rows stored as profile on a cluster stores them."""

    def __init__(self, session: "Session", node: NodeReport, preset: "Preset", time_budget_s: float) -> None:
        self.session, self.node, self.preset, self.time_budget_s = session, node, preset, time_budget_s

    def __call__(self, todo: list[tuple[str, str]], variant: "Variant") -> list[Profile]:
        from vischoose.recommendation.pipeline import measure_request

        request = measure_request(self.preset, variant, self.time_budget_s, tuple(m for m, _ in todo))
        placed: list[tuple[NodeReport, jobs.Job]] = [(self.node, jobs.ProfileJob(m, request)) for m, _ in todo]
        found: list[Profile] = []

        def arrived(node: NodeReport, job: jobs.Job, runs: list, why: str | None) -> None:
            profiling.store_rows(runs, f"ray {node.host}")
            found.extend(r.profile for r in runs)

        jobs.dispatch(self.session, placed, arrived)
        return found
