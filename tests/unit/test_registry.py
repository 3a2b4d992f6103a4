"""The registry: each runtime's kind (what it is, no code) and its code, imported only when asked for."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vischoose.errors import UsageError
from vischoose.runtimes import kinds, registry


def test_each_runtimes_code_is_its_kind_with_the_same_facts():
    assert list(registry.KINDS) == [k.name for k in kinds.KINDS] == list(registry.names())
    for name, kind in registry.KINDS.items():
        code = registry.get(name)
        assert isinstance(code, type(kind)) and type(code) is not type(kind), name
        for fact in ("name", "title", "precisions", "devices", "module", "extra", "is_graph", "suffix", "format",
                     "host_modules", "host_only"):
            assert getattr(code, fact) == getattr(kind, fact), (name, fact)
        assert code.missing() == kind.missing(), name
        assert registry.title(name) == kind.title and registry.is_graph(name) == kind.is_graph
    assert [r.name for r in registry.graph_runtimes()] == [n for n, k in registry.KINDS.items() if k.is_graph]


def test_a_runtime_is_imported_only_when_its_code_is_asked_for():
    code = ("import sys; from vischoose.runtimes import registry;"
            "facts = [(k.title, k.missing(), k.precisions) for k in registry.KINDS.values()];"
            "registry.title('litert'); registry.is_graph('openvino'); 'executorch' in registry.RUNTIMES;"
            "before = sorted(m for m in sys.modules if m.startswith('vischoose.runtimes.') and m not in "
            "('vischoose.runtimes.base', 'vischoose.runtimes.kinds', 'vischoose.runtimes.registry'));"
            "registry.get('onnxruntime');"
            "after = sorted(m for m in sys.modules if m.startswith('vischoose.runtimes.'));"
            "print(before, 'vischoose.runtimes.onnxruntime' in after, 'vischoose.runtimes.openvino' in after)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] True False"


def test_an_unknown_runtime_names_the_known_ones():
    for ask in (registry.get, registry.kind):
        with pytest.raises(UsageError, match=r"Unknown runtime 'tflite' \(expected one of: torch, onnxruntime, "
                                             r"executorch, litert, openvino\)"):
            ask("tflite")
    assert registry.title("tflite") == "tflite" and not registry.is_graph("tflite") and "tflite" not in registry.RUNTIMES


def test_a_file_is_run_by_the_runtime_its_ending_names():
    assert registry.for_file("m.PTE").name == "executorch" and registry.for_file("dir/m.xml").name == "openvino"
    with pytest.raises(UsageError, match=r"No runtime runs 'm\.bin': vischoose knows \.onnx \(ONNX Runtime\), \.pte"):
        registry.for_file("m.bin")
