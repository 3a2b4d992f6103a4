"""Classify images: preprocessing from the model's own data config, top-k -> list[Prediction].

Preprocessing is timm's evaluation transform (resolve_data_config with the test size where the
pretrained config gives one, then create_transform): the input size, interpolation, crop and
mean/std the published accuracy was measured with. torch and timm are imported inside functions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from vischoose.errors import ImageError, UsageError, opt
from vischoose.inference import images as image_io

if TYPE_CHECKING:
    import torch
    from PIL import Image as PILImage

    from vischoose.models.loading import LoadedModel

    ImageInput = str | Path | PILImage.Image

DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16", "half": "float16"}
_SYNSET = re.compile(r"^n\d{8}$")


@dataclass(frozen=True)
class Prediction:
    """One class for one image: its readable label, index in the classifier, and probability (0-1)."""

    label: str
    index: int
    probability: float
    class_id: str | None = None  # ImageNet synset (n07920052) or the config's label name


@dataclass(frozen=True)
class ImagePrediction:
    """The top-k classes of one image, or why the image could not be classified."""

    path: str
    predictions: tuple[Prediction, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the image was classified."""
        return self.error is None


@dataclass(frozen=True)
class PredictResult:
    """What predict did: the model, the conditions and preprocessing, and one entry per image."""

    model: str
    tag: str
    weights: str
    device: str
    dtype: str
    preprocessing: dict[str, Any]
    images: tuple[ImagePrediction, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> list[ImagePrediction]:
        """The images that could not be classified."""
        return [item for item in self.images if not item.ok]


@dataclass(frozen=True)
class ClassLabels:
    """Names of a classifier's outputs: ids (synsets or config label names) and readable labels."""

    ids: dict[int, str]
    labels: dict[int, str]

    def label(self, index: int) -> str:
        """The readable label of an output index."""
        return self.labels.get(index) or self.ids.get(index) or f"class {index}"


@dataclass
class Classifier:
    """A model ready to classify: on its device and dtype, with its eval transform and class labels."""

    loaded: "LoadedModel"
    device: "torch.device"
    dtype: "torch.dtype"
    data_config: dict[str, Any]
    transform: Callable[["PILImage.Image"], "torch.Tensor"]
    classes: ClassLabels

    def logits(self, batch: "torch.Tensor") -> "torch.Tensor":
        """Float32 logits on the CPU for a batch of preprocessed images."""
        import torch

        with torch.inference_mode():
            out = self.loaded.model(batch.to(self.device, self.dtype, non_blocking=True))
        return out.float().cpu()

    @property
    def num_classes(self) -> int:
        """Number of classifier outputs."""
        return int(getattr(self.loaded.model, "num_classes", 0) or len(self.classes.ids))


def resolve_device(text: str) -> "torch.device":
    """A torch device from 'cpu', 'cuda', 'cuda:N' or 'mps', checked to exist.

    Raises:
        UsageError: an unknown device name, or one this machine does not have.
    """
    import torch

    try:
        device = torch.device(text)
    except RuntimeError as err:
        raise UsageError(f"Unknown device '{text}' (expected cpu, cuda, cuda:N or mps).") from err
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise UsageError(f"Device '{text}' is not available: torch {torch.__version__} sees {count} CUDA "
                             "device(s).", hint=f"Use {opt('device')} cpu.")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"Device '{text}' is not available on this machine.", hint=f"Use {opt('device')} cpu.")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"Unsupported device '{text}' (expected cpu, cuda, cuda:N or mps).")
    return device


def resolve_dtype(text: str) -> "torch.dtype":
    """A torch floating dtype from float32/bfloat16/float16 (or fp32/bf16/fp16).

    Raises:
        UsageError: any other name.
    """
    import torch

    name = DTYPES.get(text.lower())
    if name is None:
        raise UsageError(f"Unknown dtype '{text}' (expected one of: float32, bfloat16, float16).")
    return getattr(torch, name)


def class_labels(pretrained_cfg: dict[str, Any], num_classes: int) -> ClassLabels:
    """The model's own label names where its config has them, else ImageNet's for ImageNet-sized heads."""
    names = pretrained_cfg.get("label_names")
    if names:
        ids = {int(k): str(v) for k, v in names.items()} if isinstance(names, dict) else dict(enumerate(names))
        described = pretrained_cfg.get("label_descriptions") or {}
        return ClassLabels(ids=ids, labels={i: described.get(v) or _synset_lemma(v) or v for i, v in ids.items()})
    from timm.data import infer_imagenet_subset

    subset = infer_imagenet_subset({"num_classes": num_classes})
    if subset is None:
        return ClassLabels(ids={}, labels={})
    info = _imagenet_info(subset)
    synsets = info.label_names()
    return ClassLabels(ids=dict(enumerate(synsets)),
                       labels={i: info.label_name_to_description(s) for i, s in enumerate(synsets)})


@cache
def _imagenet_info(subset: str = "imagenet-1k") -> Any:
    """timm's ImageNet class names (synsets, WordNet lemmas), parsed once."""
    from timm.data import ImageNetInfo

    return ImageNetInfo(subset)


def _synset_lemma(name: str) -> str | None:
    """The WordNet lemma of an ImageNet synset id (n07920052 -> espresso), else None."""
    if not _SYNSET.match(name):
        return None
    try:
        return _imagenet_info().label_name_to_description(name)
    except KeyError:
        return None


def eval_data_config(model: "torch.nn.Module") -> dict[str, Any]:
    """timm's evaluation preprocessing for a model: the test size and crop where its config has them."""
    from timm.data import resolve_data_config

    return resolve_data_config(model=model, use_test_size=True)


