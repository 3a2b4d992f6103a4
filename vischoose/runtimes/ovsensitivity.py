"""Per-layer int8 sensitivity of an OpenVINO IR: the same measure runtimes.sensitivity takes of an ONNX graph, so
accuracy-aware int8 (deploy.accuracy) puts OpenVINO's worst layers back in float first.

Both IRs (the fp32 one and NNCF's int8 quantization of it) run on the same images with the tensors either side of
every quantized Convolution, GroupConvolution and MatMul added to their outputs; a node's score is the SQNR its
input arrives with minus the SQNR its output leaves with (dB, capped at an ideal 8-bit quantizer's, as for ONNX).
Nodes pair by friendly name: NNCF keeps the fp32 IR's names and adds FakeQuantize nodes (`.../fq_output_0`,
`.../fq_weights_1`) in front of them, and the same names are what `nncf.IgnoredScope` takes to keep a node in float.
A node counts as quantized when its weight reaches it through a FakeQuantize or an 8/4-bit constant.

OpenVINO's own names for a convolution are generic once its batch norm is folded in (`Multiply_32203`), so each
layer is also labelled with the module the IR names next to it ("Convolution before blocks.0.0.bn1": the batch
norm folded into it). openvino and numpy are imported inside functions.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from vischoose.runtimes.sensitivity import BATCH, Layer, sqnr

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

QUANTIZABLE = ("Convolution", "GroupConvolution", "MatMul")
LOW_PRECISION = ("i8", "u8", "i4", "u4")
MODULE_PREFIX = "__module."  # openvino.convert_model's prefix for a torch module's path
WEIGHT_PATH_DEPTH = 6  # ops walked up a weight input looking for its quantization (Multiply, Subtract, Convert...)


def rank_layers(core: Any, fp32_path: "str | Path", int8_path: "str | Path", images: "np.ndarray") -> list[Layer]:
    """The int8 IR's quantized nodes, most sensitive first (ties and unmeasurable nodes keep graph order).

    Args:
        core: the openvino.Core to read and compile with (runtimes.openvino.core: the process's one).
        images: preprocessed float32 NCHW images both IRs run on.
    """
    fp32, int8 = core.read_model(str(fp32_path)), core.read_model(str(int8_path))
    quantized = {op.get_friendly_name(): op for op in int8.get_ordered_ops()
                 if op.get_type_name() in QUANTIZABLE and weight_quantized(op)}
    pairs = [(op, quantized[op.get_friendly_name()]) for op in fp32.get_ordered_ops()
             if op.get_friendly_name() in quantized]
    energy = _noise_energy(core, fp32, int8, pairs, images)
    layers = []
    for (op, _), found in zip(pairs, energy):
        name = op.get_friendly_name()
        if found is None:
            layers.append(Layer(name, op.get_type_name(), label(op), -math.inf, math.nan))
            continue
        out = sqnr(*found[1])
        layers.append(Layer(name, op.get_type_name(), label(op), sqnr(*found[0]) - out, out))
    return sorted(layers, key=lambda layer: -layer.added_db)


def weight_quantized(op: Any) -> bool:
    """Whether the node's weight (input 1) comes through a FakeQuantize or from an 8- or 4-bit constant."""
    if op.get_input_size() < 2:
        return False
    stack, seen = [op.input_value(1).get_node()], 0
    while stack and seen < WEIGHT_PATH_DEPTH:
        node, seen = stack.pop(), seen + 1
        kind = node.get_type_name()
        if kind == "FakeQuantize":
            return True
        if kind == "Constant":
            if node.get_element_type().get_type_name() in LOW_PRECISION:
                return True
            continue
        stack += [value.get_node() for value in node.input_values()]
    return False


def label(op: Any) -> str:
    """The torch module the IR names at this node ("blocks.0.attn.qkv"), else at what consumes it, a folded batch
    norm ("Convolution before blocks.0.0.bn1"); the node's own name when neither has one."""
    def module(node: Any) -> str | None:
        name = node.get_friendly_name()
        return name[len(MODULE_PREFIX):].split("/", 1)[0] if name.startswith(MODULE_PREFIX) else None

    own = module(op)
    if own:
        return own
    after = [found for each in op.output(0).get_target_inputs() if (found := module(each.get_node()))]
    return f"{op.get_type_name()} before {after[0]}" if after else op.get_friendly_name()


def _noise_energy(core: Any, fp32: Any, int8: Any, pairs: list[tuple[Any, Any]],
                  images: "np.ndarray") -> list[tuple[tuple[float, float], tuple[float, float]] | None]:
    """Per pair, ((signal, noise) energy of its input, (signal, noise) of its output) over the images; None when
    a tensor could not be read in both IRs (shapes differ)."""
    import numpy as np

    float_run = _exposing(core, fp32, [(op.input_value(0), op.output(0)) for op, _ in pairs])
    quant_run = _exposing(core, int8, [(op.input_value(0), op.output(0)) for _, op in pairs])
    totals = np.zeros((len(pairs), 2, 2))
    readable = np.ones(len(pairs), dtype=bool)
    for i in range(0, len(images), BATCH):
        batch = np.ascontiguousarray(images[i:i + BATCH], dtype=np.float32)
        for k, (x_ends, y_ends) in enumerate(zip(float_run(batch), quant_run(batch))):
            for end, (x, y) in enumerate(zip(x_ends, y_ends)):
                if x.shape != y.shape:
                    readable[k] = False
                    continue
                totals[k, end] += (np.square(x, dtype=np.float64).sum(), np.square(x - y, dtype=np.float64).sum())
    return [((float(t[0, 0]), float(t[0, 1])), (float(t[1, 0]), float(t[1, 1]))) if ok else None
            for t, ok in zip(totals, readable)]


def _exposing(core: Any, model: Any, ends: list[tuple[Any, Any]]):
    """A function running the IR with each pair of tensors added to its outputs: batch -> [(input, output)].

    A tensor wanted twice (one node's output is the next one's input) or already an output is read once: outputs
    are found by the (producer, port) they come from.
    """
    import numpy as np

    def key(port: Any) -> tuple[str, int]:
        return port.get_node().get_friendly_name(), port.get_index()

    present = {key(result.input_value(0)) for result in model.get_results()}
    wanted = {key(port): port for pair in ends for port in pair if key(port) not in present}
    model.add_outputs(list(wanted.values()))
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    position = {key(result.input_value(0)): i for i, result in enumerate(model.get_results())}
    index = [(position[key(a)], position[key(b)]) for a, b in ends]
    request = compiled.create_infer_request()

    def run(batch: "np.ndarray") -> list[tuple["np.ndarray", "np.ndarray"]]:
        values = list(request.infer({0: batch}, share_outputs=False).values())
        return [(np.asarray(values[a]), np.asarray(values[b])) for a, b in index]

    return run
