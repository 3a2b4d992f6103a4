"""evaluate: data set layouts, label mapping, exact counts, broken images, the store, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from vischoose import evaluate
from vischoose.cli import app
from vischoose.errors import DatasetError
from vischoose.inference import datasets
from vischoose.inference.prediction import class_labels, predict

MODEL = "test_resnet.r160_in1k"
SYNSETS = ("n01440764", "n07920052", "n02123159")  # tench, espresso, tiger cat: indices 0, 967, 282


def make_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i}.png"
        Image.new("RGB", (48 + i, 40), ((seed * 70 + i * 25) % 256, 100, (seed * 30) % 256)).save(path)
        paths.append(path)
    return paths


def synset_folder(root: Path, per_class: int = 2) -> Path:
    for seed, synset in enumerate(SYNSETS):
        make_images(root / synset, per_class, seed)
    return root


@pytest.fixture
def model(cached_model):
    cached_model(MODEL)
    return MODEL


def test_synset_folders_map_to_imagenet_indices_round_robin(tmp_path):
    data = synset_folder(tmp_path / "data")
    found = datasets.read_dataset(data, class_labels({}, 1000), 1000)
    assert [s.target for s in found.samples] == [0, 282, 967, 0, 282, 967]  # sorted folders, interleaved
    assert [s.target for s in found.limited(4).samples] == [0, 282, 967, 0]


def test_folders_named_by_class_index_or_class_name(tmp_path):
    for name in ("967", "tench", "tiger_cat"):  # espresso by index, 0 and 282 by name
        make_images(tmp_path / "data" / name, 1)
    found = datasets.read_dataset(tmp_path / "data", class_labels({}, 1000), 1000)
    assert sorted(s.target for s in found.samples) == [0, 282, 967]


def test_counts_are_exact(model, tmp_path):
    """Labels set to each image's own top-1 (then 6th) class give 100 % (then 0 %) top-1 and top-5."""
    images = make_images(tmp_path / "img", 5)
    ranked = predict(images, model, top_k=6).images
    for name, rank, expect in (("first.csv", 0, 100.0), ("sixth.csv", 5, 0.0)):
        rows = ["path,label"] + [f"img/{p.name},{r.predictions[rank].index}" for p, r in zip(images, ranked)]
        (tmp_path / name).write_text("\n".join(rows) + "\n")
        result = evaluate(tmp_path / name, model, batch_size=2).result
        assert (result.images, result.top1, result.top5) == (5, expect, expect)
    second = ["path,label"] + [f"img/{p.name},{r.predictions[1].class_id}" for p, r in zip(images, ranked)]
    (tmp_path / "second.csv").write_text("\n".join(second))
    result = evaluate(tmp_path / "second.csv", model).result
    assert (result.top1, result.top5) == (0.0, 100.0)


def test_cli_result_is_saved_and_json(model, runner, tmp_path):
    from vischoose.results.store import open_store

    data = synset_folder(tmp_path / "data")
    result = runner.invoke(app, ["evaluate", str(data), "--model", model, "--json", "--batch-size", "4"])
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)["data"]
    assert (out["images"], out["world_size"], out["batch_size"], out["input_size"]) == (6, 1, 4, 160)
    assert out["dataset"] == str(data) and out["failed"] == [] and out["images_per_s"] > 0
    assert result.stderr.startswith("Saved to the results store as #")
    with open_store() as store:
        (saved,) = store.evals(model=model)
    assert (saved.top1, saved.top5, saved.images, saved.tag) == (out["top1"], out["top5"], 6, MODEL)


