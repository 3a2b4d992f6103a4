"""What the application sees: a cold start measured in a new process (and refused in a warm one), each photo's split
adding up to its whole, the rows and tables that carry them, and the options' one-line errors."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import vischoose
from tests.profhelpers import FAST, seed_peak
from vischoose.errors import UsageError
from vischoose.measure import application, child, coldstart, endtoend
from vischoose.measure import runner as profiling
from vischoose.measure.protocol import Job, new_result
from vischoose.requests.profile import ProfileRequest

TINY = "test_resnet.r160_in1k"


def small_photos(folder: Path, count: int = 2) -> Path:
    """A few phone-like JPEGs, small enough to keep the tests fast."""
    from vischoose.inference import photos

    photos.synthesize(folder, count=count, size=(640, 480))
    return folder


def job(mode: str, runtime: str = "torch", **fields) -> Job:
    request = ProfileRequest.build(models=(TINY,), runtime=runtime, **{**FAST, **fields})
    return profiling.new_job(request, TINY, "cpu", (1,)).but(mode=mode, result_path=os.devnull)


# --- a cold start is a new process's, never a warm one's -------------------------------------------------------

def test_a_cold_start_is_never_forked_from_the_server_that_imported_torch():
    assert child.forkable(job("timing"))  # torch eager's timings fork from the server ...
    assert not child.forkable(job(application.COLD))  # ... its cold start starts a process of its own
    assert not child.forkable(job(application.COLD, runtime="onnxruntime"))


def test_a_cold_start_refuses_a_process_that_already_loaded_the_runtime():
    import timm  # noqa: F401  (this test process has torch and timm, as a warm process would)

    with pytest.raises(coldstart.NotCold, match="this process already imported torch, timm: a cold start needs a "
                                                "fresh one"):
        coldstart.coldstart(job(application.COLD), new_result())


def test_a_second_cold_start_in_one_process_is_refused(monkeypatch):
    """The module counts the sessions it opened: a second measurement in the same process would time a warm one."""
    monkeypatch.setattr(coldstart, "_SESSIONS", 1)
    with pytest.raises(coldstart.NotCold, match="this process already opened a session"):
        coldstart.coldstart(job(application.COLD), new_result())


@pytest.mark.slow
@pytest.mark.cold_start
def test_every_profile_times_a_cold_start_in_a_process_of_its_own(isolated_home, tmp_path):
    """Two profiles, two cold starts: each in a process that is neither this one nor the other's, each a whole
    (load + first inference), with the RSS of a process that holds torch and the model."""
    seed_peak(isolated_home)
    first, second = (vischoose.profile([TINY], batch_sizes=[1], save=False, **FAST)[0] for _ in range(2))
    for row in (first, second):
        assert row.error is None
        assert row.cold_import_ms > 0 and row.cold_load_ms > 0 and row.cold_first_ms > 0
        assert row.cold_start_ms == pytest.approx(row.cold_load_ms + row.cold_first_ms)
        assert row.cold_rss_mb > 100  # torch itself is ~200 MiB resident
    assert first.e2e_ms_p50 is None and first.layer_profile is None  # only when asked


@pytest.mark.slow
@pytest.mark.cold_start
def test_the_cold_start_child_runs_under_a_new_pid_each_time(isolated_home):
    seed_peak(isolated_home)
    pids = []

    def watching(cmd, env, on_line):
        status = profiling.run_child(cmd, env, on_line)
        found = Job.from_json(Path(cmd[3]).read_text())
        if found.mode == application.COLD:
            import json

            pids.append(json.loads(Path(found.result_path).read_text())["cold_start"]["pid"])
        return status

    request = ProfileRequest.build(models=(TINY,), runtime="onnxruntime", batch_sizes=(1,), **FAST)
    for _ in range(2):
        (run,) = profiling.profile_models(request, runner=watching)
        assert run.profile.cold_start_ms is not None
    assert len(pids) == 2 and len(set(pids)) == 2 and os.getpid() not in pids


@pytest.mark.cold_start
def test_no_cold_start_when_turned_off():
    assert application.modes(job("timing")) == [application.COLD]
    assert application.modes(job("timing", cold_start=False, layers=True)) == [application.LAYERS]
    assert application.modes(job("timing", end_to_end=True)) == [application.COLD, application.END_TO_END]


# --- end to end: the split adds up --------------------------------------------------------------------------

def test_each_images_parts_add_up_to_its_whole_within_the_timer_resolution(tmp_path):
    """Real decode and the model's own timm transform, a stand-in model: decode + preprocess + model of each image
    is its end-to-end time to the clock's resolution, and the means add up as well."""
    from vischoose.inference import calibration
    from vischoose.inference.images import images_in_folder, load_image

    paths = images_in_folder(small_photos(tmp_path / "photos"))
    config = {"input_size": [3, 64, 64], "interpolation": "bicubic", "mean": [0.5] * 3, "std": [0.5] * 3,
              "crop_pct": 0.875, "crop_mode": "center"}
    stamps = endtoend.time_images(paths, load_image, calibration.transform_for(config), lambda x: x.sum(), 0.2)
    resolution = time.get_clock_info("perf_counter").resolution
    assert len(stamps) >= endtoend.MIN_RUNS
    found = application.split(stamps)
    for first, decoded, ready, done in stamps:
        assert first <= decoded <= ready <= done
        assert abs((decoded - first) + (ready - decoded) + (done - ready) - (done - first)) <= resolution + 1e-12
    parts = sum(found[name]["mean"] for name in ("decode", "preprocess", "model"))
    assert parts == pytest.approx(found["total"]["mean"], abs=1e-6)
    assert found["runs"] == len(stamps) and found["total"]["p50"] <= found["total"]["p90"]


