"""What the catalog holds and what of it is cached here, and timm's zoo, as plain rows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vischoose.models import hub
from vischoose.models.catalog import CatalogEntry, ModelRef
from vischoose.units import MIB, macs_to_flops

if TYPE_CHECKING:
    from vischoose.models.zoo import Zoo, ZooTag


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


# ---- timm's zoo (vischoose models --zoo) ----------------------------------------------------------------------

# --sort keys: the row field and whether higher is better
ZOO_SORTS = {"top1": ("top1", True), "params": ("params_m", False), "gflops": ("gflops", False),
             "cpu_ms": ("cpu_ms", False), "gpu_img_s": ("gpu_img_s", True), "name": ("tag", False)}


def wants_zoo(zoo: bool, family: str | None, *zoo_only: object) -> bool:
    """Whether `vischoose models` shows the zoo: asked for, a zoo-only filter given, or a family the catalog lacks."""
    from vischoose.models.catalog import FAMILIES

    return zoo or any(v not in (None, False) for v in zoo_only) or (family is not None and family not in FAMILIES)


def zoo_rows(family: str | None = None, pattern: str | None = None, max_params_m: float | None = None,
             min_top1: float | None = None, sort: str = "top1", all_tags: bool = False) -> list[dict[str, Any]]:
    """Zoo tags as plain rows, filtered and sorted (best first); one per architecture (its best top-1 at its deployed
    size) unless all_tags.

    Raises:
        UsageError: an unknown family or sort key; a pattern that matches nothing.
    """
    from vischoose.errors import UsageError
    from vischoose.models import families, zoo

    if sort not in ZOO_SORTS:
        raise UsageError(f"Unknown sort key '{sort}' (expected one of: {', '.join(ZOO_SORTS)}).")
    data = zoo.load()
    if family is not None:
        families.resolve([family], field="family")
    tags = data.matching(pattern) if pattern else list(data.tags.values())
    if pattern and not tags:
        raise zoo.no_match(pattern, data)
    groups: dict[str, list[zoo.ZooTag]] = {}
    for t in sorted(tags, key=zoo.rank_tag):
        if family in (None, families.ALL) or data.family_of(t.arch) == family:
            groups.setdefault(t.arch, []).append(t)
    rows = [zoo_row(t, data, len(group) - 1 if i == 0 and not all_tags else 0)
            for group in groups.values() for i, t in enumerate(group if all_tags else group[:1])]
    rows = [r for r in rows if (max_params_m is None or r["params_m"] <= max_params_m)
            and (min_top1 is None or r["top1"] >= min_top1)]
    key, higher = ZOO_SORTS[sort]
    return sorted(rows, key=lambda r: (r[key] is None, -r[key] if higher and r[key] is not None else r[key] or 0,
                                       r["tag"]))


def zoo_row(t: "ZooTag", data: "Zoo", others: int = 0) -> dict[str, Any]:
    """One zoo tag as a plain row: published accuracy at the deployed and test sizes, size, FLOPs, speeds."""
    from vischoose.models import zoo
    from vischoose.models.catalog import by_tag

    d, test = t.deployed, t.test
    speeds = data.speeds.get((t.arch, d.size), ())
    cpu, gpu = zoo.reference_cpu(speeds), zoo.gpu_speed(speeds, "float16")
    gmacs = data.gmacs.get((t.arch, d.size))
    curated = by_tag(t.tag)
    return {
        "tag": t.tag, "alias": curated.alias if curated else None, "arch": t.arch, "family": data.family_of(t.arch),
        "top1": d.top1, "top5": d.top5, "top1_size": d.size, "input_size": d.size,
        "top1_test": test.top1 if test else None, "top1_test_size": test.size if test else None,
        "real_top1": d.real_top1, "v2_top1": d.v2_top1, "crop_pct": d.crop_pct, "interpolation": d.interpolation,
        "params_m": t.params_m, "weights_mb_fp32": round(t.params_m * 1e6 * 4 / MIB, 1), "gmacs": gmacs,
        "gflops": round(macs_to_flops(gmacs), 2) if gmacs is not None else None,
        "arch_pretrain": data.pretrain.get(t.arch), "other_tags": others,  # per architecture (timm's metadata)
        "cpu_ms": cpu.step_ms if cpu else None, "cpu": cpu.describe(d.size) if cpu else None,
        "gpu_img_s": gpu.img_s if gpu else None, "gpu": gpu.describe(d.size) if gpu else None,
        "speeds": [s._asdict() for s in speeds], "source": data.source,
    }
