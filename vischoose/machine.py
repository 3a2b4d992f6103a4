"""This machine: a stable fingerprint and a description, without importing torch."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # x86 int8 dot products that accumulate without saturating
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 bf16 arithmetic with fast kernels
X86 = ("x86_64", "amd64", "i686", "i386")


def _uname() -> tuple[str, str]:
    """(host name, machine architecture): os.uname where the OS has it, which is what platform reads there (platform
    itself costs recommend's start-up ~1 ms)."""
    if hasattr(os, "uname"):
        u = os.uname()
        return u.nodename, u.machine
    import platform

    return platform.node(), platform.machine()


def arch() -> str:
    """The machine architecture as the OS names it ("x86_64", "aarch64", "AMD64")."""
    return _uname()[1]


@cache
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags as /proc/cpuinfo lists them (empty where the OS has no such file)."""
    try:
        with open(cpuinfo) as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU's flags include avx512_bf16 or amx_bf16."""
    return not cpu_flags(cpuinfo).isdisjoint(BF16_FLAGS)


def int8_saturates() -> bool:
    """Whether this is an x86 CPU without VNNI: its uint8 x int8 kernels (vpmaddubsw) add pairs of products into
    int16 and saturate, so ONNX Runtime advises 7-bit weights (reduce_range) there."""
    flags = cpu_flags()
    return arch().lower() in X86 and bool(flags) and not flags.intersection(VNNI_FLAGS)


@cache
def cpu_name() -> str:
    """The CPU model as the OS reports it."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or arch()


def memory_bytes() -> int:
    """Physical memory in bytes (sysconf where the OS has it: cheaper than importing psutil)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        import psutil

        return psutil.virtual_memory().total


@cache
def fingerprint() -> str:
    """12 hex digits identifying this machine's hardware (host, CPU, cores, memory)."""
    mem_gib = round(memory_bytes() / 2**30)
    host, architecture = _uname()
    key = "|".join([host, cpu_name(), str(os.cpu_count()), str(mem_gib), architecture])
    return _sha256(key.encode()).hexdigest()[:12]


def _sha256(data: bytes) -> Any:
    """hashlib.sha256 from CPython's own SHA-2 module where it has one: the same digest without hashlib, whose
    OpenSSL binding costs recommend ~3 ms of its start-up."""
    try:
        from _sha2 import sha256  # CPython 3.12+
    except ImportError:
        try:
            from _sha256 import sha256  # CPython 3.11
        except ImportError:
            from hashlib import sha256
    return sha256(data)


def describe() -> dict[str, str | int]:
    """Host, CPU, cores, memory and OS, for reports."""
    import platform

    return {
        "machine": fingerprint(),
        "host": platform.node(),
        "cpu": cpu_name(),
        "cores": os.cpu_count() or 0,
        "memory_gib": round(memory_bytes() / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
