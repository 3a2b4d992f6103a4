"""The options several requests share: each rule and its one message, written once.

Messages name options by field (errors.field): the CLI shows them as flags, a Python caller as field names. Each
function returns the checked value (normalised where that helps) or raises UsageError (exit 2).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Iterable

from vischoose.errors import UsageError, opt
from vischoose.runtimes import precision as precisions
from vischoose.runtimes import registry
from vischoose.runtimes.base import Runtime

MIN_INPUT_SIZE = 16  # px: below this timm's stems leave nothing to classify
DEFAULT_SERVE_BUDGET_S = 180.0  # the server search's, per model: no LoadGen run starts after it (once one was VALID)
RAY_MODULE = "ray"  # the module whose presence means the fleet extra is installed
FLEET_HINT = "pip install 'vischoose[fleet]'"
AUTO_CLUSTER = "auto"  # Ray's own address resolution: RAY_ADDRESS, else the cluster this machine runs
CLIENT_SCHEME = "ray://"
ADDRESS_HINT = ("Give the head node's address: HOST:PORT on a node of the cluster (ray start --head prints it), "
                "ray://HOST:10001 from elsewhere (Ray Client), or auto.")


def runtime(name: str) -> Runtime:
    """The runtime called `name` (UsageError naming the known ones otherwise)."""
    return registry.get(name)


def precision(value: str) -> str:
    """A precision vischoose knows (fp32, bf16, fp16, int8): runtimes.precision's table and message."""
    precisions.dtype_of(value)
    return value


def graph_precision(chosen: Runtime, value: str, via: str = "runtime") -> str:
    """A precision the graph runtime builds and this machine runs; the runtime installed (MissingExtraError). `via`:
    the field that named the runtime (runtime, or export's format)."""
    named = f"{opt(via)} {chosen.format if via == 'format' else chosen.name}"
    if value not in chosen.precisions:
        raise UsageError(f"{named} runs {' or '.join(chosen.precisions)} graphs, not {value}.",
                         hint=f"Use {opt('precision')} {' or '.join(chosen.precisions)}.", field="precision")
    chosen.require()
    why = chosen.precision_supported(value)
    if why:
        raise UsageError(f"{named} {opt('precision')} {value} cannot run here: {why}.", field="precision")
    return value


def min_agreement(value: float) -> float:
    """A share of images, 0 to 1."""
    if not 0.0 <= value <= 1.0:  # nan too
        raise UsageError(f"{opt('min_agreement')} must be between 0 and 1 (got {value}).", field="min_agreement")
    return value


def folder(path: str | Path | None, name: str) -> str | None:
    """A folder of the user's images that must exist (calibration)."""
    if path is None:
        return None
    found = Path(path)
    if not found.is_dir():
        why = "is not a folder" if found.exists() else "does not exist"
        raise UsageError(f"{opt(name)} {path} {why}.", hint="Give a folder of your own images (a few dozen).",
                         field=name)
    return str(path)


def at_least(value: int | None, least: int, name: str, unit: str = "") -> int | None:
    """A whole number of at least `least` (threads, input size, batch size, limit), or None."""
    if value is not None and not value >= least:
        raise UsageError(f"{opt(name)} must be at least {least}{unit} (got {value}).", field=name)
    return value


def positive(value: float | None, name: str) -> float | None:
    """A number above 0 (a latency bound, a price, a rate), or None."""
    if value is not None and not value > 0:  # nan too
        raise UsageError(f"{opt(name)} must be greater than 0 (got {value:g}).", field=name)
    return value


def input_size(value: int | None) -> int | None:
    """A square input side in px, or None for the model's own."""
    return at_least(value, MIN_INPUT_SIZE, "input_size", " px")


def seconds(value: float, name: str = "time_budget_s") -> float:
    """A positive number of seconds."""
    if not (value > 0 and math.isfinite(value)):
        raise UsageError(f"{opt(name)} must be more than 0 seconds (got {value}).", field=name)
    return value


def device(value: str, allowed: tuple[str, ...] = ("auto", "cpu", "cuda")) -> str:
    """auto, cpu, cuda or cuda:N."""
    if not (value in allowed or (value.startswith("cuda:") and value[5:].isdigit() and "cuda" in allowed)):
        forms = ", ".join(allowed) + (" or cuda:N" if "cuda" in allowed else "")
        raise UsageError(f"Unknown device '{value}' (expected {forms}).", field="device")
    return value


def weights(value: str) -> str:
    """auto, pretrained or random."""
    from vischoose.models.loading import (
        WEIGHT_MODES,  # here: recommend's start-up never loads models.loading
    )

    if value not in WEIGHT_MODES:
        raise UsageError(f"Unknown weights mode '{value}' (expected one of: {', '.join(WEIGHT_MODES)}).",
                         field="weights")
    return value


