"""Photos as an application receives them, for end-to-end timing (profile --end-to-end): a phone camera's JPEGs made on
the fly when the user gives none, and the image library that decodes them, named with its JPEG codec.

The synthesized photos are 12-megapixel (4032 x 3024, the size of most phone main cameras) JPEGs at quality 90 with
4:2:0 chroma subsampling, as phone cameras write them: smooth random colour fields with fine grain, so the encoder and
decoder do a photo's work (pure noise would make files several times a photo's size and slow the decoder down; a flat
picture would make it too fast). Pillow and numpy only; no torch.
"""

from __future__ import annotations

from pathlib import Path

PHONE_SIZE = (4032, 3024)  # width x height, px: a 12 MP phone camera
PHONE_QUALITY = 90
PHOTOS = 4  # distinct photos made, so the file cache and the decoder do not see one file only
GRAIN = 6.0  # standard deviation of the grain added to the smooth field, in 8-bit levels


def synthesize(folder: str | Path, count: int = PHOTOS, size: tuple[int, int] = PHONE_SIZE,
               quality: int = PHONE_QUALITY, seed: int = 0) -> list[Path]:
    """Write `count` phone-camera-sized JPEGs into folder (made if missing; kept if already there); their paths."""
    import numpy as np
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"photo-{size[0]}x{size[1]}-q{quality}-{seed + i}.jpg"
        if not path.is_file():
            rng = np.random.default_rng(seed + i)
            field = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
            grain = rng.normal(0.0, GRAIN, (size[1], size[0], 1)).astype(np.float32)
            pixels = np.clip(np.asarray(field, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
            staged = path.with_suffix(".part")
            Image.fromarray(pixels).save(staged, format="JPEG", quality=quality, subsampling="4:2:0")
            staged.replace(path)
        paths.append(path)
    return paths


def decoder() -> str:
    """The library that decodes the photos and its JPEG codec: 'Pillow 13.0.0 (libjpeg-turbo 3.2.0)'."""
    import PIL
    from PIL import features

    turbo = features.check_feature("libjpeg_turbo")
    codec = (f"libjpeg-turbo {features.version_feature('libjpeg_turbo')}" if turbo
             else f"libjpeg {features.version('jpg') or '?'}, not libjpeg-turbo")
    return f"Pillow {PIL.__version__} ({codec})"


def describe(paths: list[Path], synthesized: bool) -> str:
    """What the photos are: '4 synthesized 4032x3024 JPEGs (12.2 MP, q90, 1.9 MiB each)' or the folder's median."""
    from statistics import median

    from PIL import Image

    from vischoose.units import MIB

    sizes = []
    for path in paths:
        with Image.open(path) as im:
            sizes.append(im.size)
    width, height = sorted(sizes, key=lambda s: s[0] * s[1])[len(sizes) // 2]
    mib = median(p.stat().st_size for p in paths) / MIB
    kind = f"synthesized {width}x{height} JPEGs, q{PHONE_QUALITY}" if synthesized else f"images, median {width}x{height}"
    return f"{len(paths)} {kind} ({width * height / 1e6:.1f} MP, median {mib:.{1 if mib >= 1 else 2}f} MiB)"
