"""recommend's cold-start limit and end-to-end latency basis on hand-built rows: no torch, no timing."""

from pathlib import Path

import pytest

from tests.profhelpers import known
from vischoose.errors import NoModelFitsError, PresetError
from vischoose.models import catalog
from vischoose.presets import load_preset
from vischoose.recommendation.measuring import timing_free
from vischoose.recommendation.ranking import build_candidates, recommend
from vischoose.records import Profile

pytestmark = pytest.mark.usefixtures("plain_install")


def torch_only(tmp_path):
    """The shipped mobile preset without its [deploy] table: torch fp32 on the CPU, as profile measures it."""
    text = (Path(__file__).parents[2] / "presets" / "mobile.toml").read_text()
    path = tmp_path / "mobile.toml"
    path.write_text(text[:text.index("[deploy]")] + text[text.index("[candidates]"):])
    return str(path)


def row(model, latency, cold=None, e2e=None, decode=150.0, preprocess=60.0):
    entry = catalog.load()[model]
    fields = {}
    if cold is not None:
        fields.update(cold_load_ms=cold * 0.75, cold_first_ms=cold * 0.25, cold_start_ms=cold)
    if e2e is not None:
        fields.update(e2e_ms_p90=e2e, e2e_ms_p50=e2e, decode_ms_p50=decode, preprocess_ms_p50=preprocess,
                      e2e_model_ms_p50=latency, decoder="Pillow 13.0.0 (libjpeg-turbo 3.2.0)")
    return Profile(model=model, tag=entry.tag, device="cpu", dtype="float32", batch_size=1, input_size=224,
                   latency_ms_p50=latency, latency_ms_p90=latency, **fields)


def run(target, rows, models, **limits):
    preset = load_preset(target).with_overrides(**limits)
    entries = [catalog.load()[m] for m in models]
    return recommend(build_candidates(entries, preset, rows, [], known()), preset)


def test_a_cold_start_over_the_limit_rejects_and_an_unmeasured_one_cannot_be_checked(tmp_path):
    rows = [row("resnet18", 10.0, cold=80.0), row("resnet50", 30.0, cold=400.0), row("resnet34", 20.0)]
    rec = run(torch_only(tmp_path), rows, ["resnet18", "resnet34", "resnet50"], max_cold_start_ms=200)
    assert rec.chosen.model == "resnet18"
    assert rec.chosen.figures["cold_start_ms"].value == 80.0
    rejected = {c.model: c for c in rec.rejected}
    assert rejected["resnet50"].violations == ("400.0 ms > 200 ms cold-start limit (measured, fresh process: load "
                                               "300 ms + first inference 100 ms, torch fp32)",)
    unmeasured = {c.model: c for c in rec.unmeasured}  # not measured is listed apart, never rejected
    assert "resnet34" not in rejected
    assert unmeasured["resnet34"].missing == ("not measured: no cold-start figure to check the cold-start limit "
                                              "against (measure it: vischoose profile --target mobile resnet34)",)


def test_the_cold_start_limit_needs_a_timing_so_measuring_relaxes_it(tmp_path):
    preset = load_preset(torch_only(tmp_path)).with_overrides(max_cold_start_ms=100)
    assert timing_free(preset).constraints.max_cold_start_ms is None
    with pytest.raises(PresetError, match=r"^max_cold_start_ms must be greater than 0 \(got -1\)\.$"):
        preset.with_overrides(max_cold_start_ms=-1)


def test_end_to_end_basis_limits_a_photos_whole_measured_or_estimated_from_this_machine(tmp_path):
    rows = [row("resnet18", 10.0, e2e=250.0), row("resnet34", 20.0)]
    plain = run(torch_only(tmp_path), rows, ["resnet18", "resnet34"], max_latency_ms=100)
    assert {c.model for c in [plain.chosen, *plain.runners_up]} == {"resnet18", "resnet34"}  # models alone fit
    rec = run(torch_only(tmp_path), rows, ["resnet18", "resnet34"], max_latency_ms=300, latency_basis="end-to-end")
    figs = {c.model: c.figures["latency_ms"] for c in [rec.chosen, *rec.runners_up, *rec.rejected]}
    assert (figs["resnet18"].value, figs["resnet18"].source) == (250.0, "measured")
    assert figs["resnet18"].note.startswith("end to end p90 (decode 150 + preprocess 60 + model 10 ms p50)")
    # resnet34 was not timed end to end: its model p90 plus the decode and preprocessing measured here on resnet18
    assert (figs["resnet34"].value, figs["resnet34"].source) == (230.0, "estimated")
    assert figs["resnet34"].note == ("the model's 20.0 ms (measured) + decode and preprocess p50 210 ms measured here "
                                     "on resnet18 at 224 px")
    with pytest.raises(NoModelFitsError, match=r"closest: resnet34 \(max_latency_ms 230\); resnet18 "
                                               r"\(max_latency_ms 250\)\.$"):
        run(torch_only(tmp_path), rows, ["resnet18", "resnet34"], max_latency_ms=100, latency_basis="end-to-end")


def test_end_to_end_basis_without_any_row_timed_end_to_end_leaves_the_limit_unchecked(tmp_path):
    preset = load_preset(torch_only(tmp_path)).with_overrides(max_latency_ms=300, latency_basis="end-to-end")
    (cand,) = build_candidates([catalog.load()["resnet18"]], preset, [row("resnet18", 10.0)], [], known())
    assert "latency_ms" not in cand.figures
    assert cand.missing == ("not measured: no latency figure to check the latency limit against (measure it: "
                            "vischoose profile --target mobile --end-to-end resnet18)",)


def test_latency_basis_is_checked():
    with pytest.raises(PresetError, match=r"^latency_basis must be one of: model, end-to-end \(got 'wall'\)\.$"):
        load_preset("mobile").with_overrides(latency_basis="wall")
