"""Customers, their phone numbers, the lookup, and the customer file the agent page shows."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from functools import cache

import asyncpg
import phonenumbers

from crm import audit
from crm import interactions as interaction_store
from crm.errors import Conflict, MissingFields, NotFound, UserError
from crm.fields import InvalidValue, check_text, check_unknown, text_problem
from crm.paging import page_of
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
CREATE_FIELDS = (*SETTABLE, "phones")
# phones replaces the whole list; add_phones / remove_phones change it in place.
UPDATE_FIELDS = (*SETTABLE, "phones", "add_phones", "remove_phones")

TEXT_LIMITS = {"name": 200, "company": 200, "notes": 10_000}
EMAIL_MAX = 320
TAG_MAX, TAGS_MAX = 50, 50
LABEL_MAX = 50
PHONES_MAX = 20
QUERY_MAX = 200


class InvalidPhone(UserError):
    error_id = "invalid_phone"


class InvalidFields(UserError):
    error_id = "invalid_fields"


class PhoneTaken(Conflict):
    """The store's duplicate rule: a number belongs to one customer."""

    error_id = "phone_taken"


def normalise_phone(raw, region: str, *, field: str = "phone") -> str:
    """A phone number as E.164; numbers without a country code are read in `region`."""
    if raw is None or isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise InvalidPhone(f"{field} must be a phone number written as text", fields=[field])
    text = str(raw).strip()
    if not text:
        raise InvalidPhone(f"{field} is empty", fields=[field])
    e164 = to_e164(text, region) if len(text) <= 100 else None
    if e164 is None:
        raise InvalidPhone(
            f"{field}: {text[:100]!r} is not a valid phone number (read in region {region})",
            fields=[field],
        )
    return e164


@cache
def _time_zones() -> frozenset[str]:
    # "localtime" and "Factory" are files in the zoneinfo folder, not places.
    return frozenset(zoneinfo.available_timezones() - {"localtime", "Factory"})


def _check_fields(fields: dict, source_channels: list[str] | None) -> dict:
    unknown = sorted(set(fields) - set(SETTABLE))
    if unknown:
        raise interaction_store.UnknownFields(
            f"unknown customer fields: {', '.join(unknown)}", fields=unknown, allowed=list(SETTABLE)
        )
    clean = {}
    errors = {}
    for key, value in fields.items():
        if key in TEXT_LIMITS:
            if value is None:
                value = ""
            if not isinstance(value, str):
                errors[key] = "must be text"
            elif problem := text_problem(value.strip(), TEXT_LIMITS[key]):
                errors[key] = problem
            else:
                clean[key] = value.strip()
        elif key == "email":
            if value in (None, ""):
                clean[key] = None
            elif (
                not isinstance(value, str)
                or len(value.strip()) > EMAIL_MAX
                or not re.fullmatch(r"[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+", value.strip())
                or text_problem(value, EMAIL_MAX)
            ):
                errors[key] = "must be an e-mail address"
            else:
                clean[key] = value.strip()
        elif key == "source_channel":
            if value in (None, ""):
                clean[key] = None
            elif not isinstance(value, str) or text_problem(value, 200):
                errors[key] = "must be text"
            elif source_channels is not None and value.strip() not in source_channels:
                errors[key] = f"must be one of {', '.join(source_channels)}"
            else:
                clean[key] = value.strip()
        elif key == "region":
            if value in (None, ""):
                clean[key] = None
            elif not isinstance(value, str) or value.strip().upper() not in phonenumbers.SUPPORTED_REGIONS:
                errors[key] = "must be an ISO 3166 region code like CN, TW, US"
            else:
                clean[key] = value.strip().upper()
        elif key == "time_zone":
            if value in (None, ""):
                clean[key] = None
            elif not isinstance(value, str) or value.strip() not in _time_zones():
                errors[key] = "must be a time zone like Asia/Shanghai"
            else:
                clean[key] = value.strip()
        elif key == "tags":
            if value is None:
                value = []
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                errors[key] = "must be a list of text"
            elif any(text_problem(t.strip(), TAG_MAX) for t in value):
                errors[key] = f"must be text of at most {TAG_MAX} characters each"
            elif len({t.strip() for t in value if t.strip()}) > TAGS_MAX:
                errors[key] = f"must be at most {TAGS_MAX} tags"
            else:
                clean[key] = sorted({t.strip() for t in value if t.strip()})
        elif key == "consent":
            if not isinstance(value, bool):
                errors[key] = "must be true or false"
            else:
                clean[key] = value
    if errors:
        extra = {}
        if "source_channel" in errors and source_channels is not None:
            extra["valid_source_channels"] = list(source_channels)
        raise InvalidFields(
            "; ".join(f"{k} {v}" for k, v in errors.items()),
            fields=list(errors),
            errors=errors,
            **extra,
        )
    return clean


