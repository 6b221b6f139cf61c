"""Walk-through test videos with known identities, for measuring the live pipeline end to end.

The live pipeline cannot be judged on real footage without identity ground truth, so this
module composes it: labelled faces (LFW, UTKFace) cross a background one after another or
overlapping, each for one to three seconds, at face heights in a configurable range, with the
small nuisances of real walk-throughs — in-plane turns, a horizontal squash that mimics yaw,
blur and a brightness change. Some passers are on the watchlist: for them the ground truth
names a *different* image of the same LFW identity as the reference to enrol, so a match is a
real recognition and not the same pixels found again. The rest (UTK faces and LFW identities
with a single image) are passers-by who must not alert.

Everything random comes from one seeded generator, so a seed gives the same plan, ground truth
and frames (with a screen, for the same detector). Faces are pasted as the source image's head region under a soft elliptical mask.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from openfrt.errors import OpenFRTError
from openfrt.vision import FaceEngine

T = TypeVar("T")


@dataclass(frozen=True)
class Geometry:
    """Where the face is in a source image, as fractions of its width and height: the face box's
    centre and size (as the default MTCNN detector boxes it, median over 60 images per set), and
    the centre and half-axes of the elliptical head region pasted into the video."""

    face_centre: tuple[float, float]
    face_size: tuple[float, float]
    head_centre: tuple[float, float]
    head_axes: tuple[float, float]


#: The LFW head region is kept tight (about 1.5 face widths): news photos often show another
#: person close beside the subject, whose half face a wider region carried along as a second,
#: unlabelled face walking past (and confusing the tracker).
GEOMETRY = {
    "lfw": Geometry((0.50, 0.50), (0.37, 0.50), (0.50, 0.47), (0.27, 0.41)),  # 250x250, deep-funneled
    "utk": Geometry((0.48, 0.49), (0.84, 0.98), (0.50, 0.50), (0.50, 0.50)),  # 200x200, the face fills it
}

#: Walking speed in face heights per second (about 1.4 m/s for a 0.23 m head).
WALK_SPEED = 6.0


@dataclass(frozen=True)
class WalkthroughConfig:
    """What to compose. Ranges are ``(low, high)``; face heights are box heights in pixels."""

    size: tuple[int, int] = (1920, 1080)
    fps: float = 25.0
    passers: int = 20
    watchlisted: int = 5
    face_heights: tuple[float, float] = (40.0, 200.0)
    walk_seconds: tuple[float, float] = (1.0, 3.0)
    #: Time between one passer's arrival and the next's; shorter than a walk means overlap.
    gap_seconds: tuple[float, float] = (0.3, 1.5)
    #: Share of the passers-by taken from single-image LFW identities (the rest from UTK).
    lfw_passers_by: float = 0.3
    max_roll_deg: float = 8.0
    max_squash: float = 0.25
    max_blur_sigma: float = 1.2
    brightness: tuple[float, float] = (0.7, 1.3)
    #: The band of the frame's height (fractions, top to bottom) faces walk in: a narrow band makes
    #: passers cross each other's paths, one head passing in front of another.
    lane_band: tuple[float, float] = (0.0, 1.0)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.watchlisted <= self.passers:
            raise ValueError("watchlisted must be between 0 and the number of passers")
        low, high = self.face_heights
        if not 8 <= low <= high or high > self.size[1] / 2:
            raise ValueError(f"face heights {self.face_heights} must satisfy 8 <= low <= high <= half the frame height")
        if not 0.0 <= self.lane_band[0] < self.lane_band[1] <= 1.0:
            raise ValueError(f"lane band {self.lane_band} must be two fractions of the frame height, top first")


@dataclass(frozen=True)
class FaceSet:
    """The labelled faces to draw passers from: ``lfw/<Name>/*.jpg`` and ``utk/*.jpg`` under ``root``.

    ``exclude`` names files (``Name/Name_0001.jpg`` or a UTK file name) known to be mislabelled —
    e.g. UTK images of LFW celebrities, who would otherwise be "strangers" matching the watchlist.
    ``screen`` rejects images unfit to walk past: about one LFW photo in ten shows a second
    person beside the subject, whose face would walk past too, unlabelled (it split tracks and
    inflated "faces scanned" in the benchmark).
    """

    root: Path
    exclude: frozenset[str] = frozenset()
    #: Which images may walk past (e.g. :func:`one_face_screen`); ``None``: every image.
    screen: Callable[[Path], bool] | None = None

    def usable(self, image: Path) -> bool:
        return self.screen is None or self.screen(image)

    def lfw_identities(self) -> dict[str, list[Path]]:
        """Identity -> its images not excluded, in name order."""
        lfw = self.root / "lfw"
        identities: dict[str, list[Path]] = {}
        for folder in sorted(path for path in lfw.iterdir() if path.is_dir()):
            images = [p for p in sorted(folder.glob("*.jpg")) if f"{folder.name}/{p.name}" not in self.exclude]
            if images:
                identities[folder.name] = images
        return identities

    def utk_images(self) -> list[Path]:
        return [path for path in sorted((self.root / "utk").glob("*.jpg")) if path.name not in self.exclude]


@dataclass
class Passer:
    """One person crossing the scene, and where their face is in every frame they are in.

    ``boxes`` rows are ``[frame, x, y, w, h]`` of the upright face box (before the in-plane
    turn), in frame pixels; ``h`` is the face height the configured range bounds.
    """

    index: int
    identity: str
    dataset: str
    on_watchlist: bool
    video_image: str
    reference_image: str | None
    first_frame: int
    last_frame: int
    direction: int
    lane_y: float
    start_x: float
    end_x: float
    start_height: float
    end_height: float
    roll_deg: float
    roll_phase: float
    squash: float
    blur_sigma: float
    brightness: float
    boxes: list[list[float]] = field(default_factory=list)

    def at(self, frame: int) -> tuple[float, float, float, float, float]:
        """Face centre x, y, height, roll (degrees) and horizontal scale at ``frame``."""
        span = max(1, self.last_frame - self.first_frame)
        t = (frame - self.first_frame) / span
        height = self.start_height + t * (self.end_height - self.start_height)
        x = self.start_x + t * (self.end_x - self.start_x)
        y = self.lane_y + 0.04 * height * math.sin(4 * math.pi * t)  # the bob of two steps
        roll = self.roll_deg * math.sin(2 * math.pi * t + self.roll_phase)
        squash = 1.0 - self.squash * (0.5 + 0.5 * math.sin(3 * math.pi * t + self.roll_phase))
        return x, y, height, roll, squash


@dataclass
class Walkthrough:
    """A composed video's ground truth: its format, every passer, and how it was made."""

    video: str
    size: tuple[int, int]
    fps: float
    frames: int
    seed: int
    passers: list[Passer]
    config: dict[str, object]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def load(cls, path: Path) -> Walkthrough:
        data = json.loads(path.read_text())
        data["passers"] = [Passer(**passer) for passer in data["passers"]]
        data["size"] = tuple(data["size"])
        return cls(**data)


def generate(config: WalkthroughConfig, faces: FaceSet, video: Path, truth: Path | None = None,
             background: Path | None = None) -> Walkthrough:
    """Compose the walk-through into ``video`` (mp4v) and its ground truth into ``truth``
    (default: ``video`` with ``.json``); ``background`` is an image or video whose first frame,
    blurred, is the scene (default: a synthetic one)."""
    rng = np.random.default_rng(config.seed)
    passers, frames = plan(config, faces, rng)
    scene = make_background(config.size, background, rng)
    render(passers, scene, frames, config.fps, video)
    settings = json.loads(json.dumps(asdict(config)))  # as it reads back from the JSON (lists, not tuples)
    walkthrough = Walkthrough(str(video), config.size, config.fps, frames, config.seed, passers, settings)
    (truth or video.with_suffix(".json")).write_text(walkthrough.to_json())
    return walkthrough


# -- planning --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Casting:
    identity: str
    dataset: str
    video_image: Path
    reference_image: Path | None


def cast(config: WalkthroughConfig, faces: FaceSet, rng: np.random.Generator) -> list[_Casting]:
    """Who walks past, in order: watchlisted LFW identities with two different images, and
    passers-by from single-image LFW identities and UTK, shuffled together."""
    identities = faces.lfw_identities()
    several = [name for name, images in identities.items() if len(images) >= 2]
    single = [name for name, images in identities.items() if len(images) == 1]
    strangers = config.passers - config.watchlisted
    from_lfw = round(strangers * config.lfw_passers_by)

    def watchlisted(name: str) -> _Casting | None:
        images = [identities[name][i] for i in rng.permutation(len(identities[name]))]
        shown = next((image for image in images if faces.usable(image)), None)
        reference = next((image for image in images if image != shown), None)
        return _Casting(name, "lfw", shown, reference) if shown and reference else None

    people = _pick(several, config.watchlisted, rng, watchlisted)
    people += _pick(single, from_lfw, rng, lambda name: _Casting(name, "lfw", identities[name][0], None)
                    if faces.usable(identities[name][0]) else None)
    people += _pick(faces.utk_images(), strangers - from_lfw, rng,
                    lambda path: _Casting(f"utk:{path.name}", "utk", path, None) if faces.usable(path) else None)
    return [people[i] for i in rng.permutation(len(people))]


def _pick(candidates: Sequence[T], count: int, rng: np.random.Generator, cast_one: Callable[[T], _Casting | None]) -> list[_Casting]:
    """The first ``count`` candidates, in a random order, that ``cast_one`` accepts."""
    picked: list[_Casting] = []
    for index in rng.permutation(len(candidates)):
        if len(picked) == count:
            break
        casting = cast_one(candidates[index])
        if casting is not None:
            picked.append(casting)
    if len(picked) < count:
        raise ValueError(f"too few usable faces: wanted {count}, found {len(picked)} of {len(candidates)} candidates")
    return picked


def plan(config: WalkthroughConfig, faces: FaceSet, rng: np.random.Generator) -> tuple[list[Passer], int]:
    """Every passer's path and appearance, with per-frame boxes, and the video's frame count."""
    width, height = config.size
    passers: list[Passer] = []
    start = 0.3
    for index, who in enumerate(cast(config, faces, rng)):
        first = round(start * config.fps)
        last = first + max(2, round(rng.uniform(*config.walk_seconds) * config.fps)) - 1
        low, high = config.face_heights
        start_height = math.exp(rng.uniform(math.log(low), math.log(high)))
        end_height = min(high, start_height * rng.uniform(1.0, 1.3))
        geometry = GEOMETRY[who.dataset]
        head_width = end_height / geometry.face_size[1] * 2 * geometry.head_axes[0]
        distance = min(WALK_SPEED * end_height * (last - first) / config.fps, width - head_width - 8)
        direction = int(rng.choice([-1, 1]))
        leftmost = head_width / 2 + 4
        left = rng.uniform(leftmost, max(leftmost, width - head_width / 2 - 4 - distance))
        xs = (left, left + distance) if direction > 0 else (left + distance, left)
        lane = _free_lane(passers, first, last, _half_head(who.dataset, end_height), height, config.lane_band, rng)
        passer = Passer(
            index, who.identity, who.dataset, who.reference_image is not None, str(who.video_image),
            str(who.reference_image) if who.reference_image else None, first, last, direction, lane, xs[0], xs[1],
            start_height, end_height, rng.uniform(0, config.max_roll_deg), rng.uniform(0, 2 * math.pi),
            rng.uniform(0, config.max_squash), rng.uniform(0, config.max_blur_sigma), rng.uniform(*config.brightness),
        )
        passer.boxes = [_box(passer, frame) for frame in range(first, last + 1)]
        passers.append(passer)
        start += rng.uniform(*config.gap_seconds)
    frames = max(p.last_frame for p in passers) + 1 + round(0.5 * config.fps) if passers else round(config.fps)
    return passers, frames


def _free_lane(passers: Sequence[Passer], first: int, last: int, band: float, height: int,
               lane_band: tuple[float, float], rng: np.random.Generator) -> float:
    """A face centre height in ``lane_band`` whose head band overlaps no passer in view at the same
    time (the least-overlapping of 30 tries when the scene is crowded), so heads do not cover
    each other unless the lane band is too narrow to avoid it."""
    busy = [(p.lane_y, _half_head(p.dataset, p.end_height)) for p in passers if p.first_frame <= last and first <= p.last_frame]
    top = max(band, lane_band[0] * height)
    bottom = max(top, min(height - band, lane_band[1] * height))
    best, best_overlap = (top + bottom) / 2, math.inf
    for _ in range(30):
        y = rng.uniform(top, bottom)
        overlap = sum(max(0.0, band + half - abs(y - centre)) for centre, half in busy)
        if overlap < best_overlap:
            best, best_overlap = y, overlap
        if overlap == 0:
            break
    return float(best)


def _half_head(dataset: str, face_height: float) -> float:
    """Half the height of the pasted head region for a face this high, plus 10% for the bob."""
    geometry = GEOMETRY[dataset]
    return face_height / geometry.face_size[1] * geometry.head_axes[1] * 1.1


def _box(passer: Passer, frame: int) -> list[float]:
    x, y, face_height, _, squash = passer.at(frame)
    geometry = GEOMETRY[passer.dataset]
    face_width = face_height * geometry.face_size[0] / geometry.face_size[1] * squash
    return [frame, round(x - face_width / 2, 1), round(y - face_height / 2, 1), round(face_width, 1), round(face_height, 1)]


# -- rendering -------------------------------------------------------------------------------


def make_background(size: tuple[int, int], background: Path | None, rng: np.random.Generator) -> np.ndarray:
    """The scene (BGR): the first frame of ``background`` blurred until no face in it is
    detectable, or a grey vertical gradient with soft low-frequency blotches.

    The blur (sigma a 30th of the width) is strong because MTCNN still found 0.4-0.6-score
    "faces" in blurred pedestrians of walking_1080p.mp4 at sigma a 60th and an 80th: each was a
    stationary extra track, counted as a face scanned."""
    width, height = size
    if background is not None:
        capture = cv2.VideoCapture(str(background))
        ok, bgr = capture.read()
        capture.release()
        if not ok:
            raise ValueError(f"cannot read a frame of {background}")
        return cv2.GaussianBlur(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), (0, 0), width / 30)
    ramp = np.linspace(150, 80, height, dtype=np.float32)[:, None, None]
    blotches = cv2.resize(rng.normal(0, 25, (9, 16, 3)).astype(np.float32), size, interpolation=cv2.INTER_CUBIC)
    return np.clip(ramp + blotches + np.array([0, 8, 16], np.float32), 0, 255).astype(np.uint8)


def render(passers: Sequence[Passer], scene: np.ndarray, frames: int, fps: float, video: Path) -> None:
    """Write ``frames`` frames of ``scene`` with the passers pasted in, farther (smaller) first."""
    height, width = scene.shape[:2]
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"cannot write {video} with the mp4v codec")
    heads = {p.index: _head(p) for p in passers}
    try:
        for frame in range(frames):
            canvas = scene.astype(np.float32)
            in_view = [p for p in passers if p.first_frame <= frame <= p.last_frame]
            for passer in sorted(in_view, key=lambda p: p.at(frame)[2]):
                _paste(canvas, passer, frame, *heads[passer.index])
            writer.write(np.clip(canvas, 0, 255).astype(np.uint8))
    finally:
        writer.release()


def _head(passer: Passer) -> tuple[np.ndarray, np.ndarray]:
    """The passer's source image (BGR, float) and its soft elliptical head mask (0..1)."""
    bgr = cv2.imread(passer.video_image)
    if bgr is None:
        raise OSError(f"cannot read {passer.video_image}")
    h, w = bgr.shape[:2]
    geometry = GEOMETRY[passer.dataset]
    mask = np.zeros((h, w), np.float32)
    centre = (round(geometry.head_centre[0] * w), round(geometry.head_centre[1] * h))
    axes = (round(geometry.head_axes[0] * w * 0.92), round(geometry.head_axes[1] * h * 0.92))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 0.04 * h)
    return bgr.astype(np.float32), mask


def _paste(canvas: np.ndarray, passer: Passer, frame: int, bgr: np.ndarray, mask: np.ndarray) -> None:
    """Blend the passer's head into ``canvas``: scaled to the face height, squashed, turned,
    blurred and brightened, with the face box centre on the planned position."""
    x, y, face_height, roll, squash = passer.at(frame)
    src_h, src_w = bgr.shape[:2]
    geometry = GEOMETRY[passer.dataset]
    scale = face_height / (geometry.face_size[1] * src_h)
    anchor = np.array([geometry.face_centre[0] * src_w, geometry.face_centre[1] * src_h])
    rotation = cv2.getRotationMatrix2D((0.0, 0.0), roll, 1.0)[:, :2]
    linear = rotation @ np.diag([scale * squash, scale])
    corners = np.array([[0, 0], [src_w, 0], [0, src_h], [src_w, src_h]], np.float64) - anchor
    placed = corners @ linear.T + [x, y]
    x0, y0 = np.floor(placed.min(axis=0)).astype(int)
    x1, y1 = np.ceil(placed.max(axis=0)).astype(int)
    left, top = max(x0, 0), max(y0, 0)
    right, bottom = min(x1, canvas.shape[1]), min(y1, canvas.shape[0])
    if right <= left or bottom <= top:
        return
    affine = np.hstack([linear, (np.array([x - left, y - top]) - linear @ anchor)[:, None]])
    size = (right - left, bottom - top)
    face = cv2.warpAffine(bgr, affine, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(mask, affine, size, flags=cv2.INTER_LINEAR, borderValue=0.0)[..., None]
    if passer.blur_sigma > 0.2:
        face = cv2.GaussianBlur(face, (0, 0), passer.blur_sigma)
    region = canvas[top:bottom, left:right]
    region[:] = region * (1 - alpha) + face * passer.brightness * alpha


def one_face_screen(engine: FaceEngine) -> Callable[[Path], bool]:
    """A :class:`FaceSet` screen passing images in which ``engine`` finds exactly one face."""

    def one_face(image: Path) -> bool:
        try:
            return len(engine.detect(image)) == 1
        except OpenFRTError:
            return False

    return one_face


def read_exclusions(lines: Iterable[str]) -> frozenset[str]:
    """File names from a list like ``benchmarks/shared-label-errors.txt`` (``#`` comments)."""
    return frozenset(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))


def one_after_another(video: Path, faces: Sequence[Path], seconds_each: float = 2.0, pause: float = 1.0, fps: float = 10.0) -> Path:
    """A 640x480 video in which the people of ``faces`` cross the scene one after another, with
    ``pause`` seconds of empty scene between them: every track ends before the next begins."""
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
    empty = np.full((480, 640, 3), 100, np.uint8)
    for face in faces:
        crop = cv2.resize(cv2.imread(str(face)), (170, 170))
        steps = int(seconds_each * fps)
        for index in range(steps):
            frame = empty.copy()
            x = 20 + index * 400 // steps
            frame[150:320, x : x + 170] = crop
            writer.write(frame)
        for _ in range(int(pause * fps)):
            writer.write(empty)
    writer.release()
    return video
