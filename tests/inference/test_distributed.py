"""evaluate under torchrun: 2 CPU processes with gloo give exactly the single-process result."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests import realweights
from vischoose.cli import app

pytestmark = pytest.mark.slow


def test_torchrun_two_processes_equal_one(lite0, hf_cache, runner, tmp_path):
    data = realweights.labelled_folder(tmp_path / "photos")
    (data / realweights.ESPRESSO / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    args = ["evaluate", str(data), "--model", realweights.TAG, "--json", "--no-save", "--batch-size", "2"]
    single = runner.invoke(app, args)
    env = realweights.env_for_cache(hf_cache, tmp_path / "home")
    env.pop("VISCHOOSE_DEBUG", None)
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                            "-m", "vischoose", *args], capture_output=True, text=True, env=env, timeout=300)
    # one unreadable image: exit 2; torchrun reports any worker's non-zero exit as its own 1
    assert (single.exit_code, multi.returncode) == (2, 1), multi.stderr
    one, two = json.loads(single.stdout)["data"], json.loads(multi.stdout)["data"]  # rank 0 alone prints
    assert (two["world_size"], one["world_size"]) == (2, 1)
    keys = ("images", "top1", "top5", "failed", "tag", "weights", "input_size", "dataset")
    assert {k: two[k] for k in keys} == {k: one[k] for k in keys}
    assert one["images"] == 3 * len(realweights.photos()) and len(one["failed"]) == 1
    assert multi.stderr.count("could not be read") == 1  # the failure reported once, by rank 0
