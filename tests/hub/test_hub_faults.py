"""Fault injection: the hub server dies in the middle of a download."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time

import pytest

from tests import hubfixtures
from tests.olahserver import OlahServer

pytestmark = pytest.mark.slow


def env_for(cache, endpoint=None, offline=False):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1" if offline else "0")
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    return env


def test_server_killed_mid_download_leaves_no_file_that_loads(tmp_path):
    srv = OlahServer(tmp_path / "olah")
    # the weights as the hub stores them: a Git LFS object (served with its sha256 as the etag), which also keeps
    # git from hashing and compressing 330 MiB
    commit = hubfixtures.make_git_repo(srv.mirrors, "vit_base_patch16_224.augreg2_in21k_ft_in1k",
                                       lfs=("model.safetensors",))
    expected = hashlib.sha256(hubfixtures.built_weights("vit_base_patch16_224.augreg2_in21k_ft_in1k")).hexdigest()
    srv.start("timm/vit_base_patch16_224.augreg2_in21k_ft_in1k")
    cache = tmp_path / "cache"
    repo = cache / "models--timm--vit_base_patch16_224.augreg2_in21k_ft_in1k"
    pull = subprocess.Popen([sys.executable, "-m", "vischoose", "pull", "vit_b16"], env=env_for(cache, srv.endpoint),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(repo.glob("blobs/*.incomplete")):
            time.sleep(0.05)
        assert list(repo.glob("blobs/*.incomplete")), "the download never started"
        time.sleep(0.3)
        srv.stop()  # the server dies with the weights half sent
        _, stderr = pull.communicate(timeout=120)
    finally:
        pull.kill()
    assert pull.returncode == 3, stderr
    # huggingface_hub logs its resume attempts first; vischoose's explanation closes the output
    assert stderr.splitlines()[-2].startswith("Error: vit_b16: downloading model.safetensors from "), stderr
    assert stderr.splitlines()[-1] == "Hint: Run the same command again: the download resumes where it stopped."
    assert "Traceback" not in stderr
    snapshot = repo / "snapshots" / commit
    assert not (snapshot / "model.safetensors").exists()

    # nothing half-downloaded is used: offline, the model is simply not cached
    offline = subprocess.run([sys.executable, "-m", "vischoose", "pull", "vit_b16"], env=env_for(cache, offline=True),
                             capture_output=True, text=True)
    assert offline.returncode == 3 and "are not in the cache" in offline.stderr

    # with the server back the download completes and the file is the one the server holds
    srv.start("timm/vit_base_patch16_224.augreg2_in21k_ft_in1k")
    try:
        again = subprocess.run([sys.executable, "-m", "vischoose", "pull", "vit_b16"],
                               env=env_for(cache, srv.endpoint), capture_output=True, text=True, timeout=180)
    finally:
        srv.stop()
    assert again.returncode == 0, again.stderr
    assert hashlib.sha256((snapshot / "model.safetensors").read_bytes()).hexdigest() == expected
    assert not list(repo.glob("blobs/*.incomplete"))
