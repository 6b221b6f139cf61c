"""Subjects of the reference database: enrolment by upload, with quality feedback per image."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, UploadFile
from fastapi.responses import JSONResponse, Response

from openfrt.api.context import ServerContext
from openfrt.api.params import MAX_ROW_ID, RecordId
from openfrt.api.permissions import Permission
from openfrt.api.routes.uploads import read_upload
from openfrt.api.security import Principal, context, require
from openfrt.gallery import FaceChoice, ImageToEnrol, SubjectInfo
from openfrt.live.privacy import crop, encode_jpeg
from openfrt.records.models import Category
from openfrt.records.text import LONG_TEXT

router = APIRouter(prefix="/api", tags=["subjects"])


@router.get("/subjects", summary="Subjects, optionally filtered by id or name")
def list_subjects(
    search: str | None = Query(None, max_length=200),
    limit: int = Query(200, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_ROW_ID),
    _: Principal = Depends(require(Permission.view_subjects)),
    ctx: ServerContext = Depends(context),
) -> list[dict[str, Any]]:
    return [subject.as_dict() for subject in ctx.gallery.subjects(search=search, limit=limit, offset=offset)]


@router.get("/subjects/{subject_id:path}", summary="A subject, its reference images (without pixels) and watchlists")
def get_subject(subject_id: str, _: Principal = Depends(require(Permission.view_subjects)),
                ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    return ctx.gallery.subject(subject_id).as_dict()


@router.post("/subjects", summary="Enrol reference images of a subject (all or none; creates the subject if new)",
             responses={201: {"description": "enrolled"}, 422: {"description": "refused: see each image's reason"},
                        200: {"description": "nothing new: every image repeats one the subject has (see duplicate_of)"}})
async def enrol(
    subject_id: str = Form(..., max_length=128),
    display_name: str = Form(..., max_length=200),
    category: Category = Form(...),
    legal_basis: str = Form(..., min_length=1, max_length=LONG_TEXT, description="Why these images may be held (recorded with them)."),
    notes: str | None = Form(None, max_length=LONG_TEXT),
    source: str | None = Form(None, max_length=LONG_TEXT, description="Where the images come from, e.g. a custody record."),
    watchlist: str | None = Form(None, description="Also add the subject to this watchlist."),
    listed_because: str | None = Form(None, max_length=LONG_TEXT, description="Why the subject is on that watchlist (shown on their alerts)."),
    images: list[UploadFile] = File(...),
    faces: list[str] = Form([], description="Which face of each image to enrol, in the images' order: a face index (as a refusal "
                                             "for several faces lists them), 'largest', or empty for 'exactly one face'."),
    principal: Principal = Depends(require(Permission.enrol)),
    ctx: ServerContext = Depends(context),
) -> JSONResponse:
    if watchlist is not None and not principal.can(Permission.manage_watchlists):
        raise HTTPException(403, f"role {principal.user.role.value} may not change watchlists")
    choices = face_choices(faces, len(images))
    batch = [
        ImageToEnrol(await read_upload(image, ctx.settings.max_upload_bytes), image.filename or f"image {number}", legal_basis, source,
                     face=choice)
        for number, (image, choice) in enumerate(zip(images, choices), start=1)
    ]
    with ctx.vision_lock:
        report = ctx.gallery.enrol(SubjectInfo(subject_id, display_name, category, notes), batch, actor=principal.name, watchlist=watchlist,
                                    listed_because=listed_because)
    stored = any(image.reference_image_id is not None for image in report.images)
    return JSONResponse(report.as_dict(), status_code=(201 if stored else 200) if report.enrolled else 422)


def face_choices(given: list[str], images: int) -> list[FaceChoice]:
    """One :data:`FaceChoice` per image from the form's ``faces`` values (missing ones: None)."""
    if len(given) > images:
        raise HTTPException(422, f"{len(given)} face choices for {images} image(s)")
    choices: list[FaceChoice] = []
    for text in given:
        text = text.strip()
        if text and text != "largest" and not text.isdigit():
            raise HTTPException(422, f"face choice {text!r} is not a face index, 'largest' or empty")
        choices.append(None if not text else "largest" if text == "largest" else int(text))
    return choices + [None] * (images - len(choices))


@router.delete("/subjects/{subject_id:path}", summary="Delete a subject and everything derived from it")
def remove_subject(subject_id: str, reason: str = Query(..., min_length=1, max_length=LONG_TEXT),
                   principal: Principal = Depends(require(Permission.remove_subjects)),
                   ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    return ctx.gallery.remove_subject(subject_id, actor=principal.name, reason=reason)


@router.delete("/reference-images/{image_id}", summary="Delete one reference image of a subject (audited)",
               responses={422: {"description": "the subject's last image, or the last its watchlists can search with"}})
def remove_reference_image(image_id: RecordId, reason: str = Query(..., min_length=1, max_length=LONG_TEXT),
                           principal: Principal = Depends(require(Permission.remove_subjects)),
                           ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    return ctx.gallery.remove_reference_image(image_id, actor=principal.name, reason=reason)


@router.get("/reference-images/{image_id}", summary="A reference image, for a stated reason, or with `face` just its enrolled face "
            "(each viewing is audited with the reason)",
            response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
def reference_image(image_id: RecordId, reason: str = Query(..., min_length=1, max_length=LONG_TEXT, description="Why it is viewed (required; audited), e.g. 'checking enrolment quality'."),
                    face: bool = Query(False, description="Only the enrolled face, with a margin: what to compare with a probe."),
                    principal: Principal = Depends(require(Permission.view_reference_images)),
                    ctx: ServerContext = Depends(context)) -> Response:
    return reference_response(ctx, image_id, actor=principal.name, reason=reason, face=face)


def reference_response(ctx: ServerContext, image_id: int, *, actor: str, reason: str | None, face: bool) -> Response:
    """A reference image as viewed (audited); with ``face``, cut to its enrolled face — a group
    photograph shows the person enrolled from it, not everyone in it."""
    data, media_type = ctx.gallery.view_reference_image(image_id, actor=actor, reason=reason)
    if face:
        with ctx.vision_lock:
            data, media_type = encode_jpeg(crop(ctx.engine.load(data, f"reference image {image_id}"),
                                                ctx.gallery.reference_image_info(image_id).face_box)), "image/jpeg"
    return Response(data, media_type=media_type, headers={"Cache-Control": "no-store"})
