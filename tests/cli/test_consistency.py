"""Every figure true in every view (#34): the outputs of profile (text, --json, --csv), export --json, evaluate --json
and results show / list / report, made once on the smallest timm model (test_resnet, random weights) across every
installed runtime, and each figure checked against how it was derived: source labels, precision, batch (N x batch c
where that is what ran), units, efficiency (a share of the peak, at most 1, or absent with a reason), a file's
declared input batches accepted by the file and said so on its export line, the verdict and the paired interval of
an evaluated file's drop.

Each check is a small function over parsed outputs returning the problems it found; each has a planted-fault test
that doctors an output and asserts the check catches it (no model, fast), so no check passes whatever happens. The
outputs are made once for the module, with the fewest commands that give every check its input: one profile per
runtime (torch, ONNX Runtime at int8, which builds its fp32 file too, the other runtimes at fp32), one export per
format (from the profile's builds in the session's graph cache: ExecuTorch's at --max-batch 2, the bound profile -b 2
built), one evaluation of a deployed int8 file and one of a .pte as written.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.profhelpers import seed_peak
from vischoose.records import FIELD_UNITS, FRACTIONS, Profile
from vischoose.runtimes import registry

TINY = "test_resnet.r160_in1k"
BATCH = "2"  # profile's only batch size: a bound-planning runtime builds for it, a batch-1 file runs it as 2 calls
FAST = ["--device", "cpu", "--threads", "1", "--time-budget", "0.3", "--weights", "random", "-b", BATCH]
PERCENTS = ("top1", "top5", "fp32_top1", "top1_low", "top1_high")
Problems = list[str]


# ---- the checks --------------------------------------------------------------------------------------------------

def check_units(row: dict[str, Any]) -> Problems:
    """Every stored number in the range of its unit: fractions 0-1, top-1s 0-100 %, sizes and times not negative."""
    found = [f"{k} = {row[k]} is not a fraction 0-1" for k in FRACTIONS if row.get(k) is not None
             and not 0.0 <= row[k] <= 1.0]
    found += [f"{k} = {row[k]} is not a percent 0-100" for k in PERCENTS if row.get(k) is not None
              and not 0.0 <= row[k] <= 100.0]
    found += [f"{k} = {row[k]} is negative ({FIELD_UNITS[k]})" for k in FIELD_UNITS
              if isinstance(row.get(k), (int, float)) and not isinstance(row.get(k), bool) and row[k] < 0
              and not k.startswith("drop_")]
    return found


def check_efficiency(row: dict[str, Any]) -> Problems:
    """A share of the machine's peak of the row's own dtype (at most 1), or blank with the reason said."""
    if row.get("error"):
        return []
    eff, why = row.get("efficiency"), row.get("efficiency_note")
    if eff is None:
        return [] if why else [f"{row['model']} {row['runtime']} {row['dtype']}: efficiency blank with no reason"]
    found = [f"efficiency {eff} above the peak"] if eff > 1.0 else []
    if row["dtype"] == "int8":
        found.append("an int8 row with an efficiency: no int8 peak is measured")
    return found


def check_batch(row: dict[str, Any]) -> Problems:
    """The images per call are recorded, and never more than the batch."""
    calls = row.get("call_batch")
    if calls is None:
        return [f"{row['model']} {row['runtime']}: no call_batch"]
    return [f"call_batch {calls} > batch_size {row['batch_size']}"] if calls > row["batch_size"] else []


def check_input_line(line: str, report: dict[str, Any]) -> Problems:
    """export's input line says the batches the file declares (report's input_batch), and its input type."""
    found = [] if f" {report['input_dtype']} [" in line else [f"input type {report['input_dtype']} not said: {line}"]
    low, high = report["input_batch"] or (None, None)
    if low is None:
        said = "does not declare its batch" in line
    elif high is None:
        said = f"N from {low} up in one call" in line
    elif low == high:
        said = f"[{low}, 3," in line and f"batch {low} only" in line
    else:
        said = f"N from {low} to {high} in one call" in line
    return found + ([] if said else [f"batch {low}-{high} not said: {line}"])


def check_batch_shown(text: str, rows: list[dict[str, Any]]) -> Problems:
    """A row whose file took fewer images per call than its batch says 'N (k x batch c)' in the text view."""
    found = []
    for row in rows:
        calls, batch = row.get("call_batch"), row["batch_size"]
        if calls and calls < batch and f"{batch} ({-(-batch // calls)} x batch {calls})" not in text:
            found.append(f"{row['model']} {row['runtime']}: measured as calls of {calls}, shown as batch {batch}")
    return found


def check_labels(row: dict[str, Any], weights: str) -> Problems:
    """Where the figures come from: the weights asked, and an int8 graph on random weights or inputs unverified."""
    found = [] if row.get("weights") == weights else [f"weights {row.get('weights')!r}, asked {weights!r}"]
    if registry.is_graph(row["runtime"]):
        if row.get("agreement_source") not in ("images", "random"):
            found.append(f"agreement_source {row.get('agreement_source')!r}")
        if row["dtype"] == "int8" and weights == "random" and row.get("variant_status") != "unverified":
            found.append(f"int8 on random weights is {row.get('variant_status')!r}, not unverified")
    return found


def check_file_precision(claimed: str, path: str, runtime: str) -> Problems:
    """The precision a view claims is what the file's own operators show."""
    found = registry.get(runtime).inspect(Path(path)).precision
    return [] if found == claimed else [f"{Path(path).name} claimed {claimed}, its operators show {found}"]