def prepare(model: "str | LoadedModel", device: str = "cpu", dtype: str = "float32",
            checkpoint: str | None = None) -> Classifier:
    """Load a model (pretrained weights) and ready it for classification on a device and dtype.

    Raises:
        UsageError, UnknownModelError, WeightsUnavailableError, CorruptWeightsError.
    """
    from timm.data import create_transform

    from vischoose.models.loading import load_model

    torch_device, torch_dtype = resolve_device(device), resolve_dtype(dtype)
    loaded = model if not isinstance(model, str) else load_model(model, "pretrained", checkpoint=checkpoint)
    loaded.model.to(torch_device, torch_dtype).eval()
    config = eval_data_config(loaded.model)
    num_classes = int(getattr(loaded.model, "num_classes", 0) or 0)
    if num_classes <= 0:
        raise UsageError(f"{loaded.ref.display} has no classifier head (num_classes 0): it cannot classify images.",
                         hint="Pick a tag fine-tuned on a labelled data set, e.g. one ending in _in1k.")
    return Classifier(loaded=loaded, device=torch_device, dtype=torch_dtype, data_config=config,
                      transform=create_transform(**config), classes=class_labels(loaded.pretrained_cfg, num_classes))


def predict(images: "ImageInput | Iterable[ImageInput]", model: "str | LoadedModel", top_k: int = 5,
            device: str = "cpu", dtype: str = "float32", batch_size: int = 16, checkpoint: str | None = None,
            max_pixels: int = image_io.MAX_PIXELS) -> PredictResult:
    """Classify image files, folders, glob patterns or PIL images; unreadable ones get an error entry.

    Raises:
        UsageError: a bad top_k, batch_size, device or dtype; model errors as in prepare().
    """
    if top_k < 1 or batch_size < 1:
        raise UsageError(f"top_k and batch_size must be at least 1 (got {top_k} and {batch_size}).")
    items = _expand(images)
    if isinstance(model, str):  # a wrong model name or checkpoint is reported first, as the images need a model
        from vischoose.models.loading import (
            check_checkpoint,
            check_timm_name,
            parse_model_ref,
        )

        ref = parse_model_ref(model)
        if ref.kind == "timm" and ref.entry is None and ref.timm_name:
            check_timm_name(ref.timm_name)
        if checkpoint is not None:
            check_checkpoint(checkpoint)
    missing = [item for item in items if isinstance(item, ImageError)]
    if missing and len(missing) == len(items):  # before the weights load (or download): nothing to classify
        if len(missing) == 1:
            raise missing[0]
        raise UsageError(f"None of the {len(missing)} inputs is an image: {missing[0]} (and "
                         f"{len(missing) - 1} more).", hint="Check the paths.")
    classifier = prepare(model, device, dtype, checkpoint)
    results: list[ImagePrediction] = []
    for start in range(0, len(items), batch_size):
        results.extend(_classify_batch(classifier, items[start:start + batch_size], top_k, max_pixels))
    loaded = classifier.loaded
    return PredictResult(model=loaded.ref.display, tag=loaded.tag, weights=loaded.weights_label,
                         device=str(classifier.device), dtype=dtype_name(classifier.dtype),
                         preprocessing=describe_preprocessing(classifier.data_config), images=tuple(results))


def _expand(images: Any) -> list[Any]:
    from PIL import Image

    if isinstance(images, (str, Path, Image.Image)):
        images = [images]
    named: list[Any] = []
    for number, item in enumerate(images):
        if isinstance(item, Image.Image):
            named.append((f"<image {number}>", item))
        else:
            named.extend(image_io.expand_inputs([item]))
    return named


def _classify_batch(classifier: Classifier, batch: Sequence[Any], top_k: int,
                    max_pixels: int) -> list[ImagePrediction]:
    import torch

    slots: list[ImagePrediction | None] = []
    tensors = []
    for item in batch:
        try:
            tensors.append(preprocess(classifier, item, max_pixels))
            slots.append(None)
        except ImageError as err:
            slots.append(ImagePrediction(path=err.path, error=err.reason))
    if tensors:
        probs = classifier.logits(torch.stack(tensors)).softmax(dim=-1)
        values, indices = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    done = iter(range(len(tensors)))
    out = []
    for item, slot in zip(batch, slots):
        if slot is None:
            row = next(done)
            slot = ImagePrediction(path=_name(item), predictions=tuple(
                Prediction(label=classifier.classes.label(int(i)), index=int(i), probability=float(p),
                           class_id=classifier.classes.ids.get(int(i)))
                for p, i in zip(values[row], indices[row])))
        out.append(slot)
    return out


def preprocess(classifier: Classifier, item: Any, max_pixels: int = image_io.MAX_PIXELS) -> "torch.Tensor":
    """One input (path, (name, PIL image) or ImageError from expand_inputs) as a preprocessed tensor.

    Raises:
        ImageError: the image cannot be read.
    """
    if isinstance(item, ImageError):
        raise item
    image = image_io.to_rgb(item[1]) if isinstance(item, tuple) else image_io.load_image(item, max_pixels)
    return classifier.transform(image)


def _name(item: Any) -> str:
    return item[0] if isinstance(item, tuple) else str(item)


def dtype_name(dtype: "torch.dtype") -> str:
    """'float32' for torch.float32."""
    return str(dtype).removeprefix("torch.")


def describe_preprocessing(config: dict[str, Any]) -> dict[str, Any]:
    """The data config as plain JSON-able values (input size, interpolation, crop, mean/std)."""
    return {key: list(value) if isinstance(value, tuple) else value for key, value in config.items()}
