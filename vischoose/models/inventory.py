"""What the catalog holds and what of it is cached here, as plain rows."""

from __future__ import annotations

from typing import Any

from vischoose.models import hub
from vischoose.models.catalog import CatalogEntry, ModelRef
from vischoose.units import MIB


def catalog_rows(entries: list[CatalogEntry]) -> list[dict[str, Any]]:
    """One dict per entry: the catalog figures plus cached state and size on disk."""
    rows = []
    for e in entries:
        cached = hub.cached_weights(ModelRef(text=e.alias, kind="catalog", name=e.alias, entry=e))
        rows.append({
            "alias": e.alias, "tag": e.tag, "family": e.family, "label": e.label,
            "top1": e.top1, "top5": e.top5, "top1_size": e.top1_size,
            "top1_test": e.top1_test, "top1_test_size": e.top1_test_size,
            "params_m": round(e.params_m, 2), "gmacs": e.gmacs, "gflops": round(e.gflops, 2),
            "input_size": e.input_size, "weights_mb_fp32": round(e.weights_mb(4), 1),
            "caveat": e.caveat, "license": e.license, "hf_hub_id": e.hf_hub_id, "source": e.source,
            "cached": cached is not None,
            "cached_mb": round(cached.size_bytes / MIB, 1) if cached else None,
            "commit": cached.commit if cached else None,
        })
    return rows
