"""Server-scenario rows as values: stored and exported like every row, drawn against offered load, and what they cost
(recommendation.cost's arithmetic, report.serving's lines). Rows written by hand: no LoadGen, no model."""

from __future__ import annotations

import json

import pytest

from vischoose.records import Profile


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
