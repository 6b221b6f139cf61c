"""Proof that an embedder separates faces, asked of every model before openfrt relies on it.

A model with wrong input scaling, the wrong file or random weights still returns unit vectors,
and nothing downstream notices until searches quietly fail. So a model must show, on faces
whose identities are known, that pairs of the same face score well above pairs of different
faces: the separation ``d' = (mean genuine - mean impostor) / sqrt((var genuine + var impostor) / 2)``
(cosines) must reach the check set's bar.

Check sets, strongest first:

* **labelled faces**: a folder ``<identity>/<image>`` the user gives, or the records store's own
  reference images (:mod:`openfrt.gallery.model_check`). Genuine pairs are different photos of
  one person; impostors are different people. Real models score d' of 3 or more here.
* **rendered faces**, available offline on every install: matplotlib's ``grace_hopper.jpg``
  (a public-domain photograph shipped with a package we depend on) and eight *altered faces*
  made from it by moving the eyes, nose, mouth and jaw (a smooth warp), each shown under six
  imaging conditions (as is, dark, grey, low resolution, colour cast with heavy JPEG, rotated).
  Genuine pairs are one face under two conditions; impostor pairs are two faces under the same
  condition. A face model tracks the face and ignores the conditions; a model that tracks
  pixels instead — random or shuffled weights, wrongly scaled input — scores the pairs the other
  way round, and a collapsed one scores 0. The bar, 0.6, sits between the two groups
  (``benchmarks/model_check.py``, figures in the README).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from openfrt.errors import ModelError
from openfrt.vision.embedders.base import Embedder
from openfrt.vision.model_cache import cache_dir
from openfrt.vision.types import Face

#: Minimum d' on the rendered faces: real models measured 1.1-1.4, broken ones 0 or below.
MIN_D_PRIME_RENDERED = 0.6
#: Minimum d' on labelled photographs of real people: real models measured 3 or more.
MIN_D_PRIME_LABELLED = 1.5

#: Altered faces rendered from the base photograph, and the seed that places their features.
ALTERED_FACES, RENDER_SEED = 8, 7
#: The base photograph is scaled so its face is this high (px): enough for any embedder's chip,
#: small enough to render and detect quickly.
RENDER_FACE_HEIGHT = 160
#: Face height of the low-resolution condition (px), as in CCTV stills.
LOW_RESOLUTION_FACE_HEIGHT = 48


@dataclass(frozen=True)
class CheckFace:
    """One face of a check set: whose it is, under which condition, and where it is."""

    identity: str
    condition: str
    rgb: np.ndarray
    face: Face


@dataclass(frozen=True)
class CheckFaces:
    """Faces with known identities and the bar a model must reach on them."""

    source: str
    faces: tuple[CheckFace, ...]
    min_d_prime: float

    def pairs(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(genuine, impostor) index pairs: same identity; different identities under one condition."""
        genuine, impostor = [], []
        for (i, a), (j, b) in itertools.combinations(enumerate(self.faces), 2):
            if a.identity == b.identity:
                genuine.append((i, j))
            elif a.condition == b.condition:
                impostor.append((i, j))
        return genuine, impostor


@dataclass(frozen=True)
class SeparationCheck:
    """How well a model separated one check set, and whether that is enough."""

    model_id: str
    source: str
    genuine_pairs: int
    impostor_pairs: int
    genuine_mean: float
    impostor_mean: float
    d_prime: float
    auc: float
    min_d_prime: float

    @property
    def passed(self) -> bool:
        return self.d_prime >= self.min_d_prime

    @property
    def message(self) -> str:
        verdict = "separates faces" if self.passed else "does NOT separate faces"
        return (
            f"{self.model_id} {verdict} on {self.source}: d' {self.d_prime:.2f} (needs {self.min_d_prime:g}), "
            f"AUC {self.auc:.3f}; mean cosine {self.genuine_mean:.3f} for {self.genuine_pairs} same-face pairs "
            f"vs {self.impostor_mean:.3f} for {self.impostor_pairs} different-face pairs"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id, "source": self.source, "passed": self.passed,
            "d_prime": round(self.d_prime, 3), "auc": round(self.auc, 4), "min_d_prime": self.min_d_prime,
            "genuine_pairs": self.genuine_pairs, "impostor_pairs": self.impostor_pairs,
            "genuine_mean": round(self.genuine_mean, 4), "impostor_mean": round(self.impostor_mean, 4),
        }


