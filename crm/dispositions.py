"""Recording a disposition: the wrap-up of a call (or of a lead worked without one).

One call of record_disposition writes, in one transaction: the call_dispositions
row and calls.disposition, the lead's new status and next attempt (the code's
retry rules, the campaign's limits), what the code requires (an order for a
sale, a follow-up for a callback, a complaint, a do-not-call entry), an
interaction on the customer's record and an audit row. Anything wrong with
the request is found before the first write; nothing is left half-written.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid

import asyncpg

from crm import audit, complaints, dnc, follow_ups, interactions, orders, qa_jobs
from crm.dispositions_catalog import Disposition
from crm.errors import Conflict, MissingFields, NotFound, UserError
from crm.fields import parse_call_id

REQUEST_FIELDS = ("code", "lead_id", "call_id", "note", "order", "follow_up", "complaint")
FOLLOW_UP_FIELDS = ("due_at", "owner", "note")
# The part of the request each flag requires, and the flag that allows each part.
PARTS = {"order": "sale", "follow_up": "callback", "complaint": "complaint"}
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


class UnknownDisposition(UserError):
    error_id = "unknown_disposition"


class AlreadyDispositioned(Conflict):
    error_id = "already_dispositioned"


class NotYourCall(UserError):
    status = 403
    error_id = "not_your_call"


def required_parts(d: Disposition) -> list[str]:
    return [part for part, flag in PARTS.items() if d.has(flag)]


def describe(catalog: dict[str, Disposition]) -> list[dict]:
    """The codes an agent can pick, with flags, retry rules and what each requires."""
    return [
        {
            "code": d.code,
            "label": d.label,
            "flags": sorted(d.flags),
            "final": d.has("final"),
            "retry_after_minutes": d.retry_after_minutes,
            "max_attempts": d.max_attempts,
            "requires": required_parts(d),
        }
        for d in catalog.values()
    ]


def _int_id(value, field: str) -> int:
    if isinstance(value, bool):
        raise UserError(f"{field} must be a whole number", fields=[field])
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise UserError(f"{field} must be a whole number, got {value!r}", fields=[field])


def _validate_follow_up(raw, *, now: dt.datetime) -> dict:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError("follow_up must be an object", fields=["follow_up"])
    unknown = sorted(set(raw) - set(FOLLOW_UP_FIELDS))
    if unknown:
        raise UserError(
            f"unknown follow_up fields: {', '.join('follow_up.' + u for u in unknown)}",
            fields=["follow_up." + u for u in unknown],
        )
    due_at = follow_ups.parse_due_at(raw.get("due_at"), now=now, field="follow_up.due_at")
    owner = raw.get("owner") or "me"
    if owner not in follow_ups.OWNERS:
        raise UserError('follow_up.owner must be "me" or "anyone"', fields=["follow_up.owner"])
    note = raw.get("note")
    if note is not None and not isinstance(note, str):
        raise UserError("follow_up.note must be text", fields=["follow_up.note"])
    return {"due_at": due_at, "owner": owner, "note": note}


def _check_request(
    request,
    catalog: dict[str, Disposition],
    *,
    now: dt.datetime,
    payment_methods: list[str],
    default_currency: str,
    departments: list[str],
) -> dict:
    """Everything that can be checked without the database, in one pass: every missing
    field is named at once (MissingFields), then every bad value (UserError)."""
    if not isinstance(request, dict):
        raise UserError("the disposition must be a JSON object")
    unknown = sorted(set(request) - set(REQUEST_FIELDS))
    if unknown:
        raise UserError(f"unknown fields: {', '.join(unknown)}", fields=unknown)

    code = request.get("code")
    if code is None or (isinstance(code, str) and not code.strip()):
        missing = ["code"]
        if request.get("lead_id") is None and request.get("call_id") is None:
            missing += ["lead_id", "call_id"]
        raise MissingFields(f"a disposition needs {', '.join(missing)}", fields=missing)
    code = str(code).strip().upper()
    disposition = catalog.get(code)
    if disposition is None:
        valid = sorted(catalog)
        raise UnknownDisposition(
            f"unknown disposition {code!r}; valid codes: {', '.join(valid)}",
            fields=["code"],
            valid_codes=valid,
        )

    extra = [
        part
        for part, flag in PARTS.items()
        if request.get(part) is not None and not disposition.has(flag)
    ]
    if extra:
        raise UserError(f"{code} does not take {' or '.join(extra)}", fields=extra)

    missing: list[str] = []
    if request.get("lead_id") is None and request.get("call_id") is None:
        missing += ["lead_id", "call_id"]
    parts: dict = {}
    checks = {
        "order": lambda raw: orders.validate_order(
            raw, payment_methods=payment_methods, default_currency=default_currency, now=now
        ),
        "follow_up": lambda raw: _validate_follow_up(raw, now=now),
        "complaint": lambda raw: complaints.validate_complaint(
            raw,
            departments=departments,
            default_channel="phone" if request.get("call_id") is not None else None,
        ),
    }
    bad: list[UserError] = []
    for part in required_parts(disposition):
        try:
            parts[part] = checks[part](request.get(part))
        except MissingFields as e:
            missing += e.fields
        except UserError as e:
            bad.append(e)
    if missing:
        raise MissingFields(f"{code} is missing {', '.join(missing)}", fields=missing)
    lead_id = call_id = None
    try:
        if request.get("lead_id") is not None:
            lead_id = _int_id(request["lead_id"], "lead_id")
    except UserError as e:
        bad.append(e)
    try:
        if request.get("call_id") is not None:
            call_id = parse_call_id(request["call_id"])
    except UserError as e:
        bad.append(e)
    note = request.get("note")
    if note is not None and not isinstance(note, str):
        bad.append(UserError("note must be text", fields=["note"]))
    if bad:
        raise UserError(
            "; ".join(e.message for e in bad),
            fields=[f for e in bad for f in e.fields],
            errors={k: v for e in bad for k, v in e.details.get("errors", {}).items()},
        )
    return {
        "disposition": disposition,
        "lead_id": lead_id,
        "call_id": call_id,
        "note": (note or "").strip(),
        **parts,
    }


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


async def record_disposition(
    conn: asyncpg.Connection,
    catalog: dict[str, Disposition],
    request: dict,
    *,
    agent_id: int | None,
    payment_methods: list[str],
    departments: list[str],
    default_currency: str,
    ack_hours: int,
    resolve_hours: int,
    now: dt.datetime | None = None,
    own_calls_only: bool = False,
    qa_scorecard: str | None = None,
) -> dict:
    """Record a wrap-up; returns a JSON-able summary of everything it wrote.

    own_calls_only: the caller may only wrap up calls they handled (agents).
    qa_scorecard: the scorecard for calls whose campaign names none; given, a call whose
    recording is closed already is queued for QA in the same transaction (None: no QA job).
    """
    now = now or dt.datetime.now(dt.UTC)
    req = _check_request(
        request,
        catalog,
        now=now,
        payment_methods=payment_methods,
        default_currency=default_currency,
        departments=departments,
    )
    disposition: Disposition = req["disposition"]
    code, note = disposition.code, req["note"]
    lead_id: int | None = req["lead_id"]
    call_id: uuid.UUID | None = req["call_id"]

    async with conn.transaction():
        call = None
        if call_id is not None:
            call = await conn.fetchrow("select lead_id from calls where id = $1", call_id)
            if call is None:
                raise NotFound(f"no call {call_id}", fields=["call_id"])
            if call["lead_id"] is not None:
                if lead_id is not None and lead_id != call["lead_id"]:
                    raise UserError(
                        f"call {call_id} belongs to lead {call['lead_id']}, not {lead_id}",
                        fields=["lead_id"],
                    )
                lead_id = call["lead_id"]

        # Lead first, then call: the order crm.calls.create_call locks them in too, so two
        # wrap-ups (or a wrap-up and a dial) of one lead queue up instead of deadlocking.
        lead = None
        if lead_id is not None:
            lead = await conn.fetchrow("select * from leads where id = $1 for update", lead_id)
            if lead is None:
                raise NotFound(f"no lead {lead_id}", fields=["lead_id"])
        if call_id is not None:
            call = await conn.fetchrow("select * from calls where id = $1 for update", call_id)
            earlier = await conn.fetchval(
                "select code from call_dispositions where call_id = $1", call_id
            )
            if earlier is not None or call["disposition"] is not None:
                raise AlreadyDispositioned(
                    f"call {call_id} already has disposition {earlier or call['disposition']}",
                    fields=["call_id"],
                    existing_code=earlier or call["disposition"],
                )
            if own_calls_only and call["agent_id"] != agent_id:
                raise NotYourCall(
                    f"call {call_id} was handled by another agent", fields=["call_id"]
                )

        customer_id = (call["customer_id"] if call is not None else None) or (
            lead["customer_id"] if lead is not None else None
        )
        if customer_id is None:
            raise UserError(
                f"call {call_id} has no customer; attach the caller to a customer first",
                fields=["call_id"],
            )
        if lead is not None and lead["customer_id"] != customer_id:
            raise UserError(
                f"lead {lead_id} is not the customer of call {call_id}", fields=["lead_id"]
            )

        dnc_number = None
        if disposition.has("dnc"):
            if lead is not None:
                dnc_number = lead["phone"]
            else:
                dnc_number = (
                    call["to_number"] if call["direction"] == "outbound" else call["from_number"]
                )
            if not dnc_number or not _E164.match(dnc_number):
                raise UserError(
                    f"call {call_id} has no customer number to put on the do-not-call list",
                    fields=["call_id"],
                )

        # --- checks done; writes from here on -------------------------------------
        try:
            disposition_id = await conn.fetchval(
                """insert into call_dispositions (call_id, lead_id, customer_id, agent_id, code,
                       note, created_at)
                   values ($1, $2, $3, $4, $5, $6, $7) returning id""",
                call_id,
                lead_id,
                customer_id,
                agent_id,
                code,
                note,
                now,
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyDispositioned(
                f"call {call_id} already has a disposition", fields=["call_id"]
            ) from None
        if call is not None:
            await conn.execute("update calls set disposition = $2 where id = $1", call_id, code)

        result: dict = {
            "disposition_id": disposition_id,
            "code": code,
            "label": disposition.label,
            "call_id": None if call_id is None else str(call_id),
            "lead_id": lead_id,
            "customer_id": customer_id,
            "created_at": _iso(now),
            "lead_status": None,
            "closed": None,
            "closed_by": None,
            "next_attempt_at": None,
            "order_id": None,
            "follow_up_id": None,
            "complaint_id": None,
            "dnc_number": None,
        }

        # The wrap-up comes first in the customer's record, then what it created.
        interaction_id = await interactions.add(
            conn,
            customer_id,
            "call" if call is not None else "note",
            user_id=agent_id,
            call_id=call_id,
            occurred_at=now,
            summary=disposition.label + (f": {note}" if note else ""),
        )
        if lead is not None:
            await _update_lead(
                conn, lead, disposition, req, agent_id=agent_id, now=now, result=result
            )

        if "order" in req:
            order = await orders.create_order(
                conn,
                req["order"],
                customer_id=customer_id,
                lead_id=lead_id,
                call_id=call_id,
                agent_id=agent_id,
                now=now,
            )
            result["order_id"] = order["id"]
            result["order_total"] = str(order["total"])
        if "follow_up" in req:
            fu = req["follow_up"]
            follow_up = await follow_ups.create_follow_up(
                conn,
                customer_id=customer_id,
                lead_id=lead_id,
                call_id=call_id,
                owner_agent_id=agent_id if fu["owner"] == "me" else None,
                due_at=fu["due_at"],
                note=fu["note"] if fu["note"] is not None else note,
                created_by=agent_id,
                now=now,
            )
            result["follow_up_id"] = follow_up["id"]
            result["follow_up_due_at"] = _iso(follow_up["due_at"])
            result["follow_up_owner_id"] = follow_up["owner_agent_id"]
        if "complaint" in req:
            complaint = await complaints.create_complaint(
                conn,
                req["complaint"],
                customer_id=customer_id,
                call_id=call_id,
                created_by=agent_id,
                ack_hours=ack_hours,
                resolve_hours=resolve_hours,
                now=now,
                note=note,
            )
            result["complaint_id"] = complaint["id"]
        if dnc_number is not None:
            await dnc.add(
                conn,
                dnc_number,
                note or f"{disposition.label} (disposition {code})",
                source="agent",
                added_by=agent_id,
                customer_id=customer_id,
                now=now,
            )
            result["dnc_number"] = dnc_number

        await conn.execute(
            "update interactions set details = $2 where id = $1",
            interaction_id,
            {
                k: result[k]
                for k in (
                    "disposition_id",
                    "code",
                    "lead_id",
                    "order_id",
                    "follow_up_id",
                    "complaint_id",
                    "dnc_number",
                )
                if result[k] is not None
            },
        )
        await audit.record(
            conn,
            agent_id,
            "disposition.record",
            "call_disposition",
            disposition_id,
            {k: v for k, v in result.items() if v is not None and k != "label"},
        )
        if call_id is not None and qa_scorecard is not None:
            await qa_jobs.enqueue_when_ready(conn, call_id, qa_scorecard)
    return result


async def _update_lead(
    conn: asyncpg.Connection,
    lead: asyncpg.Record,
    disposition: Disposition,
    req: dict,
    *,
    agent_id: int | None,
    now: dt.datetime,
    result: dict,
) -> None:
    """The lead's status is the code; whether and when it is dialled again follows the code's
    retry rules and the campaign's limits. A closed lead is never reopened by a wrap-up (a
    later call on a sold or do-not-call lead must not put it back in the hopper)."""
    campaign = await conn.fetchrow(
        "select max_attempts_total, min_retry_minutes from campaigns where id = $1",
        lead["campaign_id"],
    )
    owner = lead["owner_agent_id"]
    closed_by = None
    next_attempt = None
    if lead["closed"]:
        closed_by = "already_closed"
    elif disposition.has("final"):
        closed_by = "final"
    elif disposition.has("callback"):
        next_attempt = req["follow_up"]["due_at"]
        if req["follow_up"]["owner"] == "me" and agent_id is not None:
            owner = agent_id
    else:
        limits = [n for n in (disposition.max_attempts, campaign["max_attempts_total"]) if n]
        if limits and lead["attempts_total"] >= min(limits):
            closed_by = "max_attempts"
        else:
            # The campaign's minimum gap between attempts is a floor for every code.
            minutes = max(disposition.retry_after_minutes or 0, campaign["min_retry_minutes"])
            next_attempt = now + dt.timedelta(minutes=minutes)
    closed = closed_by is not None

    if closed or disposition.has("callback"):
        # A new callback replaces the old ones; a closed lead needs none.
        await follow_ups.settle_for_lead(conn, lead["id"], now=now)
    await conn.execute(
        """update leads set status = $2, closed = $3, next_attempt_at = $4, owner_agent_id = $5,
               updated_at = $6
           where id = $1""",
        lead["id"],
        disposition.code,
        closed,
        next_attempt,
        owner,
        now,
    )
    result.update(
        lead_status=disposition.code,
        closed=closed,
        closed_by=closed_by,
        next_attempt_at=_iso(next_attempt),
    )
