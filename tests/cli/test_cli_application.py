"""What the application sees, on the command line: the options' one-line errors (exit 2), the stored rows' cold start
and layer profile in results report, and recommend's cold-start limit on stored rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_store import make_profile
from vischoose.cli import app
from vischoose.results import store
from vischoose.runtimes.layers import Layer, LayerProfile

TINY = "test_resnet.r160_in1k"


def one_line_error(result, code: int = 2) -> tuple[str, ...]:
    assert result.exit_code == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    return tuple(result.stderr.splitlines())


def test_latency_basis_end_to_end_needs_a_latency_limit(runner):
    lines = one_line_error(runner.invoke(app, ["recommend", "--target", "cloud", "--latency-basis", "end-to-end"]))
    assert lines == ("Error: --latency-basis end-to-end says what --max-latency-ms limits, and target 'cloud' sets no "
                     "latency limit.", "Hint: Add --max-latency-ms MS.")


def test_an_unknown_latency_basis_is_named(runner):
    lines = one_line_error(runner.invoke(app, ["recommend", "--target", "mobile", "--latency-basis", "wall"]))
    assert lines == ("Error: --latency-basis must be one of: model, end-to-end (got 'wall').",)


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "missing", "Error: --images {folder} does not exist."),
    (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "Error: --images {folder} holds no images."),
])
def test_images_must_be_a_folder_that_holds_images(runner, tmp_path, make, message):
    folder = make(tmp_path)
    lines = one_line_error(runner.invoke(app, ["profile", TINY, "--images", str(folder)]))
    assert lines[0] == message.format(folder=folder)


@pytest.mark.parametrize("args, message", [
    (["--layers", "--optimize"], "Error: --layers times profile's own single-stream rows; it does not run with "
                                 "--optimize."),
    (["--end-to-end", "--scenario", "server", "--slo-ms", "50"],
     "Error: --end-to-end times profile's own single-stream rows; it does not run with --scenario server."),
])
def test_application_options_are_for_profiles_own_rows(runner, args, message):
    pytest.importorskip("mlperf_loadgen")  # the server scenario is checked for its extra first
    lines = one_line_error(runner.invoke(app, ["profile", TINY, *args]))
    assert lines[0] == message


def stored_row(**fields):
    """A profile row as `profile --end-to-end --layers` stores it, one operator off the fast path."""
    layers = LayerProfile("onnxruntime", "int8", "ONNX Runtime 1.32.0 session profiling", 1, 2, 10, 4.0, (
        Layer("node_Conv_1", "QLinearConv", 2.0, "CPU"),
        Layer("stem_nchwc", "Conv", 1.5, "CPU", "Conv left in float (float input [1, 3, 224, 224]) inside the int8 "
                                                "graph")))
    base = dict(runtime="onnxruntime", dtype="int8", cold_import_ms=150.0, cold_load_ms=60.0, cold_first_ms=9.0,
                cold_start_ms=69.0, cold_rss_mb=80.0, e2e_ms_p50=240.0, e2e_ms_p90=260.0, decode_ms_p50=150.0,
                decode_ms_p90=170.0, preprocess_ms_p50=60.0, preprocess_ms_p90=70.0, e2e_model_ms_p50=4.0,
                e2e_model_ms_p90=5.0, e2e_model_share=0.02, e2e_runs=20, decoder="Pillow 13.0.0 (libjpeg-turbo 3.2.0)",
                e2e_photos="4 synthesized 4032x3024 JPEGs, q90 (12.2 MP, median 3.4 MiB)",
                layer_profile=layers.to_json())
    return make_profile("resnet50", **{**base, **fields})


def test_results_report_shows_the_cold_start_and_where_the_time_goes(runner, isolated_home, tmp_path):
    with store.open_store() as db:
        db.add_profile(stored_row())
    out = tmp_path / "report.md"
    result = runner.invoke(app, ["results", "report", "--out", str(out), "--no-plot"])
    assert result.exit_code == 0, result.stderr
    text = Path(out).read_text()
    assert "## What the application sees" in text and "| resnet50 | onnxruntime int8 | 150" in text
    assert "photos: 4 synthesized 4032x3024 JPEGs, q90 (12.2 MP, median 3.4 MiB); decoded by Pillow 13.0.0" in text
    assert "### resnet50 onnxruntime int8: where one batch-1 inference's time goes (ONNX Runtime 1.32.0 session " \
           "profiling; 10 profiled runs, 2 threads)" in text
    assert ("- Off the fast path: 1 operators, 42.9% of the operators' time:\n  - Conv x1 (CPU): 1.500 ms, 42.9%: Conv "
            "left in float (float input [1, 3, 224, 224]) inside the int8 graph (the slowest: stem_nchwc)") in text


def test_results_show_keeps_the_new_fields_through_the_store(isolated_home):
    with store.open_store() as db:
        found = db.get(db.add_profile(stored_row())).record
    assert (found.cold_start_ms, found.e2e_ms_p90, found.decoder) == (69.0, 260.0, "Pillow 13.0.0 (libjpeg-turbo "
                                                                                     "3.2.0)")
    assert LayerProfile.from_json(found.layer_profile).off_fast_path[0].name == "stem_nchwc"


def test_a_cold_start_limit_without_measured_cold_starts_fits_nothing_and_says_how_to_measure(runner):
    lines = one_line_error(runner.invoke(app, ["recommend", "--target", "mobile", "--max-cold-start-ms", "100"]), 4)
    assert lines[0].startswith("Error: No model fits target 'mobile'; closest: ")
    assert "(not measured: no cold-start figure to check the cold-start limit against (measure it: vischoose " \
           "profile --target mobile --runtime executorch --precision " in lines[0]
