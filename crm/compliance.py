"""Compliance gates: may this campaign dial this number of this customer now?

`check_dial` answers for one (campaign, lead or customer, number, time) with every
reason that blocks the dial, each with the time it lifts by itself (the calling
window opens, the minimum interval passes, a new day starts) or None when only a
person can lift it (do-not-call, consent, lifetime attempts, a destination the
campaign may not call). The dialer runs it on every dial, callbacks included;
the hopper uses `until` to hold a lead back until its gate lifts.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass, field
from functools import cache

import asyncpg
import phonenumbers
from phonenumbers import timezone as number_zones

from crm.errors import NotFound

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_UNKNOWN_ZONE = "Etc/Unknown"  # phonenumbers' answer for numbers it cannot place
# A number whose answered call was abandoned (disposition DROP: no agent was free) is not
# dialled again for this long, by any campaign and any path (hopper, click, callback).
ABANDON_REDIAL_HOURS = 72


@dataclass(frozen=True)
class Block:
    gate: str  # stable id: do_not_call, outside_calling_window, ...
    message: str
    until: dt.datetime | None = None  # when it lifts by itself; None: a person must act

    def to_json(self) -> dict:
        return {"gate": self.gate, "message": self.message,
                "until": None if self.until is None else self.until.isoformat()}


@dataclass(frozen=True)
class Verdict:
    blocks: tuple[Block, ...] = ()
    time_zones: tuple[str, ...] = field(default=())

    @property
    def allowed(self) -> bool:
        return not self.blocks

    @property
    def not_before(self) -> dt.datetime | None:
        """The earliest time every block has lifted; None when one needs a person."""
        if not self.blocks or any(b.until is None for b in self.blocks):
            return None
        return max(b.until for b in self.blocks)

    def to_json(self) -> dict:
        return {"allowed": self.allowed, "reasons": [b.to_json() for b in self.blocks],
                "time_zones": list(self.time_zones)}


@dataclass(frozen=True)
class DialFacts:
    """What the gates read: the campaign's rules, the customer's flags, the attempts so far."""

    phone: str
    window_start: dt.time
    window_end: dt.time
    max_attempts_per_day: int
    max_attempts_total: int
    min_retry_minutes: int
    requires_consent: bool
    allowed_prefixes: tuple[str, ...]
    consent: bool = False
    customer_dnc: bool = False
    number_dnc: bool = False
    time_zone: str | None = None  # from the customer's record
    attempts_today: int = 0
    attempts_day: dt.date | None = None  # the UTC date attempts_today counts (crm.calls)
    attempts_total: int = 0
    last_attempt_at: dt.datetime | None = None
    last_abandoned_at: dt.datetime | None = None  # the number's latest abandoned (DROP) answer


@cache
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def customer_time_zones(phone: str, record_zone: str | None, default_zone: str) -> tuple[str, ...]:
    """The customer's zone from their record, else the zones their number's area covers
    (a number may span several: the window must hold in all), else the default."""
    if record_zone:
        return (record_zone,)
    try:
        zones = number_zones.time_zones_for_number(phonenumbers.parse(phone))
    except phonenumbers.NumberParseException:
        zones = ()
    known = tuple(z for z in zones if z != _UNKNOWN_ZONE and _valid_zone(z))
    return known or (default_zone,)


def _valid_zone(name: str) -> bool:
    try:
        _zone(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def in_window(local: dt.time, start: dt.time, end: dt.time) -> bool:
    if start == end:
        return True  # a window of the whole day
    if start < end:
        return start <= local < end
    return local >= start or local < end  # a window across midnight


def _next_opening(now: dt.datetime, zone: zoneinfo.ZoneInfo, start: dt.time) -> dt.datetime:
    local_day = now.astimezone(zone).date()
    for days in range(3):
        opening = dt.datetime.combine(local_day + dt.timedelta(days=days), start, tzinfo=zone)
        # A start inside a DST gap (02:30 on a spring-forward day) reads as the first valid instant.
        opening = opening.astimezone(dt.UTC)
        if opening > now:
            return opening
    raise AssertionError("a window opens within two days")


def window_block(facts: DialFacts, zones: tuple[str, ...], now: dt.datetime) -> Block | None:
    """Outside the local calling window in any of the zones: blocked until it is open in all."""
    start, end = facts.window_start, facts.window_end
    moment = now
    for _ in range(4):  # zones with overlapping windows settle in one or two rounds
        closed = [z for z in zones if not in_window(moment.astimezone(_zone(z)).time(), start, end)]
        if not closed:
            break
        moment = max(_next_opening(moment, _zone(z), start) for z in closed)
    else:
        moment = None  # the windows never meet in all zones at once
    if moment == now:
        return None
    local = now.astimezone(_zone(zones[0]))
    return Block(
        "outside_calling_window",
        f"outside the calling window {start:%H:%M}-{end:%H:%M}: it is {local:%H:%M} in {zones[0]}",
        moment,
    )


def destination_block(phone: str, prefixes: tuple[str, ...], default_region: str) -> Block | None:
    """The campaign's allow pattern (a transfer to a number obeys it too: no toll fraud through a seat)."""
    if not _E164.match(phone or ""):
        return Block("invalid_number", f"{phone!r} is not an E.164 number")
    allowed = prefixes or (f"+{phonenumbers.country_code_for_region(default_region)}",)
    if any(phone.startswith(p) for p in allowed):
        return None
    return Block(
        "destination_not_allowed",
        f"{phone} is not among the destinations this campaign may call ({', '.join(allowed)}); "
        "international numbers need the campaign's allowed prefixes",
    )


