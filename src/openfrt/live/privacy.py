"""Pixel-level privacy for alert media: pixelate faces, crop the matched face, encode in memory.

Anything an alert keeps shows only the matched person's face; every other face in the frame is
block-averaged until it cannot be recognised. Encoding happens in memory (``cv2.imencode``), so
no image of anyone ever touches a temporary file.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

Box = tuple[float, float, float, float]

#: Pixelated faces are reduced to this many blocks across their (widened) box: at 6 blocks a
#: face keeps no identity, yet the viewer can still see that someone was there.
PIXELATE_BLOCKS = 6

#: Boxes are widened by this share of their size on each side before pixelating, because
#: detectors box the inner face and hairline, ears and jaw identify people too.
PIXELATE_MARGIN = 0.25

#: The probe crop keeps this share of the face box as context on each side.
CROP_MARGIN = 0.5


def expand_box(box: Box, margin: float, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """``box`` grown by ``margin`` of its size on each side, as clipped integer ``(x0, y0, x1, y1)``."""
    x, y, w, h = box
    x0, y0 = int(np.floor(x - margin * w)), int(np.floor(y - margin * h))
    x1, y1 = int(np.ceil(x + w + margin * w)), int(np.ceil(y + h + margin * h))
    return max(0, x0), max(0, y0), min(shape[1], x1), min(shape[0], y1)


def pixelate(rgb: np.ndarray, boxes: Iterable[Box], blocks: int = PIXELATE_BLOCKS) -> np.ndarray:
    """A copy of ``rgb`` with each box (and a margin) replaced by ``blocks`` block averages across."""
    out = rgb.copy()
    for box in boxes:
        x0, y0, x1, y1 = expand_box(box, PIXELATE_MARGIN, rgb.shape)
        if x1 <= x0 or y1 <= y0:
            continue
        region = out[y0:y1, x0:x1]
        across = max(1, min(blocks, x1 - x0))
        down = max(1, min(round(blocks * (y1 - y0) / (x1 - x0)), y1 - y0))
        small = cv2.resize(region, (across, down), interpolation=cv2.INTER_AREA)
        out[y0:y1, x0:x1] = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    return out


def crop(rgb: np.ndarray, box: Box, margin: float = CROP_MARGIN) -> np.ndarray:
    """The face at ``box`` with ``margin`` of context on each side (clipped to the image)."""
    x0, y0, x1, y1 = expand_box(box, margin, rgb.shape)
    return rgb[y0:y1, x0:x1]


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of an RGB image, encoded in memory."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode the image as JPEG")
    return data.tobytes()
