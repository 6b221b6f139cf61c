"""Re-enrolment on a model change: every stored reference image re-embedded with the new model.

Templates of different models are never compared, so changing the embedder would strand every
watchlist. Reference images are kept (encrypted), so :class:`ModelMigration` makes each one's
template with the new model instead:

* **per subject, all or nothing**: a subject's new templates are written in one transaction
  with its audit entry, or not at all (a face no longer found is reported, the subject keeps
  its old templates and the migration cannot complete until it is fixed);
* **resumable**: progress is the new templates already in the database, so an interrupted
  run simply continues where it stopped, and images enrolled meanwhile are picked up;
* **old templates keep serving**: watchlists go on using their model until every image has a
  new template; then one transaction moves every watchlist to the new model and its calibrated
  threshold, deletes the old templates (biometric data no longer needed) and audits the switch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from openfrt.errors import OpenFRTError
from openfrt.gallery.fitness import default_threshold
from openfrt.gallery.reference_index import ReferenceIndexes
from openfrt.records.audit import AuditAction, record_event
from openfrt.records.models import ReferenceImage, ReferenceTemplate, Watchlist
from openfrt.records.store import RecordStore
from openfrt.vision import Face, FaceEngine
from openfrt.vision.boxes import iou

log = logging.getLogger(__name__)

#: A re-detected face must overlap the box enrolled at least this much to be the same face.
MIN_BOX_OVERLAP = 0.3

#: Reports ``(subjects done, subjects to do, subject id just handled)`` as a migration runs.
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class MigrationStatus:
    """How far the reference database is from being all on ``model_id``."""

    model_id: str
    subjects: int
    subjects_done: int
    images: int
    images_done: int
    watchlists_on_other_models: tuple[str, ...]
    other_models: tuple[str, ...]

    @property
    def complete(self) -> bool:
        """Every image has a template of ``model_id``, every watchlist uses it, nothing else is left."""
        return self.images_done == self.images and not self.watchlists_on_other_models and not self.other_models

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id, "subjects": self.subjects, "subjects_done": self.subjects_done,
            "images": self.images, "images_done": self.images_done, "complete": self.complete,
            "watchlists_on_other_models": list(self.watchlists_on_other_models), "other_models": list(self.other_models),
        }


@dataclass
class MigrationReport:
    """What one run did: subjects re-embedded, subjects refused (with why), whether it completed."""

    model_id: str
    reembedded: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    completed: bool = False
    watchlists: dict[str, dict[str, Any]] = field(default_factory=dict)
    removed_templates: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id, "reembedded": len(self.reembedded), "refused": self.refused,
            "completed": self.completed, "watchlists": self.watchlists, "removed_templates": self.removed_templates,
        }


class SubjectRefused(OpenFRTError):
    """One of a subject's reference images gave no template with the new model."""


