"""Complaints API: intake, the list with missed deadlines, one complaint with its history,
state changes, and evidence files (upload, verified download).

Supervisors and admins see and change every complaint. An agent sees the complaints
they own or recorded, and works the ones they own: they may start one (in_progress)
and resolve it, but not assign, reopen or confirm, which are a supervisor's calls.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import urllib.parse
from pathlib import Path

import asyncpg
from aiohttp import BodyPartReader, web

from crm import complaints
from crm.complaints import NotComplaintOwner
from crm.errors import MissingFields, NotFound
from telesales.app import CTX
from telesales.idempotent_requests import run_idempotent
from telesales.query_params import page_params, query_bool, query_int
from telesales.uploads import FileTooLarge, read_part
from telesales.web import (
    FLOOR,
    BadRequest,
    RouteTable,
    current_user,
    int_param,
    json_response,
    read_json,
)

log = logging.getLogger("telesales.complaints")

routes = RouteTable()

AGENT_STATES = frozenset({"in_progress", "resolved"})


def _sees_all(user: dict) -> bool:
    return user["role"] != "agent"


def _evidence_dir(request: web.Request) -> Path:
    return request.app[CTX].settings.data_dir / "evidence"


@routes.post(
    "/api/v1/complaints",
    roles=FLOOR,
    tags=("complaints",),
    summary="Record a complaint that did not come from a call's wrap-up (an email, a letter, "
    "a walk-in); due dates run from now (Idempotency-Key honoured)",
    body={
        "type": "object",
        "required": ["customer_id", "complainant", "channel", "content"],
        "properties": {
            "customer_id": {"type": "integer"},
            "complainant": {"type": "string"},
            "channel": {"enum": list(complaints.CHANNELS)},
            "content": {"type": "string"},
            "department": {"type": "string"},
        },
    },
)
async def create_complaint(request: web.Request) -> web.Response:
    body = await read_json(request)
    user = current_user(request)
    crm = request.app[CTX].settings.crm

    async def work(conn: asyncpg.Connection) -> dict:
        row = await complaints.record_complaint(
            conn,
            body,
            created_by=user["id"],
            departments=crm.departments,
            ack_hours=crm.complaint_ack_hours,
            resolve_hours=crm.complaint_resolve_hours,
            now=dt.datetime.now(dt.UTC),
        )
        return dict(row.items())

    return await run_idempotent(request, body, work, status=201)


@routes.get(
    "/api/v1/complaints",
    roles=FLOOR,
    tags=("complaints",),
    summary="Complaints, open and most urgent first (?state=, ?department=, ?owner_id=, "
    "?overdue=true|false, ?page=, ?per_page=); each row lists missed_deadlines "
    "(ack_due_at, resolve_due_at). Agents see those they own or recorded",
)
async def list_complaints(request: web.Request) -> web.Response:
    user = current_user(request)
    ctx = request.app[CTX]
    filters = {
        "state": request.query.get("state") or None,
        "department": request.query.get("department") or None,
        "owner_id": query_int(request, "owner_id"),
        "overdue": query_bool(request, "overdue"),
    }
    filters["page"], filters["per_page"] = page_params(request)
    async with ctx.pool.acquire() as conn:
        result = await complaints.list_complaints(
            conn,
            user_id=user["id"],
            sees_all=_sees_all(user),
            departments=ctx.settings.crm.departments,
            now=dt.datetime.now(dt.UTC),
            **filters,
        )
    return json_response(result)


@routes.get(
    "/api/v1/complaints/{complaint_id}",
    roles=FLOOR,
    tags=("complaints",),
    summary="A complaint with its state changes and evidence files (agents: those they own "
    "or recorded)",
)
async def get_complaint(request: web.Request) -> web.Response:
    complaint_id = int_param(request, "complaint_id")
    user = current_user(request)
    async with request.app[CTX].pool.acquire() as conn:
        await complaints.check_visible(
            conn, complaint_id, user_id=user["id"], sees_all=_sees_all(user)
        )
        return json_response(await complaints.get_complaint(conn, complaint_id))


@routes.post(
    "/api/v1/complaints/{complaint_id}/transitions",
    roles=FLOOR,
    tags=("complaints",),
    summary="Change a complaint's state (agents: only their own, to in_progress or resolved); "
    "Idempotency-Key honoured",
    body={
        "type": "object",
        "required": ["state"],
        "properties": {
            "state": {"enum": list(complaints.STATES)},
            "note": {"type": "string"},
            "department": {"type": "string"},
            "owner_id": {"type": "integer"},
            "resolution": {"type": "string"},
        },
    },
)
async def change_complaint_state(request: web.Request) -> web.Response:
    complaint_id = int_param(request, "complaint_id")
    body = await read_json(request)
    state = body.get("state")
    if not isinstance(state, str) or not state:
        raise MissingFields("state is required", fields=["state"])
    for key in ("note", "department", "resolution"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise BadRequest(f"{key} must be text", fields=[key])
    owner_id = body.get("owner_id")
    if owner_id is not None and (
        isinstance(owner_id, bool) or not isinstance(owner_id, int) or not 0 < owner_id < 2**63
    ):
        raise BadRequest("owner_id must be a user id", fields=["owner_id"])
    user = current_user(request)
    ctx = request.app[CTX]

    async def work(conn: asyncpg.Connection) -> dict:
        if user["role"] == "agent":
            owner = await conn.fetchrow(
                "select owner_id from complaints where id = $1 for update", complaint_id
            )
            if owner is None:
                raise NotFound(f"no complaint {complaint_id}")
            if owner["owner_id"] != user["id"] or state not in AGENT_STATES or owner_id is not None:
                raise NotComplaintOwner(
                    "agents may only start or resolve complaints they own; ask a supervisor"
                )
        row = await complaints.transition(
            conn,
            complaint_id,
            state,
            user_id=user["id"],
            departments=ctx.settings.crm.departments,
            note=body.get("note") or "",
            department=body.get("department"),
            owner_id=owner_id,
            resolution=body.get("resolution"),
        )
        return dict(row.items())

    return await run_idempotent(request, body, work)


async def _read_file_field(request: web.Request, limit: int) -> tuple[str, str | None, bytes]:
    """(file name, content type, bytes) of the multipart field `file`, read up to `limit`
    bytes: aiohttp's client_max_size guards read() and post(), not a multipart reader."""
    if not request.content_type.startswith("multipart/form-data"):
        raise BadRequest(
            "send the evidence as multipart/form-data with the file in the field `file`",
            fields=["file"],
        )
    # The form adds a few hundred bytes of headers around the file.
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        raise FileTooLarge(f"the file is larger than {limit // (1024 * 1024)} MB (http.max_upload_mb)",
                           fields=["file"], max_bytes=limit)
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name != "file":
                continue
            data = await read_part(part, limit)
            # aiohttp clients percent-encode non-ASCII names, browsers send them as UTF-8.
            name = urllib.parse.unquote(part.filename or "")
            return name, part.headers.get("Content-Type"), data
    except ValueError as e:  # a malformed form: no boundary, a broken part header
        raise BadRequest(f"the multipart form cannot be read: {e}", fields=["file"]) from None
    raise MissingFields("the multipart form has no `file` field", fields=["file"])