def _check_phones(phones, region: str, *, field: str = "phones", first_is_primary: bool = True) -> list[dict]:
    """[{e164, label, is_primary, field}]; label and is_primary are None where not given.
    With first_is_primary, the first number is primary unless another one says so.
    Duplicates in the list collapse."""
    if phones is None:
        return []
    if not isinstance(phones, list):
        raise InvalidPhone(f"{field} must be a list of phone numbers", fields=[field])
    if len(phones) > PHONES_MAX:
        raise InvalidPhone(f"{field}: at most {PHONES_MAX} numbers", fields=[field])
    out: dict[str, dict] = {}
    for i, entry in enumerate(phones):
        item = f"{field}[{i}]"
        label = primary = None
        if isinstance(entry, dict):
            check_unknown(entry, ("number", "label", "primary"), what=f"{item}")
            raw, label, primary = entry.get("number"), entry.get("label"), entry.get("primary")
            if label is not None:
                label = check_text(label, f"{item}.label", max_len=LABEL_MAX) or None
            if primary is not None and not isinstance(primary, bool):
                raise InvalidPhone(f"{item}.primary must be true or false", fields=[f"{item}.primary"])
        else:
            raw = entry
        e164 = normalise_phone(raw, region, field=item)
        out.setdefault(e164, {"e164": e164, "label": label, "is_primary": primary, "field": item})
    result = list(out.values())
    primaries = [p for p in result if p["is_primary"]]
    if len(primaries) > 1:
        raise InvalidPhone("only one phone can be primary", fields=[p["field"] for p in primaries])
    if first_is_primary and result and not primaries:
        result[0]["is_primary"] = True
    if first_is_primary:
        for p in result:
            p["is_primary"] = bool(p["is_primary"])
    return result


def _taken(e164: str, owner: int, field: str) -> PhoneTaken:
    return PhoneTaken(
        f"{e164} already belongs to customer {owner}",
        fields=[field],
        number=e164,
        customer_id=owner,
    )


async def _claim_phones(conn: asyncpg.Connection, customer_id: int, phones: list[dict]) -> None:
    """Give the numbers to the customer (label / primary updated where given); 409 for a
    number of another customer, even one another transaction is adding right now."""
    owners = {
        r["e164"]: r["customer_id"]
        for r in await conn.fetch(
            "select e164, customer_id from customer_phones where e164 = any($1::text[])",
            [p["e164"] for p in phones],
        )
    }
    for p in phones:
        owner = owners.get(p["e164"])
        if owner is not None and owner != customer_id:
            raise _taken(p["e164"], owner, p["field"])
    for p in phones:
        # The where clause turns "somebody else committed this number meanwhile" into no row.
        mine = await conn.fetchval(
            """insert into customer_phones (e164, customer_id, label, is_primary)
               values ($1, $2, coalesce($3, 'phone'), coalesce($4, false))
               on conflict (e164) do update
               set label = coalesce($3, customer_phones.label),
                   is_primary = coalesce($4, customer_phones.is_primary)
               where customer_phones.customer_id = $2
               returning customer_id""",
            p["e164"],
            customer_id,
            p["label"],
            p["is_primary"],
        )
        if mine is None:
            owner = await conn.fetchval(
                "select customer_id from customer_phones where e164 = $1", p["e164"]
            )
            raise _taken(p["e164"], owner, p["field"])
    # A number already on the do-not-call list flags its new owner, as crm/dnc.py does.
    await conn.execute(
        """update customers set do_not_call = true
           where id = $1 and not do_not_call
             and exists (select 1 from do_not_call where e164 = any($2::text[]))""",
        customer_id,
        [p["e164"] for p in phones],
    )


