"""Which face of a reference image to enrol, and whether it is good enough to search with.

A reference image of poor quality does harm twice: the subject is missed, and a blurred or
tiny template attracts false alerts from strangers. So enrolment refuses such images with a
reason the operator can act on, rather than storing them and hoping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

from openfrt.records.errors import EnrolmentRefused
from openfrt.vision import Face

#: Which face to enrol when an image has several: an index in detector order (the order
#: ``openfrt faces`` lists them) or the largest. ``None`` insists on exactly one face.
FaceChoice = int | Literal["largest"] | None


@dataclass(frozen=True)
class QualityPolicy:
    """Minimum quality of an enrolled face.

    ``min_face_height_px``: the face box height; below about 60 px the embedder sees too little
    detail. ``min_sharpness``: variance of the Laplacian on the face at a fixed 64 px height
    (:mod:`openfrt.vision.quality`); under about 30 is visibly blurred, good custody photos are
    in the hundreds.
    """

    min_face_height_px: float = 60.0
    min_sharpness: float = 50.0


def choose_face(faces: Sequence[Face], choice: FaceChoice, image: str, min_score: float = 0.0) -> Face:
    """The face the caller asked for, or :class:`EnrolmentRefused` saying why there is none.

    Only detections scoring at least ``min_score`` count, and indices refer to those: a
    detector tuned to find turned faces in video keeps low-scoring boxes, and one on background
    clutter must not make a clean custody photo look like a group photo.
    """
    faces = [face for face in faces if face.score >= min_score]
    if not faces:
        raise EnrolmentRefused(image, "no_face", "no face found")
    if choice == "largest":
        return max(faces, key=lambda face: face.area)
    if choice is None:
        if len(faces) > 1:
            raise EnrolmentRefused(
                image, "several_faces", f"{len(faces)} faces found; say which to enrol (a face index, or largest)", faces
            )
        return faces[0]
    if not 0 <= choice < len(faces):
        raise EnrolmentRefused(image, "no_such_face", f"face index {choice} asked for, but {len(faces)} face(s) found")
    return faces[choice]


def check_quality(face: Face, policy: QualityPolicy, image: str) -> None:
    """Refuse ``face`` if it is smaller or blurrier than ``policy`` allows."""
    quality = face.quality
    if quality.face_height_px < policy.min_face_height_px:
        raise EnrolmentRefused(
            image,
            "face_too_small",
            f"face is {quality.face_height_px:.0f} px high; at least {policy.min_face_height_px:.0f} px needed",
        )
    if quality.sharpness < policy.min_sharpness:
        raise EnrolmentRefused(
            image,
            "too_blurred",
            f"face sharpness {quality.sharpness:.0f} is below the minimum {policy.min_sharpness:.0f} (image too blurred)",
        )