def batch_sizes(values: Iterable[str | int]) -> tuple[int, ...]:
    """Batch sizes from repeated and/or comma-separated values, e.g. ['1,8', '64'], sorted, each at least 1."""
    sizes: list[int] = []
    for value in values:
        for part in str(value).split(","):
            text = part.strip()
            if not text.lstrip("-").isdigit() or int(text) < 1:
                raise UsageError(f"Invalid batch size '{text}': it must be a whole number of at least 1.",
                                 hint=f"Give {opt('batch_sizes')} 1,8,64 or repeat it.", field="batch_sizes")
            sizes.append(int(text))
    return tuple(sorted(set(sizes)))


def labelled(data: str | Path | None, labels: str | Path | None, max_accuracy_drop: float | None,
             data_needs_drop: bool = False) -> None:
    """Labelled images (data), their label file (labels) and the top-1 points int8 may lose on them go together.

    data_needs_drop: data is only for max_accuracy_drop here (export), so one without the other is an error.
    """
    if labels is not None and data is None:
        raise UsageError(f"{opt('labels')} maps the classes of {opt('data')}: it needs {opt('data')}.",
                         hint=f"Add {opt('data')} with your labelled images, or drop {opt('labels')}.",
                         field="labels")
    if max_accuracy_drop is not None and data is None:
        raise UsageError(f"{opt('max_accuracy_drop')} is measured on labelled images: it needs {opt('data')}.",
                         hint="Give a folder of class sub-folders (or a CSV of path,label) of your own images.",
                         field="max_accuracy_drop")
    if data_needs_drop and data is not None and max_accuracy_drop is None:
        raise UsageError(f"{opt('data')} is the labelled images for {opt('max_accuracy_drop')}: give both, or "
                         "neither.", field="data")
    if max_accuracy_drop is not None and not max_accuracy_drop >= 0:  # nan too
        raise UsageError(f"{opt('max_accuracy_drop')} is top-1 points int8 may lose, 0 or more (got "
                         f"{max_accuracy_drop:g}).", field="max_accuracy_drop")
    if data is not None:
        from vischoose.inference.datasets import check_source

        check_source(data)


def cluster(text: str | None) -> str | None:
    """A Ray cluster's address (HOST:PORT, ray://HOST:PORT or auto), with Ray installed here (the fleet extra)."""
    if text is None:
        return None
    if importlib.util.find_spec(RAY_MODULE) is None:
        raise UsageError(f"{opt('cluster')} needs Ray, which is not installed here.", hint=FLEET_HINT, field="cluster")
    text = text.strip()
    if text != AUTO_CLUSTER:
        address(text)
    return text


def address(text: str) -> tuple[str, int, bool]:
    """(host, port, whether it is Ray Client's) of HOST:PORT or ray://HOST:PORT."""
    client = text.startswith(CLIENT_SCHEME)
    host, _, port = text[len(CLIENT_SCHEME) if client else 0:].rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"{opt('cluster')} '{text}' is not an address.", hint=ADDRESS_HINT, field="cluster")
    return host.strip("[]"), int(port), client


def node_labels(values: Iterable[str]) -> tuple[str, ...]:
    """LABEL=VALUE texts: the Ray labels a fleet job's nodes must carry (on), each stripped."""
    found = []
    for text in values:
        label, sep, value = text.partition("=")
        if not sep or not label.strip():
            raise UsageError(f"{opt('on')} '{text}' is not LABEL=VALUE.",
                             hint=f"Name a Ray node label and its value, e.g. {opt('on')} instance-type=c7g.4xlarge "
                                  "(vischoose fleet lists the labels).", field="on")
        found.append(f"{label.strip()}={value.strip()}")
    return tuple(found)


def needs_cluster(address: str | None, **given: bool) -> None:
    """Options that only a cluster run takes (given: field -> whether it was given) need a cluster address."""
    names = [name for name, on in given.items() if on]
    if names and not address:
        raise UsageError(f"{' and '.join(opt(n) for n in names)} {'need' if len(names) > 1 else 'needs'} "
                         f"{opt('cluster')}: that is where the nodes are.",
                         hint=f"Add {opt('cluster')} HOST:PORT (or auto).", field=names[0])


def fleet(address: str | None, on: Iterable[str], **given: bool) -> tuple[str | None, tuple[str, ...]]:
    """A request's cluster and on, checked (and the options that need a cluster with them): (address, labels)."""
    labels = node_labels(on)
    needs_cluster(address, on=bool(labels), **given)
    return cluster(address), labels
