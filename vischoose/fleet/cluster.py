"""A Ray cluster as vischoose uses it: the address checked before Ray is asked to connect (ray.init waits minutes on
a port that answers something else), the connection, its live nodes, and the remote calls in flight, cancelled on
Ctrl-C. Nothing here reaches an address the user did not give.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from vischoose.errors import ClusterError, opt
from vischoose.requests import fields as check

PROBE_TIMEOUT_S = 3.0
CANCEL_GRACE_S = 10.0  # after Ctrl-C, how long a running job may take to stop its child processes before it is killed
# what a gRPC server (Ray's GCS, or its client server) answers to an HTTP/2 client preface: a SETTINGS frame
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
SETTINGS_FRAME = 0x04
SYSTEM_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")
SYSTEM_LABELS = "ray.io/"


@dataclass(frozen=True)
class Address:
    """Where the cluster answers: its head's GCS (HOST:PORT) or its Ray Client server (ray://HOST:PORT)."""

    host: str
    port: int
    client: bool = False

    def __str__(self) -> str:
        return f"{check.CLIENT_SCHEME if self.client else ''}{self.host}:{self.port}"


@dataclass(frozen=True)
class Node:
    """A live node as Ray describes it."""

    node_id: str
    ip: str
    hostname: str
    cpus: float
    gpus: float = 0.0
    resources: dict[str, float] = field(default_factory=dict)  # custom resources (CPU, GPU, memory left out)
    labels: dict[str, str] = field(default_factory=dict)  # the operator's labels (Ray's own ray.io/ ones left out)

    @property
    def name(self) -> str:
        """'host-a (10.0.0.5, node 1f2e3d4c)': enough to find it in `ray list nodes`."""
        host = f"{self.hostname} ({self.ip}, " if self.hostname and self.hostname != self.ip else f"{self.ip} ("
        return f"{host}node {self.node_id[:8]})"


def parse_address(text: str) -> Address:
    """HOST:PORT, ray://HOST:PORT or auto (Ray's own resolution: RAY_ADDRESS, else the cluster this machine runs).

    Raises:
        UsageError: Ray missing, or not an address; ClusterError: auto, and no cluster to be found.
    """
    text = check.cluster(text) or ""
    if text == check.AUTO_CLUSTER:
        text = _auto_address()
    host, port, client = check.address(text)
    return Address(host, port, client)


def _auto_address() -> str:
    from ray._private import services

    try:
        found = services.get_ray_address_from_environment("auto", None)
    except ConnectionError:
        found = None
    if not found or found == "auto":
        raise ClusterError(f"{opt('cluster')} auto found no Ray cluster: RAY_ADDRESS is not set and no cluster runs "
                           "on this machine.", hint=f"Start one with: ray start --head; or give {opt('cluster')} "
                           "HOST:PORT.", field="cluster")
    return found


def probe(address: Address, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Check within timeout_s that a gRPC server answers at the address, before ray.init waits on it.

    Raises:
        ClusterError: nothing listens, no answer in time, or an answer that is not gRPC.
    """
    hint = f"Check that the cluster runs (ray status --address {address.host}:{address.port} on the head) " \
           "and that this machine can reach it."
    try:
        with socket.create_connection((address.host, address.port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(HTTP2_PREFACE)
            head = sock.recv(9)
    except socket.timeout:
        raise ClusterError(f"The Ray cluster at {address} did not answer within {timeout_s:g} s.", hint=hint) from None
    except OSError as err:
        raise ClusterError(f"Cannot reach the Ray cluster at {address}: {err.strerror or err}.", hint=hint) from None
    if len(head) < 4 or head[3] != SETTINGS_FRAME:
        raise ClusterError(f"{address} answered, but not as a Ray cluster (no gRPC server there).",
                           hint=check.ADDRESS_HINT)


@contextmanager
def connect(text: str) -> Iterator["Session"]:
    """A session on the cluster at `text` (see parse_address), disconnected at the end; an existing connection of
    this process is used as it is (and left open).

    Raises:
        UsageError: Ray missing, or not an address; ClusterError: unreachable, or Ray refused to connect.
    """
    address = parse_address(text)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # Ray reports nothing anywhere
    import ray

    owned = not ray.is_initialized()
    if owned:
        probe(address)
        try:
            ray.init(address=str(address), logging_level=logging.WARNING, log_to_driver=False, namespace="vischoose")
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise ClusterError(f"Cannot connect to the Ray cluster at {address}: {_first_line(err)}",
                               hint=check.ADDRESS_HINT) from None
    session = Session(address)
    try:
        yield session
    finally:
        session.cancel_all()
        if owned:
            ray.shutdown()


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return (lines[0] if lines else type(err).__name__)[:300]


class Session:
    """A connected cluster: its live nodes, and the remote calls in flight (cancelled together on Ctrl-C)."""

    def __init__(self, address: Address) -> None:
        self.address = address
        self._lock = threading.Lock()
        self._flying: set[Any] = set()

    def nodes(self) -> list[Node]:
        """The live nodes, head first as Ray lists them."""
        import ray

        return [_node(n) for n in ray.nodes() if n.get("Alive")]

    def submit(self, fn: Any, args: tuple[Any, ...], node: Node, whole: bool = True) -> Any:
        """Run fn(*args) on `node` without retries, holding all its CPUs and GPUs (nothing else runs there
        meanwhile) or, with whole=False, none of them; its ObjectRef, tracked until finished() or forget()."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        strategy = NodeAffinitySchedulingStrategy(node.node_id, soft=False)
        ref = fn.options(num_cpus=node.cpus if whole else 0, num_gpus=node.gpus if whole else 0, max_retries=0,
                         scheduling_strategy=strategy).remote(*args)
        with self._lock:
            self._flying.add(ref)
        return ref

    def wait(self, refs: list[Any], timeout_s: float) -> list[Any]:
        """The refs among `refs` that finished within timeout_s (short waits keep Ctrl-C prompt)."""
        import ray

        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout_s)
        return ready

    def finished(self, ref: Any) -> Any:
        """The value of a finished call (raising what it raised), no longer tracked."""
        import ray

        with self._lock:
            self._flying.discard(ref)
        return ray.get(ref)

    def forget(self, ref: Any) -> None:
        """Stop tracking a call, and cancel it (it is not waited for any more)."""
        import ray

        with self._lock:
            self._flying.discard(ref)
        ray.cancel(ref, force=True)

    def cancel_all(self, grace_s: float = CANCEL_GRACE_S) -> None:
        """Cancel every call in flight: a KeyboardInterrupt in each (the job stops its child processes), then, for
        those still running after grace_s, kill their workers."""
        import ray

        with self._lock:
            flying, self._flying = list(self._flying), set()
        if not flying:
            return
        for ref in flying:
            ray.cancel(ref)
        deadline = time.monotonic() + grace_s
        pending = flying
        while pending and time.monotonic() < deadline:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=0.2)
        for ref in pending:
            ray.cancel(ref, force=True)


def _node(info: dict[str, Any]) -> Node:
    resources = info.get("Resources") or {}
    custom = {k: v for k, v in resources.items() if k not in SYSTEM_RESOURCES and not k.startswith("node:")
              and not k.startswith("accelerator_type:")}
    labels = {k: v for k, v in (info.get("Labels") or {}).items() if not k.startswith(SYSTEM_LABELS)}
    return Node(node_id=info["NodeID"], ip=info.get("NodeManagerAddress", ""),
                hostname=info.get("NodeManagerHostname", ""), cpus=float(resources.get("CPU", 0)),
                gpus=float(resources.get("GPU", 0)), resources=custom, labels=labels)
