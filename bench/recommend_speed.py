"""Startup cost of `vischoose recommend` on the built-in catalog against `python -c "import typer"`.

The console script a user runs (not python -m, which adds runpy) and a bare Typer import both run as fresh processes, alternated, so machine noise hits both alike. Target: recommend takes at most
1.5x the bare Typer import (recommend must not import torch or timm).

    python bench/recommend_speed.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECOMMEND = [str(Path(sys.executable).with_name("vischoose")), "recommend", "--budget-mb", "150", "--target", "mobile"]
TYPER = [sys.executable, "-c", "import typer"]


def wall(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def measure(runs: int) -> tuple[float, float]:
    """Median wall seconds of recommend and of `import typer`, alternated `runs` times after one warm-up each."""
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "VISCHOOSE_HOME": home}
        wall(RECOMMEND, env), wall(TYPER, env)  # warm the file cache (and create the empty store)
        rec, typ = [], []
        for _ in range(runs):
            rec.append(wall(RECOMMEND, env))
            typ.append(wall(TYPER, env))
    return statistics.median(rec), statistics.median(typ)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    r, t = measure(args.runs)
    print(f"python {sys.version.split()[0]}, {args.runs} alternating runs each, wall time per process (median):")
    print(f"  vischoose recommend --budget-mb 150 --target mobile : {r * 1000:7.1f} ms")
    print(f"  python -c 'import typer'                            : {t * 1000:7.1f} ms")
    print(f"  ratio: {r / t:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
