"""The results store: round trips, filters, migrations, concurrent writers, refusing files that are not ours."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from vischoose.errors import StoreError, UsageError
from vischoose.records import EvalResult, Profile
from vischoose.results import store


def make_profile(model: str = "resnet50", **kw) -> Profile:
    """A hand-built profile with every kind of field set (str, int, float, bool, None)."""
    base = dict(model=model, tag=f"{model}.a1_in1k", device="cpu", dtype="float32", batch_size=8,
                input_size=224, family="resnet", weights="pretrained@0123456789ab", device_name="Test CPU",
                machine="aaaaaaaaaaaa", threads=2, layout="channels_last", compiled=True, torch_version="2.14.1",
                timm_version="1.0.31", params_m=25.557032, weights_mb=97.49, weights_mb_fp32=97.49, gflops=8.22,
                gmacs=4.11, latency_ms_p50=33.125, latency_ms_p90=35.5, latency_ms_p99=40.0, latency_ms_iqr=1.25,
                throughput_img_s=41.2, throughput_iqr=0.5, peak_memory_mb=180.0, efficiency=0.123456789,
                top1=80.382, top1_size=224, created_at="2026-01-02T03:04:05+00:00")
    base.update(kw)
    return Profile(**base)


def make_eval(model: str = "resnet50", **kw) -> EvalResult:
    """A hand-built evaluation result."""
    base = dict(model=model, tag=f"{model}.a1_in1k", dataset="/data/val", images=200, top1=78.5, top5=94.0,
                machine="aaaaaaaaaaaa", input_size=288, images_per_s=12.5, created_at="2026-01-02T03:04:05+00:00")
    base.update(kw)
    return EvalResult(**base)


def test_profiles_and_evals_round_trip_every_field(isolated_home):
    p, e = make_profile(), make_eval()
    with store.open_store() as db:
        pid, eid = db.add_profile(p), db.add_eval(e)
        assert db.profiles() == [p] and db.evals() == [e]
        assert [r.id for r in db.results()] == [pid, eid]
        assert db.get(pid).record == p and db.get(eid).kind == "eval"
    assert (isolated_home / "results.db").is_file()


def test_none_and_defaults_round_trip():
    p = Profile(model="m", tag="m.t", device="cuda:0", dtype="bfloat16", batch_size=1, input_size=160,
                error="OutOfMemoryError: CUDA out of memory")
    with store.open_store() as db:
        db.add_profile(p)
        (back,) = db.profiles()
    assert back == p and back.threads is None and back.compiled is False and not back.ok


def test_adding_the_same_result_twice_keeps_one_row():
    p = make_profile()
    with store.open_store() as db:
        assert db.add_profile(p) == db.add_profile(replace(p))
        assert db.add_profiles([p, make_profile(batch_size=64)]) == [1, 2]
        assert db.count() == 2


def test_filters_by_model_tag_device_prefix_and_machine_prefix():
    with store.open_store() as db:
        db.add_profiles([make_profile("resnet50"), make_profile("vit_b16", device="cuda:0"),
                         make_profile("resnet50", machine="bbbbbbbbbbbb")])
        db.add_eval(make_eval("vit_b16"))
        assert len(db.profiles(model="resnet50")) == 2
        assert len(db.profiles(model="resnet50.a1_in1k")) == 2
        assert [p.model for p in db.profiles(device="cuda")] == ["vit_b16"]
        assert db.profiles(device="cud") == []
        assert [p.machine for p in db.profiles(machine="bbb")] == ["bbbbbbbbbbbb"]
        assert len(db.evals(model="vit_b16", machine="aaaa")) == 1
        assert db.evals(machine="b") == []


def test_ids_are_never_reused_after_clear_and_remove():
    with store.open_store() as db:
        first = db.add_profile(make_profile())
        assert db.clear() == 1
        second = db.add_profile(make_profile(batch_size=2))
        assert second > first
        with pytest.raises(UsageError, match=r"^No stored result with id 99; nothing was removed\.$"):
            db.remove([second, 99])
        assert db.count() == 1
        assert db.remove([second]) == 1 and db.count() == 0


def test_schema_version_application_id_wal_and_migrations_table(isolated_home):
    store.open_store().close()
    db = sqlite3.connect(isolated_home / "results.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION == len(store.MIGRATIONS)
    assert db.execute("PRAGMA application_id").fetchone()[0] == store.APPLICATION_ID
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [r[0] for r in db.execute("SELECT name FROM _migrations")] == ["m001_initial"]


def test_a_new_migration_runs_once_on_an_existing_database(monkeypatch, isolated_home):
    with store.open_store() as db:
        db.add_profile(make_profile())

    def m002_add_note(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE profiles ADD COLUMN note TEXT")

    monkeypatch.setattr(store, "MIGRATIONS", [*store.MIGRATIONS, m002_add_note])
    monkeypatch.setattr(store, "SCHEMA_VERSION", 2)
    for _ in range(2):
        with store.open_store() as db:
            assert db.profiles() == [make_profile()]
    conn = sqlite3.connect(isolated_home / "results.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    assert [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY rowid")] == ["m001_initial",
                                                                                           "m002_add_note"]


WRITER = textwrap.dedent("""
    import sys
    from vischoose.results import store
    from vischoose.records import Profile
    worker, count = int(sys.argv[1]), int(sys.argv[2])
    with store.open_store() as db:
        for i in range(count):
            db.add_profile(Profile(model=f"w{worker}", tag="t.t", device="cpu", dtype="float32",
                                   batch_size=i + 1, input_size=224, machine="cccccccccccc"))
