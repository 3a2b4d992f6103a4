"""The fleet's parts that need no cluster: machine facts and kinds, --on, --machine, the address checks (an
unreachable or wrong address fails in seconds), the missing extra, recommend per kind on stored rows, and the
merge of evaluation shards."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from vischoose import machine
from vischoose.cli import app
from vischoose.errors import UsageError
from vischoose.fleet import advising, cluster, kinds
from vischoose.fleet.cluster import Node
from vischoose.fleet.kinds import NodeReport
from vischoose.records import Profile
from vischoose.report.flags import flag_of


def test_machine_facts_can_be_named_and_the_kind_leaves_the_host_out():
    here = machine.facts()
    a1 = machine.facts(json.dumps({"host": "a1", "cpu": "Graviton3", "cores": 16}))
    a2 = machine.facts(json.dumps({"host": "a2", "cpu": "Graviton3", "cores": 16}))
    b1 = machine.facts(json.dumps({"host": "a1", "cpu": "Graviton3", "cores": 64}))
    assert (a1.cpu, a1.cores, a1.memory_gib, a1.arch) == ("Graviton3", 16, here.memory_gib, here.arch)
    assert a1.fingerprint != a2.fingerprint and a1.kind == a2.kind  # two hosts, one kind
    assert b1.kind != a1.kind  # more cores: another kind
    assert machine.facts(json.dumps({"gpus": ["NVIDIA H100", "NVIDIA H100"]})).title.endswith(", 2x NVIDIA H100")
    assert here.fingerprint == machine.fingerprint() and here.kind == machine.kind()


def test_a_named_cpu_is_what_rows_say(monkeypatch):
    monkeypatch.setenv(machine.MACHINE_ENV, json.dumps({"cpu": "Sim CPU Z"}))
    assert machine.cpu_name() == "Sim CPU Z"
    assert machine.facts().cpu == "Sim CPU Z"


@pytest.mark.parametrize("text, error", [
    ("{", "VISCHOOSE_MACHINE is not JSON (Expecting property name enclosed in double quotes at column 2)."),
    ('{"cores": "16"}', "VISCHOOSE_MACHINE must be a JSON object of facts: host (str), cpu (str), cores (int), "
                        "memory_gib (int), arch (str), flags (list), gpus (list); got {\"cores\": \"16\"}."),
    ('{"colour": "red"}', "VISCHOOSE_MACHINE must be a JSON object of facts: host (str), cpu (str), cores (int), "
                          "memory_gib (int), arch (str), flags (list), gpus (list); got {\"colour\": \"red\"}."),
])
def test_bad_machine_facts(text, error):
    with pytest.raises(UsageError) as err:
        machine.facts(text)
    assert str(err.value) == error


def test_gpu_names_come_from_the_driver_files(tmp_path):
    for bus, model in (("0000:01:00.0", "NVIDIA H100 80GB HBM3"), ("0000:02:00.0", "NVIDIA H100 80GB HBM3")):
        (tmp_path / bus).mkdir()
        (tmp_path / bus / "information").write_text(f"Model: \t\t {model}\nIRQ:   42\n")
    assert machine.gpu_names(tmp_path) == ("NVIDIA H100 80GB HBM3",) * 2
    assert machine.gpu_names(tmp_path / "none") == ()


def report(node_id: str, host: str, cpu: str, labels: dict[str, str] | None = None, error: str | None = None,
           cpus: float = 4) -> NodeReport:
    node = Node(node_id=node_id, ip="10.0.0." + node_id[-1], hostname=host, cpus=cpus, labels=labels or {})
    if error:
        return NodeReport(node=node, error=error)
    facts = machine.facts(json.dumps({"host": host, "cpu": cpu}))
    return NodeReport(node=node, facts=facts, fingerprint=facts.fingerprint, kind=facts.kind, usable_cores=4)


def test_nodes_group_into_kinds_by_hardware_not_host():
    found = kinds.group([report("n3", "c", "Xeon", {"pool": "x"}), report("n1", "a", "Graviton3", {"pool": "x"}),
                         report("n2", "b", "Graviton3", {"pool": "y"}), report("n4", "d", "", error="no vischoose")])
    assert [[n.host for n in k.nodes] for k in found] == [["a", "b"], ["c"], ["d"]]
    assert found[0].title.startswith("Graviton3, ") and "pool" not in found[0].title  # labels differ within it
    assert found[1].title.endswith("(pool=x)")
    assert found[2].id == kinds.UNUSABLE and found[2].title == "vischoose does not run there"


def test_on_selects_labelled_nodes_with_cpus():
    nodes = [Node("h", "10.0.0.1", "head", 0, labels={"pool": "x"}),
             Node("n1", "10.0.0.2", "a", 4, labels={"pool": "x"}), Node("n2", "10.0.0.3", "b", 4, labels={"pool": "y"})]
    assert [n.node_id for n in kinds.select(nodes, kinds.labels(["pool=x"]))] == ["n1"]
    assert [n.node_id for n in kinds.select(nodes, {})] == ["n1", "n2"]
    with pytest.raises(UsageError) as err:
        kinds.select(nodes, {"pool": "z"})
    assert str(err.value) == "No node of the cluster has the labels pool=z."
    assert err.value.hint == "The nodes' labels: pool=x, pool=y (vischoose fleet lists them)."
    with pytest.raises(UsageError) as err:
        kinds.labels(["pool"])
    assert str(err.value) == "on 'pool' is not LABEL=VALUE."  # the field, for Python callers
    assert err.value.render(flag_of)[0] == "--on 'pool' is not LABEL=VALUE."  # the flag, for the CLI


def test_version_differences_are_named():
    here = {"vischoose": "0.1.0", "torch": "2.14.1", "openvino": "2026.4.1", "timm": "1.0.31"}
    there = {"vischoose": "0.1.0", "torch": "2.13.0", "openvino": None, "timm": "1.0.31", "ray": "2.60.0"}
    assert kinds.differences(here, there) == ["torch 2.13.0 (here 2.14.1)", "no openvino", "ray 2.60.0 (not here)"]
    assert kinds.differences(here, dict(here)) == []


def test_machine_query_matches_ids_fingerprints_and_words():
    found = [("3fa2c1d0e9b7", "Graviton3, 16 cores (2 machines)", {"aaaa11112222"}),
             ("7c01aa55e0f3", "Intel Xeon Platinum 8488C (1 machine)", {"bbbb11112222"})]
    assert advising.matching("all", found) == ["3fa2c1d0e9b7", "7c01aa55e0f3"]
    assert advising.matching("3fa2", found) == ["3fa2c1d0e9b7"]
    assert advising.matching("bbbb11", found) == ["7c01aa55e0f3"]
    assert advising.matching("xeon 8488c", found) == ["7c01aa55e0f3"]
    with pytest.raises(UsageError) as err:
        advising.matching("epyc", found)
    assert err.value.render(flag_of)[0] == (
        "No kind of machine matches --machine 'epyc'. Kinds: 3fa2c1d0e9b7 (Graviton3, 16 cores (2 machines)); "
        "7c01aa55e0f3 (Intel Xeon Platinum 8488C (1 machine)).")


# ---- the address: a one-line error within seconds, never a hang --------------------------------------------

def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_server():
    """A TCP server on loopback that accepts connections and never answers (ray.init would wait minutes on it)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for conn in held:
        conn.close()


