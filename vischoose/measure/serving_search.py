"""The server scenario's search, pure Python (no LoadGen, no numpy, no torch): the serving settings, LoadGen's
early-stopping rule and the queries each run is given, a queueing model of the system under test, and the search
that finds the highest Poisson rate whose LoadGen Server run is VALID, never reporting an INVALID one.

The design follows Triton Model Analyzer, which searches model instances and dynamic batching for the most throughput
under a latency constraint, but spends LoadGen's time where it decides: a VALID Server run at p99 needs at least 459
queries (662 to allow one over the bound), so a run lasts queries / rate seconds and only a few fit in minutes.

1. Instances: n instances share the usable cores C, t = C // n threads each (n * t <= C; fewest first, more while
   the prediction gains 5%). Each count is measured in a child process of its own (measure.serving).
2. That child times every instance busy at once at batch 1, 2, 4, ... (doubling until two sizes in a row gain under
   5% img/s): the service times under the contention the server will see; and batch 1 after IDLE_GAP_S with every
   instance idle, since a request that finds the machine idle is served slower (on 2-core VMs here, twice as slow
   after 50 ms: the cores wake up and the caches are cold), which decides a tight bound at low rates.
3. A discrete-event model of the system under test (Poisson arrivals, one FIFO queue, n instances, the dynamic batcher
   closing a batch at max_batch requests or max_wait after its first one) predicts, for each batching setting, the
   highest rate at which a LoadGen run of the budgeted queries would pass: the expected count of queries over the bound
   within what early stopping allows. At a bound near one forward's own time the tail of lone forwards decides (batch
   1 is timed to TAIL_CALLS, and IDLE_TAIL_CALLS times after IDLE_GAP_S idle, the draws of a request that finds the
   server idle): where no rate passes, or a run would outlast half the time left, runs of more queries
   (LONGER_RUNS) are predicted too, each at the rate it passes 9 times in 10, since no second run would follow.
4. The best predicted setting is verified with LoadGen Server runs: at the prediction, then up while VALID or down while
   INVALID (10%, 21%, 46%, ...), then the geometric middle until the highest VALID and lowest INVALID rates are within
   5%. The highest VALID run is the result; a run starts only when its queries fit the time left of the budget, or,
   while none is VALID, before the budget is spent (a search overruns it by one run at most).
5. Where the best sustained less than the runner-up (another instance count) predicts, the runner-up is verified the
   same way and the setting that sustained more is the answer: the model's ranking of two close settings can be wrong
   where forwards under load run slower than the profile timed them (on 2-core VMs here, 2 instances x 1 thread were
   predicted 170 QPS and sustained 115 at a 77 ms bound for resnet18 int8).
"""

from __future__ import annotations

import functools
import heapq
import math
import random
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable, Mapping, Sequence

PERCENTILE = 0.99  # MLPerf Server bounds the 99th percentile latency
CONFIDENCE = 0.99  # LoadGen's early-stopping confidence
STEP = 0.10  # verification moves the rate by 10%, doubling the move while it goes one way
PRECISION = 0.05  # ... and stops when the highest VALID and the lowest INVALID rates are within 5%
MAX_RUNS = 6  # LoadGen runs per verification at most
MIN_GAIN = 1.05  # more instances, or a larger batch, must predict (or measure) 5% more
SIM_QUERIES = 6000  # requests per simulated run
BISECTIONS = 12  # of the predicted rate, geometric: within 0.2% of the model's answer
MOST_INSTANCES = 8
IDLE_GAP_S = 0.05  # a server idle this long serves its next batch at the idle samples' pace (measured after this gap)
LONGER_RUNS = (1000, 1500, 2000, 3000, 5000)  # queries of the longer runs a bound near one forward's time may need
TAIL_CALLS = 1000  # batch-1 forwards timed where the bound is near one forward's time (the tail to 0.1%) ...
TAIL_SECONDS = 10.0  # ... or this long at most
IDLE_TAIL_CALLS = 200  # ... and batch 1 after IDLE_GAP_S idle this often (a lone request's tail, to 0.5%)
TAIL_FACTOR = 2.0  # "near": a bound under twice the batch-1 p99
LONG_RUN_LIKELY = 0.9  # a run too long to repeat is predicted at the rate it passes 9 times in 10


