"""Follow faces from frame to frame, so one person is searched (and counted) once, not per frame.

Association: each track predicts where its face is now (last box moved by its smoothed
velocity, in pixels per second of source time), and every (track, detection) pair whose
centres are within ``max_distance`` face heights gets a cost ``(1 - IoU) + centre distance /
face height``. Pairs are taken greedily, cheapest first: with a handful of faces per frame and
a gate this tight, greedy and optimal (Hungarian) assignment agree, and it avoids a scipy
dependency (scipy is not installed).

A track ends when its face has not been seen for more than ``max_gap_seconds`` of source time,
so the detection cadence does not change how long a lost face is waited for (8 detection
rounds, the previous rule, were 0.32 s at cadence 1 and 0.96 s at cadence 3 at 25 fps); a face
lost for a moment (turned away, occluded, missed by the detector) continues its track if it
reappears near where its motion predicts within that gap.

Each track keeps only its best few views (aligned chips, ranked by :func:`view_score`) and the
one frame its best view came from — the least that is needed to search and, if it matches,
to show an officer why. Everything else about a face is dropped as soon as it is superseded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from openfrt.vision.boxes import Box, iou
from openfrt.vision.types import Face, Template

#: A face whose sharpness reaches this no longer gains from being sharper: see
#: :class:`openfrt.vision.types.Quality` (under about 30 is visibly blurred).
SHARP_ENOUGH = 100.0

#: Faces this high (px) give dlib-class embedders most of their accuracy; larger adds little.
HIGH_ENOUGH_PX = 80.0

#: Weight of the new velocity estimate in the exponential smoothing of a track's motion.
VELOCITY_SMOOTHING = 0.5


def view_score(face: Face) -> float:
    """How good a view is for searching, 0..1: size, sharpness and pose multiplied, each capped."""
    quality = face.quality
    size = min(1.0, quality.face_height_px / HIGH_ENOUGH_PX)
    sharpness = min(1.0, quality.sharpness / SHARP_ENOUGH)
    return size * (0.5 + 0.5 * sharpness) * quality.frontalness


def centre(box: Box) -> np.ndarray:
    return np.array([box[0] + box[2] / 2.0, box[1] + box[3] / 2.0])


@dataclass
class Snapshot:
    """A frame kept because some track's best view is in it, with every face box detected there
    (so all faces but the alerting one can be pixelated). Tracks share one snapshot per frame."""

    rgb: np.ndarray
    boxes: tuple[Box, ...]
    time: float


@dataclass
class View:
    """One view of a track's face: the detection, its aligned chip and how good it is."""

    face: Face
    chip: np.ndarray
    score: float
    time: float
    #: Set once the view is searched (embedded and matched); dropped with the view.
    template: Template | None = None


@dataclass
class Track:
    """One person followed across frames."""

    id: int
    box: Box
    #: Source time (seconds) the face was last detected.
    last_seen: float
    #: Smoothed motion of the box centre, pixels per second.
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    hits: int = 1
    #: Highest detector score among the track's detections (see the pipeline's confirmation).
    peak_score: float = 0.0
    #: Best views first; at most ``keep`` (see :meth:`offer`).
    views: list[View] = field(default_factory=list)
    #: The frame of the best view, until the track alerts or ends.
    snapshot: Snapshot | None = None
    #: Best score among views already searched (embedded and matched).
    searched_score: float = -1.0
    #: The track has raised its one alert; it is no longer searched.
    alerted: bool = False

    def predicted(self, now: float) -> Box:
        """The box moved by the track's velocity over the time since it was last seen."""
        dx, dy = self.velocity * (now - self.last_seen)
        return (self.box[0] + dx, self.box[1] + dy, self.box[2], self.box[3])

    @property
    def best(self) -> View | None:
        return self.views[0] if self.views else None

    def mean_template(self) -> Template | None:
        """The unit mean of the kept views' templates, if at least two are searched: several
        views of one face average out pose, blur and lighting, as multi-image enrolment does."""
        templates = [view.template for view in self.views if view.template is not None]
        if len(templates) < 2:
            return None
        first = templates[0]
        return Template(np.sum([template.vector for template in templates], axis=0), first.model, first.model_version)

    def offer(self, view: View, snapshot: Snapshot, keep: int) -> None:
        """Keep ``view`` if it is among the ``keep`` best; if it is the best, keep its frame
        (``snapshot``) instead of the previous best's."""
        self.views.append(view)
        self.views.sort(key=lambda kept: kept.score, reverse=True)
        del self.views[keep:]
        if self.views[0] is view:
            self.snapshot = snapshot

    def release(self) -> None:
        """Drop every view, chip and frame this track holds (it ended or alerted)."""
        self.views.clear()
        self.snapshot = None

    def observe(self, face: Face, now: float) -> None:
        """``face`` was found at source time ``now``: update position, velocity, counts and peak score."""
        box = face.box
        if now > self.last_seen:
            step = (centre(box) - centre(self.box)) / (now - self.last_seen)
            self.velocity = VELOCITY_SMOOTHING * step + (1.0 - VELOCITY_SMOOTHING) * self.velocity
        self.box = box
        self.last_seen = now
        self.hits += 1
        self.peak_score = max(self.peak_score, face.score)


@dataclass(frozen=True)
class TrackUpdate:
    """What one detection round did: each detection's track (new or continued), and ended tracks."""

    assigned: list[tuple[Track, Face]]
    ended: list[Track]


class Tracker:
    """Greedy IoU + centre-distance tracker over detection rounds.

    ``max_gap_seconds``: source time a track may go unseen before it ends. ``max_distance``: how
    far (in face heights) a face may be from its predicted position and still continue the track.
    """

    def __init__(self, max_gap_seconds: float = 1.0, max_distance: float = 1.0) -> None:
        self.max_gap_seconds = max_gap_seconds
        self.max_distance = max_distance
        self.tracks: list[Track] = []
        #: The id the next new track gets (a camera restarted elsewhere continues the numbering).
        self.next_id = 1

    def update(self, faces: Sequence[Face], now: float) -> TrackUpdate:
        """Associate one round's detections (at source time ``now``) with the live tracks; start
        and end tracks."""
        pairs = self._assign([face.box for face in faces], now)
        assigned: list[tuple[Track, Face]] = []
        for index, face in enumerate(faces):
            track = pairs.get(index)
            if track is None:
                track = Track(self.next_id, face.box, now, peak_score=face.score)
                self.next_id += 1
                self.tracks.append(track)
            else:
                track.observe(face, now)
            assigned.append((track, face))
        ended = [track for track in self.tracks if now - track.last_seen > self.max_gap_seconds]
        self.tracks = [track for track in self.tracks if track not in ended]
        return TrackUpdate(assigned, ended)

    def end_all(self) -> list[Track]:
        """End every live track (the source finished or was stopped)."""
        ended, self.tracks = self.tracks, []
        return ended

    def _assign(self, boxes: Sequence[Box], now: float) -> dict[int, Track]:
        """Detection index -> existing track, cheapest gated pairs first."""
        candidates = []
        for track in self.tracks:
            predicted = track.predicted(now)
            for index, box in enumerate(boxes):
                distance = float(np.linalg.norm(centre(predicted) - centre(box))) / max(predicted[3], 1.0)
                if distance <= self.max_distance:
                    candidates.append(((1.0 - iou(predicted, box)) + distance, index, track))
        candidates.sort(key=lambda candidate: candidate[0])
        taken: dict[int, Track] = {}
        used: set[int] = set()
        for _, index, track in candidates:
            if index not in taken and track.id not in used:
                taken[index] = track
                used.add(track.id)
        return taken
