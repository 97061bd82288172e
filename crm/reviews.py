"""QA reviews: who may open a call, what the review page shows, and reviewer overrides of automatic checks.

The automatic result in qa_results is never changed. An override writes a
row to reviewer_overrides (the check, the automatic and the reviewer's
verdict, the comment, the score before and after) and updates qa_reviews,
the result's reviewed state that search and the review page read.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable

import asyncpg

from crm import audit
from crm.errors import NotFound, UserError
from crm.fields import check_text
from crm.transcript_search import Viewer
from crm.transcripts import segments_of_call


class NotYourCall(UserError):
    status = 403
    error_id = "forbidden"


async def visible_call(conn: asyncpg.Connection, viewer: Viewer, call_id: uuid.UUID) -> asyncpg.Record:
    """The call with its agent and team, if viewer may see it: 404 when there is none, 403 when it is not theirs.

    The same rule as search: an agent their own calls; a reviewer or
    supervisor the teams assigned to them (all when none are); an admin all.
    """
    row = await conn.fetchrow(
        """select c.*, ag.username as agent, ag.display_name as agent_name, ag.team_id, t.name as team,
                  coalesce(c.disposition, cd.code) as final_disposition
           from calls c
           left join users ag on ag.id = c.agent_id
           left join teams t on t.id = ag.team_id
           left join call_dispositions cd on cd.call_id = c.id
           where c.id = $1""",
        call_id,
    )
    if row is None:
        raise NotFound(f"no call {call_id}")
    if viewer.role == "admin":
        return row
    if viewer.role == "agent":
        allowed = row["agent_id"] == viewer.user_id
    else:
        teams = [r["team_id"] for r in await conn.fetch(
            "select team_id from reviewer_teams where reviewer_id = $1", viewer.user_id
        )]
        allowed = not teams or row["team_id"] in teams
    if not allowed:
        raise NotYourCall("this call is not one you may see")
    return row


async def latest_result(conn: asyncpg.Connection, call_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """select r.id, r.scorecard, r.scorecard_version, r.model, r.duration_seconds, r.metrics, r.checks,
                  r.categories, r.score, r.created_at,
                  rv.checks as reviewed_checks, rv.categories as reviewed_categories, rv.score as reviewed_score,
                  rv.reviewer_id, rv.updated_at as reviewed_at
           from qa_results r left join qa_reviews rv on rv.result_id = r.id
           where r.call_id = $1 order by r.created_at desc, r.id desc limit 1""",
        call_id,
    )


async def review_of_call(conn: asyncpg.Connection, call: asyncpg.Record) -> dict:
    """Everything the review page shows: the call, its automatic and reviewed score, overrides, transcript."""
    result = await latest_result(conn, call["id"])
    overrides = []
    if result is not None:
        overrides = await conn.fetch(
            """select o.id, o.check_id, o.automatic_passed, o.passed, o.comment, o.score_before, o.score_after,
                      o.created_at, u.username as reviewer
               from reviewer_overrides o join users u on u.id = o.reviewer_id
               where o.result_id = $1 order by o.created_at, o.id""",
            result["id"],
        )
    call_fields = ("id", "direction", "agent_id", "agent", "agent_name", "team", "campaign_id", "created_at",
                   "answered_at", "ended_at", "duration_seconds", "final_disposition", "recording_state")
    return {
        "call": {k: call[k] for k in call_fields},
        "has_recording": bool(call["recording_path"]) and call["recording_state"] in ("complete", "repaired"),
        "result": None if result is None else dict(result.items()),
        "overrides": [dict(o.items()) for o in overrides],
        "segments": [dict(s.items()) for s in await segments_of_call(conn, call["id"])],
    }


Rescore = Callable[[str, list[dict]], tuple[dict, float | None]]


def _parse_override(body: dict) -> tuple[str, bool | None, str]:
    check_id = check_text(body.get("check_id"), "check_id", max_len=100, required=True)
    if "passed" not in body or body["passed"] not in (True, False, None):
        raise UserError("passed must be true, false or null (the check does not apply)", fields=["passed"])
    comment = check_text(body.get("comment"), "comment", max_len=2000, required=True)
    return check_id, body["passed"], comment


async def override_check(
    conn: asyncpg.Connection, call_id: uuid.UUID, body: dict, reviewer_id: int, rescore: Rescore
) -> dict:
    """Apply a reviewer's verdict on one check of the call's latest result; the score is recomputed.

    rescore(scorecard name, checks) -> (categories, score) comes from the QA
    package (crm imports no qa code). One transaction: the override, the
    reviewed state and the audit row are written together or not at all.
    """
    check_id, passed, comment = _parse_override(body)
    async with conn.transaction():
        result = await conn.fetchrow(
            """select r.id, r.scorecard, r.checks, r.score, rv.checks as reviewed_checks, rv.score as reviewed_score
               from qa_results r left join qa_reviews rv on rv.result_id = r.id
               where r.call_id = $1 order by r.created_at desc, r.id desc limit 1
               for update of r""",
            call_id,
        )
        if result is None:
            raise NotFound(f"call {call_id} has no QA result to review yet")
        checks = copy.deepcopy(result["reviewed_checks"] or result["checks"])
        target = next((c for c in checks if c.get("id") == check_id), None)
        if target is None:
            known = ", ".join(c.get("id", "?") for c in checks)
            raise UserError(f"no check {check_id!r} in this result; checks: {known}", fields=["check_id"])
        automatic = next(c.get("passed") for c in result["checks"] if c.get("id") == check_id)
        before = result["reviewed_score"] if result["reviewed_checks"] is not None else result["score"]
        target["passed"] = passed
        target["override"] = {"reviewer_id": reviewer_id, "comment": comment, "automatic_passed": automatic}
        categories, score = rescore(result["scorecard"], checks)
        await conn.execute(
            """insert into qa_reviews (result_id, call_id, checks, categories, score, reviewer_id)
               values ($1, $2, $3, $4, $5, $6)
               on conflict (result_id) do update set checks = excluded.checks, categories = excluded.categories,
                   score = excluded.score, reviewer_id = excluded.reviewer_id, updated_at = now()""",
            result["id"], call_id, checks, categories, score, reviewer_id,
        )
        override = await conn.fetchrow(
            """insert into reviewer_overrides (result_id, call_id, check_id, automatic_passed, passed, comment,
                   reviewer_id, score_before, score_after)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning *""",
            result["id"], call_id, check_id, automatic, passed, comment, reviewer_id, before, score,
        )
        await audit.record(conn, reviewer_id, "override_check", "call", call_id,
                           {"check_id": check_id, "passed": passed, "score_before": before, "score_after": score})
    return dict(override.items()) | {"categories": categories}
