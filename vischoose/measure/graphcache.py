"""Built graphs cached under VISCHOOSE_HOME/graphs, so a model is exported and quantized once per weights,
precision, calibration images and versions: a profile run again, or recommend --measure --fresh, reuses the file.

Only files whose weights are pinned are cached: pretrained weights at a hub commit, or random init from the fixed
seed the build uses. A cache entry is written whole (its artifact.json last), so a killed build leaves nothing that
loads."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Iterable

from vischoose.runtimes.base import Artifact, Runtime

FOLDER = "graphs"
RANDOM_SEED = 0  # the build's random init, so that a random-weights graph is the same file every time


def key(runtime: Runtime, job: dict[str, Any], tag: str, weights: str, input_size: int,
        calibration: Iterable[str] | None, versions: dict[str, str]) -> str | None:
    """The cache key of a build, or None when its weights are not pinned (a local folder's weights)."""
    if weights not in ("random",) and not weights.startswith("pretrained@"):
        return None
    images = sorted(_image_id(Path(p)) for p in calibration) if calibration else ["random"]
    text = json.dumps({"runtime": runtime.name, "precision": job["precision"], "tag": tag, "weights": weights,
                       "input_size": input_size, "calibration": images, "versions": versions}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _image_id(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def lookup(home: Path, found_key: str | None) -> Artifact | None:
    """The cached artifact of a key, if it is complete."""
    if found_key is None:
        return None
    meta = home / FOLDER / found_key / "artifact.json"
    if not meta.is_file():
        return None
    artifact = Artifact.from_dict(json.loads(meta.read_text()))
    return artifact if Path(artifact.path).is_file() else None


def store(home: Path, found_key: str | None, artifact: Artifact) -> Artifact:
    """Copy a built artifact's files into the cache; returns the artifact as cached (or as it was, uncached)."""
    if found_key is None:
        return artifact
    folder = home / FOLDER / found_key
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    source = Path(artifact.path)
    for each in source.parent.iterdir():  # the file and what it reads beside it (.onnx.data, .bin)
        if each.is_file() and (each.name == source.name or each.name.startswith(source.stem + ".")):
            shutil.copy2(each, tmp / each.name)
    cached = Artifact.from_dict({**artifact.to_dict(), "path": str(folder / source.name)})
    (tmp / "artifact.json").write_text(json.dumps(cached.to_dict()))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return cached
