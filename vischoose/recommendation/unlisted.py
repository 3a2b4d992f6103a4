"""Figures for a model nobody published figures for (outside the catalog and timm's results), without measuring.

Parameters come from the safetensors header of cached weights (no torch), else from timm's architecture built on the
meta device (no weights, no memory: about a second once torch is imported). GMACs come from timm's benchmark of the
architecture at the model's input size, else are counted on the meta device (torch's flop counter, attention
included). Top-1 stays unknown: the model is ranked after the ones with a published or measured top-1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from vischoose.errors import UnknownModelError, WeightsUnavailableError
from vischoose.models import families, hub, sizes
from vischoose.models.catalog import CatalogEntry, ModelRef
from vischoose.units import flops_to_macs

if TYPE_CHECKING:
    from vischoose.models.zoo import Zoo

HEADER = "counted from the safetensors header of the cached weights"
META = "counted on timm's architecture (meta device, no weights)"


class Counted(NamedTuple):
    """What building the architecture on the meta device tells."""

    params: int
    gmacs: float
    input_size: int


def entry_for(ref: ModelRef, zoo: "Zoo") -> CatalogEntry | None:
    """A catalog entry with counted figures and no top-1, or None where neither cached weights nor timm know the
    architecture (the model then has only the figures measured for it).

    Raises:
        UnknownModelError: a timm name whose architecture timm does not have.
    """
    try:
        weights = hub.cached_weights(ref)
    except WeightsUnavailableError:  # a damaged local folder: measuring it says why
        weights = None
    if weights is not None:
        config = hub.read_config(weights)
        arch, cfg = config["architecture"], config.get("pretrained_cfg") or {}
        params = sizes.parameter_count(weights.weights_file) if weights.is_safetensors else None
        tag = f"{arch}.{cfg['tag']}" if cfg.get("tag") else ref.timm_name or ref.name
        size = int((cfg.get("input_size") or [0])[-1]) or None
        return _entry(ref, zoo, arch, tag, size, params, HEADER if params is not None else META, arch)
    if ref.kind == "timm":
        return _entry(ref, zoo, ref.name.partition(".")[0], ref.name, None, None, META, ref.name)
    return None


def _entry(ref: ModelRef, zoo: "Zoo", arch: str, tag: str, size: int | None, params: int | None, how: str,
           build_name: str) -> CatalogEntry | None:
    gmacs = zoo.gmacs.get((arch, size)) if size else None
    gmacs_note = None
    if params is None or gmacs is None:
        counted = count_on_meta(build_name, strict=ref.kind == "timm", known=list(zoo.tags))
        if counted is None:
            return None
        if gmacs is None and size not in (None, counted.input_size):
            return None  # a config at another size than timm's default: only measuring knows its FLOPs
        size, params = counted.input_size, params if params is not None else counted.params
        if gmacs is None:
            gmacs, gmacs_note = counted.gmacs, META
    from vischoose.models import zoo as zoo_data

    speeds = zoo.speeds.get((arch, size), ())
    cpu = zoo_data.reference_cpu(speeds)
    return CatalogEntry(
        alias=ref.display, tag=tag, hf_hub_id=ref.name if ref.kind == "hf-hub" else "", family=families.family_of(arch),
        label=ref.display, top1=None, top5=None, top1_size=size, params=params, gmacs=gmacs, input_size=size,
        license="", source="counted here", ref_cpu_latency_ms=cpu.step_ms if cpu else None,
        ref_cpu=zoo_data.cpu_note(cpu, size) if cpu else None, speeds=speeds,
        int8_bytes_per_param=families.int8_bytes_per_param(arch), counted=how, gmacs_counted=gmacs_note)


def count_on_meta(name: str, strict: bool = False, known: list[str] | None = None) -> Counted | None:
    """Parameters, GMACs and input size of a timm model built on the meta device; None where timm does not know the
    architecture (strict: raise instead, suggesting close names among `known`).

    Raises:
        UnknownModelError: strict, and timm has no such architecture or tag.
    """
    import torch
    from timm.models import create_model, is_model

    from vischoose.runtimes.torch_eager import count_flops

    if not is_model(name.partition(".")[0]):
        if not strict:
            return None
        from difflib import get_close_matches

        raise UnknownModelError(name, get_close_matches(name, known or [], n=3, cutoff=0.6))
    try:
        with torch.device("meta"):
            net = create_model(name, pretrained=False).eval()
    except RuntimeError as err:  # a tag timm does not list
        raise UnknownModelError(name) from err
    size = int(net.pretrained_cfg.get("input_size", (3, 224, 224))[-1])
    flops = count_flops(net, torch.empty(1, 3, size, size, device="meta"))
    return Counted(sum(p.numel() for p in net.parameters()), flops_to_macs(flops) / 1e9, size)
