"""Whether an image about to be enrolled is one the subject already has.

Enrolling a photograph twice (a second click, ``openfrt enrol-folder`` run again) adds no
information, only weight: the subject's mean template leans towards that photograph, and the
record says the subject has more reference images than it has. So enrolment skips such an image
and says which stored image it repeats.

An image repeats a stored one when its file is byte for byte the same, or when it is the same
picture saved again (re-encoded, resized, recompressed): the same face — templates matching at
the model's own 1:1 threshold — in an image that looks the same once reduced to a small grey
thumbnail. Two photographs of a person taken apart, even moments apart, differ far more in
that thumbnail than a picture does from its re-encoded copy (``benchmarks/duplicates.py``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

#: Side of the grey thumbnail two pictures are compared at.
THUMBNAIL_SIDE = 32

#: Correlation of two thumbnails at or above which they are one picture.
SAME_PICTURE_CORRELATION = 0.99

#: Width/height ratios further apart than this are different pictures (a crop is a new picture).
ASPECT_TOLERANCE = 0.02

Match = Literal["same_file", "same_picture"]


@dataclass(frozen=True)
class Picture:
    """What two images are compared by: their file's digest and their thumbnail."""

    digest: bytes
    thumbnail: np.ndarray
    aspect: float

    @classmethod
    def of(cls, data: bytes, rgb: np.ndarray) -> Picture:
        """``data`` is the file as given, ``rgb`` its decoded (and upright) pixels."""
        height, width = rgb.shape[:2]
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        small = cv2.resize(grey, (THUMBNAIL_SIDE, THUMBNAIL_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
        small -= small.mean()
        norm = float(np.linalg.norm(small))
        thumbnail = small.ravel() / norm if norm > 0 else small.ravel()
        return cls(hashlib.sha256(data).digest(), thumbnail, width / height)

    def repeats(self, other: Picture, same_face: bool) -> Match | None:
        """How this picture repeats ``other``, if it does; ``same_face`` says whether their faces'
        templates match (pass True where the other has no template of this model to compare)."""
        if self.digest == other.digest:
            return "same_file"
        if not same_face or abs(self.aspect / other.aspect - 1.0) > ASPECT_TOLERANCE:
            return None
        return "same_picture" if float(self.thumbnail @ other.thumbnail) >= SAME_PICTURE_CORRELATION else None
