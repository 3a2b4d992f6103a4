"""Children forked from the server that imported torch (measure.forked): which jobs fork, that a forked child runs
with the job's environment (not the server's), that its output and exit status reach the parent, that an
interrupted child is killed and the server stays in step, and that a dead server is started again."""

from __future__ import annotations

import json
import os
import signal
import sys

import psutil
import pytest

from tests.profhelpers import FAST, seed_peak
from vischoose.measure import child, forked, process
from vischoose.measure.protocol import PROGRESS_PREFIX, Job
from vischoose.measure.runner import new_job, run_child
from vischoose.requests.profile import ProfileRequest

pytestmark = pytest.mark.skipif(not forked.available(), reason="children are forked on Linux only")
MODEL = "test_resnet.r160_in1k"


def write_job(tmp_path, name, weights="random", runtime="torch", mode="timing"):
    seed_peak(threads=1)  # the timing child reads the machine peak, not measures it
    request = ProfileRequest.build(**{**FAST, "weights": weights, "runtime": runtime, "device": "cpu"})
    job = new_job(request, MODEL, "cpu", (1,)).but(mode=mode, result_path=str(tmp_path / f"{name}-result.json"))
    path = tmp_path / f"{name}-job.json"
    path.write_text(job.to_json())
    return str(path), job


def result_of(job):
    with open(job.result_path) as fh:
        return json.load(fh)


def test_jobs_that_import_torch_fork_and_a_graphs_measurements_start_fresh():
    def job(runtime: str, mode: str) -> Job:
        return new_job(ProfileRequest(runtime=runtime, device="cpu"), MODEL, "cpu", (1,)).but(mode=mode)

    assert child.forkable(job("torch", "timing"))
    assert child.forkable(job("torch", "memory"))
    assert child.forkable(job("torch", "trial"))
    assert child.forkable(job("onnxruntime", "build"))
    assert not child.forkable(job("onnxruntime", "timing"))  # no torch, as deployed
    assert not child.forkable(job("onnxruntime", "memory"))


def test_the_resident_library_pages_are_found():
    pages = forked.resident_file_pages()
    size = os.sysconf("SC_PAGE_SIZE")
    assert pages and all(p % size == 0 for p in pages) and len(set(pages)) == len(pages)


@pytest.mark.slow
def test_a_forked_child_has_the_resident_memory_of_a_fresh_one(isolated_home, monkeypatch):
    """fork leaves the server's library pages out of the child's RSS (about 300 MiB after importing torch); the
    child touches them, so the idle baseline every peak is measured over is a fresh process's."""
    from vischoose.measure.runner import profile_models

    seed_peak(threads=1)
    options = ProfileRequest.build(models=(MODEL,), batch_sizes=[1], **FAST)
    baselines = {}
    for fork in (False, True):
        monkeypatch.setattr(forked, "available", lambda fork=fork: fork)
        (run,) = profile_models(options)
        assert run.profile.ok and run.profile.peak_memory_mb > 0
        baselines[fork] = run.detail["baseline_rss_mb"]
    assert baselines[True] == pytest.approx(baselines[False], rel=0.1)


@pytest.mark.slow
def test_a_forked_child_runs_with_the_jobs_environment_and_its_output_reaches_the_parent(cached_model, hf_cache,
                                                                                         isolated_home, tmp_path,
                                                                                         monkeypatch):
    cached_model(MODEL)
    found, job = write_job(tmp_path, "cached", weights="pretrained")
    lines = []
    assert forked.run(found, process.thread_env(1), lines.append) == 0
    assert result_of(job)["status"] == "done" and result_of(job)["throughput"]["1"]["median"] > 0
    assert any(line.startswith(PROGRESS_PREFIX) for line in lines)
    # the server keeps the environment it started with; the next child gets this one, whose cache is empty
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(empty))
    missing, job = write_job(tmp_path, "missing", weights="pretrained")
    assert forked.run(missing, process.thread_env(1), lines.append) == 0
    failed = result_of(job)
    assert failed["status"] == "failed" and failed["error_kind"] == "setup"


@pytest.mark.slow
def test_an_interrupted_child_is_killed_and_the_server_stays_in_step(isolated_home, tmp_path):
    path, job = write_job(tmp_path, "interrupted")

    def interrupt(line):
        if line.startswith(PROGRESS_PREFIX):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        forked.run(path, process.thread_env(1), interrupt)
    server = psutil.Process(forked._server.proc.pid)
    assert server.children() == []  # killed and reaped
    again, job = write_job(tmp_path, "again")
    assert forked.run(again, process.thread_env(1), lambda line: None) == 0 and result_of(job)["status"] == "done"


@pytest.mark.slow
def test_a_killed_child_reads_as_its_signal_and_a_dead_server_is_started_again(isolated_home, tmp_path):
    path, job = write_job(tmp_path, "killed")

    def kill_on_progress(line):
        if line.startswith(PROGRESS_PREFIX):
            for each in psutil.Process(forked._server.proc.pid).children():
                each.send_signal(signal.SIGKILL)

    assert forked.run(path, process.thread_env(1), kill_on_progress) == -signal.SIGKILL
    forked._server.proc.kill()
    forked._server.proc.wait()
    again, job = write_job(tmp_path, "after")
    cmd = [sys.executable, "-m", "vischoose.measure.child", again]
    assert run_child(cmd, process.thread_env(1), lambda line: None) == 0
    assert result_of(job)["status"] == "done"


@pytest.mark.slow
def test_a_server_that_cannot_start_means_fresh_children_and_no_second_try(isolated_home, tmp_path, monkeypatch):
    monkeypatch.setattr(forked, "_server", None)
    monkeypatch.setattr(forked, "_unusable", False)
    monkeypatch.setattr(forked, "SERVER_MODULE", "vischoose.measure.no_such_server")  # exits at once, as without
    path, job = write_job(tmp_path, "fresh")                                           # a readable pagemap
    cmd = [sys.executable, "-m", "vischoose.measure.child", path]
    assert run_child(cmd, process.thread_env(1), lambda line: None) == 0
    assert result_of(job)["status"] == "done"  # started fresh instead
    assert not forked.available()
    with pytest.raises(forked.ServerGone):
        forked.run(path, process.thread_env(1), lambda line: None)