def check_declared_batch(report: dict[str, Any], path: str) -> Problems:
    """The file runs, in one call each, at the smallest and largest batch it declares (2 and 8 when unbounded)."""
    import numpy as np

    runtime = registry.get(report["runtime"])
    declared = report.get("input_batch")
    if not declared:
        return [f"{Path(path).name}: no declared batch"]
    low, high = declared
    # one call per batch, whatever the file's facts say (a session would split a batch above a known bound)
    artifact = replace(runtime.open_file(path), facts={"max_batch": 1 << 30, "batch": "dynamic"})
    forward = runtime.session(artifact, None)  # None: ExecuTorch's pool as this process already has it
    found = []
    for n in sorted({low, high if high is not None else 8, 2 if high is None else low}):
        try:
            out = forward(np.zeros((n, 3, report["input_size"], report["input_size"]), np.float32))
        except Exception as err:  # noqa: BLE001 - the check reports whatever the runtime raised
            found.append(f"{Path(path).name} declares batch {low}-{high} but refuses {n}: {str(err)[:80]}")
            continue
        if out.shape[0] != n:
            found.append(f"{Path(path).name}: batch {n} gave {out.shape[0]} rows")
    return found


def check_evaluation(data: dict[str, Any]) -> Problems:
    """A deployed file's evaluation: the one verdict, and the drop inside its paired 95 % interval."""
    if not registry.is_graph(data["runtime"]):
        return []
    found = []
    if data.get("variant_status") not in ("ok", "rejected", "unverified"):
        found.append(f"verdict {data.get('variant_status')!r}")
    elif data["variant_status"] != "ok" and not data.get("verdict_note"):
        found.append("a verdict other than ok without its reason")
    if data.get("fp32_top1") is None or data.get("drop_low") is None:
        return found + ["no drop against eager fp32 with its interval"]
    drop = data["fp32_top1"] - data["top1"]
    if not -100.0 <= data["drop_low"] <= drop <= data["drop_high"] <= 100.0:
        found.append(f"drop {drop:.2f} outside its interval {data['drop_low']:.2f} to {data['drop_high']:.2f}")
    return found


