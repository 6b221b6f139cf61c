"""Where to look for faces in a frame, and detection in just those places.

Detection cost grows with the pixels detected (YuNet at full 1080p is most of the pipeline's
CPU), but most of a fixed camera's frame holds nothing new from one detection round to the
next. :class:`RegionPlanner` says which parts of a frame to detect in:

* **motion**: a cheap difference of the frame, shrunk ``motion_scale`` times, against the frame
  motion was last looked for in (the previous round, unless ``motion_seconds`` spaces the looks
  out); every changed blob, grown by ``motion_margin`` cells, is a region;
* **tracks**: a window of ``track_margin`` face heights around each live track's predicted box,
  so a tracked face that stops moving is still seen every round;
* **a full pass** over the whole frame at least every ``full_pass_seconds`` of source time (and
  on the first frame), which finds faces that neither moved nor were tracked: someone who walked
  in while the detector missed them and then stood still. Such a face is found within
  ``full_pass_seconds``; a moving one, or a tracked one, every round.

:func:`detect_in_regions` runs any :class:`~openfrt.vision.detectors.base.Detector` on the
regions at full resolution and returns faces in frame coordinates, with faces that two regions
both saw kept once. Overlapping or touching regions are merged first, and when the regions
cover most of the frame the frame is detected whole (crops would cost as much and cut faces).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from openfrt.live.defaults import DEFAULT_FULL_PASS_SECONDS
from openfrt.vision.boxes import Box, iou
from openfrt.vision.detectors.base import Detector
from openfrt.vision.types import Face

#: ``(x0, y0, x1, y1)`` in whole frame pixels, end exclusive.
Rect = tuple[int, int, int, int]

#: Region corners lie on this grid of the frame: YuNet's coarsest stride.
GRID = 32

#: Two detections from different regions with this overlap are one face.
DUPLICATE_IOU = 0.3


@dataclass(frozen=True)
class RegionConfig:
    """How :class:`RegionPlanner` chooses regions; ``full_pass_seconds = 0`` detects every round
    on the whole frame (no gating)."""

    full_pass_seconds: float = DEFAULT_FULL_PASS_SECONDS
    #: Motion is looked for at most this often (source seconds; 0: every round), against the
    #: frame it was last looked for in; rounds in between detect around live tracks only. 0.2 s
    #: took 0.70 of the pipeline's CPU per frame on walking_1080p.mp4, but scanned one face fewer
    #: on one composed walk-through and added 0.04-0.08 s to alert latency (README), so 0.
    motion_seconds: float = 0.0
    motion_scale: int = 8
    #: Change of the shrunk green channel (0-255) that counts as motion.
    motion_threshold: int = 12
    #: Cells (of ``motion_scale`` px) each motion blob is grown by on every side.
    motion_margin: int = 3
    track_margin: float = 1.0
    #: Regions covering more of the frame than this are detected as one full frame.
    max_share: float = 0.6
    #: Regions are at least this many px wide and high (the detector needs some context).
    min_size: int = 96

    def __post_init__(self) -> None:
        if self.full_pass_seconds < 0 or self.motion_seconds < 0 or self.motion_scale < 1 or not 0 < self.max_share <= 1:
            raise ValueError("full_pass_seconds and motion_seconds must be at least 0, motion_scale at least 1, max_share in (0, 1]")


class RegionPlanner:
    """One camera's region chooser: keeps the small grey frame of the last round that looked for
    motion, and the times of the last full pass and motion round. Not shared between cameras."""

    def __init__(self, config: RegionConfig = RegionConfig()) -> None:
        self.config = config
        self._previous: np.ndarray | None = None
        self._last_full: float | None = None
        self._last_motion = 0.0

    def plan(self, rgb: np.ndarray, now: float, tracks: Sequence[Box] = ()) -> list[Rect]:
        """The regions to detect in at source time ``now``, given the live tracks' predicted boxes;
        one rect covering the whole frame means a full pass."""
        height, width = rgb.shape[:2]
        whole = [(0, 0, width, height)]
        config = self.config
        if config.full_pass_seconds == 0:
            return whole
        if self._last_full is None or now - self._last_full >= config.full_pass_seconds:
            return self._full(rgb, now, whole)
        rects = [self._window(box, width, height) for box in tracks]
        if now - self._last_motion >= config.motion_seconds:
            grey = self._small_grey(rgb)
            if self._previous is None or self._previous.shape != grey.shape:
                return self._full(rgb, now, whole)
            rects += self._motion(grey, self._previous, width, height)
            self._previous, self._last_motion = grey, now
        rects = merge(rects)
        if sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in rects) > config.max_share * width * height:
            return self._full(rgb, now, whole)
        return rects

    def _full(self, rgb: np.ndarray, now: float, whole: list[Rect]) -> list[Rect]:
        """A full pass: it also restarts the motion reference."""
        self._previous, self._last_full, self._last_motion = self._small_grey(rgb), now, now
        return whole

    def _small_grey(self, rgb: np.ndarray) -> np.ndarray:
        """The green channel (most of luminance), shrunk ``motion_scale`` times: every 2nd pixel,
        then averaged, which costs a quarter of shrinking the whole colour frame."""
        scale = self.config.motion_scale
        green = rgb[:: min(2, scale), :: min(2, scale), 1]
        return cv2.resize(green, (max(1, rgb.shape[1] // scale), max(1, rgb.shape[0] // scale)), interpolation=cv2.INTER_AREA)

    def _motion(self, grey: np.ndarray, previous: np.ndarray, width: int, height: int) -> list[Rect]:
        """Bounding rects (full-frame px) of the changed blobs, each grown by ``motion_margin`` cells."""
        scale, margin = self.config.motion_scale, self.config.motion_margin
        changed = (cv2.absdiff(grey, previous) > self.config.motion_threshold).astype(np.uint8)
        grown = cv2.dilate(changed, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8))  # nearby blobs become one
        count, _, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
        return [self._fit((x * scale, y * scale, (x + w) * scale, (y + h) * scale), width, height) for x, y, w, h, _ in stats[1:count]]

    def _window(self, box: Box, width: int, height: int) -> Rect:
        x, y, w, h = box
        pad = self.config.track_margin * max(w, h)
        return self._fit((int(x - pad), int(y - pad), int(np.ceil(x + w + pad)), int(np.ceil(y + h + pad))), width, height)

    def _fit(self, rect: Rect, width: int, height: int) -> Rect:
        """``rect`` grown to ``min_size`` about its centre, out to the frame's ``GRID`` px grid
        (so the detector's cells fall where they do on the whole frame; a crop still gives it less
        context, and its boxes differ from the full pass's by a pixel or two) and clipped to the frame."""
        x0, y0, x1, y1 = rect
        grow_x, grow_y = max(0, self.config.min_size - (x1 - x0)) // 2, max(0, self.config.min_size - (y1 - y0)) // 2
        x0, y0 = (x0 - grow_x) // GRID * GRID, (y0 - grow_y) // GRID * GRID
        x1, y1 = -(-(x1 + grow_x) // GRID) * GRID, -(-(y1 + grow_y) // GRID) * GRID
        return (max(0, x0), max(0, y0), min(width, x1), min(height, y1))


def merge(rects: Sequence[Rect]) -> list[Rect]:
    """Union every group of overlapping or touching rects into its bounding rect, until none
    overlap: a face is then whole in at most one region unless it straddles two that do not touch."""
    merged = [rect for rect in rects if rect[2] > rect[0] and rect[3] > rect[1]]
    changed = True
    while changed:
        changed = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                a, b = merged[i], merged[j]
                if a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]:
                    merged[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del merged[j]
                    changed = True
                    break
            if changed:
                break
    return merged


def detect_in_regions(detector: Detector, rgb: np.ndarray, rects: Sequence[Rect]) -> list[Face]:
    """Faces found in ``rects`` of ``rgb`` at full resolution, in frame coordinates, best score
    first; of detections from different regions that overlap (IoU >= ``DUPLICATE_IOU``), the best."""
    height, width = rgb.shape[:2]
    if list(rects) == [(0, 0, width, height)]:
        return detector.detect(rgb)
    faces = []
    for x0, y0, x1, y1 in rects:
        faces.extend(_shifted(face, x0, y0) for face in detector.detect(rgb[y0:y1, x0:x1]))
    kept: list[Face] = []
    for face in sorted(faces, key=lambda face: face.score, reverse=True):
        if all(iou(face.box, other.box) < DUPLICATE_IOU for other in kept):
            kept.append(face)
    return kept


def _shifted(face: Face, dx: int, dy: int) -> Face:
    """``face`` found in a crop at ``(dx, dy)``, in the frame's coordinates. Its quality was
    measured on the crop's pixels, which are the frame's."""
    offset = np.array([dx, dy], dtype=np.float32)
    x, y, w, h = face.box
    return replace(
        face,
        box=(x + dx, y + dy, w, h),
        landmarks=face.landmarks + offset,
        native_landmarks={name: points + offset for name, points in face.native_landmarks.items()},
    )
