"""Leads API: importing a lead file into a campaign."""

from __future__ import annotations

import hashlib
import urllib.parse

from aiohttp import web

from crm.lead_import import import_leads
from telesales.app import CTX
from telesales.idempotent_requests import run_idempotent
from telesales.uploads import read_part
from telesales.web import MANAGERS, BadRequest, RouteTable, current_user, int_param

routes = RouteTable()

_OPTIONS = ("file_name", "encoding", "region", "source")


async def _upload(request: web.Request) -> tuple[bytes, dict[str, str]]:
    """The file and the options: multipart field `file` (plus optional text fields), or the raw
    body; query parameters fill in options the form does not give."""
    options = {k: request.query[k] for k in _OPTIONS if request.query.get(k)}
    if not request.content_type.startswith("multipart/"):
        return await request.read(), options
    data = None
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if part.name == "file":
            data = await read_part(part, request.app[CTX].settings.http.max_upload_mb * 1024 * 1024)
            if part.filename:
                # aiohttp clients percent-encode non-ASCII names, browsers only `"` and newlines
                options.setdefault("file_name", urllib.parse.unquote(part.filename))
        elif part.name in _OPTIONS:
            value = (await part.text()).strip()
            if value:
                options[part.name] = value
    if data is None:
        raise BadRequest("the multipart form has no `file` field", fields=["file"])
    return data, options


@routes.post(
    "/api/v1/campaigns/{campaign_id}/leads/import",
    roles=MANAGERS,
    tags=("leads",),
    summary="Import a CSV or XLSX lead file into the campaign, all rows or none: multipart field "
    "`file`, or the file as the raw body (?file_name=, ?encoding=, ?region=, ?source=). Answers "
    '{"imported", "duplicates", "rejected": [{"row", "reason"}]} (Idempotency-Key honoured)',
)
async def import_lead_file(request: web.Request) -> web.Response:
    campaign_id = int_param(request, "campaign_id")
    data, options = await _upload(request)
    settings = request.app[CTX].settings
    user_id = current_user(request)["id"]

    async def work(conn):
        summary = await import_leads(
            conn, data,
            file_name=options.get("file_name", "upload"),
            campaign_id=campaign_id,
            region=options.get("region", settings.crm.default_region),
            allowed_channels=settings.crm.source_channels,
            default_source=options.get("source"),
            encoding=options.get("encoding"),
            required_fields=tuple(settings.lead_import.required_fields),
            imported_by=user_id,
        )
        return summary.to_json()

    request_identity = {"campaign_id": campaign_id, "sha256": hashlib.sha256(data).hexdigest(),
                        **options}
    return await run_idempotent(request, request_identity, work)
