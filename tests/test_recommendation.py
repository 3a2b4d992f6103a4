"""Recommendation logic on hand-built figures: no torch, no timing."""

import pytest

from vischoose import catalog
from vischoose.errors import NoModelFitsError
from vischoose.presets import load_preset
from vischoose.recommendation import build_candidates, pareto_front, rank_key, recommend
from vischoose.records import EvalResult, Profile


def run(target="mobile", profiles=(), evals=(), models=None, **overrides):
    preset = load_preset(target).with_overrides(**overrides)
    entries = [e for e in catalog.load().values() if e.family in preset.families and (not models or e.alias in models)]
    return recommend(build_candidates(entries, preset, list(profiles), list(evals)), preset)


def prof(model, latency=None, throughput=None, batch=1, peak=None, dtype="float32", device="cpu", **kw):
    entry = catalog.load()[model]
    return Profile(model=model, tag=entry.tag, device=device, dtype=dtype, batch_size=batch, input_size=224,
                   latency_ms_p50=latency, latency_ms_p90=latency, throughput_img_s=throughput,
                   peak_memory_mb=peak, **kw)


def test_mobile_with_150_mib_budget_picks_resnet50_and_rejects_big_models_by_size():
    rec = run("mobile", max_memory_mb=150)
    assert rec.chosen.model == "resnet50"
    assert "selection guide" in rec.reason
    rejected = {c.model: c for c in rec.rejected}
    assert rejected["vit_b16"].violations == ("330.2 MiB > 150 MiB budget (computed, float32 weights)",)
    assert rejected["r50_vit_b16"].violations[0].startswith("377.5 MiB > 150 MiB budget")
    assert all(c.fits for c in rec.runners_up)
    assert rec.chosen.figures["memory_mb"].value == pytest.approx(25_557_032 * 4 / 2**20)


def test_guide_choices_per_target():
    assert run("cloud").chosen.model == "vit_l16"
    assert run("experimental").chosen.model == "r50_vit_b16"


def test_memory_uses_the_target_dtype():
    rec = run("cloud")  # bfloat16: 2 bytes per parameter
    assert rec.chosen.figures["memory_mb"].value == pytest.approx(304_326_632 * 2 / 2**20)


def test_nothing_fits_names_the_closest_and_the_budget_that_admits_them():
    with pytest.raises(NoModelFitsError) as info:
        run("mobile", max_memory_mb=10)
    assert info.value.exit_code == 4
    assert str(info.value) == ("No model fits target 'mobile'; closest: vit_ti16 (--budget-mb 21.9); "
                               "r_vit_ti16 (--budget-mb 24.2); resnet18 (--budget-mb 44.6).")


def test_preferred_model_rejected_falls_back_to_ranking_and_says_why():
    rec = run("mobile", max_memory_mb=90)
    assert rec.chosen.model != "resnet50"
    assert "the guide's choice resnet50 was rejected: 97.5 MiB > 90 MiB budget" in rec.reason
    # mobile ranks by -top1: the most accurate model that fits
    fitting = [rec.chosen, *rec.runners_up]
    assert rec.chosen.value("top1") == max(c.value("top1") for c in fitting)


def test_measured_latency_changes_the_outcome():
    # Measured here: resnet50 is slow on this device, so a 30 ms limit rules it out.
    profiles = [prof("resnet50", latency=45.0), prof("vit_s16", latency=12.0), prof("resnet34", latency=20.0)]
    rec = run("mobile", profiles=profiles, max_memory_mb=150, max_latency_ms=30)
    assert rec.chosen.model != "resnet50"
    rejected = {c.model: c for c in rec.rejected}
    assert rejected["resnet50"].violations == ("45.0 ms > 30 ms latency limit (measured, batch-1 p90, cpu float32)",)
    assert rec.chosen.figures["latency_ms"].source in ("measured", "published", "estimated")
    # without the measurement the published figure (14.9 ms) would have admitted resnet50
    assert run("mobile", max_memory_mb=150, max_latency_ms=30).chosen.model == "resnet50"


