"""Every supported way of giving an image, and every way an image can be bad."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from openfrt.errors import (
    EmptyImageError,
    ImageNotFoundError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedImageError,
)
from openfrt.vision.image import load_image


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.fixture
def gradient() -> Image.Image:
    ramp = np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))
    return Image.fromarray(np.stack([ramp, ramp[::-1], np.full_like(ramp, 128)], axis=2))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP"])
def test_each_format_decodes_to_rgb(gradient: Image.Image, fmt: str) -> None:
    rgb = load_image(encode(gradient, fmt))
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - np.asarray(gradient, dtype=int)).mean() < 6


def test_path_bytes_and_array_give_the_same_pixels(gradient: Image.Image, tmp_path: Path) -> None:
    path = tmp_path / "g.png"
    gradient.save(path)
    from_path, from_bytes = load_image(path), load_image(path.read_bytes())
    from_array = load_image(np.asarray(gradient))
    assert np.array_equal(from_path, from_bytes) and np.array_equal(from_path, from_array)
    assert np.array_equal(load_image(str(path)), from_path)


def test_greyscale_becomes_three_equal_channels() -> None:
    grey = Image.fromarray(np.arange(100, dtype=np.uint8).reshape(10, 10))
    rgb = load_image(encode(grey, "PNG"))
    assert rgb.shape == (10, 10, 3) and np.array_equal(rgb[..., 0], rgb[..., 2])


def test_rgba_is_composited_on_white() -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[:2, ..., 3] = 255  # top half opaque red, bottom half transparent
    rgb = load_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert tuple(rgb[0, 0]) == (255, 0, 0) and tuple(rgb[3, 3]) == (255, 255, 255)


def test_sixteen_bit_png_is_rescaled_not_clipped() -> None:
    deep = np.array([[0, 32768, 65535]], dtype=np.uint16)
    rgb = load_image(encode(Image.fromarray(deep), "PNG"))
    assert list(rgb[0, :, 0]) == [0, 128, 255]
    assert list(load_image(deep)[0, :, 1]) == [0, 128, 255]


def test_exif_orientation_is_applied(gradient: Image.Image) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    rgb = load_image(encode(gradient, "JPEG", exif=exif))
    assert rgb.shape == (64, 48, 3)


def test_float_and_single_channel_arrays() -> None:
    assert load_image(np.ones((5, 6), dtype=np.float32))[0, 0].tolist() == [255, 255, 255]
    assert load_image(np.zeros((5, 6, 1), dtype=np.uint8)).shape == (5, 6, 3)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFoundError, match="nope.jpg: no such file"):
        load_image(tmp_path / "nope.jpg")


def test_directory_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFoundError, match="is a directory"):
        load_image(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(EmptyImageError, match="empty.jpg: is empty"):
        load_image(empty)


def test_non_image_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture\n")
    with pytest.raises(NotAnImageError, match="notes.jpg: is not a recognised image"):
        load_image(text)


def test_unsupported_format_is_refused(gradient: Image.Image) -> None:
    with pytest.raises(NotAnImageError, match="GIF"):
        load_image(encode(gradient, "GIF"))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file(gradient: Image.Image, tmp_path: Path, fmt: str) -> None:
    data = encode(gradient, fmt)
    cut = tmp_path / f"cut.{fmt.lower()}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(TruncatedImageError, match="truncated or corrupt"):
        load_image(cut)


def test_pixel_limit_refuses_decompression_bombs() -> None:
    # A 20000x20000 PNG of one colour is a few kilobytes but 400 megapixels once decoded.
    bomb = encode(Image.new("L", (20000, 20000)), "PNG")
    assert len(bomb) < 1_000_000
    with pytest.raises(ImageTooLargeError, match="over the limit of 50,000,000"):
        load_image(bomb)
    with pytest.raises(ImageTooLargeError, match="limit of 100"):
        load_image(np.zeros((20, 20), dtype=np.uint8), max_pixels=100)


@pytest.mark.parametrize(
    "array, problem",
    [
        (np.zeros((4, 4, 2), dtype=np.uint8), "HxW"),
        (np.zeros((0, 4), dtype=np.uint8), "no pixels"),
        (np.full((4, 4), np.nan, dtype=np.float32), "NaN"),
        (np.zeros((4, 4), dtype=np.int64), "unsupported pixel type"),
    ],
)
def test_bad_arrays(array: np.ndarray, problem: str) -> None:
    with pytest.raises((NotAnImageError, EmptyImageError), match=problem):
        load_image(array)
