"""Files the deployment runtimes write: checks that a path can be written, staging beside it, an atomic
rename into place, sizes on disk, and the exception types of onnx and ONNX Runtime (imported lazily)."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Iterator

from vischoose.errors import UsageError, opt
from vischoose.units import MIB


def file_mb(path: str | Path) -> float:
    """Size in MiB of an ONNX file plus its external data file, if any."""
    path = Path(path)
    data = Path(str(path) + ".data")
    return (path.stat().st_size + (data.stat().st_size if data.is_file() else 0)) / MIB


def check_writable(path: Path) -> None:
    """Raise UsageError unless a file can be created at path."""
    parent = path.parent
    if path.is_dir():
        raise UsageError(f"Cannot write {path}: it is a folder.",
                         hint=f"Give a file name, e.g. {path / 'model.onnx'}")
    if not parent.is_dir():
        why = "is a file, not a folder" if parent.exists() else "does not exist"
        raise UsageError(f"Cannot write {path}: {parent} {why}.", hint=f"Create the folder first, or pick another {opt('out')}.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"Cannot write {path}: no permission to write in {parent}.")


@contextlib.contextmanager
def staging(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` (same file system, so the final rename is atomic), removed afterwards."""
    import shutil  # here: `recommend` imports this module (through the registry) and never stages a file
    import tempfile

    try:
        folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as err:
        raise UsageError(f"Cannot write {path}: {err.strerror or err}.") from err
    try:
        yield folder / path.name
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def companions(path: str | Path) -> list[Path]:
    """A built file and what its runtime reads beside it: the same name with another ending (`m.onnx.data`, an
    IR's `m.bin`). Only for files vischoose wrote, in folders it made: any `m.*` beside `m.xml` counts."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(each for each in path.parent.iterdir()
                  if each.is_file() and (each.name == path.name or each.name.startswith(path.stem + ".")))


def publish(staged: Path, path: Path) -> None:
    """Rename a staged file and its companions (external data, an IR's weights) into place, the file last.

    Raises:
        UsageError: the rename failed (permissions, a folder in the way).
    """
    try:
        for each in sorted(companions(staged), key=lambda p: p.name == staged.name):
            os.replace(each, path.with_name(path.stem + each.name[len(staged.stem):]))
    except OSError as err:
        raise UsageError(f"Cannot write {path}: {err.strerror or err}.") from err


def first_line(err: BaseException) -> str:
    """The first non-blank line of an exception's message (at most 200 characters), for one-line errors."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # terminal colour codes
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[0] if lines else type(err).__name__)[:200]


def onnx_errors() -> tuple[type[BaseException], ...]:
    """The exception types onnx and ONNX Runtime raise for bad graphs (they derive from Exception only)."""
    import onnx
    import onnxruntime.capi.onnxruntime_pybind11_state as ort_state
    from google.protobuf.message import DecodeError

    found = [c for c in vars(ort_state).values() if isinstance(c, type) and issubclass(c, Exception)]
    return tuple(found) + (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, DecodeError)


def remove(path: str | Path) -> None:
    """Delete a built file and its companions (external data, an IR's weights), if they exist."""
    for each in companions(path):
        each.unlink(missing_ok=True)