def test_an_unreachable_cluster_fails_in_seconds(runner):
    port = closed_port()
    start = time.monotonic()
    result = runner.invoke(app, ["profile", "resnet50", "--cluster", f"127.0.0.1:{port}"])
    assert time.monotonic() - start < 10
    assert result.exit_code == 3
    assert result.stderr.splitlines() == [
        f"Error: Cannot reach the Ray cluster at 127.0.0.1:{port}: Connection refused.",
        f"Hint: Check that the cluster runs (ray status --address 127.0.0.1:{port} on the head) and that this machine "
        "can reach it."]


def test_a_port_that_answers_nothing_fails_in_seconds(runner, silent_server):
    start = time.monotonic()
    result = runner.invoke(app, ["fleet", "--cluster", f"127.0.0.1:{silent_server}"])
    assert time.monotonic() - start < 10
    assert result.exit_code == 3
    assert result.stderr.splitlines()[0] == f"Error: The Ray cluster at 127.0.0.1:{silent_server} did not answer " \
                                            f"within {cluster.PROBE_TIMEOUT_S:g} s."


def test_a_port_that_answers_something_else_is_not_a_cluster():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def greet() -> None:
        conn, _ = server.accept()
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        conn.close()

    threading.Thread(target=greet, daemon=True).start()
    address = cluster.Address("127.0.0.1", server.getsockname()[1])
    with pytest.raises(cluster.ClusterError) as err:
        cluster.probe(address, timeout_s=5)
    server.close()
    assert str(err.value) == f"{address} answered, but not as a Ray cluster (no gRPC server there)."


