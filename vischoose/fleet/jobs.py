"""THE seam between vischoose's requests and Ray. A job (one model's profile, one shard of an evaluation) is a plain
picklable value: run() executes it on a node with the library's own functions, lost() stands for its result when
it cannot finish there. dispatch() sends each job to its node holding all the node's CPUs and GPUs, hands every
result back as it arrives and turns a lost node, a dead worker or the job's own error into lost(); Ctrl-C cancels
every job in flight. survey() asks each node what it offers (fleet.probe).

A typed request replacing ProfileOptions or evaluate's keywords changes ProfileJob and EvalShard only.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from vischoose.errors import VischooseError
from vischoose.fleet import weights
from vischoose.fleet.cluster import Node, Session
from vischoose.fleet.kinds import NodeReport
from vischoose.measure.options import DEFAULT_BATCH_SIZES, ProfileOptions
from vischoose.models import catalog
from vischoose.results.records import Profile

if TYPE_CHECKING:
    from vischoose.inference.loop import Evaluation
    from vischoose.measure.runner import ProfileRun

SURVEY_TIMEOUT_S = 120.0  # a node that has not said what it offers by then (busy, or starting workers) is left out
POLL_S = 0.5  # how often the driver looks up from waiting (Ctrl-C is seen within this)


class Job(Protocol):
    """What dispatch() runs on a node."""

    @property
    def what(self) -> str: ...  # "resnet50", "shard 2 of 4", for messages

    def run(self) -> Any: ...  # on the node

    def lost(self, node: NodeReport, why: str) -> Any: ...  # on this machine, when the node could not finish it


OnResult = Callable[[NodeReport, Any, Any, "str | None"], None]  # (node, job, result or lost(), why it was lost)


@dataclass(frozen=True)
class ProfileJob:
    """One model profiled on a node, as `vischoose profile` would there: its rows."""

    model: str
    options: ProfileOptions
    shipped: Any = None  # an ObjectRef of the model's hub.Snapshot, for a node whose cache lacks the weights

    @property
    def what(self) -> str:
        return self.model

    def run(self) -> list["ProfileRun"]:
        from vischoose.measure import runner

        weights.install(self.model, self.shipped)
        return runner.profile_models([self.model], self.options, save=False)

    def lost(self, node: NodeReport, why: str) -> list["ProfileRun"]:
        """A failed row per batch size, naming the node; not saved (it says nothing about the model)."""
        from vischoose.measure.runner import ProfileRun

        return [ProfileRun(failed_row(self.model, self.options, node, size, why), saveable=False)
                for size in batch_sizes(self.options, node)]


@dataclass(frozen=True)
class EvalShard:
    """Every count-th image of a labelled set from index, evaluated on a node: its counts, unreduced."""

    index: int
    count: int
    data: str
    model: str
    options: dict[str, Any] = field(default_factory=dict)  # inference.evaluation.evaluate's keywords
    shipped: Any = None  # an ObjectRef of the model's hub.Snapshot
    graph: Any = None  # an ObjectRef of {file name: bytes}: evaluate --graph's file and its companions

    @property
    def what(self) -> str:
        return f"shard {self.index + 1} of {self.count}"

    def run(self) -> "Evaluation":
        import tempfile

        from vischoose.inference import evaluation

        weights.install(self.model, self.shipped)
        with tempfile.TemporaryDirectory(prefix="vischoose-shard-") as tmp:
            graph = weights.unpack(self.graph, Path(tmp))
            return evaluation.evaluate(self.data, self.model, shard=(self.index, self.count), graph=graph,
                                       **self.options)

    def lost(self, node: NodeReport, why: str) -> None:
        return None


def batch_sizes(options: ProfileOptions, node: NodeReport) -> tuple[int, ...]:
    """The batch sizes a profile on the node measures (the device's default where none were given)."""
    gpu = node.node.gpus > 0 and options.device != "cpu"
    return tuple(sorted(set(options.batch_sizes or DEFAULT_BATCH_SIZES["cuda" if gpu else "cpu"])))


def failed_row(model: str, options: ProfileOptions, node: NodeReport, size: int, why: str) -> Profile:
    """The row of a measurement the node could not finish, with the node's machine and the reason."""
    ref = catalog.parse_model_ref(model)
    entry = ref.entry
    device = "cuda:0" if node.node.gpus > 0 and options.device != "cpu" else "cpu"
    return Profile(model=ref.display, tag=ref.timm_name or ref.name, device=device, dtype=options.dtype,
                   batch_size=size, input_size=options.input_size or (entry.input_size if entry else 0),
                   family=entry.family if entry else None, machine=node.fingerprint, machine_kind=node.kind,
                   device_name=node.facts.cpu if node.facts else "", runtime=options.runtime, error=why)


def execute(job: Job) -> Any:
    """job.run() on this node, in a thread: a cancel (a KeyboardInterrupt in this, the main thread) is then seen at
    once even while the job waits on a child process, whose processes are killed before the cancel goes on."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = job.run()
        except BaseException as err:  # handed to the main thread as it is, re-raised below
            box["error"] = err

    thread = threading.Thread(target=work, name=f"vischoose {job.what}", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.2)
    except KeyboardInterrupt:
        _kill_children()
        raise
    if "error" in box:
        raise box["error"]
    return box["value"]


def _kill_children() -> None:
    """Kill this process's child processes (measurements, the fork server): nothing of a cancelled job runs on."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


_REMOTE: dict[str, Any] = {}


def _remote(fn: Callable[..., Any]) -> Any:
    import ray

    if fn.__name__ not in _REMOTE:
        _REMOTE[fn.__name__] = ray.remote(fn)
    return _REMOTE[fn.__name__]


def dispatch(session: Session, placed: list[tuple[NodeReport, Job]], on_result: OnResult) -> None:
    """Run each job on its node (jobs for one node run one after another: each holds the whole node) and call
    on_result as each finishes, with its result or, when it could not finish, job.lost() and why.

    Raises:
        KeyboardInterrupt: after every job in flight was cancelled.
    """
    fn = _remote(execute)
    flying = {session.submit(fn, (job,), report.node): (report, job) for report, job in placed}
    try:
        while flying:
            for ref in session.wait(list(flying), POLL_S):
                report, job = flying.pop(ref)
                value, why = _outcome(session, ref, report)
                on_result(report, job, job.lost(report, why) if why else value, why)
    except KeyboardInterrupt:
        session.cancel_all()
        raise


def _outcome(session: Session, ref: Any, report: NodeReport) -> tuple[Any, str | None]:
    """(the job's result, None), or (None, why it has none)."""
    from ray import exceptions as rx

    name = report.node.name
    try:
        return session.finished(ref), None
    except rx.TaskCancelledError:
        raise KeyboardInterrupt from None  # only Ctrl-C cancels
    except (rx.NodeDiedError, rx.TaskUnschedulableError, rx.LocalRayletDiedError, rx.ObjectLostError) as err:
        return None, f"node {name} was lost during the job ({type(err).__name__})"
    except rx.WorkerCrashedError:
        return None, f"the Ray worker on node {name} died during the job (killed: out of memory?)"
    except VischooseError as err:  # the job's own error, raised there (RayTaskError(UsageError) is a UsageError)
        return None, f"on node {name}: {getattr(err, 'cause', err)}"
    except rx.RayTaskError as err:  # a crash in the job there, as a measurement's crash is its row's error
        return None, f"crashed on node {name}: {_first_line(err.cause)}"


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0][:200] if lines else ''}"


def survey(session: Session, nodes: list[Node], models: list[str]) -> list[NodeReport]:
    """What each node offers (fleet.probe.node_report, sent by value: it answers where vischoose does not import),
    asked of every node at once without holding its CPUs; a node that does not answer is reported unusable."""
    import ray
    from ray import cloudpickle

    from vischoose.fleet import probe

    cloudpickle.register_pickle_by_value(probe)
    fn = _remote(probe.node_report)
    refs = {session.submit(fn, (models,), node, whole=False): node for node in nodes}
    pending, deadline = list(refs), time.monotonic() + SURVEY_TIMEOUT_S
    while pending and time.monotonic() < deadline:
        _, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_S)
    return [_report(session, ref, node, ref in pending) for ref, node in refs.items()]


def _report(session: Session, ref: Any, node: Node, late: bool) -> NodeReport:
    import ray

    if late:
        session.forget(ref)
        return NodeReport(node=node, error=f"did not answer within {SURVEY_TIMEOUT_S:g} s")
    try:
        return NodeReport.from_probe(node, session.finished(ref))
    except ray.exceptions.RayError as err:
        return NodeReport(node=node, error=f"could not be asked ({type(err).__name__})")
