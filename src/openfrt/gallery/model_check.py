"""The records store's own reference images as a model check set (:mod:`openfrt.vision.model_check`).

Photographs of real people — several of some, one of others — prove a model far better than
faces rendered from one photograph, so ``openfrt models add`` uses them whenever the store
holds enough. Decrypting reference images for this is a use of biometric data, so it is
audited (which subjects, how many images, for which model file), and the images stay in memory.
"""

from __future__ import annotations

from sqlalchemy import func, select

from openfrt.records.audit import AuditAction, record_event
from openfrt.records.models import ReferenceImage
from openfrt.records.store import RecordStore
from openfrt.vision import load_image
from openfrt.vision.model_check import CheckFaces, labelled_check_faces

#: At least this many subjects with two or more reference images (the genuine pairs) ...
MIN_REPEATED_SUBJECTS = 3
#: ... and this many subjects in all (the impostor pairs), or the rendered faces are used.
MIN_SUBJECTS = 8
#: At most this many subjects and images per subject are read, to keep the check to seconds.
MAX_SUBJECTS, MAX_IMAGES_PER_SUBJECT = 16, 3


def reference_check_faces(store: RecordStore, *, actor: str, purpose: str) -> CheckFaces | None:
    """Check faces from the store's reference images, or None when it holds too few people.

    Subjects with most images come first, so genuine pairs are as many as the limits allow.
    """
    with store.transaction() as session:
        counts = session.execute(
            select(ReferenceImage.subject_id, func.count(ReferenceImage.id).label("images"))
            .group_by(ReferenceImage.subject_id)
            .order_by(func.count(ReferenceImage.id).desc(), ReferenceImage.subject_id)
        ).all()
        if len(counts) < MIN_SUBJECTS or sum(1 for row in counts if row.images >= 2) < MIN_REPEATED_SUBJECTS:
            return None
        chosen = [row.subject_id for row in counts[:MAX_SUBJECTS]]
        rows = session.execute(
            select(ReferenceImage.id, ReferenceImage.subject_id, ReferenceImage.image)
            .where(ReferenceImage.subject_id.in_(chosen))
            .order_by(ReferenceImage.subject_id, ReferenceImage.id)
        ).all()
        taken: dict[str, list[int]] = {}
        images = []
        for row in rows:
            if len(taken.setdefault(row.subject_id, [])) < MAX_IMAGES_PER_SUBJECT:
                taken[row.subject_id].append(row.id)
                images.append((row.subject_id, load_image(store.cipher.decrypt(row.image), name=f"reference image {row.id}")))
        record_event(
            session, AuditAction.model_checked, actor=actor, reason=purpose,
            details={"subjects": sorted(taken), "reference_images": sum(len(ids) for ids in taken.values())},
        )
    return labelled_check_faces(images, f"{len(images)} reference images of {len(taken)} enrolled subjects")
