"""Latency estimates from this machine's measured rows, and their leave-one-out error; synthetic rows, no torch."""

from __future__ import annotations

import pytest

from tests.profhelpers import known
from vischoose.models import catalog
from vischoose.presets import load_preset
from vischoose.recommendation import estimates
from vischoose.recommendation.ranking import build_candidates
from vischoose.records import Profile


def row(model: str, gflops_per_s: float | None = None, runtime: str = "torch", dtype: str = "float32",
        ms: float | None = None) -> Profile:
    entry = catalog.load()[model]
    ms = ms if ms is not None else 1000.0 * entry.gflops / gflops_per_s
    return Profile(model=model, tag=entry.tag, device="cpu", dtype=dtype, batch_size=1, input_size=entry.input_size,
                   runtime=runtime, gflops=entry.gflops, latency_ms_p50=ms, latency_ms_p90=ms,
                   throughput_img_s=1000.0 / ms)


def law(model: str, scale: float = 6.0, exponent: float = 0.8) -> float:
    """A machine where batch-1 latency is a power of the FLOPs, exactly (small models use the cores less well)."""
    return scale * catalog.load()[model].gflops ** exponent


def test_leave_one_out_is_the_median_error_of_predicting_each_from_the_others():
    group = [estimates.Point("a", 1.0, 10.0), estimates.Point("b", 1.0, 10.0), estimates.Point("c", 1.0, 1000.0 / 150.0)]
    # two others: one rate, the median (here the mean) of their ms per GFLOP
    expected = [abs((10.0 + 1000.0 / 150.0) / 2 / 10.0 - 1), abs((10.0 + 1000.0 / 150.0) / 2 / 10.0 - 1),
                abs(10.0 / (1000.0 / 150.0) - 1)]
    assert estimates.leave_one_out(group) == pytest.approx(sorted(expected)[1])
    assert estimates.leave_one_out(group[:1]) is None


def test_with_three_models_the_power_of_the_flops_is_fitted():
    models = ("vit_ti16", "vit_s16", "vit_b16", "vit_l16")
    group = [estimates.Point(m, catalog.load()[m].gflops, law(m)) for m in models]
    f = estimates.fit(group)
    assert (f.scale, f.exponent) == (pytest.approx(6.0), pytest.approx(0.8))
    assert estimates.leave_one_out(group) == pytest.approx(0.0, abs=1e-9)
    found = {("torch", "float32", "vit"): group}
    b32 = estimates.estimate(catalog.load()["vit_b32"], ("torch", "float32", "vit"), found)
    assert b32.latency_ms == pytest.approx(law("vit_b32"))
    # one rate from the two smallest overestimates ViT-L/16, which keeps the cores busier per FLOP
    one_rate = estimates.fit(group[:2])
    assert one_rate.exponent == 1.0
    assert one_rate.latency_ms(catalog.load()["vit_l16"].gflops) / law("vit_l16") > 1.2


@pytest.mark.parametrize("ms, exponent", [((40.0, 30.0, 20.0), 0.6), ((1.0, 10.0, 1000.0), 1.0)])
def test_the_exponent_stays_in_its_range(ms, exponent):
    # latency falling as FLOPs grow (noise), or growing faster than the FLOPs: held at the range's ends, and the
    # scale is the least-squares one for the held exponent, so the curve still passes through the points' middle
    group = [estimates.Point(str(g), g, t) for g, t in zip((1.0, 2.0, 4.0), ms)]
    f = estimates.fit(group)
    assert f.exponent == exponent
    assert min(ms) < f.latency_ms(2.0) < max(ms)
    assert f.latency_ms(0.01) > 0


def test_an_unmeasured_model_is_estimated_from_its_family_measured_here():
    preset = load_preset("server")
    measured = [row(m, ms=law(m)) for m in ("resnet18", "resnet34", "resnet101")]
    entries = [catalog.load()[m] for m in ("resnet18", "resnet34", "resnet50", "resnet101")]
    cands = {c.model: c for c in build_candidates(entries, preset, measured, [], known())}
    latency = cands["resnet50"].figures["latency_ms"]
    assert latency.source == "estimated" and "measured here" in latency.note and "leave-one-out" in latency.note
    assert "GFLOPs^0.80" in latency.note
    assert latency.value == pytest.approx(law("resnet50"))
    assert cands["resnet18"].figures["latency_ms"].source == "measured"


def test_one_measured_model_gives_one_rate_and_says_its_error_is_unknown():
    preset = load_preset("server")
    entries = [catalog.load()[m] for m in ("resnet18", "resnet50")]
    cands = {c.model: c for c in build_candidates(entries, preset, [row("resnet18", 200.0)], [], known())}
    latency = cands["resnet50"].figures["latency_ms"]
    assert latency.value == pytest.approx(1000.0 * catalog.load()["resnet50"].gflops / 200.0)
    assert "error unknown" in latency.note and "GFLOP/s" in latency.note and "^" not in latency.note


def test_without_rows_of_its_family_the_published_scaling_stays():
    preset = load_preset("server")
    entries = [catalog.load()[m] for m in ("resnet50", "vit_s16")]
    cands = {c.model: c for c in build_candidates(entries, preset, [row("resnet50", 200.0)], [], known())}
    assert "measured here" not in cands["vit_s16"].figures["latency_ms"].note


def test_a_family_with_too_few_models_measured_takes_the_fit_over_every_family_and_its_error():
    preset = load_preset("server")
    measured = [row(m, ms=law(m)) for m in ("resnet18", "resnet34", "resnet101", "vit_b16")]
    entries = [catalog.load()[m] for m in ("resnet18", "resnet34", "resnet101", "vit_b16", "vit_s16")]
    cands = {c.model: c for c in build_candidates(entries, preset, measured, [], known())}
    latency = cands["vit_s16"].figures["latency_ms"]  # one vit measured: the curve of all four
    assert latency.source == "estimated" and "fitted to 4 models of every family (too few vit ones)" in latency.note
    assert latency.value == pytest.approx(law("vit_s16"))  # every model here follows one law
    pooled = [estimates.Point(m, catalog.load()[m].gflops, law(m))
              for m in ("resnet18", "resnet34", "resnet101", "vit_b16")]
    assert "leave-one-out" in latency.note and estimates.leave_one_out(pooled) == pytest.approx(0.0, abs=1e-9)