def abandon_block(last_abandoned_at: dt.datetime | None, now: dt.datetime) -> Block | None:
    if last_abandoned_at is None:
        return None
    until = last_abandoned_at + dt.timedelta(hours=ABANDON_REDIAL_HOURS)
    if now >= until:
        return None
    return Block("recently_abandoned",
                 f"a call to this number was answered at {last_abandoned_at:%Y-%m-%d %H:%M} UTC with no agent free "
                 f"(abandoned); it is not dialled again within {ABANDON_REDIAL_HOURS} hours", until)


def evaluate(facts: DialFacts, now: dt.datetime, *, default_region: str, default_time_zone: str) -> Verdict:
    """Every gate over the facts; pure, so the rules read (and test) without a database."""
    blocks: list[Block] = []
    if facts.number_dnc:
        blocks.append(Block("do_not_call", f"{facts.phone} is on the do-not-call list"))
    elif facts.customer_dnc:
        blocks.append(Block("do_not_call", "the customer is flagged do-not-call"))
    if facts.requires_consent and not facts.consent:
        blocks.append(Block("no_consent", "this campaign calls only customers who gave consent; this one has not"))
    destination = destination_block(facts.phone, facts.allowed_prefixes, default_region)
    if destination is not None:
        blocks.append(destination)
    if facts.attempts_total >= facts.max_attempts_total:
        blocks.append(Block("max_attempts_total",
                            f"{facts.attempts_total} attempts made; the campaign allows {facts.max_attempts_total}"))
    today = now.astimezone(dt.UTC).date()
    if facts.attempts_day == today and facts.attempts_today >= facts.max_attempts_per_day:
        tomorrow = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
        blocks.append(Block("max_attempts_per_day",
                            f"{facts.attempts_today} attempts today; the campaign allows "
                            f"{facts.max_attempts_per_day} a day", tomorrow))
    if facts.last_attempt_at is not None and facts.min_retry_minutes > 0:
        earliest = facts.last_attempt_at + dt.timedelta(minutes=facts.min_retry_minutes)
        if now < earliest:
            blocks.append(Block("min_interval",
                                f"last attempt at {facts.last_attempt_at:%Y-%m-%d %H:%M} UTC; the campaign waits "
                                f"{facts.min_retry_minutes} minutes between attempts", earliest))
    abandoned = abandon_block(facts.last_abandoned_at, now)
    if abandoned is not None:
        blocks.append(abandoned)
    zones = customer_time_zones(facts.phone, facts.time_zone, default_time_zone)
    window = window_block(facts, zones, now)
    if window is not None:
        blocks.append(window)
    return Verdict(tuple(blocks), zones)


def _campaign_facts(campaign) -> dict:
    return {
        "window_start": campaign["calling_window_start"],
        "window_end": campaign["calling_window_end"],
        "max_attempts_per_day": campaign["max_attempts_per_day"],
        "max_attempts_total": campaign["max_attempts_total"],
        "min_retry_minutes": campaign["min_retry_minutes"],
        "requires_consent": campaign["requires_consent"],
        "allowed_prefixes": tuple(campaign["allowed_prefixes"]),
    }


async def _attempts_without_lead(conn: asyncpg.Connection, campaign_id: int, phone: str, now: dt.datetime) -> dict:
    row = await conn.fetchrow(
        """select count(*) filter (where (created_at at time zone 'UTC')::date = $3) as today,
                  count(*) as total, max(created_at) as last
           from calls where campaign_id = $1 and to_number = $2 and direction = 'outbound'""",
        campaign_id, phone, now.astimezone(dt.UTC).date(),
    )
    return {"attempts_today": row["today"], "attempts_day": now.astimezone(dt.UTC).date(),
            "attempts_total": row["total"], "last_attempt_at": row["last"]}


async def check_dial(
    conn: asyncpg.Connection,
    *,
    campaign_id: int,
    now: dt.datetime,
    default_region: str,
    default_time_zone: str,
    lead_id: int | None = None,
    customer_id: int | None = None,
    phone: str | None = None,
) -> Verdict:
    """The gates for dialling `phone` (default: the lead's number) for the campaign at `now`.

    With a lead, its attempts count; without one, the campaign's earlier calls to the number do."""
    campaign = await conn.fetchrow("select * from campaigns where id = $1", campaign_id)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id}", fields=["campaign_id"])
    attempts: dict = {}
    if lead_id is not None:
        lead = await conn.fetchrow("select * from leads where id = $1", lead_id)
        if lead is None:
            raise NotFound(f"no lead {lead_id}", fields=["lead_id"])
        customer_id = lead["customer_id"]
        phone = phone or lead["phone"]
        attempts = {k: lead[k] for k in ("attempts_today", "attempts_day", "attempts_total", "last_attempt_at")}
    if customer_id is None or phone is None:
        raise NotFound("a dial needs a lead, or a customer and a number", fields=["lead_id"])
    customer = await conn.fetchrow(
        "select consent, do_not_call, time_zone from customers where id = $1", customer_id
    )
    if customer is None:
        raise NotFound(f"no customer {customer_id}", fields=["customer_id"])
    if lead_id is None:
        attempts = await _attempts_without_lead(conn, campaign_id, phone, now)
    listed = bool(await conn.fetchval("select 1 from do_not_call where e164 = $1", phone))
    last_abandoned = await conn.fetchval(
        "select max(coalesce(answered_at, created_at)) from calls where to_number = $1 and disposition = 'DROP'",
        phone)
    facts = DialFacts(
        phone=phone,
        consent=customer["consent"],
        customer_dnc=customer["do_not_call"],
        number_dnc=listed,
        time_zone=customer["time_zone"],
        last_abandoned_at=last_abandoned,
        **_campaign_facts(campaign),
        **attempts,
    )
    return evaluate(facts, now, default_region=default_region, default_time_zone=default_time_zone)
