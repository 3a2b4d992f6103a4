"""How much CPU the rest of the machine took while a phase was timed: measured, not guessed from the spread.

A process spinning beside a measurement for its whole length slows every run alike, so the spread check
(measure.timing.noise) cannot see it. Over the phase's wall time, the CPU time the cores this process may run on
(its affinity) were busy, steal time included (a hypervisor running another guest on them), minus this process's
own CPU time, is what everything else took, counted in cores: 1.0 means one core kept busy by others the whole phase.

A phase is contended when others took more than CONTENDED_CORES (0.10) beyond the cores this measurement leaves
idle (physical cores in its affinity minus its threads: none when it uses them all, as by default), plus the
counter's own resolution (/proc/stat counts in clock ticks: two ticks per core over a short phase). Why 0.10:
a quiet machine's daemons and kernel threads take about 0.01-0.03 of a core; an intra-op thread pool waits for its
slowest thread at every operator, so others' share of one core comes off the whole measurement's speed, and 0.10 of
one core is a 10% slowdown at worst, the most a figure may be off and still rank models. VISCHOOSE_CONTENDED_CORES
sets another limit (a machine that is never quiet, where the flag would mark every row, or a test).
"""

from __future__ import annotations

import math
import os
import time
from typing import Callable, NamedTuple

CONTENDED_ENV = "VISCHOOSE_CONTENDED_CORES"
CONTENDED_CORES = 0.10
QUIET_WAIT_S = 10.0  # the longest pause, after a contended phase, for the others to finish before measuring again
QUIET_WINDOW_S = 0.5  # the pause looks at the others' load over windows this long
PROC_STAT = "/proc/stat"


class CpuTimes(NamedTuple):
    """CPU seconds so far: the cores this process may run on (busy, steal included), and this process's own."""

    busy_s: float
    own_s: float


Source = Callable[[], CpuTimes]


class Reading(NamedTuple):
    """What the rest of the machine took during one phase."""

    others_cores: float  # mean cores of CPU time others took on this process's cores (1.0 = one core throughout)
    wall_s: float
    allowed_cores: float  # the most others may take before the phase counts as contended

    @property
    def contended(self) -> bool:
        """Others took more than the limit."""
        return self.others_cores > self.allowed_cores

    def why(self) -> str:
        """'others took 0.85 cores (limit 0.10)'."""
        return f"others took {self.others_cores:.2f} cores (limit {self.allowed_cores:.2f})"


def contended_cores() -> float:
    """The limit: $VISCHOOSE_CONTENDED_CORES, else CONTENDED_CORES.

    Raises:
        UsageError: a value that is not a number of cores >= 0.
    """
    text = os.environ.get(CONTENDED_ENV, "")
    if not text:
        return CONTENDED_CORES
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # nan too
        from vischoose.errors import UsageError

        raise UsageError(f"{CONTENDED_ENV}='{text}' is not a number of cores >= 0.")
    return value


def _cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return list(range(os.cpu_count() or 1))


def _proc_stat_busy(cpus: list[int], text: str) -> float | None:
    """Busy seconds of the listed CPUs from /proc/stat's text: user, nice, system, irq, softirq and steal (guest
    time is already inside user); None when a CPU is missing."""
    tick = os.sysconf("SC_CLK_TCK")
    wanted, busy = {f"cpu{i}" for i in cpus}, 0
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] in wanted:
            values = [int(v) for v in fields[1:9]] + [0] * 8
            busy += values[0] + values[1] + values[2] + values[5] + values[6] + values[7]
            wanted.discard(fields[0])
    return None if wanted else busy / tick


def machine_source(cpus: list[int] | None = None) -> Source:
    """The real source: /proc/stat for the CPUs this process may run on (psutil's machine totals elsewhere), and
    this process's CPU time, every thread included (time.process_time)."""
    chosen = cpus or _cpus()

    def read() -> CpuTimes:
        busy = None
        try:
            with open(PROC_STAT) as fh:
                busy = _proc_stat_busy(chosen, fh.read())
        except OSError:
            pass
        if busy is None:
            import psutil

            t = psutil.cpu_times()
            busy = sum(getattr(t, k, 0.0) for k in ("user", "nice", "system", "irq", "softirq", "steal"))
        return CpuTimes(busy, time.process_time())
    return read


def idle_cores(threads: int, cpus: int | None = None) -> int:
    """Physical cores in this process's affinity that `threads` leave idle (a logical sibling of a busy core is not
    idle: it shares that core's execution units)."""
    import psutil

    logical = cpus or len(_cpus())
    physical, total = psutil.cpu_count(logical=False), psutil.cpu_count()
    per_core = total / physical if physical and total else 1.0
    return max(0, math.floor(logical / per_core) - threads)


class Meter:
    """Reads what others took over a phase, and pauses until they stop (at most QUIET_WAIT_S)."""

    def __init__(self, threads: int, source: Source | None = None, limit_cores: float | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 cpus: list[int] | None = None) -> None:
        chosen = cpus or _cpus()
        self.source = source or machine_source(chosen)
        self.clock, self.sleep, self.cpus = clock, sleep, len(chosen)
        self.limit = (contended_cores() if limit_cores is None else limit_cores) + idle_cores(threads, self.cpus)
        self.tick_s = 1.0 / os.sysconf("SC_CLK_TCK") if source is None else 0.0
        self.paused_s = 0.0  # every pause so far: a time budget does not count it

    def start(self) -> tuple[float, CpuTimes]:
        """A mark to read from."""
        return self.clock(), self.source()

    def read(self, mark: tuple[float, CpuTimes]) -> Reading:
        """What others took since the mark."""
        begin, first = mark
        wall, now = max(self.clock() - begin, 1e-9), self.source()
        others = max(0.0, (now.busy_s - first.busy_s) - (now.own_s - first.own_s)) / wall
        resolution = 2 * self.cpus * self.tick_s / wall  # a tick of counting at each end, on every core
        return Reading(others, wall, self.limit + resolution)

    def wait_quiet(self, max_s: float = QUIET_WAIT_S) -> float:
        """Pause until others took no more than the limit over one window, or max_s passed; the seconds paused."""
        start = self.clock()
        while self.clock() - start < max_s:
            mark = self.start()
            self.sleep(QUIET_WINDOW_S)
            if not self.read(mark).contended:
                break
        paused = self.clock() - start
        self.paused_s += paused
        return paused
