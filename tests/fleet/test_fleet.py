"""The fleet on a real Ray cluster: nodes of two simulated kinds of machine on this host (tests/fleet/raycluster.py), on
loopback, started once for the module and stopped at its end. profile gives one row set per kind, each row naming
its machine, filed as `results import` files rows; a re-run reuses them; a node removed mid-job fails its rows and
keeps the others'; Ctrl-C cancels the remote jobs; evaluation sharded over two nodes equals one process's."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the fleet tests need Ray (pip install 'vischoose[fleet]')")

from tests.fleet import raycluster  # noqa: E402
from vischoose.cli import app  # noqa: E402
from vischoose.results.store import open_store  # noqa: E402

pytestmark = pytest.mark.slow
MODEL = "test_resnet.r160_in1k"
# no cold-start child on the nodes: the conftest turns it off in this process only, and each is a fresh process
# importing torch per model (tests/measure/test_application.py times cold starts)
FAST = ["--weights", "random", "--threads", "1", "-b", "1", "--time-budget", "0.3", "--device", "cpu", "--no-cold-start"]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """Head (no CPUs) + node-a (kind a, pool x) + node-b (kind b), and this process connected to it for the whole
    module: every command run in-process reuses the connection (fleet.cluster.connect), so the nodes' workers, and
    the torch their fork servers imported, stay warm from one test to the next."""
    import ray

    base = tmp_path_factory.mktemp("fleet")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in raycluster.RAY_ENV.items():
            patch.setenv(key, value)
        found = raycluster.start(base / "nodes", ("a", "b"), pools={"a": "x"})
        try:
            ray.init(address=found.address, logging_level="WARNING", log_to_driver=False, namespace="vischoose")
            yield found
        finally:
            raycluster.stop(found)


@pytest.fixture(scope="module")
def profiled(ray_cluster, tmp_path_factory):
    """One `profile --cluster` over both kinds, into a home of its own: (CLI result, that home)."""
    from typer.testing import CliRunner

    home = tmp_path_factory.mktemp("profiled-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VISCHOOSE_HOME", str(home))
        result = CliRunner().invoke(app, ["profile", MODEL, "--cluster", ray_cluster.address, *FAST, "--json"])
    return result, home


def test_profile_gives_one_row_set_per_kind_labelled_with_its_machine(profiled):
    result, home = profiled
    assert result.exit_code == 0, result.stderr
    parts = json.loads(result.stdout)["data"]["kinds"]
    want = {k: raycluster.facts_of(k) for k in ("a", "b")}
    assert sorted(p["kind"] for p in parts) == sorted(f.kind for f in want.values())
    for part in parts:
        (facts,) = [f for f in want.values() if f.kind == part["kind"]]
        assert part["host"] == facts.host
        (row,) = part["profiles"]
        assert (row["machine"], row["machine_kind"], row["device_name"]) == (facts.fingerprint, facts.kind, facts.cpu)
        assert row["error"] is None and row["latency_ms_p50"] > 0 and row["threads"] == 1
    with open_store(home / "results.db") as store:
        stored = store.results("profile")
    assert sorted((s.record.machine, s.imported_from) for s in stored) == sorted(
        (f.fingerprint, f"ray {f.host}") for f in want.values())


def test_the_rows_are_filed_as_results_import_files_them(profiled, runner, tmp_path):
    _, home = profiled
    with open_store(home / "results.db") as store:
        fleet_rows = store.results("profile")
    from vischoose.results import exchange

    exported = tmp_path / "rows.json"
    exported.write_text(exchange.to_json(fleet_rows))
    result = runner.invoke(app, ["results", "import", str(exported)])
    assert result.exit_code == 0, result.stderr
    with open_store() as store:
        imported = store.results("profile")
    assert [r.record for r in imported] == [r.record for r in fleet_rows]
    assert [exchange.record_uid(r.record) for r in imported] == [exchange.record_uid(r.record) for r in fleet_rows]
    for facts in (raycluster.facts_of("a"), raycluster.facts_of("b")):
        with open_store() as store:
            assert [p.machine_kind for p in store.profiles(machine=facts.fingerprint)] == [facts.kind]


def test_a_rerun_reuses_what_the_store_has_for_each_kind(profiled, ray_cluster, runner, monkeypatch):
    _, home = profiled
    monkeypatch.setenv("VISCHOOSE_HOME", str(home))
    result = runner.invoke(app, ["profile", MODEL, "--cluster", ray_cluster.address, *FAST, "--json"])
    assert result.exit_code == 0, result.stderr
    for part in json.loads(result.stdout)["data"]["kinds"]:
        (row,) = part["profiles"]
        assert row["notes"][-1].startswith("reused: measured before on this kind of machine")
    with open_store(home / "results.db") as store:
        assert len(store.results("profile")) == 2  # nothing measured again


def test_fleet_lists_the_kinds_and_the_software_there(ray_cluster, runner):
    result = runner.invoke(app, ["fleet", "--cluster", ray_cluster.address, "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)["data"]
    assert data["nodes"] == 3  # the head too, which runs no job
    kinds = {k["kind"]: k for k in data["kinds"]}
    for name in ("a", "b"):
        facts = raycluster.facts_of(name)
        (node,) = kinds[facts.kind]["nodes"]
        assert (node["host"], node["machine"], node["cpus"]) == (facts.host, facts.fingerprint, 1.0)
        assert node["labels"]["sim/kind"] == name and node["resources"] == {f"kind_{name}": 1.0}
        assert kinds[facts.kind]["differences"] == []  # the same vischoose, source and packages as here
    only = runner.invoke(app, ["fleet", "--cluster", ray_cluster.address, "--on", "sim/pool=x"])
    assert only.exit_code == 0, only.stderr
    assert "Sim CPU A" in only.stdout and "Sim CPU B" not in only.stdout


def test_a_node_lost_mid_job_fails_its_rows_and_keeps_the_others(ray_cluster, tmp_path):
    """Node c (pool x, with node a) is removed as soon as the first model comes back: its unfinished rows fail
    naming it, are not stored, and the run fails with a summary; node a's rows are all kept."""
    from vischoose.errors import ProfilingError
    from vischoose.fleet import cluster, profiling
    from vischoose.requests.profile import ProfileRequest

    node_c = ray_cluster.add_node(**raycluster.kind_env("c", tmp_path / "nodes", "x"))
    request = ProfileRequest(models=(MODEL, "test_vit.r160_in1k"), device="cpu", threads=1, weights="random",
                             time_budget_s=0.3, batch_sizes=(1,), cluster=ray_cluster.address, on=("sim/pool=x",),
                             cold_start=False)
    removed: list[float] = []

    def progress(what: str, doing: str, elapsed: float) -> None:
        if doing != "queued" and not removed:
            ray_cluster.remove_node(node_c)
            removed.append(time.monotonic())

    with cluster.connect(request.cluster) as session:
        result = profiling.profile_fleet(session, request, progress=progress)
    lost_c = raycluster.facts_of("c")
    parts = {p.kind.id: p for p in result.parts}
    assert {r.profile.error for r in parts[raycluster.facts_of("a").kind].runs} == {None}
    assert parts[lost_c.kind].node.node.node_id == node_c.node_id
    failed = [r.profile for r in parts[lost_c.kind].runs if not r.profile.ok]
    named = f"node {parts[lost_c.kind].node.node.name} was lost during the job ("
    assert failed and all(p.error.startswith(named) and p.machine == lost_c.fingerprint for p in failed)
    with open_store() as store:
        assert all(p.ok for p in store.profiles())
        assert len(store.profiles()) == 4 - len(failed)
    with pytest.raises(ProfilingError) as err:
        profiling.failed(result)
    assert str(err.value).startswith(f"{len(failed)} of 4 profile rows failed; every other row is stored. node ")


