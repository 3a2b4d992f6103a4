"""recommend --measure measures only what can change the answer: pruning on figures that need no timing, the order
that decides, the stop rule, and the same choice as the exhaustive run. Synthetic figures, no torch."""

from __future__ import annotations

import pytest

from tests.profhelpers import known
from vischoose.models import catalog
from vischoose.presets import load_preset
from vischoose.recommendation import measuring
from vischoose.recommendation.ranking import build_candidates, recommend
from vischoose.records import Profile

PRESET = """
name = "phone"
[measure]
device = "cpu"
threads = 2
batch_size = 1
[constraints]
max_memory_mb = 150
max_latency_ms = 100
[deploy]
onnxruntime = ["fp32", "int8"]
[candidates]
prefer = ["resnet50"]
[rank]
sort = ["-top1", "latency_ms"]
"""


@pytest.fixture
def preset(tmp_path):
    path = tmp_path / "phone.toml"
    path.write_text(PRESET)
    return load_preset(path)


class FakeMeasure:
    """Profiles as measuring them would store them: batch-1 latency from a table (ms), per model and precision."""

    def __init__(self, latency_ms):
        self.latency_ms, self.calls = latency_ms, []

    def __call__(self, todo, variant):
        self.calls += [(m, variant.label) for m, _ in todo]
        entries = catalog.load()
        graph = variant.runtime != "torch"
        rows = []
        for model, tag in todo:
            ms = self.latency_ms(model, variant.precision)
            size = entries[model].int8_mib if variant.precision == "int8" else entries[model].weights_mb()
            rows.append(Profile(model=model, tag=tag, device="cpu", dtype=variant.dtype, batch_size=1,
                                input_size=224, runtime=variant.runtime, latency_ms_p50=ms, latency_ms_p90=ms,
                                throughput_img_s=1000 / ms, file_mb=size if graph else None, weights_mb=size,
                                variant_status="unverified" if graph else None))
        return rows


def decide(preset, fake, mode="decision", profiles=(), fresh=False):
    entries = list(catalog.load().values())
    found, log = measuring.measure_for_decision(preset, entries, [], list(profiles), [], fake, known(), mode, fresh)
    rec = recommend(build_candidates(entries, preset, list(profiles) + found, [], known()), preset)
    return rec, log, found


def test_the_guides_model_measured_and_fitting_ends_the_measuring(preset):
    fake = FakeMeasure(lambda model, precision: 40.0)
    rec, log, _ = decide(preset, fake)
    assert rec.chosen.model == "resnet50" and rec.chosen.figures["latency_ms"].source == "measured"
    # torch fp32 is the speed-up reference; int8 is not needed: fp32 already fits
    assert fake.calls == [("resnet50", "torch fp32"), ("resnet50", "onnxruntime fp32")]
    assert any("selection guide's choice" in why for _, why in log.skipped)
    exhaustive, _, _ = decide(preset, FakeMeasure(lambda model, precision: 40.0), mode="all")
    assert exhaustive.chosen.model == rec.chosen.model


def test_models_too_big_in_every_variant_are_never_timed(preset):
    fake = FakeMeasure(lambda model, precision: 40.0)
    _, log, _ = decide(preset, fake)
    too_big = [m for m, why in log.skipped if why.startswith("ruled out without timing")]
    entries = catalog.load()
    assert too_big and all(entries[m].int8_mib > 150 for m in too_big)
    assert not {m for m, _ in fake.calls} & set(too_big)
    assert all("budget" in why for m, why in log.skipped if m in too_big)