def check_published_once(markdown: str) -> Problems:
    """'Against published figures': each model's figure once, and FLOPs (counted on the eager model) never tied to a
    runtime's graph."""
    section = markdown.split("## Against published figures", 1)[-1]
    rows = [line.split("|")[1:3] for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    pairs = [(m.strip(), f.strip()) for m, f in rows if m.strip() != "model"]
    found = [f"{m}: {f!r} shown {pairs.count((m, f))} times" for m, f in dict.fromkeys(pairs)
             if pairs.count((m, f)) > 1]
    found += [f"FLOPs tied to a graph: {line[:80]}" for line in section.splitlines()
              if "GFLOPs" in line and "graph on" in line]
    return found


def check_report_rows(markdown: str, rows: list[dict[str, Any]]) -> Problems:
    """The report's results table shows each row's weights and verdict."""
    header = next((line for line in markdown.splitlines() if line.startswith("| id ") and "runtime" in line), "")
    cells = [c.strip() for c in header.split("|")]
    if "weights" not in cells or "verdict" not in cells:
        return ["the results table has no weights or verdict column"]
    w, v = cells.index("weights"), cells.index("verdict")
    lines = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")] for line in markdown.splitlines()
             if line.startswith("| ") and line.split("|")[1].strip().isdigit()}
    found = []
    for row in rows:
        shown = lines.get(str(row["id"]))
        if shown and (shown[w] != row["record"]["weights"] or shown[v] != (row["record"].get("variant_status") or "-")):
            found.append(f"result {row['id']}: weights/verdict shown as {shown[w]}/{shown[v]}")
    return found


def check_show_text(text: str, record: dict[str, Any]) -> Problems:
    """results show: every field with a unit where it has one, fractions at percent scale, and a published top-1
    never shown as the accuracy of a row it is not (an unverified int8 file)."""
    found = []
    cells = {line.split()[0]: line for line in text.splitlines()[2:] if line.strip()}
    for key in FRACTIONS:
        value = record.get(key)
        if value is not None and key in cells and f"{100 * value:,.2f}" not in cells[key]:
            found.append(f"{key} {value} not shown as a percent")
    for key, unit in FIELD_UNITS.items():
        if key in cells and record.get(key) is not None and key not in FRACTIONS and unit not in cells[key] \
                and key != "top1":
            found.append(f"{key} shown without its unit {unit!r}")
    if record.get("top1") is not None and "top1" in cells:
        published = f"{record['top1']:,.2f}"
        if not Profile.from_dict(record).published_top1_applies and published in cells["top1"]:
            found.append(f"top1 {published} shown for an {record['dtype']} row it does not stand for")
    return found


def check_csv_matches_json(text: str, rows: list[dict[str, Any]]) -> Problems:
    """The CSV view holds the JSON view's figures (the same rows, the same values)."""
    parsed = list(csv.DictReader(io.StringIO(text)))
    if len(parsed) != len(rows):
        return [f"{len(parsed)} CSV rows for {len(rows)} JSON rows"]
    found = []
    for got, row in zip(parsed, rows):
        for key in ("batch_size", "call_batch", "dtype", "efficiency", "throughput_img_s", "weights"):
            want = "" if row.get(key) is None else str(row[key])
            if got.get(key) != want:
                found.append(f"{key}: CSV {got.get(key)!r}, JSON {want!r}")
    return found


# ---- the outputs, made once ----------------------------------------------------------------------------------------

def _combos() -> list[tuple[str, str]]:
    """torch, ONNX Runtime at int8 (an int8 row; its fp32 file is built on the way), every other installed graph
    runtime at fp32."""
    graphs = [r.name for r in registry.graph_runtimes(installed_only=True)]
    return [(registry.TORCH, "fp32")] + [(name, "int8" if name == "onnxruntime" else "fp32") for name in graphs]


