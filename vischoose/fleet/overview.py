"""`vischoose fleet`: what a cluster offers, kind by kind, and how each node's software compares with this machine's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from vischoose.fleet import jobs, kinds, probe
from vischoose.fleet.kinds import Kind

if TYPE_CHECKING:
    from vischoose.fleet.cluster import Session


@dataclass(frozen=True)
class Overview:
    """The cluster's kinds of machine (nodes where vischoose does not run last), and this machine's versions."""

    address: str
    kinds: list[Kind]
    here: dict[str, str | None]  # module -> version on this machine (fleet.probe.node_report's "versions")
    nodes: int  # live nodes, those without CPUs (a head that runs no jobs) included

    def differences(self, kind: Kind) -> list[str]:
        """How the kind's nodes' versions differ from this machine's (one list for all of them when they agree)."""
        found = {tuple(kinds.differences(self.here, n.versions)) for n in kind.nodes if n.error is None}
        return [d for each in sorted(found) for d in each]


def overview(session: "Session", on: dict[str, str] | None = None) -> Overview:
    """Ask every node (with every --on label) what it offers; group them into kinds."""
    nodes = session.nodes()
    reports = jobs.survey(session, kinds.select(nodes, on or {}), [])
    here = probe.node_report([]).get("versions", {})
    return Overview(str(session.address), kinds.group(reports), here, len(nodes))
