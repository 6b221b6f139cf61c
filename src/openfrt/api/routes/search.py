"""Retrospective (RFR) and operator-initiated (OIFR) search: a still against the reference database.

The answer is a ranked candidate list for a trained person to review, never an identification:
each candidate with the reference image that scored it and what the model's calibration says
of that score (how often someone not in the database scores as high in a database this size).
A case reference and a reason are required, and every search is audited with both. The
uploaded still is held in memory only; the face searched comes back in the answer, to be shown
beside the candidates, and nowhere else.
"""

from __future__ import annotations

import base64
import enum
from typing import Any

from fastapi import APIRouter, Depends, File, Form, Response, UploadFile

from openfrt.api.context import ServerContext
from openfrt.api.permissions import Permission
from openfrt.api.routes.uploads import read_upload
from openfrt.api.security import Principal, context, require
from openfrt.gallery.fitness import expected_fitness
from openfrt.live.clips import best_face_in_clip, is_clip
from openfrt.live.privacy import crop, encode_jpeg
from openfrt.records.text import LONG_TEXT

router = APIRouter(prefix="/api", tags=["search"])


class SearchKind(str, enum.Enum):
    retrospective = "retrospective"
    operator_initiated = "operator_initiated"


@router.post("/search", summary="Search the reference database with the largest face of a still, or the best face of a short clip")
async def search(
    response: Response,
    image: UploadFile = File(...),
    case_ref: str = Form(..., min_length=1, max_length=200),
    reason: str = Form(..., min_length=1, max_length=LONG_TEXT),
    kind: SearchKind = Form(SearchKind.retrospective),
    top: int = Form(10, ge=1, le=50),
    principal: Principal = Depends(require(Permission.search)),
    ctx: ServerContext = Depends(context),
) -> dict[str, Any]:
    label = image.filename or "upload"
    data = await read_upload(image, ctx.settings.max_upload_bytes)
    clip_time = None
    if is_clip(data):  # decoded outside the engine's lock, which it takes frame by frame
        face, probe, clip_time, frame = best_face_in_clip(ctx.engine, data, label, ctx.vision_lock)
    else:
        with ctx.vision_lock:
            frame = ctx.engine.load(data, label)
            face, probe = ctx.engine.largest_face_template(frame, label)
    candidates = ctx.gallery.search(
        probe, case_ref=case_ref, reason=reason, actor=principal.name, top=top, image=f"upload:{label}", kind=kind.value
    )
    searched = ctx.gallery.reference_subjects(probe.model_id)
    response.headers["Cache-Control"] = "no-store"  # it holds the searched face
    return {
        "kind": kind.value, "case_ref": case_ref, "image": label, "face": face.as_dict(), "clip_time": clip_time,
        "model_id": probe.model_id, "database_subjects": searched,
        "probe_crop": "data:image/jpeg;base64," + base64.b64encode(encode_jpeg(crop(frame, face.box))).decode("ascii"),
        "candidates": [
            {"rank": c.rank, "subject": c.subject, "display_name": ctx.gallery.subject(c.subject).subject.display_name,
             "similarity": round(c.similarity, 6), "reference_image": c.reference_image,
             "expected_at_score": expected_fitness(probe.model_id, c.similarity, searched)}
            for c in candidates
        ],
    }
