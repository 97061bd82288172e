"""Customers, their phone numbers, and the customer file the agent page shows."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

import asyncpg
import phonenumbers

from crm import audit
from crm import interactions as interaction_store
from crm.errors import Conflict, NotFound, UserError
from crm.phones import to_e164

SETTABLE = (
    "name",
    "company",
    "email",
    "source_channel",
    "region",
    "time_zone",
    "tags",
    "notes",
    "consent",
)


def normalise_phone(raw, region: str, *, field: str = "phone") -> str:
    """A phone number as E.164; numbers without a country code are read in `region`."""
    text = str(raw or "").strip()
    if not text:
        raise UserError(f"{field} is empty", fields=[field])
    e164 = to_e164(text, region)
    if e164 is None:
        raise UserError(
            f"{field}: {text!r} is not a valid phone number (read in region {region})",
            fields=[field],
        )
    return e164


def _check_fields(fields: dict, source_channels: list[str] | None) -> dict:
    unknown = sorted(set(fields) - set(SETTABLE))
    if unknown:
        raise UserError(f"unknown customer fields: {', '.join(unknown)}", fields=unknown)
    clean = {}
    errors = {}
    for key, value in fields.items():
        if key in ("name", "company", "notes"):
            if not isinstance(value, str):
                errors[key] = "must be text"
            else:
                clean[key] = value.strip()
        elif key == "email":
            if value in (None, ""):
                clean[key] = None
            elif not isinstance(value, str) or not re.fullmatch(
                r"[^@\s]+@[^@\s]+\.[^@\s]+", value.strip()
            ):
                errors[key] = "must be an e-mail address"
            else:
                clean[key] = value.strip()
        elif key == "source_channel":
            if value in (None, ""):
                clean[key] = None
            elif source_channels is not None and value not in source_channels:
                errors[key] = f"must be one of {', '.join(source_channels)}"
            else:
                clean[key] = str(value)
        elif key == "region":
            if value in (None, ""):
                clean[key] = None
            elif value not in phonenumbers.SUPPORTED_REGIONS:
                errors[key] = "must be an ISO 3166 region code like CN, TW, US"
            else:
                clean[key] = value
        elif key == "time_zone":
            if value in (None, ""):
                clean[key] = None
            else:
                try:
                    zoneinfo.ZoneInfo(str(value))
                    clean[key] = str(value)
                except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                    errors[key] = "must be a time zone like Asia/Shanghai"
        elif key == "tags":
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                errors[key] = "must be a list of text"
            else:
                clean[key] = sorted({t.strip() for t in value if t.strip()})
        elif key == "consent":
            if not isinstance(value, bool):
                errors[key] = "must be true or false"
            else:
                clean[key] = value
    if errors:
        raise UserError(
            "; ".join(f"{k} {v}" for k, v in errors.items()), fields=list(errors), errors=errors
        )
    return clean


def _check_phones(phones, region: str) -> list[dict]:
    """[{e164, label, is_primary}] with exactly one primary; duplicates in the list collapse."""
    if not isinstance(phones, list):
        raise UserError("phones must be a list", fields=["phones"])
    out: dict[str, dict] = {}
    for i, entry in enumerate(phones):
        field = f"phones[{i}]"
        if isinstance(entry, dict):
            raw, label, primary = (
                entry.get("number"),
                entry.get("label") or "phone",
                entry.get("primary"),
            )
        else:
            raw, label, primary = entry, "phone", False
        e164 = normalise_phone(raw, region, field=field)
        out.setdefault(e164, {"e164": e164, "label": str(label), "is_primary": bool(primary)})
    result = list(out.values())
    primaries = [p for p in result if p["is_primary"]]
    if len(primaries) > 1:
        raise UserError("only one phone can be primary", fields=["phones"])
    if result and not primaries:
        result[0]["is_primary"] = True
    return result


async def _set_phones(conn: asyncpg.Connection, customer_id: int, phones: list[dict]) -> None:
    owners = {
        r["e164"]: r["customer_id"]
        for r in await conn.fetch(
            "select e164, customer_id from customer_phones where e164 = any($1::text[]) for update",
            [p["e164"] for p in phones],
        )
    }
    taken = {e: c for e, c in owners.items() if c != customer_id}
    if taken:
        e164, other = next(iter(taken.items()))
        raise Conflict(
            f"{e164} already belongs to customer {other}",
            fields=["phones"],
            numbers={e: c for e, c in taken.items()},
        )
    await conn.execute(
        "delete from customer_phones where customer_id = $1 and not (e164 = any($2::text[]))",
        customer_id,
        [p["e164"] for p in phones],
    )
    for p in phones:
        await conn.execute(
            """insert into customer_phones (e164, customer_id, label, is_primary)
               values ($1, $2, $3, $4)
               on conflict (e164) do update
               set label = excluded.label, is_primary = excluded.is_primary""",
            p["e164"],
            customer_id,
            p["label"],
            p["is_primary"],
        )


async def create_customer(
    conn: asyncpg.Connection,
    *,
    phones: list,
    default_region: str,
    user_id: int | None,
    source_channels: list[str] | None = None,
    **fields,
) -> dict:
    """A new customer with its numbers; a number that belongs to another customer is a 409."""
    clean = _check_fields(fields, source_channels)
    region = clean.get("region") or default_region
    phone_rows = _check_phones(phones, region)
    if clean.get("consent"):
        clean["consent_at"] = dt.datetime.now(dt.UTC)
    async with conn.transaction():
        columns = list(clean)
        placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
        if columns:
            customer_id = await conn.fetchval(
                f"insert into customers ({', '.join(columns)}) values ({placeholders}) "
                "returning id",
                *clean.values(),
            )
        else:
            customer_id = await conn.fetchval("insert into customers default values returning id")
        await _set_phones(conn, customer_id, phone_rows)
        await audit.record(
            conn,
            user_id,
            "customer.create",
            "customer",
            customer_id,
            {"phones": [p["e164"] for p in phone_rows]},
        )
        return await get_customer(conn, customer_id)


async def update_customer(
    conn: asyncpg.Connection,
    customer_id: int,
    changes: dict,
    *,
    default_region: str,
    user_id: int | None,
    source_channels: list[str] | None = None,
) -> dict:
    """Change fields; `phones`, when present, replaces the customer's numbers."""
    changes = dict(changes)
    phones = changes.pop("phones", None)
    clean = _check_fields(changes, source_channels)
    async with conn.transaction():
        current = await conn.fetchrow(
            "select * from customers where id = $1 for update", customer_id
        )
        if current is None:
            raise NotFound(f"no customer {customer_id}")
        if clean.get("consent") and not current["consent"]:
            clean["consent_at"] = dt.datetime.now(dt.UTC)
        elif clean.get("consent") is False:
            clean["consent_at"] = None
        if clean:
            sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(clean, start=2))
            await conn.execute(
                f"update customers set {sets}, updated_at = now() where id = $1",
                customer_id,
                *clean.values(),
            )
        if phones is not None:
            region = clean.get("region", current["region"]) or default_region
            await _set_phones(conn, customer_id, _check_phones(phones, region))
        changed = {k: v for k, v in clean.items() if k != "consent_at"}
        details = {"fields": sorted(changed)}
        if phones is not None:
            details["phones"] = True
        await audit.record(conn, user_id, "customer.update", "customer", customer_id, details)
        return await get_customer(conn, customer_id)