@pytest.mark.parametrize("text", ["nohost", "host:port", "host:0", "ray://:10001"])
def test_an_address_that_is_not_one(runner, text):
    result = runner.invoke(app, ["fleet", "--cluster", text])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == f"Error: --cluster '{text}' is not an address."


def test_cluster_without_the_extra_exits_2_with_the_pip_command(runner, monkeypatch):
    from vischoose.requests import fields

    monkeypatch.setattr(fields, "RAY_MODULE", "ray_not_installed_here")
    for args in (["profile", "resnet50"], ["evaluate", "data", "-m", "resnet50"], ["recommend"], ["fleet"]):
        result = runner.invoke(app, [*args, "--cluster", "127.0.0.1:6379"])
        assert result.exit_code == 2, args
        assert result.stderr.splitlines() == ["Error: --cluster needs Ray, which is not installed here.",
                                              "Hint: pip install 'vischoose[fleet]'"]


@pytest.mark.parametrize("args, flags", [
    (["profile", "resnet50", "--on", "pool=x"], "--on needs"),
    (["profile", "resnet50", "--every-node", "--fresh"], "--every-node and --fresh need"),
    (["evaluate", "data", "-m", "resnet50", "--on", "pool=x"], "--on needs"),
    (["recommend", "--machine", "all", "--measure"], "--measure needs"),
])
def test_fleet_options_need_a_cluster(runner, args, flags):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"Error: {flags} --cluster: that is where the nodes are.",
                                          "Hint: Add --cluster HOST:PORT (or auto)."]


# ---- recommend per kind on stored rows ---------------------------------------------------------------------

def row(model: str, kind: str, latency_ms: float, cpu: str) -> Profile:
    from vischoose.models import catalog

    entry = catalog.load()[model]
    return Profile(model=model, tag=entry.tag, device="cpu", dtype="float32", batch_size=1,
                   input_size=entry.input_size, family=entry.family, machine=f"{kind}-machine", machine_kind=kind,
                   device_name=cpu, threads=2, latency_ms_p50=latency_ms, latency_ms_p90=latency_ms,
                   throughput_img_s=1000 / latency_ms, params_m=entry.params_m, top1=entry.top1)