async def _settle_primary(conn: asyncpg.Connection, customer_id: int, wanted: str | None) -> None:
    """Exactly one primary number (when there are numbers): `wanted`, else the one there is,
    else the oldest."""
    if wanted is not None:
        await conn.execute(
            "update customer_phones set is_primary = (e164 = $2) where customer_id = $1",
            customer_id,
            wanted,
        )
        return
    await conn.execute(
        """update customer_phones set is_primary = true
           where e164 = (select e164 from customer_phones where customer_id = $1
                         order by created_at, e164 limit 1)
             and not exists (select 1 from customer_phones
                             where customer_id = $1 and is_primary)""",
        customer_id,
    )


async def _phone_snapshot(conn: asyncpg.Connection, customer_id: int) -> dict[str, dict]:
    rows = await conn.fetch(
        "select e164, label, is_primary from customer_phones where customer_id = $1", customer_id
    )
    return {r["e164"]: {"label": r["label"], "is_primary": r["is_primary"]} for r in rows}


def _phone_changes(before: dict[str, dict], after: dict[str, dict]) -> dict:
    changes = {}
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    if added:
        changes["added"] = added
    if removed:
        changes["removed"] = removed

    def primary(snapshot):
        return next((e for e, p in snapshot.items() if p["is_primary"]), None)

    if primary(before) != primary(after):
        changes["primary"] = {"old": primary(before), "new": primary(after)}
    relabelled = {
        e: {"old": before[e]["label"], "new": after[e]["label"]}
        for e in sorted(set(before) & set(after))
        if before[e]["label"] != after[e]["label"]
    }
    if relabelled:
        changes["labels"] = relabelled
    return changes


async def create_customer(
    conn: asyncpg.Connection,
    fields: dict | None = None,
    *,
    default_region: str,
    user_id: int | None,
    source_channels: list[str] | None = None,
    **more,
) -> dict:
    """A new customer with its numbers (`phones`, read in the customer's region or the default
    one); a number that belongs to another customer is a 409 naming that customer."""
    fields = {**(fields or {}), **more}
    check_unknown(fields, CREATE_FIELDS, what="customer")
    phones = fields.pop("phones", None)
    clean = _check_fields(fields, source_channels)
    region = clean.get("region") or default_region
    phone_rows = _check_phones(phones, region)
    if not (clean.get("name") or clean.get("company") or phone_rows):
        raise MissingFields(
            "a customer needs a name, a company or a phone number",
            fields=["name", "company", "phones"],
        )
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
        await _claim_phones(conn, customer_id, phone_rows)
        await audit.record(
            conn,
            user_id,
            "customer.create",
            "customer",
            customer_id,
            {
                "fields": {k: v for k, v in clean.items() if v not in (None, "", [])},
                "phones": [p["e164"] for p in phone_rows],
            },
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
    """Change fields and numbers: `phones` replaces the customer's numbers, `add_phones` and
    `remove_phones` change them in place. The audit row holds each changed value (old -> new);
    a request that changes nothing writes nothing."""
    check_unknown(changes, UPDATE_FIELDS, what="customer")
    changes = dict(changes)
    replace = changes.pop("phones", None)
    add = changes.pop("add_phones", None)
    remove = changes.pop("remove_phones", None)
    if replace is not None and (add is not None or remove is not None):
        raise InvalidValue(
            "send phones (the whole new list) or add_phones / remove_phones, not both",
            fields=["phones", "add_phones", "remove_phones"],
        )
    if remove is not None and (not isinstance(remove, list) or len(remove) > PHONES_MAX):
        raise InvalidPhone(
            f"remove_phones must be a list of at most {PHONES_MAX} numbers", fields=["remove_phones"]
        )
    clean = _check_fields(changes, source_channels)
    async with conn.transaction():
        current = await conn.fetchrow(
            "select * from customers where id = $1 for update", customer_id
        )
        if current is None:
            raise NotFound(f"no customer {customer_id}", fields=["customer_id"])
        diffs = {k: v for k, v in clean.items() if current[k] != v}
        if "consent" in diffs:
            diffs["consent_at"] = dt.datetime.now(dt.UTC) if diffs["consent"] else None
        if diffs:
            sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(diffs, start=2))
            await conn.execute(
                f"update customers set {sets}, updated_at = now() where id = $1",
                customer_id,
                *diffs.values(),
            )

        region = clean.get("region", current["region"]) or default_region
        before = await _phone_snapshot(conn, customer_id)
        if replace is not None:
            rows = _check_phones(replace, region, field="phones")
            await _claim_phones(conn, customer_id, rows)
            await conn.execute(
                "delete from customer_phones where customer_id = $1 and not (e164 = any($2::text[]))",
                customer_id,
                [p["e164"] for p in rows],
            )
            await _settle_primary(conn, customer_id, next((p["e164"] for p in rows if p["is_primary"]), None))
        elif add is not None or remove is not None:
            added = _check_phones(add, region, field="add_phones", first_is_primary=False)
            removed = {}
            for i, raw in enumerate(remove or []):
                e164 = normalise_phone(raw, region, field=f"remove_phones[{i}]")
                if e164 not in before:
                    raise InvalidPhone(
                        f"remove_phones[{i}]: {e164} is not a number of customer {customer_id}",
                        fields=[f"remove_phones[{i}]"],
                    )
                removed[e164] = f"remove_phones[{i}]"
            both = [p for p in added if p["e164"] in removed]
            if both:
                raise InvalidPhone(
                    f"{both[0]['e164']} is both added and removed",
                    fields=[both[0]["field"], removed[both[0]["e164"]]],
                )
            await _claim_phones(conn, customer_id, added)
            await conn.execute(
                "delete from customer_phones where customer_id = $1 and e164 = any($2::text[])",
                customer_id,
                list(removed),
            )
            await _settle_primary(conn, customer_id, next((p["e164"] for p in added if p["is_primary"]), None))
        after = await _phone_snapshot(conn, customer_id)
        phone_changes = _phone_changes(before, after)

        if phone_changes and not diffs:
            await conn.execute("update customers set updated_at = now() where id = $1", customer_id)
        if diffs or phone_changes:
            details: dict = {}
            if diffs:
                details["changes"] = (
                    {k: {"old": current[k], "new": v} for k, v in diffs.items()}
                )
            if phone_changes:
                details["phones"] = phone_changes
            await audit.record(conn, user_id, "customer.update", "customer", customer_id, details)
        return await get_customer(conn, customer_id)