@routes.post(
    "/api/v1/complaints/{complaint_id}/evidence",
    roles=FLOOR,
    tags=("complaints",),
    summary="Attach an evidence file to a complaint: multipart field `file`, at most "
    "http.max_upload_mb; the CSRF token goes in the X-CSRF-Token header (Idempotency-Key "
    "honoured)",
)
async def upload_evidence(request: web.Request) -> web.Response:
    complaint_id = int_param(request, "complaint_id")
    user = current_user(request)
    ctx = request.app[CTX]
    async with ctx.pool.acquire() as conn:
        await complaints.check_visible(
            conn, complaint_id, user_id=user["id"], sees_all=_sees_all(user)
        )
    name, content_type, data = await _read_file_field(
        request, ctx.settings.http.max_upload_mb * 1024 * 1024
    )
    evidence_dir = _evidence_dir(request)

    async def work(conn: asyncpg.Connection) -> dict:
        row = await complaints.add_evidence(
            conn, complaint_id, name, content_type, data, evidence_dir, user["id"]
        )
        return dict(row.items())

    identity = {
        "complaint_id": complaint_id,
        "file_name": name,
        "content_type": content_type,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    return await run_idempotent(request, identity, work, status=201)


def content_disposition(file_name: str) -> str:
    """attachment with the name twice: an ASCII stand-in for old clients, and the exact
    UTF-8 name (RFC 5987/6266 filename*), which every current browser prefers."""
    fallback = "".join(
        ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\%' else "_" for ch in file_name
    )
    return (
        f'attachment; filename="{fallback}"; '
        f"filename*=UTF-8''{urllib.parse.quote(file_name, safe='')}"
    )


def _evidence_failure(
    request: web.Request, e: complaints.EvidenceUnavailable, complaint_id: int
) -> None:
    log.error(
        "evidence file unusable",
        extra={
            "error": e.error_id,
            "complaint_id": complaint_id,
            "evidence_id": e.evidence_id,
            "sha256": e.sha256,
            "file": str(e.path),
            "user_id": current_user(request)["id"],
        },
    )


@routes.get(
    "/api/v1/complaints/{complaint_id}/evidence/{evidence_id}",
    roles=FLOOR,
    tags=("complaints",),
    summary="Download an evidence file as it was uploaded (checked against its sha256; a "
    "damaged or missing file is a 500 evidence_damaged / evidence_missing, never other "
    "bytes); every download is audited. Agents: complaints they own or recorded",
)
async def download_evidence(request: web.Request) -> web.StreamResponse:
    complaint_id = int_param(request, "complaint_id")
    evidence_id = int_param(request, "evidence_id")
    user = current_user(request)
    pool = request.app[CTX].pool
    async with pool.acquire() as conn:
        await complaints.check_visible(
            conn, complaint_id, user_id=user["id"], sees_all=_sees_all(user)
        )
        evidence = await complaints.get_evidence(conn, complaint_id, evidence_id)
    try:
        f = await complaints.open_evidence(_evidence_dir(request), evidence)
    except complaints.EvidenceUnavailable as e:
        _evidence_failure(request, e, complaint_id)
        return json_response(
            {"error": e.error_id, "message": f"{e.message}; the incident is logged"}, status=500
        )
    try:
        async with pool.acquire() as conn:
            await complaints.record_download(conn, evidence, user["id"])
        response = web.StreamResponse(
            headers={
                "Content-Type": evidence["content_type"],
                "Content-Disposition": content_disposition(evidence["file_name"]),
                # Uploaded bytes are never rendered as a page of this site.
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; sandbox",
                "Cache-Control": "private, no-store",
                "Repr-Digest": "sha-256=:"
                + base64.b64encode(bytes.fromhex(evidence["sha256"])).decode()
                + ":",
            }
        )
        response.content_length = evidence["size_bytes"]
        await response.prepare(request)
        try:
            async for chunk in complaints.read_verified(f, evidence):
                await response.write(chunk)
        except complaints.EvidenceDamaged as e:
            _evidence_failure(request, e, complaint_id)
            # The status line is sent; cutting the connection short of Content-Length is
            # the only way left to tell the client the body is not the file.
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response
    finally:
        f.close()