def test_recommend_answers_per_kind_from_one_command(runner, tmp_path):
    """resnet18 is faster on one kind, resnet34 on the other: each kind's section chooses its own."""
    from vischoose.results.store import open_store

    with open_store() as store:
        store.add_profiles([row("resnet18", "aaaa00000001", 5.0, "Graviton3"),
                            row("resnet34", "aaaa00000001", 9.0, "Graviton3"),
                            row("resnet18", "bbbb00000002", 7.0, "Xeon 8488C"),
                            row("resnet34", "bbbb00000002", 3.0, "Xeon 8488C")])
    preset = tmp_path / "fast.toml"
    preset.write_text('name = "fast"\ndescription = "lowest latency"\n[measure]\ndevice = "cpu"\nthreads = 2\n'
                      'batch_size = [1]\ndtype = "float32"\n[constraints]\nmax_latency_ms = 100\n[candidates]\n'
                      'families = ["resnet"]\nprefer = []\n[rank]\nsort = ["latency_ms"]\n')
    args = ["recommend", "--target", str(preset), "--models", "resnet18", "--models", "resnet34"]
    result = runner.invoke(app, [*args, "--machine", "all", "--json"])
    assert result.exit_code == 0, result.stderr
    chosen = {s["kind"]: s["recommendation"]["chosen"]["model"] for s in json.loads(result.stdout)["data"]}
    assert chosen == {"aaaa00000001": "resnet18", "bbbb00000002": "resnet34"}
    result = runner.invoke(app, [*args, "--machine", "xeon"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == "=== On Xeon 8488C (1 machine) (kind bbbb00000002) ==="
    assert result.stdout.splitlines()[1].startswith("Recommended for 'fast': resnet34 ")
    tight = runner.invoke(app, [*args, "--machine", "all", "--max-latency-ms", "4"])
    assert tight.exit_code == 4
    assert "Nothing fits here: " in tight.stdout
    assert tight.stderr.splitlines()[0] == "Error: No model fits on 1 of 2 kinds of machine: Graviton3 (1 machine)."


# ---- evaluation shards merged ------------------------------------------------------------------------------

def test_merged_shards_count_as_one_process():
    from vischoose.inference import intervals
    from vischoose.inference.loop import Evaluation, Tally, merge
    from vischoose.records import EvalResult

    def part(images: int, top1: int, top5: int, seconds: float) -> Evaluation:
        result = EvalResult(model="m", tag="m", dataset="d", images=images, top1=0.0, top5=0.0, dataset_id="x")
        return Evaluation(result=result, tally=Tally(images, top1, top5, seconds))

    merged = merge([part(334, 250, 310, 2.0), part(333, 251, 300, 4.0), part(0, 0, 0, 0.0)])
    wilson = intervals.wilson(501, 667)
    assert (merged.result.images, merged.result.top1, merged.result.top5) == (667, 100 * 501 / 667, 100 * 610 / 667)
    assert (merged.result.top1_low, merged.result.top1_high) == (wilson.low, wilson.high)
    assert merged.result.images_per_s == 667 / 4.0 and merged.result.world_size == 3


def test_merged_shards_are_judged_once_over_every_image_with_the_paired_interval_of_the_whole():
    """A deployed file's shards: their paired tables (right with eager and the file, only eager, only the file,
    neither) summed, so the drop's interval and the verdict are those of one process counting every image."""
    from vischoose.deploy.evaluate import judged
    from vischoose.inference import intervals
    from vischoose.inference.loop import Deployed, Evaluation, Tally, merge
    from vischoose.records import EvalResult
    from vischoose.runtimes.agreement import Agreement

    def part(images: int, agreeing: int, paired: tuple[int, int, int, int]) -> Evaluation:
        result = EvalResult(model="m", tag="m", dataset="d", images=images, top1=0.0, top5=0.0, dataset_id="x",
                            weights="pretrained@abc")
        found = Deployed(precision="int8", family="convolutional", recipe="r", file_mb=1.0, export_s=1.0,
                         quantize_s=1.0, calibration="none", calibration_images=0,
                         agreement=Agreement(images, agreeing / images, 0.5, 0.99), eager_images_per_s=None,
                         runtime="rt", runtime_version="1")
        hits = paired[0] + paired[2]
        return Evaluation(result=result, deployed=found, tally=Tally(images, hits, images, 1.0, paired[0] + paired[1],
                                                                     0.5, paired, 9.0))

    merged = judged(merge([part(100, 90, (70, 6, 2, 22)), part(100, 95, (72, 3, 1, 24))]))
    whole = intervals.paired_counts(142, 9, 3, 46)
    assert (merged.result.drop_low, merged.result.drop_high) == (whole.low, whole.high)
    assert merged.result.fp32_top1 - merged.result.top1 == pytest.approx(whole.value)
    assert merged.result.variant_status == "rejected"  # 92.5% of 200 images agree: below 99%
    assert merged.result.verdict_note.startswith("top-1 agreement 92.5% < 99.0% on 200 images")


def test_shards_that_counted_different_things_are_not_merged():
    from vischoose.fleet import evaluating
    from vischoose.inference.loop import Deployed, Evaluation, Tally
    from vischoose.records import EvalResult
    from vischoose.runtimes.agreement import Agreement

    def part(dataset_id: str, sha256: str | None = None) -> Evaluation:
        result = EvalResult(model="m", tag="m", dataset="d", images=4, top1=50.0, top5=100.0, dataset_id=dataset_id)
        found = None if sha256 is None else Deployed(
            precision="int8", family="convolutional", recipe="r", file_mb=1.0, export_s=1.0, quantize_s=1.0,
            calibration="none", calibration_images=0, agreement=Agreement(4, 1.0, 0.0, 1.0), eager_images_per_s=None,
            runtime="rt", runtime_version="1", sha256=sha256)
        return Evaluation(result=result, deployed=found, tally=Tally(4, 2, 4, 1.0, 2, 0.5))

    with pytest.raises(UsageError) as err:
        evaluating._merged([part("x"), part("y")], "/data/val", None)
    assert str(err.value) == "The nodes see different data sets at /data/val (2 different image lists or labels)."
    with pytest.raises(UsageError) as err:
        evaluating._merged([part("x", "aa"), part("x", "bb")], "/data/val", None)
    assert str(err.value).startswith("The nodes built different files from the same model and images")
    merged = evaluating._merged([part("x", "aa"), part("x", "aa")], "/data/val", None)
    assert (merged.result.images, merged.result.top1, merged.result.fp32_top1) == (8, 50.0, 50.0)
    assert merged.deployed.agreement.n_images == 8 and merged.result.agreement_top1 == 1.0


def test_a_lost_shard_runs_again_on_another_node(monkeypatch):
    from vischoose.errors import ProfilingError
    from vischoose.fleet import evaluating, jobs
    from vischoose.requests.evaluate import EvaluateRequest

    a, b = report("n1", "a", "Sim A"), report("n2", "b", "Sim B")
    request = EvaluateRequest(data="/data", model="m", cluster="127.0.0.1:6379")  # the nodes read /data, not here
    shards = [jobs.EvalShard(i, 2, request) for i in range(2)]
    calls: list[list[tuple[str, int]]] = []

    def dispatch(session, placed, on_result):
        calls.append([(node.host, job.index) for node, job in placed])
        for node, job in placed:
            lost = node.host == "b" and len(calls) == 1
            on_result(node, job, None if lost else f"shard {job.index} on {node.host}", "node b was lost" if lost
                      else None)

    class Session:
        def nodes(self):
            return [a.node]  # b is gone

    monkeypatch.setattr(jobs, "dispatch", dispatch)
    found = evaluating._run(Session(), [(a, shards[0]), (b, shards[1])], [a, b])
    assert calls == [[("a", 0), ("b", 1)], [("a", 1)]]
    assert found == {0: "shard 0 on a", 1: "shard 1 on a"}
    calls.clear()
    with pytest.raises(ProfilingError) as err:
        evaluating._run(Session(), [(b, shards[1])], [b])
    assert str(err.value) == ("Evaluating on the cluster failed: shard 2 of 2: node b was lost (no other node could "
                              "take it).")


def test_stored_rows_are_reused_per_kind_and_protocol():
    from dataclasses import replace

    from vischoose.fleet import profiling
    from vischoose.models import catalog
    from vischoose.requests.profile import ProfileRequest

    one, other = report("n1", "a", "Graviton3"), report("n2", "b", "Graviton3")  # two hosts, one kind
    options = ProfileRequest(device="cpu", threads=2, batch_sizes=(1, 8), weights="random")
    ref = catalog.parse_model_ref("resnet18")
    rows = [replace(row("resnet18", one.kind, 5.0, "Graviton3"), machine=one.fingerprint, batch_size=size,
                    threads_requested=2, weights="random") for size in (1, 8)]
    assert profiling.reusable(rows, ref, options, other) == rows  # the kind's rows, measured on another host
    assert profiling.reusable(rows, ref, options, other, own=True) is None  # --every-node: each node its own
    assert profiling.reusable(rows[:1], ref, options, other) is None  # batch 8 missing
    for changed in (dict(dtype="bfloat16"), dict(threads_requested=4), dict(layout="channels_last"),
                    dict(weights="pretrained@abc"), dict(machine_kind="another kind")):
        assert profiling.reusable([replace(r, **changed) for r in rows], ref, options, other) is None, changed


def test_recommend_per_kind_refuses_other_sources_of_figures(runner, tmp_path):
    result = runner.invoke(app, ["recommend", "--machine", "all", "--data", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == ("Error: --data evaluates the candidates on this machine; per kind of "
                                             "machine it does not run.")
    result = runner.invoke(app, ["recommend", "--machine", "all", "--results", str(tmp_path / "x.json")])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == "Error: --results and --machine/--cluster both say where the figures " \
                                            "come from."


# ---- the fleet's options are request fields, checked when the request is built --------------------------------

def test_cluster_options_are_checked_in_the_requests():
    from vischoose.requests.evaluate import EvaluateRequest
    from vischoose.requests.profile import ProfileRequest
    from vischoose.requests.recommend import RecommendRequest

    with pytest.raises(UsageError) as err:
        ProfileRequest(optimize=True, cluster="127.0.0.1:6379")
    assert str(err.value) == "optimize searches on this machine; it does not run with cluster."
    with pytest.raises(UsageError) as err:
        ProfileRequest(every_node=True)
    assert (str(err.value), err.value.field) == ("every_node needs cluster: that is where the nodes are.", "every_node")
    with pytest.raises(UsageError) as err:
        RecommendRequest(machine="all", measure="decision")
    assert str(err.value) == "measure needs cluster: that is where the nodes are."
    with pytest.raises(UsageError) as err:
        EvaluateRequest(data="/nowhere", model="m", cluster="ray://:10001")
    assert str(err.value) == "cluster 'ray://:10001' is not an address."
    request = ProfileRequest(models=("resnet18",), cluster=" auto ", on=[" pool = x "], every_node=True, fresh=True)
    assert (request.cluster, request.on) == ("auto", ("pool=x",))
    assert request.local == ProfileRequest(models=("resnet18",))  # what a node runs
    with pytest.raises(UsageError) as err:
        EvaluateRequest(data="/nowhere", model="m", cluster="auto", shard=(2, 2))
    assert str(err.value) == "shard (2, 2) is not (index, count) with 0 <= index < count."


def test_a_node_runs_the_request_without_its_cluster_options(monkeypatch, tmp_path):
    """ProfileJob runs measure.runner.profile_models with the request as asked, for its one model, nothing of the
    cluster in it; EvalShard runs deploy.evaluate.evaluate with its shard."""
    from vischoose.deploy import evaluate as deployed
    from vischoose.fleet import jobs
    from vischoose.measure import runner
    from vischoose.requests.evaluate import EvaluateRequest
    from vischoose.requests.profile import ProfileRequest

    seen = []
    monkeypatch.setattr(runner, "profile_models", lambda request, **_: seen.append(request) or [])
    monkeypatch.setattr(deployed, "evaluate", lambda request, *_: seen.append(request) or "counted")
    asked = ProfileRequest(models=("resnet18", "resnet34"), threads=2, cluster="auto", on=("pool=x",), fresh=True)
    assert jobs.ProfileJob("resnet34", asked).run() == []
    assert seen.pop() == ProfileRequest(models=("resnet34",), threads=2)
    (tmp_path / "img").mkdir()
    shard = jobs.EvalShard(1, 3, EvaluateRequest(data=str(tmp_path / "img"), model="resnet18", cluster="auto"))
    assert shard.run() == "counted"
    assert seen.pop() == EvaluateRequest(data=str(tmp_path / "img"), model="resnet18", shard=(1, 3))


def test_the_python_recommend_answers_for_one_machine_and_says_where_per_kind_is():
    import vischoose

    with pytest.raises(UsageError) as err:
        vischoose.recommend("cloud", machine="all")
    assert str(err.value) == ("vischoose.recommend answers for one machine; machine and cluster give one answer per "
                              "kind of machine.")
    assert err.value.hint == "Call vischoose.fleet.advising.advise_stored(request) or advise_cluster(session, request)."
