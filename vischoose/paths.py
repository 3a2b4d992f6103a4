"""Where vischoose keeps things on this machine: its home folder (results, graph cache), and the folder every
vischoose on the machine shares whatever its home or user (the machine's dense-compute peak and its measurement
lock)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

MACHINE_ENV = "VISCHOOSE_MACHINE_DIR"
PEAK_CACHE_FILE = "machine_peak.json"
LOCK_FILE = "measure.lock"
RESULTS_DB = "results.db"


def home() -> Path:
    """The vischoose home folder: $VISCHOOSE_HOME, else the platform's app folder."""
    env = os.environ.get("VISCHOOSE_HOME")
    if env:
        return Path(env).expanduser()
    import typer

    return Path(typer.get_app_dir("vischoose"))


def results_db() -> Path:
    """The results database (results.store reads and writes it)."""
    return home() / RESULTS_DB


def derived_cache() -> Path:
    """Package data kept in a faster form than it ships in (the zoo, parsed), remade whenever its source changes."""
    return home() / "cache"


def machine_dir() -> Path:
    """The folder shared by every vischoose on this machine: $VISCHOOSE_MACHINE_DIR, else /tmp/vischoose-machine.

    /tmp rather than the user's TMPDIR or the home: a figure of the machine (its peak) must be one figure whatever
    VISCHOOSE_HOME or user measured it (two homes that each measured their own peak, one on a busy machine, gave
    the same model two efficiencies), and one lock must hold the machine for every home and user. A machine whose
    /tmp is private per service sets the variable.
    """
    env = os.environ.get(MACHINE_ENV)
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":  # no /tmp: the system's temporary folder
        import tempfile

        return Path(tempfile.gettempdir()) / "vischoose-machine"
    return Path("/tmp/vischoose-machine")


def peak_cache() -> Path:
    """The machine's dense-compute peak per device, dtype and threads (JSON), shared by every home."""
    return machine_dir() / PEAK_CACHE_FILE


def measure_lock() -> Path:
    """The machine's measurement lock file (measure.lock's default), shared by every home and user."""
    return machine_dir() / LOCK_FILE


def make_shared(folder: Path) -> None:
    """Create `folder` (and its parents) as /tmp is, when missing: every user may write in it, sticky (no one removes
    or renames another user's file). A folder that exists is left as it is (another user made it as they could)."""
    if folder.is_dir():
        return
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.chmod(folder, 0o1777)
    except OSError:  # not ours to change (another user made it meanwhile)
        pass
