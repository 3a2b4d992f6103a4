"""Saved results: SQLite (stdlib sqlite3, WAL) under VISCHOOSE_HOME, schema version + ordered migrations.

One transaction per result; concurrent writers wait (busy_timeout) and retry, so nothing is lost.
A file that is not ours (corrupt, another program's, from a newer vischoose) is refused, never overwritten.
"""

import os
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, NamedTuple, TypeVar

from vischoose.errors import StoreError, UsageError
from vischoose.paths import results_db
from vischoose.results.exchange import (
    KINDS,
    kind_of,
    record_from_dict,
    record_uid,
)

if TYPE_CHECKING:
    from vischoose.records import EvalResult, Profile
    from vischoose.results.exchange import Record

APPLICATION_ID = 0x56495343  # "VISC": marks the file as a vischoose results database
DEFAULT_TIMEOUT_S = 10.0
TABLES = {"profile": "profiles", "eval": "evals"}
_NEW_DB_HINT = ("Move it aside (mv '{path}' '{path}.bak') and run again to start a new database, "
                "or set VISCHOOSE_HOME to another folder.")
T = TypeVar("T")

MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = []


def migration(fn: Callable[[sqlite3.Connection], None]) -> Callable[[sqlite3.Connection], None]:
    """Register a schema migration; they run in definition order, each once (like llm's)."""
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_initial(db: sqlite3.Connection) -> None:
    """Results, with profiles and evaluations as typed columns; extra_json keeps fields added later."""
    # one statement at a time: executescript() would commit the migration's transaction half-way
    for statement in """
        CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL);
        CREATE TABLE results (
            id INTEGER PRIMARY KEY AUTOINCREMENT,  -- ids are never reused after remove/clear
            kind TEXT NOT NULL CHECK (kind IN ('profile', 'eval')),
            uid TEXT NOT NULL UNIQUE,  -- sha256 of the record: deduplicates imports
            imported_from TEXT,        -- file name, NULL when measured here
            stored_at TEXT NOT NULL
        );
        CREATE TABLE profiles (
            result_id INTEGER PRIMARY KEY REFERENCES results(id) ON DELETE CASCADE,
            model TEXT NOT NULL, tag TEXT NOT NULL, device TEXT NOT NULL, dtype TEXT NOT NULL,
            batch_size INTEGER NOT NULL, input_size INTEGER NOT NULL, family TEXT, weights TEXT,
            device_name TEXT, machine TEXT NOT NULL, threads INTEGER, layout TEXT, compiled INTEGER,
            runtime TEXT, torch_version TEXT, timm_version TEXT, params_m REAL, weights_mb REAL,
            weights_mb_fp32 REAL, gflops REAL, gmacs REAL, latency_ms_p50 REAL, latency_ms_p90 REAL,
            latency_ms_p99 REAL, latency_ms_iqr REAL, throughput_img_s REAL, throughput_iqr REAL,
            peak_memory_mb REAL, peak_reserved_mb REAL, efficiency REAL, top1 REAL, top1_size INTEGER,
            error TEXT, created_at TEXT NOT NULL, extra_json TEXT
        );
        CREATE TABLE evals (
            result_id INTEGER PRIMARY KEY REFERENCES results(id) ON DELETE CASCADE,
            model TEXT NOT NULL, tag TEXT NOT NULL, dataset TEXT NOT NULL, images INTEGER NOT NULL,
            top1 REAL NOT NULL, top5 REAL NOT NULL, weights TEXT, device TEXT NOT NULL, dtype TEXT,
            batch_size INTEGER, input_size INTEGER, images_per_s REAL, world_size INTEGER,
            machine TEXT NOT NULL, torch_version TEXT, timm_version TEXT, created_at TEXT NOT NULL,
            extra_json TEXT
        );
        CREATE INDEX profiles_machine_model ON profiles (machine, model);
        CREATE INDEX evals_machine_model ON evals (machine, model);
    """.split(";"):
        if statement.strip():
            db.execute(statement)


SCHEMA_VERSION = len(MIGRATIONS)


class StoredResult(NamedTuple):
    """A record as stored: its id, kind ('profile' or 'eval') and where it came from (a NamedTuple: see
    runtimes.precision.Variant)."""

    id: int
    kind: str
    record: "Record"
    imported_from: str | None = None
    stored_at: str = ""


