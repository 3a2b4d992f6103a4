"""recommend --data: each fitting candidate's deployed model evaluated on the user's labelled images, the ranking
on that top-1 (with its 95 % interval), stored results reused (--fresh evaluates again), the "indistinguishable"
note with the images that would separate two models, and the one-line errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tests.inference.test_evaluation import make_images
from vischoose.cli import app
from vischoose.inference import intervals
from vischoose.runtimes.precision import Variant

RESNET, VIT = "test_resnet.r160_in1k", "test_vit.r160_in1k"
PRESET = """name = "ondata"
description = "Ranks on top-1 alone, on the CPU in fp32."

[measure]
device = "cpu"
batch_size = 1
dtype = "float32"

[constraints]

[deploy]
torch = ["fp32"]

[candidates]
families = ["resnet", "vit", "hybrid"]

[rank]
sort = ["-top1"]
"""


@pytest.fixture
def setup(cached_model, tmp_path):
    """Two tiny models with random weights, 12 images, and each model's own top-1 classes on them."""
    from vischoose.inference.prediction import predict

    for seed, tag in enumerate((RESNET, VIT)):
        cached_model(tag, seed=seed)
    images = make_images(tmp_path / "img", 12)
    own = {tag: [r.predictions[0].index for r in predict(images, tag, top_k=1).images] for tag in (RESNET, VIT)}
    assert own[RESNET] != own[VIT]  # the test needs models that disagree somewhere
    preset = tmp_path / "ondata.toml"
    preset.write_text(PRESET)
    return tmp_path, images, own, preset


def labels_csv(root, images, classes, name="labels.csv"):
    path = root / name
    path.write_text("path,label\n" + "".join(f"img/{p.name},{c}\n" for p, c in zip(images, classes)))
    return path


def recommend(runner, preset, data, *extra):
    result = runner.invoke(app, ["recommend", "--target", str(preset), "--models", RESNET, "--models", VIT,
                                 "--data", str(data), "--json", *extra])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["data"]


def stored_evals():
    from vischoose.results.store import open_store

    with open_store() as store:
        return store.evals()


@pytest.mark.parametrize("truth", [RESNET, VIT])
def test_the_ranking_follows_the_top1_measured_on_the_data(runner, setup, truth):
    root, images, own, preset = setup
    out = recommend(runner, preset, labels_csv(root, images, own[truth]))
    assert out["chosen"]["model"] == truth
    top1 = out["chosen"]["figures"]["top1"]
    assert (top1["value"], top1["source"]) == (100.0, "measured")
    assert "95 % CI 75.8-100.0" in top1["note"]  # Wilson, 12 of 12
    loser = out["runners_up"][0]["figures"]["top1"]
    assert loser["source"] == "measured" and loser["value"] < 100.0
    assert len([line for line in out["measure_log"] if line.startswith("evaluated on ")]) == 2


@pytest.mark.slow
def test_stored_results_on_the_same_data_are_reused_and_fresh_evaluates_again(runner, setup):
    root, images, own, preset = setup
    data = labels_csv(root, images, own[VIT])
    recommend(runner, preset, data)
    assert len(stored_evals()) == 2
    again = recommend(runner, preset, data)
    assert again["chosen"]["model"] == VIT and not again["measure_log"] and len(stored_evals()) == 2
    moved = root / "elsewhere.csv"  # the same images and labels under another name: the same data set
    moved.write_text(data.read_text())
    assert not recommend(runner, preset, moved)["measure_log"]
    recommend(runner, preset, data, "--fresh")
    assert len(stored_evals()) == 4
    changed = labels_csv(root, images, own[RESNET], "other.csv")  # other labels: another data set
    assert recommend(runner, preset, changed)["chosen"]["model"] == RESNET and len(stored_evals()) == 6


def test_models_the_data_cannot_tell_apart_are_said_to_be_so(runner, setup):
    root, images, own, preset = setup
    # half the images labelled as one model sees them, half as the other: both near 50 %, intervals overlap
    mixed = own[RESNET][:6] + own[VIT][6:]
    out = recommend(runner, preset, labels_csv(root, images, mixed))
    chosen, other = out["chosen"], out["runners_up"][0]
    a, b = chosen["figures"]["top1"]["value"], other["figures"]["top1"]["value"]
    assert intervals.from_percent(a, 12).overlaps(intervals.from_percent(b, 12))
    (note,) = [n for n in out["notes"] if "indistinguishable" in n]
    assert note.startswith(f"{chosen['model']} and {other['model']} are indistinguishable on this data")
    needed = intervals.images_to_separate(a, b)
    assert (f"about {needed:,} images each would separate" in note) if needed else "their top-1 is the same" in note


