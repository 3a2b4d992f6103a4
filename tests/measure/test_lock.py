"""One timed measurement at a time per machine (measure.lock): a second one waits and says for whom, a holder killed
with SIGKILL frees the machine, --no-wait exits with its code, and work that times nothing never waits. Every test
has its own lock file (conftest sets VISCHOOSE_MEASURE_LOCK), so parallel test workers do not queue on each other."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from vischoose.errors import EXIT_BUSY, MeasurementBusyError, UsageError
from vischoose.measure import lock
from vischoose.report.flags import flag_of

HOLD = """
import os, sys, time
from vischoose.measure import lock
fd = lock.acquire(sys.argv[1])
print("held", flush=True)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end and not (len(sys.argv) > 4 and os.path.exists(sys.argv[4])):
    time.sleep(0.05)
if len(sys.argv) > 3 and sys.argv[3]:
    open(sys.argv[3], "w").write(repr(time.time()))
lock.release(fd)
"""


def hold(what: str, seconds: float, released_to: str = "", until: str = "") -> subprocess.Popen:
    """Another process holding the machine's lock for `seconds`, or until the file `until` appears (it says 'held'
    once it has the lock, and writes when it let go to `released_to`)."""
    args = [sys.executable, "-c", HOLD, what, str(seconds), released_to, until]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_measurement_waits_for_the_first_and_is_told_for_whom(tmp_path):
    released = tmp_path / "released"
    first = hold("profile resnet50", 1.5, str(released))
    heard = []
    try:
        fd = lock.acquire("profile vit_b16", on_wait=lambda holder, waited: heard.append((holder, waited)))
        taken_at = time.time()
    finally:
        first.wait(timeout=30)
    try:
        assert heard and heard[0][0].pid == first.pid and heard[0][0].what == "profile resnet50"
        assert heard[0][0].describe().startswith(f"pid {first.pid}, profile resnet50, running ")
        assert taken_at >= float(released.read_text())  # it ran only once the first had let go
        assert lock.read_holder().what == "profile vit_b16" and lock.read_holder().pid == os.getpid()
    finally:
        lock.release(fd)
    assert lock.read_holder() is None  # the holder line goes with the lock


def test_a_holder_killed_with_sigkill_frees_the_machine():
    holder = hold("profile resnet50", 60)
    with pytest.raises(MeasurementBusyError):
        lock.acquire("profile vit_b16", wait=False)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    fd = lock.acquire("profile vit_b16", wait=False)  # the kernel released the dead holder's lock
    lock.release(fd)


def test_no_wait_raises_the_busy_error_naming_the_holder():
    holder = hold("profile resnet50", 60)
    try:
        with pytest.raises(MeasurementBusyError) as caught:
            with lock.exclusive("export resnet18", wait=False):
                pass
    finally:
        holder.kill()
        holder.wait()
    assert caught.value.exit_code == EXIT_BUSY == 75
    assert str(caught.value).startswith(f"Another vischoose measurement is running on this machine (pid {holder.pid}, "
                                        "profile resnet50, running ")
    assert str(caught.value).endswith(", and wait said not to wait for it: nothing was timed.")  # the field, for Python
    assert caught.value.render(flag_of)[1] == (f"Wait for it (leave --no-wait at its default), or run again later (the "
                                               f"lock is {lock.lock_path()}).")


def test_the_lock_file_is_shared_by_every_user_and_never_followed_through_a_link(tmp_path, monkeypatch):
    path = tmp_path / "shared.lock"
    monkeypatch.setenv(lock.LOCK_ENV, str(path))
    old = os.umask(0o077)  # a strict umask: the file is still made 0666
    try:
        with lock.exclusive("profile resnet50"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o666
    finally:
        os.umask(old)
    path.unlink()
    path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UsageError) as caught:
        lock.acquire("profile resnet50")
    assert str(caught.value).startswith(f"Cannot open the machine's measurement lock {path}: ")
    assert caught.value.hint == "Set VISCHOOSE_MEASURE_LOCK to a file every vischoose user on this machine can write."


def test_the_lock_is_reentrant_within_a_process():
    with lock.exclusive("timing"):
        with lock.exclusive("machine peak"):  # the peak, measured inside a timing child's timed block
            assert lock.read_holder().what == "timing"
    assert lock.read_holder() is None


def test_the_default_lock_is_one_file_for_every_home_and_user(monkeypatch, tmp_path):
    from vischoose import paths

    monkeypatch.delenv(lock.LOCK_ENV)
    monkeypatch.delenv(paths.MACHINE_ENV)
    monkeypatch.setenv("VISCHOOSE_HOME", "/somewhere/else")
    monkeypatch.setenv("TMPDIR", "/per/user/tmp")
    assert lock.lock_path() == lock.Path("/tmp/vischoose-machine/measure.lock")
    assert lock.lock_path().parent == paths.peak_cache().parent  # one machine-wide folder: the lock beside the peak
    shared = tmp_path / "machine"  # VISCHOOSE_MACHINE_DIR moves both; the folder is made as /tmp is, when missing
    monkeypatch.setenv(paths.MACHINE_ENV, str(shared))
    assert lock.lock_path() == shared / "measure.lock" and lock.lock_path().parent == paths.peak_cache().parent
    with lock.exclusive("timing"):
        assert lock.read_holder().what == "timing"
    assert shared.stat().st_mode & 0o1777 == 0o1777
    monkeypatch.setenv(lock.LOCK_ENV, str(tmp_path / "elsewhere.lock"))  # the variable still names another file
    assert lock.lock_path() == tmp_path / "elsewhere.lock"


# --- the real paths: profile's timing child, --no-wait on the CLI, untimed work -------------------------------------

@pytest.mark.slow
def test_profile_waits_for_another_measurement_then_measures(tmp_path):
    from vischoose.measure import runner
    from vischoose.requests.profile import ProfileRequest

    go = tmp_path / "go"
    holder = hold("profile resnet50", 120, until=str(go))
    seen = []

    def progress(model: str, what: str, seconds: float) -> None:
        seen.append(what)
        if what.startswith("waiting for another vischoose measurement") and len(seen) > 3:
            go.touch()  # the holder lets go once this one has waited a few polls

    request = ProfileRequest.build(models=("test_resnet.r160_in1k",), device="cpu", threads=1, weights="random",
                                   time_budget_s=0.5, batch_sizes=[1])
    try:
        runs = runner.profile_models(request, progress=progress)
    finally:
        holder.wait(timeout=60)
    waits = [w for w in seen if w.startswith("waiting for another vischoose measurement")]
    assert waits and waits[0].startswith(f"waiting for another vischoose measurement: pid {holder.pid}, "
                                         "profile resnet50, running ")
    assert runs[0].profile.ok and runs[0].profile.latency_ms_p50 > 0
    assert seen.index(waits[-1]) < max(i for i, w in enumerate(seen) if w.startswith("latency"))
    # the memory child times nothing: it ran while the other held the machine, before the timing child waited
    assert max(i for i, w in enumerate(seen) if w.startswith("memory")) < seen.index(waits[0])


@pytest.mark.slow
def test_profile_no_wait_exits_75_and_stores_nothing():
    from typer.testing import CliRunner

    from vischoose.cli import app
    from vischoose.results.store import open_store

    holder = hold("profile resnet50", 120)
    try:
        result = CliRunner().invoke(app, ["profile", "test_resnet.r160_in1k", "--device", "cpu", "--threads", "1",
                                          "--weights", "random", "--time-budget", "0.5", "-b", "1", "--no-wait"])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == EXIT_BUSY, result.output
    error = next(line for line in result.stderr.splitlines() if line.startswith("Error: "))
    assert error.startswith(f"Error: Another vischoose measurement is running on this machine (pid {holder.pid}, "
                            "profile resnet50, running ")
    assert error.endswith(", and --no-wait said not to wait for it: nothing was timed.")
    with open_store() as store:
        assert store.count() == 0


@pytest.mark.slow
def test_export_without_measure_does_not_wait_but_with_no_wait_and_measure_exits_75(tmp_path):
    from typer.testing import CliRunner

    from vischoose.cli import app

    holder = hold("profile resnet50", 120)
    try:
        args = ["export", "test_resnet.r160_in1k", "--weights", "random", "--out", str(tmp_path / "m.onnx")]
        begin = time.monotonic()
        plain = CliRunner().invoke(app, args)
        took = time.monotonic() - begin
        measured = CliRunner().invoke(app, args + ["--measure", "--no-wait"])
    finally:
        holder.kill()
        holder.wait()
    assert plain.exit_code == 0, plain.output
    assert took < 100  # it did not wait for the 120 s holder
    assert measured.exit_code == EXIT_BUSY
    assert "Error: Another vischoose measurement is running on this machine" in measured.stderr