def check_embedder(embedder: Embedder, check_faces: CheckFaces) -> SeparationCheck:
    """Embed every face of ``check_faces`` and measure genuine-vs-impostor separation."""
    genuine, impostor = check_faces.pairs()
    if not genuine or not impostor:
        raise ModelError(f"{check_faces.source}: too few faces to check a model (needs same-face and different-face pairs)")
    vectors = _embed_all(embedder, check_faces.faces)
    similarity = vectors @ vectors.T
    same = np.array([similarity[i, j] for i, j in genuine])
    different = np.array([similarity[i, j] for i, j in impostor])
    return SeparationCheck(
        model_id=embedder.model_id,
        source=check_faces.source,
        genuine_pairs=len(same),
        impostor_pairs=len(different),
        genuine_mean=float(same.mean()),
        impostor_mean=float(different.mean()),
        d_prime=d_prime(same, different),
        auc=auc(same, different),
        min_d_prime=check_faces.min_d_prime,
    )


def require_separation(embedder: Embedder, check_faces: CheckFaces) -> SeparationCheck:
    """:func:`check_embedder`, raising :class:`ModelError` when the model falls short."""
    result = check_embedder(embedder, check_faces)
    if not result.passed:
        raise ModelError(
            f"model refused: {result.message}. A face model scores photos of the same face well above "
            "photos of different faces; this one does not, so its templates would find nobody. Check the "
            "file, its family (--family) and its input scaling"
        )
    return result


