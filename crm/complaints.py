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
import tempfile
import uuid
from pathlib import Path

import asyncpg

from crm import audit, interactions
from crm.errors import IllegalTransition, MissingFields, NotFound, UserError

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


def _write_atomically(folder: Path, name: str, data: bytes) -> None:
    """Write folder/name so that it either does not exist or holds all of data, even
    after a crash: a temp file in the same folder, fsync, rename, fsync the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if target.exists() and target.stat().st_size == len(data):
        return  # content-addressed: the same bytes are already there
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
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def evidence_path(evidence_dir: Path, sha256: str) -> Path:
    return evidence_dir / sha256


async def add_evidence(
    conn: asyncpg.Connection,
    complaint_id: int,
    file_name: str,
    content_type: str,
    data: bytes,
    evidence_dir: Path,
    uploaded_by: int | None,
) -> asyncpg.Record:
    """Store a file under evidence_dir/<sha256> and record it on the complaint.

    The file is written before the row, so a row never points at a missing
    file; a crash in between leaves only an unreferenced file.
    """
    name = Path(str(file_name or "").replace("\\", "/")).name.strip()
    if not name:
        raise MissingFields("an evidence file needs a file name", fields=["file_name"])
    if len(name) > 255:
        raise UserError("file name is longer than 255 characters", fields=["file_name"])
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
            content_type or "application/octet-stream",
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
