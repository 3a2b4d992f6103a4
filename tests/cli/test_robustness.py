"""Issue 7's walk: every kind of bad input through the CLI ends in a one-line error, its documented exit
code, no traceback, and the results already stored are intact afterwards."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from vischoose import machine
from vischoose.cli import app
from vischoose.measure.protocol import Job
from vischoose.records import EvalResult, Profile
from vischoose.requests.profile import ProfileRequest
from vischoose.results.store import default_path, open_store

MODEL = "test_resnet.r160_in1k"


@pytest.fixture
def world(tmp_path, cached_model, monkeypatch):
    """A store holding results, a cached model, and a folder of good and bad inputs."""
    from PIL import Image

    cached_model(MODEL)
    with open_store() as db:
        db.add_profile(Profile(model="resnet50", tag="resnet50.a1_in1k", device="cpu", dtype="float32",
                               batch_size=8, input_size=224, machine=machine.fingerprint(),
                               latency_ms_p90=20.0, throughput_img_s=50.0))
        db.add_eval(EvalResult(model="resnet50", tag="resnet50.a1_in1k", dataset="/data", images=10,
                               top1=80.0, top5=95.0, machine=machine.fingerprint()))
    files = tmp_path / "inputs"
    files.mkdir()
    Image.new("RGB", (64, 48), "red").save(files / "ok.jpg")
    (files / "empty.jpg").write_bytes(b"")
    (files / "text.jpg").write_text("not a picture")
    (files / "trunc.jpg").write_bytes((files / "ok.jpg").read_bytes()[:200])
    (files / "nothing").mkdir()
    (files / "broken.toml").write_text("[constraints\nmax_memory_mb = 3")
    (files / "typo.toml").write_text("[constraints]\nmax_latency = 3\n")
    monkeypatch.chdir(files)
    return files


def stored() -> list[tuple]:
    db = sqlite3.connect(default_path())
    try:
        return db.execute("SELECT * FROM results ORDER BY id").fetchall()
    finally:
        db.close()


CASES = [
    # arguments
    (["recommend", "--budget-mb", "-5"], 2, "Error: --budget-mb must be greater than 0 (got -5)."),
    (["recommend", "--budget-mb", "0", "--target", "mobile"], 2, "Error: --budget-mb must be greater than 0"),
    (["recommend", "--budget-mb", "lots"], 2, "Usage: vischoose recommend"),
    (["recommend", "--target", "tablet"], 2, "Error: Unknown preset 'tablet'"),
    (["recommend", "--budget-mb", "5", "--target", "mobile"], 4, "Error: No model fits target 'mobile'; closest: vit_ti16"),
    (["recommend", "--top", "0"], 2, "Usage: vischoose recommend"),
    (["predict", "ok.jpg", "--model", MODEL, "--top-k", "0"], 2, "Usage: vischoose predict"),
    (["predict", "ok.jpg", "--model", MODEL, "--batch-size", "0"], 2, "Usage: vischoose predict"),
    (["predict", "ok.jpg", "--model", MODEL, "--device", "cuda"], 2, "Error: Device 'cuda' is not available"),
    (["predict", "ok.jpg", "--model", MODEL, "--device", "tpu"], 2, "Error: Unknown device 'tpu'"),
    (["predict", "ok.jpg", "--model", MODEL, "--dtype", "float64"], 2, "Error: Unknown dtype 'float64' (expected one of: float32, bfloat16, float16)."),
    (["profile", MODEL, "--batch-size", "0", "--no-save"], 2, None),
    (["profile", MODEL, "--threads", "0", "--no-save"], 2, None),
    (["profile", MODEL, "--device", "cuda", "--no-save"], 2, None),
    (["profile", MODEL, "--dtype", "int4", "--no-save"], 2, None),
    (["models", "--family", "cnn"], 2, "Error: Unknown family 'cnn' in --family (92 families, or 'all')."),
    (["pull", "resnet-50"], 2, "Error: Unknown model 'resnet-50'. Did you mean 'resnet50'"),
    (["pull", "hf-hub:../../etc/passwd"], 2, "Error: 'hf-hub:../../etc/passwd' is not a valid hub id"),
    # images
    (["predict", "missing.jpg", "--model", MODEL], 2, "Error: missing.jpg: no such file"),
    # checked before the model loads: not "weights not cached" (3), and never a download for nothing
    (["predict", "missing.jpg", "--model", "resnet50"], 2, "Error: missing.jpg: no such file"),
    (["predict", "missing.jpg", "nothing", "--model", "resnet50"], 2, "Error: None of the 2 inputs is an image: "
                                                                      "missing.jpg: no such file (and 1 more)."),
    (["predict", "nothing", "--model", MODEL], 2, "Error: nothing: folder holds no images"),
    (["predict", "empty.jpg", "--model", MODEL], 2, "Error: empty.jpg: the file is empty (0 bytes)"),
    (["predict", "text.jpg", "--model", MODEL], 2, "Error: text.jpg: not an image Pillow can read"),
    (["predict", "trunc.jpg", "--model", MODEL], 2, "Error: trunc.jpg: cannot be decoded"),
    (["evaluate", "nothing", "--model", MODEL], 2, "Error: Data set 'nothing' holds no images."),
    (["evaluate", "no-such-dir", "--model", MODEL], 2, "Error: Data set 'no-such-dir' does not exist."),
    # weights
    (["predict", "ok.jpg", "--model", "resnet50"], 3, "Error: resnet50: weights for timm/resnet50.a1_in1k are not in the cache"),
    (["pull", "vit_b16"], 3, "Error: vit_b16: weights for timm/vit_base_patch16_224.augreg2_in21k_ft_in1k are not in the cache"),
    (["predict", "ok.jpg", "--model", "local-dir:/nonexistent"], 2, "Error: Model folder '/nonexistent' does not exist"),
    # presets
    (["recommend", "--target", "broken.toml"], 2, "Error: broken.toml: not valid TOML"),
    (["recommend", "--target", "typo.toml"], 2, "Error: typo.toml [constraints]: unknown key 'max_latency'"),
    (["presets", "show", "nope.toml"], 2, "Error: Preset file 'nope.toml' does not exist."),
    # stored results
    (["results", "show", "999"], 2, "Error: No stored result with id 999."),
]


@pytest.mark.parametrize("args, code, first", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input_is_explained_and_nothing_stored_is_lost(world, runner, args, code, first):
    before = stored()
    result = runner.invoke(app, args)
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.splitlines()
    assert lines, "an error must say something on stderr"
    if first is not None:
        assert lines[0].startswith(first), lines
    else:
        assert lines[0].startswith(("Error: ", "Usage: ")), lines
    assert stored() == before


def test_good_images_are_still_classified_beside_bad_ones(world, runner):
    result = runner.invoke(app, ["predict", "empty.jpg", "ok.jpg", "text.jpg", "--model", MODEL, "--json"])
    assert result.exit_code == 2
    assert '"ok.jpg"' in result.stdout
    assert result.stderr.splitlines()[-1] == "Error: 2 of 3 images could not be classified."


def test_corrupt_database_is_reported_and_left_untouched(world, runner):
    path = default_path()
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    path.write_bytes(b"this is not sqlite" * 100)
    before = path.read_bytes()
    result = runner.invoke(app, ["recommend", "--target", "mobile"])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {path} is not a usable vischoose results database")
    assert path.read_bytes() == before


@pytest.mark.slow
def test_ctrl_c_during_profile_keeps_the_finished_models(isolated_home):
    """The second model is interrupted: the first model's rows are already in the store."""
    from tests.profhelpers import FAST, seed_peak
    from vischoose.measure import runner as profiling
    from vischoose.results.store import keep_profiles

    seed_peak()
    second = "test_vit.r160_in1k"

    def runner(cmd, env, on_line):
        job = Job.from_json(Path(cmd[-1]).read_text())
        if job.model == second:
            raise KeyboardInterrupt
        return profiling.run_child(cmd, env, on_line)

    with pytest.raises(KeyboardInterrupt):
        profiling.profile_models(ProfileRequest.build(models=(MODEL, second), batch_sizes=[2], **FAST), runner=runner,
                                 keep=keep_profiles)
    with open_store() as db:
        assert [(p.model, p.batch_size, p.ok) for p in db.profiles()] == [(MODEL, 2, True)]


def test_ctrl_c_exits_130_with_a_message(runner, monkeypatch):
    from vischoose.measure import runner as profiling

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(profiling, "profile_models", interrupted)
    result = runner.invoke(app, ["profile", MODEL, "--device", "cpu"])
    assert result.exit_code == 130
    assert result.stderr.splitlines()[-1] == "Interrupted: results finished so far are kept."
