"""What each runtime is, as the ranking, the presets and the tables read it: its name, title, precisions, devices,
file format, the extra that installs it, what its host binding loads, and whether it can run here. Nothing here builds
or runs a file: that code lives in the runtime's own module (runtimes.onnxruntime, ...), a subclass of its kind here,
imported by the registry only when a file is built, run or inspected (`recommend` on stored figures never needs it).
"""

from __future__ import annotations

from typing import ClassVar

from vischoose.runtimes.base import GraphRuntime, Runtime, installed


class TorchKind(Runtime):
    """The eager PyTorch module, the reference every graph is checked against."""

    name: ClassVar[str] = "torch"
    code: ClassVar[str] = "torch_eager.TorchEager"  # its code: module.Class in vischoose.runtimes
    title: ClassVar[str] = "PyTorch eager"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "bf16", "fp16")
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    module: ClassVar[str] = "torch"
    host_modules: ClassVar[tuple[str, ...]] = ("timm",)  # the model's code: a process running a timm model has it


class OnnxRuntimeKind(GraphRuntime):
    """ONNX Runtime on the CPU."""

    name: ClassVar[str] = "onnxruntime"
    code: ClassVar[str] = "onnxruntime.OnnxRuntime"  # its code: module.Class in vischoose.runtimes
    title: ClassVar[str] = "ONNX Runtime"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "int8")
    runs_on: ClassVar[str] = "CPU execution provider"
    module: ClassVar[str] = "onnxruntime"
    suffix: ClassVar[str] = ".onnx"
    format: ClassVar[str | None] = "onnx"
    host_modules: ClassVar[tuple[str, ...]] = ("numpy",)  # its Python binding exchanges numpy arrays


class ExecuTorchKind(GraphRuntime):
    """ExecuTorch programs (.pte), XNNPACK-delegated."""

    name: ClassVar[str] = "executorch"
    code: ClassVar[str] = "executorch.ExecuTorch"  # its code: module.Class in vischoose.runtimes
    title: ClassVar[str] = "ExecuTorch (XNNPACK)"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "int8")
    module: ClassVar[str] = "executorch"
    extra: ClassVar[str | None] = "mobile"
    suffix: ClassVar[str] = ".pte"
    format: ClassVar[str | None] = "pte"
    # the Python host binding: the pybindings import torch (about 700 MiB resident), which a phone app running the
    # C++ runtime does not have; imported before a memory baseline, it is not counted as the model's
    host_modules: ClassVar[tuple[str, ...]] = ("executorch.extension.pybindings.portable_lib", "executorch.runtime")
    host_only: ClassVar[str | None] = "torch, which the Python bindings import and a device does not have"


class LiteRTKind(GraphRuntime):
    """LiteRT flatbuffers (.tflite), run by the ai-edge-litert interpreter with XNNPACK."""

    name: ClassVar[str] = "litert"
    code: ClassVar[str] = "litert.LiteRT"  # its code: module.Class in vischoose.runtimes
    title: ClassVar[str] = "LiteRT (XNNPACK)"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "int8")
    runs_on: ClassVar[str] = "CPU (XNNPACK delegate)"
    module: ClassVar[str] = "ai_edge_litert"
    converter: ClassVar[str] = "litert_torch"  # the module that builds files; `module` (ai_edge_litert) runs them
    extra: ClassVar[str | None] = "litert"
    suffix: ClassVar[str] = ".tflite"
    format: ClassVar[str | None] = "tflite"
    host_modules: ClassVar[tuple[str, ...]] = ("ai_edge_litert.interpreter",)  # the interpreter's library

    def missing(self) -> str | None:
        """Not installed: the interpreter (ai-edge-litert) or the converter (litert-torch), which the extra brings."""
        if not installed(self.module):
            return f"{self.title} is not installed"
        return None if installed(self.converter) else "litert-torch (the converter) is not installed"


class OpenVinoKind(GraphRuntime):
    """OpenVINO IR, run by the CPU plugin."""

    name: ClassVar[str] = "openvino"
    code: ClassVar[str] = "openvino.OpenVino"  # its code: module.Class in vischoose.runtimes
    title: ClassVar[str] = "OpenVINO"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "bf16", "int8")
    module: ClassVar[str] = "openvino"
    extra: ClassVar[str | None] = "openvino"
    suffix: ClassVar[str] = ".xml"
    format: ClassVar[str | None] = "openvino"
    host_modules: ClassVar[tuple[str, ...]] = ("numpy",)
    # the CPU plugin is not imported before the baseline: it loads when the first model is compiled, and a deployed
    # process loads it too (about 8 MiB here), so it stays counted with the model

    def missing(self) -> str | None:
        """Not installed, or not an x86-64 CPU (vischoose measures OpenVINO's x86 CPU plugin only)."""
        from vischoose import machine

        arch = machine.arch()
        if arch.lower() not in machine.X86:
            return f"vischoose runs OpenVINO on x86-64 CPUs only, and this one is {arch}"
        return super().missing()


KINDS: tuple[type[Runtime], ...] = (TorchKind, OnnxRuntimeKind, ExecuTorchKind, LiteRTKind, OpenVinoKind)
