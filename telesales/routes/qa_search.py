"""Transcript search API and page, and saved searches.

Every role may search; what comes back is limited by the access rule in
crm/transcript_search.py (an agent: own calls; a reviewer: assigned teams).
"""

from __future__ import annotations

import asyncio

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import get_session

from crm import transcript_search as ts
from crm.errors import UserError
from qa.embeddings import EmbeddingModelMissing, shared_embedder
from telesales.app import CTX
from telesales.query_params import check_query, page_params
from telesales.web import ALL_ROLES, RouteTable, current_user, int_param, json_response, read_json

routes = RouteTable()

REVIEWERS = frozenset({"qa", "supervisor", "admin"})


class SemanticUnavailable(UserError):
    status = 503
    error_id = "semantic_search_unavailable"


def viewer_of(request: web.Request) -> ts.Viewer:
    user = current_user(request)
    return ts.Viewer(user["id"], user["role"])


async def _query_vector(q: str) -> list[float]:
    embedder = await asyncio.to_thread(shared_embedder)
    return (await asyncio.to_thread(embedder.embed, [q]))[0].tolist()


async def run_search(request: web.Request, params) -> dict:
    """One page of results for the search parameters (a query-string mapping)."""
    q, mode = ts.parse_query(params)
    filters = ts.parse_filters(params)
    page, per_page = page_params(request)
    offset = (page - 1) * per_page
    viewer = viewer_of(request)
    ctx = request.app[CTX]
    options = ctx.settings.search
    vector = None
    if mode != "keyword":
        try:
            vector = await _query_vector(q)
        except EmbeddingModelMissing as e:
            if mode == "semantic":
                raise SemanticUnavailable(str(e)) from None
    async with ctx.pool.acquire() as conn:
        if mode == "keyword" or vector is None:
            rows, total = await ts.keyword_search(conn, viewer, q, filters, limit=per_page, offset=offset)
            items = [ts.result_item(dict(r.items()), q, "keyword") for r in rows]
            return {"items": items, "page": page, "per_page": per_page, "total": total, "mode": "keyword",
                    "total_is_lower_bound": total >= ts.COUNT_MAX}
        semantic = await ts.semantic_search(
            conn, viewer, vector, filters, limit=options.semantic_limit, min_similarity=options.semantic_min_similarity,
            probes=0 if options.vector_index else options.semantic_probes,
        )
        if mode == "semantic":
            fused = [(dict(r.items()), "semantic") for r in semantic]
            total = len(fused)
        else:
            top = offset + per_page
            keyword, keyword_total = await ts.keyword_search(conn, viewer, q, filters, limit=top, offset=0)
            fused = ts.fuse(keyword, semantic)
            found = {r["segment_id"] for r in keyword}
            total = keyword_total + sum(1 for r in semantic if r["segment_id"] not in found)
    items = [ts.result_item(row, q, how) for row, how in fused[offset : offset + per_page]]
    return {"items": items, "page": page, "per_page": per_page, "total": total, "mode": mode,
            "total_is_lower_bound": total >= ts.COUNT_MAX}


@routes.get(
    "/api/v1/qa/search",
    roles=ALL_ROLES,
    tags=("qa",),
    summary="Search call transcripts: ?q= (a word, phrase or Chinese substring; required), "
    "?mode=keyword|semantic|hybrid (default hybrid), filters ?since=, ?until= (call start, ISO 8601 with "
    "offset), ?agent_id=, ?team_id=, ?campaign_id=, ?disposition=, ?score_min=, ?score_max=, "
    "?failed_check= (a check id), ?speaker=agent|customer, ?min_duration=, ?max_duration= (seconds), "
    "?page=, ?per_page=; totals are counted up to 1000 (total_is_lower_bound). "
    "Each item: the segment, its speaker and time, a highlighted snippet and a "
    "review_url at that moment. Agents see their own calls; reviewers their assigned teams",
)
async def search(request: web.Request) -> web.Response:
    check_query(request, (*ts.PARAMS, "page", "per_page"))
    return json_response(await run_search(request, request.query))


@routes.get(
    "/api/v1/qa/saved-searches",
    roles=REVIEWERS,
    tags=("qa",),
    summary="The logged-in reviewer's saved searches, by name",
)
async def list_saved(request: web.Request) -> web.Response:
    async with request.app[CTX].pool.acquire() as conn:
        rows = await ts.saved_searches(conn, current_user(request)["id"])
    return json_response({"items": [dict(r.items()) for r in rows]})


@routes.post(
    "/api/v1/qa/saved-searches",
    roles=REVIEWERS,
    tags=("qa",),
    summary="Save a search under a name (the same name replaces it): "
    '{"name": "...", "query": {"q": "...", "mode": "...", filters...}}',
    body={
        "type": "object",
        "required": ["name", "query"],
        "properties": {"name": {"type": "string"}, "query": {"type": "object"}},
    },
)
async def save(request: web.Request) -> web.Response:
    body = await read_json(request)
    async with request.app[CTX].pool.acquire() as conn:
        row = await ts.save_search(conn, current_user(request)["id"], body.get("name"), body.get("query"))
    return json_response(dict(row.items()), status=201)


@routes.delete(
    "/api/v1/qa/saved-searches/{search_id}",
    roles=REVIEWERS,
    tags=("qa",),
    summary="Delete one of the logged-in reviewer's saved searches",
)
async def delete_saved(request: web.Request) -> web.Response:
    search_id = int_param(request, "search_id")
    async with request.app[CTX].pool.acquire() as conn:
        await ts.delete_saved_search(conn, current_user(request)["id"], search_id)
    return web.Response(status=204)


@routes.get("/qa/search", roles=ALL_ROLES, tags=("pages",), summary="Transcript search page")
@aiohttp_jinja2.template("qa_search.html")
async def search_page(request: web.Request) -> dict:
    session = await get_session(request)
    user = current_user(request)
    return {"user": user, "csrf_token": session["csrf"], "can_save": user["role"] in REVIEWERS}
