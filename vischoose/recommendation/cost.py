"""What serving costs: dollars per million images at a sustained rate, and the machines a target rate needs. Pure
arithmetic on figures measured elsewhere (a server row's sustained QPS, an offline row's img/s)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence


def cost_per_million(price_per_hour: float, images_per_s: float) -> float:
    """USD per million images from one machine at `images_per_s`: price per hour / (img/s x 3600) x 1e6."""
    if images_per_s <= 0:
        return math.inf
    return price_per_hour / (images_per_s * 3600.0) * 1e6


class Fleet(NamedTuple):
    """The machines a target rate needs, each sustaining `per_machine_qps`, and what they cost."""

    machines: int
    cost_per_hour: float
    per_machine_qps: float

    @property
    def text(self) -> str:
        """'3 machines (USD 2.04/h)'."""
        return f"{self.machines} machine{'s' if self.machines != 1 else ''} (USD {self.cost_per_hour:,.2f}/h)"


def fleet(target_qps: float, per_machine_qps: float, price_per_hour: float | None) -> Fleet | None:
    """Machines needed for `target_qps` when each sustains `per_machine_qps` (None when it sustains nothing)."""
    if per_machine_qps <= 0:
        return None
    machines = max(1, math.ceil(target_qps / per_machine_qps - 1e-9))
    return Fleet(machines, machines * (price_per_hour or 0.0), per_machine_qps)


class Cost(NamedTuple):
    """One model and variant's best rate (sustained at a bound, or offline), its cost and the machines a target needs."""

    model: str
    variant: str  # "onnxruntime int8"
    rate: float  # QPS sustained at the bound (server), or img/s (offline)
    server: bool
    slo_ms: float | None
    batch_size: int
    per_million: float | None  # USD, with a price
    fleet: Fleet | None  # with a target rate


def costs(profiles: Sequence[Any], price_per_hour: float | None, target_qps: float | None) -> list[Cost]:
    """For each model and variant: the best sustained rate (server rows) and the best offline img/s (other rows), each
    with its cost per million images and the machines `target_qps` needs ([] without a price or a target)."""
    if price_per_hour is None and target_qps is None:
        return []
    best: dict[tuple[str, str, bool], Cost] = {}
    for p in profiles:
        server = p.scenario == "server"
        rate = p.serve_qps if server else p.throughput_img_s
        if not p.ok or not rate:
            continue
        variant = f"{p.runtime} {'fp32' if p.dtype == 'float32' else p.dtype}"
        found = Cost(p.model, variant, rate, server, p.slo_ms, p.batch_size,
                     cost_per_million(price_per_hour, rate) if price_per_hour is not None else None,
                     fleet(target_qps, rate, price_per_hour) if target_qps else None)
        key = (p.model, variant, server)
        if key not in best or rate > best[key].rate:
            best[key] = found
    return list(best.values())
