"""recommend as a service, the pure parts: --measure's server searches limited to what can change the answer, and the
presets' [serve] table. Profiles are written by hand: no torch, no LoadGen."""

from __future__ import annotations

import math

import pytest

from tests.profhelpers import known
from tests.serving_rows import row, served
from vischoose import presets
from vischoose.models import catalog
from vischoose.recommendation import serving as service
from vischoose.recommendation.ranking import build_candidates
from vischoose.records import Profile


def test_measure_searches_only_what_can_change_the_answer():
    preset = presets.load_preset("server").with_overrides(slo_ms=100.0)
    entries = [catalog.load()[m] for m in ("resnet50", "vit_s16", "resnet18")]
    rows = [row("resnet50", throughput_img_s=200.0), row("vit_s16", throughput_img_s=30.0)]
    measured = []

    def measure(model: str, variant, slo_ms: float) -> list[Profile]:
        measured.append((model, variant.label, slo_ms))
        return [served(model, 0.8 * next(p.throughput_img_s for p in rows if p.model == model))]

    new, lines = service.measure_for_decision(lambda found: build_candidates(entries, preset, found, [], known()), preset,
                                              rows, measure)
    assert measured == [("resnet50", "torch fp32", 100.0)]  # resnet18 is under the top-1 floor: never searched
    assert [p.serve_qps for p in new] == [160.0]
    assert lines == ["measured as a service: resnet50 at torch fp32, p99 <= 100 ms",
                     "not measured as a service: vit_s16: its best offline rate here, 30.0 img/s, bounds any sustained "
                     "rate below the 160.0 QPS resnet50 sustains at p99 <= 100 ms"]


def test_serve_tables_are_checked(tmp_path):
    base = (presets.presets_dir() / "server.toml").read_text()
    server = presets.load_preset("server").serve
    assert server == presets.ServeSpec(100.0, 200.0, 0.68) and presets.load_preset("cloud").serve.slo_ms == 100.0
    for text, message in (
            ("slo = 100", "[serve]: unknown key 'slo' (expected one of: slo_ms, target_qps, price_per_hour). "
                          "Did you mean 'slo_ms'?"),
            ("price_per_hour = 0", "[serve]: 'price_per_hour' must be greater than 0 (got 0)."),
            ("target_qps = \"many\"", "[serve]: 'target_qps' must be an integer or a number (got a string).")):
        path = tmp_path / "mine.toml"
        path.write_text(base.split("[serve]")[0] + "[serve]\n" + text + "\n")
        with pytest.raises(presets.PresetError) as err:
            presets.load_preset(str(path))
        assert str(err.value) == f"{path} {message}"
    assert math.isclose(presets.load_preset("server").with_overrides(price_per_hour=1.5).serve.price_per_hour, 1.5)


def test_a_service_request_implies_serving_and_a_search_budget():
    from vischoose.requests.profile import DEFAULT_SERVE_BUDGET_S
    from vischoose.requests.recommend import MEASURE_BUDGET_S, RecommendRequest

    plain = RecommendRequest()
    assert not plain.serving and plain.budget_s == MEASURE_BUDGET_S
    priced = RecommendRequest(price_per_hour=0.5)
    assert priced.serving and priced.budget_s == DEFAULT_SERVE_BUDGET_S
    assert priced.overrides["price_per_hour"] == 0.5 and priced.overrides["slo_ms"] is None
    assert RecommendRequest(serve=True, time_budget_s=30.0).budget_s == 30.0


def test_the_public_api_ranks_services_by_cost(plain_install):
    import vischoose
    from vischoose.results.store import open_store

    with open_store() as db:
        db.add_profiles([served("resnet50", 40.0), served("vit_s16", 80.0)])
    rec = vischoose.recommend("server", serve=True, models=("resnet50", "vit_s16"))
    assert rec.chosen.model == "vit_s16" and rec.chosen.figures["serve_qps"].value == 80.0
    assert rec.chosen.figures["cost_per_million"].value == pytest.approx(0.68 / (80.0 * 3600) * 1e6)
