"""Where vischoose keeps things on this machine: its home folder (results, graph cache, machine peak), nothing else."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The vischoose home folder: $VISCHOOSE_HOME, else the platform's app folder."""
    env = os.environ.get("VISCHOOSE_HOME")
    if env:
        return Path(env).expanduser()
    import typer

    return Path(typer.get_app_dir("vischoose"))
