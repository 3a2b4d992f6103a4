"""Data the package ships, kept parsed for the next command in the home's cache (paths.derived_cache()): the catalog,
the presets and timm's zoo are read from TOML and JSON once, then from marshal, a fast format (0.1 ms for the catalog
against ~4 ms for importing tomllib and parsing it).

A kept value carries the key it was made under: marshal's and Python's versions and the bytes (length and CRC-32) of
every source it depends on, the data file and the code that shapes it. Any change there, a same-size edit with its
mtime kept included, makes it again. A cache that cannot be read (broken, someone else's, a home that cannot be named
or written) is never an error: the source is read instead.
"""

from __future__ import annotations

import marshal
import os
import sys
import zlib
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

T = TypeVar("T")


def key_of(sources: Sequence[bytes]) -> tuple:
    """The key a value made from these sources carries."""
    return (marshal.version, sys.version_info[:2], *((len(b), zlib.crc32(b)) for b in sources))


def cached(name: str, sources: Sequence[bytes], make: Callable[[], T]) -> T:
    """The value kept under `name` where it was made from these sources, else make() (plain values only: str,
    numbers, None, tuples, lists, dicts), kept for the next command where the home is writable."""
    file = _file(name)
    key = key_of(sources)
    if file is not None:
        found = read(file, key)
        if found is not None:
            return found
    value = make()
    if file is not None:
        write(file, key, value)
    return value


def _file(name: str) -> Path | None:
    from vischoose import paths

    try:
        return paths.derived_cache() / name
    except RuntimeError:  # pathlib cannot expand a '~user' home
        return None


def read(file: Path, key: tuple) -> Any | None:
    """The value kept in `file` under `key`; None where there is none, it is someone else's or the file is broken (a
    missed shortcut only). marshal rebuilds values, never runs code."""
    try:
        found = marshal.loads(file.read_bytes())
    except (OSError, EOFError, ValueError, TypeError, MemoryError):
        return None
    return found[1] if isinstance(found, tuple) and len(found) == 2 and found[0] == key else None


def write(file: Path, key: tuple, value: Any) -> None:
    """Keep a value: written whole to a new file of a random name (never one planted there: O_EXCL, O_NOFOLLOW),
    then renamed over the cache (two commands writing at once each rename a whole file). A home that cannot be
    written, or a value marshal cannot keep, is no error."""
    try:
        data = marshal.dumps((key, value))
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.{os.getpid()}-{os.urandom(6).hex()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, file)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except (OSError, ValueError):
        pass


def toml(path: Path) -> dict[str, Any]:
    """A TOML file's contents, parsed once and kept (named after the file and its absolute path); tomllib is imported
    only to parse it again.

    Raises:
        OSError: the file cannot be read.
        ValueError: it is not TOML (tomllib.TOMLDecodeError) or not UTF-8 (UnicodeDecodeError).
    """
    text = path.read_bytes()

    def parse() -> dict[str, Any]:
        import tomllib

        return tomllib.loads(text.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n"))  # as read_text reads

    where = zlib.crc32(os.path.abspath(path).encode("utf-8", "surrogateescape"))
    return cached(f"{path.stem}-{where:08x}.toml.marshal", (text,), parse)
