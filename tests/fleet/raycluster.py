"""A Ray cluster of simulated kinds of machine on this host, on loopback only, for the fleet tests and bench/fleet.py.

Each worker node is one CPU; its kind is what it reports about itself (VISCHOOSE_MACHINE: host and CPU name, so its
fingerprint and kind differ from the others'), with its own VISCHOOSE_HOME and machine folder (a machine peak
already cached there, so no test waits on big matmuls) and its own empty, offline hub cache (weights are shipped
from the driver's). A custom resource and a label name the kind too. The head runs no job. Nothing binds beyond
127.0.0.1; Ray reports nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from vischoose import machine
from vischoose.measure.peak import PEAK_CACHE_FILE, peak_key

RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # loopback, no reports
SEEDED_PEAK_GFLOPS_S = 10_000.0  # above what this CPU reaches (see tests/profhelpers.py)


def kind_env(kind: str, base: Path, pool: str | None = None, cpus: int = 1) -> dict[str, Any]:
    """add_node's arguments for a node of simulated kind `kind` ('a', 'b', ...) with `cpus` CPUs (its peak cached
    at that many threads), its files under base/kind."""
    facts = {"host": f"node-{kind}", "cpu": f"Sim CPU {kind.upper()}"}
    home = base / kind
    found = machine.facts(json.dumps(facts))
    key = peak_key(found.fingerprint, "cpu", found.cpu, "float32", cpus)
    shared = home / "machine"  # the node's machine-wide folder (paths.machine_dir): its peak and measurement lock
    shared.mkdir(parents=True, exist_ok=True)
    entry = {"gflops_s": SEEDED_PEAK_GFLOPS_S, "kernel": "seeded by the test", "reps": 0}
    (shared / PEAK_CACHE_FILE).write_text(json.dumps({key: entry}))
    env = {"VISCHOOSE_MACHINE": json.dumps(facts), "VISCHOOSE_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"),
           "VISCHOOSE_MACHINE_DIR": str(shared), "VISCHOOSE_MEASURE_LOCK": str(shared / "measure.lock"),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(cpus)}
    labels = {"sim/kind": kind, **({"sim/pool": pool} if pool else {})}
    return {"num_cpus": cpus, "resources": {f"kind_{kind}": 1}, "labels": labels, "env_vars": env}


def start(base: Path, kinds: tuple[str, ...] = ("a", "b"), pools: dict[str, str] | None = None, cpus: int = 1) -> Any:
    """A ray.cluster_utils.Cluster: a head without CPUs, and one node of `cpus` CPUs per kind."""
    os.environ.update(RAY_ENV)
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for kind in kinds:
        cluster.add_node(**kind_env(kind, base, (pools or {}).get(kind), cpus))
    cluster.vischoose_base = base  # where the nodes' homes and hub caches are
    return cluster


def facts_of(kind: str) -> machine.MachineFacts:
    """The machine facts a node of simulated kind `kind` reports."""
    return machine.facts(json.dumps({"host": f"node-{kind}", "cpu": f"Sim CPU {kind.upper()}"}))


def stop(cluster: Any) -> None:
    """Disconnect this process, then stop every node."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    cluster.shutdown()
