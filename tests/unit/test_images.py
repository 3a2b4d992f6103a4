"""Image loading: every colour mode to RGB, EXIF orientation, and each broken-image case through the CLI."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vischoose.cli import app
from vischoose.errors import ImageError
from vischoose.inference.images import expand_inputs, load_image

MODEL = "test_resnet.r160_in1k"


# ---- image factories (written at test time) ----------------------------------------------------------

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes | None) -> bytes:
    """A PNG written by hand; rows=None gives a header with a tiny, incomplete IDAT (a 'bomb')."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    data = zlib.compress(rows) if rows is not None else zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def rgb16_png(path: Path, value: int, size: int = 8) -> Path:
    """A 16-bit-per-channel RGB PNG of one grey value (Pillow cannot write these)."""
    row = b"\0" + struct.pack(">H", value) * 3 * size
    path.write_bytes(png_bytes(size, size, 16, 2, row * size))
    return path


def modes_folder(root: Path) -> dict[str, Path]:
    """One small image per colour mode and container quirk that must load."""
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    rgb = Image.new("RGB", (40, 30), (200, 30, 30))
    out["rgb"] = root / "rgb.jpg"
    rgb.save(out["rgb"])
    out["grey"] = root / "grey.png"
    rgb.convert("L").save(out["grey"])
    out["bilevel"] = root / "bilevel.bmp"
    rgb.convert("1").save(out["bilevel"])
    out["palette"] = root / "palette.gif"
    rgb.convert("P", palette=Image.Palette.ADAPTIVE).save(out["palette"])
    out["cmyk"] = root / "cmyk.jpg"
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(out["cmyk"])
    out["grey16"] = root / "grey16.png"
    Image.fromarray(np.full((30, 40), 40000, dtype=np.uint16)).save(out["grey16"])
    out["rgb16"] = rgb16_png(root / "rgb16.png", 40000)
    out["rgba"] = root / "rgba.png"
    Image.new("RGBA", (40, 30), (0, 0, 0, 0)).save(out["rgba"])
    out["tiff16"] = root / "grey16.tif"
    Image.fromarray(np.full((30, 40), 65535, dtype=np.uint16)).save(out["tiff16"])
    out["webp"] = root / "photo.webp"
    rgb.save(out["webp"])
    return out


