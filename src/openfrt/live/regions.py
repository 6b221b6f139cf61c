"""Where to look for faces in a frame, and detection in just those places.

Detection cost grows with the pixels detected (YuNet at full 1080p is most of the pipeline's
CPU), but most of a fixed camera's frame holds nothing new from one detection round to the
next. :class:`RegionPlanner` says which parts of a frame to detect in:

* **motion**: a cheap difference of the frame, shrunk ``motion_scale`` times, against the frame
  motion was last looked for in (the previous round, unless ``motion_seconds`` spaces the looks
  out); every changed blob, grown by ``motion_margin`` cells, is a region;
* **tracks**: a window of ``track_margin`` face heights around each live track's predicted box,
  so a tracked face that stops moving is still seen every round;
* **a full pass** over the whole frame at full resolution at least every ``full_pass_seconds``
  of source time (and on the first frame), which finds faces that neither moved nor were
  tracked (someone who walked in while the detector missed them and then stood still) and faces
  too small for the coarse scale below. Such a face is found within ``full_pass_seconds``; a
  moving one, or a tracked one, every round.

Each region has a **scale**. A region covering at least ``coarse_share`` of the frame (a
crowd's motion, the window around a large face) is first looked at shrunk to ``coarse_width``,
as Frigate looks at a camera's low-resolution detect stream (a quarter of the pixels at 960 of
1920 px); smaller regions, windows around small faces and full passes are detected at full
resolution, so a small face found by a full pass is followed at the resolution that found it.
:func:`detect_in_regions` runs any :class:`~openfrt.vision.detectors.base.Detector` on the
regions, confirms the small faces a shrunk look proposes at full resolution, and returns faces
in frame coordinates, with faces that two regions both saw kept once. Overlapping or touching
regions are merged first, and when they cover most of the frame the frame is detected whole
(shrunk, for motion; crops would cost as much and cut faces).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import cv2
import numpy as np

from openfrt.live.defaults import DEFAULT_COARSE_WIDTH, DEFAULT_FULL_PASS_SECONDS
from openfrt.vision.boxes import Box, iou
from openfrt.vision.detectors.base import Detector
from openfrt.vision.types import Face

#: ``(x0, y0, x1, y1)`` in whole frame pixels, end exclusive.
Rect = tuple[int, int, int, int]


class Region(NamedTuple):
    """A part of the frame to detect in: a :data:`Rect`, looked at shrunk by ``scale``."""

    x0: int
    y0: int
    x1: int
    y1: int
    scale: float = 1.0


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
    #: Width (px) motion regions are detected at: frames wider are shrunk to it (0: never).
    coarse_width: int = DEFAULT_COARSE_WIDTH
    #: Regions smaller than this share of the frame are detected at full resolution: shrinking
    #: them saves little, and their small faces would be looked at twice.
    coarse_share: float = 0.1
    #: A track's window is detected at full resolution while its face is under this many px
    #: high at the coarse scale (at 960 px YuNet missed or doubted faces under ~60 frame px, README).
    fine_face: int = 48

    def __post_init__(self) -> None:
        if self.full_pass_seconds < 0 or self.motion_seconds < 0 or self.motion_scale < 1 or not 0 < self.max_share <= 1:
            raise ValueError("full_pass_seconds and motion_seconds must be at least 0, motion_scale at least 1, max_share in (0, 1]")
        if self.coarse_width < 0 or self.fine_face < 1:
            raise ValueError("coarse_width must be at least 0 and fine_face at least 1")

    def window(self, box: Box, width: int, height: int) -> Rect:
        """The region around a face's ``box``: ``track_margin`` face heights on every side."""
        x, y, w, h = box
        pad = self.track_margin * max(w, h)
        return self.fit((int(x - pad), int(y - pad), int(np.ceil(x + w + pad)), int(np.ceil(y + h + pad))), width, height)

    def fit(self, rect: Rect, width: int, height: int) -> Rect:
        """``rect`` grown to ``min_size`` about its centre, out to the frame's ``GRID`` px grid
        (so the detector's cells fall where they do on the whole frame; a crop still gives it less
        context, and its boxes differ from the full pass's by a pixel or two) and clipped to the frame."""
        x0, y0, x1, y1 = rect
        grow_x, grow_y = max(0, self.min_size - (x1 - x0)) // 2, max(0, self.min_size - (y1 - y0)) // 2
        x0, y0 = (x0 - grow_x) // GRID * GRID, (y0 - grow_y) // GRID * GRID
        x1, y1 = -(-(x1 + grow_x) // GRID) * GRID, -(-(y1 + grow_y) // GRID) * GRID
        return (max(0, x0), max(0, y0), min(width, x1), min(height, y1))

    def too_small(self, face_height: float, scale: float) -> bool:
        """Whether a face this high (frame px) is too small to be detected at ``scale``."""
        return scale < 1 and face_height * scale < self.fine_face


class RegionPlanner:
    """One camera's region chooser: keeps the small grey frame of the last round that looked for
    motion, and the times of the last full pass and motion round. Not shared between cameras."""

    def __init__(self, config: RegionConfig = RegionConfig()) -> None:
        self.config = config
        self._previous: np.ndarray | None = None
        self._last_full: float | None = None
        self._last_motion = 0.0

    def plan(self, rgb: np.ndarray, now: float, tracks: Sequence[Box] = ()) -> list[Region]:
        """The regions to detect in at source time ``now``, given the live tracks' predicted boxes;
        one region covering the whole frame at scale 1 means a full pass."""
        height, width = rgb.shape[:2]
        config = self.config
        if config.full_pass_seconds == 0:
            return [Region(0, 0, width, height)]
        if self._last_full is None or now - self._last_full >= config.full_pass_seconds:
            return self._full(rgb, now)
        coarse = config.coarse_width / width if 0 < config.coarse_width < width else 1.0
        fine: list[Rect] = []
        rough: list[Rect] = []
        for box in tracks:
            (fine if config.too_small(box[3], coarse) else rough).append(config.window(box, width, height))
        if now - self._last_motion >= config.motion_seconds:
            grey = self._small_grey(rgb)
            if self._previous is None or self._previous.shape != grey.shape:
                return self._full(rgb, now)
            rough += self._motion(grey, self._previous, width, height)
            self._previous, self._last_motion = grey, now
        most, large = config.max_share * width * height, config.coarse_share * width * height
        rough = merge(rough)
        if coarse < 1 and _area(rough) > most:
            rough = [(0, 0, width, height)]  # a crowd: the whole frame, shrunk
        shrunk = [rect for rect in rough if coarse < 1 and _area([rect]) >= large]
        fine = merge(fine + [rect for rect in rough if rect not in shrunk])
        if _area(fine) > most:
            return self._full(rgb, now)
        return [Region(*rect) for rect in fine] + [Region(*rect, coarse) for rect in shrunk]

    def _full(self, rgb: np.ndarray, now: float) -> list[Region]:
        """A full pass: it also restarts the motion reference."""
        self._previous, self._last_full, self._last_motion = self._small_grey(rgb), now, now
        return [Region(0, 0, rgb.shape[1], rgb.shape[0])]

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
        return [self.config.fit((x * scale, y * scale, (x + w) * scale, (y + h) * scale), width, height) for x, y, w, h, _ in stats[1:count]]


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


def _area(rects: Sequence[Rect]) -> int:
    return sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in rects)


