"""QA for admins: the jobs that gave up (parked) with their last error, putting one back, and re-scoring
stored results after a scorecard changed."""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import get_session

from crm import audit, qa_jobs
from crm.errors import MissingFields, UserError
from crm.fields import parse_call_id, parse_time
from qa.rescore import rescore
from qa.scorecard import load_scorecard
from telesales.app import CTX
from telesales.query_params import check_query, page_params
from telesales.web import ADMIN, RouteTable, current_user, int_param, json_response, read_json

routes = RouteTable()


@routes.get(
    "/api/v1/qa/jobs",
    roles=ADMIN,
    tags=("qa",),
    summary="QA jobs in one state, latest change first: ?state=parked (default), queued, running or done; "
    '?page=, ?per_page=; answers {"items", "page", "per_page", "total"}, each item with attempts and last_error',
)
async def list_qa_jobs(request: web.Request) -> web.Response:
    check_query(request, ("state", "page", "per_page"))
    page, per_page = page_params(request)
    async with request.app[CTX].pool.acquire() as conn:
        return json_response(
            await qa_jobs.list_jobs(conn, request.query.get("state", "parked"), page=page, per_page=per_page)
        )


@routes.post(
    "/api/v1/qa/jobs/{job_id}/retry",
    roles=ADMIN,
    tags=("qa",),
    summary="Put a parked QA job back in the queue with its attempts reset (409 when it is not parked)",
)
async def retry_qa_job(request: web.Request) -> web.Response:
    job_id = int_param(request, "job_id")
    async with request.app[CTX].pool.acquire() as conn:
        return json_response(await qa_jobs.retry(conn, job_id, user_id=current_user(request)["id"]))


@routes.get("/admin/qa-jobs", roles=ADMIN, tags=("pages",), summary="Page: parked QA jobs with a retry button")
@aiohttp_jinja2.template("qa_jobs.html")
async def qa_jobs_page(request: web.Request) -> dict:
    session = await get_session(request)
    page, per_page = page_params(request)
    async with request.app[CTX].pool.acquire() as conn:
        parked = await qa_jobs.list_jobs(conn, "parked", page=page, per_page=per_page)
    return {"user": request["user"], "csrf_token": session["csrf"], "jobs": parked,
            "retried": request.query.get("retried")}


@routes.post("/admin/qa-jobs/{job_id}/retry", roles=ADMIN, tags=("pages",),
             summary="Page form: retry a parked QA job, then back to the list")
async def retry_qa_job_form(request: web.Request) -> web.Response:
    job_id = int_param(request, "job_id")
    async with request.app[CTX].pool.acquire() as conn:
        await qa_jobs.retry(conn, job_id, user_id=current_user(request)["id"])
    raise web.HTTPSeeOther(f"/admin/qa-jobs?retried={job_id}")


@routes.post(
    "/api/v1/qa/rescore",
    roles=ADMIN,
    tags=("qa",),
    summary="Score stored transcripts again under the current version of their scorecard (no model, no audio): "
    'one call ({"call_id"}) or every call of a scorecard ({"scorecard", "since"?: ISO time with offset}); '
    'answers {"rescored", "current", "items"} with each call\'s old and new score',
    body={
        "type": "object",
        "properties": {
            "call_id": {"type": "string", "format": "uuid"},
            "scorecard": {"type": "string"},
            "since": {"type": "string", "format": "date-time"},
        },
    },
)
async def rescore_results(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = await read_json(request)
    unknown = sorted(set(body) - {"call_id", "scorecard", "since"})
    if unknown:
        raise UserError(f"unknown fields: {', '.join(unknown)}", fields=unknown)
    call_id = parse_call_id(body.get("call_id"))
    scorecard = body.get("scorecard")
    if call_id is None and not scorecard:
        raise MissingFields("name a call_id or a scorecard", fields=["call_id", "scorecard"])
    if scorecard is not None:
        if not isinstance(scorecard, str):
            raise UserError("scorecard must be a name", fields=["scorecard"])
        load_scorecard(scorecard, ctx.settings.config_dir)  # unknown name: 422 naming the known ones
    since = parse_time(body.get("since"), "since")
    async with ctx.pool.acquire() as conn:
        async with conn.transaction():
            done = await rescore(conn, ctx.settings, call_id=call_id, scorecard=scorecard, since=since)
            fresh = sum(r.stored for r in done)
            await audit.record(conn, current_user(request)["id"], "qa.rescore", "qa_results", None,
                               {"call_id": call_id and str(call_id), "scorecard": scorecard,
                                "since": since and since.isoformat(), "rescored": fresh})
    return json_response({"rescored": fresh, "current": len(done) - fresh, "items": [r.to_json() for r in done]})
