"""dlib-exact face chip extraction, without dlib.

Why: dlib's face-recognition ResNet was trained on chips cut by
``dlib.get_face_chip(img, shape, 150, 0.25)``; any other crop (different scale, centre,
filtering) costs accuracy. This module reproduces dlib's procedure step by step
(dlib/image_transforms/interpolation.h: ``get_face_chip_details``,
``extract_image_chips``; image_pyramid.h: ``pyramid_down<2>``):

1. Least-squares similarity transform (Umeyama) from dlib's mean-face landmark
   positions in the chip to the detected landmarks; it is turned into a chip
   rectangle in the image (centre, size = chip size * scale) plus a rotation angle.
2. If the chip is much smaller than that rectangle, the image region around it is
   first shrunk by dlib's 2:1 pyramid (5x5 [1 4 6 4 1] binomial filter, integer
   arithmetic, every other pixel) as many times as needed, so that bilinear sampling
   does not alias.
3. Each chip pixel is mapped to the (pyramid level) image by the affine transform
   that sends the chip's corners to the rectangle's rotated corners, and sampled with
   bilinear interpolation (float64, truncated to uint8; black outside the image).

It also provides the mapping for detectors that output the common 5 points (eye
centres, nose tip, mouth corners): :data:`DLIB_CHIP_REFERENCE_5PT` and
:func:`dlib_chip_from_standard_5pt`.
"""

from __future__ import annotations

import math

import numpy as np

from openfrt.vision.align import similarity_transform

__all__ = [
    "DLIB_5PT_MEAN_FACE",
    "DLIB_CHIP_REFERENCE_5PT",
    "standard_5pt_reference",
    "dlib_face_chip",
    "dlib_chip_from_standard_5pt",
    "chip_from_similarity",
]

# dlib's mean positions (unit square, before padding) of the 5 landmarks of
# shape_predictor_5_face_landmarks: outer/inner corner of the eye on the image's right,
# outer/inner corner of the eye on the image's left, bottom of the nose.
DLIB_5PT_MEAN_FACE = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ]
)

# From dlib's 68-point mean face (same unit square): the points that define the
# "standard" 5 landmarks other detectors output.
_MEAN68_EYE_IMAGE_LEFT = np.array(  # points 36..41
    [
        [0.121737, 0.216423],
        [0.187122, 0.178758],
        [0.265825, 0.179852],
        [0.334606, 0.231733],
        [0.260918, 0.245099],
        [0.182743, 0.244077],
    ]
)
_MEAN68_EYE_IMAGE_RIGHT = np.array(  # points 42..47
    [
        [0.645647, 0.231733],
        [0.714428, 0.179852],
        [0.793132, 0.178758],
        [0.858516, 0.216423],
        [0.79751, 0.244077],
        [0.719335, 0.245099],
    ]
)
_MEAN68_NOSE_TIP = np.array([0.490127, 0.515625])  # point 30
_MEAN68_MOUTH_LEFT = np.array([0.254149, 0.780233])  # point 48
_MEAN68_MOUTH_RIGHT = np.array([0.726104, 0.780233])  # point 54


def _to_chip(unit_points: np.ndarray, size: int, padding: float) -> np.ndarray:
    """dlib's unit-face to chip-pixel mapping: (padding + p) / (1 + 2 padding) * size."""
    return (padding + unit_points) / (2 * padding + 1) * size


def standard_5pt_reference(size: int = 150, padding: float = 0.25) -> np.ndarray:
    """Chip positions (x, y) of left-eye centre, right-eye centre, nose tip, left and
    right mouth corner (image order) in a dlib face chip of ``size`` and ``padding``."""
    unit = np.stack(
        [
            _MEAN68_EYE_IMAGE_LEFT.mean(axis=0),
            _MEAN68_EYE_IMAGE_RIGHT.mean(axis=0),
            _MEAN68_NOSE_TIP,
            _MEAN68_MOUTH_LEFT,
            _MEAN68_MOUTH_RIGHT,
        ]
    )
    return _to_chip(unit, size, padding)


DLIB_CHIP_REFERENCE_5PT: np.ndarray = standard_5pt_reference(150, 0.25)
DLIB_CHIP_REFERENCE_5PT.setflags(write=False)


# --------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------


