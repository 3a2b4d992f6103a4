"""Where vischoose keeps things on this machine: its home folder (results, graph cache), and the folder every
vischoose on the machine shares whatever its home or user (the machine's dense-compute peak; the measurement lock
belongs there too)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

MACHINE_ENV = "VISCHOOSE_MACHINE_DIR"
PEAK_CACHE_FILE = "machine_peak.json"


def home() -> Path:
    """The vischoose home folder: $VISCHOOSE_HOME, else the platform's app folder."""
    env = os.environ.get("VISCHOOSE_HOME")
    if env:
        return Path(env).expanduser()
    import typer

    return Path(typer.get_app_dir("vischoose"))


def machine_dir() -> Path:
    """The folder shared by every vischoose on this machine: $VISCHOOSE_MACHINE_DIR, else /tmp/vischoose-machine.

    /tmp rather than the user's TMPDIR or the home: a figure of the machine (its peak) must be one figure whatever
    VISCHOOSE_HOME or user measured it; two homes that each measured their own peak, one on a busy machine, gave
    the same model two efficiencies. A machine whose /tmp is private per service sets the variable.
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
