"""recommend never reuses a flagged row (contended, or batch-1 figures that contradict each other: Profile.flagged)
as a measured figure: the estimate stands, a note says why (recommendation.reuse), and recommend --measure measures
it again. Pure: hand-built rows, no timing."""

from __future__ import annotations

from dataclasses import replace

from tests.profhelpers import known
from vischoose.records import Profile

PRESET = """
name = "phone"
[measure]
device = "cpu"
threads = 2
batch_size = 1
[constraints]
max_latency_ms = 100
[candidates]
families = ["resnet"]
prefer = ["resnet50"]
[rank]
sort = ["-top1", "latency_ms"]
"""


def test_recommend_never_reuses_a_flagged_row_as_measured(tmp_path):
    from vischoose.models import catalog
    from vischoose.presets import load_preset
    from vischoose.recommendation import measuring, reuse
    from vischoose.recommendation.ranking import build_candidates, recommend

    path = tmp_path / "phone.toml"
    path.write_text(PRESET)
    preset = load_preset(path)
    entry = catalog.load()["resnet50"]
    flagged = Profile(model="resnet50", tag=entry.tag, device="cpu", dtype="float32", batch_size=1, input_size=224,
                      latency_ms_p50=40.0, latency_ms_p90=42.0, throughput_img_s=25.0, others_cpu_cores=1.2,
                      contended="latency: others took 1.20 cores (limit 0.10)")
    entries = [entry]
    cand = build_candidates(entries, preset, [flagged], [], known())[0]
    assert cand.figures["latency_ms"].source != "measured"  # the estimate stands
    lines = reuse.flagged_lines(entries, [], preset, [flagged])
    assert lines == [f"resnet50 at torch fp32: the row measured here on {flagged.created_at[:10]} is not used "
                     "(contended (latency: others took 1.20 cores (limit 0.10))); figures for it are estimated or "
                     "missing until it is measured on a quieter machine (vischoose recommend --measure, or vischoose "
                     "profile --target phone)"]
    measured = []

    def measure(todo, variant):
        measured.extend(todo)
        return [replace(flagged, contended=None, others_cpu_cores=0.01, created_at="2099-01-01T00:00:00+00:00")]
    new, log = measuring.measure_for_decision(preset, entries, [], [flagged], [], measure, known())
    assert measured == [("resnet50", entry.tag)]  # measured again, not reused
    rec = recommend(build_candidates(entries, preset, [flagged, *new], [], known()), preset)
    assert rec.chosen.figures["latency_ms"].source == "measured" and rec.chosen.figures["latency_ms"].value == 42.0
    assert reuse.flagged_lines(entries, [], preset, [flagged, *new]) == []  # a clean row is used: nothing to say