def detect_in_regions(detector: Detector, rgb: np.ndarray, regions: Sequence[Region], config: RegionConfig = RegionConfig()) -> list[Face]:
    """Faces found in ``regions`` of ``rgb``, in frame coordinates, best score first; of
    detections from different regions that overlap (IoU >= ``DUPLICATE_IOU``), the best.

    A shrunk region is a first look: it *proposes* faces, down to a low score. A proposal large
    enough for the scale is kept if :meth:`~Detector.detect` would have kept it; a small one
    (missed or doubted at that scale, and with landmarks off by a tenth of its height) is looked
    at again at full resolution in its window, unless a full-resolution region holds it already,
    and what that finds is what counts."""
    height, width = rgb.shape[:2]
    faces: list[Face] = []
    doubtful: list[Box] = []  # small proposals, in frame coordinates
    for x0, y0, x1, y1, scale in regions:
        if scale >= 1:
            faces += _detect_in(detector, rgb, (x0, y0, x1, y1))
            continue
        crop = rgb[y0:y1, x0:x1]
        for proposal in detector.propose_at_scale(crop, scale):
            if config.too_small(proposal.box[3], scale):
                doubtful.append((proposal.box[0] + x0, proposal.box[1] + y0, proposal.box[2], proposal.box[3]))
            elif detector.keeps(proposal):
                faces.append(_shifted(proposal.face(crop), x0, y0))  # quality measured only for kept ones
    fine = [region[:4] for region in regions if region.scale >= 1]
    unwatched = [box for box in doubtful if not any(_inside(box, rect) for rect in fine)]  # else looked at already
    for window in merge([config.window(box, width, height) for box in unwatched]):
        faces += _detect_in(detector, rgb, window)
    if len(regions) == 1 and not doubtful:
        return faces
    kept: list[Face] = []
    for face in sorted(faces, key=lambda face: face.score, reverse=True):
        if all(iou(face.box, other.box) < DUPLICATE_IOU for other in kept):
            kept.append(face)
    return kept


def _inside(box: Box, rect: Rect) -> bool:
    x, y, w, h = box
    return rect[0] <= x and rect[1] <= y and x + w <= rect[2] and y + h <= rect[3]


def _detect_in(detector: Detector, rgb: np.ndarray, rect: Rect) -> list[Face]:
    x0, y0, x1, y1 = rect
    if (x0, y0, x1, y1) == (0, 0, rgb.shape[1], rgb.shape[0]):
        return detector.detect(rgb)
    return [_shifted(face, x0, y0) for face in detector.detect(rgb[y0:y1, x0:x1])]


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
