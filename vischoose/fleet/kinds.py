"""Nodes grouped into kinds of machine, from what each node reported about itself (fleet.probe): the same CPU model
and instruction sets, cores, memory and GPUs make one kind (machine.MachineFacts.kind), whatever the host.
Which nodes take part (--on LABEL=VALUE), and how a node's software differs from this machine's. Pure: no Ray."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vischoose.errors import UsageError
from vischoose.fleet.cluster import Node
from vischoose.machine import MachineFacts
from vischoose.requests import fields as check

UNUSABLE = "unusable"  # the kind of nodes where vischoose does not run


@dataclass(frozen=True)
class NodeReport:
    """A node and what it said about itself."""

    node: Node
    facts: MachineFacts | None = None
    fingerprint: str = ""
    kind: str = UNUSABLE
    usable_cores: int = 0
    versions: dict[str, str | None] = field(default_factory=dict)
    runtimes: dict[str, str | None] = field(default_factory=dict)  # runtime -> why it cannot run there (None: it can)
    cached: tuple[str, ...] = ()  # the models asked about whose weights its hub cache holds
    offline: bool = False
    python: str = ""
    error: str | None = None  # why vischoose cannot run there

    @classmethod
    def from_probe(cls, node: Node, report: dict[str, Any]) -> "NodeReport":
        """A node's report as fleet.probe.node_report wrote it."""
        if report.get("error"):
            return cls(node=node, python=report.get("python", ""), error=report["error"])
        facts = MachineFacts(**{k: tuple(v) if isinstance(v, list) else v for k, v in report["facts"].items()})
        return cls(node=node, facts=facts, fingerprint=report["fingerprint"], kind=report["kind"],
                   usable_cores=report["usable_cores"], versions=report["versions"], runtimes=report["runtimes"],
                   cached=tuple(report["cached"]), offline=report["offline"], python=report["python"])

    @property
    def host(self) -> str:
        """The host name the node gives itself (its machine facts), else Ray's."""
        return self.facts.host if self.facts else (self.node.hostname or self.node.ip)

    def missing(self, runtime: str) -> str | None:
        """Why the runtime cannot run on this node (None: it can)."""
        if self.error:
            return self.error
        return self.runtimes.get(runtime) if runtime in self.runtimes else None


@dataclass(frozen=True)
class Kind:
    """A kind of machine and its nodes."""

    id: str
    nodes: tuple[NodeReport, ...]

    @property
    def facts(self) -> MachineFacts | None:
        """The hardware every node of the kind shares (None for nodes where vischoose does not run)."""
        return self.nodes[0].facts

    @property
    def title(self) -> str:
        """'Intel Xeon 8488C, 16 cores, 64 GiB' and the operator's labels all its nodes share."""
        if self.facts is None:
            return "vischoose does not run there"
        shared = [f"{k}={v}" for k, v in self.nodes[0].node.labels.items()
                  if all(n.node.labels.get(k) == v for n in self.nodes)]
        return self.facts.title + (f" ({', '.join(shared)})" if shared else "")


def group(reports: list[NodeReport]) -> list[Kind]:
    """Kinds by their title, each with its nodes by host; nodes where vischoose does not run are one kind, last."""
    kinds: dict[str, list[NodeReport]] = {}
    for report in sorted(reports, key=lambda r: (r.host, r.node.ip, r.node.node_id)):
        kinds.setdefault(report.kind, []).append(report)
    found = [Kind(kind, tuple(nodes)) for kind, nodes in kinds.items()]
    return sorted(found, key=lambda k: (k.id == UNUSABLE, k.title, k.id))


def labels(on: tuple[str, ...] | list[str] | None) -> dict[str, str]:
    """A request's on (LABEL=VALUE texts, checked: requests.fields.node_labels) as {label: value}.

    Raises:
        UsageError: a text without '='.
    """
    return dict(text.split("=", 1) for text in check.node_labels(on or ()))


def select(nodes: list[Node], on: dict[str, str]) -> list[Node]:
    """The nodes that can run a job (they have CPUs) and carry every label asked for.

    Raises:
        UsageError: no node qualifies (the message lists the labels the cluster has).
    """
    found = [n for n in nodes if n.cpus > 0 and all(n.labels.get(k) == v for k, v in on.items())]
    if found:
        return found
    wanted = ", ".join(f"{k}={v}" for k, v in on.items())
    have = sorted({f"{k}={v}" for n in nodes for k, v in n.labels.items()})
    if not on:
        raise UsageError("No node of the cluster offers a CPU to run a job on.",
                         hint="Add worker nodes (ray start --address ... --num-cpus N).")
    raise UsageError(f"No node of the cluster has the labels {wanted}.",
                     hint=f"The nodes' labels: {', '.join(have) or 'none'} (vischoose fleet lists them).")


def differences(here: dict[str, str | None], there: dict[str, str | None]) -> list[str]:
    """How a node's versions differ from this machine's: ['torch 2.13.0 (here 2.14.1)', 'no openvino']."""
    out = []
    for module in dict.fromkeys([*here, *there]):
        mine, theirs = here.get(module), there.get(module)
        if mine == theirs:
            continue
        if theirs is None:
            out.append(f"no {module}")
        else:
            out.append(f"{module} {theirs}" + (f" (here {mine})" if mine else " (not here)"))
    return out