def test_ctrl_c_cancels_the_remote_jobs_and_stores_no_row(ray_cluster):
    """Ctrl-C (a KeyboardInterrupt in this, the main thread) once the nodes measure: every job is cancelled, every
    process it started on the nodes stopped, and no row stored."""
    import _thread
    import threading

    from vischoose.fleet import cluster, profiling
    from vischoose.requests.profile import ProfileRequest

    request = ProfileRequest(models=(MODEL,), device="cpu", threads=1, weights="random", time_budget_s=60,
                             batch_sizes=(1, 2, 4), cluster=ray_cluster.address, cold_start=False)  # minutes: nothing ends before Ctrl-C
    before = set(_measuring(ray_cluster))  # the fork servers this module's earlier jobs left in their workers
    started: list[int] = []

    def press_ctrl_c() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not started:
            started.extend(set(_measuring(ray_cluster)) - before)
            time.sleep(0.5)
        _thread.interrupt_main()

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        with cluster.connect(request.cluster) as session:
            profiling.profile_fleet(session, request)
    assert started, "no measurement started on the nodes"
    with open_store() as store:
        assert store.count() == 0
    import psutil
    t0 = time.monotonic()
    left = set(_measuring(ray_cluster)) - before
    print("STARTED", started, "END", time.time())
    for pid in left:
        try:
            pr = psutil.Process(pid)
            par = pr.parent()
            print("LEFT", pid, pr.status(), pr.create_time(), pr.cmdline(), "parent", pr.ppid(), (par.cmdline() or [""])[0] if par else None, par.status() if par else None)
        except Exception as e:
            print("LEFT", pid, e)
    while left and time.monotonic() - t0 < 20:
        time.sleep(0.5)
        left = set(_measuring(ray_cluster)) - before
    print("GONE AFTER", time.monotonic() - t0, left)
    assert not left


