"""profile --scenario server through the CLI: its usage errors (exact wording), a tiny real model served to MLPerf's
LoadGen (the stored row, export/import, the load plot, the report, the cost lines), and results list's server rows."""

from __future__ import annotations

import math
import re

import pytest

from vischoose.cli import app
from vischoose.measure import process, serving_runner
from vischoose.records import Profile
from vischoose.requests import profile as profile_request


def test_server_scenario_without_loadgen_exits_2_with_the_pip_command(runner, monkeypatch):
    monkeypatch.setattr(profile_request, "loadgen_missing", lambda: True)
    result = runner.invoke(app, ["profile", "test_resnet.r160_in1k", "--scenario", "server", "--slo-ms", "50",
                                 "--device", "cpu"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "Error: --scenario server is not available here: it runs MLPerf's LoadGen (mlcommons-loadgen), which is not "
        "installed.",
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
    (["--scenario", "server", "--slo-ms", "50", "--optimize"],
     "Error: --optimize searches the single-stream and offline settings; --scenario server searches its own "
     "(instances, dynamic batching)."),
])
def test_server_usage_errors_exit_2(runner, args, message):
    result = runner.invoke(app, ["profile", "test_resnet.r160_in1k", "--device", "cpu", *args])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == message


@pytest.mark.slow
def test_profile_server_on_a_real_model_stores_plots_and_costs(runner, tmp_path, monkeypatch):
    # short service-time ladders leave the 30 s budget to LoadGen: a tiny model's first runs, at thousands of QPS,
    # are often INVALID (the queueing model leaves out the Python server's own cost per request)
    monkeypatch.setattr(serving_runner, "SECONDS_PER_SIZE", 0.3)
    args = ["profile", "test_resnet.r160_in1k", "--weights", "random", "--runtime", "onnxruntime", "--precision",
            "fp32", "--scenario", "server", "--slo-ms", "200", "--time-budget", "30", "--price-per-hour", "0.68",
            "--target-qps", "1000"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (row,) = [r.record for r in _stored()]
    assert row.scenario == "server" and row.serve_valid and row.serve_qps > 0 and row.runtime == "onnxruntime"
    assert row.serve_instances * row.serve_threads <= process.usable_cores()
    assert "Result is : VALID" in row.loadgen_summary and row.serve_p99_ms <= 200.0
    assert row.others_cpu_cores >= 0 and row.contended is None  # metered while timed (conftest: no limit)
    per_million = 0.68 / (row.serve_qps * 3600) * 1e6
    assert f"USD {per_million:,.3f} per million images at USD 0.68/h" in result.stdout
    machines = math.ceil(1000 / row.serve_qps)
    word = "machine" if machines == 1 else "machines"
    assert f"1000 QPS at the bound needs {machines} {word} (USD {machines * 0.68:,.2f}/h)" in result.stdout
    exported = tmp_path / "served.json"
    assert runner.invoke(app, ["results", "export", "--out", str(exported)]).exit_code == 0
    monkeypatch.setenv("VISCHOOSE_HOME", str(tmp_path / "elsewhere"))
    assert runner.invoke(app, ["results", "import", str(exported)]).exit_code == 0
    (again,) = [r.record for r in _stored()]
    assert again == row
    plot = tmp_path / "load.png"
    assert runner.invoke(app, ["results", "plot", "--x", "load", "--out", str(plot)]).exit_code == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = tmp_path / "report.md"
    assert runner.invoke(app, ["results", "report", "--out", str(report)]).exit_code == 0
    assert "## Serving (MLPerf LoadGen Server)" in report.read_text()
    assert (tmp_path / "report-serving.png").is_file()


def _stored() -> list:
    from vischoose.results.store import open_store

    with open_store() as db:
        return [r for r in db.results(kind="profile")]


def test_results_list_shows_the_sustained_rate_of_a_server_row(runner):
    from vischoose.results.store import open_store

    with open_store() as db:
        db.add_profile(Profile(model="m", tag="m.t", device="cpu", dtype="float32", batch_size=8, input_size=224,
                               scenario="server", slo_ms=100.0, serve_qps=123.4))
    result = runner.invoke(app, ["results", "list"])
    assert result.exit_code == 0
    assert re.search(r"m \(server, p99 <= 100 ms\)\s.*\s123\.4\s", result.stdout)
