"""Per-layer int8 sensitivity of an ONNX graph: which quantizable nodes (Conv, MatMul, Gemm) add the most error
when quantized, ranked so accuracy-aware int8 (deploy.accuracy) puts the worst ones back in float first.

The measure is the one ONNX Runtime's `qdq_loss_debug` tooling is built around: run the float graph and the
quantized graph on the same images, read the tensors either side of every quantizable node in both, and compare
them by signal-to-quantization-noise ratio (SQNR, dB). A node's score is the SQNR its input arrives with minus the
SQNR its output leaves with: how many dB of accuracy that node itself costs, not the error it inherits from the
layers before it (raw output error grows with depth and would just rank the last layers first). SQNR is capped at
what an ideal 8-bit quantizer gives a full-range signal (about 50 dB): every quantized node sees its input at 8 bits
at best, so an exact float input (the first MatMul of a dynamic recipe) does not make its node look infinitely
sensitive. On real EfficientNet-Lite0 and photos this ranked the stem first, and reverting it alone recovered the
choice images; the alternative score, the linear noise-to-signal power added, ranked the deep pointwise layers first
and needed 8 of them. It costs one pass of each graph over a few images; measuring each node quantized alone would
cost one quantization per node (50 for EfficientNet-Lite0).

Tensors are read by name: a static (QDQ) graph keeps the float names and adds `<name>_DequantizeLinear_Output`
for the value a consumer sees after quantization; a dynamic graph keeps MatMul/Gemm output names. Energies are
summed batch by batch, so memory stays at one batch of the tensors read. onnx and onnxruntime are imported inside
functions.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    import numpy as np

QUANTIZABLE = ("Conv", "MatMul", "Gemm")
DEQUANT_SUFFIX = "_DequantizeLinear_Output"  # ORT's name for a tensor's value after its QDQ pair
QUANT_INPUT_SUFFIX = "_QuantizeLinear_Input"  # ...and for the value before it, where the name is a graph output
MAX_SQNR_DB = 6.02 * 8 + 1.76  # an ideal 8-bit quantizer on a full-range uniform signal, dB
BATCH = 4  # images per pass: bounds the memory the extra outputs take


@dataclass(frozen=True)
class Layer:
    """One quantizable node of the fp32 graph and the error it adds when quantized."""

    node: str  # the node's name in the fp32 graph (what the quantizer's nodes_to_exclude takes)
    op: str  # Conv, MatMul or Gemm
    weight: str  # its weight initializer (names the model's layer: blocks.0.0.conv_dw.weight)
    added_db: float  # SQNR of its input minus SQNR of its output, dB; higher = more sensitive
    sqnr_db: float  # SQNR of its output in the int8 graph, dB (capped at MAX_SQNR_DB)


def quantizable_nodes(fp32_path: str | Path) -> list[tuple[str, str, str]]:
    """(node name, op type, weight name) of every Conv/MatMul/Gemm whose weight is an initializer, in graph order."""
    import onnx

    graph = onnx.load(str(fp32_path), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    return [(n.name, n.op_type, n.input[1]) for n in graph.node
            if n.op_type in QUANTIZABLE and len(n.input) > 1 and n.input[1] in weights]


def rank_layers(fp32_path: str | Path, int8_path: str | Path, images: "np.ndarray") -> list[Layer]:
    """The fp32 graph's quantizable nodes, most sensitive first (ties and unmeasurable nodes keep graph order).

    Args:
        images: preprocessed float32 NCHW images both graphs run on (the calibration images do).
    """
    nodes = _quantized_nodes(int8_path, quantizable_nodes(fp32_path))
    ends = _node_ends(fp32_path, int8_path, nodes)
    quant_names = _quantized_names(int8_path, {t for pair in ends.values() for t in pair})
    energy = _noise_energy(fp32_path, int8_path, images, quant_names)
    layers = []
    for name, op, weight in nodes:
        start, end = ends.get(name, ("", ""))
        if start in energy and end in energy:
            out = sqnr(*energy[end])
            layers.append(Layer(name, op, weight, sqnr(*energy[start]) - out, out))
        else:
            layers.append(Layer(name, op, weight, -math.inf, math.nan))
    return sorted(layers, key=lambda layer: -layer.added_db)


def _quantized_nodes(int8_path: str | Path, nodes: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The nodes the recipe quantized: replaced in the int8 graph (dynamic), or fed a dequantized weight (static).
    A dynamic recipe leaves Conv in float, so reverting it would change nothing."""
    import onnx

    int8 = {n.name: n for n in onnx.load(str(int8_path), load_external_data=False).graph.node}
    return [(name, op, weight) for name, op, weight in nodes
            if name not in int8 or (len(int8[name].input) > 1 and int8[name].input[1].endswith(DEQUANT_SUFFIX))]