def _ok(result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["data"]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, shared_graph_folder) -> dict[str, Any]:
    """Every view this module checks, made once in a home of its own (the graphs in the session's graph cache)."""
    from huggingface_hub import constants
    from typer.testing import CliRunner

    from tests.inference.test_evaluation import synset_folder
    from vischoose.cli import app

    root, runner, made = tmp_path_factory.mktemp("consistency"), CliRunner(), {}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in (("VISCHOOSE_HOME", root / "home"), ("VISCHOOSE_MACHINE_DIR", root / "machine"),
                            ("VISCHOOSE_GRAPH_CACHE", shared_graph_folder), ("HF_HUB_CACHE", root / "hf"),
                            ("VISCHOOSE_MEASURE_LOCK", root / "measure.lock")):
            mp.setenv(name, str(value))
        (root / "hf").mkdir()
        mp.setattr(constants, "HF_HUB_CACHE", str(root / "hf"))
        seed_peak(threads=1)
        made["profiles"] = {combo: _profiled(runner, app, *combo) for combo in _combos()}
        made["exports"] = {r.name: _exported(runner, app, r, root)
                           for r in registry.graph_runtimes(installed_only=True)}
        data, weights = synset_folder(root / "tiny-data"), _seeded_weights(root / "tiny.safetensors")
        made["evaluate_int8"] = _ok(runner.invoke(app, ["evaluate", str(data), "-m", TINY, "--checkpoint", str(weights),
                                                        "--runtime", "onnxruntime", "--precision", "int8", "--json"]))
        et = made["exports"].get("executorch")
        if et:  # the file as written, evaluated against the very weights it was exported from
            made["evaluate_graph"] = _ok(runner.invoke(app, ["evaluate", str(data), "-m", TINY, "--graph", et[1],
                                                             "--checkpoint", str(weights), "--json"]))
        made["list"] = _ok(runner.invoke(app, ["results", "list", "--json"]))
        int8 = next(r for r in made["list"] if r["kind"] == "profile" and r["record"]["dtype"] == "int8")
        made["show_int8"] = (runner.invoke(app, ["results", "show", str(int8["id"])]).stdout, int8["record"])
        made["show_int8_json"] = _ok(runner.invoke(app, ["results", "show", str(int8["id"]), "--json"]))
        assert runner.invoke(app, ["results", "report", "--out", str(root / "r.md"), "--no-plot"]).exit_code == 0
        made["report"] = (root / "r.md").read_text()
    return made


def _profiled(runner, app, runtime: str, precision: str) -> dict[str, Any]:
    """The profile's --json; torch's and ONNX Runtime's rows with a cold start (a child per row: the others' rows
    check the same views without it)."""
    graph = [] if runtime == registry.TORCH else ["--runtime", runtime, "--precision", precision]
    cold = [] if runtime in (registry.TORCH, "onnxruntime") else ["--no-cold-start"]
    return _ok(runner.invoke(app, ["profile", TINY, *graph, *FAST, *cold, "--json"]))


def _exported(runner, app, runtime: Any, root: Path) -> tuple[dict[str, Any], str]:
    """The format's fp32 file, from the profile's build where the graph cache holds it (a bound-planning runtime at
    the profile's largest batch)."""
    out = root / f"tiny{runtime.suffix}"
    bound = ["--max-batch", BATCH] if runtime.batch_bound == "planned" else []
    return _ok(runner.invoke(app, ["export", TINY, "--format", runtime.format, "--weights", "random", "--out",
                                   str(out), *bound, "--json"])), str(out)


def _seeded_weights(path: Path) -> Path:
    """The random init profile and export build from (graphcache.RANDOM_SEED), as a checkpoint file."""
    import torch
    from safetensors.torch import save_file

    from vischoose.deploy import graphcache
    from vischoose.models.loading import load_model

    torch.manual_seed(graphcache.RANDOM_SEED)
    save_file({k: v.contiguous() for k, v in load_model(TINY, weights="random").model.state_dict().items()}, path)
    return path


