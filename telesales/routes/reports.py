"""Reports: the funnel, quality and cost reports as JSON, CSV and XLSX, the reports page,
and the cost of a lead import (for the cost report). Supervisors and admins only."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import get_session

from crm import reports
from crm.errors import NotFound, UserError
from crm.report_definitions import GROUPINGS, REPORTS
from telesales import report_export
from telesales.app import CTX
from telesales.query_params import check_query
from telesales.web import ADMIN, MANAGERS, BadRequest, RouteTable, int_param, json_response, read_json

routes = RouteTable()

FORMATS = ("json", "csv", "xlsx")
DEFAULT_DAYS = 7
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _date(request: web.Request, name: str, default: dt.date) -> dt.date:
    value = request.query.get(name, "").strip()
    if not value:
        return default
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name} must be a date like 2026-03-31, got {value[:40]!r}", fields=[name]) from None


def _today(time_zone: str) -> dt.date:
    return dt.datetime.now(zoneinfo.ZoneInfo(time_zone)).date()


@routes.get(
    "/api/v1/reports/{name}",
    roles=MANAGERS,
    tags=("reports",),
    summary="A report (funnel, quality or cost) for ?from=&to= (dates, inclusive, in reports.time_zone; "
    "default the last 7 days) by ?by=agent|team|campaign|source|day|week|month; ?format=json|csv|xlsx. "
    "Every figure's definition is in the JSON's definitions",
)
async def get_report(request: web.Request) -> web.StreamResponse:
    check_query(request, ("from", "to", "by", "format"))
    ctx = request.app[CTX]
    settings = reports.report_settings(ctx.settings.reports)
    today = _today(settings.time_zone)
    last = _date(request, "to", today)
    first = _date(request, "from", last - dt.timedelta(days=DEFAULT_DAYS - 1))
    by = request.query.get("by", "day")
    fmt = request.query.get("format", "json")
    if fmt not in FORMATS:
        raise BadRequest(f"format must be one of {', '.join(FORMATS)}, got {fmt[:20]!r}", fields=["format"])
    name = request.match_info["name"]
    if name not in REPORTS:
        raise NotFound(f"no report {name[:40]!r}; reports: {', '.join(REPORTS)}", fields=["name"])
    async with ctx.pool.acquire() as conn:
        report = await reports.run_report(conn, name, first, last, by, settings)
    if fmt == "json":
        return json_response(report)
    disposition = f'attachment; filename="{report_export.file_name(report, fmt)}"'
    if fmt == "csv":
        # A BOM so spreadsheet programs read Chinese names as UTF-8.
        body = ("\ufeff" + report_export.to_csv(report)).encode("utf-8")
        return web.Response(body=body, content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": disposition})
    return web.Response(body=report_export.to_xlsx(report), content_type=XLSX,
                        headers={"Content-Disposition": disposition})


@routes.put(
    "/api/v1/lead-imports/{import_id}/cost",
    roles=ADMIN,
    tags=("reports",),
    summary="Set what one lead of an import cost (decimal string; null: the source channel's cost from "
    "reports.lead_costs)",
    body={"type": "object", "required": ["cost_per_lead"],
          "properties": {"cost_per_lead": {"type": ["string", "null"], "example": "12.50"}}},
)
async def set_import_cost(request: web.Request) -> web.Response:
    import_id = int_param(request, "import_id")
    body = await read_json(request)
    unknown = sorted(set(body) - {"cost_per_lead"})
    if unknown or "cost_per_lead" not in body:
        raise UserError("the body is {\"cost_per_lead\": \"12.50\"}", fields=unknown or ["cost_per_lead"])
    cost = body["cost_per_lead"]
    if cost is not None:
        try:
            cost = reports.parse_money(str(cost), "cost_per_lead")
        except ValueError as e:
            raise UserError(str(e), fields=["cost_per_lead"]) from None
        if cost >= 10**8:
            raise UserError("cost_per_lead must be below 100000000", fields=["cost_per_lead"])
    async with request.app[CTX].pool.acquire() as conn:
        row = await conn.fetchrow(
            "update lead_imports set cost_per_lead = $2 where id = $1 returning id, file_name, cost_per_lead",
            import_id, cost,
        )
    if row is None:
        raise NotFound(f"no lead import {import_id}")
    return json_response(dict(row.items()))


@routes.get("/reports", roles=MANAGERS, summary="Reports page: funnel, quality and cost with charts and exports",
            tags=("pages",))
@aiohttp_jinja2.template("reports.html")
async def reports_page(request: web.Request) -> dict:
    session = await get_session(request)
    settings = request.app[CTX].settings.reports
    today = _today(settings.time_zone)
    return {
        "user": request["user"],
        "csrf_token": session["csrf"],
        "reports": REPORTS,
        "groupings": GROUPINGS,
        "default_from": (today - dt.timedelta(days=DEFAULT_DAYS - 1)).isoformat(),
        "default_to": today.isoformat(),
        "time_zone": settings.time_zone,
        "effective_seconds": settings.effective_conversation_seconds,
    }
