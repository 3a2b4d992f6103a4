"""Files a node needs and may lack, shipped from this machine through Ray's object store: a model's hub snapshot
(config and weights, for a node whose cache lacks them: offline, or never pulled there) and a file to evaluate as
written. Each is put once, whatever the number of nodes; a node fetches it only if it still lacks it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from vischoose.models import catalog, hub
from vischoose.runtimes import files

if TYPE_CHECKING:
    from vischoose.fleet.kinds import NodeReport


def ship(models: list[str], nodes: "list[NodeReport]") -> dict[str, Any]:
    """{model: ObjectRef of its snapshot} for each model that one of the nodes lacks and this cache holds."""
    import ray

    shipped = {}
    for model in models:
        if all(model in n.cached for n in nodes):
            continue
        snapshot = hub.read_snapshot(catalog.parse_model_ref(model))
        if snapshot is not None:
            shipped[model] = ray.put(snapshot)
    return shipped


def install(model: str, shipped: Any) -> None:
    """On a node: write the shipped snapshot into the hub cache, unless the cache holds the model already."""
    if shipped is None or hub.cached_weights(catalog.parse_model_ref(model)) is not None:
        return
    import ray

    hub.write_snapshot(ray.get(shipped))


def pack(graph: str | Path) -> Any:
    """An ObjectRef of (the file's name, {name: bytes} of it and its companions: external data, an IR's weights)."""
    import ray

    return ray.put((Path(graph).name, {path.name: path.read_bytes() for path in files.companions(graph)}))


def unpack(packed: Any, folder: Path) -> Path | None:
    """On a node: the packed file written into `folder` (its companions beside it); None when nothing was packed."""
    if packed is None:
        return None
    import ray

    name, found = ray.get(packed)
    for each, data in found.items():
        (folder / each).write_bytes(data)
    return folder / name
