"""Queueing theory for the server-scenario tests: the rate at which a LoadGen Server run of a system with known
capacity is as likely VALID as not, derived for deterministic service (M/D/c), and a plain FIFO system to serve.

Derivation (M/D/c: Poisson arrivals at rate lam, c servers, every service exactly D, first come first served).

1. Number in system. Every customer in service at time s has left by s + D, and nobody who starts service after s
   leaves before s + D (its service lasts D). So, with A ~ Poisson(lam D) the arrivals in (s, s + D],
       N(s + D) = max(N(s) - c, 0) + A          (Crommelin 1932)
   a Markov chain whose stationary law is that of N at any time (every phase s gives the same chain).
2. Waiting time (Franx 2001). A customer arriving at 0 finds the stationary state (PASTA). Write x = kD + u,
   0 <= u < D, and look at s = u - D. At time u the customer's place in the FIFO line is
       q = max(N(s) - c, 0) + A(s, 0) + 1
   (those present at s, less the <= c in service then, who have left by u; plus the arrivals before it in (s, 0)).
   The first c places are in service, and every D exactly c places leave, so it is in service by u + kD iff
   q <= (k + 1) c:
       P(W <= kD + u) = P(max(N - c, 0) + A' <= (k + 1) c - 1),   A' ~ Poisson(lam (D - u)), N ~ step 1.
   With c = 1 this is Erlang's M/D/1 formula (tests check the two agree).
3. A query's latency from its scheduled arrival is T = W + D, over the bound with probability q = P(W > SLO - D).
4. LoadGen's verdict on a run of Q queries: VALID iff its count over the bound is within what early stopping allows,
   t(Q) (loadgen/early_stopping.cc; 1 for Q = 662, about 0.85% of Q for Q = 20000), which also keeps the p99 under
   the bound. The theory's sustained rate is the highest lam with q Q <= t(Q): the (1 - t(Q)/Q) quantile of T under
   the bound, the p99 as Q grows (bisected: q grows with lam). Over-bound queries come in bursts (one long busy
   period), so a short run's count scatters widely around q Q; the tests give runs many queries.

With dynamic batching there is no closed form; `fifo_system` serves a long Poisson stream instead (the same queue,
written out: servers free at known times, each batch closing at max_batch requests or max_wait after its first).
"""

from __future__ import annotations

import heapq
import math
import random
from typing import Callable

import numpy as np

from vischoose.measure import serving_search as ss


def number_in_system(lam: float, service_s: float, servers: int, states: int = 200) -> np.ndarray:
    """Stationary P(N = n), n < states, of an M/D/c system (step 1 of the derivation)."""
    mean = lam * service_s
    n = np.arange(states)
    arrivals = np.exp(-mean + n * math.log(mean) - np.array([math.lgamma(i + 1) for i in n]))
    step = np.zeros((states, states))
    for i in range(states):
        base = max(i - servers, 0)
        step[i, base:] = arrivals[:states - base]
    p = np.zeros(states)
    p[0] = 1.0
    for _ in range(20000):
        new = p @ step
        new /= new.sum()
        if np.abs(new - p).max() < 1e-14:
            break
        p = new
    return new


def wait_cdf(x: float, lam: float, service_s: float, servers: int, p: np.ndarray) -> float:
    """P(W <= x) in M/D/c (step 2), p from number_in_system."""
    k, u = divmod(x, service_s)
    ahead = np.zeros(len(p))
    for n, pn in enumerate(p):
        ahead[max(n - servers, 0)] += pn
    limit = (int(k) + 1) * servers - 1
    return sum(ahead[m] * ss.poisson_cdf(limit - m, lam * (service_s - u)) for m in range(min(limit, len(p) - 1) + 1))


