"""Hand-written profile rows for the recommend --serve tests (tests/unit and tests/cli): plain and server-scenario rows
of catalog models on this machine."""

from __future__ import annotations

from vischoose import machine
from vischoose.models import catalog
from vischoose.records import Profile


def row(model: str, **fields) -> Profile:
    entry = catalog.load()[model]
    base = dict(model=model, tag=entry.tag, device="cpu", dtype="float32", batch_size=8, input_size=224,
                machine=machine.fingerprint(), params_m=entry.params / 1e6, top1=entry.top1)
    return Profile(**{**base, **fields})


def served(model: str, qps: float | None, slo_ms: float = 100.0, **fields) -> Profile:
    extra = {"serve_note": "no LoadGen run was VALID (the lowest, 5 QPS: Reduce target QPS to improve latency.)"}
    return row(model, scenario="server", slo_ms=slo_ms, serve_qps=qps, serve_valid=qps is not None,
               serve_instances=1, serve_threads=2, serve_max_batch=8, serve_min_queries=662,
               **({} if qps else extra), **fields)