def binomial_cdf(n: int, k: int, q: float) -> float:
    """P(X <= k) for X ~ Binomial(n, q), summed in log space."""
    if k >= n:
        return 1.0
    log_q, log_p = math.log(q), math.log1p(-q)
    terms = (math.lgamma(n + 1) - math.lgamma(x + 1) - math.lgamma(n - x + 1) + x * log_q + (n - x) * log_p
             for x in range(k + 1))
    return math.fsum(math.exp(t) for t in terms)


@functools.cache
def early_stopping_queries(overlatency: int, percentile: float = PERCENTILE, confidence: float = CONFIDENCE) -> int:
    """The fewest queries a Server run needs to pass LoadGen's early stopping with `overlatency` of them over the
    bound: the smallest n with P(Binomial(n, 1 - percentile) <= overlatency) < 1 - confidence (loadgen/early_stopping.cc;
    459 with none over, 662 with one)."""
    def passes(n: int) -> bool:
        return binomial_cdf(n, overlatency, 1.0 - percentile) < 1.0 - confidence

    lo, hi = overlatency + 1, 2 * (overlatency + 1)
    while not passes(hi):
        lo, hi = hi, 2 * hi
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if passes(mid) else (mid + 1, hi)
    return lo


@functools.cache
def allowed_overlatency(queries: int) -> int:
    """The most queries over the bound a run of `queries` may have and pass early stopping (-1: even none passes)."""
    lo, hi = -1, max(1, queries // 100)  # early_stopping_queries(t) grows with t; t < 1% of the queries
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if early_stopping_queries(mid) <= queries else (lo, mid - 1)
    return lo


@dataclass(frozen=True)
class Budget:
    """What each LoadGen Server run is given: at least `min_queries` queries and `min_duration_s` seconds of scheduled
    arrivals, whichever lasts longer at the run's rate."""

    min_queries: int
    min_duration_s: float
    official: bool = False
    max_run_s: float | None = None  # LoadGen stops a run here (it is then INVALID: too few queries); None: never
    lengthened_from: int = 0  # longer(): the search's own min_queries, which this budget's runs exceed

    def queries(self, rate: float) -> int:
        """Queries a run at `rate` issues."""
        return max(self.min_queries, math.ceil(rate * self.min_duration_s))

    def seconds(self, rate: float) -> float:
        """Seconds a run at `rate` lasts, about."""
        return max(self.min_queries / rate, self.min_duration_s)

    def longer(self, queries: int) -> "Budget":
        """The same runs with at least `queries` queries."""
        if queries <= self.min_queries:
            return self
        return replace(self, min_queries=queries, lengthened_from=self.lengthened_from or self.min_queries)

    def text(self) -> str:
        """'LoadGen runs of at least 662 queries and 5 s' (and whose rules)."""
        kind = "MLPerf's minimum (--official)" if self.official else "vischoose's default; --official: 600 s"
        if self.lengthened_from:
            kind = (f"longer than the {self.lengthened_from} of {kind.replace('; ', ', ')}: the bound is near one "
                    f"forward's time, and early stopping lets a run of more queries have more of them over it")
        return f"LoadGen Server runs of at least {self.min_queries} queries and {self.min_duration_s:g} s ({kind})"


DEFAULT_BUDGET = Budget(early_stopping_queries(1), 5.0)  # 662 queries: one may be over the bound
OFFICIAL_BUDGET = Budget(100, 600.0, official=True)  # mlperf.conf's *.Server.min_duration, TestSettings' min_query_count


@dataclass(frozen=True)
class ServeSettings:
    """How the model is served: instances sharing the cores, threads each, and the dynamic batcher."""

    instances: int = 1
    threads: int = 1  # per instance: instances * threads never exceed the usable cores
    max_batch: int = 1  # 1: no batching
    max_wait_ms: float = 0.0  # how long a batch waits for more requests after its first (0: takes what is queued)

    @property
    def label(self) -> str:
        """'2 instances x 1 thread, batches up to 8 (wait <= 3 ms)'."""
        plural = "s" if self.instances > 1 else ""
        text = f"{self.instances} instance{plural} x {self.threads} thread{'s' if self.threads > 1 else ''}"
        if self.max_batch == 1:
            return text + ", no batching"
        return text + f", batches up to {self.max_batch} (wait <= {self.max_wait_ms:g} ms)"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (job files, results)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ServeSettings":
        """From to_dict's output."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def instance_plans(cores: int, most: int = MOST_INSTANCES) -> list[tuple[int, int]]:
    """(instances, threads each) for `cores` usable cores, fewest instances first: each count n up to `most` runs
    cores // n threads per instance, so that n * threads <= cores; of the counts giving the same threads, the most."""
    by_threads: dict[int, int] = {}
    for n in range(1, max(1, min(cores, most)) + 1):
        by_threads[max(1, cores // n)] = n
    return sorted((n, t) for t, n in by_threads.items())


class Service:
    """Measured service times (seconds per forward, every instance busy) at some batch sizes; other sizes are
    interpolated linearly (and extrapolated from the last two), with the spread of the nearest smaller size. `idle`:
    batch-1 forwards that each followed IDLE_GAP_S with every instance idle; what their median takes over the busy
    batch-1 mean is added to a batch that starts on a server idle that long."""

    def __init__(self, samples: Mapping[int, Sequence[float]], idle: Sequence[float] = ()) -> None:
        self.samples = {int(b): sorted(v) for b, v in samples.items() if v}
        if not self.samples:
            raise ValueError("no service times")
        self.sizes = sorted(self.samples)
        self.means = {b: math.fsum(v) / len(v) for b, v in self.samples.items()}
        self.idle = sorted(idle)

    def idle_pace(self) -> float | None:
        """A batch-1 forward on an idle server, seconds: the idle samples' median (a few samples; one noisy wake-up
        must not stand for an eighth of every idle request), None where unmeasured."""
        return self.idle[len(self.idle) // 2] if self.idle else None

    def idle_extra(self) -> float:
        """Seconds a batch that starts on an idle server takes over a busy one's (0: unmeasured, or no slower)."""
        pace = self.idle_pace()
        return 0.0 if pace is None else max(0.0, pace - self.mean(1))

    @property
    def idle_tail(self) -> bool:
        """Whether the idle samples were timed to their tail (IDLE_TAIL_CALLS): the model then draws from them."""
        return len(self.idle) >= IDLE_TAIL_CALLS

    def lone(self) -> tuple[list[float], bool]:
        """What a lone batch-1 request's forward takes on a server idle IDLE_GAP_S (the samples it is drawn from, s),
        and whether they are the idle samples themselves (else the busy ones plus the idle median's extra)."""
        if self.idle_tail:
            return list(self.idle), True
        return [v + self.idle_extra() for v in self.samples.get(1, [])], False

    def idle_draw(self, batch: int, u: float) -> float:
        """One service time at `batch` for a batch that starts on a server idle IDLE_GAP_S: with IDLE_TAIL_CALLS idle
        samples (timed where the tail decides), drawn from them (plus what `batch` takes over batch 1 busy), since a
        lone request's tail is theirs; with a few, the busy draw plus the idle median's extra."""
        if self.idle_tail:
            return self.idle[min(int(u * len(self.idle)), len(self.idle) - 1)] + self.mean(batch) - self.mean(1)
        return self.draw(batch, u) + self.idle_extra()

    def mean(self, batch: int) -> float:
        """Mean seconds of one forward at `batch`."""
        if batch in self.means:
            return self.means[batch]
        below = [b for b in self.sizes if b < batch] or self.sizes[:1]
        above = [b for b in self.sizes if b > batch]
        lo = below[-1]
        hi = above[0] if above else lo
        if hi == lo:  # beyond the largest measured size: the last step's slope (or proportional)
            lo = below[-2] if len(below) > 1 else 0
            slope = (self.means[hi] - (self.means[lo] if lo else 0.0)) / (hi - lo)
            return self.means[hi] + slope * (batch - hi)
        return self.means[lo] + (self.means[hi] - self.means[lo]) * (batch - lo) / (hi - lo)

    def draw(self, batch: int, u: float) -> float:
        """One service time at `batch` for a uniform draw u in [0, 1)."""
        base = max([b for b in self.sizes if b <= batch] or self.sizes[:1])
        values = self.samples[base]
        return values[min(int(u * len(values)), len(values) - 1)] * self.mean(batch) / self.means[base]

    def quantile(self, batch: int, q: float) -> float:
        """The q-quantile of one forward at `batch`, seconds."""
        return self.draw(batch, q)

    def capacity(self, instances: int, batch: int) -> float:
        """Requests per second with every instance running full batches back to back."""
        return instances * batch / self.mean(batch)

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-able: batch size (as text) -> seconds."""
        return {str(b): v for b, v in self.samples.items()}


def next_batch(found: Mapping[int, Sequence[float]], instances: int, slo_ms: float, max_batch: int) -> int | None:
    """The next batch size to time after those in `found` (1, 2, 4, ...), or None: stop once two sizes in a row gained
    less than MIN_GAIN img/s over every smaller one (one such size is not the end: resnet18 on torch, one thread an
    instance, gains under 5% at batch 2 and 15% at 4), a forward's mean went over the bound (larger ones are slower),
    or at max_batch."""
    if not found:
        return 1
    sizes = sorted(found)
    rates = [instances * b / (math.fsum(found[b]) / len(found[b])) for b in sizes]
    last = sizes[-1]

    def gained(i: int) -> bool:
        return i == 0 or rates[i] >= MIN_GAIN * max(rates[:i])

    grew = gained(len(rates) - 1) or (len(rates) > 1 and gained(len(rates) - 2))
    within = 1e3 * math.fsum(found[last]) / len(found[last]) <= slo_ms
    return 2 * last if grew and within and 2 * last <= max_batch else None


def unit_arrivals(count: int = SIM_QUERIES, seed: int = 0) -> list[float]:
    """Arrival times of a Poisson process of rate 1 (divide by a rate to get that rate's): the same arrivals for
    every rate and setting compared, so the comparisons are not noise."""
    rng, now, out = random.Random(seed), 0.0, []
    for _ in range(count):
        now += rng.expovariate(1.0)
        out.append(now)
    return out


def uniforms(count: int = SIM_QUERIES, seed: int = 1) -> list[float]:
    """Uniform draws in [0, 1) for the service times."""
    rng = random.Random(seed)
    return [rng.random() for _ in range(count)]


def simulate(rate: float, s: ServeSettings, service: Service, arrivals: Sequence[float],
             draws: Sequence[float]) -> list[float]:
    """Latency (s, from each request's scheduled arrival to its completion, as LoadGen counts it) of every request in a
    model of the system under test: FIFO queue, `instances` servers, a batch closing when `max_batch` requests are
    there or `max_wait_ms` after its first request arrived, whichever is first, but never before a server is free;
    a server idle IDLE_GAP_S or more when its batch's first request arrives serves it at the idle pace."""
    times = [a / rate for a in arrivals]
    free = [-math.inf] * s.instances  # idle since ever
    wait, latencies, i, k = s.max_wait_ms / 1e3, [], 0, 0
    while i < len(times):
        free_at = heapq.heappop(free)
        start, idle = max(free_at, times[i]), times[i] - free_at >= IDLE_GAP_S
        last = i + s.max_batch - 1
        full = times[last] if last < len(times) else math.inf
        close = start if s.max_batch == 1 else max(start, min(times[i] + wait, full))
        j = i + 1
        while j < len(times) and j - i < s.max_batch and times[j] <= close:
            j += 1
        u = draws[k % len(draws)]
        done = close + (service.idle_draw(j - i, u) if idle else service.draw(j - i, u))
        k += 1
        latencies.extend(done - t for t in times[i:j])
        heapq.heappush(free, done)
        i = j
    return latencies


def percentile(values: Sequence[float], q: float) -> float:
    """LoadGen's percentile: the sorted value at index count * q."""
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * q), len(ordered) - 1)]


def poisson_cdf(k: int, mean: float) -> float:
    """P(X <= k) for X ~ Poisson(mean)."""
    if k < 0:
        return 0.0
    term = total = math.exp(-mean)
    for i in range(1, k + 1):
        term *= mean / i
        total += term
    return total


def passes(latencies: Sequence[float], slo_s: float, queries: int, likely: float = 0.0) -> bool:
    """Whether a LoadGen run of `queries` whose latencies were spread like these is expected VALID: its expected count
    over the bound within what early stopping allows (which also keeps the p99 under the bound). With 662 queries
    that is the 99.85th percentile under the bound; as the queries grow, the 99th. `likely` > 0: VALID with at least
    that probability instead (the count over taken as Poisson), for a run too long to be repeated."""
    over = sum(1 for x in latencies if x > slo_s) / len(latencies)
    allowed = allowed_overlatency(queries)
    if likely > 0:
        return allowed >= 0 and poisson_cdf(allowed, over * queries) >= likely
    return allowed >= 0 and over * queries <= allowed


@dataclass(frozen=True)
class Prediction:
    """The model's highest sustainable rate for one setting (0: none meets the bound)."""

    settings: ServeSettings
    qps: float
    capacity: float  # requests/s with full batches back to back
    budget: Budget | None = None  # its runs' own budget (longer than the search's), None: the search's

    def runs_budget(self, default: Budget) -> Budget:
        """The budget of this setting's LoadGen runs."""
        return self.budget or default

    def to_dict(self) -> dict[str, Any]:
        """JSON-able."""
        found = {"settings": self.settings.to_dict(), "qps": self.qps, "capacity": self.capacity}
        return {**found, "min_queries": self.budget.min_queries} if self.budget else found


class Model:
    """The queueing model with fixed arrivals and draws (common random numbers)."""

    def __init__(self, service: Service, slo_ms: float, budget: Budget, count: int = SIM_QUERIES,
                 likely: float = 0.0) -> None:
        self.service, self.slo_s, self.budget, self.likely = service, slo_ms / 1e3, budget, likely
        self.arrivals, self.draws = unit_arrivals(count), uniforms(count)

    def passes(self, rate: float, s: ServeSettings) -> bool:
        """Whether a budgeted run at `rate` is expected VALID (with `likely` > 0: VALID with that probability)."""
        return passes(self.latencies(rate, s), self.slo_s, self.budget.queries(rate), self.likely)

    def latencies(self, rate: float, s: ServeSettings) -> list[float]:
        """Simulated latencies (s) at `rate`."""
        return simulate(rate, s, self.service, self.arrivals, self.draws)

    def predict(self, s: ServeSettings) -> Prediction:
        """The highest rate at which a budgeted LoadGen run is expected to pass, bisected geometrically between 0.1%
        and 120% of capacity (to 0.2% of the rate: a tight bound's rate is a fraction of a percent of capacity)."""
        capacity = self.service.capacity(s.instances, s.max_batch)
        lo, hi = 1e-3 * capacity, 1.2 * capacity
        if not self.passes(lo, s):
            return Prediction(s, 0.0, capacity)  # alone, a request already misses the bound too often
        for _ in range(BISECTIONS):
            mid = math.sqrt(lo * hi)
            if self.passes(mid, s):
                lo = mid
            else:
                hi = mid
        return Prediction(s, lo, capacity)

    def curve(self, s: ServeSettings, top: float, points: int = 12) -> list[list[float]]:
        """[rate, p50 ms, p99 ms] from 10% to 100% of `top` (the model's curve, for the plot)."""
        out = []
        for i in range(points):
            rate = top * (0.1 + 0.9 * i / (points - 1))
            lat = self.latencies(rate, s)
            out.append([rate, 1e3 * percentile(lat, 0.5), 1e3 * percentile(lat, PERCENTILE)])
        return out


def batching_settings(instances: int, threads: int, service: Service, slo_ms: float) -> list[ServeSettings]:
    """The batching settings worth predicting: no batching, and each measured batch size greedy (wait 0) and waiting
    a quarter of the room the bound leaves over that batch's p99 service time."""
    found = [ServeSettings(instances, threads)]
    for batch in (b for b in service.sizes if b > 1):
        found.append(ServeSettings(instances, threads, batch))
        room_ms = slo_ms - 1e3 * service.quantile(batch, PERCENTILE)
        if room_ms / 4 >= 0.5:
            found.append(ServeSettings(instances, threads, batch, round(room_ms / 4, 1)))
    return found


def best_prediction(instances: int, threads: int, service: Service, slo_ms: float, budget: Budget,
                    seconds_left: float = math.inf) -> Prediction:
    """The batching setting the model predicts sustains the highest rate at this instance count (ties: the simpler).
    Where no rate passes, or its first run would last more than half `seconds_left` (the search's time left: no
    second run could follow it), long_runs' predictions stand in: of those whose first run lasts at most that, the
    highest rate; where none fits, the shortest run (verify then says it would outlast the budget). MLPerf's
    official runs keep their budget."""
    seconds = seconds_left / 2
    found = _best_batching(instances, threads, service, slo_ms, budget)
    if budget.official or (found.qps > 0 and budget.seconds(found.qps) <= seconds):
        return found
    long = long_runs(instances, threads, service, slo_ms, budget)
    fitting = [p for p in long if p.runs_budget(budget).seconds(p.qps) <= seconds]
    if fitting:
        return max(fitting, key=lambda p: p.qps)
    return min(long, key=lambda p: p.runs_budget(budget).seconds(p.qps), default=found)


def long_runs(instances: int, threads: int, service: Service, slo_ms: float, budget: Budget) -> list[Prediction]:
    """Predictions for runs too long to be repeated (a bound near one forward's own time: almost no request may wait,
    and the tail of lone forwards over the bound decides), each at the rate its run passes LONG_RUN_LIKELY of the
    time, in runs of the budget's queries and of each of LONGER_RUNS (early stopping lets a longer run have a larger
    share over the bound: 1 of 662, 9 of 2,000, 33 of 5,000); those with a rate."""
    budgets = [budget] + [budget.longer(q) for q in LONGER_RUNS]
    return [p for b in budgets if (p := _best_batching(instances, threads, service, slo_ms, b, LONG_RUN_LIKELY)).qps > 0]


def _best_batching(instances: int, threads: int, service: Service, slo_ms: float, budget: Budget,
                   likely: float = 0.0) -> Prediction:
    model = Model(service, slo_ms, budget, likely=likely)
    found = [model.predict(s) for s in batching_settings(instances, threads, service, slo_ms)]
    best = max(found, key=lambda p: (p.qps, -p.settings.max_batch, -p.settings.max_wait_ms))
    return replace(best, budget=budget) if budget.lengthened_from else best


def tail_decides(batch1: Sequence[float], slo_ms: float) -> bool:
    """Whether batch 1's tail decides the bound (seconds per forward): a bound under TAIL_FACTOR x their p99, where a
    request that waits behind one forward is late and the share of lone forwards over the bound is what early stopping
    counts; their tail is then timed to TAIL_CALLS forwards, since a few hundred cannot tell 0.1% from 0.5%."""
    return bool(batch1) and slo_ms < TAIL_FACTOR * 1e3 * percentile(batch1, PERCENTILE)


def ceiling(means: Mapping[tuple[int, int], Mapping[int, float]], slo_ms: float, budget: Budget) -> Prediction | None:
    """The most a server could sustain whose forwards took exactly their measured mean (seconds, per (instances,
    threads) and batch size), with no spread and no idle pace: the queueing model's best setting over every plan
    measured. An upper bound for any real server of these service times (a forward's spread only lengthens the
    queue); None where nothing was measured."""
    found = [best_prediction(n, t, Service({b: [m] for b, m in sizes.items()}), slo_ms, budget)
             for (n, t), sizes in means.items() if sizes]
    return max(found, key=lambda p: p.qps, default=None)


@dataclass(frozen=True)
class Run:
    """One LoadGen Server run, as LoadGen judged it."""

    target_qps: float
    valid: bool
    queries: int
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    scheduled_qps: float | None = None  # LoadGen's scheduled samples/s: MLPerf's Server figure
    completed_qps: float | None = None
    overlatency: int | None = None
    early_stopping_met: bool = False
    early_stopping: str = ""  # LoadGen's early-stopping verdict
    invalid_reason: str = ""
    summary: str = ""  # mlperf_log_summary.txt
    wall_s: float = 0.0
    abandoned: int = 0  # queries answered without a forward once the run was certainly INVALID (its tail cut short)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Run":
        """From to_dict's output."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def sustained(runs: Sequence[Run]) -> Run | None:
    """The VALID run at the highest rate, or None: an INVALID run is never the answer."""
    good = [r for r in runs if r.valid]
    return max(good, key=lambda r: r.target_qps) if good else None


def next_rate(runs: Sequence[Run]) -> float | None:
    """The rate of the next verification run, or None when the VALID/INVALID boundary is known within PRECISION."""
    lo = sustained(runs)
    above = [r.target_qps for r in runs if not r.valid and (lo is None or r.target_qps > lo.target_qps)]
    hi = min(above) if above else None
    if lo is not None and hi is not None:
        return None if hi <= lo.target_qps * (1 + PRECISION) else math.sqrt(lo.target_qps * hi)
    same_way = 0
    for r in reversed(runs):
        if r.valid != runs[-1].valid:
            break
        same_way += 1
    factor = (1 + STEP) ** (2 ** (same_way - 1))
    return lo.target_qps * factor if lo is not None else hi / factor  # type: ignore[operator]


def fits(budget: Budget, rate: float, seconds_left: float, whole_s: float = 0.0, any_valid: bool = True) -> bool:
    """Whether a run at `rate` may start: it ends within the seconds left of the search's time budget; or, while no
    run is VALID and the budget is not yet spent, it lasts at most the whole budget (`whole_s`): a search whose
    profiling took its time still gets a verdict, and overruns its budget by one run at most."""
    took = budget.seconds(rate)
    return took <= seconds_left or (not any_valid and seconds_left > 0 and took <= whole_s)


def verify(run: Callable[[float], Run], start_qps: float, budget: Budget, seconds_left: Callable[[], float],
           max_runs: int = MAX_RUNS, whole_s: float = 0.0,
           on_late: Callable[[float], None] | None = None) -> list[Run]:
    """LoadGen runs from the predicted rate until the highest VALID rate is known within PRECISION. A run starts only
    when its queries fit in the seconds left, or, while none is VALID and time is left, in the whole budget `whole_s`
    (fits): at a tight bound the rate is so low that one run of 662 queries lasts minutes or hours, and it is not
    started (on_late hears the rate of the run not started for want of time)."""
    runs: list[Run] = []
    rate: float | None = start_qps
    while rate and len(runs) < max_runs:
        if not fits(budget, rate, seconds_left(), whole_s, sustained(runs) is not None):
            if on_late:
                on_late(rate)
            break
        runs.append(run(rate))
        rate = next_rate(runs)
    return runs


@dataclass
class Outcome:
    """A server search: the prediction at each instance count profiled, the one chosen and its LoadGen runs, and the
    runner-up where it was verified too (and not chosen) with its runs."""

    predictions: list[Prediction]
    chosen: Prediction | None
    runs: list[Run]
    also: list[tuple[Prediction, list[Run]]] = field(default_factory=list)

    @property
    def best(self) -> Run | None:
        """The sustained run (VALID, highest rate), or None."""
        return sustained(self.runs)


def choose_instances(plans: Sequence[tuple[int, int]], predict: Callable[[int, int], Prediction]) -> list[Prediction]:
    """Predictions at each instance count, fewest first, stopping when one more count gains less than MIN_GAIN."""
    found: list[Prediction] = []
    for instances, threads in plans:
        found.append(predict(instances, threads))
        best = max(found[:-1], key=lambda p: p.qps, default=None)
        if best is not None and found[-1].qps < MIN_GAIN * best.qps:
            break
    return found


def search(plans: Sequence[tuple[int, int]], predict: Callable[[int, int], Prediction],
           verify_best: Callable[[Prediction, bool], list[Run]]) -> Outcome:
    """Predict at each instance count, then verify the best prediction with LoadGen (nothing when none can pass).
    Where LoadGen sustains less than the runner-up's prediction (by MIN_GAIN; nothing VALID counts as 0), the model
    misjudged the two, so the runner-up is verified too and the setting that sustained more is chosen: the model
    ranks the settings, LoadGen decides between the best two. verify_best(prediction, optional): optional for the
    runner-up, a tie-break whose runs must fit the time left (no whole-budget run) and whose failure is not the row's."""
    predictions = choose_instances(plans, predict)
    ranked = sorted(predictions, key=lambda p: (-p.qps, p.settings.instances))
    chosen = ranked[0]
    if chosen.qps <= 0:
        return Outcome(predictions, chosen, [])
    runs = verify_best(chosen, False)
    runner_up = next((p for p in ranked[1:] if p.qps > 0), None)
    if runner_up is None or runner_up.qps < MIN_GAIN * _sustained_qps(runs):
        return Outcome(predictions, chosen, runs)
    more = verify_best(runner_up, True)  # [] where its first run would outlast the time left, or it failed
    if _sustained_qps(more) > _sustained_qps(runs):
        return Outcome(predictions, runner_up, more, [(chosen, runs)])
    return Outcome(predictions, chosen, runs, [(runner_up, more)] if more else [])


def _sustained_qps(runs: Sequence[Run]) -> float:
    best = sustained(runs)
    return best.target_qps if best else 0.0
