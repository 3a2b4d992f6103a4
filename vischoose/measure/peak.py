"""The machine's dense-compute peak per device, dtype and thread count (best of square matmuls and a 3x3
convolution), measured once and cached as JSON in the folder every vischoose on the machine shares
(paths.peak_cache: one peak per machine, whatever VISCHOOSE_HOME measured it): the denominator of every efficiency."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager

from vischoose.measure.timing import make_timer
from vischoose.paths import PEAK_CACHE_FILE, make_shared

if TYPE_CHECKING:
    from vischoose.measure.protocol import Job

if TYPE_CHECKING:
    import torch

__all__ = ["PEAK_CACHE_FILE", "cached_peak", "machine_peak_gflops", "peak_key", "read_cache", "write_cache"]
PEAK_SIZES = (2048, 4096)  # square matmuls for the machine's FLOP/s peak
PEAK_REPS = 3
PEAK_MAX_REP_S = 5.0  # one run of a kernel this slow (a dtype without fast kernels here) is enough


def _peak_kernels(device: "torch.device", dtype: "torch.dtype",
                  sizes: tuple[int, ...]) -> list[tuple[str, float, Callable[[], Callable[[], Any]]]]:
    """(name, FLOPs per call, setup returning the call) of the dense kernels the peak is the best of."""
    import torch

    def matmul(n: int) -> Callable[[], Any]:
        a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
        return lambda: a @ b

    def conv() -> Callable[[], Any]:
        x = torch.randn(8, 256, 56, 56, device=device).to(dtype)
        w = torch.randn(256, 256, 3, 3, device=device).to(dtype)
        return lambda: torch.nn.functional.conv2d(x, w, padding=1)

    kernels = [(f"matmul {n}^3", 2.0 * n**3, lambda n=n: matmul(n)) for n in sizes]
    # a 3x3 convolution too: on some CPUs (MKL's sgemm on AMD) convolutions run twice as fast as matmuls
    return kernels + [("conv3x3 8x256x56x56", 2.0 * 8 * 256 * 256 * 9 * 56 * 56, conv)]


def machine_peak_gflops(device: "torch.device", dtype: "torch.dtype", sizes: tuple[int, ...] = PEAK_SIZES,
                       reps: int = PEAK_REPS) -> dict[str, Any]:
    """The machine's dense-compute peak at a device and dtype, GFLOP/s: best of square matmuls and a conv."""
    import torch

    timer = make_timer(device)
    best, best_kernel = 0.0, ""
    with torch.inference_mode():
        for name, flops, setup in _peak_kernels(device, dtype, sizes):
            call = setup()
            seconds = timer(call)  # warm-up: library initialisation, kernel selection
            if seconds > PEAK_MAX_REP_S:  # far too slow at this dtype here: one run says enough
                best, best_kernel = max((best, best_kernel), (flops / seconds / 1e9, name))
                continue
            for _ in range(reps):
                seconds = timer(call)
                best, best_kernel = max((best, best_kernel), (flops / seconds / 1e9, name))
            del call
    return {"gflops_s": best, "kernel": best_kernel, "reps": reps}


def cached_peak(job: Job, device: "torch.device", dtype: "torch.dtype", key: str,
                report: Callable[[str], None] = lambda phase: None,
                hold: Callable[[], ContextManager[Any]] = contextlib.nullcontext) -> dict[str, Any]:
    """The machine's peak for this key ({gflops_s, kernel, ...}), measured once, cached as JSON in the machine's
    folder (paths.peak_cache); hold() holds the machine while the kernels are timed (protocol.timed, passed in by the
    timing child)."""
    import torch

    path = job.peak_cache
    cache = read_cache(path)
    if key not in cache:
        report("machine peak (once)")
        with hold():  # timed kernels: one measurement at a time on this machine (re-entrant in a timing child)
            entry = read_cache(path).get(key) or machine_peak_gflops(device, dtype)  # another may have written it
        entry.update(measured_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), torch_version=torch.__version__)
        cache = {**read_cache(path), key: entry}  # another process may have written other keys meanwhile
        write_cache(path, cache)
    return dict(cache[key])


def read_cache(path: Path) -> dict[str, Any]:
    """The peak cache's entries ({} when missing, or half-written by another user's process)."""
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return {}


def write_cache(path: Path, cache: dict[str, Any]) -> None:
    """Write the cache so that every user of the machine can read and rewrite it: the folder like /tmp (anyone
    writes, sticky), the file 0666; atomically by rename, or in place where the file is another user's (a
    sticky folder lets no one rename over someone else's file)."""
    text = json.dumps(cache, indent=2)
    make_shared(path.parent)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        _chmod(tmp, 0o666)
        tmp.replace(path)  # atomically: another process may read it now
    except PermissionError:
        tmp.unlink(missing_ok=True)
        path.write_text(text)


def _chmod(path: Path, mode: int) -> None:
    try:
        os.chmod(path, mode)
    except OSError:  # not ours to change (another user made it): it already is as that user left it
        pass


def peak_key(machine: str, device: str, device_name: str, dtype: str, threads: int | None) -> str:
    """Cache key of a machine peak: machine, device, dtype (and threads on CPU)."""
    key = f"{machine}|{device}|{device_name}|{dtype}"
    return key if device.startswith("cuda") else f"{key}|threads={threads}"