def _runs(data: dict[str, Any]) -> list[Any]:
    """The ProfileRuns a profile --json printed, to render them as the text and CSV views do."""
    from vischoose.measure.runner import ProfileRun

    notes = tuple(data["notes"])
    return [ProfileRun(Profile.from_dict(row), notes, row["measurement"]) for row in data["profiles"]]


def _rendered(runs: list[Any], output: str, capsys) -> str:
    from vischoose.report.profile import show_profiles

    capsys.readouterr()
    show_profiles(runs, output)
    return capsys.readouterr().out


# ---- the views checked ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_profile_views_hold_true_figures_on_every_runtime(outputs, capsys):
    assert {r for r, _ in outputs["profiles"]} >= {registry.TORCH, "onnxruntime"}
    for (runtime, precision), data in outputs["profiles"].items():
        rows = data["profiles"]
        assert rows and all(r["runtime"] == runtime for r in rows)
        runs = _runs(data)
        problems = [p for row in rows for p in check_units(row) + check_efficiency(row) + check_batch(row)
                    + check_labels(row, "random")]
        problems += check_batch_shown(_rendered(runs, "table", capsys), rows)
        problems += check_csv_matches_json(_rendered(runs, "csv", capsys), rows)
        assert problems == [], f"{runtime} {precision}: {problems}"


@pytest.mark.slow
def test_each_export_declares_batches_its_file_takes_and_its_precision(outputs):
    from types import SimpleNamespace

    from vischoose.errors import named
    from vischoose.report.flags import flag_of
    from vischoose.report.profile import input_text

    for runtime, (report, path) in outputs["exports"].items():
        assert check_declared_batch(report, path) == [], runtime
        assert check_file_precision(report["variants"][-1]["precision"], path, runtime) == [], runtime
        fields = {k: report[k] for k in ("opset", "input_dtype", "input_size", "runtime")}
        line = named(input_text(SimpleNamespace(**fields, input_batch=report["input_batch"])), flag_of)
        assert check_input_line(line, report) == [], runtime
    bounds = {name: report["input_batch"] for name, (report, _) in outputs["exports"].items()}
    assert bounds["onnxruntime"] == [1, None]  # ONNX: a dynamic batch
    if "executorch" in bounds:  # the bound asked (--max-batch), not a constant
        assert bounds["executorch"] == [1, int(BATCH)]
    if "litert" in bounds:
        assert bounds["litert"] == [1, 1]


@pytest.mark.slow
def test_evaluations_give_the_verdict_and_the_paired_interval(outputs):
    data = outputs["evaluate_int8"]  # the user's weights file: judged as pretrained, on the agreement it reached
    assert check_evaluation(data) == [] and check_units(data) == []
    assert data["dtype"] == "int8" and data["weights"] != "random"
    graph = outputs.get("evaluate_graph")
    if graph:  # a .pte as written: its precision read from the program, random weights unverified
        assert check_evaluation(graph) == [] and graph["dtype"] == "float32"
        assert graph["variant_status"] == "ok"  # fp32 reproduces eager on any weights


@pytest.mark.slow
def test_stored_views_carry_units_labels_and_verdicts(outputs):
    text, record = outputs["show_int8"]
    assert check_show_text(text, record) == []
    shown = outputs["show_int8_json"]
    assert shown["units"]["agreement_top1"] == "fraction 0-1" and shown["units"]["top1"] == "%"
    for row in outputs["list"]:
        assert check_units(row["record"]) == [], row["id"]
    assert check_report_rows(outputs["report"], [r for r in outputs["list"] if r["kind"] == "profile"]) == []
    assert check_published_once(outputs["report"]) == []


# ---- planted faults: each check fails on a doctored output ---------------------------------------------------------

def _row(**changes: Any) -> dict[str, Any]:
    base = dict(model="m", runtime="onnxruntime", dtype="int8", batch_size=8, call_batch=8, weights="random",
                efficiency=None, efficiency_note="no int8 peak is measured", agreement_top1=0.98, top1=80.38,
                agreement_source="random", variant_status="unverified", error=None, file_mb=1.0)
    return {**base, **changes}


