"""Reading uploaded images into memory, with a size limit: they are never written to disk."""

from __future__ import annotations

from fastapi import HTTPException, UploadFile


async def read_upload(upload: UploadFile, limit: int) -> bytes:
    """The upload's bytes; 413 when larger than ``limit`` (read in chunks, so a huge upload
    is refused without being held in memory whole)."""
    chunks, size = [], 0
    while chunk := await upload.read(1 << 20):
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"{upload.filename or 'upload'} is larger than {limit // (1024 * 1024)} MB")
        chunks.append(chunk)
    return b"".join(chunks)