""")


def test_parallel_writers_lose_nothing(isolated_home):
    """8 processes x 50 results, starting on a database that does not exist yet."""
    root = Path(__file__).resolve().parents[2]
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(w), "50"], stderr=subprocess.PIPE, text=True,
                              cwd=root) for w in range(8)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with store.open_store() as db:
        found = db.profiles()
    assert len(found) == 400
    assert {(p.model, p.batch_size) for p in found} == {(f"w{w}", i + 1) for w in range(8) for i in range(50)}


def test_corrupt_file_is_refused_and_left_untouched(isolated_home):
    path = isolated_home / "results.db"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a database at all\n" * 200)
    with pytest.raises(StoreError) as info:
        store.open_store()
    assert str(info.value) == (f"{path} is not a usable vischoose results database (file is not a database); "
                               "it was left untouched.")
    assert info.value.hint.startswith(f"Move it aside (mv '{path}' '{path}.bak')")
    assert path.read_bytes() == b"not a database at all\n" * 200


def test_foreign_sqlite_database_is_refused(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (x)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"is an SQLite database of another program, not a vischoose results "):
        store.open_store(path)
    assert path.read_bytes() == before


def test_newer_schema_is_refused(isolated_home):
    with store.open_store() as db:
        db.add_profile(make_profile())
    conn = sqlite3.connect(isolated_home / "results.db")
    conn.execute("PRAGMA user_version = 7")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=r"was written by a newer vischoose \(schema 7; this version reads up to 1\)"):
        store.open_store()


def test_locked_database_times_out_with_a_clear_message(isolated_home):
    with store.open_store() as db:
        db.add_profile(make_profile())
    holder = sqlite3.connect(isolated_home / "results.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with store.open_store(timeout_s=0.2) as db:
            assert db.count() == 1  # readers are not blocked in WAL mode
            with pytest.raises(StoreError, match=r"is locked by another process \(waited 0\.2 s\)\.$"):
                db.add_profile(make_profile(batch_size=2))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.open_store().count() == 1


def test_bad_timeout_variable(monkeypatch):
    monkeypatch.setenv("VISCHOOSE_DB_TIMEOUT_S", "soon")
    with pytest.raises(UsageError, match=r"^VISCHOOSE_DB_TIMEOUT_S='soon' is not a number of seconds >= 0\.$"):
        store.open_store()


def test_home_that_is_a_file(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("VISCHOOSE_HOME", str(blocker))
    with pytest.raises(StoreError, match=r"^Cannot create the folder .*file for the results database: "):
        store.open_store()


def test_default_home_without_env(monkeypatch):
    monkeypatch.delenv("VISCHOOSE_HOME")
    assert store.default_path().name == "results.db"
    assert "vischoose" in str(store.default_path().parent).lower()