def _measuring(ray_cluster) -> list[int]:
    """The measuring processes (children, fork servers) running for this module's nodes."""
    import psutil

    base, found = str(ray_cluster.vischoose_base), []
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if "vischoose.measure." not in line:
            continue
        try:
            if proc.environ().get("VISCHOOSE_HOME", "").startswith(base):
                found.append(proc.pid)
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
    return found


def _labels_half_right(tmp_path: Path) -> Path:
    """A CSV of 12 images whose labels are test_resnet's own top-1 for every other image: top-1 is 50 %."""
    from tests.inference.test_evaluation import make_images
    from vischoose.inference.prediction import predict

    images = make_images(tmp_path / "img", 12)
    ranked = predict(images, MODEL, top_k=6).images
    rows = ["path,label"] + [f"img/{p.name},{r.predictions[0 if i % 2 else 5].index}"
                             for i, (p, r) in enumerate(zip(images, ranked))]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "labels.csv"


@pytest.fixture
def int8_file(tmp_path) -> Path:
    """test_resnet (its weights cached here first) exported once as ONNX Runtime int8: the file every shard runs."""
    from vischoose.deploy.export import export_model
    from vischoose.requests.export import ExportRequest

    out = tmp_path / "resnet-int8.onnx"
    export_model(ExportRequest(model=MODEL, out=str(out), precision="int8", format="onnx"))
    return out


@pytest.mark.parametrize("deployed", [False, True], ids=["torch", "int8-file"])
def test_evaluation_sharded_over_two_nodes_equals_one_process(ray_cluster, cached_model, runner, tmp_path, deployed,
                                                              request):
    cached_model(MODEL)  # here only: the nodes' caches are empty, the weights are shipped
    data = _labels_half_right(tmp_path)
    graph = ["--graph", str(request.getfixturevalue("int8_file"))] if deployed else []
    args = ["evaluate", str(data), "-m", MODEL, "--batch-size", "4", "--json", "--no-save", *graph]
    one = runner.invoke(app, args)
    assert one.exit_code == 0, one.stderr
    sharded = runner.invoke(app, [*args, "--cluster", ray_cluster.address])
    assert sharded.exit_code == 0, sharded.stderr
    alone, merged = json.loads(one.stdout)["data"], json.loads(sharded.stdout)["data"]
    same = ["images", "top1", "top5", "top1_low", "top1_high", "dataset_id", "weights", "fp32_top1",
            "agreement_top1", "agreement_images", "recipe", "dtype", "graph", "drop_low", "drop_high",
            "variant_status", "verdict_note"]  # the verdict and paired interval over every image, as one process
    assert {k: merged[k] for k in same} == {k: alone[k] for k in same}
    assert (alone["world_size"], merged["world_size"]) == (1, 2)
    if not deployed:  # (int8 may move a class: the merge must equal one process's figure either way)
        assert alone["top1"] == 50.0