def _rotate(center: np.ndarray, points: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return (points - center) @ rot.T + center


class _ChipRect:
    """dlib ``chip_details``: a drectangle (l, t, r, b; width = r - l + 1), an angle,
    and the chip's pixel dimensions."""

    def __init__(self, ltrb: np.ndarray, angle: float, rows: int, cols: int) -> None:
        self.ltrb = np.asarray(ltrb, dtype=np.float64)
        self.angle = angle
        self.rows = rows
        self.cols = cols

    @classmethod
    def from_similarity(cls, a: np.ndarray, t: np.ndarray, rows: int, cols: int) -> _ChipRect:
        p = a @ np.array([1.0, 0.0])
        scale = math.hypot(p[0], p[1])
        centre = a @ np.array([cols / 2.0, rows / 2.0]) + t
        half_w, half_h = (cols * scale - 1) / 2, (rows * scale - 1) / 2
        ltrb = np.array(
            [centre[0] - half_w, centre[1] - half_h, centre[0] + half_w, centre[1] + half_h]
        )
        return cls(ltrb, math.atan2(p[1], p[0]), rows, cols)

    @property
    def centre(self) -> np.ndarray:
        left, top, right, bottom = self.ltrb
        return np.array([(left + right) / 2.0, (top + bottom) / 2.0])

    def corners(self) -> np.ndarray:
        """Rotated tl, tr, bl, br corners."""
        left, top, right, bottom = self.ltrb
        pts = np.array([[left, top], [right, top], [left, bottom], [right, bottom]])
        return _rotate(self.centre, pts, self.angle)


def _area(ltrb: np.ndarray) -> float:
    left, top, right, bottom = ltrb
    if top > bottom or left > right:
        return 0.0
    return (right - left + 1) * (bottom - top + 1)


def _rect_down(ltrb: np.ndarray) -> np.ndarray:
    """pyramid_down<2>::rect_down: each corner p -> p/2 - (1.25, 0.75)."""
    return ltrb / 2.0 - np.array([1.25, 0.75, 1.25, 0.75])


def _round_half_away(x: np.ndarray) -> np.ndarray:
    """C ``lround``: halves round away from zero."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


# --------------------------------------------------------------------------------------
# Pixels
# --------------------------------------------------------------------------------------


def _pyramid_down(img: np.ndarray) -> np.ndarray:
    """dlib ``pyramid_down<2>`` for RGB: separable [1 4 6 4 1] filter, keep every other
    pixel, integer sum / 256 (truncating). Output (rows-3)//2 x (cols-3)//2."""
    rows, cols = img.shape[:2]
    if rows <= 8 or cols <= 8:
        return np.zeros((0, 0, img.shape[2]), dtype=np.uint8)
    x = img.astype(np.int32)
    out_c, out_r = (cols - 3) // 2, (rows - 3) // 2
    weights = (1, 4, 6, 4, 1)
    horiz = sum(w * x[:, k : k + 2 * out_c : 2] for k, w in enumerate(weights))
    vert = sum(w * horiz[k : k + 2 * out_r : 2] for k, w in enumerate(weights))
    return (vert // 256).astype(np.uint8)


def _bilinear(img: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """dlib ``interpolate_bilinear`` + ``transform_image`` (black where the 2x2
    neighbourhood leaves the image); float64 blend truncated to uint8."""
    h, w = img.shape[:2]
    if h < 2 or w < 2:  # no 2x2 neighbourhood anywhere: all background
        return np.zeros((*xs.shape, img.shape[2]), dtype=np.uint8)
    left, top = np.floor(xs).astype(np.int64), np.floor(ys).astype(np.int64)
    inside = (left >= 0) & (top >= 0) & (left + 1 < w) & (top + 1 < h)
    idx = np.where(inside, top * w + left, 0).ravel()  # flat index of top-left neighbour
    fx, fy = (xs - left).ravel(), (ys - top).ravel()
    gx, gy = 1 - fx, 1 - fy
    planes = np.ascontiguousarray(img.transpose(2, 0, 1)).reshape(img.shape[2], -1)

    def corner(offset: int) -> np.ndarray:  # gather uint8, channels-first, then widen
        return np.take(planes, idx + offset, axis=1).astype(np.float64)

    # gy * (gx * tl + fx * tr) + fy * (gx * bl + fx * br), dlib's order, computed in
    # place (fresh temporaries of this size are slow to allocate)
    val, tmp = corner(0), corner(1)
    val *= gx
    tmp *= fx
    val += tmp
    bottom, tmp = corner(w), corner(w + 1)
    bottom *= gx
    tmp *= fx
    bottom += tmp
    val *= gy
    bottom *= fy
    val += bottom
    out = val.T.astype(np.uint8).reshape(*xs.shape, img.shape[2])  # in [0, 255]: C truncation
    out[~inside] = 0
    return out


def _affine_from_3(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact affine (A, t) with dst_i = A @ src_i + t for three point pairs."""
    p = np.hstack([src, np.ones((3, 1))])
    m = np.linalg.solve(p, dst).T  # 2x3
    return m[:, :2], m[:, 2]


def _extract(img: np.ndarray, chip: _ChipRect) -> np.ndarray:
    """dlib ``extract_image_chips`` for one chip with bilinear interpolation."""
    h, w = img.shape[:2]
    size = chip.rows * chip.cols

    depth, grow = 0, 2.0
    rect = _rect_down(chip.ltrb)
    while _area(rect) > size:
        rect = _rect_down(rect)
        depth += 1
        grow = grow * 2 + 2

    corners = chip.corners()
    rot = np.array([*corners.min(axis=0), *corners.max(axis=0)])
    grown = rot + np.array([-grow, -grow, grow, grow])
    clipped = np.array(
        [max(grown[0], 0), max(grown[1], 0), min(grown[2], w - 1), min(grown[3], h - 1)]
    )
    bl, bt, br, bb = (int(v) for v in _round_half_away(clipped))
    if bl > br or bt > bb:  # chip entirely outside the image
        return np.zeros((chip.rows, chip.cols, img.shape[2]), dtype=np.uint8)
    source = img[bt : bb + 1, bl : br + 1]

    level_rect = chip.ltrb - np.array([bl, bt, bl, bt], dtype=np.float64)
    for _ in range(depth):
        source = _pyramid_down(source)
        level_rect = _rect_down(level_rect)

    level = _ChipRect(level_rect, chip.angle, chip.rows, chip.cols).corners()
    chip_pts = np.array([[0, 0], [chip.cols - 1, 0], [0, chip.rows - 1]], dtype=np.float64)
    a, t = _affine_from_3(chip_pts, level[[0, 1, 2]])
    cc, rr = np.meshgrid(
        np.arange(chip.cols, dtype=np.float64), np.arange(chip.rows, dtype=np.float64)
    )
    xs = a[0, 0] * cc + a[0, 1] * rr + t[0]
    ys = a[1, 0] * cc + a[1, 1] * rr + t[1]
    return _bilinear(source, xs, ys)


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    return rgb


def chip_from_similarity(
    rgb: np.ndarray, chip_points: np.ndarray, image_points: np.ndarray, size: int = 150
) -> np.ndarray:
    """Cut a ``size`` x ``size`` chip the way dlib does, given corresponding landmark
    positions in the chip (``chip_points``) and in the image (``image_points``)."""
    rgb = _check_rgb(rgb)
    matrix = similarity_transform(np.asarray(chip_points, float), np.asarray(image_points, float))
    a, t = matrix[:, :2], matrix[:, 2]
    chip = _ChipRect.from_similarity(a, t, size, size)
    if (
        chip.angle == 0
        and _area(chip.ltrb) == size * size
        and chip.ltrb[2] - chip.ltrb[0] + 1 == size
    ):
        return _copy_chip(rgb, chip)
    return _extract(rgb, chip)


def _copy_chip(rgb: np.ndarray, chip: _ChipRect) -> np.ndarray:
    """dlib's no-resampling path (unrotated, unscaled chip): zero-filled copy."""
    left, top = (int(v) for v in _round_half_away(chip.ltrb[:2]))
    out = np.zeros((chip.rows, chip.cols, 3), dtype=np.uint8)
    h, w = rgb.shape[:2]
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + chip.rows, h), min(left + chip.cols, w)
    if y0 < y1 and x0 < x1:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = rgb[y0:y1, x0:x1]
    return out


def dlib_face_chip(
    rgb: np.ndarray, landmarks: np.ndarray, size: int = 150, padding: float = 0.25
) -> np.ndarray:
    """Reproduce ``dlib.get_face_chip(rgb, shape, size, padding)`` for dlib's 5-point
    landmarks (``landmarks``: 5x2 array of (x, y) as returned by
    ``shape_predictor_5_face_landmarks``; dlib uses integer points). Returns uint8 RGB."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (5, 2):
        raise ValueError(f"expected 5x2 dlib 5-point landmarks, got shape {pts.shape}")
    return chip_from_similarity(rgb, _to_chip(DLIB_5PT_MEAN_FACE, size, padding), pts, size)


def dlib_chip_from_standard_5pt(
    rgb: np.ndarray, points5: np.ndarray, size: int = 150, padding: float = 0.25
) -> np.ndarray:
    """A dlib-style face chip from the 5 points other detectors output (left-eye
    centre, right-eye centre, nose tip, left and right mouth corner, in image order),
    aligned by similarity transform to :func:`standard_5pt_reference`."""
    pts = np.asarray(points5, dtype=np.float64)
    if pts.shape != (5, 2):
        raise ValueError(f"expected 5x2 standard landmarks, got shape {pts.shape}")
    return chip_from_similarity(rgb, standard_5pt_reference(size, padding), pts, size)