def test_separated_models_get_no_such_note(runner, setup):
    root, images, own, preset = setup
    out = recommend(runner, preset, labels_csv(root, images, own[VIT]))
    a, b = out["chosen"]["figures"]["top1"]["value"], out["runners_up"][0]["figures"]["top1"]["value"]
    overlap = intervals.from_percent(a, 12).overlaps(intervals.from_percent(b, 12))
    assert any("indistinguishable" in n for n in out["notes"]) == overlap


@pytest.mark.parametrize(("args", "code", "error"), [
    (["--labels", "map.csv"], 2, "Error: --labels maps the classes of --data: it needs --data."),
    (["--data", "absent"], 2, "Error: Data set 'absent' does not exist."),
    (["--max-accuracy-drop", "1"], 2, "Error: --max-accuracy-drop is measured on labelled images: it needs --data."),
    (["--data", "labels.csv", "--max-accuracy-drop", "-1"], 2,
     "Error: --max-accuracy-drop is top-1 points int8 may lose, 0 or more (got -1)."),
    (["--data", "labels.csv", "--max-accuracy-drop", "nan"], 2,
     "Error: --max-accuracy-drop is top-1 points int8 may lose, 0 or more (got nan)."),
    (["--data", "one.csv", "--max-accuracy-drop", "1"], 2,
     "Error: --max-accuracy-drop needs at least 2 labelled images (got 1): half choose the float layers, half measure "
     "the drop."),
])
def test_bad_data_options_are_one_line(runner, setup, args, code, error, monkeypatch):
    root, images, own, preset = setup
    labels_csv(root, images, own[RESNET])
    labels_csv(root, images[:1], own[RESNET][:1], name="one.csv")
    monkeypatch.chdir(root)
    result = runner.invoke(app, ["recommend", "--target", str(preset), "--models", RESNET, *args])
    assert result.exit_code == code
    assert result.stderr.splitlines()[0] == error and "Traceback" not in result.stderr
    assert not stored_evals()


def test_labels_that_name_no_imagenet_class_fail_before_any_model_loads(runner, setup, monkeypatch):
    root, images, _, preset = setup
    data = root / "bad.csv"
    data.write_text("path,label\n" + "".join(f"img/{p.name},not_a_class\n" for p in images))
    from vischoose.inference import prediction

    monkeypatch.setattr(prediction, "prepare", lambda *a, **k: pytest.fail("a model was loaded"))
    result = runner.invoke(app, ["recommend", "--target", str(preset), "--models", RESNET, "--data", str(data)])
    assert result.exit_code == 2, result.stderr
    assert "not_a_class" in result.stderr and "Traceback" not in result.stderr


def test_only_results_this_run_would_ship_count_on_the_data():
    """An int8 result of a runtime that reverts layers counts only at the run's --max-accuracy-drop (plain int8
    without one); fp32, torch, and other data sets' results as before."""
    from vischoose.recommendation import ondata
    from vischoose.records import EvalResult

    def ev(runtime="onnxruntime", dtype="int8", limit=None, dataset_id="abc"):
        return EvalResult(model="m", tag="t", dataset="d", images=10, top1=90.0, top5=99.0, runtime=runtime,
                          dtype=dtype, dataset_id=dataset_id, max_accuracy_drop=limit)

    plain, at_1, at_0 = ev(), ev(limit=1.0), ev(limit=0.0)
    fp32, eager, elsewhere = ev(dtype="float32"), ev(runtime="torch", dtype="float32"), ev(dataset_id="other")
    stored = [plain, at_1, at_0, fp32, eager, elsewhere]
    data = ondata.DataSet(path=Path("d"), labels=None, fingerprint="abc", images=10)
    assert ondata.on_data(stored, data) == [plain, fp32, eager]
    assert ondata.on_data(stored, replace(data, max_accuracy_drop=1.0)) == [at_1, fp32, eager]
    assert ondata.accuracy_aware(Variant("onnxruntime", "int8"), replace(data, max_accuracy_drop=0.0))
    assert not ondata.accuracy_aware(Variant("onnxruntime", "fp32"), replace(data, max_accuracy_drop=0.0))
    assert not ondata.accuracy_aware(Variant("onnxruntime", "int8"), data)


