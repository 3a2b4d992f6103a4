"""CLI: models, pull, presets, recommend; exit codes and one-line errors; no torch for --help."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vischoose.cli import app


def test_help_does_not_import_torch():
    code = ("import sys; from typer.testing import CliRunner; from vischoose.cli import app;"
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output;"
            "r = CliRunner().invoke(app, ['models']); assert r.exit_code == 0, r.output;"
            "r = CliRunner().invoke(app, ['recommend', '--budget-mb', '150', '--target', 'mobile']);"
            "assert r.exit_code == 0, r.output;"
            "print(sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("wider", [[], ["--zoo"]])
def test_recommend_on_the_catalog_imports_nothing_it_does_not_use(tmp_path, wider):
    """recommend with nothing measured reads the catalog (or the zoo) and the preset: the results store (none yet:
    nothing to read, and no database is made), the runtimes' code (their kinds answer the ranking), the graph build
    and check machinery, the profile tables and the estimates (nothing measured to estimate from) stay unimported, so
    it starts fast."""
    code = (f"import sys; sys.argv = ['vischoose', 'recommend', '--budget-mb', '150', '--target', 'mobile', *{wider!r}];"
            "from vischoose.cli import main\ntry:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "names = ('torch', 'timm', 'onnx', 'onnxruntime', 'huggingface_hub', 'numpy', 'statistics', 'tempfile',"
            "'vischoose.runtimes.ortbuild', 'vischoose.runtimes.verdict', 'vischoose.runtimes.sensitivity',"
            "'vischoose.runtimes.torch_eager', 'vischoose.runtimes.onnxruntime', 'vischoose.runtimes.executorch',"
            "'vischoose.runtimes.litert', 'vischoose.runtimes.openvino', 'vischoose.report.profile',"
            "'vischoose.recommendation.estimates', 'vischoose.recommendation.measuring', 'sqlite3');"
            "print(sorted(m for m in names if m in sys.modules), file=sys.stderr)")
    env = {**os.environ, "VISCHOOSE_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "[]"
    assert not (tmp_path / "results.db").exists()


def test_the_entry_point_leaves_the_last_collection_nothing_to_walk(tmp_path):
    """main freezes every object out of the cyclic collector as it returns (the process ends then): the
    interpreter's last collection at exit does not walk them all."""
    code = ("import gc, sys; sys.argv = ['vischoose', 'recommend', '--target', 'mobile', '--zoo'];"
            "from vischoose.cli import main\nbefore = gc.get_freeze_count()\ntry:\n    main()\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\nprint(before, gc.get_freeze_count(), gc.get_count(), file=sys.stderr)")
    env = {**os.environ, "VISCHOOSE_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    before, after, *young = proc.stderr.split()
    assert before == "0" and int(after) > 0 and " ".join(young) == "(0, 0, 0)"  # every generation emptied into it


def test_one_command_app_reads_as_the_whole_app(runner):
    from vischoose.cli import only

    names = [c.name for c in app.registered_commands] + [g.name for g in app.registered_groups]
    assert len(names) >= 8
    for args in (*([name, "--help"] for name in names), ["results", "show", "--help"], ["recommend", "--bogus"],
                 ["presets", "show", "no-such-preset"], ["results"]):
        slim, full = runner.invoke(only(args[:1]), args), runner.invoke(app, args)
        assert (slim.exit_code, slim.stdout, slim.stderr) == (full.exit_code, full.stdout, full.stderr), args
        assert only(args[:1]).registered_commands != app.registered_commands
    assert only([]) is None and only(["--help"]) is None and only(["no-such-command"]) is None


def test_python_dash_m_works():
    proc = subprocess.run([sys.executable, "-m", "vischoose", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "recommend" in proc.stdout


def test_models_table_lists_every_alias(runner):
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0
    for alias in ("resnet50", "vit_b16", "r50_vit_b16", "vit_l16", "r26_vit_s32", "r50_vit_l32"):
        assert f"\n{alias} " in result.stdout
    assert "fp32 MiB" in result.stdout and "GFLOPs = 2 x GMACs" in result.stdout


def test_models_json_and_family_filter(runner):
    result = runner.invoke(app, ["models", "--family", "hybrid", "--json"])
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert payload["schema_version"] == 1
    rows = {r["alias"]: r for r in payload["data"]}
    assert set(rows) == {"r50_vit_b16", "r26_vit_s32", "r50_vit_l32", "r_vit_ti16"}
    assert rows["r50_vit_b16"]["top1"] == 84.988 and rows["r50_vit_b16"]["top1_size"] == 384
    assert rows["r50_vit_b16"]["weights_mb_fp32"] == 377.5 and rows["r50_vit_b16"]["cached"] is False


def test_models_bad_family(runner):
    result = runner.invoke(app, ["models", "--family", "cnn"])
    assert result.exit_code == 2
    # a family beyond the catalog's three is looked up in timm's zoo, which has none of that name either
    assert result.stderr == ("Error: Unknown family 'cnn' in --family (92 families, or 'all').\n"
                             "Hint: vischoose models --zoo lists the families; vischoose/data/families.toml maps names "
                             "to them.\n")


def test_models_zoo_filters_and_sorts_the_zoo_apart_from_the_catalog(runner):
    result = runner.invoke(app, ["models", "--family", "mobilenetv4", "--max-params-m", "12", "--sort", "params",
                                 "--json"])
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    rows = payload["data"]
    assert payload["kind"] == "zoo" and rows
    assert all(r["family"] == "mobilenetv4" and r["params_m"] <= 12 for r in rows)
    assert [r["params_m"] for r in rows] == sorted(r["params_m"] for r in rows)
    assert len({r["arch"] for r in rows}) == len(rows)  # one row per architecture
    text = runner.invoke(app, ["models", "--zoo", "--min-top1", "88"]).stdout
    assert "timm's zoo (timm results @aa4b585, Apache-2.0), not the curated catalog (vischoose models)" in text
    assert runner.invoke(app, ["models"]).stdout.startswith("alias ")  # the default view stays the catalog


def test_models_shows_cached_size(runner, cached_model):
    repo = cached_model("resnet18.a1_in1k", seed=0, files={"config.json": b"{}", "model.safetensors": b"x" * 2**20})
    rows = {r["alias"]: r for r in json.loads(runner.invoke(app, ["models", "--json"]).stdout)["data"]}
    assert rows["resnet18"]["cached"] is True and rows["resnet18"]["cached_mb"] == 1.0
    assert rows["resnet18"]["commit"] == repo.commit


def test_pull_offline_not_cached(runner):
    result = runner.invoke(app, ["pull", "resnet50"])
    assert result.exit_code == 3
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Error: resnet50: weights for timm/resnet50.a1_in1k are not in the cache at ")
    assert lines[1].startswith("Hint: ")


def test_pull_cached_offline_reports_commit(runner, cached_model):
    repo = cached_model("test_resnet.r160_in1k")
    result = runner.invoke(app, ["pull", "test_resnet.r160_in1k", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["data"][0]["commit"] == repo.commit


def test_pull_unknown_model_suggests(runner):
    result = runner.invoke(app, ["pull", "resnet-50"])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == "Error: Unknown model 'resnet-50'. Did you mean 'resnet50', 'resnet152', 'resnet101'?"


def test_debug_shows_the_traceback(runner, monkeypatch):
    monkeypatch.setenv("VISCHOOSE_DEBUG", "1")
    result = runner.invoke(app, ["models", "--family", "cnn"])
    assert result.exit_code != 0 and type(result.exception).__name__ == "UsageError"


def test_presets_list_and_show(runner):
    result = runner.invoke(app, ["presets"])
    assert result.exit_code == 0
    for name in ("mobile", "cloud", "experimental", "edge", "server"):
        assert f"\n{name} " in result.stdout
    mobile = next(line for line in result.stdout.splitlines() if line.startswith("mobile "))
    assert "onnxruntime fp32, onnxruntime int8" in mobile  # what the target deploys, from its [deploy] table
    cloud = next(line for line in result.stdout.splitlines() if line.startswith("cloud "))
    assert "torch bf16, torch fp16, onnxruntime fp32, onnxruntime int8" in cloud
    shown = runner.invoke(app, ["presets", "show", "mobile"])
    assert shown.exit_code == 0 and 'prefer = ["resnet50"]' in shown.stdout and "[constraints]" in shown.stdout
    bad = runner.invoke(app, ["presets", "show", "tablet"])
    assert bad.exit_code == 2 and bad.stderr.startswith("Error: Unknown preset 'tablet' (known: ")