def animated_gif(path: Path) -> Path:
    """Two frames: red, then blue."""
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def truncated_jpeg(path: Path) -> Path:
    """A real JPEG cut in half."""
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def exif_rotated_jpeg(path: Path) -> Path:
    """Stored 60x30 (landscape) with EXIF orientation 6: displayed as 30x60, left half red stored."""
    im = Image.new("RGB", (60, 30), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    im.save(path, exif=exif.tobytes())
    return path


# ---- library --------------------------------------------------------------------------------------------

def test_colour_modes_become_rgb_with_the_right_values(tmp_path):
    files = modes_folder(tmp_path)
    pixels = {name: load_image(path).getpixel((5, 5)) for name, path in files.items()}
    assert all(load_image(p).mode == "RGB" for p in files.values())
    assert pixels["cmyk"] == (255, 0, 0)
    # 16-bit samples are scaled (40000/65535 -> 156), not clipped to 255 as Pillow's convert does
    assert pixels["grey16"] == (156, 156, 156)
    assert pixels["rgb16"] == (156, 156, 156)
    assert pixels["tiff16"] == (255, 255, 255)
    assert pixels["rgba"] == (255, 255, 255)  # fully transparent: the white page, not black
    assert pixels["grey"][0] == pixels["grey"][1] == pixels["grey"][2]


def test_palette_with_transparency_is_composited_over_white(tmp_path):
    im = Image.new("P", (8, 8), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.putpixel((1, 1), 1)
    im.save(tmp_path / "t.png", transparency=0)
    loaded = load_image(tmp_path / "t.png")
    assert loaded.getpixel((0, 0)) == (255, 255, 255)
    assert loaded.getpixel((1, 1)) == (255, 0, 0)


def test_exif_orientation_is_applied(tmp_path):
    loaded = load_image(exif_rotated_jpeg(tmp_path / "rotated.jpg"))
    assert loaded.size == (30, 60)
    red, blue = loaded.getpixel((15, 5)), loaded.getpixel((15, 55))
    assert red[0] > 200 > red[2] and blue[2] > 200 > blue[0]  # stored left (red) is displayed on top


def test_animated_gif_gives_the_first_frame(tmp_path):
    assert load_image(animated_gif(tmp_path / "anim.gif")).getpixel((0, 0)) == (255, 0, 0)


def test_pixel_limit_is_checked_before_decoding(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(png_bytes(4000, 3000, 8, 2, None))
    with pytest.raises(ImageError) as err:
        load_image(path, max_pixels=10_000_000 - 1)
    assert err.value.reason == ("refused: 4000x3000 is 12,000,000 pixels, over the limit of 9,999,999 "
                                "(a decompression bomb?)")


def test_bomb_is_refused_without_using_memory(tmp_path):
    """A 40000x40000 PNG header (4.8 GB decoded) in a 100-byte file: refused at the header, RSS stays small."""
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(40000, 40000, 8, 2, None))
    # VmHWM is this process's own peak: ru_maxrss would include the (large) pytest parent's, kept across exec
    code = ("import sys\nfrom vischoose.inference.images import load_image\nfrom vischoose.errors import ImageError\n"
            "try:\n    load_image(sys.argv[1])\nexcept ImageError as e:\n    print(e.reason)\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
            "print(int(hwm.split()[1]) // 1024)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                         timeout=60).stdout.splitlines()
    assert out[0] == "refused: more than 100,000,000 pixels (a decompression bomb?)"
    assert int(out[1]) < 200  # MiB peak for the whole interpreter


def test_expand_inputs_keeps_order_and_reports_what_yields_nothing(tmp_path):
    (tmp_path / "a").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "a" / "x.png")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    found = expand_inputs([str(tmp_path / "a"), str(tmp_path / "missing.jpg"), str(tmp_path / "empty"),
                           str(tmp_path / "a" / "*.png"), str(tmp_path / "*.jpeg")])
    assert found[0] == tmp_path / "a" / "x.png"
    assert [str(e) for e in found[1:3]] == [f"{tmp_path}/missing.jpg: no such file",
                                           f"{tmp_path}/empty: folder holds no images"]
    assert found[3] == tmp_path / "a" / "x.png"
    assert str(found[4]) == f"{tmp_path}/*.jpeg: the pattern matches no image files"


# ---- each case through the CLI: exit code and message ----------------------------------------------------

@pytest.fixture
def predict(runner, cached_model):
    cached_model(MODEL)

    def run(*paths: Path | str):
        return runner.invoke(app, ["predict", *map(str, paths), "--model", MODEL, "--json"])

    return run


@pytest.mark.parametrize("case, reason", [
    ("missing", "no such file"),
    ("empty_dir", "folder holds no images"),
    ("zero_bytes", "the file is empty (0 bytes)"),
    ("text_as_jpg", "not an image Pillow can read (unknown format or not an image file)"),
    ("truncated", "the file is truncated or corrupt ("),
    ("bomb", "refused: more than 100,000,000 pixels (a decompression bomb?)"),
    ("over_limit", "refused: 12000x10000 is 120,000,000 pixels, over the limit of 100,000,000 "
                   "(a decompression bomb?)"),
])
def test_broken_image_is_named_and_the_others_still_classified(predict, tmp_path, case, reason):
    bad = tmp_path / {"missing": "nope.jpg", "empty_dir": "photos", "zero_bytes": "zero.jpg",
                      "text_as_jpg": "notes.jpg", "truncated": "cut.jpg", "bomb": "bomb.png",
                      "over_limit": "big.png"}[case]
    if case == "empty_dir":
        bad.mkdir()
    elif case == "zero_bytes":
        bad.write_bytes(b"")
    elif case == "text_as_jpg":
        bad.write_text("hello, I am not a JPEG\n")
    elif case == "truncated":
        truncated_jpeg(bad)
    elif case == "bomb":
        bad.write_bytes(png_bytes(40000, 40000, 8, 2, None))
    elif case == "over_limit":
        bad.write_bytes(png_bytes(12000, 10000, 8, 2, None))
    good = tmp_path / "good.jpg"
    Image.new("RGB", (50, 40), (10, 120, 200)).save(good)
    result = predict(bad, good)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"Error: {bad}: {reason}")
    assert lines[1] == "Error: 1 of 2 images could not be classified."
    images = json.loads(result.stdout)["data"]["images"]
    assert [i["path"] for i in images] == [str(bad), str(good)]
    assert images[0]["error"].startswith(reason) and len(images[1]["predictions"]) == 5


def test_every_colour_mode_and_container_classifies(predict, tmp_path):
    files = modes_folder(tmp_path / "modes")
    animated_gif(tmp_path / "modes" / "anim.gif")
    exif_rotated_jpeg(tmp_path / "modes" / "rotated.jpg")
    result = predict(tmp_path / "modes")
    assert result.exit_code == 0, result.stderr
    images = json.loads(result.stdout)["data"]["images"]
    assert len(images) == len(files) + 2
    assert all(i["error"] is None and len(i["predictions"]) == 5 for i in images)


def test_huge_legal_image_is_resized_not_refused(predict, tmp_path):
    path = tmp_path / "huge.png"
    Image.new("RGB", (6000, 4000), (90, 160, 40)).save(path, compress_level=1)
    result = predict(path)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["data"]["preprocessing"]["input_size"] == [3, 160, 160]


def test_glob_pattern_from_the_command_line(predict, tmp_path):
    for name in ("a.png", "b.png"):
        Image.new("RGB", (20, 20)).save(tmp_path / name)
    result = predict(tmp_path / "*.png", tmp_path / "*.tif")
    assert result.exit_code == 2
    assert [i["path"] for i in json.loads(result.stdout)["data"]["images"]] == \
        [str(tmp_path / "a.png"), str(tmp_path / "b.png"), str(tmp_path / "*.tif")]
    assert result.stderr.splitlines()[0] == f"Error: {tmp_path}/*.tif: the pattern matches no image files"
