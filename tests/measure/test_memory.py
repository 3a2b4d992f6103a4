"""Memory figures that belong to the model (issue 33): the memory mode's baseline is taken once the runtime's host
binding is loaded (Runtime.prepare_host), so a module the binding imports lazily is not the model's; ExecuTorch's
peak stays within what its own memory plan and file explain (recommend --memory-basis peak, which lists what was never
measured as not measured: tests/cli/test_cli_recommend.py and tests/unit/test_recommendation.py)."""

from __future__ import annotations

import sys
from typing import ClassVar

import pytest

from vischoose.measure import graph
from vischoose.measure.protocol import Job, new_result
from vischoose.requests.profile import ProfileRequest
from vischoose.runtimes import registry
from vischoose.runtimes.artifact import Artifact
from vischoose.runtimes.base import GraphRuntime

BIG_MIB = 200
BIG_MODULE = f"""
BLOCK = b"\\x01" * ({BIG_MIB} * 2**20)  # written, so resident: what a host binding's import costs (torch: ~700 MiB)
"""


class LazyRuntime(GraphRuntime):
    """A runtime whose session imports a large module the first time it runs, as ExecuTorch's pybindings import
    torch: its host binding names that module, so the memory mode imports it before the baseline."""

    name: ClassVar[str] = "lazyrt"
    title: ClassVar[str] = "Lazy runtime"
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    module: ClassVar[str] = "json"
    host_modules: ClassVar[tuple[str, ...]] = ("lazybig",)

    def session(self, artifact, threads, interleaved=False):
        import numpy as np

        def forward(batch):
            import lazybig  # noqa: F401  (the lazy import: free once the baseline has it)

            return np.zeros((len(batch), 10), np.float32)
        return forward


def memory_peak(monkeypatch, tmp_path, runtime: GraphRuntime) -> dict:
    """graph.memory in this process on a fake artifact, with a fresh copy of the big module to import."""
    (tmp_path / "lazybig.py").write_text(BIG_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lazybig", raising=False)
    monkeypatch.setitem(registry.RUNTIMES, runtime.name, runtime)
    artifact = Artifact(path=str(tmp_path / "model.bin"), runtime=runtime.name, precision="fp32", file_mb=0.0,
                        build_s=0.0, input_size=8)
    job = Job(request=ProfileRequest(runtime=runtime.name, device="cpu"), model="m", mode="memory", device="cpu",
              threads=1, batch_sizes=(1,), machine="m", home=str(tmp_path), result_path=str(tmp_path / "result.json"),
              artifact=artifact.to_dict())
    result = new_result()
    graph.memory(job, result)
    return result


def test_a_module_the_host_binding_imports_lazily_is_not_the_models(monkeypatch, tmp_path):
    result = memory_peak(monkeypatch, tmp_path, LazyRuntime())
    assert result["memory"]["1"]["peak_mb"] < BIG_MIB / 4  # the 200 MiB import went into the baseline
    assert result["baseline_includes"] == "a process with json, lazybig imported"


def test_without_the_host_binding_in_the_baseline_the_lazy_import_is_counted(monkeypatch, tmp_path):
    class Unprepared(LazyRuntime):  # what the memory mode did before: the runtime's module only
        name: ClassVar[str] = "unprepared"
        host_modules: ClassVar[tuple[str, ...]] = ()

    result = memory_peak(monkeypatch, tmp_path, Unprepared())
    assert result["memory"]["1"]["peak_mb"] > 0.9 * BIG_MIB  # the rule above can fail: here it would


def test_each_runtime_says_what_its_host_binding_holds_and_what_a_device_lacks():
    executorch = registry.get("executorch")
    assert executorch.host_only and "torch" in executorch.host_only
    assert "executorch.extension.pybindings.portable_lib" in executorch.host_modules
    assert registry.get("onnxruntime").host_only is None and registry.get("openvino").host_only is None
    assert registry.get("torch").baseline_text() == "a process with torch, timm imported"


def activations_mb(model: str, size: int) -> float:
    """Every activation of the eager model at batch 1 at once (the output of each leaf module), MiB: more than any
    plan keeps alive together."""
    import torch

    from vischoose.models.loading import load_model

    net, total = load_model(model, weights="random").model.eval(), [0]
    hooks = [m.register_forward_hook(lambda m, i, o: total.__setitem__(0, total[0] + o.numel() * o.element_size()))
             for m in net.modules() if not list(m.children())]
    with torch.no_grad():
        net(torch.randn(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    return total[0] / 2**20


@pytest.mark.slow
def test_executorch_peak_stays_within_its_memory_plan_and_file():
    pytest.importorskip("executorch")
    from vischoose.measure.runner import profile_models

    model = "test_resnet.r160_in1k"
    request = ProfileRequest.build(models=(model,), runtime="executorch", precision="fp32", threads=1,
                                   weights="random", time_budget_s=0.3, batch_sizes=[1])
    (run,) = profile_models(request)
    row = run.profile
    assert row.ok, row.error
    assert "torch, which the Python bindings import and a device does not have" in row.baseline_includes
    assert row.runtime_memory_note.startswith("ExecuTorch plan: ")
    # the program as read (its file), its constant data once more as XNNPACK packs it, the plan's buffers, and
    # XNNPACK's own intermediate tensors, which no plan holds: at most every activation of the model at once
    planned_and_constant = row.runtime_memory_mb
    bound = row.file_mb + planned_and_constant + activations_mb(model, row.input_size)
    assert 0 < row.peak_memory_mb < bound  # counting torch's import (~700 MiB), as before, broke it many times over


def test_a_built_file_takes_the_largest_batch_the_job_measures_and_no_more():
    """The bound a bound-planning runtime (ExecuTorch) builds for follows what is asked: a batch-1 profile builds a
    batch-1 program, -b 1,8 one for 1 to 8, the server search one for its largest dynamic batch."""
    from vischoose.measure.serving_runner import MAX_BATCH

    job = Job(request=ProfileRequest(runtime="executorch", device="cpu"), model="m", mode="build", device="cpu",
              threads=1, batch_sizes=(1,), machine="m", home="h")
    assert job.call_bound == 1
    assert job.but(batch_sizes=(8, 1)).call_bound == 8
    assert job.but(max_batch=MAX_BATCH).call_bound == MAX_BATCH
    assert Job.from_json(job.but(max_batch=4).to_json()).call_bound == 4  # it reaches the child
