"""Build hub caches and model repos as huggingface_hub and timm write them, with random-init weights."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path

CONFIG_DROP = ("url", "file", "state_dict", "hf_hub_id", "hf_hub_filename", "source", "architecture", "tag")


@dataclass(frozen=True)
class CachedRepo:
    repo_id: str
    commit: str
    snapshot: Path
    weights: Path


@cache
def _built(tag: str, seed: int) -> tuple[bytes, bytes]:
    """config.json and model.safetensors bytes for a timm tag, random init (memoised per session)."""
    import tempfile

    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = timm.create_model(tag, pretrained=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        weights = path.read_bytes()
    return config_json(model), weights


def built_weights(tag: str, seed: int = 0) -> bytes:
    """The model.safetensors bytes make_git_repo and add_to_cache write for a tag (random init, memoised)."""
    return _built(tag, seed)[1]


def config_json(model) -> bytes:
    """config.json as timm pushes it: architecture, num_classes, num_features, global_pool, pretrained_cfg."""
    cfg = {k: v for k, v in model.pretrained_cfg.items() if k not in CONFIG_DROP}
    config = {
        "architecture": model.pretrained_cfg["architecture"],
        "num_classes": model.num_classes,
        "num_features": model.num_features,
        "global_pool": getattr(model, "global_pool", "avg") if isinstance(getattr(model, "global_pool", None), str) else "avg",
        "pretrained_cfg": {"tag": model.pretrained_cfg.get("tag"), **cfg},
    }
    return json.dumps(config, indent=2).encode()


def write_model_folder(folder: Path, tag: str, seed: int = 0) -> Path:
    """A plain model folder (config.json + model.safetensors)."""
    config, weights = _built(tag, seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_bytes(config)
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def add_to_cache(cache_dir: Path, tag: str, repo_id: str | None = None, seed: int = 0,
                 files: dict[str, bytes] | None = None, blobs: bool = True) -> CachedRepo:
    """Lay out models--org--name/{refs/main, snapshots/<commit>/..., blobs/} as huggingface_hub does.

    `files` replaces the default {config.json, model.safetensors} (e.g. to store a pickle or a broken file).
    Blobs of weights are named by sha256 (as LFS files are on the hub), config by a sha1.
    """
    repo_id = repo_id or f"timm/{tag}"
    if files is None:
        config, weights = _built(tag, seed)
        files = {"config.json": config, "model.safetensors": weights}
    commit = hashlib.sha1(repo_id.encode() + b"".join(files.values())).hexdigest()
    repo = cache_dir / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    for name, data in files.items():
        if blobs:
            digest = hashlib.sha256(data).hexdigest() if name.endswith((".safetensors", ".bin")) else \
                hashlib.sha1(data).hexdigest()
            (repo / "blobs").mkdir(exist_ok=True)
            (repo / "blobs" / digest).write_bytes(data)
            (snapshot / name).symlink_to(Path("../../blobs") / digest)
        else:
            (snapshot / name).write_bytes(data)
    weights_name = next((n for n in files if n.endswith((".safetensors", ".bin"))), "model.safetensors")
    return CachedRepo(repo_id=repo_id, commit=commit, snapshot=snapshot, weights=snapshot / weights_name)


def make_git_repo(mirrors: Path, tag: str, repo_id: str | None = None, seed: int = 0,
                  files: dict[str, bytes] | None = None, lfs: tuple[str, ...] = ()) -> str:
    """A local git repo under <mirrors>/models/<org>/<name> on branch main, as olah serves; returns its commit.

    Files named in `lfs` are committed as Git LFS pointers with their content under .git/lfs/objects, as the
    hub stores every weights file: olah then serves the content with the sha256 as its etag.
    """
    import subprocess

    repo_id = repo_id or f"timm/{tag}"
    folder = mirrors / "models" / repo_id
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    if files is None:
        config, weights = _built(tag, seed)
        files = {"config.json": config, "model.safetensors": weights}
    for name, data in files.items():
        if name in lfs:
            oid = hashlib.sha256(data).hexdigest()
            obj = folder / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
            obj.parent.mkdir(parents=True)
            obj.write_bytes(data)
            data = f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n".encode()
        (folder / name).write_bytes(data)
    git = ["git", "-c", "user.email=tests@vischoose", "-c", "user.name=tests", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=folder, check=True)
    subprocess.run([*git, "add", "."], cwd=folder, check=True)
    subprocess.run([*git, "commit", "-qm", "weights"], cwd=folder, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, check=True, capture_output=True,
                          text=True).stdout.strip()
