"""THE seam between vischoose's requests and Ray. A job (one model's profile, one shard of an evaluation) is a plain
picklable value: run() executes it on a node with the library's own functions, lost() stands for its result when
it cannot finish there. dispatch() sends each job to its node holding all the node's CPUs and GPUs, hands every
result back as it arrives and turns a lost node, a dead worker or the job's own error into lost(); Ctrl-C cancels
every job in flight. survey() asks each node what it offers (fleet.probe).

A job carries the typed request as the user asked it (ProfileRequest, EvaluateRequest); on the node it runs the
request without its cluster options (ProfileRequest.local, EvaluateRequest with its shard), through the library's
own entry points (measure.runner.profile_models, deploy.evaluate.evaluate).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from vischoose.errors import VischooseError
from vischoose.fleet import weights
from vischoose.fleet.cluster import Node, Session
from vischoose.fleet.kinds import NodeReport
from vischoose.models import catalog
from vischoose.records import Profile
from vischoose.requests.evaluate import EvaluateRequest
from vischoose.requests.profile import DEFAULT_BATCH_SIZES, ProfileRequest

if TYPE_CHECKING:
    from vischoose.inference.loop import Evaluation
    from vischoose.measure.runner import ProfileRun, Runner

SURVEY_TIMEOUT_S = 120.0  # a node that has not said what it offers by then (busy, or starting workers) is left out
POLL_S = 0.5  # how often the driver looks up from waiting (Ctrl-C is seen within this)
STOP_S = 5.0  # after a cancel, how long a node kills what the job's thread still starts (the driver waits 10 s)
_CANCELLED = threading.Event()  # this worker's job was cancelled (a Ray worker runs one task at a time)


class Job(Protocol):
    """What dispatch() runs on a node."""

    @property
    def what(self) -> str: ...  # "resnet50", "shard 2 of 4", for messages

    def run(self) -> Any: ...  # on the node

    def lost(self, node: NodeReport, why: str) -> Any: ...  # on this machine, when the node could not finish it


OnResult = Callable[[NodeReport, Any, Any, "str | None"], None]  # (node, job, result or lost(), why it was lost)


@dataclass(frozen=True)
class ProfileJob:
    """One model profiled on a node, as `vischoose profile` would there: its rows (not stored there)."""

    model: str
    request: ProfileRequest
    shipped: Any = None  # an ObjectRef of the model's hub.Snapshot, for a node whose cache lacks the weights

    @property
    def what(self) -> str:
        return self.model

    def run(self) -> list["ProfileRun"]:
        from vischoose.measure import runner

        weights.install(self.model, self.shipped)
        return runner.profile_models(self.request.local.but(models=(self.model,)),
                                     runner=cancellable(runner.run_child))

    def lost(self, node: NodeReport, why: str) -> list["ProfileRun"]:
        """A failed row per batch size, naming the node; not saved (it says nothing about the model)."""
        from vischoose.measure.runner import ProfileRun

        return [ProfileRun(failed_row(self.model, self.request, node, size, why), saveable=False)
                for size in batch_sizes(self.request, node)]


@dataclass(frozen=True)
class EvalShard:
    """Every count-th image of a labelled set from index, evaluated on a node: its counts, unreduced."""

    index: int
    count: int
    request: EvaluateRequest  # as asked (with its cluster); the node runs it as this shard
    shipped: Any = None  # an ObjectRef of the model's hub.Snapshot
    graph: Any = None  # an ObjectRef of {file name: bytes}: evaluate's file as written, and its companions

    @property
    def what(self) -> str:
        return f"shard {self.index + 1} of {self.count}"

    def run(self) -> "Evaluation":
        import tempfile

        from vischoose.deploy.evaluate import evaluate

        weights.install(self.request.model, self.shipped)
        with tempfile.TemporaryDirectory(prefix="vischoose-shard-") as tmp:
            graph = weights.unpack(self.graph, Path(tmp))
            written = {} if graph is None else {"graph": str(graph)}
            return evaluate(self.request.but(cluster=None, on=(), shard=(self.index, self.count), **written))

    def lost(self, node: NodeReport, why: str) -> None:
        return None


def batch_sizes(request: ProfileRequest, node: NodeReport) -> tuple[int, ...]:
    """The batch sizes a profile on the node measures (the device's default where none were given)."""
    gpu = node.node.gpus > 0 and request.device != "cpu"
    return tuple(sorted(set(request.batch_sizes or DEFAULT_BATCH_SIZES["cuda" if gpu else "cpu"])))


def failed_row(model: str, request: ProfileRequest, node: NodeReport, size: int, why: str) -> Profile:
    """The row of a measurement the node could not finish, with the node's machine and the reason."""
    ref = catalog.parse_model_ref(model)
    entry = ref.entry
    device = "cuda:0" if node.node.gpus > 0 and request.device != "cpu" else "cpu"
    return Profile(model=ref.display, tag=ref.timm_name or ref.name, device=device, dtype=request.dtype,
                   batch_size=size, input_size=request.input_size or (entry.input_size if entry else 0),
                   family=entry.family if entry else None, machine=node.fingerprint, machine_kind=node.kind,
                   device_name=node.facts.cpu if node.facts else "", runtime=request.runtime, error=why)


def execute(job: Job) -> Any:
    """job.run() on this node, in a thread: a cancel (a KeyboardInterrupt in this, the main thread) is then seen at
    once even while the job waits on a child process. The cancel stops the job's processes and, until the job's
    thread has seen it (its next child would raise: cancellable), whatever it started meanwhile (a fork server
    killed, its runner starts the child afresh)."""
    box: dict[str, Any] = {}
    done = threading.Event()  # not thread.is_alive(): a join interrupted by the cancel can leave that False

    def work() -> None:
        try:
            box["value"] = job.run()
        except BaseException as err:  # handed to the main thread as it is, re-raised below
            box["error"] = err
        finally:
            done.set()

    _CANCELLED.clear()
    threading.Thread(target=work, name=f"vischoose {job.what}", daemon=True).start()
    try:
        while not done.wait(0.2):
            pass
    except KeyboardInterrupt:
        _CANCELLED.set()
        deadline = time.monotonic() + STOP_S
        while not done.is_set() and time.monotonic() < deadline:
            _kill_children()
            done.wait(0.2)
        _kill_children()
        raise
    if "error" in box:
        raise box["error"]
    return box["value"]


def cancellable(runner: "Runner") -> "Runner":
    """measure.runner's child runner, refusing to start a child once this worker's job is cancelled and raising
    KeyboardInterrupt when a child ends after the cancel: the job's thread stops starting processes."""
    def run(cmd: list[str], env: dict[str, str], on_line: Callable[[str], None]) -> int:
        if _CANCELLED.is_set():
            raise KeyboardInterrupt
        code = runner(cmd, env, on_line)
        if _CANCELLED.is_set():
            raise KeyboardInterrupt
        return code
    return run


def _kill_children(wait_s: float = 2.0) -> None:
    """Kill this process's child processes (measurements, the fork server) and wait until they are gone: nothing of
    a cancelled job runs on."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(children, timeout=wait_s)


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
