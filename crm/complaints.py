"""Complaints: intake, routing, the state machine with its history, evidence files.

    new -> assigned -> in_progress -> resolved -> confirmed_by_customer
                                          \\-> reopened -> assigned | in_progress

A complaint may also go straight from new to in_progress (whoever starts it owns
it) and be re-assigned while assigned. Every change is a complaint_events row
and an audit_log row.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import re
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

import asyncpg

from crm import audit, interactions
from crm.errors import IllegalTransition, MissingFields, NotFound, UserError
from crm.fields import text_problem
from crm.paging import page_of

STATES = ("new", "assigned", "in_progress", "resolved", "confirmed_by_customer", "reopened")
TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"assigned", "in_progress"}),
    "assigned": frozenset({"assigned", "in_progress"}),
    "in_progress": frozenset({"resolved"}),
    "resolved": frozenset({"confirmed_by_customer", "reopened"}),
    "reopened": frozenset({"assigned", "in_progress"}),
    "confirmed_by_customer": frozenset(),
}
OPEN_STATES = ("new", "assigned", "in_progress", "resolved", "reopened")
CHANNELS = ("phone", "email", "web", "sms", "in_person", "social_media", "letter")
FIELDS = ("complainant", "channel", "content", "department")
TEXT_MAX = {"complainant": 200, "content": 20_000}
PER_PAGE_MAX = 200
PAGE_MAX = 1_000_000

# The content type is sent back as a response header on download, so only a plain
# type/subtype with simple parameters is kept (nothing that could split a header).
_CONTENT_TYPE = re.compile(r"[\w.+-]+/[\w.+-]+(\s*;\s*[\w.+-]+=[\w.+-]+)*", re.ASCII)
_CHUNK_BYTES = 256 * 1024


class NotComplaintOwner(UserError):
    status = 403
    error_id = "not_complaint_owner"


class EvidenceUnavailable(Exception):
    """The database knows an evidence file that the disk cannot give back as stored. Not
    the user's doing (a 500, logged with the path), and never answered with other bytes."""

    error_id = "evidence_unavailable"

    def __init__(self, message: str, *, path: Path, evidence_id: int, sha256: str):
        super().__init__(message)
        self.message = message
        self.path = path
        self.evidence_id = evidence_id
        self.sha256 = sha256


class EvidenceMissing(EvidenceUnavailable):
    error_id = "evidence_missing"


class EvidenceDamaged(EvidenceUnavailable):
    error_id = "evidence_damaged"


