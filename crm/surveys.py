"""Satisfaction survey answers (0-10 scores and free text), one interaction per survey taken."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from crm import interactions
from crm.errors import MissingFields, UserError
from crm.fields import InvalidValue, check_text, check_unknown, parse_call_id

SURVEY_FIELDS = ("survey", "call_id", "answers")
ANSWER_FIELDS = ("question", "answer", "score")
ANSWERS_MAX = 100
NAME_MAX = 100
QUESTION_MAX = 500
ANSWER_MAX = 2000


def _check_answers(survey, answers) -> tuple[str, list[tuple[str, str, int | None]]]:
    survey = check_text(survey, "survey", max_len=NAME_MAX)
    if not survey:
        raise MissingFields("a survey needs a name", fields=["survey"])
    if not isinstance(answers, list) or not answers:
        raise MissingFields("a survey needs at least one answer", fields=["answers"])
    if len(answers) > ANSWERS_MAX:
        raise InvalidValue(f"a survey takes at most {ANSWERS_MAX} answers", fields=["answers"])
    clean = []
    for i, a in enumerate(answers):
        field = f"answers[{i}]"
        if not isinstance(a, dict):
            raise InvalidValue(f"{field} must be an object with question, answer, score", fields=[field])
        check_unknown(a, ANSWER_FIELDS, what=field)
        question = check_text(a.get("question"), f"{field}.question", max_len=QUESTION_MAX)
        if not question:
            raise MissingFields(f"{field}.question is required", fields=[f"{field}.question"])
        answer = a.get("answer")
        if isinstance(answer, (int, float)) and not isinstance(answer, bool):
            answer = str(answer)
        answer = check_text(answer, f"{field}.answer", max_len=ANSWER_MAX)
        score = a.get("score")
        if score is not None and (
            isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 10
        ):
            raise UserError(
                f"{field}.score must be a whole number from 0 to 10", fields=[f"{field}.score"]
            )
        clean.append((question, answer, score))
    return survey, clean


async def _store(
    conn: asyncpg.Connection,
    *,
    customer_id: int,
    survey: str,
    clean: list[tuple[str, str, int | None]],
    call_id: uuid.UUID | None,
    campaign_id: int | None,
    user_id: int | None,
    now: dt.datetime,
) -> tuple[list[int], int]:
    """The answer rows and their one 'survey' interaction; returns (answer ids, interaction id)."""
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
    interaction_id = await interactions.add(
        conn,
        customer_id,
        "survey",
        user_id=user_id,
        call_id=call_id,
        occurred_at=now,
        summary=summary,
        details={
            "survey": survey,
            "answer_ids": ids,
            "answers": [{"question": q, "answer": a, "score": s} for q, a, s in clean],
        },
    )
    return ids, interaction_id


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
    survey, clean = _check_answers(survey, answers)
    async with conn.transaction():
        ids, _ = await _store(
            conn,
            customer_id=customer_id,
            survey=survey,
            clean=clean,
            call_id=call_id,
            campaign_id=campaign_id,
            user_id=user_id,
            now=now or dt.datetime.now(dt.UTC),
        )
        return ids


async def record_for_customer(
    conn: asyncpg.Connection,
    customer_id: int,
    body: dict,
    *,
    user_id: int | None,
    now: dt.datetime | None = None,
) -> dict:
    """A survey taken by the customer, from a client's {survey, call_id?, answers}: the call,
    when given, must be one of the customer's (its campaign is recorded with the answers)."""
    check_unknown(body, SURVEY_FIELDS, what="survey")
    survey, clean = _check_answers(body.get("survey"), body.get("answers"))
    call_id = parse_call_id(body.get("call_id"))
    now = now or dt.datetime.now(dt.UTC)
    async with conn.transaction():
        await interactions.lock_customer(conn, customer_id)
        campaign_id = None
        if call_id is not None:
            call = await interactions.check_call_of_customer(conn, call_id, customer_id)
            campaign_id = call["campaign_id"]
        ids, interaction_id = await _store(
            conn,
            customer_id=customer_id,
            survey=survey,
            clean=clean,
            call_id=call_id,
            campaign_id=campaign_id,
            user_id=user_id,
            now=now,
        )
        answers = await conn.fetch(
            "select * from survey_answers where id = any($1::bigint[]) order by id", ids
        )
    return {
        "customer_id": customer_id,
        "survey": survey,
        "call_id": call_id,
        "campaign_id": campaign_id,
        "answered_at": now,
        "interaction_id": interaction_id,
        "answers": [dict(a.items()) for a in answers],
    }


async def for_customer(conn: asyncpg.Connection, customer_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "select * from survey_answers where customer_id = $1 order by answered_at, id", customer_id
    )
