"""The gallery: enrol subjects, build watchlists, identify probes, search the reference database.

:class:`Gallery` composes the records store (encrypted, audited persistence), a face engine
(quality and templates) and the search index, and enforces the rules between them: a reference
image must pass the quality policy; templates of different models are never mixed; a watchlist
is searched exactly and only until it expires; an image the subject already has is skipped,
not stored twice; a retrospective search needs a case reference and a reason and only ever
proposes candidates; every change and search is audited; deleting a
subject or a watchlist removes everything derived from it, including cached matrices and index
entries.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from openfrt.errors import ImageError, ModelMismatchError
from openfrt.evaluation.calibration import floor_threshold
from openfrt.gallery.duplicates import Match, Picture
from openfrt.gallery.fitness import default_threshold, expected_fitness
from openfrt.gallery.matching import Candidate, Identification, TemplateMatrix
from openfrt.gallery.quality import FaceChoice, QualityPolicy, check_quality, choose_face
from openfrt.gallery.reference_index import ReferenceIndexes
from openfrt.records.audit import AuditAction, hold_audit_chain, record_event
from openfrt.records.errors import (
    DuplicateRecordError,
    EnrolmentRefused,
    InvalidRecordError,
    RecordNotFoundError,
    WatchlistExpiredError,
)
from openfrt.records.models import (
    Category,
    ReferenceImage,
    ReferenceTemplate,
    Subject,
    Watchlist,
    WatchlistMember,
    utc_now,
)
from openfrt.records.store import RecordStore
from openfrt.records.text import SHORT_TEXT, check_identifier, check_text
from openfrt.vision import Face, Template, compare

if TYPE_CHECKING:
    from openfrt.vision import FaceEngine

log = logging.getLogger(__name__)

#: The index returns templates, and a subject may have several; ask for this many per wanted
#: subject so that de-duplicating by subject still leaves ``top`` candidates.
SEARCH_OVERFETCH = 4


@dataclass(frozen=True)
class SubjectInfo:
    """Who a subject is; ``id`` comes from the caller (e.g. a custody or case number)."""

    id: str
    display_name: str
    category: Category
    notes: str | None = None


@dataclass(frozen=True)
class ImageToEnrol:
    """One reference image with the facts that justify keeping it."""

    source: Path | bytes
    label: str
    legal_basis: str | None = None
    source_ref: str | None = None
    captured_at: datetime | None = None
    face: FaceChoice = None


@dataclass(frozen=True)
class ImageOutcome:
    """What happened to one image: stored as ``reference_image_id``, skipped because the subject
    already has it as ``duplicate_of`` (``match`` saying how), or refused with a reason."""

    image: str
    reference_image_id: int | None = None
    face: Face | None = None
    reason: str | None = None
    detail: str | None = None
    #: The faces to choose from when it was refused for having several, in index order.
    faces: tuple[Face, ...] = ()
    duplicate_of: int | None = None
    match: Match | None = None

    @property
    def accepted(self) -> bool:
        return self.reason is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "reference_image": self.reference_image_id,
            "face": self.face.as_dict() if self.face else None,
            "refused": self.reason,
            "error": self.detail,
            "faces": [{"index": index, **face.as_dict()} for index, face in enumerate(self.faces)],
            "duplicate_of": {"reference_image": self.duplicate_of, "match": self.match} if self.duplicate_of is not None else None,
        }


@dataclass(frozen=True)
class EnrolmentReport:
    """A subject's batch: ``enrolled`` only if every image passed (nothing is stored otherwise);
    images the subject already has are skipped, so an enrolled batch may store fewer, or none."""

    subject: str
    enrolled: bool
    created: bool
    images: tuple[ImageOutcome, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "enrolled": self.enrolled,
            "created": self.created,
            "images": [image.as_dict() for image in self.images],
        }


@dataclass(frozen=True)
class WatchlistInfo:
    """A snapshot of a watchlist; ``revision`` tells whether a cached matrix of it is current."""

    id: int
    name: str
    purpose: str
    criteria: str | None
    authorised_by: str
    created_at: datetime
    expires_at: datetime | None
    threshold: float
    model_id: str
    revision: int
    subjects: tuple[str, ...] = field(default=())
    #: Why it is kept beyond one deployment; None: it is destroyed when its deployment ends.
    standing_reason: str | None = None

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= utc_now()

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "purpose": self.purpose,
            "criteria": self.criteria,
            "authorised_by": self.authorised_by,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "expired": self.expired,
            "threshold": self.threshold,
            "model_id": self.model_id,
            "subjects": list(self.subjects),
            "standing_reason": self.standing_reason,
        }


@dataclass(frozen=True)
class SubjectSummary:
    id: str
    display_name: str
    category: Category
    notes: str | None
    created_at: datetime
    reference_images: int

    @classmethod
    def of(cls, subject: Subject, reference_images: int) -> SubjectSummary:
        return cls(subject.id, subject.display_name, subject.category, subject.notes, subject.created_at, reference_images)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "category": self.category.value, "created_at": self.created_at.isoformat()}


@dataclass(frozen=True)
class ReferenceImageInfo:
    """What is known about a reference image, without its pixels (fetched, audited, on their own)."""

    id: int
    media_type: str
    face_box: tuple[float, ...]
    legal_basis: str | None
    source: str | None
    captured_at: datetime | None
    enrolled_at: datetime
    #: The models it has templates of (more than one while it is being moved to a new model).
    models: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "face_box": list(self.face_box), "models": list(self.models),
                "captured_at": self.captured_at.isoformat() if self.captured_at else None,
                "enrolled_at": self.enrolled_at.isoformat()}


@dataclass(frozen=True)
class SubjectDetail:
    subject: SubjectSummary
    images: tuple[ReferenceImageInfo, ...]
    watchlists: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {**self.subject.as_dict(), "images": [image.as_dict() for image in self.images], "watchlists": list(self.watchlists)}


@dataclass(frozen=True)
class MemberInfo:
    """A watchlist member as its page lists it: who, and why they are on the list."""

    subject: str
    display_name: str
    category: Category
    reason: str | None
    added_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "category": self.category.value, "added_at": self.added_at.isoformat()}


@dataclass(frozen=True)
class SubjectListing:
    """Who an alerted subject is, for the officer deciding whether to engage: name, category,
    their notes and why they are on the deployment's watchlist (None if not recorded)."""

    subject: str
    display_name: str
    category: Category
    notes: str | None
    listed_because: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "display_name": self.display_name, "category": self.category.value,
                "notes": self.notes, "listed_because": self.listed_because}