def test_check_units_catches_a_percent_in_a_fraction_field_and_a_negative_size():
    assert check_units(_row()) == []
    assert check_units(_row(agreement_top1=98.4)) == ["agreement_top1 = 98.4 is not a fraction 0-1"]
    assert check_units(_row(file_mb=-1.0)) == ["file_mb = -1.0 is negative (MiB)"]


def test_check_efficiency_catches_a_blank_without_reason_and_a_share_above_the_peak():
    assert check_efficiency(_row()) == []
    assert check_efficiency(_row(efficiency_note=None)) == ["m onnxruntime int8: efficiency blank with no reason"]
    assert check_efficiency(_row(dtype="float32", efficiency=1.04, efficiency_note=None)) == [
        "efficiency 1.04 above the peak"]
    assert check_efficiency(_row(efficiency=0.5)) == ["an int8 row with an efficiency: no int8 peak is measured"]


def test_check_batch_catches_a_missing_or_impossible_call_batch():
    assert check_batch(_row()) == []
    assert check_batch(_row(call_batch=None)) == ["m onnxruntime: no call_batch"]
    assert check_batch(_row(call_batch=16)) == ["call_batch 16 > batch_size 8"]


def test_check_input_line_catches_a_batch_or_type_the_file_does_not_declare():
    from types import SimpleNamespace

    from vischoose.report.profile import input_text

    for declared, runtime in (((1, None), "onnxruntime"), ((1, 4), "executorch"), ((1, 1), "executorch"),
                              ((1, 1), "litert"), (None, "openvino")):
        report = {"opset": None, "input_dtype": "float32", "input_size": 160, "runtime": runtime,
                  "input_batch": declared}
        assert check_input_line(input_text(SimpleNamespace(**report)), report) == [], (declared, runtime)
    report = {"opset": 17, "input_dtype": "float32", "input_size": 160, "runtime": "onnxruntime",
              "input_batch": (1, None)}
    line = input_text(SimpleNamespace(**report))
    wrong = line.replace("N from 1 up", "batch 1")
    assert check_input_line(wrong, report) == [f"batch 1-None not said: {wrong}"]
    int8 = {**report, "input_dtype": "int8"}  # a LiteRT int8 file takes int8: a float32 claim is caught
    assert check_input_line(line, int8) == [f"input type int8 not said: {line}"]


def test_check_batch_shown_catches_batch_1_calls_shown_as_batch_n():
    row = _row(call_batch=1)
    assert check_batch_shown("m  8 (8 x batch 1)  ...", [row]) == []
    assert check_batch_shown("m  8  ...", [row]) == ["m onnxruntime: measured as calls of 1, shown as batch 8"]


def test_check_labels_catches_wrong_weights_and_an_int8_called_ok_on_random_weights():
    assert check_labels(_row(), "random") == []
    assert check_labels(_row(weights="pretrained@abc"), "random") == ["weights 'pretrained@abc', asked 'random'"]
    assert check_labels(_row(variant_status="ok"), "random") == ["int8 on random weights is 'ok', not unverified"]


def test_check_evaluation_catches_a_missing_verdict_and_a_drop_outside_its_interval():
    good = dict(runtime="onnxruntime", variant_status="rejected", verdict_note="top-1 agreement 88.9% < 99.0%",
                fp32_top1=66.7, top1=55.6, drop_low=-10.0, drop_high=35.0)
    assert check_evaluation(good) == []
    assert check_evaluation({**good, "variant_status": None}) == ["verdict None"]
    assert check_evaluation({**good, "verdict_note": None}) == ["a verdict other than ok without its reason"]
    assert check_evaluation({**good, "drop_high": 5.0}) == ["drop 11.10 outside its interval -10.00 to 5.00"]


