"""The server scenario with MLPerf's LoadGen itself: a system under test of known capacity served to LoadGen (against
queueing theory, tests/queueing.py), the parent's children and rows with a recording runner (thread split on a fake
core count), and the CLI on a tiny real model: the stored row, export/import, the plot, the report, the cost."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests import queueing
from vischoose.cli import app
from vischoose.measure import options as protocol
from vischoose.measure import process, serving, serving_runner
from vischoose.measure import serving_search as ss
from vischoose.results.records import Profile


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


# ---- usage ------------------------------------------------------------------------------------------------------

def test_server_scenario_without_loadgen_exits_2_with_the_pip_command(runner, monkeypatch):
    monkeypatch.setattr(serving, "loadgen_missing", lambda: True)
    result = runner.invoke(app, ["profile", "test_resnet.r160_in1k", "--scenario", "server", "--slo-ms", "50",
                                 "--device", "cpu"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "Error: --scenario server runs MLPerf's LoadGen (mlcommons-loadgen), which is not installed here.",
        "Hint: pip install 'vischoose[serve]'"]


@pytest.mark.parametrize("args, message", [
    (["--slo-ms", "50"], "Error: --slo-ms is for --scenario server (LoadGen's Server runs)."),
    (["--official"], "Error: --official is for --scenario server (LoadGen's Server runs)."),
    (["--scenario", "server"], "Error: --scenario server needs a p99 latency bound: --slo-ms MS."),
    (["--scenario", "multi-stream"], "Error: Unknown scenario 'multi-stream' (expected one of: single-stream, "
                                     "offline, server)."),
    (["--scenario", "server", "--slo-ms", "0"], "Error: --slo-ms must be greater than 0 (got 0)."),
    (["--price-per-hour", "-1"], "Error: --price-per-hour must be greater than 0 (got -1)."),
    (["--target-qps", "0"], "Error: --target-qps must be greater than 0 (got 0)."),
])
def test_server_usage_errors_exit_2(runner, args, message):
    result = runner.invoke(app, ["profile", "test_resnet.r160_in1k", "--device", "cpu", *args])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == message


# ---- the parent: children and rows, on a fake core count -----------------------------------------------------------

class RecordingRunner:
    """Stands in for the child processes: records each job and its environment, answers as a child would."""

    def __init__(self, service_s: float, runs: list[ss.Run]) -> None:
        self.service_s, self.runs, self.jobs = service_s, runs, []

    def __call__(self, cmd: list[str], env: dict[str, str], on_line) -> int:
        job = json.loads(Path(cmd[-1]).read_text())
        self.jobs.append((job, env))
        result = {"status": "done", "phase": "done", "batch_size": None, "notes": [], "memory": {}, "throughput": {},
                  "model": {"tag": "test_resnet.r160_in1k", "arch": "test_resnet", "params": 1000,
                            "weights": "random", "input_size": 160, "pretrained_input_size": 160},
                  "conditions": {"device": "cpu", "threads": job["threads"], "device_name": "cpu"}}
        if job["mode"] == "serve-profile":  # threads do not help: each instance always takes service_s a request
            result["service"] = {"1": [self.service_s] * 5}
        else:
            result.update(runs=[r.to_dict() for r in self.runs], loadgen_version="6.0.17")
        Path(job["result_path"]).write_text(json.dumps(result))
        return 0


def test_instances_never_take_more_threads_than_the_cores(monkeypatch):
    monkeypatch.setattr(process, "usable_cores", lambda *a, **k: 6)
    runs = [ss.Run(400.0, True, 2000, 3.0, 5.0, 8.0, scheduled_qps=398.0, summary="Result is : VALID"),
            ss.Run(440.0, False, 2200, 9.0, 30.0, 80.0, invalid_reason="Reduce target QPS to improve latency.")]
    recorder = RecordingRunner(0.010, runs)
    options = protocol.resolve_options(None, device="cpu", threads=6, weights="random")
    (run,) = serving_runner.serve_models(["resnet18"], options, serving_runner.ServeRequest(50.0), runner=recorder,
                                         save=False)
    served = [(job, env) for job, env in recorder.jobs if job["mode"].startswith("serve")]
    assert {(j["serve"]["instances"], j["serve"]["threads"]) for j, _ in served if j["mode"] == "serve-profile"} == \
        {(1, 6), (2, 3), (3, 2), (6, 1)}
    for job, env in served:
        assert job["serve"]["instances"] * job["serve"]["threads"] <= 6
        assert job["threads"] == job["serve"]["threads"] == int(env["OMP_NUM_THREADS"])
    p = run.profile
    assert (p.serve_instances, p.serve_threads) == (6, 1)  # threads do not help here: the most instances win
    assert p.serve_qps == 398.0 and p.serve_target_qps == 400.0 and p.serve_valid  # never the INVALID 440
    assert p.scenario == "server" and p.slo_ms == 50.0 and p.serve_runs == 2 and p.loadgen_version == "6.0.17"
    assert p.serve_min_queries == 662 and p.serve_min_duration_s == 5.0 and p.serve_official is False
    curve = json.loads(p.serve_curve)
    assert [r[0] for r in curve["runs"]] == [400.0, 440.0] and curve["model"]


def test_a_search_without_a_valid_run_says_why_and_reports_no_rate():
    recorder = RecordingRunner(0.010, [ss.Run(50.0, False, 662, invalid_reason="Reduce target QPS to improve "
                                                                                "latency.")])
    options = protocol.resolve_options(None, device="cpu", threads=1, weights="random")
    (run,) = serving_runner.serve_models(["resnet18"], options, serving_runner.ServeRequest(50.0), runner=recorder,
                                         save=False)
    p = run.profile
    assert p.ok and p.serve_qps is None and p.serve_valid is False
    assert p.serve_note == "no LoadGen run was VALID (the lowest, 50 QPS: Reduce target QPS to improve latency.)"


# ---- LoadGen serving a system of known capacity ---------------------------------------------------------------------

def sleep_jitter_ms(target_s: float = 0.004, count: int = 200) -> float:
    """How late time.sleep wakes at its 99th percentile here, ms: what a busy machine adds to every latency."""
    late = []
    for _ in range(count):
        begin = time.perf_counter()
        time.sleep(target_s)
        late.append(time.perf_counter() - begin - target_s)
    return 1e3 * sorted(late)[int(0.99 * count)]


@pytest.mark.slow
def test_loadgen_sustains_what_queueing_theory_gives(tmp_path):
    """One instance of a 4 ms forward (two threads; 8 ms on one), p99 bound 16 ms: M/D/1. LoadGen's verdicts put the
    highest VALID rate within 10% of theory, the settings are one instance with both threads, nothing INVALID is
    reported. Real time: on a machine so busy that sleeps wake late, latencies are not the system's."""
    late = sleep_jitter_ms()
    if late > 0.5:
        pytest.skip(f"this machine is too busy for a real-time check: time.sleep wakes {late:.1f} ms late (p99)")
    budget = ss.Budget(3000, 1.0, max_run_s=40.0)  # 3000 queries: the count over the bound scatters less

    def forwards(instances: int, threads: int) -> list:
        return [lambda x, s=0.008 / threads: time.sleep(s)] * instances

    import numpy as np

    outcome = serving.search_in_process(forwards, np.zeros((64, 1), np.float32), 2, 16.0, budget, tmp_path,
                                        max_batch=1, seconds_per_size=0.5)
    theory = queueing.md_c_rate(0.004, 1, 0.016, budget)
    assert outcome.chosen.settings == ss.ServeSettings(1, 2)
    assert outcome.best is not None and outcome.best.valid and "Result is : VALID" in outcome.best.summary
    assert outcome.best.target_qps == pytest.approx(theory, rel=0.10)