def test_no_save_and_table(model, runner, tmp_path):
    from vischoose.results.store import open_store

    result = runner.invoke(app, ["evaluate", str(synset_folder(tmp_path / "d")), "-m", model, "--no-save",
                                 "--limit", "4"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0].split()[:4] == ["model", "weights", "images", "top-1"]
    assert result.stdout.splitlines()[2].split()[2] == "4"
    with open_store() as store:
        assert store.evals() == []


def test_workers_give_the_same_result(model, tmp_path):
    data = synset_folder(tmp_path / "data", per_class=3)
    alone = evaluate(data, model, batch_size=4).result
    pooled = evaluate(data, model, batch_size=4, workers=2)
    assert (pooled.result.images, pooled.result.top1, pooled.result.top5) == (alone.images, alone.top1, alone.top5)
    assert pooled.workers == 2


def test_labels_file_maps_folder_names(model, tmp_path):
    for seed, name in enumerate(("coffee", "fish", "cat")):
        make_images(tmp_path / "data" / name, 1, seed)
    (tmp_path / "labels.txt").write_text("# folder -> class\ncoffee,espresso\nfish\t0\ncat n02123159\n")
    got = datasets.read_dataset(tmp_path / "data", class_labels({}, 1000), 1000, tmp_path / "labels.txt")
    assert sorted(s.target for s in got.samples) == [0, 282, 967]
    (tmp_path / "labels.json").write_text(json.dumps({"coffee": 967, "fish": "tench", "cat": "tiger cat"}))
    got = datasets.read_dataset(tmp_path / "data", class_labels({}, 1000), 1000, tmp_path / "labels.json")
    assert sorted(s.target for s in got.samples) == [0, 282, 967]


def test_broken_image_in_the_data_set(model, runner, tmp_path):
    data = synset_folder(tmp_path / "data")
    (data / SYNSETS[0] / "broken.jpg").write_text("not a jpeg")
    result = runner.invoke(app, ["evaluate", str(data), "-m", model, "--json", "--no-save"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"Error: {data / SYNSETS[0] / 'broken.jpg'}: not an image Pillow can read (unknown format or not an "
        "image file)",
        "Error: 1 of 7 images could not be read; the accuracy covers the other 6."]
    assert json.loads(result.stdout)["data"]["images"] == 6


def _error(runner, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["evaluate", *args, "--no-save"])
    return result.exit_code, result.stderr.splitlines()[0]


def test_data_set_errors(model, runner, tmp_path):
    missing = tmp_path / "nowhere"
    assert _error(runner, str(missing), "-m", model) == (2, f"Error: Data set '{missing}' does not exist.")
    (tmp_path / "list.txt").write_text("x")
    assert _error(runner, str(tmp_path / "list.txt"), "-m", model) == \
        (2, f"Error: Data set '{tmp_path / 'list.txt'}' is neither a folder nor a .csv file.")
    (tmp_path / "empty").mkdir()
    assert _error(runner, str(tmp_path / "empty"), "-m", model) == \
        (2, f"Error: Data set '{tmp_path / 'empty'}' holds no images.")
    make_images(tmp_path / "loose", 1)
    assert _error(runner, str(tmp_path / "loose"), "-m", model) == \
        (2, f"Error: Data set '{tmp_path / 'loose'}' holds images but no class sub-folders.")
    make_images(tmp_path / "named" / "cats", 1)
    assert _error(runner, str(tmp_path / "named"), "-m", model) == \
        (2, f"Error: Folder 'cats' in {tmp_path / 'named'} is not a class of this model (expected ImageNet "
            "synset folder names such as n01440764, class indices or class names).")
    make_images(tmp_path / "far" / "1000", 1)
    assert _error(runner, str(tmp_path / "far"), "-m", model) == \
        (2, f"Error: Folder '1000' in {tmp_path / 'far'}: class index 1000 is outside 0..999.")
    make_images(tmp_path / "birds" / "crane", 1)
    assert _error(runner, str(tmp_path / "birds"), "-m", model)[1].startswith(
        f"Error: Folder 'crane' in {tmp_path / 'birds'}: class name 'crane' is ambiguous: 134 (n02012849), ")


def test_label_errors(model, runner, tmp_path):
    make_images(tmp_path / "img", 1)
    cases = {
        "ambiguous.csv": ("img/0.png,crane\n", "ambiguous.csv:1: class name 'crane' is ambiguous: 134 (n02012849), "
                          "517 (n03126707)."),
        "outside.csv": ("img/0.png,1000\n", "outside.csv:1: class index 1000 is outside 0..999."),
        "unknown.csv": ("img/0.png,unicorn\n", "unknown.csv:1: 'unicorn' is not a class of this model (not an "
                        "index, id or class name)."),
        "short.csv": ("path,label\nimg/0.png\n", "short.csv:2: expected 'path,label' but found 'img/0.png'."),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        assert _error(runner, str(tmp_path / name), "-m", model) == (2, f"Error: {tmp_path}/{message}")
    (tmp_path / "bad_labels.txt").write_text("fish\n")
    make_images(tmp_path / "d" / "fish", 1)
    assert _error(runner, str(tmp_path / "d"), "-m", model, "--labels", str(tmp_path / "bad_labels.txt")) == \
        (2, f"Error: {tmp_path / 'bad_labels.txt'}:1: expected 'name,class' but found 'fish'.")


def test_no_readable_image(model, runner, tmp_path):
    (tmp_path / "d" / SYNSETS[0]).mkdir(parents=True)
    (tmp_path / "d" / SYNSETS[0] / "a.png").write_bytes(b"")
    assert _error(runner, str(tmp_path / "d"), "-m", model) == \
        (2, f"Error: Data set '{tmp_path / 'd'}': no image could be read, so there is nothing to measure.")


def test_python_api_evaluate(model, tmp_path):
    import vischoose

    outcome = vischoose.evaluate(synset_folder(tmp_path / "d"), model, limit=3)
    assert outcome.is_main and outcome.result.images == 3 and outcome.failed == ()
    with pytest.raises(DatasetError):
        vischoose.evaluate(tmp_path / "missing", model)


def test_progress_bar_draws_on_a_terminal_only():
    import io

    from vischoose.report.tables import ProgressBar

    bar = ProgressBar("evaluating", width=10)
    bar.stream, bar.enabled = io.StringIO(), True
    bar(0, 4)
    bar(2, 4)
    bar.close()
    text = bar.stream.getvalue()
    assert "\revaluating [#####.....] 2/4 " in text and text.endswith(" img/s\n")
    quiet = ProgressBar("evaluating")  # stderr under pytest is no terminal
    quiet(1, 2)
    quiet.close()
    assert not quiet.drawn
