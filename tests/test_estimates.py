"""Latency estimates from this machine's measured rows, and their leave-one-out error; synthetic rows, no torch."""

from __future__ import annotations

import pytest

from vischoose.models import catalog
from vischoose.recommendation import estimates
from vischoose.recommendation.presets import load_preset
from vischoose.recommendation.ranking import build_candidates
from vischoose.results.records import Profile


def row(model: str, gflops_per_s: float | None = None, runtime: str = "torch", dtype: str = "float32",
        ms: float | None = None) -> Profile:
    entry = catalog.load()[model]
    ms = ms if ms is not None else 1000.0 * entry.gflops / gflops_per_s
    return Profile(model=model, tag=entry.tag, device="cpu", dtype=dtype, batch_size=1, input_size=entry.input_size,
                   runtime=runtime, gflops=entry.gflops, latency_ms_p50=ms, latency_ms_p90=ms,
                   throughput_img_s=1000.0 / ms)


def law(model: str, ms_per_gflop: float = 4.0, ms_per_mib: float = 0.3, dtype: str = "float32") -> float:
    """A machine where batch-1 latency is compute plus weight traffic, exactly."""
    p = estimates.point(catalog.load()[model], dtype, 0.0)
    return ms_per_gflop * p.gflops + ms_per_mib * p.weights_mib


def _size(model: str) -> tuple[float, float]:
    p = estimates.point(catalog.load()[model], "float32", 0.0)
    return p.gflops, p.weights_mib


def test_leave_one_out_is_the_median_error_of_predicting_each_from_the_others():
    group = [estimates.Point("a", 1.0, 1.0, 10.0), estimates.Point("b", 1.0, 1.0, 10.0),
             estimates.Point("c", 1.0, 1.0, 1000.0 / 150.0)]
    # two others: one rate, the median (here the mean) of their ms per GFLOP
    expected = [abs((10.0 + 1000.0 / 150.0) / 2 / 10.0 - 1), abs((10.0 + 1000.0 / 150.0) / 2 / 10.0 - 1),
                abs(10.0 / (1000.0 / 150.0) - 1)]
    assert estimates.leave_one_out(group) == pytest.approx(sorted(expected)[1])
    assert estimates.leave_one_out(group[:1]) is None


def test_with_three_models_compute_and_weight_traffic_are_fitted_apart():
    models = ("vit_ti16", "vit_s16", "vit_b16", "vit_l16")
    group = [estimates.point(catalog.load()[m], "float32", law(m)) for m in models]
    f = estimates.fit(group)
    assert (f.ms_per_gflop, f.ms_per_mib) == (pytest.approx(4.0), pytest.approx(0.3))
    assert estimates.leave_one_out(group) == pytest.approx(0.0, abs=1e-9)
    # ViT-B/32: ViT-B/16's weights for a quarter of its FLOPs; one rate, which ignores the weights, is far off
    found = {("torch", "float32", "vit"): group}
    b32 = estimates.estimate(catalog.load()["vit_b32"], ("torch", "float32", "vit"), found)
    assert b32.latency_ms == pytest.approx(law("vit_b32"))
    one_rate = estimates.fit(group[:2])
    assert one_rate.ms_per_mib == 0.0
    assert abs(one_rate.latency_ms(*_size("vit_b32")) / law("vit_b32") - 1) > 0.1


def test_the_fitted_terms_are_never_negative():
    # latency falls as the weights grow: the unconstrained optimum has a negative weight term, which would predict a
    # negative time for a model with few FLOPs and many weights
    group = [estimates.Point("a", 1.0, 10.0, 10.0), estimates.Point("b", 2.0, 5.0, 25.0),
             estimates.Point("c", 4.0, 1.0, 45.0)]
    f = estimates.fit(group)
    assert f.ms_per_gflop >= 0 and f.ms_per_mib >= 0
    assert f.latency_ms(0.1, 100.0) > 0


def test_an_unmeasured_model_is_estimated_from_its_family_measured_here():
    preset = load_preset("server")
    measured = [row(m, ms=law(m)) for m in ("resnet18", "resnet34", "resnet101")]
    entries = [catalog.load()[m] for m in ("resnet18", "resnet34", "resnet50", "resnet101")]
    cands = {c.model: c for c in build_candidates(entries, preset, measured, [])}
    latency = cands["resnet50"].figures["latency_ms"]
    assert latency.source == "estimated" and "measured here" in latency.note and "leave-one-out" in latency.note
    assert "GFLOP/s" in latency.note and "MiB/s" in latency.note
    assert latency.value == pytest.approx(law("resnet50"))
    assert cands["resnet18"].figures["latency_ms"].source == "measured"


def test_one_measured_model_gives_one_rate_and_says_its_error_is_unknown():
    preset = load_preset("server")
    entries = [catalog.load()[m] for m in ("resnet18", "resnet50")]
    cands = {c.model: c for c in build_candidates(entries, preset, [row("resnet18", 200.0)], [])}
    latency = cands["resnet50"].figures["latency_ms"]
    assert latency.value == pytest.approx(1000.0 * catalog.load()["resnet50"].gflops / 200.0)
    assert "error unknown" in latency.note and "MiB/s" not in latency.note


def test_without_rows_of_its_family_the_published_scaling_stays():
    preset = load_preset("server")
    entries = [catalog.load()[m] for m in ("resnet50", "vit_s16")]
    cands = {c.model: c for c in build_candidates(entries, preset, [row("resnet50", 200.0)], [])}
    assert "measured here" not in cands["vit_s16"].figures["latency_ms"].note