def test_results_stand_for_what_this_run_ships_when_measuring_and_ranking_alike():
    """A file evaluated as written (evaluate --graph) never stands for a variant: its recipe and float layers are its
    own; without --data, accuracy-aware int8 does not count at all."""
    from vischoose.recommendation import ondata
    from vischoose.recommendation.pipeline import shippable
    from vischoose.records import EvalResult

    def ev(**kw):
        return EvalResult(**{"model": "m", "tag": "t", "dataset": "d", "images": 10, "top1": 90.0, "top5": 99.0,
                             "runtime": "onnxruntime", "dtype": "int8", "dataset_id": "abc", **kw})

    plain, aware, as_written = ev(), ev(max_accuracy_drop=1.0), ev(graph="/ship/m-int8.onnx")
    assert shippable([plain, aware, as_written], None) == [plain]
    data = ondata.DataSet(path=Path("d"), labels=None, fingerprint="abc", images=10, max_accuracy_drop=1.0)
    assert shippable([plain, aware, as_written], data) == [aware]
    assert shippable([plain, aware, as_written], replace(data, max_accuracy_drop=None)) == [plain]


def test_a_limit_the_target_cannot_act_on_is_said_not_ignored(runner, setup):
    """--max-accuracy-drop on a target that deploys no int8: the run goes on (fp32 needs no limit) and says the
    limit changed nothing."""
    root, images, own, preset = setup
    args = ["recommend", "--target", str(preset), "--models", RESNET, "--data",
            str(labels_csv(root, images, own[RESNET])), "--max-accuracy-drop", "1", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    log = json.loads(result.stdout)["data"]["measure_log"]
    assert "--max-accuracy-drop 1 changes nothing: target 'ondata' deploys no int8 on a runtime that can keep layers " \
           "in float" in log
    assert any(line.startswith("evaluated on ") for line in log)


INT8_PRESET = PRESET.replace('torch = ["fp32"]', 'onnxruntime = ["int8"]')


@pytest.mark.slow
@pytest.mark.parametrize("outcome", ["met", "missed"])
def test_accuracy_aware_int8_is_stored_when_it_meets_its_limit_and_rejected_when_it_misses(runner, setup, outcome,
                                                                                            monkeypatch):
    """recommend --data --max-accuracy-drop on two tiny models (random weights, labelled with one model's own fp32
    classes so int8's flips are drops). A limit of 100 points always holds: both int8 files are stored with their
    held-out figures and the second run reuses them. A limit no file can meet (the search's test made to fail) rejects
    both: exit 4, nothing stored, and each rejection says what int8 lost."""
    from vischoose.deploy import accuracy

    root, images, own, _ = setup
    preset = root / "int8.toml"
    preset.write_text(INT8_PRESET)
    if outcome == "missed":
        monkeypatch.setattr(accuracy, "within", lambda drop, limit: False)
    args = ["recommend", "--target", str(preset), "--models", RESNET, "--models", VIT, "--data",
            str(labels_csv(root, images, own[RESNET])), "--max-accuracy-drop", "100", "--json"]
    result = runner.invoke(app, args)
    stored = {e.tag: e for e in stored_evals()}
    if outcome == "missed":
        assert result.exit_code == 4 and not stored, result.stderr  # 4: nothing fits
        assert result.stderr.count("onnxruntime int8 not used: int8 ") >= 1, result.stderr
        assert "--max-accuracy-drop 100" in result.stderr  # the limit it missed, as the user gave it
        return
    assert result.exit_code == 0, result.stderr
    assert set(stored) == {RESNET, VIT}  # any drop is within 100 points: plain int8 meets it
    for ev in stored.values():
        assert ev.accuracy_met and ev.max_accuracy_drop == 100 and ev.fp32_top1 - ev.top1 <= 100
        assert ev.images == 6  # the held-out half of the 12 images, never the half that chose the layers
        assert ev.reverted_layers == [] and ev.file_mb > 0
    out = json.loads(result.stdout)["data"]
    logs = [line for line in out["measure_log"] if line.startswith("evaluated on ")]
    assert len(logs) == 2 and all("accuracy-aware int8" in line for line in logs)
    assert out["chosen"]["tag"] in stored
    assert "held-out images" in out["chosen"]["figures"]["top1"]["note"]
    again = json.loads(runner.invoke(app, args).stdout)["data"]
    assert again["chosen"]["model"] == out["chosen"]["model"]
    assert len(stored_evals()) == len(stored)  # nothing met was evaluated twice
