"""vischoose profile --optimize: the variant search, its time budget, and the agreement check."""

from __future__ import annotations

import json

from dataclasses import replace

import pytest

from tests.profhelpers import seed_peak
from vischoose.cli import app
from vischoose.measure import optimize
from vischoose.measure import runner as profiling
from vischoose.measure.optimize import Setting as Variant
from vischoose.measure.optimize import Trial
from vischoose.measure.protocol import Job
from vischoose.requests.profile import ProfileRequest
from vischoose.results.store import keep_profiles
from vischoose.runtimes.ortbuild import recipe_for

STATIC = recipe_for("convolutional").name  # static-qdq-u8s8, or -u8s7 on an x86 CPU without VNNI

TINY = "test_resnet.r160_in1k"
OPTS = {"device": "cpu", "threads": 1, "weights": "random", "time_budget_s": 0.5}


def seed_peaks(home):
    seed_peak(dtype="float32")
    seed_peak(dtype="bfloat16")


def test_variants_follow_the_model_and_the_machine(monkeypatch):
    monkeypatch.setattr(optimize, "bf16_supported", lambda device: True)
    conv = [v.label for v in optimize.dtype_variants("cpu", is_conv=True, batch=8)]
    assert conv == ["fp32 + channels_last, batch 8", "bf16 autocast, batch 8",
                    "bf16 autocast + channels_last, batch 8"]
    assert [v.label for v in optimize.dtype_variants("cpu", is_conv=False, batch=8)] == ["bf16 autocast, batch 8"]
    monkeypatch.setattr(optimize, "bf16_supported", lambda device: False)
    assert optimize.dtype_variants("cpu", is_conv=False, batch=8) == []


def test_a_variant_that_disagrees_with_fp32_is_rejected_and_a_crash_is_a_failure():
    v = Variant(dtype="bfloat16")
    out = {"img_s": 50.0, "top1_agreement": 0.5, "decisive_agreement": 0.5, "max_abs_diff": 3.0, "rel_diff": 0.3}
    assert optimize.judge(v, out, 0, [], 1.0).status == \
        "rejected: top-1 agrees with fp32 on 50% of the fixed batch, near-ties aside (< 75%)"
    assert optimize.judge(v, {**out, "decisive_agreement": 1.0}, 0, [], 1.0).status == \
        "rejected: logits differ from fp32 by 30.0% of their range (> 5%)"
    near_ties = {**out, "decisive_agreement": 1.0, "rel_diff": 0.003}  # top-1 switched only among near-ties
    assert optimize.judge(v, near_ties, 0, [], 1.0).ok
    crashed = optimize.judge(v, {}, -9, ["Killed"], 1.0)
    assert crashed.status == "failed: signal 9 (SIGKILL) (Killed)" and not crashed.ok


@pytest.mark.slow
def test_the_search_rejects_a_disagreeing_variant_and_never_picks_it(isolated_home):
    seed_peaks(isolated_home)

    def runner(cmd, env, on_line):  # after the fp32 trial, the reference logits are replaced by shifted ones
        status = profiling.run_child(cmd, env, on_line)
        job = Job.from_json(open(cmd[-1]).read())
        if job.reference and job.dtype == "float32" and not job.channels_last:
            import torch

            ref = torch.load(job.reference)
            torch.save(ref.roll(1, dims=1), job.reference)
        return status

    found = optimize.optimize_models(ProfileRequest.build(models=(TINY,), **OPTS), budget_s=25, runner=runner,
                                    keep=keep_profiles)
    (o,) = found
    plain, *others = [t for t in o.trials if t.img_s is not None]
    assert plain.variant == Variant(batch_size=8) and plain.ok and plain.top1_agreement == 1.0
    assert others, "the budget left room for at least one more variant"
    assert all(t.status.startswith("rejected: ") for t in others)
    assert all(t.top1_agreement < 0.5 and t.rel_diff > 0.05 for t in others)
    assert o.best is plain and o.speedup == 1.0
    # compile is planned at COMPILE_ESTIMATE_S, above the whole budget: skipped whatever the machine's speed
    assert optimize.COMPILE_ESTIMATE_S > 25
    (compiled,) = [t for t in o.trials if t.variant.compile]
    assert compiled.status.startswith(f"skipped: compiling takes about {optimize.COMPILE_ESTIMATE_S:.0f} s on top of "
                                      "a trial's ")
    assert o.batch_notes and o.batch_notes[0].startswith("fp32, batch 8: ")  # why the batch stopped, said

    from vischoose.results.store import open_store

    with open_store() as store:
        (row,) = store.profiles(model=TINY)  # the plain row is the best: saved once
    assert (row.dtype, row.layout, row.compiled, row.batch_size) == ("float32", "contiguous", False, 8)


