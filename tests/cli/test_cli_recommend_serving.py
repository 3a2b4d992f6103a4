"""recommend as a service through the CLI (--serve, --slo-ms, --target-qps, --price-per-hour): server rows judged,
estimated, ranked by cost per million images, rejected with a reason; the service columns. Profiles are written by
hand: no torch, no LoadGen."""

from __future__ import annotations

import json

import pytest

from tests.serving_rows import row, served
from vischoose.cli import app
from vischoose.records import Profile
from vischoose.results.store import open_store

pytestmark = pytest.mark.usefixtures("plain_install")
SERVE = ["--target", "server", "--slo-ms", "100", "--target-qps", "200", "--price-per-hour", "0.68"]


def store(*profiles: Profile) -> None:
    with open_store() as db:
        db.add_profiles(profiles)


def recommend(runner, *args: str) -> dict:
    result = runner.invoke(app, ["recommend", *args, "--json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["data"]


def test_services_rank_by_cost_per_million_images(runner):
    store(served("resnet50", 40.0), served("vit_s16", 80.0))
    data = recommend(runner, *SERVE, "--models", "resnet50", "--models", "vit_s16")
    chosen = data["chosen"]
    assert chosen["model"] == "vit_s16"  # half the cost of resnet50's service
    figures = chosen["figures"]
    assert figures["serve_qps"]["value"] == 80.0 and figures["serve_qps"]["source"] == "measured"
    assert figures["cost_per_million"]["value"] == pytest.approx(0.68 / (80.0 * 3600) * 1e6)
    assert figures["machines"]["value"] == 3.0 and figures["machines"]["note"] == "for 200 QPS: USD 2.04/h"
    assert data["runners_up"][0]["figures"]["machines"]["value"] == 5.0
    assert data["serve"] == {"slo_ms": 100.0, "target_qps": 200.0, "price_per_hour": 0.68}


def test_the_table_shows_the_service_columns(runner):
    store(served("resnet50", 40.0), served("vit_s16", 80.0))
    result = runner.invoke(app, ["recommend", *SERVE, "--models", "resnet50", "--models", "vit_s16"])
    assert result.exit_code == 0, result.stderr
    assert "  target serves: p99 <= 100 ms, 200 QPS, USD 0.68 per machine-hour\n" in result.stdout
    assert "QPS at SLO" in result.stdout and "USD per 1M img" in result.stdout and "machines" in result.stdout


def test_no_rate_under_the_bound_rules_a_model_out(runner):
    store(served("resnet50", None), served("vit_s16", 80.0))
    data = recommend(runner, *SERVE, "--models", "resnet50", "--models", "vit_s16")
    (rejected,) = data["rejected"]
    assert rejected["model"] == "resnet50"
    assert rejected["rejected_because"] == ["no rate sustained at p99 <= 100 ms (no LoadGen run was VALID (the lowest, "
                                            "5 QPS: Reduce target QPS to improve latency.); measured)"]


def test_an_unmeasured_service_is_estimated_from_offline_throughput(runner):
    store(served("resnet50", 40.0), row("resnet50", throughput_img_s=50.0), row("vit_s16", throughput_img_s=100.0),
          served("resnet101", 30.0), row("resnet101", throughput_img_s=40.0))
    data = recommend(runner, *SERVE, "--models", "resnet50", "--models", "vit_s16", "--models", "resnet101")
    vit = next(c for c in [data["chosen"], *data["runners_up"]] if c["model"] == "vit_s16")
    fig = vit["figures"]["serve_qps"]
    ratios = sorted([40 / 50, 30 / 40])
    assert fig["source"] == "estimated" and fig["value"] == pytest.approx(100.0 * sum(ratios) / 2)
    error = max(abs(ratios[1] / ratios[0] - 1), abs(ratios[0] / ratios[1] - 1))
    assert fig["note"] == (f"{sum(ratios) / 2:.2f} x its offline 100.0 img/s (batch 8): the sustained/offline ratio of "
                           f"2 model(s) measured here at this bound, leave-one-out error {100 * error:.0f}%")


def test_a_service_without_any_figure_says_how_to_measure_it(runner):
    store(served("resnet50", 40.0))
    data = recommend(runner, *SERVE, "--models", "resnet50", "--models", "vit_s16")
    assert data["rejected"] == []  # no figure is not a broken limit: listed as not measured (#33)
    (unmeasured,) = data["not_measured"]
    assert unmeasured["rejected_because"] == [
        "no sustained rate at p99 <= 100 ms (measure it: vischoose profile --scenario server --slo-ms 100 --runtime "
        "torch --precision fp32 vit_s16)"]


def test_server_rows_are_not_single_stream_or_offline_figures(runner):
    store(served("vit_s16", 80.0))
    data = recommend(runner, "--target", "server", "--models", "vit_s16")
    figures = data["chosen"]["figures"]
    assert "serve_qps" not in figures and figures["latency_ms"]["source"] != "measured"
    assert data["serve"] == {"slo_ms": 100.0, "target_qps": 200.0, "price_per_hour": 0.68}  # the preset's [serve]


def test_serve_on_a_target_without_a_bound_is_a_usage_error(runner):
    result = runner.invoke(app, ["recommend", "--target", "edge", "--serve"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["Error: Target 'edge' has no [serve] slo_ms: a service is judged at a p99 "
                                          "bound.", "Hint: Add --slo-ms MS (e.g. --slo-ms 100)."]
    result = runner.invoke(app, ["recommend", "--target", "server", "--price-per-hour", "0"])
    assert result.exit_code == 2 and result.stderr.startswith("Error: --price-per-hour must be greater than 0 (got 0).")