@dataclass(frozen=True)
class _Prepared:
    """An image that passed every check, ready to store."""

    data: bytes
    media_type: str
    face: Face
    template: Template
    picture: Picture


@dataclass(frozen=True)
class _Seen:
    """A picture the subject has: a stored reference image, or an earlier image of the batch being
    enrolled. ``template`` is its template of the engine's model (None if it has none)."""

    picture: Picture
    template: Template | None
    reference_image_id: int | None = None
    earlier: int | None = None


@dataclass(frozen=True)
class _Repeat:
    """An image of a batch that repeats a picture the subject has, and how."""

    match: Match
    of: _Seen

    def stored_as(self, stored: dict[int, int]) -> int:
        """The reference image repeated, given the ids the batch's new images were stored as."""
        return self.of.reference_image_id if self.of.reference_image_id is not None else stored[self.of.earlier]  # type: ignore[index]


class Gallery:
    """Subjects, watchlists, identification and retrospective search over one records store."""

    def __init__(
        self, store: RecordStore, engine: FaceEngine, policy: QualityPolicy | None = None, indexes: ReferenceIndexes | None = None
    ) -> None:
        self.store = store
        self.engine = engine
        self.policy = policy or QualityPolicy()
        #: The reference-search indexes: one file per model here, or shards on a cluster.
        self.indexes = indexes if indexes is not None else ReferenceIndexes(store)
        self._matrices: dict[int, tuple[int, TemplateMatrix]] = {}

    @property
    def model_id(self) -> str:
        """The model whose templates this gallery makes (the engine's embedder)."""
        return self.engine.embedder.model_id

    # -- subjects ------------------------------------------------------------------------------

    def enrol(
        self, subject: SubjectInfo, images: Sequence[ImageToEnrol], *, actor: str, watchlist: str | None = None,
        listed_because: str | None = None,
    ) -> EnrolmentReport:
        """Enrol ``images`` of ``subject`` (creating it if new), all or nothing, optionally into
        ``watchlist`` (``listed_because`` says why). Refusals are reported per image, not raised;
        record errors are raised. Images the subject already has (:mod:`openfrt.gallery.duplicates`)
        are skipped and reported with the stored image they repeat; the rest of the batch is stored."""
        check_identifier(subject.id, "subject id", path=True)
        check_text(subject.display_name, "subject's display name", limit=SHORT_TEXT)
        check_text(subject.notes, "subject's notes", required=False)
        check_text(listed_because, "reason for listing", required=False)
        for item in images:
            check_text(item.legal_basis, f"legal basis of {item.label}", required=False)
            check_text(item.source_ref, f"source of {item.label}", required=False)
        if not images:
            raise InvalidRecordError(f"subject {subject.id}: no reference images given")
        if watchlist is not None:
            self._check_watchlist_accepts(watchlist)
        prepared, outcomes = self._prepare_all(images)
        if any(not outcome.accepted for outcome in outcomes):
            return EnrolmentReport(subject.id, enrolled=False, created=False, images=tuple(outcomes))
        with self.store.transaction() as session:
            hold_audit_chain(session)  # one enrolment at a time: two clicks cannot both find an image new
            repeats = self._repeats(session, subject.id, prepared)
            fresh = [number for number, repeat in enumerate(repeats) if repeat is None]
            created, rows = self._store_images(session, subject, [images[n] for n in fresh], [prepared[n] for n in fresh])
            stored = {number: row.id for number, row in zip(fresh, rows)}
            outcomes = [
                ImageOutcome(item.label, stored[number], ready.face) if repeat is None
                else ImageOutcome(item.label, face=ready.face, duplicate_of=repeat.stored_as(stored), match=repeat.match)
                for number, (item, ready, repeat) in enumerate(zip(images, prepared, repeats))
            ]
            added = self._add_members(session, self._watchlist_row(session, watchlist), [subject.id], listed_because) if watchlist else []
            if rows:
                self._touch_watchlists(session, [subject.id])
            if rows or added:
                record_event(
                    session, AuditAction.subject_enrolled, actor=actor, target=subject.id,
                    reason=_joined(images[n].legal_basis for n in fresh),
                    details={"reference_images": [row.id for row in rows], "model_id": self.model_id,
                             "created": created, "watchlist": watchlist,
                             "skipped": [{"duplicate_of": o.duplicate_of, "match": o.match} for o in outcomes if o.duplicate_of is not None]},
                )
            template_ids = [row.templates[0].id for row in rows]
        if rows:
            self._index_added(template_ids, [prepared[n].template for n in fresh])
        return EnrolmentReport(subject.id, enrolled=True, created=created, images=tuple(outcomes))

    def remove_subject(self, subject_id: str, *, actor: str, reason: str | None = None) -> dict[str, Any]:
        """Delete a subject and everything derived from it: reference images, templates, watchlist
        memberships, index entries and cached matrices. Returns counts (for the audit and the user)."""
        check_text(reason, "reason for the removal", required=False)
        with self.store.transaction() as session:
            subject = session.get(Subject, subject_id)
            if subject is None:
                raise RecordNotFoundError(f"no subject {subject_id!r}")
            templates = session.execute(
                select(ReferenceTemplate.id, ReferenceTemplate.model_id)
                .join(ReferenceImage)
                .where(ReferenceImage.subject_id == subject_id)
            ).all()
            for model_id in {row.model_id for row in templates}:
                self.indexes.remove(model_id, np.array([row.id for row in templates if row.model_id == model_id]))
            watchlists = self._touch_watchlists(session, [subject_id])
            summary = {"reference_images": len(subject.images), "templates": len(templates), "watchlists": watchlists}
            record_event(session, AuditAction.subject_removed, actor=actor, target=subject_id, reason=reason, details=summary)
            session.delete(subject)
        return {"subject": subject_id, **summary}

    def remove_reference_image(self, reference_image_id: int, *, actor: str, reason: str | None = None) -> dict[str, Any]:
        """Delete one reference image with its templates and index entries. Refused for the
        subject's last image (remove the subject instead) and for the last image with a
        template of the model of a watchlist the subject is on (a member it could not search)."""
        with self.store.transaction() as session:
            row = session.get(ReferenceImage, reference_image_id)
            if row is None:
                raise RecordNotFoundError(f"no reference image {reference_image_id}")
            subject_id = row.subject_id
            others = [image for image in row.subject.images if image.id != row.id]
            if not others:
                raise InvalidRecordError(
                    f"reference image {reference_image_id} is the only one of subject {subject_id!r}; remove the subject instead"
                )
            left = {template.model_id for image in others for template in image.templates}
            stranded = session.scalars(
                select(Watchlist.name).join(WatchlistMember)
                .where(WatchlistMember.subject_id == subject_id, Watchlist.model_id.not_in(left)).order_by(Watchlist.name)
            ).all()
            if stranded:
                raise InvalidRecordError(
                    f"subject {subject_id!r} is on watchlist(s) {', '.join(map(repr, stranded))}, and reference image "
                    f"{reference_image_id} is their only image those watchlists can search with; take them off first"
                )
            for template in row.templates:
                self.indexes.remove(template.model_id, np.array([template.id]))
            watchlists = self._touch_watchlists(session, [subject_id])
            summary = {"reference_image": reference_image_id, "templates": len(row.templates), "watchlists": watchlists}
            record_event(session, AuditAction.reference_image_removed, actor=actor, target=subject_id, reason=reason, details=summary)
            session.delete(row)
        return {"subject": subject_id, **summary}

    def reference_image(self, reference_image_id: int) -> bytes:
        """The original bytes of a reference image, decrypted in memory (for officers' review)."""
        with self.store.transaction() as session:
            row = session.get(ReferenceImage, reference_image_id)
            if row is None:
                raise RecordNotFoundError(f"no reference image {reference_image_id}")
            return self.store.cipher.decrypt(row.image)

    def view_reference_image(self, reference_image_id: int, *, actor: str, reason: str) -> tuple[bytes, str]:
        """A reference image and its media type for a person to look at; every viewing is audited
        (who looked at whose photograph, and why — a reason is required), unlike
        :meth:`reference_image` for machines."""
        check_text(reason, "reason for viewing the reference image")
        with self.store.transaction() as session:
            row = session.get(ReferenceImage, reference_image_id)
            if row is None:
                raise RecordNotFoundError(f"no reference image {reference_image_id}")
            record_event(
                session, AuditAction.reference_image_viewed, actor=actor, target=row.subject_id, reason=reason,
                details={"reference_image": reference_image_id},
            )
            return self.store.cipher.decrypt(row.image), row.media_type

    def reference_image_info(self, reference_image_id: int) -> ReferenceImageInfo:
        """What is known about one reference image (its face box among it), without its pixels."""
        with self.store.transaction() as session:
            row = session.get(ReferenceImage, reference_image_id)
            if row is None:
                raise RecordNotFoundError(f"no reference image {reference_image_id}")
            return _image_info(row)

    def subjects(self, *, search: str | None = None, limit: int = 200, offset: int = 0) -> list[SubjectSummary]:
        """Subjects by id, optionally those whose id or name contains ``search``, with image counts."""
        query = (
            select(Subject, func.count(ReferenceImage.id))
            .outerjoin(ReferenceImage)
            .group_by(Subject.id)
            .order_by(Subject.id)
            .limit(limit)
            .offset(offset)
        )
        if search:
            pattern = f"%{search}%"
            query = query.where(Subject.id.ilike(pattern) | Subject.display_name.ilike(pattern))
        with self.store.transaction() as session:
            return [SubjectSummary.of(subject, images) for subject, images in session.execute(query)]

    def subject(self, subject_id: str) -> SubjectDetail:
        """A subject, its reference images (facts, not pixels) and the watchlists it is on."""
        with self.store.transaction() as session:
            subject = session.get(Subject, subject_id)
            if subject is None:
                raise RecordNotFoundError(f"no subject {subject_id!r}")
            watchlists = session.scalars(
                select(Watchlist.name).join(WatchlistMember).where(WatchlistMember.subject_id == subject_id).order_by(Watchlist.name)
            ).all()
            images = tuple(_image_info(row) for row in subject.images)
            return SubjectDetail(SubjectSummary.of(subject, len(images)), images, tuple(watchlists))

    def _prepare_all(self, images: Sequence[ImageToEnrol]) -> tuple[list[_Prepared], list[ImageOutcome]]:
        prepared, outcomes = [], []
        for item in images:
            try:
                ready = self._prepare(item)
            except EnrolmentRefused as exc:
                outcomes.append(ImageOutcome(item.label, reason=exc.reason, detail=exc.detail, faces=exc.faces))
            except ImageError as exc:
                outcomes.append(ImageOutcome(item.label, reason="bad_image", detail=exc.problem))
            else:
                prepared.append(ready)
                outcomes.append(ImageOutcome(item.label, face=ready.face))
        return prepared, outcomes

    def _prepare(self, item: ImageToEnrol) -> _Prepared:
        """Decode, pick the face, check its quality and embed it; raises to refuse."""
        rgb = self.engine.load(item.source, item.label)
        data = item.source if isinstance(item.source, bytes) else Path(item.source).read_bytes()
        face = choose_face(self.engine.detector.detect(rgb), item.face, item.label, self.engine.detector.confident_score)
        check_quality(face, self.policy, item.label)
        template = self.engine.embedder.embed(rgb, [face])[0]
        return _Prepared(data, _media_type(data), face, template, Picture.of(data, rgb))

    def _repeats(self, session: Session, subject_id: str, prepared: Sequence[_Prepared]) -> list[_Repeat | None]:
        """For each prepared image, the stored image or earlier image of the batch it repeats, if any."""
        seen = self._stored_pictures(session, subject_id)
        repeats: list[_Repeat | None] = []
        for number, ready in enumerate(prepared):
            repeat = next((_Repeat(match, other) for other in seen if (match := self._match(ready, other))), None)
            repeats.append(repeat)
            if repeat is None:
                seen.append(_Seen(ready.picture, ready.template, earlier=number))
        return repeats

    def _stored_pictures(self, session: Session, subject_id: str) -> list[_Seen]:
        """The subject's reference images as duplicate detection compares them."""
        seen = []
        for row in session.scalars(select(ReferenceImage).where(ReferenceImage.subject_id == subject_id).order_by(ReferenceImage.id)):
            data = self.store.cipher.decrypt(row.image)
            template = next((self.store.open_template(t.vector, t.model_id) for t in row.templates if t.model_id == self.model_id), None)
            seen.append(_Seen(Picture.of(data, self.engine.load(data, f"reference image {row.id}")), template, reference_image_id=row.id))
        return seen

    def _match(self, ready: _Prepared, other: _Seen) -> Match | None:
        """How ``ready`` repeats ``other``: the same file, or the same face in the same picture (a
        stored image without a template of this model is compared by its picture alone)."""
        same_face = other.template is None or compare(ready.template, other.template) >= self.engine.threshold
        return ready.picture.repeats(other.picture, same_face)

    def _store_images(
        self, session: Session, info: SubjectInfo, images: Sequence[ImageToEnrol], prepared: Sequence[_Prepared]
    ) -> tuple[bool, list[ReferenceImage]]:
        subject, created = self._subject_for_enrolment(session, info)
        rows = [
            ReferenceImage(
                image=self.store.cipher.encrypt(ready.data),
                media_type=ready.media_type,
                face_box=[round(float(v), 1) for v in ready.face.box],
                legal_basis=item.legal_basis,
                source=item.source_ref,
                captured_at=item.captured_at,
                templates=[ReferenceTemplate(model_id=ready.template.model_id, vector=self.store.seal_template(ready.template))],
            )
            for item, ready in zip(images, prepared)
        ]
        subject.images.extend(rows)
        session.flush()
        return created, rows

    def _subject_for_enrolment(self, session: Session, info: SubjectInfo) -> tuple[Subject, bool]:
        """The existing subject (if it is the same person record) or a new one."""
        subject = session.get(Subject, info.id)
        if subject is None:
            subject = Subject(id=info.id, display_name=info.display_name, category=info.category, notes=info.notes)
            session.add(subject)
            return subject, True
        if (subject.display_name, subject.category) != (info.display_name, info.category):
            raise DuplicateRecordError(
                f"subject {info.id!r} exists as {subject.display_name!r} ({subject.category.value}); "
                "give the same name and category to add images to it"
            )
        subject.updated_at = utc_now()
        return subject, False

    def _index_added(self, template_ids: list[int], templates: list[Template]) -> None:
        """Add committed templates to the search index. A failure here must not undo or misreport
        the enrolment: the database is the source of truth and the index rebuilds from it."""
        try:
            self.indexes.add(self.model_id, np.array(template_ids), np.stack([t.vector for t in templates]))
        except Exception as exc:  # noqa: BLE001 - any index failure is healed by the next rebuild
            log.warning("search index not updated (%s); it will be rebuilt from the database when next used", exc)

    # -- watchlists ----------------------------------------------------------------------------

    def create_watchlist(
        self,
        name: str,
        *,
        purpose: str,
        authorised_by: str,
        actor: str,
        criteria: str | None = None,
        expires_at: datetime | None = None,
        threshold: float | None = None,
        standing_reason: str | None = None,
    ) -> WatchlistInfo:
        """A new, empty watchlist for the engine's model; threshold defaults to the calibrated one.
        A threshold below the model's floor even for one subject is refused: it can only be
        set on a deployment, where a second authorising officer must approve it.

        Without ``standing_reason`` the watchlist is made for one deployment, and destroyed when
        that deployment ends; with one (why it must outlive a deployment) it stands until
        deleted or expired."""
        check_identifier(name, "watchlist name")
        check_text(purpose, "watchlist's purpose")
        check_text(authorised_by, "watchlist's authorising officer", limit=SHORT_TEXT)
        check_text(criteria, "watchlist's criteria", required=False)
        if standing_reason is not None and not standing_reason.strip():
            raise InvalidRecordError("a standing watchlist needs the reason it outlives a deployment")
        check_text(standing_reason, "reason the watchlist stands", required=False)
        if expires_at is not None and expires_at <= utc_now():
            raise InvalidRecordError(f"expiry time {expires_at.isoformat()} is already past")
        if threshold is None:
            threshold = default_threshold(self.model_id, self.engine.embedder.default_threshold)
        if not 0.0 <= threshold <= 1.0:
            raise InvalidRecordError(f"threshold {threshold} is outside 0..1")
        # Uncalibrated: the 1:1 threshold, whose false-match rate (0.1%) is the floor for one subject.
        floor = floor_threshold(self.model_id, 1) or self.engine.embedder.default_threshold
        if threshold < floor:
            raise InvalidRecordError(
                f"threshold {threshold} is below {floor:.4f}, the floor of {self.model_id} even for one subject "
                "(more than 1 false alert in 1,000 searches of people not on it); a lower threshold is set on a "
                "deployment, where a second authorising officer must approve it"
            )
        with self.store.transaction() as session:
            if session.scalar(select(Watchlist.id).where(Watchlist.name == name)) is not None:
                raise DuplicateRecordError(f"a watchlist named {name!r} already exists")
            row = Watchlist(
                name=name, purpose=purpose, criteria=criteria, authorised_by=authorised_by,
                expires_at=expires_at, threshold=threshold, model_id=self.model_id, revision=0, standing_reason=standing_reason,
            )
            session.add(row)
            session.flush()
            record_event(
                session, AuditAction.watchlist_created, actor=actor, target=name, reason=purpose,
                details={"authorised_by": str(authorised_by), "criteria": criteria, "threshold": threshold,
                         "model_id": self.model_id, "expires_at": expires_at.isoformat() if expires_at else None,
                         "standing_reason": standing_reason},
            )
            return _info(session, row)

    def add_to_watchlist(self, name: str, subject_ids: Sequence[str], *, actor: str, reason: str | None = None) -> WatchlistInfo:
        """Add existing subjects (all or none); each needs a template of the watchlist's model.
        ``reason`` says why they are on this list; their alerts show it to the officers."""
        with self.store.transaction() as session:
            row = self._watchlist_row(session, name)
            _check_not_expired(row)
            added = self._add_members(session, row, subject_ids, reason)
            record_event(session, AuditAction.watchlist_members_added, actor=actor, target=name, reason=reason, details={"added": added})
            return _info(session, row)

    def remove_from_watchlist(self, name: str, subject_ids: Sequence[str], *, actor: str, reason: str | None = None) -> WatchlistInfo:
        """Take subjects off a watchlist (all or none); they stay in the reference database. A
        running deployment keeps the snapshot it started with until it ends."""
        with self.store.transaction() as session:
            row = self._watchlist_row(session, name)
            wanted = list(dict.fromkeys(subject_ids))
            if not wanted:
                raise InvalidRecordError("no subjects to take off the watchlist were given")
            present = set(session.scalars(
                select(WatchlistMember.subject_id).where(WatchlistMember.watchlist_id == row.id, WatchlistMember.subject_id.in_(wanted))
            ))
            absent = [subject for subject in wanted if subject not in present]
            if absent:
                raise RecordNotFoundError(f"subject(s) {', '.join(map(repr, absent))} are not on watchlist {name!r}; nothing was removed")
            session.execute(delete(WatchlistMember).where(WatchlistMember.watchlist_id == row.id, WatchlistMember.subject_id.in_(wanted)))
            row.revision += 1
            record_event(session, AuditAction.watchlist_members_removed, actor=actor, target=name, reason=reason, details={"removed": wanted})
            session.flush()
            info = _info(session, row)
        self._matrices.pop(info.id, None)
        return info

    def watchlist(self, name: str) -> WatchlistInfo:
        with self.store.transaction() as session:
            return _info(session, self._watchlist_row(session, name))

    def watchlists(self) -> list[WatchlistInfo]:
        with self.store.transaction() as session:
            return [_info(session, row) for row in session.scalars(select(Watchlist).order_by(Watchlist.name))]

    def delete_watchlist(self, name: str, *, actor: str, reason: str | None = None) -> WatchlistInfo:
        """Destroy a watchlist: its row, memberships and cached matrix. Subjects stay in the
        reference database, where they came from."""
        check_text(reason, "reason for the deletion", required=False)
        with self.store.transaction() as session:
            info = destroy_watchlist(session, self._watchlist_row(session, name), actor=actor, reason=reason)
        self.forget_watchlist(info.id)
        return info

    def forget_watchlist(self, watchlist_id: int) -> None:
        """Drop the cached matrix of a watchlist destroyed elsewhere (e.g. when its deployment ended)."""
        self._matrices.pop(watchlist_id, None)

    def fitness(self, info: WatchlistInfo) -> dict[str, Any] | None:
        """Expected TPIR/FPIR of the watchlist at its threshold, size and reference images per
        subject (None if the model is uncalibrated)."""
        references = self._matrix(info).max_references
        return expected_fitness(info.model_id, info.threshold, len(info.subjects), references)

    def require_engine_model(self, name: str) -> WatchlistInfo:
        """The watchlist ``name``, if this engine makes templates of its model; otherwise a
        :class:`ModelMismatchError` naming the fix, raised before anything is recorded."""
        info = self.watchlist(name)
        if info.model_id != self.model_id:
            raise ModelMismatchError(
                f"watchlist {name!r} holds {info.model_id} templates but the engine embeds with {self.model_id}; "
                f"run 'openfrt models migrate --to {self.engine.config.embedder}' to re-embed the reference images "
                f"with it, or choose the watchlist's model again with 'openfrt models use'"
            )
        return info

    def members(self, name: str) -> list[MemberInfo]:
        """A watchlist's subjects with who they are and why they are on it, by subject id."""
        with self.store.transaction() as session:
            row = self._watchlist_row(session, name)
            found = session.execute(
                select(Subject, WatchlistMember).join(WatchlistMember).where(WatchlistMember.watchlist_id == row.id).order_by(Subject.id)
            ).all()
            return [MemberInfo(s.id, s.display_name, s.category, m.reason, m.added_at) for s, m in found]

    def listings(self, wanted: Iterable[tuple[str, str | None]]) -> dict[tuple[str, str | None], SubjectListing]:
        """Who each ``(subject id, watchlist name)`` is and why they are on that list, for alert
        cards; a subject since removed is left out, a watchlist since destroyed gives no reason."""
        pairs = set(wanted)
        if not pairs:
            return {}
        listed = (
            select(WatchlistMember.subject_id, Watchlist.name, WatchlistMember.reason).join(Watchlist)
            .where(Watchlist.name.in_({name for _, name in pairs if name})).subquery()
        )
        with self.store.transaction() as session:  # one query: subjects, and their memberships of those lists
            rows = session.execute(
                select(Subject.id, Subject.display_name, Subject.category, Subject.notes, listed.c.name, listed.c.reason)
                .outerjoin(listed, listed.c.subject_id == Subject.id)
                .where(Subject.id.in_({subject for subject, _ in pairs}))
            ).all()
        people = {row.id: row for row in rows}
        reasons = {(row.id, row.name): row.reason for row in rows if row.name is not None}
        return {
            (subject, watchlist): SubjectListing(subject, row.display_name, row.category, row.notes, reasons.get((subject, watchlist)))
            for subject, watchlist in pairs if (row := people.get(subject)) is not None
        }

    def _check_watchlist_accepts(self, name: str) -> None:
        """Fail before any image work if enrolling into ``name`` cannot succeed."""
        with self.store.transaction() as session:
            row = self._watchlist_row(session, name)
            _check_not_expired(row)
            if row.model_id != self.model_id:
                raise ModelMismatchError(
                    f"watchlist {name!r} holds {row.model_id} templates but this engine makes {self.model_id}"
                )

    @staticmethod
    def _watchlist_row(session: Session, name: str) -> Watchlist:
        row = session.scalar(select(Watchlist).where(Watchlist.name == name))
        if row is None:
            raise RecordNotFoundError(f"no watchlist named {name!r}")
        return row

    def _add_members(self, session: Session, row: Watchlist, subject_ids: Sequence[str], reason: str | None = None) -> list[str]:
        wanted = list(dict.fromkeys(subject_ids))
        known = set(session.scalars(select(Subject.id).where(Subject.id.in_(wanted))))
        missing = [subject for subject in wanted if subject not in known]
        if missing:
            raise RecordNotFoundError(f"no subject(s) {', '.join(map(repr, missing))}; nothing was added")
        with_model = set(
            session.scalars(
                select(ReferenceImage.subject_id)
                .join(ReferenceTemplate)
                .where(ReferenceImage.subject_id.in_(wanted), ReferenceTemplate.model_id == row.model_id)
            )
        )
        lacking = [subject for subject in wanted if subject not in with_model]
        if lacking:
            raise ModelMismatchError(
                f"subject(s) {', '.join(map(repr, lacking))} have no {row.model_id} template; "
                "re-enrol them with that model; nothing was added"
            )
        present = set(session.scalars(select(WatchlistMember.subject_id).where(WatchlistMember.watchlist_id == row.id)))
        added = [subject for subject in wanted if subject not in present]
        check_text(reason, "reason for listing", required=False)
        reason = reason.strip() if reason and reason.strip() else None
        session.add_all(WatchlistMember(watchlist_id=row.id, subject_id=subject, reason=reason) for subject in added)
        if added:
            row.revision += 1
        session.flush()
        return added

    def _touch_watchlists(self, session: Session, subject_ids: Sequence[str]) -> list[str]:
        """Mark the watchlists holding these subjects as changed and drop their cached matrices;
        returns their names."""
        rows = session.execute(
            select(Watchlist.id, Watchlist.name)
            .join(WatchlistMember)
            .where(WatchlistMember.subject_id.in_(subject_ids))
            .distinct()
        ).all()
        if rows:
            ids = [row.id for row in rows]
            session.execute(update(Watchlist).where(Watchlist.id.in_(ids)).values(revision=Watchlist.revision + 1))
            for watchlist_id in ids:
                self._matrices.pop(watchlist_id, None)
        return sorted(row.name for row in rows)

    # -- identification and search -------------------------------------------------------------

    def identify(self, probe: Template, watchlist: WatchlistInfo | str, top: int = 5) -> Identification:
        """Rank the watchlist's subjects for ``probe`` (exact search); alert when the best
        reaches the watchlist's threshold. Refuses expired watchlists and other models' probes."""
        info = watchlist if isinstance(watchlist, WatchlistInfo) else self.watchlist(watchlist)
        if info.expired:
            raise WatchlistExpiredError(f"watchlist {info.name!r} expired at {info.expires_at}; it must not be searched")
        if probe.model_id != info.model_id:
            raise ModelMismatchError(
                f"probe made by {probe.model_id} cannot be searched against watchlist {info.name!r} "
                f"({info.model_id} templates)"
            )
        candidates = self._matrix(info).rank(probe, top)
        alert = bool(candidates) and candidates[0].similarity >= info.threshold
        return Identification(info.name, info.threshold, tuple(candidates), alert)

    def search(
        self,
        probe: Template,
        *,
        case_ref: str,
        reason: str,
        actor: str,
        top: int = 10,
        image: str | None = None,
        kind: str = "retrospective",
    ) -> list[Candidate]:
        """Retrospective search of the whole reference database (approximate index): candidates
        for a human to review, never a match. Needs a case reference and a reason; audited with
        the ``kind`` of search (retrospective, or operator-initiated from an officer's photo)."""
        if not (case_ref and case_ref.strip() and reason and reason.strip()):
            raise InvalidRecordError("a retrospective search needs a case reference and a reason")
        check_text(case_ref, "case reference", limit=SHORT_TEXT)
        check_text(reason, "reason for the search")
        self._check_reference_model(probe.model_id)
        candidates = self._search_index(probe, top)
        with self.store.transaction() as session:
            record_event(
                session, AuditAction.retrospective_search, actor=actor, target=image, case_ref=case_ref, reason=reason,
                details={"kind": kind, "model_id": probe.model_id, "top": top, "candidates": [c.subject for c in candidates]},
            )
        return candidates

    def reference_candidates(self, probe: Template, top: int) -> list[Candidate]:
        """The reference database's ``top`` candidates for ``probe``, unaudited and unchecked: for
        a search of many probes that checks the model and audits once (:mod:`openfrt.footage`)."""
        return self._search_index(probe, top)

    def check_reference_model(self, model_id: str) -> None:
        """Refuse probes of ``model_id`` when the reference database holds another model's templates."""
        self._check_reference_model(model_id)

    def watchlist_snapshot(self, name: str) -> tuple[WatchlistInfo, TemplateMatrix]:
        """A live deployment's snapshot: the watchlist as it is now and a private matrix of its
        templates, read in one transaction. It is not cached here, so later edits of the
        watchlist cannot reach it and it is gone from memory once its holder drops it.
        Refuses an expired watchlist."""
        with self.store.transaction() as session:
            row = self._watchlist_row(session, name)
            _check_not_expired(row)
            return _info(session, row), self._load_matrix(session, row.id, row.model_id)

    def _matrix(self, info: WatchlistInfo) -> TemplateMatrix:
        """The watchlist's templates as a matrix, decrypted once and cached until it changes."""
        cached = self._matrices.get(info.id)
        with self.store.transaction() as session:
            # Watchlists destroyed by another process leave no decrypted templates behind here.
            cached_ids = list(self._matrices)
            existing = set(session.scalars(select(Watchlist.id).where(Watchlist.id.in_(cached_ids))))
            for gone in set(cached_ids) - existing:
                self._matrices.pop(gone, None)
            revision = session.scalar(select(Watchlist.revision).where(Watchlist.id == info.id))
            if revision is None:
                raise RecordNotFoundError(f"watchlist {info.name!r} no longer exists")
            if cached and cached[0] == revision:
                return cached[1]
            matrix = self._load_matrix(session, info.id, info.model_id)
        self._matrices[info.id] = (revision, matrix)
        return matrix

    def _load_matrix(self, session: Session, watchlist_id: int, model_id: str) -> TemplateMatrix:
        rows = session.execute(
            select(ReferenceImage.subject_id, ReferenceTemplate.vector)
            .join(ReferenceTemplate)
            .join(WatchlistMember, WatchlistMember.subject_id == ReferenceImage.subject_id)
            .where(WatchlistMember.watchlist_id == watchlist_id, ReferenceTemplate.model_id == model_id)
        ).all()
        return TemplateMatrix(model_id, [(row.subject_id, self.store.open_template(row.vector, model_id)) for row in rows])

    def _check_reference_model(self, model_id: str) -> None:
        with self.store.transaction() as session:
            models = set(session.scalars(select(ReferenceTemplate.model_id).distinct()))
        if models and model_id not in models:
            raise ModelMismatchError(
                f"the reference database holds {', '.join(sorted(models))} templates, none of {model_id}; "
                "search with the model it was enrolled with"
            )

    def _search_index(self, probe: Template, top: int) -> list[Candidate]:
        index = self.indexes.index(probe.model_id, probe.vector.size)
        k = min(len(index), top * SEARCH_OVERFETCH)
        if k <= 0:
            return []
        similarities, ids = index.search(probe.vector[None, :].astype(np.float32), k)
        found = [(int(i), float(s)) for i, s in zip(ids[0], similarities[0]) if i >= 0]
        with self.store.transaction() as session:
            owners = {
                row.id: (row.subject_id, row.image_id) for row in session.execute(
                    select(ReferenceTemplate.id, ReferenceImage.subject_id, ReferenceImage.id.label("image_id"))
                    .join(ReferenceImage)
                    .where(ReferenceTemplate.id.in_([i for i, _ in found]))
                )
            }
        best: dict[str, tuple[float, int]] = {}
        for template_id, similarity in sorted(found, key=lambda pair: -pair[1]):
            subject, image = owners.get(template_id, (None, 0))
            if subject is not None and subject not in best:
                best[subject] = (similarity, image)
        return [Candidate(subject, similarity, rank, image)
                for rank, (subject, (similarity, image)) in enumerate(list(best.items())[:top], start=1)]

    def reference_subjects(self, model_id: str) -> int:
        """How many subjects have a template of ``model_id``: the size of the database a
        retrospective search with that model searches."""
        with self.store.transaction() as session:
            return session.scalar(
                select(func.count(func.distinct(ReferenceImage.subject_id))).join(ReferenceTemplate)
                .where(ReferenceTemplate.model_id == model_id)
            ) or 0


