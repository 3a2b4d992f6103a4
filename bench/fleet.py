"""profile --cluster on a local Ray cluster of two simulated kinds of machine on this host (tests/fleet/raycluster.py:
one node per kind, --cpus CPUs each, on loopback): the wall time over the models on both kinds at once against the
same two runs one after the other (--on sim/kind=a, then b), the rows each kind got, and the time from a node's loss
to its failed rows being reported. Prints figures (one run each; no pass/fail).

    PYTHONPATH=. python bench/fleet.py [--models M1,M2,...] [--time-budget 2] [--cpus 1]

Both sides connect once and run on warm workers (a first run, not timed, starts them and their fork servers), every
run measures afresh (--fresh) into a home of its own. Two nodes on one host share its cores, caches and memory
bandwidth: the parallel run's gain is bounded by the cores (two 1-CPU nodes on 2 cores can at most halve the time),
and its figures are a busy machine's. A real fleet's nodes share nothing.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

MODELS = "test_resnet.r160_in1k,test_vit.r160_in1k,test_convnext.r160_in1k,test_efficientnet.r160_in1k"


def profile(session, models: list[str], request, home: Path, on: tuple[str, ...] = (),
            progress=None) -> tuple[float, object]:
    """One profile --cluster --fresh into `home`: (seconds, the FleetProfile)."""
    from vischoose.fleet import profiling

    os.environ["VISCHOOSE_HOME"] = str(home)
    start = time.perf_counter()
    found = profiling.profile_fleet(session, request.but(models=tuple(models), on=on), progress=progress)
    return time.perf_counter() - start, found


def rows_per_kind(found) -> str:
    return "; ".join(f"{p.kind.title}: {sum(r.profile.ok for r in p.runs)} ok of {len(p.runs)}" for p in found.parts)


def loss(ray_cluster, session, models: list[str], request, base: Path) -> None:
    """Node c (pool loss) is removed once its first model is back: seconds from the removal to its failed rows."""
    from tests.fleet import raycluster

    node = ray_cluster.add_node(**raycluster.kind_env("c", base / "nodes", "loss"))
    marks: dict[str, float] = {}

    def progress(what: str, doing: str, elapsed: float) -> None:
        if doing == "done" and "removed" not in marks:
            marks["removing"] = time.perf_counter()
            ray_cluster.remove_node(node)
            marks["removed"] = time.perf_counter()
        elif doing == "failed" and "failed" not in marks:
            marks["failed"] = time.perf_counter()

    _, found = profile(session, models, request, base / "loss", ("sim/pool=loss",), progress)
    failed = sum(not r.profile.ok for r in found.runs)
    if "failed" not in marks:
        print("node loss: every model was back before the node went; nothing failed (use more models)")
        return
    print(f"node loss: remove_node took {marks['removed'] - marks['removing']:.2f} s; its first failed row was "
          f"reported {marks['failed'] - marks['removing']:.2f} s after the removal began; {failed} of "
          f"{len(found.runs)} rows failed, naming the node")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=MODELS, help="comma-separated models (default: four of timm's tiny test "
                                                         "models)")
    parser.add_argument("--time-budget", type=float, default=2.0, help="seconds of timed runs per phase (default 2)")
    parser.add_argument("--cpus", type=int, default=1, help="CPUs of each simulated node (default 1)")
    args = parser.parse_args()
    from tests.fleet import raycluster
    from vischoose import machine
    from vischoose.fleet import cluster
    from vischoose.requests.profile import ProfileRequest

    models = args.models.split(",")
    print(f"host: {machine.cpu_name()}, {os.cpu_count()} cores; 2 simulated kinds x {args.cpus} CPU; "
          f"{len(models)} models, batch 1, threads {args.cpus}, time budget {args.time_budget:g} s, random weights")
    with tempfile.TemporaryDirectory(prefix="vischoose-bench-fleet-") as tmp:
        base = Path(tmp)
        start = time.perf_counter()
        ray_cluster = raycluster.start(base / "nodes", ("a", "b"), cpus=args.cpus)
        print(f"cluster up (head + 2 nodes): {time.perf_counter() - start:.1f} s")
        request = ProfileRequest(device="cpu", threads=args.cpus, weights="random", time_budget_s=args.time_budget,
                                 batch_sizes=(1,), cluster=ray_cluster.address, fresh=True)
        try:
            with cluster.connect(ray_cluster.address) as session:
                warm_s, _ = profile(session, models[:1], request, base / "warm")
                print(f"first run (starts the workers and their fork servers; not compared): {warm_s:.1f} s")
                a_s, on_a = profile(session, models, request, base / "seq-a", ("sim/kind=a",))
                b_s, on_b = profile(session, models, request, base / "seq-b", ("sim/kind=b",))
                both_s, both = profile(session, models, request, base / "both")
                print(f"sequential, kind a then kind b: {a_s:.1f} + {b_s:.1f} = {a_s + b_s:.1f} s "
                      f"({rows_per_kind(on_a)}; {rows_per_kind(on_b)})")
                print(f"both kinds at once: {both_s:.1f} s = {(a_s + b_s) / both_s:.2f}x faster "
                      f"({rows_per_kind(both)})")
                loss(ray_cluster, session, models, request, base)
        finally:
            raycluster.stop(ray_cluster)


if __name__ == "__main__":
    main()
