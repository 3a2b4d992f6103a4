"""Threads that exist: the cores a process may use (affinity, cgroup quota), the cap, its note and its rows; and the
noise rule of the timing sweep (measured again once, then marked), on synthetic timings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.profhelpers import FAST, seed_peak
from vischoose.measure import process, timing
from vischoose.measure.runner import new_job, profile_models, run_child
from vischoose.requests.profile import ProfileRequest


def test_usable_cores_follow_affinity_and_the_cgroup_quota(tmp_path):
    assert process.usable_cores({0, 1, 2, 3}, cgroup=tmp_path) == 4  # no quota file
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs
    assert process.usable_cores({0, 1, 2, 3}, cgroup=tmp_path) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert process.usable_cores({0, 1, 2, 3}, cgroup=tmp_path) == 4
    (tmp_path / "cpu.max").write_text("800000 100000\n")  # a quota above the affinity set changes nothing
    assert process.usable_cores({5, 7}, cgroup=tmp_path) == 2


def test_cgroup_v1_quota(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert process.cgroup_quota(tmp_path) == 2.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert process.cgroup_quota(tmp_path) is None


def test_threads_are_capped_at_the_cores_and_the_note_says_so():
    assert process.capped_threads(4, cores=2) == 2
    assert process.capped_threads(1, cores=2) == 1
    assert 1 <= process.capped_threads(None, cores=2) <= 2
    assert process.cap_note(4, 2, "mobile").startswith("mobile asks 4 threads; 2 cores here: measured at 2")
    assert process.cap_note(2, 2, "mobile") is None and process.cap_note(None, 2, "--threads") is None


def test_a_child_job_never_asks_for_more_threads_than_cores(monkeypatch):
    monkeypatch.setattr(process, "usable_cores", lambda *a, **k: 2)
    job = new_job(ProfileRequest.build(threads=16, device="cpu"), "m", "cpu", (1,))
    assert (job.threads, job.threads_requested, job.threads_from) == (2, 16, "threads")
    assert process.thread_env(job.threads)["OMP_NUM_THREADS"] == "2"


def test_a_capped_profile_records_both_counts_and_the_note(monkeypatch, isolated_home):
    monkeypatch.setattr(process, "usable_cores", lambda *a, **k: 1)
    seed_peak(threads=1)
    seen = []

    def runner(cmd, env, on_line):
        seen.append((json.loads(Path(cmd[-1]).read_text())["threads"], env["OMP_NUM_THREADS"]))
        return run_child(cmd, env, on_line)

    options = ProfileRequest.build("mobile", models=("test_resnet.r160_in1k",), batch_sizes=[1], device="cpu",
                                   weights="random", time_budget_s=0.5)
    (run,) = profile_models(options, runner=runner)
    assert run.profile.ok and (run.profile.threads, run.profile.threads_requested) == (1, 4)
    assert set(seen) == {(1, "1")}
    assert any(n.startswith("mobile asks 4 threads; 1 core here: measured at 1") for n in run.notes)


def fake_timer(values):
    it = iter(values)
    return lambda fn: next(it)


def test_a_steady_phase_is_measured_once():
    steady = [0.010] * 400
    phase = timing.settled_phase(lambda: None, fake_timer(steady), 0.0, lambda n, w: None)
    assert phase.noisy is None and len(phase.seconds) == timing.MIN_TIMED


def test_a_noisy_phase_is_measured_again_and_kept_when_it_settles():
    disturbed = [0.010, 0.010, 0.010, 0.040] + [0.010] * 400  # a warm-up run, then a spike among the timed
    phase = timing.settled_phase(lambda: None, fake_timer(disturbed), 0.0, lambda n, w: None)
    assert phase.noisy is None and max(phase.seconds) == 0.010 and phase.warmup >= 2  # the second replaced the first


def test_a_phase_that_stays_noisy_is_marked():
    def alternating():
        while True:
            yield from (0.010, 0.040)
    gen = alternating()
    phase = timing.settled_phase(lambda: None, lambda fn: next(gen), 0.0, lambda n, w: None)
    assert phase.noisy is not None and ("median" in phase.noisy)


def test_the_noise_rule():
    assert timing.noise([1.0, 1.0, 1.0, 1.0]) is None
    assert timing.noise([1.0] * 7 + [3.0] * 3).startswith("p90 ")
    assert timing.noise([1.0, 1.0, 1.4, 1.4]).startswith("IQR ")
    assert timing.noise([1.0, 5.0]) is None  # too few runs to judge


# --- the graph cache ------------------------------------------------------------------------------------

def test_the_graph_cache_key_changes_with_weights_images_precision_versions_and_metadata():
    import numpy as np

    from vischoose.deploy import graphcache
    from vischoose.runtimes import registry
    from vischoose.runtimes.onnxruntime import OnnxRuntime

    ort = registry.get("onnxruntime")
    images = np.zeros((2, 3, 8, 8), np.float32)
    base = dict(runtime=ort, precision="int8", tag="resnet50.a1_in1k", weights="pretrained@abc", input_size=224,
                calibration=images, versions={"onnxruntime": "1"})
    first = graphcache.key(**base)
    assert first == graphcache.key(**{**base, "calibration": images.copy()})  # the same pixels, wherever they are
    assert first != graphcache.key(**{**base, "weights": "pretrained@abd"})
    assert first != graphcache.key(**{**base, "precision": "fp32"})
    assert first != graphcache.key(**{**base, "versions": {"onnxruntime": "2"}})
    assert first != graphcache.key(**{**base, "calibration": None})
    assert first != graphcache.key(**{**base, "metadata": {"mean": "0.5"}})
    assert first != graphcache.key(**{**base, "runtime": OnnxRuntime(opset=17)})
    changed = images.copy()
    changed[0, 0, 0, 0] = 1.0  # another image
    assert first != graphcache.key(**{**base, "calibration": changed})
    assert graphcache.key(**{**base, "weights": "pretrained (local)"}) is None  # not pinned: never cached
    assert graphcache.key(**{**base, "weights": "random"}) is None  # unseeded random init: never the same twice
    assert graphcache.key(**{**base, "weights": "random"}, seeded=True) is not None


def test_the_graph_cache_folder_follows_the_environment(isolated_home, monkeypatch, tmp_path):
    from vischoose.deploy import graphcache

    monkeypatch.delenv(graphcache.ENV, raising=False)
    assert graphcache.folder() == isolated_home / "graphs"
    monkeypatch.setenv(graphcache.ENV, str(tmp_path / "elsewhere"))
    assert graphcache.folder() == tmp_path / "elsewhere"


@pytest.mark.slow
def test_a_graph_built_once_is_reused_and_a_changed_calibration_builds_again(isolated_home, tmp_path):
    from PIL import Image

    seed_peak(threads=1)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 30), (80 * i, 0, 0)).save(photos / f"{i}.png")
    options = ProfileRequest.build(models=("test_resnet.r160_in1k",), runtime="onnxruntime", precision="int8", calibration=str(photos), batch_sizes=[1],
                              input_size=64, **FAST)
    notes = lambda runs: [n for n in runs[0].notes if "graph cache" in n]  # noqa: E731
    first = profile_models(options)
    again = profile_models(options)
    assert first[0].profile.ok and again[0].profile.ok and not notes(first) and notes(again)
    assert again[0].profile.agreement_top1 == first[0].profile.agreement_top1
    assert len(list((isolated_home / "graphs").iterdir())) == 2  # fp32, and int8 quantized from it
    Image.new("RGB", (40, 30), (0, 0, 255)).save(photos / "3.png")
    third = profile_models(options)
    assert third[0].profile.ok and not notes(third) and len(list((isolated_home / "graphs").iterdir())) == 3