def validate_complaint(
    raw, *, departments: list[str], default_channel: str | None = None, prefix: str = "complaint."
) -> dict:
    """Clean values, or MissingFields naming every absent field, then a UserError
    naming every bad one."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{prefix.rstrip('.')} must be an object", fields=[prefix.rstrip(".")])
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise UserError(
            f"unknown complaint fields: {', '.join(prefix + u for u in unknown)}",
            fields=[prefix + u for u in unknown],
        )
    values = {k: raw.get(k) for k in FIELDS}
    if values["channel"] in (None, "") and default_channel:
        values["channel"] = default_channel
    missing = [
        prefix + k
        for k in ("complainant", "channel", "content")
        if not isinstance(values[k], str) or not values[k].strip()
    ]
    if missing:
        raise MissingFields(f"a complaint needs {', '.join(missing)}", fields=missing)
    errors = {}
    for key, max_len in TEXT_MAX.items():
        problem = text_problem(values[key].strip(), max_len)
        if problem:
            errors[key] = problem
    if values["channel"] not in CHANNELS:
        errors["channel"] = f"must be one of {', '.join(CHANNELS)}"
    if values["department"] not in (None, "") and values["department"] not in departments:
        errors["department"] = f"must be one of {', '.join(departments)}"
    if errors:
        raise UserError(
            "; ".join(f"{prefix}{k} {v}" for k, v in errors.items()),
            fields=[prefix + k for k in errors],
            errors={prefix + k: v for k, v in errors.items()},
        )
    return {
        "complainant": values["complainant"].strip(),
        "channel": values["channel"],
        "content": values["content"].strip(),
        "department": values["department"] or None,
    }


async def create_complaint(
    conn: asyncpg.Connection,
    complaint: dict,
    *,
    customer_id: int,
    call_id: uuid.UUID | None,
    created_by: int | None,
    ack_hours: int,
    resolve_hours: int,
    now: dt.datetime,
    note: str = "",
) -> asyncpg.Record:
    """Insert a complaint already checked by validate_complaint, its first event and its
    interaction entry. Due dates run from `now`, the time it was received."""
    async with conn.transaction():
        row = await conn.fetchrow(
            """insert into complaints (customer_id, call_id, received_at, complainant, channel,
                   content, department, ack_due_at, resolve_due_at, created_by, created_at,
                   updated_at)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $3, $3) returning *""",
            customer_id,
            call_id,
            now,
            complaint["complainant"],
            complaint["channel"],
            complaint["content"],
            complaint["department"],
            now + dt.timedelta(hours=ack_hours),
            now + dt.timedelta(hours=resolve_hours),
            created_by,
        )
        await conn.execute(
            """insert into complaint_events (complaint_id, from_state, to_state, user_id, note, at)
               values ($1, null, 'new', $2, $3, $4)""",
            row["id"],
            created_by,
            note,
            now,
        )
        await interactions.add(
            conn,
            customer_id,
            "complaint",
            user_id=created_by,
            call_id=call_id,
            occurred_at=now,
            summary=f"Complaint ({complaint['channel']}): {complaint['content'][:200]}",
            details={"complaint_id": row["id"]},
        )
        return row


async def transition(
    conn: asyncpg.Connection,
    complaint_id: int,
    to_state: str,
    *,
    user_id: int | None,
    departments: list[str],
    note: str = "",
    department: str | None = None,
    owner_id: int | None = None,
    resolution: str | None = None,
    now: dt.datetime | None = None,
) -> asyncpg.Record:
    """Move a complaint to `to_state`, recording who, when and why.

    assigned needs a department and an owner (given here or already set);
    in_progress makes the acting user the owner when there is none;
    resolved needs a resolution text.
    """
    if to_state not in STATES:
        raise UserError(
            f"unknown complaint state {to_state!r}; states: {', '.join(STATES)}", fields=["state"]
        )
    now = now or dt.datetime.now(dt.UTC)
    async with conn.transaction():
        current = await conn.fetchrow(
            "select * from complaints where id = $1 for update", complaint_id
        )
        if current is None:
            raise NotFound(f"no complaint {complaint_id}")
        from_state = current["state"]
        if to_state not in TRANSITIONS[from_state]:
            allowed = sorted(TRANSITIONS[from_state])
            raise IllegalTransition(
                f"a complaint cannot go from {from_state} to {to_state}"
                + (
                    f"; from {from_state} it can go to {', '.join(allowed)}"
                    if allowed
                    else f"; {from_state} is final"
                ),
                from_state=from_state,
                to_state=to_state,
                allowed=allowed,
            )
        if department not in (None, "") and department not in departments:
            raise UserError(
                f"department must be one of {', '.join(departments)}", fields=["department"]
            )
        new_department = department or current["department"]
        new_owner = owner_id if owner_id is not None else current["owner_id"]
        if to_state == "assigned":
            missing = [
                name
                for name, value in (("department", new_department), ("owner_id", new_owner))
                if value is None
            ]
            if missing:
                raise MissingFields(
                    f"assigning a complaint needs {' and '.join(missing)}", fields=missing
                )
        if to_state == "in_progress" and new_owner is None:
            new_owner = user_id
        if new_owner is not None and new_owner != current["owner_id"]:
            active = await conn.fetchval("select active from users where id = $1", new_owner)
            if not active:
                raise UserError(f"owner {new_owner} is not an active user", fields=["owner_id"])
        resolution_text = current["resolution"]
        if to_state == "resolved":
            resolution_text = (resolution or "").strip()
            if not resolution_text:
                raise MissingFields(
                    "resolving a complaint needs a resolution", fields=["resolution"]
                )

        row = await conn.fetchrow(
            """update complaints set
                   state = $2, department = $3, owner_id = $4, resolution = $5,
                   acknowledged_at = coalesce(acknowledged_at, $6),
                   resolved_at = case when $2 = 'resolved' then $6
                                      when $2 = 'reopened' then null else resolved_at end,
                   closed_at = case when $2 = 'confirmed_by_customer' then $6 else closed_at end,
                   updated_at = $6
               where id = $1 returning *""",
            complaint_id,
            to_state,
            new_department,
            new_owner,
            resolution_text,
            now,
        )
        event_note = note or (resolution_text if to_state == "resolved" else "")
        await conn.execute(
            """insert into complaint_events (complaint_id, from_state, to_state, user_id, note, at)
               values ($1, $2, $3, $4, $5, $6)""",
            complaint_id,
            from_state,
            to_state,
            user_id,
            event_note,
            now,
        )
        changes = {"from": from_state, "to": to_state}
        if new_department != current["department"]:
            changes["department"] = new_department
        if new_owner != current["owner_id"]:
            changes["owner_id"] = new_owner
        await audit.record(
            conn, user_id, "complaint.transition", "complaint", complaint_id, changes
        )
        return row


async def get_complaint(conn: asyncpg.Connection, complaint_id: int) -> dict:
    """The complaint with its events (oldest first) and evidence list."""
    row = await conn.fetchrow("select * from complaints where id = $1", complaint_id)
    if row is None:
        raise NotFound(f"no complaint {complaint_id}")
    events = await conn.fetch(
        """select e.*, u.username from complaint_events e left join users u on u.id = e.user_id
           where e.complaint_id = $1 order by e.at, e.id""",
        complaint_id,
    )
    evidence = await conn.fetch(
        "select * from complaint_evidence where complaint_id = $1 order by uploaded_at, id",
        complaint_id,
    )
    return {
        **dict(row.items()),
        "events": [dict(e.items()) for e in events],
        "evidence": [dict(e.items()) for e in evidence],
    }


async def record_complaint(
    conn: asyncpg.Connection,
    raw,
    *,
    created_by: int | None,
    departments: list[str],
    ack_hours: int,
    resolve_hours: int,
    now: dt.datetime,
) -> asyncpg.Record:
    """A complaint that did not come from a call's wrap-up (an email, a letter, a walk-in):
    {customer_id, complainant, channel, content, department?}. Due dates run from now."""
    if not isinstance(raw, dict):
        raise UserError("the complaint must be a JSON object")
    fields = dict(raw)
    customer_id = fields.pop("customer_id", None)
    try:
        complaint = validate_complaint(fields, departments=departments, prefix="")
    except MissingFields as e:
        if customer_id is None:
            raise MissingFields(
                f"a complaint needs {', '.join(['customer_id', *e.fields])}",
                fields=["customer_id", *e.fields],
            ) from None
        raise
    if customer_id is None:
        raise MissingFields("a complaint needs customer_id", fields=["customer_id"])
    if isinstance(customer_id, bool) or not isinstance(customer_id, int):
        raise UserError("customer_id must be a customer id (an integer)", fields=["customer_id"])
    if not 0 < customer_id < 2**63 or not await conn.fetchval(
        "select 1 from customers where id = $1", customer_id
    ):
        raise NotFound(f"no customer {customer_id}", fields=["customer_id"])
    async with conn.transaction():
        row = await create_complaint(
            conn,
            complaint,
            customer_id=customer_id,
            call_id=None,
            created_by=created_by,
            ack_hours=ack_hours,
            resolve_hours=resolve_hours,
            now=now,
        )
        await audit.record(
            conn,
            created_by,
            "complaint.create",
            "complaint",
            row["id"],
            {"customer_id": customer_id, "channel": complaint["channel"]},
        )
        return row


async def check_visible(
    conn: asyncpg.Connection, complaint_id: int, *, user_id: int, sees_all: bool
) -> None:
    """NotFound, or NotComplaintOwner unless the user sees every complaint or owns or
    recorded this one (the rule for agents)."""
    row = await conn.fetchrow(
        "select owner_id, created_by from complaints where id = $1", complaint_id
    )
    if row is None:
        raise NotFound(f"no complaint {complaint_id}")
    if not sees_all and user_id not in (row["owner_id"], row["created_by"]):
        raise NotComplaintOwner(
            f"complaint {complaint_id} is neither yours nor recorded by you; ask a supervisor"
        )


async def list_complaints(
    conn: asyncpg.Connection,
    *,
    user_id: int,
    sees_all: bool,
    departments: list[str],
    now: dt.datetime,
    state: str | None = None,
    department: str | None = None,
    owner_id: int | None = None,
    overdue: bool | None = None,
    page: int = 1,
    per_page: int = 50,
) -> dict:
    """One page of complaints, open ones first, then the most urgent. Each row names the
    deadlines it has missed at `now` (missed_deadlines: ack_due_at when still not
    acknowledged past it, resolve_due_at when still not resolved past it); overdue=True
    keeps the rows that missed one, overdue=False the others. Without sees_all, only the
    complaints the user owns or recorded."""
    if state is not None and state not in STATES:
        raise UserError(f"state must be one of {', '.join(STATES)}", fields=["state"])
    if department is not None and department not in departments:
        raise UserError(
            f"department must be one of {', '.join(departments)}", fields=["department"]
        )
    if not 1 <= page <= PAGE_MAX:
        raise UserError(f"page must be between 1 and {PAGE_MAX}", fields=["page"])
    if not 1 <= per_page <= PER_PAGE_MAX:
        raise UserError(f"per_page must be between 1 and {PER_PAGE_MAX}", fields=["per_page"])
    args: list = [now]
    where = []

    def arg(value) -> str:
        args.append(value)
        return f"${len(args)}"

    if not sees_all:
        p = arg(user_id)
        where.append(f"(c.owner_id = {p} or c.created_by = {p})")
    if state is not None:
        where.append(f"c.state = {arg(state)}")
    if department is not None:
        where.append(f"c.department = {arg(department)}")
    if owner_id is not None:
        where.append(f"c.owner_id = {arg(owner_id)}")
    if overdue is not None:
        where.append(("" if overdue else "not ") + "(cardinality(m.missed) > 0)")
    condition = " and ".join(where) or "true"
    source = """complaints c
        cross join lateral (select array_remove(array[
            case when c.acknowledged_at is null and c.ack_due_at < $1 then 'ack_due_at' end,
            case when c.resolved_at is null and c.resolve_due_at < $1 then 'resolve_due_at' end
        ], null) as missed) m"""
    count_args = list(args)
    window = f"limit {arg(per_page)} offset {arg((page - 1) * per_page)}"
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        total = await conn.fetchval(
            f"select count(*) from {source} where {condition}", *count_args
        )
        rows = await conn.fetch(
            f"""select c.*, m.missed as missed_deadlines, cu.name as customer_name,
                       o.username as owner_username
                from {source}
                join customers cu on cu.id = c.customer_id
                left join users o on o.id = c.owner_id
                where {condition}
                order by c.closed_at is not null, c.resolve_due_at, c.id
                {window}""",
            *args,
        )
    return page_of(rows, page, per_page, total)


def _file_sha256(f: BinaryIO) -> tuple[str, int]:
    """sha256 and length of what f holds from its current position."""
    h = hashlib.sha256()
    size = 0
    while chunk := f.read(_CHUNK_BYTES):
        h.update(chunk)
        size += len(chunk)
    return h.hexdigest(), size


def _holds(path: Path, sha256: str, size: int) -> bool:
    try:
        with open(path, "rb") as f:
            return _file_sha256(f) == (sha256, size)
    except FileNotFoundError:
        return False


def _fsync_dir(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write_atomically(folder: Path, name: str, data: bytes) -> None:
    """Write folder/name so that it either does not exist or holds all of data, even
    after a crash: a temp file in the same folder, fsync, rename, fsync the folder."""
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        _fsync_dir(folder.parent)  # the new folder's own entry survives a crash too
    target = folder / name
    # Content-addressed: the same bytes may already be there. Checked by hash, not size,
    # so an upload of the right bytes repairs a damaged copy instead of trusting it.
    if _holds(target, name, len(data)):
        return
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(folder)


def evidence_path(evidence_dir: Path, sha256: str) -> Path:
    return evidence_dir / sha256


def _clean_file_name(file_name) -> str:
    name = Path(str(file_name or "").replace("\\", "/")).name.strip()
    if not name:
        raise MissingFields("an evidence file needs a file name", fields=["file_name"])
    problem = text_problem(name, 255)
    if problem is None and any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        problem = "must not contain control characters"
    if problem:
        raise UserError(f"file name {problem}", fields=["file_name"])
    return name


def _clean_content_type(content_type) -> str:
    if content_type is None or not str(content_type).strip():
        return "application/octet-stream"
    value = str(content_type).strip()
    if len(value) > 255 or not _CONTENT_TYPE.fullmatch(value):
        raise UserError(
            f"content type {value[:80]!r} is not a media type like application/pdf",
            fields=["content_type"],
        )
    return value


async def add_evidence(
    conn: asyncpg.Connection,
    complaint_id: int,
    file_name: str,
    content_type: str | None,
    data: bytes,
    evidence_dir: Path,
    uploaded_by: int | None,
) -> asyncpg.Record:
    """Store a file under evidence_dir/<sha256> and record it on the complaint.

    The order is chosen so that a row never points at a missing or partial file: the
    file is written completely (temp file, fsync, rename) BEFORE the row is inserted. The
    price is the other failure: if the insert or its transaction's commit fails, or the
    process dies in between, an unreferenced file stays behind. That is harmless (it is
    named by its own sha256, no row leads to it, and a later upload of the same bytes
    reuses it) and is what we accept; a sweep may delete files no row refers to.
    """
    name = _clean_file_name(file_name)
    media_type = _clean_content_type(content_type)
    if not data:
        raise UserError("the evidence file is empty", fields=["file"])
    if not await conn.fetchval("select 1 from complaints where id = $1", complaint_id):
        raise NotFound(f"no complaint {complaint_id}")
    digest = hashlib.sha256(data).hexdigest()
    await asyncio.to_thread(_write_atomically, Path(evidence_dir), digest, data)
    async with conn.transaction():
        row = await conn.fetchrow(
            """insert into complaint_evidence (complaint_id, file_name, content_type, size_bytes,
                   sha256, uploaded_by)
               values ($1, $2, $3, $4, $5, $6) returning *""",
            complaint_id,
            name,
            media_type,
            len(data),
            digest,
            uploaded_by,
        )
        await audit.record(
            conn,
            uploaded_by,
            "complaint.evidence",
            "complaint",
            complaint_id,
            {"evidence_id": row["id"], "file_name": name, "sha256": digest},
        )
        return row


async def get_evidence(
    conn: asyncpg.Connection, complaint_id: int, evidence_id: int
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "select * from complaint_evidence where id = $1 and complaint_id = $2",
        evidence_id,
        complaint_id,
    )
    if row is None:
        raise NotFound(f"complaint {complaint_id} has no evidence file {evidence_id}")
    return row


def _open_verified(evidence_dir: Path, evidence: asyncpg.Record) -> BinaryIO:
    path = evidence_path(evidence_dir, evidence["sha256"])
    where = {"path": path, "evidence_id": evidence["id"], "sha256": evidence["sha256"]}
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise EvidenceMissing(f"evidence file {evidence['id']} is missing", **where) from None
    try:
        if _file_sha256(f) != (evidence["sha256"], evidence["size_bytes"]):
            raise EvidenceDamaged(
                f"evidence file {evidence['id']} does not match its sha256", **where
            )
        f.seek(0)
    except BaseException:
        f.close()
        raise
    return f


async def open_evidence(evidence_dir: Path, evidence: asyncpg.Record) -> BinaryIO:
    """The evidence file, open at its start, after checking it holds exactly the bytes that
    were uploaded; EvidenceMissing or EvidenceDamaged otherwise. The caller closes it.
    Holding it open means a later rename over the path cannot change what is read."""
    return await asyncio.to_thread(_open_verified, Path(evidence_dir), evidence)


async def read_verified(f: BinaryIO, evidence: asyncpg.Record) -> AsyncIterator[bytes]:
    """The chunks of an opened evidence file, hashed again as they are read.

    The file was checked when it was opened, but it could still be changed in place
    while it is being sent. So at most size_bytes are read and the last chunk is held
    back until the whole file has matched: a client that receives every byte it was
    promised received the right ones; otherwise EvidenceDamaged is raised mid-stream and
    the caller must cut the connection.
    """
    h = hashlib.sha256()
    left = evidence["size_bytes"]
    held = b""
    while left > 0:
        chunk = await asyncio.to_thread(f.read, min(_CHUNK_BYTES, left))
        if not chunk:
            break
        h.update(chunk)
        left -= len(chunk)
        if held:
            yield held
        held = chunk
    grew = await asyncio.to_thread(f.read, 1)
    if left or grew or h.hexdigest() != evidence["sha256"]:
        raise EvidenceDamaged(
            f"evidence file {evidence['id']} changed while it was being read",
            path=Path(getattr(f, "name", "?")),
            evidence_id=evidence["id"],
            sha256=evidence["sha256"],
        )
    if held:
        yield held


async def record_download(
    conn: asyncpg.Connection, evidence: asyncpg.Record, user_id: int | None
) -> None:
    """Who fetched which evidence file, and when (one audit row per download)."""
    await audit.record(
        conn,
        user_id,
        "complaint.evidence_download",
        "complaint",
        evidence["complaint_id"],
        {
            "evidence_id": evidence["id"],
            "file_name": evidence["file_name"],
            "sha256": evidence["sha256"],
        },
    )


async def open_complaints(
    conn: asyncpg.Connection, *, department: str | None = None
) -> list[asyncpg.Record]:
    """Complaints not yet confirmed by the customer, the most urgent first."""
    return await conn.fetch(
        """select * from complaints
           where state <> 'confirmed_by_customer' and ($1::text is null or department = $1)
           order by resolve_due_at, id""",
        department,
    )
