"""One timed measurement at a time per machine: an OS file lock every vischoose on the machine takes around its
timed phases (profile's timing children, recommend --measure, --optimize trials, export --measure).

Two measurements timed at once each take the other's cores, and both store figures several times too slow. The lock
is `fcntl.flock` on one file, so the kernel releases it when its holder exits, however it exits (SIGKILL included):
there is no stale lock to clean up. Where the file lives: measure.lock in the folder every vischoose on the machine
shares (paths.machine_dir: /tmp/vischoose-machine, or VISCHOOSE_MACHINE_DIR; the machine's peak is cached there too),
because the lock must be shared by every user and every VISCHOOSE_HOME on the machine (a lock under VISCHOOSE_HOME,
or under a per-user TMPDIR, would let two homes or two users time at once); /tmp exists on every POSIX system and is
writable by all, and the folder is made as /tmp is (sticky, writable by all). The file is made world-writable (0666)
and opened without O_CREAT when it exists, since Linux's protected_regular refuses O_CREAT on another user's file in
a sticky folder. VISCHOOSE_MEASURE_LOCK names another file (tests; one lock for machines that share a folder). The holder writes who it is into the file (pid, what,
since when), so a waiting vischoose can say for whom it waits. The lock is re-entrant within a process (the machine
peak, measured inside a timing child's timed block, takes it again). Work that times nothing never takes it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

from vischoose import paths
from vischoose.errors import MeasurementBusyError, UsageError

LOCK_ENV = "VISCHOOSE_MEASURE_LOCK"
POLL_S = 0.5  # how often a waiting process tries the lock again (and tells its progress line)
_depth = 0  # how deep this process is inside exclusive() (re-entrant)


class Holder(NamedTuple):
    """Who holds the lock, as the holder wrote it."""

    pid: int
    what: str  # "profile resnet50"
    since: float  # time.time() when it took the lock

    def describe(self, now: float | None = None) -> str:
        """'pid 4121, profile resnet50, running 40 s'."""
        running = max(0.0, (now if now is not None else time.time()) - self.since)
        return f"pid {self.pid}, {self.what}, running {running:.0f} s"


Waiting = Callable[["Holder | None", float], None]  # (who holds it, if known; seconds waited so far)


def lock_path() -> Path:
    """The machine's measurement lock file: $VISCHOOSE_MEASURE_LOCK, else measure.lock in the machine's shared folder
    (paths.measure_lock)."""
    return Path(os.environ.get(LOCK_ENV) or paths.measure_lock())


def command_line(argv: list[str] | None = None) -> str:
    """What this process is, for the holder line: 'vischoose recommend --target mobile --measure' (shortened)."""
    args = list(sys.argv if argv is None else argv)
    name = Path(args[0]).name if args else "python"
    text = " ".join(["vischoose" if name in ("vischoose", "__main__.py", "-m") else name, *args[1:]])
    return text if len(text) <= 80 else text[:77] + "..."


def read_holder(path: Path | None = None) -> Holder | None:
    """The holder the lock file names, or None (free, unreadable, or written by something else)."""
    try:
        data = json.loads((path or lock_path()).read_text())
        return Holder(int(data["pid"]), str(data["what"]), float(data["since"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _open(path: Path) -> int:
    """The lock file's descriptor: opened as it is when it exists (never through a symbolic link), else created
    world-writable so that every user can lock it.

    Raises:
        UsageError: the file cannot be opened or created here.
    """
    flags = os.O_RDWR | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    while True:
        try:
            return os.open(path, flags)
        except FileNotFoundError:
            if path == paths.measure_lock():
                paths.make_shared(path.parent)  # the machine's folder, made as /tmp is
        except OSError as err:
            raise _unusable(path, err) from err
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue  # another process created it in between: open theirs
        except OSError as err:
            raise _unusable(path, err) from err
        os.fchmod(fd, 0o666)  # the umask took bits away: every user must be able to lock it
        return fd


def _unusable(path: Path, err: OSError) -> UsageError:
    return UsageError(f"Cannot open the machine's measurement lock {path}: {err.strerror or err}.",
                      hint=f"Set {LOCK_ENV} to a file every vischoose user on this machine can write.")


def _try_lock(fd: int, path: Path) -> bool:
    """Take the lock without waiting; False when another process holds it. A lock taken on a file that was since
    removed or replaced (a /tmp cleaner) is given back and reported as not taken, so the caller opens the new one."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    try:
        same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        same = False
    if not same:
        fcntl.flock(fd, fcntl.LOCK_UN)
    return same


def _write_holder(fd: int, what: str) -> None:
    data = json.dumps({"pid": os.getpid(), "what": what, "since": time.time()}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def acquire(what: str, wait: bool = True, on_wait: Waiting | None = None, path: Path | None = None,
            sleep: Callable[[float], None] = time.sleep) -> int:
    """Take the machine's measurement lock (waiting while another process holds it, unless wait is False); returns
    the descriptor that holds it (release() gives it back).

    Raises:
        MeasurementBusyError: wait is False and another process holds it (exit code 75).
        UsageError: the lock file cannot be opened.
    """
    path = path or lock_path()
    start = time.monotonic()
    while True:
        fd = _open(path)
        if _try_lock(fd, path):
            _write_holder(fd, what)
            return fd
        os.close(fd)
        holder = read_holder(path)
        if not wait:
            raise MeasurementBusyError(holder.describe() if holder else None, str(path))
        if on_wait is not None:
            on_wait(holder, time.monotonic() - start)
        sleep(POLL_S)


def release(fd: int) -> None:
    """Give the lock back (the holder line is cleared first, so nobody reads a stale one)."""
    try:
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the last descriptor of the open file releases the flock


@contextmanager
def exclusive(what: str, wait: bool = True, on_wait: Waiting | None = None,
              path: Path | None = None) -> Iterator[None]:
    """Hold the machine's measurement lock while the block runs (a no-op inside a block of this process that holds
    it already). Without fcntl (not POSIX) there is no lock and the block runs at once.

    Raises:
        MeasurementBusyError: wait is False and another process holds the lock.
    """
    global _depth
    if _depth or not _has_flock():
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
        return
    fd = acquire(what, wait, on_wait, path)
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        release(fd)


def _has_flock() -> bool:
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return False
    return True
