"""torch itself as a runtime: the eager timm module (fp32, or bf16/fp16 under torch.autocast), optionally
compiled by inductor with its weights frozen. It is the reference every exported graph is checked against, and what
the cloud and server targets run. torch is imported inside the functions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from vischoose.runtimes.base import Runtime

if TYPE_CHECKING:
    import torch



class TorchEager(Runtime):
    """The eager PyTorch module: no file is built (it is not a GraphRuntime); vischoose's torch children measure the
    module directly, and every graph is checked against it."""

    name: ClassVar[str] = "torch"
    title: ClassVar[str] = "PyTorch eager"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "bf16", "fp16")
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    module: ClassVar[str] = "torch"
    is_graph: ClassVar[bool] = False
    host_modules: ClassVar[tuple[str, ...]] = ("timm",)  # the model's code: a process running a timm model has it
    compiler: ClassVar[str] = "torch._inductor.compile_fx"  # what torch.compile imports on its first call

    def prepare_host(self, compiled: bool = False) -> str:
        """torch and timm; with compiled, torch.compile's inductor too (imported on the first compiled call, it would
        be counted as the model's: +45 MiB here), so the peak is the compiled model's code and state only."""
        text = super().prepare_host()
        if not compiled:
            return text
        import importlib

        importlib.import_module(self.compiler)
        return f"{text}, and torch.compile's inductor ({self.compiler})"


def count_flops(model: "torch.nn.Module", x: "torch.Tensor") -> int:
    """FLOPs of one forward (2 per multiply-accumulate), attention included, by torch's flop counter."""
    import torch
    from torch.utils import flop_counter

    def sdpa(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return flop_counter.sdpa_flop_count(query, key, value)

    # torch counts the CUDA attention kernels but not the CPU one, which ViTs use on CPU
    cpu_sdpa = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    counter = flop_counter.FlopCounterMode(display=False, custom_mapping={cpu_sdpa: sdpa} if cpu_sdpa else None)
    with torch.inference_mode(), counter:
        model(x)
    return int(counter.get_total_flops())


def autocast_module(net: "torch.nn.Module", device_type: str, dtype: "torch.dtype") -> "torch.nn.Module":
    """Wrap a model so that its forward runs under torch.autocast at dtype."""
    import torch

    class AutocastModule(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(device_type, dtype=dtype):
                return self.net(x)
    return AutocastModule()


def compile_for_inference(net: "torch.nn.Module") -> Any:
    """torch.compile (inductor) with freezing: the weights become constants, so convolution and linear weights
    are pre-packed for the CPU kernels once (resnet50 bf16 on 2 CPU cores: 105 img/s against 86 without)."""
    import torch
    import torch._inductor.config as inductor

    inductor.freezing = True  # valid here: profiles run under inference_mode and never change the weights
    return torch.compile(net)