def erlang_md1_wait_cdf(x: float, lam: float, service_s: float) -> float:
    """Erlang's M/D/1 waiting-time distribution, P(W <= x) = (1 - rho) sum_k (lam (kD - x))^k / k! e^(-lam (kD - x))."""
    total = sum((lam * (k * service_s - x)) ** k / math.factorial(k) * math.exp(-lam * (k * service_s - x))
                for k in range(int(x // service_s) + 1))
    return (1 - lam * service_s) * total


def over_share(lam: float, service_s: float, servers: int, slo_s: float) -> float:
    """P(T > SLO) with T = W + D (step 3)."""
    return 1.0 - wait_cdf(slo_s - service_s, lam, service_s, servers, number_in_system(lam, service_s, servers))


def sustained_rate(over: Callable[[float], float], top: float, budget: ss.Budget, steps: int = 24) -> float:
    """The highest rate whose expected count over the bound in a budgeted run is what early stopping allows (step 4),
    bisected below `top`."""
    lo, hi = 0.0, top
    for _ in range(steps):
        mid = (lo + hi) / 2
        queries = budget.queries(mid)
        if over(mid) * queries <= ss.allowed_overlatency(queries):
            lo = mid
        else:
            hi = mid
    return lo


def md_c_rate(service_s: float, servers: int, slo_s: float, budget: ss.Budget) -> float:
    """The theory's sustained rate for M/D/c."""
    return sustained_rate(lambda lam: over_share(lam, service_s, servers, slo_s), servers / service_s, budget)


def fifo_system(rate: float, servers: int, max_batch: int, max_wait_s: float, service: Callable[[int], float],
                count: int, seed: int) -> list[float]:
    """Latencies (s) of `count` Poisson requests served FIFO by `servers` servers with dynamic batching."""
    rng, now, arrivals = random.Random(seed), 0.0, []
    for _ in range(count):
        now += rng.expovariate(rate)
        arrivals.append(now)
    free, latencies, i = [0.0] * servers, [], 0
    while i < count:
        start = max(heapq.heappop(free), arrivals[i])
        fill = arrivals[i + max_batch - 1] if i + max_batch - 1 < count else math.inf
        close = start if max_batch == 1 else max(start, min(arrivals[i] + max_wait_s, fill))
        j = i + 1
        while j < count and j - i < max_batch and arrivals[j] <= close:
            j += 1
        done = close + service(j - i)
        latencies += [done - a for a in arrivals[i:j]]
        heapq.heappush(free, done)
        i = j
    return latencies


def system_rate(servers: int, max_batch: int, max_wait_s: float, service: Callable[[int], float], slo_s: float,
                budget: ss.Budget, count: int = 40000) -> float:
    """The sustained rate of a batching system, from one long stream per rate (no closed form)."""
    def over(lam: float) -> float:
        lat = fifo_system(lam, servers, max_batch, max_wait_s, service, count, seed=7)
        return sum(1 for x in lat if x > slo_s) / len(lat)

    return sustained_rate(over, servers * max_batch / service(max_batch), budget, steps=14)


def loadgen_like(servers: int, s: ss.ServeSettings, service: Callable[[int], float], slo_s: float,
                 budget: ss.Budget) -> Callable[[float], ss.Run]:
    """A stand-in for LoadGen's Server runs on this system: each run a fresh Poisson stream of the budgeted queries,
    judged as LoadGen judges (p99 under the bound and early stopping passed)."""
    seeds = iter(range(1000, 2000))

    def run(qps: float) -> ss.Run:
        queries = budget.queries(qps)
        lat = fifo_system(qps, servers, s.max_batch, s.max_wait_ms / 1e3, service, queries, next(seeds))
        over = sum(1 for x in lat if x > slo_s)
        valid = queries >= ss.early_stopping_queries(over) and ss.percentile(lat, 0.99) <= slo_s
        return ss.Run(target_qps=qps, valid=valid, queries=queries, p99_ms=1e3 * ss.percentile(lat, 0.99),
                      overlatency=over)
    return run
