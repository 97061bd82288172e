"""Reading an uploaded file out of a multipart form, within the configured size limit."""

from __future__ import annotations

from aiohttp import BodyPartReader

from crm.errors import UserError


class FileTooLarge(UserError):
    status = 413
    error_id = "file_too_large"


async def read_part(part: BodyPartReader, limit: int) -> bytes:
    """The part's bytes, refusing past `limit`: aiohttp's client_max_size guards
    request.read() and post(), not a multipart reader."""
    data = bytearray()
    while chunk := await part.read_chunk(64 * 1024):
        data += chunk
        if len(data) > limit:
            raise FileTooLarge(f"the file is larger than {limit // (1024 * 1024)} MB (http.max_upload_mb)",
                               fields=["file"], max_bytes=limit)
    return bytes(data)
