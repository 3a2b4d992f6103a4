"""Weights: resolve, download, cache, offline. The only module that imports huggingface_hub.

Downloads go through huggingface_hub into its normal cache (HF_HOME / HF_HUB_CACHE), so other tools
share them; HF_HUB_OFFLINE and HF_ENDPOINT are honoured. Only config.json and a weights file are
fetched: model.safetensors, or pytorch_model.bin where a repo has nothing else (timm loads that one
with torch.load(weights_only=True)). No code from a repo is ever run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from vischoose.errors import (
    CorruptWeightsError,
    UnknownModelError,
    UsageError,
    WeightsUnavailableError,
)
from vischoose.models.catalog import ModelRef

CONFIG_FILE = "config.json"
SAFE_WEIGHTS = "model.safetensors"
PICKLE_WEIGHTS = "pytorch_model.bin"
METADATA_TIMEOUT_S = 5.0
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Weights:
    """A model folder on disk: config.json plus one weights file, and where it came from."""

    folder: Path
    weights_file: Path
    repo_id: str | None = None
    commit: str | None = None  # the snapshot's commit sha; None for a local folder

    @property
    def size_bytes(self) -> int:
        """Bytes of the weights file."""
        return self.weights_file.stat().st_size

    @property
    def is_safetensors(self) -> bool:
        """Whether the weights are safetensors (never unpickled)."""
        return self.weights_file.suffix == ".safetensors"


def is_offline() -> bool:
    """Whether HF_HUB_OFFLINE is set (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def endpoint() -> str:
    """The hub endpoint in use (HF_ENDPOINT or the public hub)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def cache_dir() -> Path:
    """The huggingface_hub cache folder (HF_HUB_CACHE, or HF_HOME/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_location(ref: ModelRef) -> tuple[str, str]:
    """The (repo id, revision) that holds a reference's weights.

    Raises:
        UsageError: a local folder has no hub location.
        UnknownModelError: a timm name timm does not know, or one with no weights on the hub.
    """
    if ref.kind == "local-dir":
        raise UsageError(f"'{ref.text}' is a local folder, not a hub model.")
    if ref.kind == "hf-hub":
        return ref.name, ref.revision or "main"
    if ref.entry is not None:
        return ref.entry.hf_hub_id, "main"
    return _timm_hub_id(ref.name), "main"


def _timm_hub_id(name: str) -> str:
    import timm
    from timm.models import get_pretrained_cfg, is_model

    arch, _, _tag = name.partition(".")
    if not is_model(arch):
        from vischoose.models.catalog import suggest

        raise UnknownModelError(name, suggest(name, timm.list_pretrained(f"{arch[:4]}*")))
    try:
        cfg = get_pretrained_cfg(name, allow_unregistered=False)
    except RuntimeError:
        cfg = None
    if cfg is None or not getattr(cfg, "hf_hub_id", None):
        raise UnknownModelError(name, timm.list_pretrained(f"{arch}.*")[:3])
    return cfg.hf_hub_id


def cached_weights(ref: ModelRef) -> Weights | None:
    """The cached snapshot for a reference, or None; never touches the network."""
    if ref.kind == "local-dir":
        return local_weights(Path(ref.name))
    try:
        repo_id, revision = hub_location(ref)
    except UnknownModelError:
        return None
    return _cached(repo_id, revision)


def _cached(repo_id: str, revision: str) -> Weights | None:
    repo_dir = cache_dir() / ("models--" + repo_id.replace("/", "--"))
    ref_file = repo_dir / "refs" / revision
    commit = ref_file.read_text().strip() if ref_file.is_file() else revision
    folder = repo_dir / "snapshots" / commit
    if not (folder / CONFIG_FILE).is_file():
        return None
    weights_file = _weights_file(folder)
    if weights_file is None:
        return None
    return Weights(folder=folder, weights_file=weights_file, repo_id=repo_id, commit=commit)


def _weights_file(folder: Path) -> Path | None:
    for name in (SAFE_WEIGHTS, PICKLE_WEIGHTS):
        if (folder / name).is_file():
            return folder / name
    return None


def local_weights(folder: Path) -> Weights:
    """A user's model folder (config.json + model.safetensors or pytorch_model.bin).

    Raises:
        UsageError: the folder lacks config.json or a weights file.
    """
    if not (folder / CONFIG_FILE).is_file():
        raise UsageError(f"Model folder '{folder}' has no config.json.",
                         hint="A model folder holds config.json (as timm pushes it) and model.safetensors.")
    weights_file = _weights_file(folder)
    if weights_file is None:
        raise UsageError(f"Model folder '{folder}' has no {SAFE_WEIGHTS} (or {PICKLE_WEIGHTS}).")
    return Weights(folder=folder, weights_file=weights_file)


def pull(ref: ModelRef, force: bool = False) -> Weights:
    """Download a model's config and weights into the hub cache, or return the cached copy.

    When the hub cannot be reached the cached snapshot is used; with nothing cached this fails
    at once instead of retrying for most of a minute.

    Raises:
        WeightsUnavailableError: offline or unreachable with nothing cached, repo or file missing,
            gated, or a repo without safetensors or pytorch_model.bin weights.
    """
    if ref.kind == "local-dir":
        return local_weights(Path(ref.name))
    repo_id, revision = hub_location(ref)
    cached = None if force else _cached(repo_id, revision)
    if is_offline():
        if cached:
            return cached
        raise WeightsUnavailableError(
            f"{ref.display}: weights for {repo_id} are not in the cache at {cache_dir()} and HF_HUB_OFFLINE is set.",
            hint=_WHAT_TO_DO)
    files, commit = _remote_files(ref, repo_id, revision, cached)
    if commit is None:  # hub unreachable, but a cached copy exists
        return cached  # type: ignore[return-value]
    for name in files:
        _download(ref, repo_id, name, revision, force)
    weights = _cached(repo_id, commit)
    if weights is None:  # pragma: no cover - huggingface_hub wrote somewhere else
        raise WeightsUnavailableError(f"{ref.display}: download finished but the snapshot {commit} is missing.")
    verify_checksum(weights)
    return weights


_WHAT_TO_DO = ("Connect to the internet, set HF_ENDPOINT to a hub mirror, or copy a hub cache holding "
               "the model into HF_HUB_CACHE (then run with HF_HUB_OFFLINE=1).")


def _remote_files(ref: ModelRef, repo_id: str, revision: str, cached: Weights | None) -> tuple[list[str], str | None]:
    from huggingface_hub import HfApi
    from huggingface_hub import errors as hf_errors

    try:
        info = HfApi().model_info(repo_id, revision=revision, timeout=METADATA_TIMEOUT_S)
    except (hf_errors.GatedRepoError, hf_errors.RevisionNotFoundError, hf_errors.RepositoryNotFoundError) as err:
        what = "is gated (accept its terms on the hub and log in)" if isinstance(err, hf_errors.GatedRepoError) \
            else f"or revision '{revision}' was not found"
        raise WeightsUnavailableError(f"{ref.display}: repository {repo_id} {what} at {endpoint()}.",
                                      hint="Check the name with: vischoose models") from err
    except Exception as err:  # connection refused, DNS, timeout, 5xx: the hub is not reachable
        if not _is_network_error(err):
            raise
        if cached:
            return [], None
        raise WeightsUnavailableError(
            f"{ref.display}: the hub at {endpoint()} cannot be reached ({_short(err)}) and {repo_id} is not cached.",
            hint=_WHAT_TO_DO) from err
    names = {s.rfilename for s in info.siblings or []}
    if CONFIG_FILE not in names:
        raise WeightsUnavailableError(f"{ref.display}: {repo_id} has no {CONFIG_FILE}; it is not a timm model.")
    for weights_name in (SAFE_WEIGHTS, PICKLE_WEIGHTS):
        if weights_name in names:
            return [CONFIG_FILE, weights_name], info.sha
    raise WeightsUnavailableError(
        f"{ref.display}: {repo_id} has neither {SAFE_WEIGHTS} nor {PICKLE_WEIGHTS}; "
        "vischoose loads no other weight formats (they may run code).")


def _download(ref: ModelRef, repo_id: str, filename: str, revision: str, force: bool) -> None:
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import hf_hub_download

    try:
        hf_hub_download(repo_id, filename, revision=revision, force_download=force,
                        etag_timeout=METADATA_TIMEOUT_S)
    except (hf_errors.EntryNotFoundError, hf_errors.RepositoryNotFoundError) as err:
        raise WeightsUnavailableError(f"{ref.display}: {filename} was not found in {repo_id}.") from err
    except Exception as err:
        if not _is_network_error(err) and not isinstance(err, hf_errors.LocalEntryNotFoundError):
            raise
        raise WeightsUnavailableError(
            f"{ref.display}: downloading {filename} from {endpoint()} failed ({_short(err)}).",
            hint="Run the same command again: the download resumes where it stopped.") from err


def _is_network_error(err: BaseException) -> bool:
    from huggingface_hub import errors as hf_errors

    if isinstance(err, (hf_errors.LocalEntryNotFoundError, OSError, TimeoutError)):
        return True
    if isinstance(err, hf_errors.HfHubHTTPError):
        status = getattr(getattr(err, "response", None), "status_code", None)
        return status is None or status >= 500
    # httpx (or httpx2) transport errors: not HF error classes, recognised by module and name
    return type(err).__module__.split(".")[0].startswith("httpx") and (
        "Error" in type(err).__name__ or "Timeout" in type(err).__name__)


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:120]


def verify_checksum(weights: Weights) -> None:
    """Check a cached weights file against the hub's sha256 (the blob's name, for LFS files).

    Raises:
        CorruptWeightsError: the file's content does not match its checksum.
    """
    blob = weights.weights_file.resolve()
    if not _SHA256.match(blob.name):
        return  # not an LFS blob: huggingface_hub checked its etag when downloading
    digest = hashlib.sha256()
    with open(blob, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != blob.name:
        raise corrupt(weights, "its sha256 does not match the hub's checksum")


def check_weights_file(weights: Weights) -> None:
    """Cheap integrity check before loading: the safetensors header parses and the file is complete.

    Raises:
        CorruptWeightsError: truncated or unparsable file.
    """
    path = weights.weights_file
    if not weights.is_safetensors:
        return  # torch.load(weights_only=True) raises on a broken pickle; handled by the loader
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            header_len = int.from_bytes(fh.read(8), "little")
            if header_len <= 0 or 8 + header_len > size:
                raise ValueError("header runs past the end of the file")
            header = json.loads(fh.read(header_len))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        if 8 + header_len + end != size:
            raise ValueError(f"{size} bytes on disk, {8 + header_len + end} expected")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise corrupt(weights, f"the safetensors file is truncated or corrupt ({err})") from err


def corrupt(weights: Weights, why: str) -> CorruptWeightsError:
    """The error for a damaged weights file, naming it and how to get a good copy."""
    hint = "Remove the model folder and copy it again." if weights.repo_id is None else \
        "Download it again with: vischoose pull --force MODEL"
    return CorruptWeightsError(f"{weights.weights_file}: {why}.", hint=hint)


def read_config(weights: Weights) -> dict:
    """The model folder's config.json as a dict.

    Raises:
        CorruptWeightsError: config.json is not valid JSON or names no architecture.
    """
    path = weights.folder / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
        if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
            raise ValueError("no 'architecture' field")
    except (ValueError, UnicodeDecodeError) as err:
        raise CorruptWeightsError(f"{path}: not a timm config.json ({err}).") from err
    return config


@dataclass(frozen=True)
class Snapshot:
    """A cached hub model's config and weights as bytes: what another machine's hub cache needs to load it offline
    (a fleet node that cannot reach the hub gets them through Ray's object store)."""

    repo_id: str
    revision: str
    commit: str
    files: dict[str, bytes]


def read_snapshot(ref: ModelRef) -> Snapshot | None:
    """The cached snapshot of a hub model as bytes; None when this cache does not hold it (or it is a folder)."""
    if ref.kind == "local-dir":
        return None
    try:
        repo_id, revision = hub_location(ref)
    except UnknownModelError:
        return None
    found = _cached(repo_id, revision)
    if found is None or found.commit is None:
        return None
    files = {path.name: path.read_bytes() for path in (found.folder / CONFIG_FILE, found.weights_file)}
    return Snapshot(repo_id=repo_id, revision=revision, commit=found.commit, files=files)


def write_snapshot(snapshot: Snapshot) -> Weights:
    """Put a snapshot into this machine's hub cache as huggingface_hub lays it out: each file written whole before
    it is renamed into place, the revision's ref last, so a reader never sees half of it."""
    repo_dir = cache_dir() / ("models--" + snapshot.repo_id.replace("/", "--"))
    folder = repo_dir / "snapshots" / snapshot.commit
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in snapshot.files.items():
        _write_whole(folder / name, data)
    if snapshot.revision != snapshot.commit:
        (repo_dir / "refs").mkdir(exist_ok=True)
        _write_whole(repo_dir / "refs" / snapshot.revision, snapshot.commit.encode())
    found = _cached(snapshot.repo_id, snapshot.revision)
    assert found is not None  # just written
    return found


def _write_whole(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
