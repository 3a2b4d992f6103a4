"""The int8 ONNX file size of each catalog architecture, with the recipe `vischoose export` uses for its family.

The size depends on the architecture and the recipe only (not on the weight values), so random init is
exported: `recommend` then knows an int8 variant's size without a profile. Prints a table and the
`int8_mib = ...` lines for vischoose/data/catalog.toml.

    python bench/int8_sizes.py [--models resnet18,vit_b16] [--check]

--check is the canary for the catalog's figures: it exits 1 when a size built today is more than 0.1 MiB off the
catalog's int8_mib (a new exporter or quantizer changed the file; rebuild the catalog lines).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vischoose.models import catalog
from vischoose.models.family import model_family
from vischoose.report import tables as report  # noqa: E402
from vischoose.runtimes import ortbuild as deploy
from vischoose.units import MIB  # noqa: E402


def int8_size(alias: str, folder: Path) -> tuple[str, str, float, float]:
    """(family, recipe, int8 file MiB, bytes per parameter) of one catalog model."""
    from vischoose.models.loading import load_model

    loaded = load_model(alias, weights="random")
    family = model_family(loaded.model)
    exported = deploy.export_onnx(loaded, folder / f"{alias}.onnx", loaded.input_size)
    quant = deploy.quantize_int8(exported.path, folder / f"{alias}.int8.onnx", family)
    for path in folder.iterdir():  # the big fp32 graphs would fill the disk over the catalog
        path.unlink()
    return family, quant.recipe.name, quant.file_mb, quant.file_mb * MIB / loaded.params


def main() -> int:
    """Export every model asked for and print the sizes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(catalog.load()))
    parser.add_argument("--check", action="store_true", help="exit 1 when a size is off the catalog's by > 0.1 MiB")
    args = parser.parse_args()
    import onnxruntime
    import torch

    rows = []
    for alias in args.models.split(","):
        with tempfile.TemporaryDirectory(prefix="vischoose-int8-") as tmp:
            family, recipe, mib, per_param = int8_size(alias, Path(tmp))
        rows.append([alias, family, recipe, f"{mib:.1f}", f"{per_param:.3f}"])
        print(f"{alias}: {mib:.1f} MiB", file=sys.stderr, flush=True)
    print(report.table(["model", "family", "recipe", "int8 MiB", "bytes/param"], rows))
    print(f"\ntorch {torch.__version__}, onnxruntime {onnxruntime.__version__}; random init (the size does not "
          "depend on the weight values); MiB = 2^20 bytes.\n")
    for alias, *_, mib, _ in rows:
        print(f"[models.{alias}] int8_mib = {mib}")
    entries = catalog.load()
    off = [f"{alias}: built {mib} MiB, catalog {entries[alias].int8_mib}" for alias, *_, mib, _ in rows
           if entries[alias].int8_mib is not None and abs(float(mib) - entries[alias].int8_mib) > 0.1]
    for line in off:
        print(f"changed: {line}", file=sys.stderr)
    return 1 if args.check and off else 0


if __name__ == "__main__":
    sys.exit(main())
