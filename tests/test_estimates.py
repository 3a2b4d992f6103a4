"""Latency estimates from this machine's measured rows, and their leave-one-out error; synthetic rows, no torch."""

from __future__ import annotations

import pytest

from vischoose.models import catalog
from vischoose.recommendation import estimates
from vischoose.recommendation.presets import load_preset
from vischoose.recommendation.ranking import build_candidates
from vischoose.results.records import Profile


def row(model: str, gflops_per_s: float, runtime: str = "torch", dtype: str = "float32") -> Profile:
    entry = catalog.load()[model]
    ms = 1000.0 * entry.gflops / gflops_per_s
    return Profile(model=model, tag=entry.tag, device="cpu", dtype=dtype, batch_size=1, input_size=entry.input_size,
                   runtime=runtime, gflops=entry.gflops, latency_ms_p50=ms, latency_ms_p90=ms,
                   throughput_img_s=1000.0 / ms)


def test_leave_one_out_is_the_median_error_of_predicting_each_from_the_others():
    group = [estimates.Rate("a", 100.0), estimates.Rate("b", 100.0), estimates.Rate("c", 150.0)]
    # a and b are predicted from median(100, 150) = 125 (20% off), c from 100 (50% off): median 20%
    assert estimates.leave_one_out(group) == pytest.approx(0.2)
    assert estimates.leave_one_out(group[:1]) is None


def test_an_unmeasured_model_is_estimated_from_its_family_measured_here():
    preset = load_preset("server")
    measured = [row("resnet18", 200.0), row("resnet34", 220.0), row("resnet101", 180.0)]
    entries = [catalog.load()[m] for m in ("resnet18", "resnet34", "resnet50", "resnet101")]
    cands = {c.model: c for c in build_candidates(entries, preset, measured, [])}
    latency = cands["resnet50"].figures["latency_ms"]
    assert latency.source == "estimated" and "measured here" in latency.note and "leave-one-out" in latency.note
    assert latency.value == pytest.approx(1000.0 * catalog.load()["resnet50"].gflops / 200.0)
    assert cands["resnet18"].figures["latency_ms"].source == "measured"


def test_without_rows_of_its_family_the_published_scaling_stays():
    preset = load_preset("server")
    entries = [catalog.load()[m] for m in ("resnet50", "vit_s16")]
    cands = {c.model: c for c in build_candidates(entries, preset, [row("resnet50", 200.0)], [])}
    assert "measured here" not in cands["vit_s16"].figures["latency_ms"].note
