"""The real download path against a real hub-compatible server (olah) on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import hubfixtures
from tests.olahserver import OlahServer, free_port

pytestmark = pytest.mark.slow


def cli(args: list[str], cache: Path, endpoint: str | None, offline: bool = False, timeout: float = 120):
    """Run vischoose in a fresh process (huggingface_hub reads HF_ENDPOINT / HF_HUB_OFFLINE at import)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1" if offline else "0", HF_HUB_DISABLE_TELEMETRY="1")
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "vischoose", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)
    return proc, time.monotonic() - start


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("olah")
    srv = OlahServer(root)
    commits = {
        "resnet50": hubfixtures.make_git_repo(srv.mirrors, "resnet50.a1_in1k"),
        "test_resnet": hubfixtures.make_git_repo(srv.mirrors, "test_resnet.r160_in1k"),
        "pickle_only": hubfixtures.make_git_repo(srv.mirrors, "x", repo_id="someone/no-weights",
                                                 files={"config.json": b'{"architecture": "resnet18"}',
                                                        "model.onnx": b"not for us"}),
    }
    srv.start("timm/resnet50.a1_in1k")
    srv.commits = commits
    yield srv
    srv.stop()


def test_pull_resnet50_fills_the_hub_cache(server, tmp_path):
    cache = tmp_path / "cache"
    proc, _ = cli(["pull", "resnet50", "--json"], cache, server.endpoint)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["schema_version"] == 1
    row = out["data"][0]
    commit = server.commits["resnet50"]
    assert row["model"] == "resnet50" and row["repo_id"] == "timm/resnet50.a1_in1k" and row["commit"] == commit
    repo = cache / "models--timm--resnet50.a1_in1k"
    assert (repo / "refs" / "main").read_text() == commit
    snap = repo / "snapshots" / commit
    assert sorted(p.name for p in snap.iterdir()) == ["config.json", "model.safetensors"]
    assert (snap / "model.safetensors").resolve().parent == (repo / "blobs").resolve()
    assert row["size_mb"] == pytest.approx((snap / "model.safetensors").stat().st_size / 2**20)

    # the models table now reports it cached, offline, with its size on disk
    proc, _ = cli(["models", "--family", "resnet", "--json"], cache, None, offline=True)
    rows = {r["alias"]: r for r in json.loads(proc.stdout)["data"]}
    assert rows["resnet50"]["cached"] is True and rows["resnet50"]["commit"] == commit
    assert rows["resnet18"]["cached"] is False


def test_pulled_weights_load_through_timm_offline(server, tmp_path):
    cache = tmp_path / "cache"
    assert cli(["pull", "test_resnet.r160_in1k"], cache, server.endpoint)[0].returncode == 0
    code = ("from vischoose.models.loading import load_model; m = load_model('test_resnet.r160_in1k');"
            "print(m.weights_label, m.params)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == [f"pretrained@{server.commits['test_resnet'][:12]}", "469688"]


def test_missing_repo_is_a_one_line_error(server, tmp_path):
    proc, _ = cli(["pull", "hf-hub:timm/does-not-exist"], tmp_path / "c", server.endpoint)
    assert proc.returncode == 3
    assert proc.stderr.splitlines()[0] == (
        f"Error: hf-hub:timm/does-not-exist: repository timm/does-not-exist or revision 'main' was not found "
        f"at {server.endpoint}.")
    assert "Traceback" not in proc.stderr


def test_repo_without_usable_weights_is_refused(server, tmp_path):
    proc, _ = cli(["pull", "hf-hub:someone/no-weights"], tmp_path / "c", server.endpoint)
    assert proc.returncode == 3
    assert proc.stderr.startswith("Error: hf-hub:someone/no-weights: someone/no-weights has neither "
                                  "model.safetensors nor pytorch_model.bin")


def test_server_down_and_nothing_cached_fails_fast(tmp_path):
    endpoint = f"http://127.0.0.1:{free_port()}"
    proc, elapsed = cli(["pull", "resnet50"], tmp_path / "c", endpoint)
    assert proc.returncode == 3
    assert elapsed < 10
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"Error: resnet50: the hub at {endpoint} cannot be reached (")
    assert lines[0].endswith("and timm/resnet50.a1_in1k is not cached.")
    assert lines[1].startswith("Hint: Connect to the internet, set HF_ENDPOINT to a hub mirror")
    assert "Traceback" not in proc.stderr


def test_offline_and_nothing_cached_fails_fast(tmp_path):
    proc, elapsed = cli(["pull", "resnet50"], tmp_path / "c", None, offline=True)
    assert proc.returncode == 3 and elapsed < 10
    assert "are not in the cache at" in proc.stderr and "HF_HUB_OFFLINE is set" in proc.stderr


def test_server_down_uses_the_cached_copy(server, tmp_path):
    cache = tmp_path / "cache"
    assert cli(["pull", "test_resnet.r160_in1k"], cache, server.endpoint)[0].returncode == 0
    proc, _ = cli(["pull", "test_resnet.r160_in1k", "--json"], cache, f"http://127.0.0.1:{free_port()}")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["data"][0]["commit"] == server.commits["test_resnet"]
