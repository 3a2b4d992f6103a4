"""published.py: measured figures next to the nearest published ones, and between-model ratios."""

from __future__ import annotations

import pytest

from tests.unit.test_store import make_eval, make_profile
from vischoose.results import published

VIT_TAG = "vit_base_patch16_224.augreg2_in21k_ft_in1k"


def test_latency_and_throughput_against_the_catalog():
    p = make_profile("resnet50", latency_ms_p50=29.8, throughput_img_s=117.0, batch_size=64, gflops=8.22,
                     params_m=25.557032, weights_mb_fp32=97.49)
    found = {c.figure: c for c in published.compare_all([p])}
    lat = found["latency p50, ms (batch 1)"]
    assert (lat.measured, lat.published, lat.ratio) == (29.8, 14.9, pytest.approx(2.0))
    assert lat.source == "Intel i9-10940X, batch 1, fp32 (timm benchmark)" and lat.caveat == ""
    thr = found["throughput, img/s"]
    assert thr.published == 234 and thr.difference_pct == pytest.approx(-50.0) and thr.caveat == ""
    assert found["GFLOPs per image (2 per MAC), counted on the eager model"].ratio == pytest.approx(1.0)
    assert found["parameters, M"].ratio == pytest.approx(1.0)
    assert found["fp32 weights, MiB"].published == 98


def test_caveats_name_the_conditions_that_differ():
    p = make_profile("r50_vit_b16", tag="vit_base_r50_s16_384.orig_in21k_ft_in1k", device="cuda:0",
                     dtype="bfloat16", batch_size=8, input_size=384, throughput_img_s=50.0)
    (thr,) = [c for c in published.compare_all([p]) if c.figure == "throughput, img/s"]
    assert thr.caveat == "measured at batch 8, published at 64; measured at 384 px, published at 224 px"
    q = make_profile("vit_b16", tag=VIT_TAG, device="cuda:0", dtype="float16", latency_ms_p50=3.0)
    (lat,) = [c for c in published.compare_all([q]) if c.figure.startswith("latency")]
    assert lat.caveat == "measured on cuda:0; measured in float16"
    g = make_profile("vit_b16", tag=VIT_TAG, device="cpu", dtype="int8", runtime="onnxruntime", latency_ms_p50=9.0)
    (lat,) = [c for c in published.compare_all([g]) if c.figure.startswith("latency")]
    assert lat.caveat == "measured as the int8 graph on onnxruntime"


def test_failed_unknown_and_repeated_runs():
    old = make_profile("resnet50", latency_ms_p50=40.0, created_at="2026-01-01T00:00:00+00:00")
    new = make_profile("resnet50", latency_ms_p50=30.0, created_at="2026-01-02T00:00:00+00:00")
    failed = make_profile("vit_b16", tag=VIT_TAG, error="OOM")
    unknown = make_profile("mystery", tag="mystery.x")
    lat = [c for c in published.compare_all([old, new, failed, unknown]) if c.figure.startswith("latency")]
    assert [(c.model, c.measured) for c in lat] == [("resnet50", 30.0)]


def test_eval_against_published_top1():
    (c,) = published.compare_all([], [make_eval("resnet50", tag="resnet50.a1_in1k")])
    assert (c.figure, c.measured, c.published) == ("top-1, %", 78.5, 80.382)
    assert c.caveat == ("measured on /data/val (200 images), published on ImageNet-1k val (50,000); "
                        "measured at 288 px, published at 224 px")
    (g,) = published.compare_all([], [make_eval("resnet50", tag="resnet50.a1_in1k", runtime="onnxruntime",
                                                dtype="int8", input_size=224)])
    assert g.caveat.endswith("(50,000); measured on the int8 graph on onnxruntime")


def test_ratio_sentence_matches_the_issue_example():
    profiles = [make_profile("resnet50", latency_ms_p50=33.0),
                make_profile("vit_b16", tag=VIT_TAG, latency_ms_p50=73.0),
                make_profile("vit_l16", tag="vit_large_patch16_224.augreg_in21k_ft_in1k", latency_ms_p50=300.0)]
    ratios = [r for r in published.ratio_comparisons(profiles) if r.figure == "latency"]
    assert [r.sentence() for r in ratios] == [
        "resnet50 : vit_b16 latency ratio measured 0.45 vs published 0.48",
        "resnet50 : vit_l16 latency ratio measured 0.11 vs published 0.10",
        "vit_b16 : vit_l16 latency ratio measured 0.24 vs published 0.22"]


def test_ratios_only_within_one_machine_and_conditions():
    profiles = [make_profile("resnet50", latency_ms_p50=33.0),
                make_profile("vit_b16", tag=VIT_TAG, latency_ms_p50=73.0, machine="bbbbbbbbbbbb"),
                make_profile("vit_b16", tag=VIT_TAG, latency_ms_p50=73.0, threads=8)]
    assert published.ratio_comparisons(profiles) == []


def test_throughput_ratios_per_batch_size_with_size_caveat():
    profiles = [make_profile("resnet50", batch_size=64, throughput_img_s=40.0),
                make_profile("r50_vit_b16", tag="vit_base_r50_s16_384.orig_in21k_ft_in1k", batch_size=64,
                             input_size=384, throughput_img_s=5.0),
                make_profile("resnet50", batch_size=1, throughput_img_s=30.0)]
    (r,) = [r for r in published.ratio_comparisons(profiles) if r.figure == "throughput"]
    assert r.sentence() == "resnet50 : r50_vit_b16 throughput ratio measured 8.00 vs published 1.83"
    assert r.caveat == "r50_vit_b16 measured at 384 px, published at 224 px"