class ModelMigration:
    """Moves the reference database and its watchlists to the model of ``engine`` (module docstring)."""

    def __init__(self, store: RecordStore, engine: FaceEngine) -> None:
        self.store = store
        self.engine = engine
        self.model_id = engine.embedder.model_id

    def status(self) -> MigrationStatus:
        with self.store.transaction() as session:
            images = session.scalar(select(func.count(ReferenceImage.id))) or 0
            subjects = session.scalar(select(func.count(func.distinct(ReferenceImage.subject_id)))) or 0
            pending = self._pending_subjects(session)
            watchlists = session.scalars(select(Watchlist.name).where(Watchlist.model_id != self.model_id).order_by(Watchlist.name)).all()
            others = session.scalars(select(ReferenceTemplate.model_id).where(ReferenceTemplate.model_id != self.model_id).distinct()).all()
            done = session.scalar(select(func.count(ReferenceTemplate.id)).where(ReferenceTemplate.model_id == self.model_id)) or 0
        return MigrationStatus(self.model_id, subjects, subjects - len(pending), images, done, tuple(watchlists), tuple(sorted(others)))

    def run(self, *, actor: str, progress: Progress | None = None) -> MigrationReport:
        """Re-embed every subject still lacking a template of the new model, then complete the
        migration if nothing is left; safe to run again after an interruption."""
        report = MigrationReport(self.model_id)
        with self.store.transaction() as session:
            todo = self._pending_subjects(session)
            record_event(
                session, AuditAction.model_migration_started, actor=actor, target=self.model_id,
                details={"subjects_to_reembed": len(todo), "detector": self.engine.detector.name},
            )
        for number, subject_id in enumerate(todo, start=1):
            try:
                self._reembed_subject(subject_id, actor)
                report.reembedded.append(subject_id)
            except OpenFRTError as exc:
                report.refused[subject_id] = str(exc)
            if progress:
                progress(number, len(todo), subject_id)
        if not report.refused:
            self._complete(report, actor)
        return report

    def _pending_subjects(self, session: Session) -> list[str]:
        """Subjects with at least one reference image that has no template of the new model."""
        migrated = select(ReferenceTemplate.reference_image_id).where(ReferenceTemplate.model_id == self.model_id)
        rows = session.scalars(
            select(ReferenceImage.subject_id).where(ReferenceImage.id.not_in(migrated)).distinct().order_by(ReferenceImage.subject_id)
        )
        return list(rows)

    def _reembed_subject(self, subject_id: str, actor: str) -> None:
        """New templates for all of one subject's images lacking one, in one transaction."""
        migrated = select(ReferenceTemplate.reference_image_id).where(ReferenceTemplate.model_id == self.model_id)
        with self.store.transaction() as session:
            images = session.scalars(
                select(ReferenceImage).where(ReferenceImage.subject_id == subject_id, ReferenceImage.id.not_in(migrated))
                .order_by(ReferenceImage.id)
            ).all()
            rows = []
            for image in images:
                template = self._template(image)
                rows.append(ReferenceTemplate(reference_image_id=image.id, model_id=self.model_id,
                                              vector=self.store.seal_template(template)))
            session.add_all(rows)
            session.flush()
            record_event(
                session, AuditAction.subject_reembedded, actor=actor, target=subject_id,
                details={"model_id": self.model_id, "reference_images": [image.id for image in images]},
            )
            added = [(row.id, np.frombuffer(self.store.cipher.decrypt(row.vector), dtype="<f4")) for row in rows]
        self._index_added(added)

    def _template(self, image: ReferenceImage) -> Any:
        """The new model's template of the face enrolled in ``image`` (found again by its box)."""
        rgb = self.engine.load(self.store.cipher.decrypt(image.image), f"reference image {image.id}")
        face = _enrolled_face(self.engine.detector.detect(rgb), tuple(image.face_box))
        if face is None:
            raise SubjectRefused(
                f"reference image {image.id}: the enrolled face is not found again by detector {self.engine.detector.name}; "
                "re-enrol the subject with a clearer image or remove it"
            )
        return self.engine.embedder.embed(rgb, [face])[0]

    def _index_added(self, added: list[tuple[int, np.ndarray]]) -> None:
        if not added:
            return
        try:
            ReferenceIndexes(self.store).add(self.model_id, np.array([i for i, _ in added]), np.stack([v for _, v in added]))
        except Exception as exc:  # noqa: BLE001 - the index rebuilds from the database when next used
            log.warning("search index not updated (%s); it will be rebuilt from the database when next used", exc)

    def _complete(self, report: MigrationReport, actor: str) -> None:
        """Switch every watchlist to the new model and drop the old templates, in one transaction.

        The plan is made, then the audit entry written (it takes the audit-chain lock, which
        every enrolment takes too), then the plan checked again: if an image was enrolled with
        the old model in between, nothing changes and the migration stays incomplete.
        """
        threshold = default_threshold(self.model_id, self.engine.embedder.default_threshold)
        try:
            with self.store.transaction() as session:
                plan = self._completion_plan(session, threshold)
                record_event(session, AuditAction.model_migration_completed, actor=actor, target=self.model_id, details=plan)
                if self._pending_subjects(session) or self._completion_plan(session, threshold) != plan:
                    raise _Changed
                for row in session.scalars(select(Watchlist).where(Watchlist.model_id != self.model_id)):
                    row.model_id, row.threshold, row.revision = self.model_id, threshold, row.revision + 1
                old = session.execute(
                    select(ReferenceTemplate.id, ReferenceTemplate.model_id).where(ReferenceTemplate.model_id != self.model_id)
                ).all()
                indexes = ReferenceIndexes(self.store)
                for model_id in {row.model_id for row in old}:
                    indexes.remove(model_id, np.array([row.id for row in old if row.model_id == model_id]))
                session.execute(delete(ReferenceTemplate).where(ReferenceTemplate.model_id != self.model_id))
        except _Changed:
            return
        report.watchlists, report.removed_templates, report.completed = plan["watchlists"], plan["removed_templates"], True

    def _completion_plan(self, session: Session, threshold: float) -> dict[str, Any]:
        """What completing will change: each watchlist's model and threshold, old templates deleted."""
        watchlists = session.execute(
            select(Watchlist.name, Watchlist.model_id, Watchlist.threshold).where(Watchlist.model_id != self.model_id).order_by(Watchlist.name)
        ).all()
        old = session.scalar(select(func.count(ReferenceTemplate.id)).where(ReferenceTemplate.model_id != self.model_id)) or 0
        return {
            "watchlists": {row.name: {"from": row.model_id, "threshold_from": row.threshold, "threshold_to": threshold} for row in watchlists},
            "removed_templates": int(old),
        }


class _Changed(Exception):
    """Something was enrolled with the old model while completing: roll back, stay incomplete."""


def _enrolled_face(faces: list[Face], box: tuple[float, ...]) -> Face | None:
    """The detected face that overlaps the enrolled box most, if it overlaps enough."""
    if not faces:
        return None
    best = max(faces, key=lambda face: iou(face.box, box))
    return best if iou(best.box, box) >= MIN_BOX_OVERLAP else None