def test_when_the_guides_model_is_too_slow_the_ranking_decides_and_stops_early(preset):
    slow = FakeMeasure(lambda model, precision: 500.0 if model == "resnet50" else 40.0)
    rec, log, _ = decide(preset, slow)
    everything = FakeMeasure(slow.latency_ms)
    exhaustive, _, _ = decide(preset, everything, mode="all")
    assert rec.chosen.model == exhaustive.chosen.model != "resnet50"
    assert ("resnet50", "onnxruntime fp32") in slow.calls and ("resnet50", "onnxruntime int8") in slow.calls
    assert len(slow.calls) < len(everything.calls)
    best = rec.chosen.value("top1")
    ranked_below = [m for m, why in log.skipped if why.startswith("ranked below")]
    assert ranked_below and all(catalog.load()[m].top1 < best for m in ranked_below)


def test_a_model_that_breaks_the_latency_limit_everywhere_is_rejected_with_measured_figures(preset):
    fake = FakeMeasure(lambda model, precision: 500.0 if model in ("resnet50", "vit_b16") else 60.0)
    rec, _, _ = decide(preset, fake)
    resnet = next(c for c in rec.rejected if c.model == "resnet50")
    assert any("latency" in r and "measured" in r for r in resnet.reasons)


def test_stored_measurements_are_reused_and_fresh_measures_again(preset):
    first = FakeMeasure(lambda model, precision: 40.0)
    _, _, found = decide(preset, first)
    again = FakeMeasure(lambda model, precision: 40.0)
    _, log, _ = decide(preset, again, profiles=found)
    assert again.calls == [] and log.reused == ["resnet50 at torch fp32", "resnet50 at onnxruntime fp32"]
    fresh = FakeMeasure(lambda model, precision: 40.0)
    decide(preset, fresh, profiles=found, fresh=True)
    assert fresh.calls == [("resnet50", "torch fp32"), ("resnet50", "onnxruntime fp32")]


def test_a_timing_first_ranking_cannot_stop_early(preset):
    by_speed = preset._replace(sort=("latency_ms",), prefer=())
    fake = FakeMeasure(lambda model, precision: 40.0)
    _, log, _ = decide(by_speed, fake)
    assert not any(why.startswith("ranked below") for _, why in log.skipped)
    assert {m for m, _ in fake.calls} == {m for m in catalog.load()} - {m for m, why in log.skipped}


@pytest.mark.parametrize("mode", ["decision", "all"])
def test_the_planned_runs_bound_what_is_still_measured(preset, mode):
    """The ETA's basis: before each step the bound is at least the runs that follow, and exact for --measure all."""
    slow = FakeMeasure(lambda model, precision: 500.0 if model == "resnet50" else 40.0)
    heard = []

    def measure(todo, variant):
        heard.append(("run", len(todo)))
        return slow(todo, variant)

    entries = list(catalog.load().values())
    measuring.measure_for_decision(preset, entries, [], [], [], measure, known(), mode, on_plan=lambda n: heard.append(("plan", n)))
    plans = [(i, n) for i, (kind, n) in enumerate(heard) if kind == "plan"]
    assert plans and len(slow.calls) > 1
    for i, bound in plans:
        still = sum(n for kind, n in heard[i:] if kind == "run")
        assert bound >= still if mode == "decision" else bound == still
    assert [n for _, n in plans] == sorted((n for _, n in plans), reverse=True)


def test_the_progress_line_gives_the_run_its_bound_and_an_eta(preset, capsys):
    from vischoose.recommendation import pipeline
    from vischoose.report.profile import ProfileProgress

    measurer = pipeline._Measurer(preset, ProfileProgress(), time_budget_s=1.0)
    measurer.runs, measurer.started = 2, measurer.started - 60.0  # two runs took 60 s: 30 s each
    measurer.plan(3)
    measurer._progress(preset.plain)("resnet50", "timing", 10.0)
    line = capsys.readouterr().err
    assert "resnet50 at torch fp32 (run 3 of at most 5, at most ~1 min 20 s left)" in line, line
    measurer.plan(1)
    measurer._progress(preset.plain)("vit_b16", "build", 40.0)
    assert "vit_b16 at torch fp32 (run 3): build" in capsys.readouterr().err  # overran the average: no guess


