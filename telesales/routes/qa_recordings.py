"""Recordings for QA workers: a worker on another machine downloads a call's closed recording here,
with its worker token (`Authorization: Bearer ...`), and checks it against the sha256 on the call row."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from crm import calls, qa_jobs
from crm.errors import NotFound
from crm.fields import parse_call_id
from telesales.app import CTX
from telesales.web import ADMIN, RouteTable

routes = RouteTable()


class NoRecording(NotFound):
    error_id = "no_recording"


@routes.get(
    "/api/v1/qa/recordings/{call_id}",
    roles=ADMIN,
    worker_token=True,
    tags=("qa",),
    summary="A call's closed recording (stereo WAV, left agent, right customer) for a QA worker: "
    "Authorization: Bearer <worker token> (telesales qa token create NAME), or an admin's session. "
    "Range requests are honoured; X-Recording-SHA256 carries the checksum taken at hang-up",
)
async def get_recording(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    call_id = parse_call_id(request.match_info["call_id"])
    async with ctx.pool.acquire() as conn:
        call = await calls.get_call(conn, call_id)
    if call["recording_state"] not in qa_jobs.READY_RECORDINGS or not call["recording_path"]:
        raise NoRecording(f"call {call_id} has no closed recording (state {call['recording_state']})")
    path = Path(call["recording_path"])
    path = path if path.is_absolute() else ctx.settings.data_dir / path
    if not path.is_file():
        raise NoRecording(f"the recording of call {call_id} is missing from the data folder")
    headers = {"Content-Type": "audio/wav", "X-Recording-SHA256": call["recording_sha256"] or ""}
    return web.FileResponse(path, headers=headers)
