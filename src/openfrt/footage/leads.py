"""Leads: the people in footage who have candidates in the reference database, for review.

The live pipeline raises one alert per track whose best candidate reaches the threshold;
a footage search runs that same pipeline with :class:`LeadSink` as its deployment, whose
threshold is the *review* threshold and whose matcher is the reference database. Each "alert"
becomes a :class:`Lead`: when the person was seen, their candidates (best first), the face
crop and the frame with every other face pixelated. Tracks that never reach the threshold
leave nothing behind, as in live use.

**One person, several tracks.** Frames are sampled half a second or more apart, and a walking
face moves farther than the tracker's gate in that time, so one person is often several
tracks (and the search is split into time segments, which cuts tracks at their ends).
:func:`link_leads` joins leads whose probes verify as the same face (the model's 1:1
threshold) and whose times are at most ``max_gap`` apart. The probe templates used for that
live only in memory, during the search, and are dropped from the leads returned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np

from openfrt.gallery.matching import Candidate, Matcher
from openfrt.live.events import AlertEvent
from openfrt.vision.types import Template, cosine_to_similarity

#: Leads of one face further apart than this (seconds) stay separate: the person left and came
#: back, which a reviewer should see as two sightings.
LINK_GAP_SECONDS = 3.0


@dataclass
class Lead:
    """One person seen in the footage with candidates at or above the review threshold.

    ``time`` is the source time (seconds into the file) of the frame whose face was searched
    and is shown; ``first_seen``/``last_seen`` span the linked sightings. ``candidates`` are
    ``(subject, similarity)``, best first. ``probe_crop`` and ``frame`` are JPEGs.
    """

    time: float
    first_seen: float
    last_seen: float
    similarity: float
    candidates: tuple[tuple[str, float], ...]
    probe_crop: bytes
    frame: bytes
    #: Tracks (sightings) linked into this lead.
    sightings: int = 1
    #: The probes' unit templates, only while leads are linked (never stored or returned).
    templates: list[np.ndarray] = field(default_factory=list, repr=False)

    @property
    def subject(self) -> str:
        return self.candidates[0][0]

    def as_dict(self) -> dict[str, Any]:
        return {"time": round(self.time, 3), "first_seen": round(self.first_seen, 3), "last_seen": round(self.last_seen, 3),
                "similarity": round(self.similarity, 6), "sightings": self.sightings,
                "candidates": [{"subject": s, "similarity": round(v, 6), "rank": r} for r, (s, v) in enumerate(self.candidates, 1)]}


class _RememberingMatcher:
    """Ranks probes with ``inner`` and keeps the template of every ranking whose best candidate
    reaches ``threshold`` until the next round, so the lead raised from it can carry its template
    (the pipeline's alert carries the candidates, not the probe)."""

    def __init__(self, inner: Matcher, threshold: float) -> None:
        self.inner, self.threshold = inner, threshold
        self._kept: dict[tuple[tuple[str, float], ...], np.ndarray] = {}
        self._taken = False

    def rank(self, probe: Template, top: int) -> list[Candidate]:
        if self._taken:  # a new search round: the last round's leads have taken their templates
            self._kept.clear()
            self._taken = False
        candidates = self.inner.rank(probe, top)
        if candidates and candidates[0].similarity >= self.threshold:
            vector = probe.vector / max(float(np.linalg.norm(probe.vector)), 1e-12)
            self._kept[tuple((c.subject, c.similarity) for c in candidates)] = vector
        return candidates

    def take(self, candidates: tuple[tuple[str, float], ...]) -> np.ndarray | None:
        self._taken = True
        return self._kept.get(candidates)


class LeadSink:
    """The deployment a footage search runs the live pipeline against (see the module docstring).

    ``on_lead`` receives each lead as it is raised; ``faces_scanned`` counts searched tracks."""

    deployment_id = 0
    name = "footage search"

    def __init__(self, matcher: Matcher, threshold: float, model_id: str, on_lead: Callable[[Lead], None]) -> None:
        self.matcher = _RememberingMatcher(matcher, threshold)
        self.threshold = threshold
        self.model_id = model_id
        self.cameras = ["footage"]
        self.faces_scanned = 0
        self._on_lead = on_lead
        self._raised = 0

    def add_faces_scanned(self, camera: str, count: int) -> None:
        self.faces_scanned += count

    def add_frames_dropped(self, camera: str, count: int) -> None:
        """Recorded footage is never dropped: every frame due is looked at."""

    def record_gap(self, camera: str, started: datetime, ended: datetime) -> None:
        """Files have no outages."""

    def raise_alert(self, alert: AlertEvent) -> int:
        template = self.matcher.take(alert.candidates)
        self._on_lead(Lead(
            time=alert.source_time, first_seen=alert.source_time, last_seen=alert.source_time, similarity=alert.similarity,
            candidates=alert.candidates, probe_crop=alert.probe_crop, frame=alert.frame,
            templates=[template] if template is not None else [],
        ))
        self._raised += 1
        return self._raised

    def end(self, actor: str) -> None:
        """Nothing to publish: the footage search records itself (:mod:`openfrt.footage.records`)."""


def link_leads(leads: Sequence[Lead], same_face: float, top: int, max_gap: float = LINK_GAP_SECONDS) -> list[Lead]:
    """Leads of one person joined (see the module docstring), in time order, templates dropped.

    ``same_face``: the similarity (0..1 scale) at which two probes are the same face — the
    model's 1:1 threshold. A joined lead shows its best sighting and keeps, per subject, the
    best similarity any sighting reached (``top`` candidates)."""
    joined: list[Lead] = []
    for lead in sorted(leads, key=lambda item: item.first_seen):
        match = next((earlier for earlier in reversed(joined)
                      if lead.first_seen - earlier.last_seen <= max_gap and _same_face(earlier, lead, same_face)), None)
        if match is None:
            joined.append(replace(lead, templates=list(lead.templates)))
            continue
        best = lead if lead.similarity > match.similarity else match
        scores: dict[str, float] = {}
        for subject, similarity in (*match.candidates, *lead.candidates):
            scores[subject] = max(similarity, scores.get(subject, similarity))
        match.candidates = tuple(sorted(scores.items(), key=lambda item: -item[1])[:top])
        match.time, match.similarity, match.probe_crop, match.frame = best.time, best.similarity, best.probe_crop, best.frame
        match.first_seen, match.last_seen = min(match.first_seen, lead.first_seen), max(match.last_seen, lead.last_seen)
        match.sightings += lead.sightings
        match.templates.extend(lead.templates)
    return [replace(lead, templates=[]) for lead in joined]


def _same_face(a: Lead, b: Lead, same_face: float) -> bool:
    """Whether any probe of ``a`` and any of ``b`` verify as one face."""
    if not a.templates or not b.templates:
        return False
    cosines = np.stack(a.templates) @ np.stack(b.templates).T
    return float(cosine_to_similarity(float(cosines.max()))) >= same_face