@pytest.mark.slow
def test_loadgen_runs_judge_what_they_see(tmp_path):
    """Far below capacity a run is VALID, far above it INVALID, with LoadGen's reasons; busy machine or not."""
    import numpy as np

    sut = serving.SystemUnderTest([lambda x: time.sleep(0.002)], np.zeros((64, 1), np.float32), ss.ServeSettings())
    harness = serving.LoadGen(sut, 64)
    budget = ss.Budget(459, 0.5, max_run_s=20.0)
    try:
        calm, version = serving.server_run(harness, 60.0, 200.0, budget, tmp_path / "calm")
        flooded, _ = serving.server_run(harness, 2000.0, 10.0, budget, tmp_path / "flooded")
    finally:
        harness.close()
        sut.close()
    assert calm.valid and calm.early_stopping_met and calm.queries >= 459 and calm.p99_ms < 200.0
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert not flooded.valid and flooded.invalid_reason.startswith("Reduce target QPS")
    assert ss.sustained([calm, flooded]) == calm


# ---- the CLI on a tiny real model -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_profile_server_on_a_real_model_stores_plots_and_costs(runner, tmp_path, monkeypatch):
    args = ["profile", "test_resnet.r160_in1k", "--weights", "random", "--runtime", "onnxruntime", "--precision",
            "fp32", "--scenario", "server", "--slo-ms", "200", "--time-budget", "5", "--price-per-hour", "0.68",
            "--target-qps", "1000"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (row,) = [r.record for r in _stored(runner)]
    assert row.scenario == "server" and row.serve_valid and row.serve_qps > 0 and row.runtime == "onnxruntime"
    assert row.serve_instances * row.serve_threads <= process.usable_cores()
    assert "Result is : VALID" in row.loadgen_summary and row.serve_p99_ms <= 200.0
    per_million = 0.68 / (row.serve_qps * 3600) * 1e6
    assert f"USD {per_million:,.3f} per million images at USD 0.68/h" in result.stdout
    machines = math.ceil(1000 / row.serve_qps)
    assert f"1000 QPS at the bound needs {machines} machines (USD {machines * 0.68:,.2f}/h)" in result.stdout
    exported = tmp_path / "served.json"
    assert runner.invoke(app, ["results", "export", "--out", str(exported)]).exit_code == 0
    monkeypatch.setenv("VISCHOOSE_HOME", str(tmp_path / "elsewhere"))
    assert runner.invoke(app, ["results", "import", str(exported)]).exit_code == 0
    (again,) = [r.record for r in _stored(runner)]
    assert again == row
    plot = tmp_path / "load.png"
    assert runner.invoke(app, ["results", "plot", "--x", "load", "--out", str(plot)]).exit_code == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = tmp_path / "report.md"
    assert runner.invoke(app, ["results", "report", "--out", str(report)]).exit_code == 0
    assert "## Serving (MLPerf LoadGen Server)" in report.read_text()
    assert (tmp_path / "report-serving.png").is_file()


def _stored(runner: CliRunner) -> list:
    from vischoose.results.store import open_store

    with open_store() as db:
        return [r for r in db.results(kind="profile")]


def test_server_rows_round_trip_through_the_store_and_exports(tmp_path):
    from vischoose.results import exchange
    from vischoose.results.store import open_store

    row = Profile(model="m", tag="m.t", device="cpu", dtype="float32", batch_size=8, input_size=224, scenario="server",
                  slo_ms=100.0, serve_qps=123.4, serve_valid=True, serve_instances=2, serve_threads=1,
                  serve_max_batch=8, serve_max_wait_ms=2.5, serve_curve=json.dumps({"runs": [[1.0, 2.0, 3, 4, True]]}),
                  loadgen_summary="Result is : VALID\n  Early stopping satisfied: Yes\n", serve_official=False)
    with open_store() as db:
        db.add_profile(row)
        stored = db.results(kind="profile")
    assert stored[0].record == row
    for write in (exchange.to_json, exchange.to_csv):
        path = tmp_path / f"out.{write.__name__[3:]}"
        path.write_text(write(stored))
        assert exchange.read_results_file(path) == [row]


def test_the_load_plot_needs_server_rows(tmp_path):
    from vischoose.errors import UsageError
    from vischoose.report import plots

    plain = Profile(model="m", tag="m.t", device="cpu", dtype="float32", batch_size=8, input_size=224)
    with pytest.raises(UsageError, match="^Nothing to plot: no server-scenario results.$"):
        plots.plot_serving([plain], tmp_path / "x.png")
    served = plain.__class__(**{**plain.to_dict(), "scenario": "server", "slo_ms": 50.0, "serve_qps": 80.0,
                                "serve_target_qps": 80.0, "serve_curve": json.dumps({
                                    "runs": [[80.0, 5.0, 9.0, 30.0, True], [90.0, 8.0, 40.0, 120.0, False]],
                                    "model": [[10.0, 4.0, 8.0], [90.0, 9.0, 70.0]], "settings": "1 x 2"})})
    out = plots.plot_serving([plain, served], tmp_path / "x.png")
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_costs_at_the_sustained_and_the_best_offline_rate():
    from vischoose.recommendation import cost
    from vischoose.report import serving as report_serving

    offline = [Profile(model="m", tag="m.t", device="cpu", dtype="int8", batch_size=b, input_size=224,
                       runtime="onnxruntime", throughput_img_s=rate) for b, rate in ((1, 50.0), (8, 120.0))]
    server = Profile(model="m", tag="m.t", device="cpu", dtype="int8", batch_size=8, input_size=224,
                     runtime="onnxruntime", scenario="server", slo_ms=100.0, serve_qps=90.0)
    found = cost.costs([*offline, server], 0.68, 250.0)
    assert {(c.server, c.rate) for c in found} == {(False, 120.0), (True, 90.0)}  # the best offline batch size
    assert cost.cost_per_million(0.68, 90.0) == pytest.approx(0.68 / (90.0 * 3600) * 1e6)
    assert cost.fleet(250.0, 90.0, 0.68) == cost.Fleet(3, 3 * 0.68, 90.0)
    assert cost.fleet(180.0, 90.0, None).machines == 2  # exactly two machines' worth
    assert report_serving.cost_lines(found, 0.68, 250.0) == [
        "m (onnxruntime int8): 120.0 img/s offline (batch 8); USD 1.574 per million images at USD 0.68/h; 250 QPS "
        "with no latency bound (offline) needs 3 machines (USD 2.04/h)",
        "m (onnxruntime int8): 90.0 QPS sustained at p99 <= 100 ms; USD 2.099 per million images at USD 0.68/h; 250 "
        "QPS at the bound needs 3 machines (USD 2.04/h)"]
    assert cost.costs(offline, None, None) == []


def test_results_list_shows_the_sustained_rate_of_a_server_row(runner):
    from vischoose.results.store import open_store

    with open_store() as db:
        db.add_profile(Profile(model="m", tag="m.t", device="cpu", dtype="float32", batch_size=8, input_size=224,
                               scenario="server", slo_ms=100.0, serve_qps=123.4))
    result = runner.invoke(app, ["results", "list"])
    assert result.exit_code == 0
    assert re.search(r"m \(server, p99 <= 100 ms\)\s.*\s123\.4\s", result.stdout)