def test_check_published_once_catches_a_repeated_figure_and_flops_tied_to_a_graph():
    table = ("## Against published figures\n\n| model | figure | measured |\n|---|---|---|\n"
             "| resnet18 | GFLOPs per image (2 per MAC), counted on the eager model | 3.6 |\n")
    assert check_published_once(table) == []
    twice = table + "| resnet18 | GFLOPs per image (2 per MAC), counted on the eager model | 3.6 |\n"
    assert check_published_once(twice) == [
        "resnet18: 'GFLOPs per image (2 per MAC), counted on the eager model' shown 2 times"]
    tied = table.replace(" | 3.6 |", " | 3.6 | measured as the int8 graph on onnxruntime |")
    assert check_published_once(tied)[0].startswith("FLOPs tied to a graph: ")


def test_check_report_rows_catches_a_missing_column_and_a_wrong_label():
    rows = [{"id": 1, "record": {"weights": "random", "variant_status": "unverified"}}]
    table = "| id | model | weights | runtime | verdict |\n|---|---|---|---|---|\n| 1 | m | random | ort | unverified |\n"
    assert check_report_rows(table, rows) == []
    assert check_report_rows(table.replace("| unverified |", "| ok |"), rows) == [
        "result 1: weights/verdict shown as random/ok"]
    assert check_report_rows("| id | model | runtime |\n", rows) == ["the results table has no weights or verdict column"]


def test_check_show_text_catches_a_fraction_unscaled_and_a_published_top1_shown_as_the_rows():
    record = {**Profile(model="m", tag="m.t", device="cpu", dtype="int8", batch_size=8, input_size=160,
                        runtime="onnxruntime", variant_status="unverified", top1=80.38, agreement_top1=0.875,
                        file_mb=1.5).to_dict()}
    good = ("field  value  unit\n-----  -----  ----\nagreement_top1  87.50  %\nfile_mb  1.5000  MiB\n"
            "top1  n/a  % (published, pretrained fp32 model)\n")
    assert check_show_text(good, record) == []
    assert check_show_text(good.replace("87.50", "0.8750"), record) == ["agreement_top1 0.875 not shown as a percent"]
    assert check_show_text(good.replace("1.5000  MiB", "1.5000"), record) == ["file_mb shown without its unit 'MiB'"]
    assert check_show_text(good.replace("top1  n/a", "top1  80.38"), record) == [
        "top1 80.38 shown for an int8 row it does not stand for"]


def test_check_csv_matches_json_catches_a_changed_value():
    rows = [_row()]
    text = "batch_size,call_batch,dtype,efficiency,throughput_img_s,weights\n8,8,int8,,,random\n"
    assert check_csv_matches_json(text, rows) == []
    assert check_csv_matches_json(text.replace("8,8,int8", "8,1,int8"), rows) == ["call_batch: CSV '1', JSON '8'"]


@pytest.mark.slow
def test_check_declared_batch_and_precision_catch_a_claim_the_file_contradicts(outputs):
    et = outputs["exports"].get("executorch")
    if et is None:
        pytest.skip("ExecuTorch is not installed here")
    report, path = et
    too_many = {**report, "input_batch": [1, report["input_batch"][1] * 2]}  # more than its buffers are planned for
    assert check_declared_batch(too_many, path)[0].startswith(f"{Path(path).name} declares batch 1-")
    assert check_file_precision("int8", path, "executorch") == [f"{Path(path).name} claimed int8, its operators "
                                                                 "show fp32"]


def test_the_units_table_names_every_number_a_profile_or_evaluation_stores():
    from dataclasses import fields

    from vischoose.records import EvalResult

    numbers = [f.name for record in (Profile, EvalResult) for f in fields(record)
               if re.search(r"\b(int|float)\b", str(f.type)) and "str" not in str(f.type)]
    assert numbers and [name for name in numbers if name not in FIELD_UNITS] == []
