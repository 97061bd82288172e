"""The call review page: recording playback (HTTP range requests, audited), the transcript, the scorecard
with its evidence, and reviewer overrides.

Who may open a call is crm/reviews.py's rule, the same as search: an agent
their own calls, a reviewer their assigned teams (all when none), an admin
all. Every request that serves recording bytes writes an audit row.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import get_session

from crm import audit, review_queue, reviews
from crm.errors import NotFound
from qa.rescoring import rescore_with_scorecard
from telesales.app import CTX
from telesales.query_params import check_query, page_params
from telesales.routes.qa_search import REVIEWERS, viewer_of
from telesales.web import ALL_ROLES, RouteTable, current_user, json_response, read_json

routes = RouteTable()


def _call_id(request: web.Request) -> uuid.UUID:
    """The call id from the path; anything but a UUID (a path, "../..") is a call that does not exist."""
    raw = request.match_info["call_id"]
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound("no such call") from None


def _recording_file(data_dir: Path, stored: str | None) -> Path:
    """The recording on disk; only files under data_dir/recordings are ever served."""
    if not stored:
        raise NotFound("this call has no recording")
    root = (data_dir / "recordings").resolve()
    path = Path(stored)
    path = (path if path.is_absolute() else data_dir / path).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise NotFound("the recording of this call is not on file")
    return path


@routes.get(
    "/api/v1/calls/{call_id}/recording",
    roles=ALL_ROLES,
    tags=("qa",),
    summary="The call's recording (stereo WAV: left agent, right customer) with HTTP range requests; "
    "agents: own calls only, reviewers: assigned teams. Every request that serves audio is audited",
)
async def recording(request: web.Request) -> web.StreamResponse:
    call_id = _call_id(request)
    ctx = request.app[CTX]
    user = current_user(request)
    async with ctx.pool.acquire() as conn:
        call = await reviews.visible_call(conn, viewer_of(request), call_id)
        path = _recording_file(ctx.settings.data_dir, call["recording_path"])
        await audit.record(conn, user["id"], "play_recording", "call", call_id,
                           {"range": request.headers.get("Range")})
    return web.FileResponse(path, headers={"Content-Type": "audio/wav", "Cache-Control": "private, no-store"})


@routes.get(
    "/api/v1/calls/{call_id}/review",
    roles=ALL_ROLES,
    tags=("qa",),
    summary="A call's review: the call, its latest QA result (automatic and reviewed checks and score), "
    "the reviewers' overrides and the transcript; agents: own calls only",
)
async def review_json(request: web.Request) -> web.Response:
    call_id = _call_id(request)
    async with request.app[CTX].pool.acquire() as conn:
        call = await reviews.visible_call(conn, viewer_of(request), call_id)
        return json_response(await reviews.review_of_call(conn, call))


@routes.post(
    "/api/v1/calls/{call_id}/overrides",
    roles=REVIEWERS,
    tags=("qa",),
    summary="Override one check of the call's latest QA result with a comment; the score is recomputed and "
    "both the automatic and the reviewed result are kept",
    body={
        "type": "object",
        "required": ["check_id", "passed", "comment"],
        "properties": {
            "check_id": {"type": "string"},
            "passed": {"type": ["boolean", "null"]},
            "comment": {"type": "string"},
        },
    },
)
async def override(request: web.Request) -> web.Response:
    call_id = _call_id(request)
    body = await read_json(request)
    ctx = request.app[CTX]
    async with ctx.pool.acquire() as conn:
        await reviews.visible_call(conn, viewer_of(request), call_id)
        row = await reviews.override_check(
            conn, call_id, body, current_user(request)["id"], rescore_with_scorecard(ctx.settings.config_dir)
        )
    return json_response(row, status=201)


@routes.get("/review/{call_id}", roles=ALL_ROLES, tags=("pages",), summary="The review page of a call")
async def review_page(request: web.Request) -> web.Response:
    call_id = _call_id(request)
    user = current_user(request)
    async with request.app[CTX].pool.acquire() as conn:
        await reviews.visible_call(conn, viewer_of(request), call_id)
    session = await get_session(request)
    context = {"user": user, "csrf_token": session["csrf"], "call_id": str(call_id),
               "can_override": user["role"] in REVIEWERS}
    return aiohttp_jinja2.render_template("review.html", request, context)


@routes.get(
    "/api/v1/qa/queue",
    roles=REVIEWERS,
    tags=("qa",),
    summary="Calls to review first (unreviewed, unclaimed by others): failed compliance checks, SALE calls "
    "missing a confirmation, scores below search.queue_low_score, then one random call per agent per week; "
    "each with its reason. ?per_page= (default 50)",
)
async def read_queue(request: web.Request) -> web.Response:
    check_query(request, ("per_page",))
    _, per_page = page_params(request)
    ctx = request.app[CTX]
    async with ctx.pool.acquire() as conn:
        rows = await review_queue.queue(
            conn, viewer_of(request), low_score=ctx.settings.search.queue_low_score, limit=per_page
        )
    return json_response({"items": [dict(r.items()) for r in rows]})


@routes.post(
    "/api/v1/calls/{call_id}/claim",
    roles=REVIEWERS,
    tags=("qa",),
    summary="Claim a call for review so no other reviewer takes it (409 when another holds it)",
)
async def claim_call(request: web.Request) -> web.Response:
    call_id = _call_id(request)
    async with request.app[CTX].pool.acquire() as conn:
        await reviews.visible_call(conn, viewer_of(request), call_id)
        row = await review_queue.claim(conn, call_id, current_user(request)["id"])
    return json_response(dict(row.items()), status=201)


@routes.delete(
    "/api/v1/calls/{call_id}/claim",
    roles=REVIEWERS,
    tags=("qa",),
    summary="Give back one's claim on a call",
)
async def release_call(request: web.Request) -> web.Response:
    call_id = _call_id(request)
    async with request.app[CTX].pool.acquire() as conn:
        await review_queue.release(conn, call_id, current_user(request)["id"])
    return web.Response(status=204)
