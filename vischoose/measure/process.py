"""What a measuring process may use: the CPU cores it may run on (affinity and cgroup quota), the thread count a
measurement gets (never more than those cores), and its resident memory. No torch."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

from vischoose.errors import opt

CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cores(affinity: set[int] | None = None, cgroup: Path = CGROUP_ROOT) -> int:
    """The cores this process may run on: its CPU affinity, lowered by a cgroup CPU quota where one is set."""
    if affinity is None:
        try:
            affinity = os.sched_getaffinity(0)
        except (AttributeError, OSError):  # not Linux
            affinity = set(range(os.cpu_count() or 1))
    cores = max(len(affinity), 1)
    quota = cgroup_quota(cgroup)
    return max(1, min(cores, math.floor(quota))) if quota else cores


def cgroup_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs the cgroup quota allows (cgroup v2 cpu.max, or v1 cfs_quota/period); None without a quota."""
    try:
        text = (root / "cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def default_threads(cores: int) -> int:
    """torch's and ONNX Runtime's own default, one thread per physical core, within the usable cores."""
    import psutil

    return max(1, min(psutil.cpu_count(logical=False) or cores, cores))


def capped_threads(requested: int | None, cores: int | None = None) -> int:
    """The threads a measurement runs with: what was asked (default: one per physical core), at most the cores."""
    cores = cores or usable_cores()
    return max(1, min(requested or default_threads(cores), cores))


def cap_note(requested: int | None, threads: int, who: str) -> str | None:
    """'mobile asks 4 threads; 2 cores here: measured at 2', or None when nothing was capped."""
    if requested is None or requested <= threads:
        return None
    who = opt(who) if who == "threads" else who  # the option, or the preset that asked
    return (f"{who} asks {requested} threads; {threads} core{'s' if threads > 1 else ''} here: measured at {threads} "
            "(more threads than cores make the pool fight itself)")


def thread_env(threads: int) -> dict[str, str]:
    """The environment a child process starts with: its OpenMP/MKL pools sized before torch is imported."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float:
    """Resident set size of this process now, MiB."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def trim_heap() -> bool:
    """Give the C heap's free memory back to the system (glibc's malloc_trim), so that a peak measured next counts what
    the model holds, not what loading it freed and the allocator kept: ONNX Runtime's session creation leaves about
    75 MiB of it for resnet18 fp32 (its 44.6 MiB of weights). False where there is no glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    try:
        return bool(name) and bool(ctypes.CDLL(name).malloc_trim(0) >= 0)
    except (OSError, AttributeError):
        return False


def reset_peak_rss() -> bool:
    """Lower the kernel's peak-RSS mark to the current RSS (Linux >= 4.0); False where that is impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident set size of this process since start or the last reset, MiB."""
    kb = _status_kb("VmHWM")
    if kb is None:  # not Linux: getrusage's maximum is since start (kB on Linux/BSD, bytes on macOS)
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
    return kb / 2**10
