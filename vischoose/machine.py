"""This machine: a stable fingerprint, its kind (the hardware without the host name: identical nodes of a fleet share
it) and a description, without importing torch.

VISCHOOSE_MACHINE (a JSON object) names the machine instead of what the OS reports: {"host", "cpu", "cores",
"memory_gib", "arch", "flags", "gpus"}, any of them. It changes what rows say the machine is (fingerprint, kind,
CPU name), never what the code does on it: kernels and recipes still follow the CPU's own flags (cpu_flags). It is
for a container that hides the host's CPU model, and for simulating several kinds of machine on one host.
"""

import os
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

from vischoose.errors import UsageError

VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # x86 int8 dot products that accumulate without saturating
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 bf16 arithmetic with fast kernels
X86 = ("x86_64", "amd64", "i686", "i386")
MACHINE_ENV = "VISCHOOSE_MACHINE"
# the instruction sets that decide which kernels run (so two CPUs that differ in them are two kinds of machine);
# the full flags line also lists features that kernel versions report differently on the same hardware
ISA_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile",
             "amx_int8", "amx_bf16", "asimd", "asimddp", "asimdhp", "sve", "sve2", "bf16", "i8mm")
NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")


class MachineFacts(NamedTuple):
    """What identifies a machine: its host, CPU model and instruction sets, cores, memory and GPUs."""

    host: str
    cpu: str
    cores: int
    memory_gib: int
    arch: str
    flags: tuple[str, ...] = ()  # the ISA_FLAGS it has
    gpus: tuple[str, ...] = ()  # one model name per GPU

    @property
    def fingerprint(self) -> str:
        """12 hex digits of host, CPU, cores, memory and architecture: this one machine."""
        key = "|".join([self.host, self.cpu, str(self.cores), str(self.memory_gib), self.arch])
        return _sha256(key.encode()).hexdigest()[:12]

    @property
    def kind(self) -> str:
        """12 hex digits of the hardware without the host: every machine of the same kind shares it."""
        key = "|".join([self.cpu, str(self.cores), str(self.memory_gib), self.arch, ",".join(self.flags),
                        ",".join(self.gpus)])
        return _sha256(b"kind|" + key.encode()).hexdigest()[:12]

    @property
    def title(self) -> str:
        """'Intel Xeon 8488C, 16 cores, 64 GiB, 1x NVIDIA H100' (no host name)."""
        gpus = [f"{self.gpus.count(g)}x {g}" for g in dict.fromkeys(self.gpus)]
        return ", ".join([self.cpu, f"{self.cores} cores", f"{self.memory_gib} GiB", *gpus])


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


def cpu_name() -> str:
    """The CPU model: VISCHOOSE_MACHINE's "cpu", else as the OS reports it."""
    return str(overrides().get("cpu") or _reported_cpu())


@cache
def _reported_cpu() -> str:
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


def gpu_names(root: Path = NVIDIA_GPUS) -> tuple[str, ...]:
    """The NVIDIA GPUs' model names as the driver lists them (no torch, no CUDA initialised); () without any."""
    names = []
    try:
        boards = sorted(root.iterdir())
    except OSError:
        return ()
    for board in boards:
        try:
            text = (board / "information").read_text()
        except OSError:
            continue
        names += [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model:")]
    return tuple(names)


def overrides(text: str | None = None) -> dict[str, Any]:
    """VISCHOOSE_MACHINE's facts (or `text`'s), checked: {} when it is not set.

    Raises:
        UsageError: not a JSON object of known facts with values of the right type.
    """
    text = os.environ.get(MACHINE_ENV, "") if text is None else text
    if not text.strip():
        return {}
    import json  # here: without an override (every recommend) json stays unimported

    try:
        found = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(f"{MACHINE_ENV} is not JSON ({err.msg} at column {err.colno}).",
                         hint='Give an object such as {"cpu": "Graviton3", "cores": 16}.') from None
    types = {"host": str, "cpu": str, "cores": int, "memory_gib": int, "arch": str, "flags": list, "gpus": list}
    if not isinstance(found, dict) or any(k not in types or not isinstance(v, types[k]) for k, v in found.items()):
        raise UsageError(f"{MACHINE_ENV} must be a JSON object of facts: "
                         + ", ".join(f"{k} ({t.__name__})" for k, t in types.items()) + f"; got {text.strip()}.")
    return found


def facts(text: str | None = None) -> MachineFacts:
    """This machine as the OS reports it, with VISCHOOSE_MACHINE's (or `text`'s) facts in place of the reported."""
    given = overrides(text)
    host, architecture = _uname()
    flags = [f for f in ISA_FLAGS if f in cpu_flags()]
    reported = MachineFacts(host=host, cpu=cpu_name(),
                            cores=os.cpu_count() or 0, memory_gib=round(memory_bytes() / 2**30), arch=architecture,
                            flags=tuple(flags), gpus=gpu_names())
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    return MachineFacts(**{**reported._asdict(), **values})


@cache
def fingerprint() -> str:
    """12 hex digits identifying this machine's hardware (host, CPU, cores, memory)."""
    return facts().fingerprint


@cache
def kind() -> str:
    """12 hex digits identifying this kind of machine (CPU, instruction sets, cores, memory, GPUs; not the host)."""
    return facts().kind


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

    found = facts()
    return {
        "machine": fingerprint(),
        "kind": kind(),
        "host": found.host,
        "cpu": found.cpu,
        "cores": found.cores,
        "memory_gib": round(memory_bytes() / 2**30, 1) if "memory_gib" not in overrides() else found.memory_gib,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