def test_a_runtime_not_installed_here_is_never_measured_and_the_log_says_how_to_install_it(tmp_path):
    path = tmp_path / "both.toml"
    path.write_text(PRESET.replace('onnxruntime = ["fp32", "int8"]', 'executorch = ["fp32"]\nonnxruntime = ["fp32", "int8"]'))
    preset, fake = load_preset(path), FakeMeasure(lambda model, precision: 40.0)
    world = known(missing={"executorch": "ExecuTorch (XNNPACK) is not installed"})
    entries = list(catalog.load().values())
    found, log = measuring.measure_for_decision(preset, entries, [], [], [], fake, world)
    assert fake.calls and all(not label.startswith("executorch") for _, label in fake.calls)
    assert ("not measured at executorch fp32, on any model: ExecuTorch (XNNPACK) is not installed: pip install "
            "'vischoose[mobile]'") in log.lines()
    # the choice is the one an install with ExecuTorch makes on the same figures: its fp32 still comes first
    rec = recommend(build_candidates(entries, preset, found, [], world), preset)
    assert rec.chosen.variant == recommend(build_candidates(entries, preset, found, [], known()), preset).chosen.variant


class ZooFake:
    """Profiles for any entry (zoo tags included): its fp32 or int8 size, one latency for every model."""

    def __init__(self, entries, ms=40.0):
        self.entries, self.ms, self.calls = {e.alias: e for e in entries}, ms, []

    def __call__(self, todo, variant):
        self.calls += [(m, variant.label) for m, _ in todo]
        graph = variant.runtime != "torch"
        rows = []
        for model, tag in todo:
            e = self.entries[model]
            size = e.weights_mb(1.1 if variant.precision == "int8" else 4.0)
            rows.append(Profile(model=model, tag=tag, device="cpu", dtype=variant.dtype, batch_size=1,
                                input_size=e.input_size, runtime=variant.runtime, latency_ms_p50=self.ms,
                                latency_ms_p90=self.ms, throughput_img_s=1000 / self.ms,
                                file_mb=size if graph else None, weights_mb=size,
                                variant_status="unverified" if graph else None))
        return rows


def test_over_the_zoo_only_the_guides_model_is_timed_and_the_rest_is_counted_by_the_limit_it_breaks(preset):
    from vischoose.recommendation import selection
    from vischoose.requests.recommend import RecommendRequest

    chosen = selection.select(RecommendRequest(zoo=True), preset, known())
    fake = ZooFake(chosen.entries)
    found, log = measuring.measure_for_decision(preset, chosen.entries, [], [], [], fake, known())
    assert fake.calls == [("resnet50", "torch fp32"), ("resnet50", "onnxruntime fp32")]
    relaxed = measuring.timing_free(preset)
    too_big = {c.model for c in build_candidates(chosen.entries, relaxed, [], [], known()) if not c.fits}
    assert log.candidates == len(chosen.entries) > 100
    assert log.pruned == {"over the 150 MiB budget at every variant the target deploys": sorted(
        too_big, key=[e.alias for e in chosen.entries].index)}
    lines = log.lines()
    assert lines[1] == (f"ruled out without timing: {len(too_big)} of {len(chosen.entries)} candidates: "
                        f"{len(too_big)} over the 150 MiB budget at every variant the target deploys ("
                        + ", ".join(log.pruned[next(iter(log.pruned))][:4]) + f" and {len(too_big) - 4} more)")
    # the preset ranks on latency too: once fp32 fits, the other fp32 graph is timed and int8 says what verifies it
    assert lines[2].startswith("not measured: resnet50 at onnxruntime int8: an int8 graph ranks only once verified")
    assert len(lines) == 4 and lines[3].startswith(f"not measured: {len(chosen.entries) - len(too_big) - 1} models (")
    assert lines[3].endswith("resnet50, the selection guide's choice, was measured and meets every constraint")