def test_profiles_under_other_conditions_are_ignored():
    slow = [prof("resnet50", latency=45.0, dtype="bfloat16"), prof("resnet50", latency=45.0, device="cuda:0"),
            prof("resnet50", latency=45.0, error="out of memory")]
    rec = run("mobile", profiles=slow, max_memory_mb=150, max_latency_ms=30)
    assert rec.chosen.model == "resnet50"
    assert rec.chosen.figures["latency_ms"].source == "published"


def test_throughput_at_the_target_batch_and_min_throughput():
    profiles = [prof("resnet50", latency=60.0, throughput=40.0, batch=8),
                prof("resnet18", latency=20.0, throughput=120.0, batch=8)]
    rec = run("server", profiles=profiles, models=["resnet18", "resnet50"], min_throughput=50, min_top1=70)
    assert rec.chosen.model == "resnet18"
    assert rec.chosen.figures["throughput"].source == "measured"
    rejected = {c.model: c for c in rec.rejected}
    assert rejected["resnet50"].violations == ("40.0 img/s < 50 img/s throughput floor (measured, batch 8, cpu)",)


def test_min_top1_and_max_params():
    rec = run("cloud", min_top1=85.5, max_params_m=320)
    assert rec.chosen.model == "vit_l16"
    rejected = {c.model: c for c in rec.rejected}
    assert "r50_vit_l32" in rejected and "M params > 320 M params parameter limit" in rejected["r50_vit_l32"].violations[0]
    assert "% < 85.5 % top-1 floor" in rejected["vit_b16"].violations[0]


def test_measured_accuracy_replaces_published():
    ev = EvalResult(model="vit_l16", tag=catalog.load()["vit_l16"].tag, dataset="/data/mine", images=500,
                    top1=60.0, top5=80.0)
    rec = run("cloud", evals=[ev], min_top1=70)
    rejected = {c.model: c for c in rec.rejected}
    assert rejected["vit_l16"].violations[0].startswith("60.0 % < 70 % top-1 floor (measured, on 500 images of /data/mine)")
    assert rec.chosen.model != "vit_l16"


def test_peak_memory_basis_needs_measurements():
    rec = run("mobile", profiles=[prof("resnet18", latency=10.0, peak=80.0)], max_memory_mb=100,
              memory_basis="peak")
    assert rec.chosen.model == "resnet18"
    assert rec.chosen.figures["memory_mb"].source == "measured"
    missing = {c.model: c for c in rec.rejected}["resnet50"].missing
    assert missing and missing[0].startswith("no memory mb figure to check the budget")


def test_ties_are_broken_by_name():
    a = prof("resnet18", latency=10.0)
    cands = build_candidates([catalog.load()["resnet18"], catalog.load()["resnet34"]], load_preset("mobile"),
                             [a, prof("resnet34", latency=10.0)], [])
    keys = sorted(cands, key=lambda c: rank_key(c, ("latency_ms",)))
    assert [c.model for c in keys] == ["resnet18", "resnet34"]


def test_pareto_front():
    preset = load_preset("mobile")
    cands = build_candidates([catalog.load()[m] for m in ("resnet18", "resnet34", "resnet50")], preset,
                             [prof("resnet18", latency=10.0), prof("resnet34", latency=30.0),
                              prof("resnet50", latency=25.0)], [])
    # resnet34 is slower and less accurate than resnet50 but smaller (83.2 < 97.5 MiB), so it stays
    assert pareto_front(cands) == {"resnet18", "resnet34", "resnet50"}
    cands = build_candidates([catalog.load()[m] for m in ("resnet50", "vit_s16")], preset,
                             [prof("resnet50", latency=30.0), prof("vit_s16", latency=20.0)], [])
    assert pareto_front(cands) == {"vit_s16"}  # more accurate, faster and smaller than resnet50