def test_the_split_is_read_from_the_four_readings():
    found = application.split([(0.0, 0.010, 0.015, 0.020), (1.0, 1.030, 1.040, 1.045)])
    assert found["decode"]["p50"] == pytest.approx(20.0) and found["preprocess"]["mean"] == pytest.approx(7.5)
    assert found["model"]["mean"] == pytest.approx(5.0) and found["total"]["p50"] == pytest.approx(32.5)


def test_phone_photos_are_12_megapixel_jpegs_and_the_decoder_is_named(tmp_path):
    from PIL import Image

    from vischoose.inference import photos

    (path,) = photos.synthesize(tmp_path, count=1)
    with Image.open(path) as im:
        assert (im.format, im.size) == ("JPEG", (4032, 3024))
    assert 1.0 < path.stat().st_size / 2**20 < 8.0  # a photo's size at q90, not noise's (tens of MiB) or flat's
    assert photos.decoder().startswith("Pillow ") and ("libjpeg-turbo" in photos.decoder())


@pytest.mark.slow
def test_profile_end_to_end_and_layers_fill_the_row_and_its_tables(isolated_home, tmp_path, capsys):
    from vischoose.report import profile as report_profile

    seed_peak(isolated_home)
    folder = small_photos(tmp_path / "mine")
    runs = profiling.profile_models(ProfileRequest.build(models=(TINY,), images=str(folder), layers=True,
                                                         batch_sizes=(1,), **FAST))
    row = runs[0].profile
    assert row.error is None and row.e2e_runs >= endtoend.MIN_RUNS
    assert row.e2e_photos.startswith("2 images, median 640x480 (0.3 MP, median ") and row.e2e_photos.endswith(" MiB)")
    assert row.decoder.startswith("Pillow ")
    assert row.decode_ms_p50 > 0 and row.preprocess_ms_p50 > 0 and row.e2e_model_ms_p50 > 0
    assert 0 < row.e2e_model_share < 1 and row.e2e_ms_p50 <= row.e2e_ms_p90
    from vischoose.runtimes.layers import LayerProfile

    layers = LayerProfile.from_json(row.layer_profile)
    assert layers.runtime == "torch" and any(layer.name.startswith("layer1.0.conv1 ") for layer in layers.layers)
    report_profile.show_profiles(runs)
    out = capsys.readouterr().out
    assert "cold ms" in out and "e2e p50 ms" in out and "decoded by Pillow" in out
    assert f"{TINY} torch fp32: where one batch-1 inference's time goes (torch.profiler" in out


# --- the options' errors -------------------------------------------------------------------------------------

def test_images_must_be_a_folder_of_images(tmp_path):
    with pytest.raises(UsageError, match=r"^images .*missing does not exist\.$"):
        ProfileRequest.build(models=(TINY,), images=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError) as found:
        ProfileRequest.build(models=(TINY,), images=str(tmp_path / "empty"))
    assert str(found.value) == f"images {tmp_path / 'empty'} holds no images."
    assert ProfileRequest.build(models=(TINY,), images=str(small_photos(tmp_path / "p"))).end_to_end


def test_end_to_end_and_layers_are_profiles_own_rows():
    with pytest.raises(UsageError) as found:
        ProfileRequest.build(models=(TINY,), layers=True, optimize=True)
    assert str(found.value) == "layers times profile's own single-stream rows; it does not run with optimize."


# --- torch eager's layer profile ------------------------------------------------------------------------------

def test_torch_layer_profile_charges_ops_to_modules_and_names_a_planted_fallback():
    """A convolution torch cannot give to oneDNN (float64), planted after test_resnet's stem, runs ATen's fallback
    kernel: the profile names its module off the fast path."""
    import timm
    import torch

    from vischoose.runtimes.torch_eager import EagerModel, TorchEager

    class Float64Conv(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(32, 32, 3, padding=1).double()

        def forward(self, x):
            return self.conv(x.double()).float()

    net = timm.create_model(TINY, pretrained=False).eval()
    net.act1 = torch.nn.Sequential(net.act1, Float64Conv())
    found = TorchEager().layer_profile(EagerModel(net, lambda b: torch.randn(b, 3, 160, 160)), 1, 1, runs=2)
    names = {layer.name for layer in found.layers}
    assert "act1.1.conv (Conv2d)" in names and "fc (Linear)" in names
    planted = next(layer for layer in found.layers if layer.name == "act1.1.conv (Conv2d)")
    assert planted.slow is not None and planted.slow.startswith("ATen's fallback convolution (")
    assert "Conv2d" in {kind.op for kind in found.slow_kinds}
    assert found.runs == 2 and found.threads == 1 and found.profiler.startswith("torch.profiler (torch ")
    assert sum(found.share(layer) for layer in found.layers) == pytest.approx(1.0)
