"""PT2E int8 for ExecuTorch (XNNPACKQuantizer, symmetric per-channel) and its per-layer sensitivity, so
accuracy-aware int8 (deploy.accuracy) can put ExecuTorch's worst layers back in float.

Quantizing: the quantizer annotates every pattern XNNPACK runs in int8, except those touching a module named in
`exclude` (a filter on each node's `nn_module_stack`: XNNPACKQuantizer does not take a None config per module),
observes the calibration images one at a time (the program is batch 1) and converts.

Ranking: a .pte program does not expose its intermediate tensors, so the layers are ranked on what PT2E converted,
the q/dq reference graph XNNPACK's integer kernels implement, against the fp32 exported graph, both read node by
node with torch.fx.Interpreter on the same images. The score is runtimes.sensitivity's: the SQNR a conv or linear
layer's input arrives with minus the SQNR its output leaves with (dB, capped as there). Layers are named by their
module (`blocks.0.0.conv_pw`), which is what `exclude` takes. torch and torchao are imported inside functions.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any, Sequence

from vischoose.runtimes.sensitivity import Layer, sqnr

if TYPE_CHECKING:
    import numpy as np
    import torch

QUANTIZABLE = ("conv2d", "linear")  # aten operators whose weights int8 quantizes
SELF_PREFIX = "L['self']."  # how torch.export may spell the root module in nn_module_stack
EVERY: tuple[str, ...] = ("*",)  # `exclude` for the float reference: the same graph rewrites, nothing quantized


def module_name(node: Any) -> str | None:
    """The innermost module a graph node came from ("blocks.0.0.conv_pw"), None for nodes outside any."""
    stack = node.meta.get("nn_module_stack") if hasattr(node, "meta") else None
    if not stack:
        return None
    path = list(stack.values())[-1][0]
    return path[len(SELF_PREFIX):] if path.startswith(SELF_PREFIX) else path


def converted(module: "torch.nn.Module", images: "np.ndarray", exclude: Sequence[str] = ()) -> Any:
    """The exported module annotated for XNNPACK int8 (the modules in `exclude` left out), calibrated on the
    images one at a time, converted to the q/dq reference graph."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    if exclude is EVERY:
        quantizer.set_filter_function(lambda node: False)
    elif exclude:
        skipped = frozenset(exclude)
        quantizer.set_filter_function(lambda node: module_name(node) not in skipped)
    prepared = prepare_pt2e(copy.deepcopy(module), quantizer)
    for image in images:
        prepared(torch.from_numpy(image[None].astype("float32", copy=False)))
    return convert_pt2e(prepared)


def layers(graph_module: Any, quantized_only: bool) -> dict[str, Any]:
    """The conv and linear nodes of a graph by module name (the first of each module), in graph order; with
    quantized_only, those whose weight arrives dequantized (int8 in the program)."""
    found: dict[str, Any] = {}
    for node in graph_module.graph.nodes:
        name = module_name(node)
        if node.op != "call_function" or name is None or name in found or _aten_name(node) not in QUANTIZABLE:
            continue
        if not quantized_only or _dequantized(node.args[1]):
            found[name] = node
    return found


def float_reference(module: "torch.nn.Module") -> Any:
    """The exported module through the same PT2E rewrites as `converted` (batch norms folded into their convs),
    nothing quantized: the graph whose conv outputs mean what the int8 graph's do."""
    return converted(module, [], EVERY)  # type: ignore[arg-type]


def rank_layers(fp32_module: Any, int8_module: Any, images: "np.ndarray") -> list[Layer]:
    """The quantized conv and linear layers of `int8_module` (what `converted` returned), most sensitive first
    (ties and unmeasurable layers keep graph order), against `float_reference` of the module they came from."""
    float_nodes, quant_nodes = layers(fp32_module, False), layers(int8_module, True)
    names = [name for name in quant_nodes if name in float_nodes]
    energy = {name: [[0.0, 0.0], [0.0, 0.0]] for name in names}
    for image in images:
        x = _tensor(image)
        floats = _read(fp32_module, x, [float_nodes[n] for n in names])
        quants = _read(int8_module, x, [quant_nodes[n] for n in names])
        for name in names:
            for end, (a, b) in enumerate(zip(floats[float_nodes[name].name], quants[quant_nodes[name].name])):
                if a is None or b is None or a.shape != b.shape:
                    energy[name][end] = [math.nan, math.nan]
                    continue
                energy[name][end][0] += float(a.double().square().sum())
                energy[name][end][1] += float((a.double() - b.double()).square().sum())
    ranked = []
    for name in names:
        (s_in, n_in), (s_out, n_out) = energy[name]
        op = _aten_name(quant_nodes[name])
        if math.isnan(s_in) or math.isnan(s_out):
            ranked.append(Layer(name, op, name, -math.inf, math.nan))
            continue
        out = sqnr(s_out, n_out)
        ranked.append(Layer(name, op, name, sqnr(s_in, n_in) - out, out))
    return sorted(ranked, key=lambda layer: -layer.added_db)


def _aten_name(node: Any) -> str:
    """"conv2d" for torch.ops.aten.conv2d.default."""
    return str(getattr(node.target, "__name__", node.target)).split(".")[0]


def _dequantized(arg: Any) -> bool:
    """Whether a node input comes from a dequantize operator (PT2E's reference for an int8 tensor)."""
    return getattr(arg, "op", None) == "call_function" and "dequantize" in str(arg.target)


def _tensor(image: "np.ndarray") -> "torch.Tensor":
    import torch

    return torch.from_numpy(image[None].astype("float32", copy=False))


def _read(module: Any, x: "torch.Tensor", nodes: list[Any]) -> dict[str, tuple[Any, Any]]:
    """Each node's (activation input, output) values when the module runs on x."""
    import torch

    wanted = {n.name for node in nodes for n in (node, node.args[0]) if hasattr(n, "name")}
    seen: dict[str, Any] = {}

    class Reader(torch.fx.Interpreter):
        def run_node(self, n: Any) -> Any:
            out = super().run_node(n)
            if n.name in wanted and isinstance(out, torch.Tensor):
                seen[n.name] = out.detach().clone()  # an in-place op after it (hardtanh_) would overwrite it
            return out

    with torch.no_grad():
        Reader(module).run(x)
    return {node.name: (seen.get(getattr(node.args[0], "name", "")), seen.get(node.name)) for node in nodes}