def _node_ends(fp32_path: str | Path, int8_path: str | Path,
               nodes: list[tuple[str, str, str]]) -> dict[str, tuple[str, str]]:
    """Each node's (activation input, output) tensor names as the quantized graph wires it, QDQ suffix removed.

    A static graph keeps the node (same name) but may have fused what follows it into it (Conv + Clip), so its
    output is read there; a dynamic graph replaces MatMuls by other nodes, so the fp32 graph's ends are used.
    """
    import onnx

    fp32 = {n.name: n for n in onnx.load(str(fp32_path), load_external_data=False).graph.node}
    int8 = {n.name: n for n in onnx.load(str(int8_path), load_external_data=False).graph.node}
    ends = {}
    for name, _, _ in nodes:
        node = int8.get(name, fp32[name])
        ends[name] = (node.input[0].removesuffix(DEQUANT_SUFFIX), node.output[0].removesuffix(QUANT_INPUT_SUFFIX))
    return ends


def _quantized_names(int8_path: str | Path, names: Iterable[str]) -> dict[str, str]:
    """For each float tensor name, the quantized graph's tensor holding the value its consumers see."""
    import onnx

    graph = onnx.load(str(int8_path), load_external_data=False).graph
    present = {o for n in graph.node for o in n.output} | {i.name for i in graph.input}
    found = {}
    for name in names:
        if name + DEQUANT_SUFFIX in present:
            found[name] = name + DEQUANT_SUFFIX
        elif name in present:
            found[name] = name
    return found


def _noise_energy(fp32_path: str | Path, int8_path: str | Path, images: "np.ndarray",
                  quant_names: dict[str, str]) -> dict[str, tuple[float, float]]:
    """(signal energy, noise energy) of each float tensor over the images: its values vs the quantized graph's."""
    import numpy as np

    totals = {name: [0.0, 0.0] for name in quant_names}
    seen: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="vischoose-sensitivity-") as tmp:
        float_run = _exposing(fp32_path, list(quant_names), Path(tmp) / "float.onnx")
        quant_run = _exposing(int8_path, list(quant_names.values()), Path(tmp) / "int8.onnx")
        for i in range(0, len(images), BATCH):
            batch = np.ascontiguousarray(images[i:i + BATCH], dtype=np.float32)
            floats, quants = float_run(batch), quant_run(batch)
            for name in totals:
                x, y = floats.get(name), quants.get(quant_names[name])
                if x is None or y is None or x.shape != y.shape:
                    continue
                seen.add(name)
                totals[name][0] += float(np.square(x, dtype=np.float64).sum())
                totals[name][1] += float(np.square(x - y, dtype=np.float64).sum())
    return {name: (s, n) for name, (s, n) in totals.items() if name in seen}


def _exposing(path: str | Path, names: list[str], out: Path):
    """A function running the graph with `names` added to its outputs: batch -> {tensor name: value}."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    outputs = {o.name for o in model.graph.output}
    produced = {o for n in model.graph.node for o in n.output}
    inputs = {i.name for i in model.graph.input}
    for name in names:
        if name in produced and name not in outputs:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    big = model.ByteSize() > 1.8 * 2**30  # protobuf's 2 GiB limit
    onnx.save(model, str(out), save_as_external_data=big)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
    wanted = [o.name for o in session.get_outputs() if o.name in set(names)]
    feed = session.get_inputs()[0].name
    fed = [name for name in names if name in inputs]  # the input itself: its value is the batch
    return lambda batch: {**dict(zip(wanted, session.run(wanted, {feed: batch}))), **{n: batch for n in fed}}


def sqnr(signal: float, noise: float) -> float:
    """Signal-to-quantization-noise ratio in dB, at most MAX_SQNR_DB (an exact tensor scores that)."""
    if noise <= 0.0:
        return MAX_SQNR_DB
    if signal <= 0.0:
        return -MAX_SQNR_DB
    return min(MAX_SQNR_DB, 10.0 * math.log10(signal / noise))
