"""Build vischoose/data/zoo.json from timm's results folder (stdlib only; never imported by the CLI).

    python -m vischoose.models.zoobuild PATH/TO/timm/results [--commit SHA] [--out vischoose/data/zoo.json]

Input: a copy of huggingface/pytorch-image-models `results/` (results-imagenet.csv, results-imagenet-real.csv,
results-imagenetv2-matched-frequency.csv, model_metadata-in1k.csv, benchmark-infer-*.csv). Every benchmark file in
the folder becomes one machine, named from its file name (precision, layout, torch, CUDA or CPU, device, compiled),
so newer CSVs need no code change. The commit comes from --commit or the first 40-hex string in the folder's
README.md; it and the licence are written into the output.

Output: one JSON object, a row per line. `tags`: one row per pretrained tag and evaluation size (ImageNet-1k top-1
and top-5, crop, interpolation, params, and ReaL / ImageNetV2 top-1 at the same size where published). `bench`: one
row per architecture and input size that some tag was evaluated at: GMACs and, per machine, the published speed.
The joins are by `arch.tag` and (arch, size); nothing is computed but the split of a tag into its architecture.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

FORMAT = 1
REPOSITORY = "https://github.com/huggingface/pytorch-image-models"
LICENSE = "Apache-2.0"
TOP1 = "results-imagenet.csv"
REAL = "results-imagenet-real.csv"
V2 = "results-imagenetv2-matched-frequency.csv"
METADATA = "model_metadata-in1k.csv"
TAG_COLUMNS = ["tag", "img_size", "top1", "top5", "crop_pct", "interpolation", "params_m", "real_top1", "v2_top1"]
# the devices timm's benchmark file names abbreviate
DEVICES = {"5090": "NVIDIA GeForce RTX 5090", "pro6000maxq": "NVIDIA RTX PRO 6000 Blackwell Max-Q",
           "i9_10940x": "Intel Core i9-10940X (14 cores)", "i7_12700h": "Intel Core i7-12700H (14 cores)"}
PRECISIONS = {"amp": "float16 (AMP)", "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
_BENCH_NAME = (r"^benchmark-infer-(?P<precision>[a-z0-9]+)-(?P<layout>nchw|nhwc)-pt(?P<torch>\d+)"
               r"-(?P<device>cu\d+|cpu)-(?P<machine>.+?)(?P<compiled>-dynamo)?$")


def number(text: str) -> float | None:
    """A CSV cell as a number ('1,013.01' -> 1013.01; '' -> None)."""
    text = text.strip().replace(",", "")
    return float(text) if text else None


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file as dicts."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def tag_rows(folder: Path) -> list[list]:
    """One row per tag and evaluation size: results-imagenet.csv joined with the ReaL and ImageNetV2 files."""
    real = {(r["model"], r["img_size"]): number(r["top1"]) for r in read_rows(folder / REAL)} \
        if (folder / REAL).is_file() else {}
    v2 = {(r["model"], r["img_size"]): number(r["top1"]) for r in read_rows(folder / V2)} \
        if (folder / V2).is_file() else {}
    rows = []
    for r in read_rows(folder / TOP1):
        key = (r["model"], r["img_size"])
        rows.append([r["model"], int(r["img_size"]), number(r["top1"]), number(r["top5"]), number(r["crop_pct"]),
                     r["interpolation"], number(r["param_count"]), real.get(key), v2.get(key)])
    return sorted(rows, key=lambda row: (row[0], row[1]))


def machine_of(path: Path) -> tuple[str, dict] | None:
    """(machine key, its description) from a benchmark file name, or None for a name of another shape."""
    m = re.match(_BENCH_NAME, path.stem)
    if m is None:
        return None
    torch = ".".join(m["torch"])
    kind = "cpu" if m["device"] == "cpu" else "cuda"
    cuda = "" if kind == "cpu" else f", CUDA {m['device'][2:-1]}.{m['device'][-1]}"
    compiled = bool(m["compiled"])
    key = f"{m['machine']}-{m['precision']}{'-compiled' if compiled else ''}"
    return key, {"kind": kind, "device": DEVICES.get(m["machine"], m["machine"]),
                 "precision": PRECISIONS.get(m["precision"], m["precision"]), "layout": m["layout"].upper(),
                 "software": f"torch {torch}{cuda}{', torch.compile' if compiled else ''}", "file": path.name}


def bench_rows(folder: Path, wanted: set[tuple[str, int]]) -> tuple[dict[str, dict], list[str], list[list]]:
    """(machines, columns, rows): per (arch, size) in `wanted`, GMACs and each machine's img/s, ms per batch and
    batch size, from every benchmark-infer-*.csv in the folder."""
    machines: dict[str, dict] = {}
    gmacs: dict[tuple[str, int], float | None] = {}
    speeds: dict[tuple[str, int], dict[str, list]] = {}
    for path in sorted(folder.glob("benchmark-infer-*.csv")):
        found = machine_of(path)
        if found is None:
            continue
        key, about = found
        machines[key] = about
        for r in read_rows(path):
            where = (r["model"], int(r["infer_img_size"]))
            if where not in wanted:
                continue
            if gmacs.get(where) is None:
                gmacs[where] = number(r.get("infer_gmacs", ""))
            speeds.setdefault(where, {})[key] = [number(r["infer_samples_per_sec"]), number(r["infer_step_time"]),
                                                 int(r["infer_batch_size"])]
    keys = sorted(machines)
    columns = ["arch", "img_size", "gmacs"] + [f"{k}:{f}" for k in keys for f in ("img_s", "step_ms", "batch")]
    rows = [[arch, size, gmacs.get((arch, size))] + [v for k in keys for v in speeds[(arch, size)].get(k, [None] * 3)]
            for arch, size in sorted(speeds)]
    return {k: machines[k] for k in keys}, columns, rows


def pretraining(folder: Path) -> dict[str, str]:
    """model_metadata-in1k.csv: the pretraining data timm lists per model name (architecture, older names too)."""
    path = folder / METADATA
    return {r["model"]: r["pretrain"] for r in read_rows(path)} if path.is_file() else {}


def commit_of(folder: Path) -> str | None:
    """The first 40-hex commit in the folder's README.md, if it names one."""
    readme = folder / "README.md"
    found = re.search(r"\b[0-9a-f]{40}\b", readme.read_text(encoding="utf-8")) if readme.is_file() else None
    return found.group(0) if found else None


