"""The real download path against a real hub-compatible server (olah) on loopback."""

from __future__ import annotations

import hashlib
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
    proc, _ = cli(["pull", "resnet50"], tmp_path / "c", endpoint)
    assert proc.returncode == 3  # within cli()'s timeout: no retry loop waits on a hub that is not there
    assert "Retrying" not in proc.stderr and "retry" not in proc.stderr.lower()
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"Error: resnet50: the hub at {endpoint} cannot be reached (")
    assert lines[0].endswith("and timm/resnet50.a1_in1k is not cached.")
    assert lines[1].startswith("Hint: Connect to the internet, set HF_ENDPOINT to a hub mirror")
    assert "Traceback" not in proc.stderr


def test_offline_and_nothing_cached_fails_fast(tmp_path):
    proc, _ = cli(["pull", "resnet50"], tmp_path / "c", None, offline=True)
    assert proc.returncode == 3 and "retry" not in proc.stderr.lower()
    assert "are not in the cache at" in proc.stderr and "HF_HUB_OFFLINE is set" in proc.stderr


def test_server_down_uses_the_cached_copy(server, tmp_path):
    cache = tmp_path / "cache"
    assert cli(["pull", "test_resnet.r160_in1k"], cache, server.endpoint)[0].returncode == 0
    proc, _ = cli(["pull", "test_resnet.r160_in1k", "--json"], cache, f"http://127.0.0.1:{free_port()}")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["data"][0]["commit"] == server.commits["test_resnet"]


def test_pull_force_downloads_again_over_a_damaged_cached_copy(server, tmp_path):
    cache = tmp_path / "cache"
    assert cli(["pull", "test_resnet.r160_in1k"], cache, server.endpoint)[0].returncode == 0
    snap = cache / "models--timm--test_resnet.r160_in1k" / "snapshots" / server.commits["test_resnet"]
    served = (server.mirrors / "models/timm/test_resnet.r160_in1k/model.safetensors").read_bytes()
    weights = snap / "model.safetensors"
    assert weights.read_bytes() == served
    weights.resolve().write_bytes(served[:-1] + bytes([served[-1] ^ 0xFF]))  # one byte flipped, same size
    damaged = weights.read_bytes()
    # without --force the cached copy is what pull reports (no request made for the weights)
    proc, _ = cli(["pull", "test_resnet.r160_in1k"], cache, server.endpoint)
    assert weights.read_bytes() == damaged
    proc, _ = cli(["pull", "test_resnet.r160_in1k", "--force", "--json"], cache, server.endpoint)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["data"][0]["commit"] == server.commits["test_resnet"]
    assert weights.read_bytes() == served


class _FlippingProxy:
    """An HTTP proxy in front of olah that flips one byte in the middle of every weights file it sends."""

    def __init__(self, upstream: str) -> None:
        import http.client
        import http.server
        import threading
        from urllib.parse import urlsplit

        host = urlsplit(upstream)

        class Handler(http.server.BaseHTTPRequestHandler):
            def forward(self, body: bool) -> None:
                conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "accept-encoding")}
                conn.request(self.command, self.path, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if body and self.path.split("?")[0].endswith("model.safetensors") and len(data) > 1:
                    data = data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + data[len(data) // 2 + 1:]
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length", "content-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", resp.getheader("content-length") if not body else str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
                self.forward(body=False)

            def do_GET(self) -> None:  # noqa: N802
                self.forward(body=True)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


def test_a_weights_file_corrupted_in_transfer_is_caught_by_its_sha256(server, tmp_path):
    """The hub serves weights through LFS (etag = sha256): a byte flipped on the way is caught after the download."""
    commit = hubfixtures.make_git_repo(server.mirrors, "test_resnet.r160_in1k", repo_id="someone/lfs-resnet",
                                       seed=5, lfs=("model.safetensors",))
    good = cli(["pull", "hf-hub:someone/lfs-resnet"], tmp_path / "good", server.endpoint)[0]
    assert good.returncode == 0, good.stderr  # served straight, the same file passes the check
    blob = (tmp_path / "good" / "models--someone--lfs-resnet" / "snapshots" / commit / "model.safetensors").resolve()
    assert blob.name == hashlib.sha256(blob.read_bytes()).hexdigest()  # named by its LFS sha256, so it is checked
    proxy = _FlippingProxy(server.endpoint)
    try:
        proc, _ = cli(["pull", "hf-hub:someone/lfs-resnet"], tmp_path / "bad", proxy.endpoint)
    finally:
        proxy.close()
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[-2].startswith("Error: ") and lines[-2].endswith(
        "model.safetensors: its sha256 does not match the hub's checksum."), proc.stderr
    assert lines[-1] == "Hint: Download it again with: vischoose pull --force MODEL"
    assert "Traceback" not in proc.stderr
