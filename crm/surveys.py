"""Satisfaction survey answers (0-10 scores and free text), one interaction per survey taken."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from crm import interactions
from crm.errors import MissingFields, UserError


async def record_answers(
    conn: asyncpg.Connection,
    *,
    customer_id: int,
    survey: str,
    answers: list[dict],
    call_id: uuid.UUID | None = None,
    campaign_id: int | None = None,
    user_id: int | None = None,
    now: dt.datetime | None = None,
) -> list[int]:
    """Store [{question, answer?, score?}] in one transaction; returns the answer ids."""
    survey = (survey or "").strip()
    if not survey:
        raise MissingFields("a survey needs a name", fields=["survey"])
    if not isinstance(answers, list) or not answers:
        raise MissingFields("a survey needs at least one answer", fields=["answers"])
    clean = []
    for i, a in enumerate(answers):
        field = f"answers[{i}]"
        if not isinstance(a, dict) or not str(a.get("question") or "").strip():
            raise MissingFields(f"{field}.question is required", fields=[f"{field}.question"])
        score = a.get("score")
        if score is not None and (
            isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 10
        ):
            raise UserError(
                f"{field}.score must be a whole number from 0 to 10", fields=[f"{field}.score"]
            )
        clean.append((str(a["question"]).strip(), str(a.get("answer") or ""), score))
    now = now or dt.datetime.now(dt.UTC)
    async with conn.transaction():
        ids = [
            await conn.fetchval(
                """insert into survey_answers (customer_id, call_id, campaign_id, survey, question,
                       answer, score, answered_at)
                   values ($1, $2, $3, $4, $5, $6, $7, $8) returning id""",
                customer_id,
                call_id,
                campaign_id,
                survey,
                q,
                ans,
                score,
                now,
            )
            for q, ans, score in clean
        ]
        scores = [s for _, _, s in clean if s is not None]
        summary = f"Survey {survey}: {len(clean)} answers"
        if scores:
            summary += f", average score {sum(scores) / len(scores):.1f}"
        await interactions.add(
            conn,
            customer_id,
            "survey",
            user_id=user_id,
            call_id=call_id,
            occurred_at=now,
            summary=summary,
            details={"survey": survey, "answer_ids": ids},
        )
        return ids


async def for_customer(conn: asyncpg.Connection, customer_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "select * from survey_answers where customer_id = $1 order by answered_at, id", customer_id
    )