async def get_customer(conn: asyncpg.Connection, customer_id: int) -> dict:
    row = await conn.fetchrow("select * from customers where id = $1", customer_id)
    if row is None:
        raise NotFound(f"no customer {customer_id}")
    phones = await conn.fetch(
        """select e164, label, is_primary from customer_phones where customer_id = $1
           order by is_primary desc, created_at, e164""",
        customer_id,
    )
    return {**dict(row.items()), "phones": [dict(p.items()) for p in phones]}


async def find_by_phone(conn: asyncpg.Connection, e164: str) -> dict | None:
    customer_id = await conn.fetchval(
        "select customer_id from customer_phones where e164 = $1", e164
    )
    return None if customer_id is None else await get_customer(conn, customer_id)


async def customer_file(
    conn: asyncpg.Connection, customer_id: int, *, interactions_limit: int = 500
) -> dict:
    """Everything an agent needs on one page: the customer and numbers, leads, calls with
    their dispositions, orders, open complaints, follow-ups, and the interactions in time order."""
    customer = await get_customer(conn, customer_id)

    def rows(records) -> list[dict]:
        return [dict(r.items()) for r in records]

    leads = await conn.fetch(
        """select l.id, l.campaign_id, c.name as campaign, l.phone, l.status, l.closed,
                  l.attempts_total, l.last_attempt_at, l.next_attempt_at, l.owner_agent_id,
                  l.priority, l.source_channel, l.created_at
           from leads l join campaigns c on c.id = l.campaign_id
           where l.customer_id = $1 order by l.created_at, l.id""",
        customer_id,
    )
    calls = await conn.fetch(
        """select c.id, c.direction, c.agent_id, u.username as agent, c.lead_id, c.campaign_id,
                  c.from_number, c.to_number, c.created_at, c.answered_at, c.ended_at,
                  c.duration_seconds, c.hangup_side, c.recording_state,
                  c.disposition, d.label as disposition_label, cd.note as disposition_note,
                  cd.created_at as disposition_at
           from calls c
           left join users u on u.id = c.agent_id
           left join call_dispositions cd on cd.call_id = c.id
           left join dispositions d on d.code = c.disposition
           where c.customer_id = $1 order by c.created_at, c.id""",
        customer_id,
    )
    dispositions = await conn.fetch(
        """select cd.id, cd.call_id, cd.lead_id, cd.agent_id, u.username as agent, cd.code,
                  d.label, cd.note, cd.created_at
           from call_dispositions cd
           join dispositions d on d.code = cd.code
           left join users u on u.id = cd.agent_id
           where cd.customer_id = $1 order by cd.created_at, cd.id""",
        customer_id,
    )
    orders = await conn.fetch(
        "select * from orders where customer_id = $1 order by created_at, id", customer_id
    )
    complaints = await conn.fetch(
        """select * from complaints where customer_id = $1 and state <> 'confirmed_by_customer'
           order by received_at, id""",
        customer_id,
    )
    follow_ups = await conn.fetch(
        """select f.*, u.username as owner
           from follow_ups f left join users u on u.id = f.owner_agent_id
           where f.customer_id = $1 order by (f.status = 'open') desc, f.due_at, f.id""",
        customer_id,
    )
    history = await interaction_store.for_customer(conn, customer_id, limit=interactions_limit)
    dnc_numbers = await conn.fetch(
        """select d.e164, d.reason, d.source, d.added_at from do_not_call d
           join customer_phones p on p.e164 = d.e164 where p.customer_id = $1""",
        customer_id,
    )
    return {
        "customer": customer,
        "leads": rows(leads),
        "calls": rows(calls),
        "dispositions": rows(dispositions),
        "orders": rows(orders),
        "open_complaints": rows(complaints),
        "follow_ups": rows(follow_ups),
        "interactions": rows(history),
        "do_not_call": rows(dnc_numbers),
    }