def _like_pattern(text: str) -> str:
    """text as a substring pattern for ILIKE, its own % _ \\ taken literally."""
    return "%" + re.sub(r"([\\%_])", r"\\\1", text) + "%"


async def search(
    conn: asyncpg.Connection,
    *,
    q: str | None = None,
    phone: str | None = None,
    default_region: str,
    page: int,
    per_page: int,
) -> dict:
    """Customers whose name or company contains q (any script, case-insensitive) and/or who
    own the number `phone` (any format, read in default_region); everyone without either.
    Exact matches first, then those starting with q, then by name; id breaks ties, so the
    order is total and pages neither skip nor repeat a customer."""
    q = check_text(q, "q", max_len=QUERY_MAX)
    args: list = []
    where = []
    if phone is not None and phone.strip():
        args.append(normalise_phone(phone, default_region, field="phone"))
        where.append(
            f"exists (select 1 from customer_phones p where p.customer_id = c.id and p.e164 = ${len(args)})"
        )
    if q:
        args.append(_like_pattern(q))
        # One ILIKE per column, so the pg_trgm index of each can serve it.
        where.append(f"(c.name ilike ${len(args)} or c.company ilike ${len(args)})")
    condition = " and ".join(where) or "true"
    where_args = list(args)
    order = "c.name, c.id"
    if q:
        args += [q.lower(), _like_pattern(q)[1:]]
        exact, prefix = len(args) - 1, len(args)
        order = (
            f"(lower(c.name) = ${exact} or lower(c.company) = ${exact}) desc, "
            f"(c.name ilike ${prefix} or c.company ilike ${prefix}) desc, c.name, c.id"
        )
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        total = await conn.fetchval(f"select count(*) from customers c where {condition}", *where_args)
        rows = await conn.fetch(
            f"""select c.*,
                       coalesce((select json_agg(json_build_object(
                                     'e164', p.e164, 'label', p.label, 'is_primary', p.is_primary)
                                     order by p.is_primary desc, p.created_at, p.e164)
                                 from customer_phones p where p.customer_id = c.id),
                                '[]'::json) as phones
                from customers c
                where {condition}
                order by {order}
                limit ${len(args) + 1} offset ${len(args) + 2}""",
            *args,
            per_page,
            (page - 1) * per_page,
        )
    return page_of(rows, page, per_page, total)


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