@pytest.mark.slow
def test_profile_optimize_prints_plain_best_speedup_efficiency_and_agreement(runner, isolated_home):
    seed_peaks(isolated_home)
    result = runner.invoke(app, ["profile", TINY, "--optimize", "--time-budget", "15", "--device", "cpu",
                                 "--threads", "1", "--weights", "random"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.splitlines()[0] == TINY
    assert "setting" in out and "top-1 agree %" in out and "max |diff|" in out and "eff %" in out
    assert "fp32, batch 8" in out
    summary = next(line for line in out.splitlines() if line.startswith(f"{TINY}: best "))
    assert " img/s" in summary and "; plain fp32 " in summary and " x" in summary and "% of this machine's " in summary
    assert "Search " in summary and "of 15 s." in summary

    from vischoose.results.store import open_store

    with open_store() as store:
        rows = store.profiles(model=TINY)
    assert 1 <= len(rows) <= 2 and all(r.ok for r in rows)


def test_the_json_carries_each_trial_and_a_model_without_any_setting_fails(capsys):
    from vischoose.errors import ProfilingError
    from vischoose.report import profile as report_profile

    trial = Trial(Variant(), status="failed: RuntimeError: boom")
    found = [optimize.Optimized(TINY, (trial,), None, None, None, 1.0, 10.0)]
    report_profile.show_optimized(found, as_json=True)
    envelope = json.loads(capsys.readouterr().out)
    assert envelope["kind"] == "profile-optimize"
    (model,) = envelope["data"]["models"]
    assert model["best"] is None and model["trials"][0]["status"] == "failed: RuntimeError: boom"
    with pytest.raises(ProfilingError) as err:
        optimize.failed(found)
    assert str(err.value) == f"No setting of {TINY} could be measured; the status column says why."
    assert err.value.exit_code == 1


@pytest.mark.parametrize("budget", ["0", "-3"])
def test_a_bad_budget_is_a_usage_error(runner, budget):
    result = runner.invoke(app, ["profile", TINY, "--optimize", "--time-budget", budget, "--device", "cpu"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: --time-budget must be more than 0 seconds (got {float(budget)}).")


@pytest.mark.slow
def test_onnxruntime_settings_are_tried_and_an_unverified_int8_is_never_the_best(isolated_home, tmp_path):
    seed_peaks(isolated_home)
    s = optimize.Search(TINY, ProfileRequest.build(**OPTS), "cpu", 100.0, tmp_path, profiling.run_child, None)
    fp32 = s.run(Variant(batch_size=2, runtime="onnxruntime"), tmp_path / "reference.pt")
    int8 = s.run(Variant(dtype="int8", batch_size=2, runtime="onnxruntime"), tmp_path / "reference.pt")
    assert fp32.ok and fp32.top1_agreement == 1.0 and fp32.img_s > 0
    assert fp32.run.profile.runtime == "onnxruntime" and fp32.run.profile.file_mb > 0
    assert fp32.variant.label == "onnxruntime fp32, batch 2" and int8.variant.label == "onnxruntime int8, batch 2"
    assert int8.img_s > 0 and int8.run.profile.recipe == STATIC
    assert int8.status.startswith("unverified: ") and not int8.ok  # random weights, random inputs
    assert s.best() is fp32 and s.best(runtime="torch") is None


class FakeSearch:
    """A search whose trials are figures given in advance (img/s per batch size): no child process."""

    def __init__(self, rates: dict[int, float], left_s: float = 100.0) -> None:
        self.rates, self.left, self.trials = rates, left_s, []

    def left_s(self) -> float:
        return self.left

    def best(self, runtime=None):
        good = [t for t in self.trials if t.ok and runtime in (None, t.variant.runtime)]
        return max(good, key=lambda t: t.img_s) if good else None

    def run(self, setting, reference):
        trial = Trial(setting, img_s=self.rates[setting.batch_size], wall_s=10.0)
        self.trials.append(trial)
        return trial


def test_the_batch_doubles_while_img_s_grows_by_5_percent_and_says_why_it_stopped(tmp_path):
    s = FakeSearch({8: 100.0, 16: 120.0, 32: 122.0})
    s.run(Variant(batch_size=8), None)
    note = optimize.sweep_batch(s, tmp_path, optimize.Room(s, 10.0), "torch")
    assert [t.variant.batch_size for t in s.trials] == [8, 16, 32]
    assert note == "fp32, batch 16: doubling stopped at batch 32: 122.0 img/s, +1.67% (it goes on at +5% or more)"
    close = FakeSearch({8: 100.0, 16: 104.97})  # shown as +4.97%, never as a +5.0% that the rule refused
    close.run(Variant(batch_size=8), None)
    assert optimize.sweep_batch(close, tmp_path, optimize.Room(close, 10.0), "torch").endswith(
        "batch 16: 105.0 img/s, +4.97% (it goes on at +5% or more)")
    growing = FakeSearch({8: 100.0, 16: 200.0, 32: 400.0, 64: 800.0})
    growing.run(Variant(batch_size=8), None)
    note = optimize.sweep_batch(growing, tmp_path, optimize.Room(growing, 10.0), "torch")
    assert note == f"fp32, batch 64: doubling stopped after {optimize.MAX_BATCH_STEPS} doublings (the most the search plans)"


def test_a_skip_says_numbers_that_justify_it():
    """The budget rule and its words agree: a skip names the step's cost and the trial's, which together exceed what
    is left (a skip once said 'exporting takes about 30 s, 35 s of the search budget left')."""
    s = FakeSearch({8: 100.0}, left_s=35.0)
    room = optimize.Room(s, 12.0)
    assert not room(optimize.EXPORT_ESTIMATE_S) and room()
    assert room.why_not("exporting", optimize.EXPORT_ESTIMATE_S) == (
        f"skipped: exporting takes about {optimize.EXPORT_ESTIMATE_S:.0f} s on top of a trial's 12 s; 35 s of the "
        "search budget left")
    assert 12 + optimize.EXPORT_ESTIMATE_S > 35
    s.run(Variant(batch_size=8), None)
    s.left = 3.0
    assert optimize.sweep_batch(s, None, room, "torch") == (
        "fp32, batch 8: the batch was not doubled: a trial takes about 12 s; 3 s of the search budget left")


def test_a_graph_that_ran_as_calls_of_fewer_images_is_not_compared_at_its_batch():
    from vischoose.records import Profile

    row = Profile(model=TINY, tag=TINY, device="cpu", dtype="float32", batch_size=8, input_size=160, call_batch=1,
                  runtime="executorch", throughput_img_s=50.0, variant_status="ok")
    found = optimize.graph_status(Variant(batch_size=8, runtime="executorch"), row, 0.99)
    assert found == "not compared: measured as 8 x batch 1 (the file takes at most 1 images per call), not at batch 8"
    assert optimize.graph_status(Variant(batch_size=8, runtime="executorch"), replace(row, call_batch=8), 0.99) == "ok"
