"""QA job queue for admins: the jobs that gave up (parked) with their last error, and putting one back."""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import get_session

from crm import qa_jobs
from telesales.app import CTX
from telesales.query_params import check_query, page_params
from telesales.web import ADMIN, RouteTable, current_user, int_param, json_response

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