def d_prime(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Sensitivity index of two score samples; 0 when both are constant (a collapsed model)."""
    spread = np.sqrt((genuine.var() + impostor.var()) / 2)
    gap = float(genuine.mean() - impostor.mean())
    return 0.0 if spread < 1e-6 else gap / float(spread)


def auc(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Probability that a genuine pair outscores an impostor pair (ties count half)."""
    greater = (genuine[:, None] > impostor[None, :]).mean()
    ties = (genuine[:, None] == impostor[None, :]).mean()
    return float(greater + ties / 2)


def _embed_all(embedder: Embedder, faces: Sequence[CheckFace]) -> np.ndarray:
    return np.stack([embedder.embed(item.rgb, [item.face])[0].vector for item in faces]).astype(np.float64)


def labelled_check_faces(images: Sequence[tuple[str, np.ndarray]], source: str, detector: Any = None) -> CheckFaces:
    """Check faces from ``(identity, rgb)`` photographs; the largest face of each is used."""
    detector = detector or _check_detector()
    faces = []
    for identity, rgb in images:
        found = detector.detect(rgb)
        if found:
            faces.append(CheckFace(identity, "photo", rgb, max(found, key=lambda face: face.area)))
    return CheckFaces(source, tuple(faces), MIN_D_PRIME_LABELLED)


@lru_cache(maxsize=1)
def rendered_check_faces() -> CheckFaces:
    """The offline check set (module docstring), rendered once per process.

    The base photograph's face is detected once; every rendered face's landmarks follow from
    the known warp or rotation that made it, so no further detection (and no detector error)
    enters the check.
    """
    from openfrt.vision.image import load_image
    from openfrt.vision.quality import make_face

    base = load_image(_base_photograph())
    face = _largest(_check_detector().detect(base))
    scale = RENDER_FACE_HEIGHT / face.box[3]
    base = cv2.resize(base, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    box, landmarks = np.array(face.box) * scale, face.landmarks.astype(np.float64) * scale
    rng = np.random.default_rng(RENDER_SEED)
    identities = {"original": (base, landmarks)} | {
        f"altered-{k}": _altered_face(base, landmarks, rng) for k in range(1, ALTERED_FACES + 1)
    }
    faces = []
    for identity, (image, points) in identities.items():
        for condition, (shown, matrix) in _conditions(image).items():
            moved_points = points @ matrix[:, :2].T + matrix[:, 2]
            corners = np.array([[box[0], box[1]], [box[0] + box[2], box[1]], [box[0], box[1] + box[3]], [box[0] + box[2], box[1] + box[3]]])
            moved = corners @ matrix[:, :2].T + matrix[:, 2]
            (x0, y0), (x1, y1) = moved.min(axis=0), moved.max(axis=0)
            rendered = make_face(shown, (x0, y0, x1 - x0, y1 - y0), 1.0, moved_points, "rendered")
            faces.append(CheckFace(identity, condition, shown, rendered))
    return CheckFaces("faces rendered from matplotlib's grace_hopper.jpg", tuple(faces), MIN_D_PRIME_RENDERED)


def _base_photograph() -> Path:
    """matplotlib's ``grace_hopper.jpg``, found without importing matplotlib (seconds of start-up)."""
    spec = importlib.util.find_spec("matplotlib")
    path = Path(spec.submodule_search_locations[0]) / "mpl-data" / "sample_data" / "grace_hopper.jpg" if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise ModelError("the model check's base photograph (matplotlib's sample_data/grace_hopper.jpg) is missing; reinstall matplotlib")
    return path


def _largest(faces: Sequence[Face]) -> Face:
    if not faces:
        raise ModelError("the model check's base photograph (matplotlib's grace_hopper.jpg) shows no face to the detector")
    return max(faces, key=lambda face: face.area)


def _check_detector() -> Any:
    """The bundled YuNet: the check must not depend on which detector the user configured."""
    from openfrt.vision.detectors import DETECTORS

    return DETECTORS.create("yunet")


def _altered_face(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``image`` with eyes, nose, mouth and jaw moved by up to ~15% of the eye distance, and its
    five landmarks where the warp put them."""
    left_eye, right_eye, nose, mouth_left, mouth_right = landmarks
    eyes = (left_eye + right_eye) / 2
    span = float(np.linalg.norm(right_eye - left_eye))
    chin, jaw_left, jaw_right = eyes + [0, 1.9 * span], eyes + [-span, 1.3 * span], eyes + [span, 1.3 * span]
    source = np.array([left_eye, right_eye, nose, mouth_left, mouth_right, chin, jaw_left, jaw_right])
    eye_gap, eye_drop, nose_drop, mouth_gap, mouth_drop, jaw = rng.uniform(-1, 1, 6) * [0.14, 0.08, 0.15, 0.18, 0.12, 0.12]
    moves = np.array([
        [-eye_gap / 2, eye_drop], [eye_gap / 2, eye_drop], [0, nose_drop], [-mouth_gap / 2, mouth_drop],
        [mouth_gap / 2, mouth_drop], [0, 1.5 * jaw], [-jaw, 0], [jaw, 0],
    ]) * span
    height, width = image.shape[:2]
    border = np.array([[0, 0], [width, 0], [0, height], [width, height], [width / 2, 0], [width / 2, height], [0, height / 2], [width, height / 2]])
    warped = _smooth_warp(image, np.vstack([source + moves, border]), np.vstack([moves, np.zeros_like(border)]), 0.45 * span)
    return warped, (source + moves)[:5]


def _smooth_warp(image: np.ndarray, targets: np.ndarray, moves: np.ndarray, sigma: float) -> np.ndarray:
    """Warp so each point ``targets[i] - moves[i]`` lands on ``targets[i]``: a Gaussian radial-basis
    displacement field, solved so it is exact at the targets, evaluated on a grid a quarter of
    the image's size (it is smooth at that scale; the grid points sit where ``cv2.resize``
    interpolates from), and sampled backwards with ``remap``."""
    kernel = np.exp(-((targets[:, None] - targets[None]) ** 2).sum(-1) / (2 * sigma**2))
    weights = np.linalg.solve(kernel + 1e-6 * np.eye(len(kernel)), moves)
    height, width = image.shape[:2]
    rows, columns = (height + 3) // 4, (width + 3) // 4
    ys, xs = np.meshgrid((np.arange(rows) + 0.5) * height / rows - 0.5, (np.arange(columns) + 0.5) * width / columns - 0.5, indexing="ij")
    bumps = np.exp(-((xs[..., None] - targets[:, 0]) ** 2 + (ys[..., None] - targets[:, 1]) ** 2) / (2 * sigma**2))
    shift = cv2.resize((bumps @ weights).astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    full_x, full_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(image, full_x - shift[..., 0], full_y - shift[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _conditions(image: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The same face under six imaging conditions a face model should see through, each with the
    2x3 matrix that moved its pixels (the identity but for the rotation)."""
    height, width = image.shape[:2]
    unit = image.astype(np.float32) / 255
    grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    shrink = LOW_RESOLUTION_FACE_HEIGHT / RENDER_FACE_HEIGHT
    small = cv2.GaussianBlur(cv2.resize(image, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA), (0, 0), 0.8)
    cast = np.clip(unit * np.array([1.25, 1.0, 0.75]) * 1.1 * 255, 0, 255).astype(np.uint8)
    _, jpeg = cv2.imencode(".jpg", cast, [cv2.IMWRITE_JPEG_QUALITY, 15])
    rotation = cv2.getRotationMatrix2D((width / 2, height / 2), 9, 0.85)
    same = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    return {
        "as is": (image, same),
        "dark": (np.clip(255 * unit**1.8 * 0.7, 0, 255).astype(np.uint8), same),
        "grey": (np.dstack([grey] * 3), same),
        "low resolution": (cv2.resize(small, (width, height)), same),
        "colour cast, JPEG 15": (cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED), same),
        "rotated": (cv2.warpAffine(image, rotation, (width, height), borderMode=cv2.BORDER_REFLECT), rotation),
    }


#: File in the model cache remembering which models passed the check on this machine.
CHECKS_FILE = "model-checks.json"


def verify_on_first_use(embedder: Embedder) -> SeparationCheck | None:
    """Check ``embedder`` on the rendered faces the first time its model is used here.

    Models registered before checks existed, and built-ins whose conversion changed, are
    caught here; a pass is remembered in the model cache (keyed by model id, which for a
    user's file includes a digest of its weights), a failure raises every time.
    """
    path = cache_dir() / CHECKS_FILE
    passed = _read_checks(path)
    if embedder.model_id in passed:
        return None
    result = require_separation(embedder, rendered_check_faces())
    remember_check(result)
    return result


def remember_check(result: SeparationCheck) -> None:
    """Record a passed check in the model cache, so the model is not checked again on first use."""
    if not result.passed:
        return
    path = cache_dir() / CHECKS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    checks = {**_read_checks(path), result.model_id: result.as_dict()}
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".json") as tmp:
        json.dump(checks, tmp, indent=1)
    os.replace(tmp.name, path)


def _read_checks(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


#: A labelled folder is read up to this many people and photos each, to keep the check to seconds.
MAX_FOLDER_PEOPLE, MAX_FOLDER_PHOTOS = 20, 3


def folder_check_faces(root: Path) -> CheckFaces:
    """Check faces from a labelled folder ``<root>/<identity>/<image>`` (e.g. a force's own test set)."""
    from openfrt.vision.image import load_image

    folders = sorted(folder for folder in root.iterdir() if folder.is_dir()) if root.is_dir() else []
    images = []
    for folder in folders[:MAX_FOLDER_PEOPLE]:
        photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp", ".bmp"})
        images += [(folder.name, load_image(photo)) for photo in photos[:MAX_FOLDER_PHOTOS]]
    if not images:
        raise ModelError(f"{root}: no <identity>/<image> photos found to check the model with")
    return labelled_check_faces(images, f"{len(images)} photos of {min(len(folders), MAX_FOLDER_PEOPLE)} people in {root}")
