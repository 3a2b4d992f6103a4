"""A Ray cluster rendered: its kinds of machine (vischoose fleet), profile rows kind by kind, and a recommendation per
kind. Renders, never computes."""

from __future__ import annotations

from typing import Any, Sequence

from vischoose.report.flags import echo
from vischoose.report.profile import show_profiles
from vischoose.report.tables import (
    emit_json,
    recommendation_dict,
    show_recommendation,
    table,
)


def _amount(value: float) -> str:
    return f"{value:g}"


def _ray_cell(node: Any) -> str:
    """'CPU 16, GPU 1, kind_a 1; instance-type=c7g' for one node."""
    amounts = [f"CPU {_amount(node.cpus)}"] + ([f"GPU {_amount(node.gpus)}"] if node.gpus else [])
    amounts += [f"{k} {_amount(v)}" for k, v in sorted(node.resources.items())]
    labels = [f"{k}={v}" for k, v in sorted(node.labels.items())]
    return ", ".join(amounts) + ("; " + ", ".join(labels) if labels else "")


def _software_cell(overview: Any, kind: Any) -> str:
    if kind.facts is None:
        return "; ".join(dict.fromkeys(n.error or "" for n in kind.nodes))
    found = overview.differences(kind)
    return "differs: " + ", ".join(found) if found else "same as here"


def _runtimes_cell(node: Any) -> str:
    """'all' or 'not openvino (OpenVINO is not installed)'."""
    missing = [f"{name} ({why})" for name, why in node.runtimes.items() if why]
    return "all" if not missing else "not " + "; not ".join(missing)


def show_overview(overview: Any, as_json: bool) -> None:
    """vischoose fleet: one row per kind of machine, then one per node."""
    if as_json:
        emit_json("fleet", _overview_dict(overview))
        return
    usable = [k for k in overview.kinds if k.facts is not None]
    with_cpus = sum(len(k.nodes) for k in overview.kinds)
    echo(f"Ray cluster at {overview.address}: {overview.nodes} live nodes, {with_cpus} with CPUs, in "
               f"{len(usable)} kind{'s' if len(usable) != 1 else ''} of machine.\n")
    echo(table(["kind", "nodes", "machine", "instruction sets", "Ray (first node)", "vischoose"],
                     [[k.id, len(k.nodes), k.title, " ".join(k.facts.flags) if k.facts else "-",
                       _ray_cell(k.nodes[0].node), _software_cell(overview, k)] for k in overview.kinds]))
    echo("")
    echo(table(["kind", "host", "node", "usable cores", "runtimes", "hub"],
                     [[k.id, n.host, n.node.name, n.usable_cores or "-", _runtimes_cell(n) if n.facts else "-",
                       "offline" if n.offline else "online"] for k in overview.kinds for n in k.nodes]))
    echo("\nA kind is the hardware (CPU model and instruction sets, cores, memory, GPUs), whatever the host: "
               "profile --cluster measures one node of each; recommend --cluster answers for each.")


def _overview_dict(overview: Any) -> dict[str, Any]:
    def node(n: Any) -> dict[str, Any]:
        return {"node_id": n.node.node_id, "ip": n.node.ip, "host": n.host, "machine": n.fingerprint or None,
                "cpus": n.node.cpus, "gpus": n.node.gpus, "resources": n.node.resources, "labels": n.node.labels,
                "usable_cores": n.usable_cores, "versions": n.versions, "runtimes": n.runtimes,
                "hub_offline": n.offline, "error": n.error}

    return {"address": overview.address, "nodes": overview.nodes, "here": overview.here,
            "kinds": [{"kind": k.id, "title": k.title, "facts": k.facts._asdict() if k.facts else None,
                       "differences": overview.differences(k), "nodes": [node(n) for n in k.nodes]}
                      for k in overview.kinds]}


def show_fleet_profile(result: Any, output: str) -> None:
    """profile --cluster: each kind's rows as `vischoose profile` shows them, under a line naming the kind."""
    if output == "json":
        emit_json("fleet_profile", {"kinds": [
            {"kind": p.kind.id, "title": p.kind.title, "node": p.node.node.name, "host": p.node.host,
             "profiles": [{**r.profile.to_dict(), "measurement": r.detail, "notes": list(r.notes)} for r in p.runs]}
            for p in result.parts], "left_out": result.left_out})
        return
    if output == "csv":
        show_profiles(result.runs, output)  # rows carry machine and machine_kind
        return
    for i, part in enumerate(result.parts):
        echo(f"{'' if i == 0 else chr(10)}On {part.kind.title} (kind {part.kind.id}, {len(part.kind.nodes)} "
                   f"node{'s' if len(part.kind.nodes) != 1 else ''}; measured on {part.node.host}, "
                   f"{part.node.node.name}):")
        show_profiles(part.runs, output)
    for line in result.left_out:
        echo(f"Not measured: {line}", err=True)


def show_kind_advice(advice: Sequence[Any], top: int, as_json: bool) -> None:
    """recommend per kind of machine: a section per kind, the recommendation or why nothing fits there."""
    if as_json:
        emit_json("fleet_recommendation", [
            {"kind": a.kind, "title": a.title, "nodes": a.nodes,
             "recommendation": recommendation_dict(a.recommendation) if a.recommendation else None,
             "error": str(a.error) if a.error else None} for a in advice])
        return
    for i, a in enumerate(advice):
        nodes = f", {a.nodes} node{'s' if a.nodes != 1 else ''}" if a.nodes else ""
        echo(f"{'' if i == 0 else chr(10)}=== On {a.title} (kind {a.kind}{nodes}) ===")
        if a.recommendation is not None:
            show_recommendation(a.recommendation, top, False)
        else:
            echo(f"Nothing fits here: {a.error}")
            if a.error.hint:
                echo(f"Hint: {a.error.hint}")
