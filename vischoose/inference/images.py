"""Safe image loading: inputs to files, files to RGB images, every failure an ImageError naming the file.

Images are opened with Pillow restricted to raster formats that decode without external programs
(no EPS/ghostscript), their size is checked against a pixel limit before any pixel is decoded
(decompression bombs), EXIF orientation is applied, and every colour mode becomes 8-bit RGB.
Pillow only; torch is not imported here.
"""

from __future__ import annotations

import glob
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from vischoose.errors import ImageError

if TYPE_CHECKING:
    from PIL import Image as PILImage

# 100 megapixels: ~286 MiB once decoded to 8-bit RGB; larger phone and medium-format photos exist,
# so the limit is a parameter of load_image.
MAX_PIXELS = 100_000_000
SAFE_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "BMP", "DIB", "TIFF", "WEBP", "PPM", "TGA", "ICO", "QOI", "AVIF")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".mpo", ".png", ".gif", ".bmp", ".dib", ".tif", ".tiff",
                  ".webp", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico", ".qoi", ".avif")
_GLOB_CHARS = frozenset("*?[")
_WHITE = (255, 255, 255)


def is_image_name(path: Path) -> bool:
    """Whether a file name has an image suffix (case-insensitive) and is not hidden."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def images_in_folder(folder: Path) -> list[Path]:
    """Image files under a folder, recursively, sorted by path."""
    return sorted(p for p in folder.rglob("*") if is_image_name(p) and p.is_file())


def expand_inputs(texts: Iterable[str | Path]) -> list[Path | ImageError]:
    """Turn files, folders and glob patterns into image paths, in the order given.

    An input that yields nothing (a missing file, a folder without images, a pattern without
    matches) becomes an ImageError in its place, so callers can report it and go on.
    """
    found: list[Path | ImageError] = []
    for text in texts:
        path = Path(text).expanduser()
        if path.is_dir():
            inside = images_in_folder(path)
            found.extend(inside or [ImageError(str(text), "folder holds no images",
                                               hint=f"Image files end in {', '.join(IMAGE_SUFFIXES[:8])}, ...")])
        elif path.exists() or not (_GLOB_CHARS & set(str(text))):
            found.append(path if path.exists() else ImageError(str(text), "no such file"))
        else:
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(str(text)), recursive=True))
            files = [m for m in matches if m.is_file() and is_image_name(m)]
            found.extend(files or [ImageError(str(text), "the pattern matches no image files")])
    return found


def load_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> "PILImage.Image":
    """Read an image file into an 8-bit RGB image, upright per its EXIF orientation; first frame only.

    Raises:
        ImageError: the file is missing, unreadable, not an image, truncated, or over max_pixels.
    """
    from PIL import Image, UnidentifiedImageError

    name = str(path)
    path = Path(path)
    if not path.is_file():
        raise ImageError(name, "not a file" if path.exists() else "no such file")
    if path.stat().st_size == 0:
        raise ImageError(name, "the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # the pixel limit is checked below, before decoding; Pillow's own warning would be noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=_formats()) as im:
                _check_size(name, im.size, max_pixels)
                im.seek(0)  # animated GIF/WebP/PNG, multi-page TIFF: the first frame
                im.load()
                return to_rgb(_upright(im))
    except UnidentifiedImageError as err:
        raise ImageError(name, "not an image Pillow can read (unknown format or not an image file)") from err
    except Image.DecompressionBombError as err:
        raise ImageError(name, f"refused: more than {max_pixels:,} pixels (a decompression bomb?)") from err
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageError(name, _decode_reason(err)) from err


def to_rgb(im: "PILImage.Image") -> "PILImage.Image":
    """Any Pillow colour mode as 8-bit RGB: 16-bit and float scaled, not clipped; alpha over white."""
    from PIL import Image

    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _high_depth_to_rgb(im)
    if (im.mode == "P" and "transparency" in im.info) or im.mode == "PA":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "RGBa", "La"):
        # transparent pixels carry arbitrary colours (often black); show them as the white page they sit on
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if im.mode == "CMYK" and im.info.get("icc_profile"):
        return _cmyk_with_profile(im)
    return im if im.mode == "RGB" else im.convert("RGB")


def _formats() -> list[str]:
    from PIL import Image

    Image.init()
    return [f for f in SAFE_FORMATS if f in Image.OPEN]


def _check_size(name: str, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(name, f"the header gives an empty size {width}x{height}")
    if width * height > max_pixels:
        raise ImageError(name, f"refused: {width}x{height} is {width * height:,} pixels, over the limit of "
                         f"{max_pixels:,} (a decompression bomb?)",
                         hint="Shrink the image, or raise max_pixels if you trust it.")


def _upright(im: "PILImage.Image") -> "PILImage.Image":
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(im) or im
    except (SyntaxError, ValueError, KeyError, TypeError):  # malformed EXIF: keep the pixels as stored
        return im


def _high_depth_to_rgb(im: "PILImage.Image") -> "PILImage.Image":
    """16-bit integer and float grey images: scale to 0-255 (Pillow's convert would clip)."""
    import numpy as np
    from PIL import Image

    values = np.asarray(im.convert("F") if im.mode.startswith("I;16") else im, dtype=np.float64)
    if im.mode == "F":
        top = 1.0 if values.size and np.nanmax(values) <= 1.0 else 255.0  # 0-1 floats, else 0-255
    else:
        top = 65535.0  # 16-bit samples: Pillow opens 16-bit grey PNG and TIFF as I;16 (older Pillow: I)
    grey = np.clip(np.nan_to_num(values) * (255.0 / top), 0, 255).round().astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def _cmyk_with_profile(im: "PILImage.Image") -> "PILImage.Image":
    """CMYK through its embedded ICC profile to sRGB; Pillow's plain convert ignores the profile."""
    import io

    from PIL import ImageCms

    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(im.info["icc_profile"]))
        return ImageCms.profileToProfile(im, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError):  # an unusable profile: fall back to the plain formula
        return im.convert("RGB")


def _decode_reason(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    if "truncated" in text or isinstance(err, EOFError):
        return f"the file is truncated or corrupt ({text})"
    if isinstance(err, PermissionError):
        return "permission denied"
    return f"cannot be decoded ({text.splitlines()[0][:120]})"
