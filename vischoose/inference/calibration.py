"""Calibration images: a few dozen of the user's photos (spread over their folder), preprocessed exactly as the
model is evaluated. They calibrate int8 and are the batch every artifact's agreement with eager fp32 is checked on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, TypeVar

from vischoose.errors import ImageError, UsageError

if TYPE_CHECKING:
    import numpy as np

    from vischoose.models.loading import LoadedModel

MAX_CALIBRATION = 64  # images; a few dozen calibrate int8 well, more only slow the export down
T = TypeVar("T")


@dataclass(frozen=True)
class Calibration:
    """Preprocessed images from the user's folder, and the ones that could not be read."""

    batch: "np.ndarray"  # float32 NCHW, preprocessed with the model's evaluation transform
    images: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = ()  # (path, reason)


def preprocessing(loaded: "LoadedModel", input_size: int) -> dict[str, Any]:
    """The model's evaluation preprocessing (timm data config) at the export's input size, JSON-able."""
    from vischoose.inference.prediction import describe_preprocessing, eval_data_config

    config = eval_data_config(loaded.model)
    config["input_size"] = (3, input_size, input_size)
    return describe_preprocessing(config)


def load_calibration(folder: str | Path, config: dict[str, Any], limit: int = MAX_CALIBRATION) -> Calibration:
    """Up to `limit` images from a folder (spread over it), preprocessed as the model was evaluated.

    Raises:
        UsageError: the folder does not exist or is not a folder.
        ImageError: the folder holds no images, or none of them can be read.
    """
    import numpy as np

    from vischoose.inference import images

    folder = Path(folder)
    if not folder.is_dir():
        why = "is not a folder" if folder.exists() else "does not exist"
        raise UsageError(f"Calibration folder {folder} {why}.", hint="Give a folder of your own images (a few dozen).")
    found = images.expand_inputs([folder])
    if isinstance(found[0], ImageError):
        raise found[0]
    paths = spread([p for p in found if isinstance(p, Path)], limit)
    transform = transform_for(config)
    tensors, names, skipped = [], [], []
    for path in paths:
        try:
            tensors.append(transform(images.load_image(path)).numpy())
            names.append(str(path))
        except ImageError as err:
            skipped.append((err.path, err.reason))
    if not tensors:
        raise ImageError(str(folder), f"none of its {len(paths)} images can be read (first: {skipped[0][0]}: "
                         f"{skipped[0][1]})")
    return Calibration(batch=np.stack(tensors).astype(np.float32), images=tuple(names), skipped=tuple(skipped))


def transform_for(config: dict[str, Any]) -> Any:
    """timm's evaluation transform for a preprocessing() description (PIL image -> float tensor)."""
    from timm.data import create_transform

    return create_transform(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})


def spread(items: Sequence[T], limit: int) -> list[T]:
    """At most `limit` items, evenly spaced over the sorted list (so every sub-folder is represented)."""
    if len(items) <= limit:
        return list(items)
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]