def build(folder: Path, commit: str | None = None) -> dict:
    """The zoo as one JSON-ready dict."""
    commit = commit or commit_of(folder)
    if not commit:
        raise SystemExit(f"{folder}: no commit given and none in README.md (pass --commit SHA)")
    tags = tag_rows(folder)
    wanted = {(row[0].partition(".")[0], row[1]) for row in tags}
    machines, columns, bench = bench_rows(folder, wanted)
    meta = pretraining(folder)
    archs = sorted({arch for arch, _ in wanted})
    return {
        "format": FORMAT,
        "about": ("timm's published ImageNet-1k results and inference benchmarks, joined by arch.tag and "
                  f"(arch, input size). Derived from {REPOSITORY} results/ at commit {commit}; {LICENSE} "
                  "(the repository's LICENSE). Rebuild: python -m vischoose.models.zoobuild RESULTS_DIR"),
        "source": {"repository": REPOSITORY, "folder": "results", "commit": commit, "license": LICENSE,
                   "files": sorted([TOP1, REAL, V2, METADATA] + [m["file"] for m in machines.values()])},
        "machines": machines,
        "tag_columns": TAG_COLUMNS,
        "tags": tags,
        "bench_columns": columns,
        "bench": bench,
        "pretrain": {arch: meta[arch] for arch in archs if arch in meta},
    }


def dumps(zoo: dict) -> str:
    """JSON with one table row per line (readable diffs), keys in a fixed order."""
    lines = ["{"]
    items = list(zoo.items())
    for i, (key, value) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        if key in ("tags", "bench"):
            body = ",\n".join("  " + json.dumps(row, separators=(",", ":")) for row in value)
            lines.append(f'"{key}": [\n{body}\n]{comma}')
        elif key in ("machines", "pretrain"):
            body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}" for k, v in value.items())
            lines.append(f'"{key}": {{\n{body}\n}}{comma}')
        else:
            lines.append(f"{json.dumps(key)}: {json.dumps(value)}{comma}")
    return "\n".join(lines) + "\n}\n"


def main(argv: list[str] | None = None) -> None:
    """Command line: read the results folder, write the zoo file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a copy of timm's results/ folder")
    parser.add_argument("--commit", help="the commit the CSVs were copied at (default: from the folder's README.md)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data" / "zoo.json")
    args = parser.parse_args(argv)
    zoo = build(args.folder, args.commit)
    args.out.write_text(dumps(zoo), encoding="utf-8")
    print(f"{args.out}: {len(zoo['tags'])} tag rows, {len(zoo['bench'])} benchmark rows, "
          f"{len(zoo['machines'])} machines, commit {zoo['source']['commit'][:12]}")


if __name__ == "__main__":
    main()
