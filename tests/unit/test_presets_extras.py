"""The built-in presets with the runtime extras: mobile deploys ExecuTorch first, edge and server add OpenVINO; a
runtime that cannot run here is offered only with figures measured elsewhere; the output says which runtime won
and by how much. Hand-built figures, no torch."""

from __future__ import annotations

import json

import pytest

from tests.unit.test_recommendation import prof, run
from vischoose.cli import app
from vischoose.presets import Variant, load_preset
from vischoose.recommendation.ranking import preference_order
from vischoose.runtimes import registry


def graph(model, runtime, latency, file_mb, precision="fp32", status="ok"):
    """A stored `vischoose profile --runtime RUNTIME` row (CPU, batch 1), as measured here or imported."""
    return prof(model, latency=latency, dtype="float32" if precision == "fp32" else "int8", runtime=runtime,
                file_mb=file_mb, weights_mb=file_mb, agreement_top1=1.0, agreement_images=64,
                agreement_source="images", variant_status=status)


def test_mobile_deploys_executorch_first_where_it_is_installed(runner):
    pytest.importorskip("executorch")
    result = runner.invoke(app, ["recommend", "--budget-mb", "150", "--target", "mobile"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("Recommended for 'mobile': resnet50 (resnet50.a1_in1k) at executorch fp32\n")
    # the catalog's int8 sizes are ONNX Runtime files: said so where they stand in for another runtime's
    assert ("as executorch int8: 295.8 MiB > 150 MiB budget (computed, ONNX Runtime int8 file of this architecture, "
            "from the catalog, standing in for executorch int8 until measured)") in result.stdout


def test_the_answer_does_not_depend_on_the_extras_installed(runner, monkeypatch):
    """Nothing measured: the same variants with every extra installed and with none (a plain install)."""
    def answer() -> dict:
        result = runner.invoke(app, ["recommend", "--budget-mb", "150", "--target", "mobile", "--json"])
        assert result.exit_code == 0, result.stderr
        data = json.loads(result.stdout)["data"]
        return {c["model"]: (c["variant"]["runtime"], c["variant"]["precision"])
                for c in [data["chosen"], *data["runners_up"], *data["rejected"]]}

    everything = answer()
    for kind in registry.KINDS.values():  # the kind's class: the runtime's code inherits what it is
        if kind.is_graph and kind.extra:
            monkeypatch.setattr(type(kind), "module", f"{kind.module}_not_installed_here")
    assert answer() == everything and everything["resnet50"] == ("executorch", "fp32")


def test_a_runtime_missing_here_is_used_with_figures_measured_elsewhere(plain_install):
    # a phone's ExecuTorch rows, imported with `recommend --results`: this machine need not run ExecuTorch
    rows = [prof("resnet50", latency=60.0), graph("resnet50", "executorch", 45.0, 97.4)]
    rec = run("mobile", profiles=rows, max_memory_mb=150)
    assert rec.chosen.model == "resnet50" and rec.chosen.variant == Variant("executorch", "fp32")
    assert rec.chosen.figures["latency_ms"].source == "measured"


def test_the_output_says_which_runtime_won_and_by_how_much():
    rows = [prof("resnet50", latency=60.0), graph("resnet50", "executorch", 40.0, 97.4),
            graph("resnet50", "onnxruntime", 50.0, 97.5)]
    rec = run("mobile", profiles=rows, max_memory_mb=150)
    assert rec.chosen.variant == Variant("executorch", "fp32")
    assert rec.chosen.variant_note.endswith("executorch fp32 measured against the other runtimes here: 1.25x the "
                                            "latency on onnxruntime fp32")
    # a runtime that was not measured (its figures stand in from torch) is not compared
    alone = run("mobile", profiles=rows[:2], max_memory_mb=150)
    assert "against the other runtimes" not in alone.chosen.variant_note


@pytest.mark.parametrize("target", ["edge", "server"])
def test_edge_and_server_deploy_openvino_beside_onnxruntime(target, plain_install):
    order = preference_order(load_preset(target))
    assert Variant("openvino", "fp32") in order and Variant("openvino", "int8") in order
    assert order.index(Variant("onnxruntime", "fp32")) < order.index(Variant("openvino", "fp32"))
    # not installed (or not an x86 CPU): never a variant without figures from elsewhere, as for mobile's ExecuTorch
    rec = run(target)
    assert all(c.variant is None or c.variant.runtime != "openvino" for c in [rec.chosen, *rec.runners_up,
                                                                               *rec.rejected])
