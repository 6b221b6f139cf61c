"""Turn whatever the user gives us (a path, bytes, or an array) into an RGB ``uint8`` array.

All decoding goes through Pillow so that every format, colour mode and EXIF orientation is
handled in one place, and every way an input can be bad maps to one specific exception.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from openfrt.errors import (
    EmptyImageError,
    ImageNotFoundError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedImageError,
)

ImageInput = Union[str, Path, bytes, bytearray, memoryview, np.ndarray]

#: Default decompression-bomb guard: 50 megapixels is larger than any camera still we expect.
DEFAULT_MAX_PIXELS = 50_000_000

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "MPO"})


def describe_source(source: ImageInput) -> str:
    """A short name for an input, used in error messages and CLI output."""
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, np.ndarray):
        return f"<array {source.shape} {source.dtype}>"
    return f"<{len(source)} bytes>"


def load_image(source: ImageInput, max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None) -> np.ndarray:
    """Decode ``source`` into an ``HxWx3`` RGB ``uint8`` array, upright per its EXIF orientation.

    ``name`` overrides how the input is named in errors (e.g. the original upload file name).
    """
    label = name or describe_source(source)
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, label, max_pixels)
    data = _read_bytes(source, label)
    return _decode(data, label, max_pixels)


def _read_bytes(source: str | Path | bytes | bytearray | memoryview, label: str) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = Path(source)
        if not path.exists():
            raise ImageNotFoundError(label, "no such file")
        if path.is_dir():
            raise ImageNotFoundError(label, "is a directory, not an image file")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageNotFoundError(label, f"cannot be read ({exc.strerror or exc})") from exc
    if not data:
        raise EmptyImageError(label, "is empty (0 bytes)")
    return data


def _decode(data: bytes, label: str, max_pixels: int) -> np.ndarray:
    with warnings.catch_warnings():
        # Pillow warns, then errors, on huge images; we apply our own limit first instead.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError as exc:
            raise NotAnImageError(label, "is not a recognised image (JPEG, PNG, WebP or BMP)") from exc
        except Image.DecompressionBombError as exc:
            raise ImageTooLargeError(label, f"has too many pixels (far over the limit of {max_pixels:,})") from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise TruncatedImageError(label, f"image header is truncated or corrupt ({exc})") from exc
        if image.format not in SUPPORTED_FORMATS:
            raise NotAnImageError(label, f"is a {image.format} image; supported: JPEG, PNG, WebP, BMP")
        _check_size(image.width, image.height, label, max_pixels)
        try:
            image.load()
            image = ImageOps.exif_transpose(image)
        except Image.DecompressionBombError as exc:
            raise ImageTooLargeError(label, f"has too many pixels (over the limit of {max_pixels:,})") from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise TruncatedImageError(label, f"image data is truncated or corrupt ({exc})") from exc
    return _pil_to_rgb(image)


def _check_size(width: int, height: int, label: str, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise EmptyImageError(label, "has no pixels")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            label, f"is {width}x{height} = {width * height:,} pixels, over the limit of {max_pixels:,}"
        )


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to RGB; 16/32-bit greyscale is rescaled rather than clipped."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        return _scale_to_uint8(array, 65535.0 if image.mode.startswith("I;16") else None)[..., None].repeat(3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Composite transparent areas onto white, as an image viewer would show them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def _scale_to_uint8(array: np.ndarray, full_scale: float | None) -> np.ndarray:
    if full_scale is None:
        full_scale = 65535.0 if array.max(initial=0) > 255 else 255.0
    return np.clip(np.rint(array * (255.0 / full_scale)), 0, 255).astype(np.uint8)


def _array_to_rgb(array: np.ndarray, label: str, max_pixels: int) -> np.ndarray:
    """Accept HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA) arrays of uint8, uint16 or float in 0..1."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise NotAnImageError(label, "must be an HxW, HxWx3 or HxWx4 array")
    if array.size == 0:
        raise EmptyImageError(label, "has no pixels")
    _check_size(array.shape[1], array.shape[0], label, max_pixels)
    array = _array_to_uint8(array, label)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    elif array.shape[2] == 4:
        alpha = array[..., 3:4].astype(np.float32) / 255.0
        array = np.rint(array[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(array)


def _array_to_uint8(array: np.ndarray, label: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return _scale_to_uint8(array.astype(np.float64), 65535.0)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise NotAnImageError(label, "contains NaN or infinite values")
        return _scale_to_uint8(array.astype(np.float64), 1.0)
    raise NotAnImageError(label, f"has unsupported pixel type {array.dtype}; use uint8, uint16 or float")
