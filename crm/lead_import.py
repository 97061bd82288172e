"""Lead import: a CSV or XLSX file into a campaign's leads, in one transaction.

Rows are checked in Python (phone numbers to E.164 via crm.phones) on a
worker thread, a chunk at a time; each chunk's accepted rows are copied into a
temporary staging table and moved into customers, customer_phones and leads
with a few set-based statements while the worker checks the next chunk. So a
100,000-row file costs little more than a plain COPY of its rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import asyncpg
import phonenumbers

from crm import audit
from crm.errors import NotFound, UserError
from crm.lead_files import (
    FIELDS,
    LeadFileError,
    LeadTable,
    column_field,
    phone_label,
    read_lead_file,
)
from crm.phones import to_e164

# progress(rows_done, rows_total): called after each chunk is written; the total is an estimate
Progress = Callable[[int, int], None]
# Rows checked (on the worker) and written (on the connection) at a time; the two overlap.
CHUNK_ROWS = 10_000

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# One cell may hold several numbers: "13800138000 / 010-88888888"
_NUMBER_SEPARATORS = re.compile(r"[/;,、，；]")
_TAG_SEPARATORS = re.compile(r"[,，;；、|]")
_INT32 = 2**31 - 1

_STAGING_COLUMNS = ("row_no", "customer_id", "new_customer", "phone", "lead_label", "extra_phones",
                    "extra_labels", "name", "company", "email", "source", "notes", "region", "tags",
                    "priority")
_STAGING = """
create temp table if not exists lead_import_rows (
    row_no integer, customer_id bigint, new_customer boolean, phone text, lead_label text,
    extra_phones text[], extra_labels text[], name text, company text, email text, source text,
    notes text, region text, tags text[], priority integer
) on commit drop"""


@dataclass(frozen=True)
class Rejection:
    row: int
    reason: str


@dataclass
class ImportSummary:
    imported: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    import_id: int | None = None

    def to_json(self) -> dict:
        return {
            "imported": self.imported,
            "duplicates": self.duplicates,
            "rejected": [{"row": r.row, "reason": r.reason} for r in self.rejected],
        }


async def import_leads(
    conn: asyncpg.Connection,
    data: bytes,
    *,
    file_name: str,
    campaign_id: int,
    region: str,
    allowed_channels: Sequence[str],
    default_source: str | None = None,
    encoding: str | None = None,
    required_fields: Sequence[str] = ("phone",),
    imported_by: int | None = None,
    progress: Progress | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> ImportSummary:
    """Import a lead file (CSV or XLSX bytes) into a campaign; all rows or none are written.

    Rejected rows carry their 1-based data row number: row 1 is the first row
    after the header (blank rows are skipped but counted). A number already
    in the campaign, or earlier in the file, counts as a duplicate. A number
    that belongs to a customer already (or to an earlier row's customer) gets
    its lead for that customer, whose record is left as it is. Raises
    UserError (LeadFileError, NotFound) when the whole file cannot be
    imported; nothing is written then.
    """
    region = region.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise UserError(f"unknown region {region!r}; use an ISO 3166 code like CN, TW, US",
                        fields=["region"])
    channels = {c.strip().casefold(): c for c in allowed_channels}
    if default_source:
        if default_source.strip().casefold() not in channels:
            raise UserError(f"unknown source channel {default_source!r} (allowed: "
                            f"{', '.join(allowed_channels)})", fields=["source"])
        default_source = channels[default_source.strip().casefold()]
    # Decoding a large file takes a while: not on the service's event loop.
    table = await asyncio.to_thread(read_lead_file, data, file_name, encoding)
    check = _row_checker(table, region, channels, allowed_channels, default_source, required_fields)
    rows = _CheckedRows(table, check, chunk_rows)
    sha = hashlib.sha256(data).hexdigest()
    tries = 3
    while True:
        try:
            return await _write(conn, rows, campaign_id, file_name, sha, imported_by,
                                progress or (lambda done, total: None))
        except asyncpg.DeadlockDetectedError:
            # Two imports into different campaigns that share numbers can each wait for a
            # number the other added; the one PostgreSQL aborts runs again and finds them taken.
            tries -= 1
            if not tries:
                raise


class _CheckedRows:
    """The file's rows, checked a chunk at a time on a worker thread.

    chunks() checks the next chunk while its caller writes the current one.
    Checked chunks are kept, so a retried transaction replays them.
    """

    def __init__(self, table: LeadTable, check, chunk_rows: int):
        self._rows = table.rows
        self._check = check
        self._chunk_rows = chunk_rows
        self._checked: list[tuple[list, list[Rejection], int]] = []
        self._exhausted = False
        self.total = table.size_hint

    def _next_chunk(self):
        """(candidates, rejections, rows read), or None at the end of the file."""
        check = self._check
        candidates, rejected, n = [], [], 0
        for row_no, cells in itertools.islice(self._rows, self._chunk_rows):
            n += 1
            result = check(cells)
            if type(result) is str:
                rejected.append(Rejection(row_no, result))
            else:
                candidates.append((row_no, *result))
        return (candidates, rejected, n) if n else None

    async def chunks(self) -> AsyncIterator[tuple[list, list[Rejection], int]]:
        index = 0
        ahead = None
        try:
            while True:
                if index < len(self._checked):
                    yield self._checked[index]
                    index += 1
                    continue
                if self._exhausted:
                    return
                chunk = await (ahead or asyncio.to_thread(self._next_chunk))
                ahead = None
                if chunk is None:
                    self._exhausted = True
                    return
                self._checked.append(chunk)
                ahead = asyncio.ensure_future(asyncio.to_thread(self._next_chunk))
        finally:
            if ahead is not None:
                # A worker thread cannot be stopped: wait for it, and keep its chunk for a retry.
                chunk = await ahead
                if chunk is None:
                    self._exhausted = True
                else:
                    self._checked.append(chunk)


@dataclass
class _FileState:
    """What earlier chunks of this file decided, for the later ones."""

    seen: set[str] = field(default_factory=set)  # lead numbers accepted so far
    owners: dict[str, int] = field(default_factory=dict)  # number -> customer, this file's rows


async def _write(conn, rows: _CheckedRows, campaign_id, file_name, sha, imported_by, progress):
    async with conn.transaction():
        # Imports into one campaign take turns, so their duplicate counts are exact.
        locked = "select id from campaigns where id = $1 for update"
        if await conn.fetchval(locked, campaign_id) is None:
            raise NotFound(f"no campaign {campaign_id}")
        summary = ImportSummary()
        summary.import_id = await conn.fetchval(
            """insert into lead_imports
               (campaign_id, file_name, file_sha256, imported, duplicates, rejected, imported_by)
               values ($1, $2, $3, 0, 0, 0, $4) returning id""",
            campaign_id, file_name, sha, imported_by,
        )
        # room to sort a chunk in memory instead of on disk
        await conn.execute("set local work_mem = '64MB'")
        await conn.execute(_STAGING)
        state = _FileState()
        done = 0
        async with contextlib.aclosing(rows.chunks()) as chunks:
            async for candidates, rejected, n in chunks:
                summary.rejected.extend(rejected)
                await _store(conn, candidates, campaign_id, state, summary)
                done += n
                progress(done, max(done, rows.total))
        summary.rejected.sort(key=lambda r: r.row)
        await _record(conn, summary, file_name, campaign_id, imported_by)
    return summary


def _row_checker(table: LeadTable, region: str, channels: dict[str, str], allowed: Sequence[str],
                 default_source: str | None, required_fields: Sequence[str]):
    """Build check(cells) -> reason (str) or the row's values (tuple), for this file's columns."""
    columns: dict[str, list[int]] = {f: [] for f in FIELDS}
    for i, cell in enumerate(table.header):
        f = column_field(cell)
        if f:
            columns[f].append(i)
    unknown = [f for f in required_fields if f not in FIELDS]
    if unknown:
        raise UserError(f"lead_import.required_fields names unknown fields: {', '.join(unknown)}")
    missing = [f for f in required_fields if not columns[f]]
    if missing:
        raise LeadFileError(f"the file has no {', '.join(missing)} column, which lead_import."
                            f"required_fields requires; the header was read as {table.header!r}")
    required = [(f, columns[f]) for f in required_fields if f != "phone"]
    phone_cols = [(i, phone_label(table.header[i])) for i in columns["phone"]]
    width = len(table.header)
    padding = [""] * width
    strict = table.extra_cells_are_errors
    allowed_text = ", ".join(allowed)

    def first(cells, indexes):
        for i in indexes:
            value = cells[i].strip()
            if value:
                return value
        return ""

    name_at, company_at, notes_at = columns["name"], columns["company"], columns["notes"]
    source_at, email_at, region_at = columns["source"], columns["email"], columns["region"]
    tags_at, priority_at = columns["tags"], columns["priority"]

    def check(cells: list[str]):
        n = len(cells)
        if n > width:
            if strict and any(cells[width:]):
                return f"wrong number of fields: {n}, the header has {width}"
        elif n < width:
            cells = cells + padding[n:]
        row_region = region
        if region_at:
            code = first(cells, region_at).upper()
            if code in phonenumbers.SUPPORTED_REGIONS:
                row_region = code
        numbers, labels, invalid = [], [], None
        for i, label in phone_cols:
            value = cells[i].strip()
            if not value:
                continue
            for text in _NUMBER_SEPARATORS.split(value):
                e164 = to_e164(text, row_region)
                if e164 is None:
                    if invalid is None and text.strip():
                        invalid = text.strip()
                elif e164 not in numbers:
                    numbers.append(e164)
                    labels.append(label)
        if not numbers:
            if invalid is not None:
                return f"invalid phone number '{invalid}' for region {row_region}"
            return "no phone number"
        for f, indexes in required:
            if not first(cells, indexes):
                return f"missing required field '{f}'"
        source = default_source
        if source_at:
            text = first(cells, source_at)
            if text:
                source = channels.get(text.casefold())
                if source is None:
                    return f"unknown source channel '{text}' (allowed: {allowed_text})"
        email = first(cells, email_at) if email_at else ""
        if email and not _EMAIL.fullmatch(email):
            return f"invalid email '{email}'"
        priority = 0
        if priority_at:
            text = first(cells, priority_at)
            if text:
                try:
                    number = float(text)
                except ValueError:
                    number = 0.5
                if not number.is_integer() or abs(number) > _INT32:
                    return f"invalid priority '{text}' (a whole number)"
                priority = int(number)
        tags = []
        if tags_at:
            for tag in _TAG_SEPARATORS.split(first(cells, tags_at)):
                tag = tag.strip()
                if tag and tag not in tags:
                    tags.append(tag)
        return (
            numbers[0], labels[0], numbers[1:], labels[1:],
            first(cells, name_at) if name_at else "",
            first(cells, company_at) if company_at else "",
            email or None, source,
            first(cells, notes_at) if notes_at else "",
            row_region, tags, priority,
        )

    return check


async def _store(conn, candidates, campaign_id, state: _FileState, summary: ImportSummary):
    """Classify a chunk's checked rows against the database and write the accepted ones."""
    known = {
        r["e164"]: r
        for r in await conn.fetch(
            """select n.e164, p.customer_id, d.e164 is not null as dnc,
                      l.id is not null as in_campaign
               from unnest($1::text[]) as n(e164)
               left join customer_phones p on p.e164 = n.e164
               left join do_not_call d on d.e164 = n.e164
               left join leads l on l.campaign_id = $2 and l.phone = n.e164
               where p.e164 is not null or d.e164 is not null or l.id is not null""",
            [c[1] for c in candidates], campaign_id,
        )
    }
    accepted, named = [], []
    new_customers = 0
    for c in candidates:
        phone = c[1]
        k = known.get(phone)
        if k is not None and k["dnc"]:
            summary.rejected.append(Rejection(c[0], f"number {phone} is on the do-not-call list"))
        elif phone in state.seen or (k is not None and k["in_campaign"]):
            summary.duplicates += 1
        else:
            state.seen.add(phone)
            owner = k["customer_id"] if k is not None else state.owners.get(phone)
            is_new = owner is None
            if is_new:
                new_customers += 1
                owner = -new_customers  # a placeholder until the sequence gives the id
            for number in (phone, *c[3]):  # the first row naming a number owns it
                if number not in state.owners:
                    state.owners[number] = owner
                    named.append(number)
            accepted.append((c, owner, is_new))
    if not accepted:
        return
    ids = await conn.fetchval(
        "select array_agg(nextval('customers_id_seq')) from generate_series(1, $1)", new_customers
    ) if new_customers else []

    def real(customer_id: int) -> int:
        return ids[-customer_id - 1] if customer_id < 0 else customer_id

    for number in named:
        state.owners[number] = real(state.owners[number])
    records = [(c[0], real(owner), is_new, *c[1:]) for c, owner, is_new in accepted]

    await conn.copy_records_to_table("lead_import_rows", records=records, columns=_STAGING_COLUMNS)
    await conn.execute(
        """insert into customers (id, name, company, email, source_channel, region, tags, notes)
           select customer_id, name, company, email, source, region, tags, notes
           from lead_import_rows where new_customer"""
    )
    status = await conn.execute(
        """insert into customer_phones (e164, customer_id, label, is_primary)
           select phone, customer_id, lead_label, true from lead_import_rows where new_customer
           order by phone  -- concurrent imports then wait for each other instead of deadlocking
           on conflict (e164) do nothing"""
    )
    if _count(status) < new_customers:
        await _adopt_numbers_taken_meanwhile(conn)
    await conn.execute(
        """insert into customer_phones (e164, customer_id, label)
           select x.e164, s.customer_id, x.label
           from lead_import_rows s,
                unnest(s.extra_phones, s.extra_labels) as x(e164, label)
           order by x.e164, s.row_no
           on conflict (e164) do nothing"""
    )
    status = await conn.execute(
        """insert into leads (campaign_id, customer_id, phone, priority, source_channel, import_id)
           select $1, customer_id, phone, priority, source, $2 from lead_import_rows order by row_no
           on conflict (campaign_id, phone) do nothing""",
        campaign_id, summary.import_id,
    )
    # A lead added to the campaign by someone else meanwhile makes ours a duplicate.
    inserted = _count(status)
    summary.imported += inserted
    summary.duplicates += len(accepted) - inserted
    await conn.execute("truncate lead_import_rows")


async def _adopt_numbers_taken_meanwhile(conn) -> None:
    """Another transaction gave some of our new numbers to its own new customers first: use those
    customers, and drop the ones we made for nothing."""
    orphans = await conn.fetch(
        """update lead_import_rows s set customer_id = p.customer_id, new_customer = false
           from customer_phones p, lead_import_rows old
           where p.e164 = s.phone and p.customer_id <> s.customer_id and old.row_no = s.row_no
           returning old.customer_id"""
    )
    await conn.execute(
        """delete from customers c where c.id = any($1::bigint[])
           and not exists (select from lead_import_rows s where s.customer_id = c.id)""",
        [r[0] for r in orphans],
    )


async def _record(conn, summary: ImportSummary, file_name: str, campaign_id: int,
                  imported_by: int | None) -> None:
    """Final counts on the lead_imports row, and the audit entry."""
    counts = (summary.imported, summary.duplicates, len(summary.rejected))
    await conn.execute(
        "update lead_imports set imported = $2, duplicates = $3, rejected = $4 where id = $1",
        summary.import_id, *counts,
    )
    details = {"import_id": summary.import_id, "file_name": file_name, "imported": counts[0],
               "duplicates": counts[1], "rejected": counts[2]}
    await audit.record(conn, imported_by, "campaign.import_leads", "campaign", campaign_id, details)


def _count(status: str) -> int:
    """Rows affected, from a command tag like 'INSERT 0 42'."""
    return int(status.rsplit(" ", 1)[1])


__all__ = ["ImportSummary", "LeadFileError", "Rejection", "import_leads"]