def _image_info(row: ReferenceImage) -> ReferenceImageInfo:
    return ReferenceImageInfo(row.id, row.media_type, tuple(row.face_box), row.legal_basis, row.source, row.captured_at, row.enrolled_at,
                              tuple(sorted(template.model_id for template in row.templates)))


def destroy_watchlist(
    session: Session, row: Watchlist, *, actor: str, reason: str | None, details: dict[str, Any] | None = None
) -> WatchlistInfo:
    """Delete a watchlist and its memberships in the caller's transaction, audited with ``reason``
    and ``details`` (never its templates); the caller drops any cached matrix of it."""
    info = _info(session, row)
    record_event(
        session, AuditAction.watchlist_deleted, actor=actor, target=row.name, reason=reason,
        details={"subjects": len(info.subjects), "purpose": info.purpose, **(details or {})},
    )
    session.delete(row)
    return info


def _info(session: Session, row: Watchlist) -> WatchlistInfo:
    subjects = session.scalars(
        select(WatchlistMember.subject_id).where(WatchlistMember.watchlist_id == row.id).order_by(WatchlistMember.subject_id)
    ).all()
    return WatchlistInfo(
        row.id, row.name, row.purpose, row.criteria, row.authorised_by, row.created_at, row.expires_at,
        row.threshold, row.model_id, row.revision, tuple(subjects), row.standing_reason,
    )


def _check_not_expired(row: Watchlist) -> None:
    if row.expires_at is not None and row.expires_at <= utc_now():
        raise WatchlistExpiredError(f"watchlist {row.name!r} expired at {row.expires_at.isoformat()}")


def _media_type(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as image:
        return Image.MIME.get(image.format or "", "application/octet-stream")


def _joined(values: Iterable[str | None]) -> str | None:
    distinct = list(dict.fromkeys(value for value in values if value))
    return "; ".join(distinct) or None
