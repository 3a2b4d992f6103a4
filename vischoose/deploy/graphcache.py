"""Built graphs cached, so a model is exported (and quantized) once per runtime, precision, pinned weights, input
size, calibration images, metadata and versions: `export`, `evaluate --runtime` and `profile` all build through
`build`, and building the same file again is a hard link (or a copy) out of the cache.

The cache is $VISCHOOSE_GRAPH_CACHE, else VISCHOOSE_HOME/graphs. Only files whose weights are pinned are cached:
pretrained weights at a hub commit, or random init from RANDOM_SEED where the caller seeded it. Calibration images
are keyed by the bytes of their preprocessed batch, so another image under the same name is another key. An entry
is written whole (its artifact.json last), so a killed build leaves nothing that loads. torch and timm are imported
inside functions (a build process has them already)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from vischoose.runtimes import files
from vischoose.runtimes.artifact import Artifact
from vischoose.runtimes.base import GraphRuntime

if TYPE_CHECKING:
    import numpy as np

    from vischoose.models.loading import LoadedModel

FOLDER = "graphs"
ENV = "VISCHOOSE_GRAPH_CACHE"
RANDOM_SEED = 0  # the build's random init, so that a random-weights graph is the same file every time
RANDOM_INIT = 2  # how random init is made (2: zero-initialised norms at one, models.loading.trained_like)


def folder(home: str | Path | None = None) -> Path:
    """Where built graphs are cached: $VISCHOOSE_GRAPH_CACHE, else HOME/graphs (HOME: VISCHOOSE_HOME)."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    if home is None:
        from vischoose.paths import home as vischoose_home

        home = vischoose_home()
    return Path(home) / FOLDER


def key(runtime: GraphRuntime, precision: str, tag: str, weights: str, input_size: int,
        calibration: "np.ndarray | None", versions: dict[str, str], metadata: dict[str, str] | None = None,
        seeded: bool = False, max_batch: int = 1) -> str | None:
    """The cache key of a build, or None when its weights are not pinned (a local folder's, or unseeded random).
    max_batch is part of it where the runtime plans memory for it (batch_bound "planned"): another bound is another
    file."""
    if not (weights.startswith("pretrained@") or (weights == "random" and seeded)):
        return None
    images = "random" if calibration is None else hashlib.sha256(calibration.tobytes()).hexdigest() + \
        f":{tuple(calibration.shape)}:{calibration.dtype}"
    config = {k: v for k, v in sorted(vars(runtime).items()) if isinstance(v, (str, int, float, bool, type(None)))}
    text = json.dumps({"runtime": runtime.name, "build": runtime.build_revision, "config": config, "precision": precision, "tag": tag,
                       "weights": weights, "input_size": input_size, "calibration": images, "versions": versions,
                       "metadata": (metadata or {}) if runtime.stores_metadata else {},
                       **({"max_batch": max_batch} if runtime.batch_bound == "planned" else {}),
                       **({"init": RANDOM_INIT} if weights == "random" else {})}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def versions(runtime: GraphRuntime) -> dict[str, str]:
    """The versions a built file depends on: torch, timm and the runtime's own."""
    import timm
    import torch

    return {"torch": torch.__version__, "timm": timm.__version__, **runtime.versions()}


def build(runtime: GraphRuntime, loaded: "LoadedModel", precision: str, out: Path, input_size: int,
          calibration: "np.ndarray | None" = None, metadata: dict[str, str] | None = None,
          source: Artifact | None = None, seeded: bool = False, home: str | Path | None = None,
          link: bool = False, max_batch: int = 1) -> tuple[Artifact, bool]:
    """runtime.build through the cache: the artifact at `out`, and whether it came from the cache.

    max_batch: the largest batch one call of the file must take (runtime.build's; keyed where it changes the file).

    link: hard-link a cached file to `out` rather than copy it, for files in a folder vischoose removes (a file
    handed to the user is a copy, so editing it in place cannot change the cache).

    A runtime that quantizes from an fp32 file (builds_from_fp32) gets its fp32 file through the cache too, so
    int8 after fp32 (or int8 calibrated on other images) exports once.
    """
    cache = folder(home)
    found_key = key(runtime, precision, loaded.tag, loaded.weights_label, input_size, calibration,
                    versions(runtime), metadata, seeded, max_batch)
    cached = lookup(cache, found_key)
    if cached is not None:
        placed = place(cached, Path(out), link)
        if placed is not None:
            return placed, True
    if precision != "fp32" and source is None and runtime.builds_from_fp32 and found_key is not None:
        fp32_out = Path(out).with_name("fp32-" + Path(out).name)
        source, _ = build(runtime, loaded, "fp32", fp32_out, input_size, metadata=metadata, seeded=seeded,
                          home=home, link=True, max_batch=max_batch)
        try:
            built = runtime.build(loaded, precision, out, input_size, calibration, metadata=metadata, source=source,
                                  max_batch=max_batch)
        finally:
            for each in files.companions(fp32_out):
                each.unlink(missing_ok=True)
    else:
        built = runtime.build(loaded, precision, out, input_size, calibration, metadata=metadata, source=source,
                              max_batch=max_batch)
    store(cache, found_key, built)
    return built, False


def lookup(cache: Path, found_key: str | None) -> Artifact | None:
    """The cached artifact of a key, if it is complete."""
    if found_key is None:
        return None
    meta = cache / found_key / "artifact.json"
    if not meta.is_file():
        return None
    artifact = Artifact.from_dict(json.loads(meta.read_text()))
    return artifact if Path(artifact.path).is_file() else None


def place(artifact: Artifact, out: Path, link: bool = False) -> Artifact | None:
    """The cached files copied (or hard-linked) to `out`; None where they cannot move under another name (an ONNX
    file whose weights live in an external data file names that file inside it)."""
    source = Path(artifact.path)
    found = files.companions(source)
    if out.name != source.name and any(each.name == source.name + ".data" for each in found):
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    for each in found:
        target = out.with_name(out.stem + each.name[len(source.stem):])
        target.unlink(missing_ok=True)
        try:
            if not link:
                raise OSError("a copy was asked for")
            os.link(each, target)
        except OSError:  # a copy, another file system, or one without hard links
            shutil.copy2(each, target)
    return replace(artifact, path=str(out))


def store(cache: Path, found_key: str | None, artifact: Artifact) -> None:
    """Copy a built artifact's files into the cache (nothing when the key is None: weights not pinned)."""
    if found_key is None:
        return
    entry = cache / found_key
    tmp = entry.with_name(entry.name + f".tmp{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        source = Path(artifact.path)
        for each in files.companions(source):
            shutil.copy2(each, tmp / each.name)
        cached = Artifact.from_dict({**artifact.to_dict(), "path": str(entry / source.name)})
        (tmp / "artifact.json").write_text(json.dumps(cached.to_dict()))
        shutil.rmtree(entry, ignore_errors=True)
        tmp.rename(entry)
    except OSError:  # a full disk or a read-only cache costs the next build time, never this one
        shutil.rmtree(tmp, ignore_errors=True)
