"""Results as data: typed records from dicts, content ids, and JSON/CSV files that round-trip every field."""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin, get_type_hints

from vischoose.errors import UsageError

if TYPE_CHECKING:
    from vischoose.records import EvalResult, Profile
    from vischoose.results.store import StoredResult

    Record = Profile | EvalResult

KINDS = ("profile", "eval")  # the kinds of record, as stored and exported (records imported only to build one)


def kind_class(kind: str) -> type:
    """The record class of a kind."""
    from vischoose.records import EvalResult, Profile

    return {"profile": Profile, "eval": EvalResult}[kind]

EXPORT_SCHEMA_VERSION = 1
META_COLUMNS = ["id", "kind", "imported_from", "stored_at"]
_EXPORT_HINT = "Write one on the other machine with: vischoose results export --format json --out results.json"


@cache
def _hints(cls: type) -> dict[str, tuple[type, bool]]:
    """Each field's base type and whether it may be None."""
    out = {}
    for name, hint in get_type_hints(cls).items():
        args = get_args(hint) if get_origin(hint) in (Union, UnionType) else (hint,)
        base = next(a for a in args if a is not type(None))
        out[name] = (base, type(None) in args)
    return out


def _coerce(base: type, optional: bool, value: Any) -> Any:
    """One field's value as its declared type (from SQLite ints or CSV text)."""
    import json
    if value is None or (value == "" and optional):
        return None
    if base is bool:
        if isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"not a boolean: {value!r}")
            return value.lower() in ("true", "1", "yes")
        return bool(value)
    if base in (int, float, str):
        return base(value)
    if get_origin(base) is list:  # a list of names (reverted_layers): a JSON list in CSV cells
        items = json.loads(value) if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise ValueError(f"not a list of names: {value!r}")
        return items
    return value


def record_from_dict(kind: str, data: dict[str, Any]) -> Record:
    """A Profile or EvalResult with every field coerced to its declared type (unknown keys ignored).

    Raises:
        ValueError: a value that does not convert, or a required field missing.
    """
    cls = kind_class(kind)
    hints = _hints(cls)
    values = {k: _coerce(*hints[k], v) for k, v in data.items() if k in hints}
    try:
        return cls(**values)
    except TypeError as err:
        raise ValueError(str(err)) from None


def kind_of(record: Record) -> str:
    """'profile' or 'eval'."""
    from vischoose.records import Profile

    return "profile" if isinstance(record, Profile) else "eval"


def record_uid(record: Record) -> str:
    """A content hash of every field not at its default: the same result gives the same uid on every machine, and
    fields added in later versions (at their default in older results) leave an older result's uid unchanged."""
    import json
    from dataclasses import MISSING, fields  # here: recommend reads the store at start-up, and writes no record

    normal = record_from_dict(kind_of(record), record.to_dict())
    defaults = {f.name: f.default for f in fields(normal) if f.default is not MISSING}
    data = {k: v for k, v in normal.to_dict().items() if k not in defaults or v != defaults[k]}
    text = json.dumps({"kind": kind_of(record), **data}, sort_keys=True, default=str)
    import hashlib  # here: OpenSSL's load is most of reading the store, which `recommend` does on every call

    return hashlib.sha256(text.encode()).hexdigest()


def csv_columns() -> list[str]:
    """CSV header: id, kind, source, then every Profile field and the EvalResult fields Profile lacks."""
    from dataclasses import fields

    from vischoose.records import EvalResult, Profile

    names = [f.name for f in fields(Profile)]
    names += [f.name for f in fields(EvalResult) if f.name not in names]
    return META_COLUMNS + names


def to_json(results: list[StoredResult]) -> str:
    """A JSON export: an envelope with schema_version, one item per result with every field."""
    import json
    items = [{"id": r.id, "kind": r.kind, "imported_from": r.imported_from, "stored_at": r.stored_at,
              "record": r.record.to_dict()} for r in results]
    return json.dumps({"schema_version": EXPORT_SCHEMA_VERSION, "kind": "results", "data": items}, indent=2) + "\n"


def to_csv(results: list[StoredResult]) -> str:
    """A CSV export, one row per result; empty cells are missing values."""
    import csv

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=csv_columns(), lineterminator="\n")
    writer.writeheader()
    for r in results:
        row: dict[str, Any] = {"id": r.id, "kind": r.kind, "imported_from": r.imported_from or "",
                               "stored_at": r.stored_at}
        row.update({k: _cell(v) for k, v in r.record.to_dict().items()})
        writer.writerow(row)
    return buf.getvalue()


def _cell(value: Any) -> Any:
    """A field as a CSV cell: missing values empty, lists as JSON (which _coerce reads back)."""
    import json
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, list) else value


def read_results_file(path: Path) -> list[Record]:
    """The results in a JSON or CSV export file.

    Raises:
        UsageError: the file cannot be read or is not a vischoose results export.
    """
    if path.suffix.lower() in (".md", ".markdown"):
        raise UsageError(f"{path}: Markdown exports are for reading and cannot be imported.", hint=_EXPORT_HINT)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
        raise UsageError(f"Cannot read {path}: {reason}.", hint=_EXPORT_HINT) from err
    if text.lstrip()[:1] in ("{", "["):
        return _from_json(path, text)
    return _from_csv(path, text)


def _bad(path: Path, reason: str) -> UsageError:
    return UsageError(f"{path} is not a vischoose results export: {reason}.", hint=_EXPORT_HINT)


def _record(path: Path, where: str, kind: Any, data: Any) -> Record:
    if kind not in KINDS:
        raise _bad(path, f"{where} has kind {kind!r} (expected one of: {', '.join(KINDS)})")
    if not isinstance(data, dict):
        raise _bad(path, f"{where} has no record")
    try:
        return record_from_dict(kind, data)
    except ValueError as err:
        raise _bad(path, f"{where}: {err}") from None


def _from_json(path: Path, text: str) -> list[Record]:
    import json
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise _bad(path, f"invalid JSON at line {err.lineno} column {err.colno}") from None
    if isinstance(doc, dict):
        if doc.get("kind") != "results":
            raise _bad(path, f"its kind is {doc.get('kind')!r}, not 'results'")
        version = doc.get("schema_version")
        if not isinstance(version, int) or version > EXPORT_SCHEMA_VERSION:
            raise _bad(path, f"schema_version {version!r} is newer than this vischoose reads "
                             f"({EXPORT_SCHEMA_VERSION})")
        doc = doc.get("data")
    if not isinstance(doc, list):
        raise _bad(path, "expected a list of results")
    return [_record(path, f"item {i}", item.get("kind") if isinstance(item, dict) else None,
                    item.get("record") if isinstance(item, dict) else None) for i, item in enumerate(doc)]


def _from_csv(path: Path, text: str) -> list[Record]:
    import csv

    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "kind" not in reader.fieldnames:
        raise _bad(path, "neither JSON nor CSV with a 'kind' column")
    return [_record(path, f"line {i + 2}", row.get("kind"), row) for i, row in enumerate(reader)]


def write_text(path: Path, text: str) -> None:
    """Write an export or report file. Raises UsageError when it cannot be written."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        raise UsageError(f"Cannot write {path}: {err.strerror or err}.") from err
