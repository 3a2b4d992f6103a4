"""torch itself as a runtime: the eager timm module (fp32, or bf16/fp16 under torch.autocast), optionally
compiled by inductor with its weights frozen. It is the reference every exported graph is checked against, and what
the cloud and server targets run. torch is imported inside the functions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar, NamedTuple

from vischoose.runtimes.kinds import TorchKind

if TYPE_CHECKING:
    import torch

    from vischoose.runtimes.layers import LayerProfile

WARMUP_RUNS = 2
# ATen's fallback convolutions: im2col + GEMM or plain loops, taken where oneDNN (mkldnn) is not
SLOW_KERNELS = ("aten::_slow_conv2d_forward", "aten::thnn_conv2d", "aten::slow_conv_dilated2d",
                "aten::slow_conv_dilated3d", "aten::slow_conv_transpose2d", "aten::slow_conv_transpose3d",
                "aten::slow_conv3d_forward")
RUN_SCOPE = "vischoose::run "  # record_function around each profiled forward


class EagerModel(NamedTuple):
    """What torch eager runs (its 'artifact' for layer_profile): the prepared module and its input maker."""

    module: Any  # torch.nn.Module at the run's dtype, layout and device
    make_input: Callable[[int], Any]  # batch size -> input tensor
    precision: str = "fp32"



class TorchEager(TorchKind):
    """The eager PyTorch module: no file is built (it is not a GraphRuntime); vischoose's torch children measure the
    module directly, and every graph is checked against it."""

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

    def layer_profile(self, artifact: EagerModel, batch: int, threads: int | None, runs: int = 10) -> LayerProfile:
        """torch.profiler over `runs` forwards (after WARMUP_RUNS), each ATen op's own time charged to the module it ran
        in (a record_function per module, through forward hooks); a module where ATen's fallback convolution ran
        (SLOW_KERNELS, not oneDNN) is off the fast path."""
        import torch
        from torch.profiler import ProfilerActivity, profile, record_function

        from vischoose.runtimes.layers import LayerProfile, median_layers

        if threads:
            torch.set_num_threads(threads)
        net, x = artifact.module, artifact.make_input(batch)
        removers = _module_scopes(net)
        try:
            with torch.inference_mode():
                for _ in range(WARMUP_RUNS):
                    net(x)
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    for i in range(runs):
                        with record_function(f"{RUN_SCOPE}{i}"):
                            net(x)
        finally:
            for remove in removers:
                remove()
        per_run, totals = _per_module(prof.events(), runs)
        return LayerProfile(self.name, artifact.precision, f"torch.profiler (torch {torch.__version__})", batch,
                            torch.get_num_threads(), runs, sorted(totals)[len(totals) // 2] if totals else None,
                            median_layers(per_run), note="modules of the eager model, each charged with the ATen ops "
                            "it ran itself (its children's apart); kernel = its most costly op")


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


def _module_scopes(net: Any) -> list[Callable[[], None]]:
    """A record_function named after each module around its forward (pre and post hooks); the hooks' removers."""
    from torch.autograd.profiler import record_function

    removers, open_scopes = [], []  # forwards nest: the scope a post hook closes is the last one opened

    for name, module in net.named_modules():
        scope = f"module::{name or '(model)'} ({type(module).__name__})"

        def enter(mod: Any, args: Any, scope: str = scope) -> None:
            open_scopes.append(record_function(scope).__enter__())

        def leave(mod: Any, args: Any, out: Any) -> None:
            open_scopes.pop().__exit__(None, None, None)

        removers += [module.register_forward_pre_hook(enter).remove, module.register_forward_hook(leave).remove]
    return removers


def _per_module(events: Any, runs: int) -> tuple[list[dict[str, tuple[str, float, str, str | None]]], list[float]]:
    """Per run, {module: (type, ms of its own ATen ops, its most costly op, why off the fast path)}; each run's ms."""
    per_run: list[dict[str, dict[str, Any]]] = [{} for _ in range(runs)]
    totals = []
    for event in events:
        if event.name.startswith(RUN_SCOPE):
            totals.append(event.cpu_time_total / 1e3)
        if not event.name.startswith("aten::"):
            continue
        module, run = _scopes(event)
        if module is None or run is None or run >= runs:
            continue
        found = per_run[run].setdefault(module, {"ms": 0.0, "ops": {}})
        found["ms"] += event.self_cpu_time_total / 1e3
        found["ops"][event.name] = found["ops"].get(event.name, 0.0) + event.self_cpu_time_total
    out = []
    for run in per_run:
        out.append({name: (name.rsplit(" (", 1)[-1].rstrip(")"), data["ms"], max(data["ops"], key=data["ops"].get),
                           _slow(data["ops"])) for name, data in run.items()})
    return out, totals


def _scopes(event: Any) -> tuple[str | None, int | None]:
    """The nearest module scope above an ATen op (its name without 'module::') and the run it belongs to."""
    module, parent = None, event.cpu_parent
    while parent is not None:
        if module is None and parent.name.startswith("module::"):
            module = parent.name.removeprefix("module::")
        if parent.name.startswith(RUN_SCOPE):
            return module, int(parent.name.removeprefix(RUN_SCOPE))
        parent = parent.cpu_parent
    return module, None


def _slow(ops: dict[str, float]) -> str | None:
    found = [op for op in ops if op in SLOW_KERNELS]
    return f"ATen's fallback convolution ({', '.join(found)}), not oneDNN" if found else None