def default_path() -> Path:
    """Where the results database lives."""
    return results_db()


def timeout_from_env() -> float:
    """Seconds a writer waits for a lock: $VISCHOOSE_DB_TIMEOUT_S or the default."""
    text = os.environ.get("VISCHOOSE_DB_TIMEOUT_S", "")
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1e6:  # also rejects nan and inf
        raise UsageError(f"VISCHOOSE_DB_TIMEOUT_S='{text}' is not a number of seconds >= 0.")
    return value


class Store:
    """The results database. Use open_store() to get one."""

    def __init__(self, path: Path, timeout_s: float) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._db = self._retrying(lambda: _connect(path, timeout_s))
        try:
            self._retrying(self._prepare)
        except BaseException:
            self._db.close()
            raise
        self._columns = {k: self._table_columns(t) for k, t in TABLES.items()}

    # -- errors and retries -------------------------------------------------------------------------
    def _explain(self, err: sqlite3.Error) -> StoreError | None:
        """A StoreError for the SQLite failures a user can cause or meet; None for bugs."""
        name, path = getattr(err, "sqlite_errorname", "") or "", self.path
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return StoreError(f"The results database {path} is locked by another process "
                              f"(waited {self.timeout_s:g} s).",
                              hint="Let the other vischoose command finish and try again, "
                                   "or set VISCHOOSE_DB_TIMEOUT_S to wait longer.")
        if name.startswith(("SQLITE_READONLY", "SQLITE_PERM", "SQLITE_AUTH")):
            return StoreError(f"The results database {path} is read-only ({err}); nothing was saved.",
                              hint="Make the file and its folder writable, or set VISCHOOSE_HOME "
                                   "to a writable folder.")
        if name.startswith("SQLITE_CANTOPEN"):
            return StoreError(f"Cannot open the results database {path} ({err}).",
                              hint="Check that its folder exists and is writable, or set VISCHOOSE_HOME "
                                   "to a writable folder.")
        if name.startswith("SQLITE_FULL") or name == "SQLITE_IOERR_WRITE":
            return StoreError(f"Could not write to the results database {path}: {err}. Nothing from "
                              "this write was saved; results stored before are intact.",
                              hint="Free some disk space, or set VISCHOOSE_HOME to a folder on another disk.")
        if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
            return StoreError(f"{path} is not a usable vischoose results database ({err}); "
                              "it was left untouched.", hint=_NEW_DB_HINT.format(path=path))
        return None

    def _retrying(self, fn: Callable[[], T]) -> T:
        """Run fn, retrying while the database is busy, until timeout_s has passed."""
        deadline = time.monotonic() + self.timeout_s
        delay = 0.005
        while True:
            try:
                return fn()
            except sqlite3.Error as err:
                busy = (getattr(err, "sqlite_errorname", "") or "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
                if busy and time.monotonic() < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.1)
                    continue
                explained = self._explain(err)
                if explained is None:
                    raise
                raise explained from err

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn inside one write transaction (BEGIN IMMEDIATE), retried while busy."""
        def attempt() -> T:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(self._db)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            return result

        return self._retrying(attempt)

    # -- opening --------------------------------------------------------------------------------------
    def _prepare(self) -> None:
        """Refuse files that are not ours, then switch to WAL and apply pending migrations."""
        version = self._check_identity()
        if version < SCHEMA_VERSION:
            self._write(self._migrate)
        if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self._db.execute("PRAGMA journal_mode=WAL")

    def _check_identity(self) -> int:
        """The file's schema version. Raises StoreError for a foreign or newer database."""
        app_id, version, objects = self._retrying(self._identity)
        if app_id != APPLICATION_ID and (objects or version or app_id):
            raise StoreError(f"{self.path} is an SQLite database of another program, not a vischoose "
                             "results database; it was left untouched.",
                             hint=_NEW_DB_HINT.format(path=self.path))
        if version > SCHEMA_VERSION:
            raise StoreError(f"The results database {self.path} was written by a newer vischoose "
                             f"(schema {version}; this version reads up to {SCHEMA_VERSION}).",
                             hint="Upgrade vischoose (pip install -U vischoose), or set VISCHOOSE_HOME "
                                  "to another folder to keep separate results.")
        return version

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Apply the migrations this file lacks (re-read inside the lock: another process may have)."""
        from vischoose.records import (
            now_iso,  # records is imported only where a record or a time is written
        )

        version = self._check_identity()
        for fn in MIGRATIONS[version:]:
            fn(db)
            db.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", (fn.__name__, now_iso()))
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _identity(self) -> tuple[int, int, int]:
        """(application_id, user_version, schema objects), read in one snapshot: read one by one, a writer creating
        the database in between made a new vischoose database look like another program's (seen with 8 writers)."""
        own = not self._db.in_transaction
        if own:
            self._db.execute("BEGIN")
        try:
            objects = self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]  # takes the read lock
            app_id = self._db.execute("PRAGMA application_id").fetchone()[0]
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
        finally:
            if own:
                self._db.execute("COMMIT")
        return app_id, version, objects

    def _table_columns(self, table: str) -> list[str]:
        rows = self._db.execute(f"PRAGMA table_info({table})").fetchall()
        return [r[1] for r in rows if r[1] not in ("result_id", "extra_json")]

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing --------------------------------------------------------------------------------------
    def _insert(self, db: sqlite3.Connection, record: "Record", source: str | None) -> tuple[int, bool]:
        """Insert one record (inside a transaction); (id, True) or (existing id, False) if already stored."""
        import json

        from vischoose.records import now_iso

        kind = kind_of(record)
        uid = record_uid(record)
        found = db.execute("SELECT id FROM results WHERE uid = ?", (uid,)).fetchone()
        if found:
            return found[0], False
        data = record_from_dict(kind, record.to_dict()).to_dict()
        columns = self._columns[kind]
        extra = {k: v for k, v in data.items() if k not in columns}
        cur = db.execute("INSERT INTO results (kind, uid, imported_from, stored_at) VALUES (?, ?, ?, ?)",
                         (kind, uid, source, now_iso()))
        names = ["result_id", *columns, "extra_json"]
        values = [cur.lastrowid, *(data.get(c) for c in columns), json.dumps(extra) if extra else None]
        db.execute(f"INSERT INTO {TABLES[kind]} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                   values)
        return int(cur.lastrowid or 0), True

    def add_profile(self, profile: "Profile") -> int:
        """Store one profile in its own transaction; returns its id (the existing id if already stored)."""
        return self._write(lambda db: self._insert(db, profile, None))[0]

    def add_profiles(self, profiles: "Iterable[Profile]") -> list[int]:
        """Store profiles, one transaction each (a crash keeps those already written)."""
        return [self.add_profile(p) for p in profiles]

    def add_eval(self, result: "EvalResult") -> int:
        """Store one evaluation result in its own transaction; returns its id."""
        return self._write(lambda db: self._insert(db, result, None))[0]

    def import_results(self, records: "list[Record]", source: str) -> tuple[int, int]:
        """Add results from another machine in one transaction; returns (added, already stored)."""
        def add_all(db: sqlite3.Connection) -> int:
            return sum(self._insert(db, r, source)[1] for r in records)

        added = self._write(add_all)
        return added, len(records) - added

    def remove(self, ids: Iterable[int]) -> int:
        """Delete results by id, all or none. Raises UsageError naming ids that do not exist."""
        wanted = sorted(set(ids))

        def delete(db: sqlite3.Connection) -> int:
            self.require_ids(wanted)
            db.execute(f"DELETE FROM results WHERE id IN ({', '.join('?' * len(wanted))})", wanted)
            return len(wanted)

        return self._write(delete) if wanted else 0

    def require_ids(self, ids: Iterable[int]) -> None:
        """Raise UsageError naming the ids that no stored result has."""
        wanted = sorted(set(ids))
        marks = ", ".join("?" * len(wanted)) or "NULL"
        sql = f"SELECT id FROM results WHERE id IN ({marks})"
        found = {r[0] for r in self._retrying(lambda: self._db.execute(sql, wanted).fetchall())}
        missing = [i for i in wanted if i not in found]
        if missing:
            raise UsageError(f"No stored result with id {', '.join(map(str, missing))}; nothing was removed.",
                             hint="vischoose results list shows the ids.")

    def clear(self) -> int:
        """Delete every result; returns how many."""
        return self._write(lambda db: db.execute("DELETE FROM results").rowcount)

    # -- reading --------------------------------------------------------------------------------------
    def results(self, kind: str | None = None, model: str | None = None, device: str | None = None,
                machine: str | None = None, ids: Iterable[int] | None = None) -> list[StoredResult]:
        """Stored results, oldest first. model matches alias or tag; device 'cuda' matches 'cuda:0';
        machine matches a fingerprint prefix."""
        out: list[StoredResult] = []
        for k in ([kind] if kind else list(KINDS)):
            out += self._query(k, model, device, machine, ids)
        return sorted(out, key=lambda r: r.id)

    def _query(self, kind: str, model: str | None, device: str | None, machine: str | None,
               ids: Iterable[int] | None) -> list[StoredResult]:
        where, args = ["1"], []
        if model:
            where.append("(t.model = ? OR t.tag = ?)")
            args += [model, model]
        if device:
            where.append("(t.device = ? OR t.device LIKE ? ESCAPE '\\')")
            args += [device, device.replace("_", "\\_").replace("%", "\\%") + ":%"]
        if machine:
            where.append("substr(t.machine, 1, length(?)) = ?")
            args += [machine, machine]
        if ids is not None:
            id_list = list(ids)
            where.append(f"r.id IN ({', '.join('?' * len(id_list)) or 'NULL'})")
            args += id_list
        columns = self._columns[kind]
        sql = (f"SELECT r.id, r.imported_from, r.stored_at, t.extra_json, {', '.join('t.' + c for c in columns)} "
               f"FROM results r JOIN {TABLES[kind]} t ON t.result_id = r.id WHERE {' AND '.join(where)} "
               "ORDER BY r.id")
        rows = self._retrying(lambda: self._db.execute(sql, args).fetchall())
        out = []
        if rows:
            import json  # here: recommend on an empty store reads no record
        for rid, source, stored_at, extra, *values in rows:
            data = {**json.loads(extra or "{}"), **dict(zip(columns, values))}
            out.append(StoredResult(rid, kind, record_from_dict(kind, data), source, stored_at))
        return out

    def get(self, result_id: int) -> StoredResult:
        """One result by id. Raises UsageError if there is none."""
        found = self.results(ids=[result_id])
        if not found:
            raise UsageError(f"No stored result with id {result_id}.", hint="vischoose results list shows the ids.")
        return found[0]

    def profiles(self, model: str | None = None, device: str | None = None,
                 machine: str | None = None) -> "list[Profile]":
        """Stored profiles (failed runs included; see Profile.ok), oldest first."""
        return [r.record for r in self.results("profile", model, device, machine)]  # type: ignore[misc]

    def evals(self, model: str | None = None, machine: str | None = None) -> "list[EvalResult]":
        """Stored evaluation results, oldest first."""
        return [r.record for r in self.results("eval", model, None, machine)]  # type: ignore[misc]

    def count(self) -> int:
        """How many results are stored."""
        return self._retrying(lambda: self._db.execute("SELECT count(*) FROM results").fetchone()[0])


def _connect(path: Path, timeout_s: float) -> sqlite3.Connection:
    """An autocommit connection (transactions are explicit) that waits timeout_s for locks."""
    db = sqlite3.connect(path, timeout=timeout_s, isolation_level=None)
    db.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA synchronous = NORMAL")  # safe with WAL: a power cut may lose the last commit only
    return db


def open_store(path: Path | str | None = None, timeout_s: float | None = None) -> Store:
    """Open (creating if needed) the results database at path, default VISCHOOSE_HOME/results.db.

    Raises:
        StoreError: the file is corrupt, another program's, from a newer vischoose, locked or unwritable.
    """
    db_path = Path(path) if path is not None else default_path()
    if db_path.is_dir():
        raise StoreError(f"The results database path {db_path} is a folder, not a file.",
                         hint="Set VISCHOOSE_HOME to a folder without a results.db folder in it.")
    try:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StoreError(f"Cannot create the folder {db_path.parent} for the results database: "
                         f"{err.strerror}.", hint="Set VISCHOOSE_HOME to a writable folder.") from err
    return Store(db_path, timeout_from_env() if timeout_s is None else timeout_s)


def keep_profiles(profiles: "list[Profile]") -> list[int]:
    """Store measured rows in the default store (what `profile` and `recommend --measure` keep); their ids."""
    if not profiles:
        return []
    with open_store() as db:
        return db.add_profiles(profiles)


def keep_eval(result: "EvalResult") -> int:
    """Store one evaluation in the default store; its id."""
    with open_store() as db:
        return db.add_eval(result)
