"""vischoose results ...: list, show, export/import round trips, remove/clear, plot, report, and store failures."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path

import pytest

from tests.unit.test_store import make_eval, make_profile
from vischoose.cli import app
from vischoose.results import store


@pytest.fixture
def filled(isolated_home) -> list[int]:
    """A store with three profiles from two machines and one evaluation."""
    with store.open_store() as db:
        ids = db.add_profiles([make_profile("resnet50"), make_profile("vit_b16", device="cuda:0", top1=85.11),
                               make_profile("resnet50", machine="bbbbbbbbbbbb", batch_size=64)])
        ids.append(db.add_eval(make_eval()))
    return ids


def stored() -> list:
    with store.open_store() as db:
        return db.results()


def test_list_table_and_filters(runner, filled):
    result = runner.invoke(app, ["results", "list"])
    assert result.exit_code == 0, result.stderr
    assert "latency p50 ms" in result.stdout and "/data/val" in result.stdout
    result = runner.invoke(app, ["results", "list", "--device", "cuda", "--json"])
    doc = json.loads(result.stdout)
    assert doc["schema_version"] == 1 and doc["kind"] == "results"
    assert [d["record"]["model"] for d in doc["data"]] == ["vit_b16"]
    result = runner.invoke(app, ["results", "list", "--machine", "bbb", "--model", "resnet50", "--json"])
    assert [d["id"] for d in json.loads(result.stdout)["data"]] == [3]


def test_list_empty(runner):
    result = runner.invoke(app, ["results", "list"])
    assert result.exit_code == 0
    assert result.stderr == "No stored results match.\n"


def test_show_and_show_missing(runner, filled):
    result = runner.invoke(app, ["results", "show", "1"])
    assert result.exit_code == 0
    assert "latency_ms_p50" in result.stdout and "33.1250" in result.stdout
    doc = json.loads(runner.invoke(app, ["results", "show", "4", "--json"]).stdout)
    assert doc["data"]["kind"] == "eval" and doc["data"]["record"]["top5"] == 94.0
    result = runner.invoke(app, ["results", "show", "99"])
    assert result.exit_code == 2
    assert result.stderr == "Error: No stored result with id 99.\nHint: vischoose results list shows the ids.\n"


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_export_import_round_trips_every_field(runner, filled, tmp_path, monkeypatch, fmt):
    before = [(r.kind, r.record) for r in stored()]
    out = tmp_path / f"export.{fmt}"
    result = runner.invoke(app, ["results", "export", "--format", fmt, "--out", str(out)])
    assert result.exit_code == 0 and result.stderr == f"Wrote 4 results to {out}.\n"
    monkeypatch.setenv("VISCHOOSE_HOME", str(tmp_path / "fresh-home"))
    result = runner.invoke(app, ["results", "import", str(out)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"Imported 4 results from {out}; 0 were already stored.\n"
    after = stored()
    assert [(r.kind, r.record) for r in after] == before
    assert {r.imported_from for r in after} == {out.name}
    assert sorted({r.record.machine for r in after}) == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
    again = runner.invoke(app, ["results", "import", str(out), "--json"])
    assert json.loads(again.stdout)["data"] == {"file": str(out), "added": 0, "already_stored": 4}
    assert len(stored()) == 4


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_accuracy_aware_results_round_trip_with_their_float_layers(runner, isolated_home, tmp_path, monkeypatch,
                                                                    fmt):
    """The layers accuracy-aware int8 kept in float (none, or named ones) come back as the same list, so the record,
    its content id and what recommend --results makes of it are the same on the other machine."""
    aware = {"runtime": "onnxruntime", "dtype": "int8", "fp32_top1": 80.0, "max_accuracy_drop": 1.0,
             "accuracy_met": True, "quantizable_layers": 52, "choice_drop_pts": 0.5, "file_mb": 5.1}
    records = [make_eval(reverted_layers=[], **aware), make_eval("vit_b16", reverted_layers=["blocks.0.attn.qkv",
                                                                                             "head"], **aware)]
    with store.open_store() as db:
        for record in records:
            db.add_eval(record)
    out = tmp_path / f"export.{fmt}"
    assert runner.invoke(app, ["results", "export", "--format", fmt, "--out", str(out)]).exit_code == 0
    monkeypatch.setenv("VISCHOOSE_HOME", str(tmp_path / "fresh-home"))
    assert runner.invoke(app, ["results", "import", str(out)]).exit_code == 0
    assert [r.record for r in stored()] == records
    assert json.loads(runner.invoke(app, ["results", "import", str(out), "--json"]).stdout)["data"]["added"] == 0


def test_export_to_stdout_json_and_markdown(runner, filled):
    doc = json.loads(runner.invoke(app, ["results", "export"]).stdout)
    assert doc["kind"] == "results" and len(doc["data"]) == 4
    md = runner.invoke(app, ["results", "export", "--format", "markdown", "--model", "vit_b16"]).stdout
    assert md.startswith("| id ") and "vit_b16" in md and "resnet50" not in md


def test_export_to_a_missing_folder(runner, filled, tmp_path):
    out = tmp_path / "no" / "such" / "file.json"
    result = runner.invoke(app, ["results", "export", "--out", str(out)])
    assert result.exit_code == 2
    assert result.stderr == f"Error: Cannot write {out}: No such file or directory.\n"


@pytest.mark.parametrize("name, content, message", [
    ("broken.json", "{not json", "{path} is not a vischoose results export: invalid JSON at line 1 column 2."),
    ("other.json", '{"kind": "models", "data": []}', "{path} is not a vischoose results export: "
                                                     "its kind is 'models', not 'results'."),
    ("newer.json", '{"kind": "results", "schema_version": 9, "data": []}',
     "{path} is not a vischoose results export: schema_version 9 is newer than this vischoose reads (1)."),
    ("bad.json", '[{"kind": "profile", "record": {"model": "m"}}]', "{path} is not a vischoose results export: "
     "item 0: Profile.__init__() missing 5 required positional arguments: 'tag', 'device', 'dtype', "
     "'batch_size', and 'input_size'."),
    ("table.csv", "a,b\n1,2\n", "{path} is not a vischoose results export: neither JSON nor CSV with a 'kind' "
                                "column."),
    ("bad.csv", "kind,model\nweird,m\n", "{path} is not a vischoose results export: line 2 has kind 'weird' "
                                          "(expected one of: profile, eval)."),
    ("report.md", "# hi", "{path}: Markdown exports are for reading and cannot be imported."),
])
def test_import_rejects_files_that_are_not_exports(runner, filled, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    result = runner.invoke(app, ["results", "import", str(path)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"Error: {message.format(path=path)}",
                                          "Hint: Write one on the other machine with: vischoose results export "
                                          "--format json --out results.json"]
    assert len(stored()) == 4


def test_import_missing_file(runner, tmp_path):
    result = runner.invoke(app, ["results", "import", str(tmp_path / "nope.json")])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: Cannot read {tmp_path / 'nope.json'}: No such file or directory.\n")


def test_remove_asks_and_keeps_rows_when_declined(runner, filled):
    result = runner.invoke(app, ["results", "remove", "1", "2"], input="n\n")
    assert result.exit_code == 1
    assert result.stderr.endswith("Error: Nothing was removed: not confirmed.\n"
                                  "Hint: Pass --yes to skip the question.\n")
    assert "Remove 2 stored results (id 1, 2)? [y/N]" in result.stderr
    assert len(stored()) == 4
    result = runner.invoke(app, ["results", "remove", "1", "2"])  # no terminal: no answer means no
    assert result.exit_code == 1 and len(stored()) == 4
    result = runner.invoke(app, ["results", "remove", "1", "2"], input="y\n")
    assert result.exit_code == 0 and result.stderr.endswith("Removed 2 results.\n")
    assert [r.id for r in stored()] == [3, 4]


def test_remove_unknown_id_removes_nothing(runner, filled):
    result = runner.invoke(app, ["results", "remove", "3", "42", "--yes"])
    assert result.exit_code == 2
    assert result.stderr == ("Error: No stored result with id 42; nothing was removed.\n"
                             "Hint: vischoose results list shows the ids.\n")
    assert len(stored()) == 4


def test_clear(runner, filled):
    assert runner.invoke(app, ["results", "clear"], input="n\n").exit_code == 1
    assert len(stored()) == 4
    result = runner.invoke(app, ["results", "clear", "--yes"])
    assert result.exit_code == 0 and result.stderr == "Removed 4 results.\n"
    assert stored() == []


# -- the store's failures, through the CLI: exit code, exact message, stored rows intact ------------------

def db_path(home: Path) -> Path:
    return home / "results.db"


def test_cli_corrupt_database(runner, isolated_home):
    path = db_path(isolated_home)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00garbage" * 512)
    result = runner.invoke(app, ["results", "list"])
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {path} is not a usable vischoose results database (file is not a database); "
                             "it was left untouched.\n"
                             f"Hint: Move it aside (mv '{path}' '{path}.bak') and run again to start a new "
                             "database, or set VISCHOOSE_HOME to another folder.\n")
    assert path.read_bytes() == b"\x00garbage" * 512


def test_cli_foreign_database(runner, isolated_home):
    path = db_path(isolated_home)
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE emails (subject TEXT)")
    conn.execute("INSERT INTO emails VALUES ('hi')")
    conn.commit()
    conn.close()
    result = runner.invoke(app, ["results", "clear", "--yes"])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (f"Error: {path} is an SQLite database of another program, not a "
                                             "vischoose results database; it was left untouched.")
    assert sqlite3.connect(path).execute("SELECT subject FROM emails").fetchall() == [("hi",)]


def test_cli_newer_schema(runner, filled, isolated_home):
    conn = sqlite3.connect(db_path(isolated_home))
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    result = runner.invoke(app, ["results", "list"])
    assert result.exit_code == 1
    assert result.stderr == (f"Error: The results database {db_path(isolated_home)} was written by a newer "
                             "vischoose (schema 2; this version reads up to 1).\n"
                             "Hint: Upgrade vischoose (pip install -U vischoose), or set VISCHOOSE_HOME to "
                             "another folder to keep separate results.\n")
    conn = sqlite3.connect(db_path(isolated_home))
    assert conn.execute("SELECT count(*) FROM results").fetchone()[0] == 4


def test_cli_locked_database(runner, filled, isolated_home, monkeypatch, tmp_path):
    monkeypatch.setenv("VISCHOOSE_DB_TIMEOUT_S", "0.3")
    export = tmp_path / "one.json"
    export.write_text(json.dumps([{"kind": "profile", "record": make_profile(batch_size=99).to_dict()}]))
    holder = sqlite3.connect(db_path(isolated_home), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = runner.invoke(app, ["results", "import", str(export)])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 1
    assert result.stderr == (f"Error: The results database {db_path(isolated_home)} is locked by another process "
                             "(waited 0.3 s).\nHint: Let the other vischoose command finish and try again, or set "
                             "VISCHOOSE_DB_TIMEOUT_S to wait longer.\n")
    assert len(stored()) == 4


@pytest.fixture
def read_only(isolated_home, monkeypatch):
    """Make the store read-only: file permissions, plus a read-only open where root ignores them."""
    path = db_path(isolated_home)
    path.chmod(0o444)
    if os.geteuid() == 0:  # root writes through permission bits; open the file read-only instead
        real = store._connect

        def connect_read_only(p: Path, timeout_s: float) -> sqlite3.Connection:
            db = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=timeout_s, isolation_level=None)
            db.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
            return db if p == path else real(p, timeout_s)

        monkeypatch.setattr(store, "_connect", connect_read_only)
    yield path
    path.chmod(0o644)


def test_cli_read_only_database(runner, filled, read_only, tmp_path):
    listing = runner.invoke(app, ["results", "list", "--json"])
    assert listing.exit_code == 0 and len(json.loads(listing.stdout)["data"]) == 4  # reading still works
    result = runner.invoke(app, ["results", "remove", "1", "--yes"])
    assert result.exit_code == 1
    assert result.stderr == (f"Error: The results database {read_only} is read-only (attempt to write a readonly "
                             "database); nothing was saved.\nHint: Make the file and its folder writable, or set "
                             "VISCHOOSE_HOME to a writable folder.\n")
    assert len(json.loads(runner.invoke(app, ["results", "list", "--json"]).stdout)["data"]) == 4


def test_cli_disk_full_while_importing(runner, filled, isolated_home, monkeypatch, tmp_path):
    """SQLite's max_page_count makes the disk 'full' at the database's current size."""
    real = store._connect

    def connect_full(p: Path, timeout_s: float) -> sqlite3.Connection:
        db = real(p, timeout_s)
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages}")
        return db

    export = tmp_path / "many.json"
    records = [{"kind": "profile", "record": make_profile(f"m{i}", error="x" * 2000).to_dict()} for i in range(50)]
    export.write_text(json.dumps(records))
    monkeypatch.setattr(store, "_connect", connect_full)
    result = runner.invoke(app, ["results", "import", str(export)])
    assert result.exit_code == 1
    assert result.stderr == (f"Error: Could not write to the results database {db_path(isolated_home)}: database "
                             "or disk is full. Nothing from this write was saved; results stored before are intact.\n"
                             "Hint: Free some disk space, or set VISCHOOSE_HOME to a folder on another disk.\n")
    monkeypatch.setattr(store, "_connect", real)
    assert [r.id for r in stored()] == filled


def test_cli_bad_timeout_variable(runner, monkeypatch):
    monkeypatch.setenv("VISCHOOSE_DB_TIMEOUT_S", "-1")
    result = runner.invoke(app, ["results", "list"])
    assert result.exit_code == 2
    assert result.stderr == "Error: VISCHOOSE_DB_TIMEOUT_S='-1' is not a number of seconds >= 0.\n"


# -- plot and report ------------------------------------------------------------------------------------

def svg_texts(runner, out, *args) -> list[str]:
    """The texts a `results plot` SVG draws: matplotlib writes each one as a comment beside its glyphs."""
    result = runner.invoke(app, ["results", "plot", "--out", str(out), *args])
    assert result.exit_code == 0, result.stderr
    assert result.stderr == f"Wrote {out}.\n"
    return re.findall(r"<!-- (.*?) -->", out.read_text())


def point_labels(texts: list[str]) -> list[str]:
    return sorted(t for t in texts if t.startswith(("resnet50", "vit_b16")))


def test_plot_command_draws_what_the_options_ask(runner, filled, tmp_path):
    plain = svg_texts(runner, tmp_path / "plain.svg")
    assert "Throughput, img/s (log scale)" in plain and "ImageNet-1k top-1, % (published, pretrained fp32)" in plain
    assert point_labels(plain) == ["resnet50 (@aaaaaaaaaaaa, cpu, b8)", "resnet50 (@bbbbbbbbbbbb, cpu, b64)",
                                   "vit_b16 (@aaaaaaaaaaaa, cuda:0, b8)"]
    # --machine keeps one machine's two profiles, so its name moves from the labels into the conditions
    one = svg_texts(runner, tmp_path / "one.svg", "--machine", "aaaa")
    assert point_labels(one) == ["resnet50 (cpu)", "vit_b16 (cuda:0)"]
    assert any(t.startswith("machine aaaaaaaaaaaa, ") for t in one)
    latency = svg_texts(runner, tmp_path / "latency.svg", "--x", "latency")
    assert "Latency p50, ms per image at batch 1 (log scale)" in latency and "Throughput, img/s (log scale)" not in latency
    assert "(better: up, left)" in latency and "(better: up, right)" in plain
    measured = svg_texts(runner, tmp_path / "measured.svg", "--measured-top1")
    assert "ImageNet-1k top-1, % (measured*, or published for pretrained fp32)" in measured
    assert point_labels(measured) == ["resnet50* (@aaaaaaaaaaaa, cpu, b8)", "resnet50* (@bbbbbbbbbbbb, cpu, b64)",
                                      "vit_b16 (@aaaaaaaaaaaa, cuda:0, b8)"]
    png = tmp_path / "pareto.png"
    assert runner.invoke(app, ["results", "plot", "--out", str(png)]).exit_code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_command_errors(runner, filled, tmp_path):
    result = runner.invoke(app, ["results", "plot", "--out", str(tmp_path / "p.jpg")])
    assert result.exit_code == 2
    assert result.stderr == "Error: Cannot write a plot as '.jpg': use a .png or .svg file name.\n"
    result = runner.invoke(app, ["results", "plot", "--out", str(tmp_path / "p.png"), "--model", "nothing"])
    assert result.exit_code == 2
    assert result.stderr == ("Error: Nothing to plot: none of the 0 results has both a top-1 and a throughput "
                             "figure.\nHint: Measure some models first, e.g. vischoose profile resnet50 vit_b16.\n")


def test_report_command(runner, isolated_home, tmp_path):
    with store.open_store() as db:
        db.add_profiles([make_profile("resnet50", latency_ms_p50=33.0, throughput_img_s=40.0),
                         make_profile("vit_b16", tag="vit_base_patch16_224.augreg2_in21k_ft_in1k",
                                      latency_ms_p50=73.0, throughput_img_s=16.0, top1=85.11)])
    out = tmp_path / "report.md"
    result = runner.invoke(app, ["results", "report", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert result.stderr == f"Wrote {out} and report-pareto.png.\n"
    text = out.read_text()
    for heading in ("## This machine", "## Conditions", "## Results", "## Against published figures"):
        assert heading in text
    assert "![top-1 against throughput, Pareto front](report-pareto.png)" in text
    assert "- resnet50 : vit_b16 latency ratio measured 0.45 vs published 0.48" in text
    assert (tmp_path / "report-pareto.png").stat().st_size > 10_000
    result = runner.invoke(app, ["results", "report", "--out", str(tmp_path / "bare.md"), "--no-plot"])
    assert result.exit_code == 0 and "![" not in (tmp_path / "bare.md").read_text()


def test_help_imports_neither_matplotlib_nor_torch():
    import subprocess
    import sys

    code = ("import sys; from vischoose.cli import app; from typer.testing import CliRunner; "
            "CliRunner().invoke(app, ['results', '--help']); "
            "print(sorted(m for m in ('torch', 'timm', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- what the rest of the machine took while a row was timed (issue 32) ---------------------------------------------

def test_what_others_took_is_on_every_stored_row_and_in_the_report(runner, tmp_path):
    from dataclasses import replace

    from vischoose.records import Profile

    busy = Profile(model="resnet50", tag="resnet50.a1_in1k", device="cpu", dtype="float32", batch_size=1,
                   input_size=224, latency_ms_p50=40.0, throughput_img_s=25.0, others_cpu_cores=0.9,
                   contended="img/s: others took 0.90 cores (limit 0.10)")
    quiet = replace(busy, model="resnet18", tag="resnet18.a1_in1k", others_cpu_cores=0.02, contended=None)
    with store.open_store() as db:
        db.add_profiles([busy, quiet])
    listed = runner.invoke(app, ["results", "list"])
    assert listed.exit_code == 0, listed.stderr
    assert " 0.90! " in listed.stdout and " 0.02 " in listed.stdout
    report = tmp_path / "report.md"
    assert runner.invoke(app, ["results", "report", "--out", str(report), "--no-plot"]).exit_code == 0
    text = report.read_text()
    assert ("- result 1 (resnet50, batch 1): measured while the machine was not free or self-contradicting: contended "
            "(img/s: others took 0.90 cores (limit 0.10))") in text
