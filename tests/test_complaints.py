"""Complaints: the state machine with its history, due dates, and evidence files."""

from __future__ import annotations

import datetime as dt
import hashlib

import factories as make
import pytest

from crm import complaints
from crm.errors import UserError

DEPARTMENTS = make.RULES["departments"]


def at(minutes: int) -> dt.datetime:
    return dt.datetime(2030, 5, 1, 9, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=minutes)


@pytest.fixture
async def complaint(conn):
    customer = await make.customer(conn)
    agent = await make.user(conn, "agent")
    clean = complaints.validate_complaint(
        {"complainant": "Wang Fang", "channel": "email", "content": "Charged twice"},
        departments=DEPARTMENTS,
    )
    row = await complaints.create_complaint(
        conn,
        clean,
        customer_id=customer,
        call_id=None,
        created_by=agent,
        ack_hours=24,
        resolve_hours=72,
        now=at(0),
    )
    return row["id"]


async def move(conn, complaint_id, to_state, user_id, minutes, **kw):
    return await complaints.transition(
        conn,
        complaint_id,
        to_state,
        user_id=user_id,
        departments=DEPARTMENTS,
        now=at(minutes),
        **kw,
    )


async def events(conn, complaint_id):
    return [
        (e["from_state"], e["to_state"], e["user_id"], e["at"], e["note"])
        for e in await conn.fetch(
            "select * from complaint_events where complaint_id = $1 order by id", complaint_id
        )
    ]


async def test_new_complaint_has_ack_and_resolve_due_dates_from_the_settings(conn, complaint):
    row = await conn.fetchrow("select * from complaints where id = $1", complaint)
    assert row["state"] == "new"
    assert row["ack_due_at"] == at(24 * 60) and row["resolve_due_at"] == at(72 * 60)
    assert row["acknowledged_at"] is None


async def test_full_life_records_every_change_with_who_and_when(conn, complaint):
    sup = await make.user(conn, "supervisor")
    owner = await make.user(conn, "agent")
    await move(conn, complaint, "assigned", sup, 10, department="billing", owner_id=owner)
    await move(conn, complaint, "in_progress", owner, 20)
    await move(conn, complaint, "resolved", owner, 30, resolution="refunded the second charge")
    row = await move(
        conn, complaint, "confirmed_by_customer", sup, 40, note="customer confirmed by phone"
    )

    assert row["state"] == "confirmed_by_customer"
    assert (row["department"], row["owner_id"]) == ("billing", owner)
    assert (
        row["acknowledged_at"] == at(10)
        and row["resolved_at"] == at(30)
        and row["closed_at"] == at(40)
    )
    assert row["resolution"] == "refunded the second charge"
    assert [(f, t, u, w) for f, t, u, w, _ in await events(conn, complaint)][1:] == [
        ("new", "assigned", sup, at(10)),
        ("assigned", "in_progress", owner, at(20)),
        ("in_progress", "resolved", owner, at(30)),
        ("resolved", "confirmed_by_customer", sup, at(40)),
    ]
    audit = await conn.fetch("select * from audit_log where entity = 'complaint' order by id")
    assert [a["details"]["to"] for a in audit] == [
        "assigned",
        "in_progress",
        "resolved",
        "confirmed_by_customer",
    ]
    assert audit[0]["details"] == {
        "from": "new",
        "to": "assigned",
        "department": "billing",
        "owner_id": owner,
    }


async def test_reopened_complaint_goes_back_to_work_and_is_resolved_again(conn, complaint):
    sup = await make.user(conn, "supervisor")
    await move(conn, complaint, "in_progress", sup, 5)
    await move(conn, complaint, "resolved", sup, 10, resolution="sent a new parcel")
    row = await move(conn, complaint, "reopened", sup, 20, note="parcel broken again")
    assert row["resolved_at"] is None and row["acknowledged_at"] == at(5)
    await move(conn, complaint, "assigned", sup, 25, department="logistics")
    row = await move(conn, complaint, "in_progress", sup, 30)
    assert row["owner_id"] == sup  # whoever started it on new kept it
    assert [t for _, t, *_ in await events(conn, complaint)] == [
        "new",
        "in_progress",
        "resolved",
        "reopened",
        "assigned",
        "in_progress",
    ]


async def test_starting_work_on_a_new_complaint_makes_the_user_its_owner(conn, complaint):
    sup = await make.user(conn, "supervisor")
    row = await move(conn, complaint, "in_progress", sup, 1)
    assert row["owner_id"] == sup and row["acknowledged_at"] == at(1)


@pytest.mark.parametrize(
    "path, illegal",
    [
        ([], "resolved"),
        ([], "confirmed_by_customer"),
        ([], "reopened"),
        (["in_progress"], "assigned"),
        (["in_progress", "resolved"], "in_progress"),
        (["in_progress", "resolved", "confirmed_by_customer"], "reopened"),
    ],
)
async def test_illegal_change_is_409_naming_from_and_to_and_records_nothing(
    conn, complaint, path, illegal
):
    sup = await make.user(conn, "supervisor")
    for i, state in enumerate(path):
        await move(conn, complaint, state, sup, i + 1, resolution="done")
    before = await events(conn, complaint)
    with pytest.raises(UserError) as info:
        await move(conn, complaint, illegal, sup, 99, resolution="done")
    body = info.value.to_json()
    assert info.value.status == 409 and body["error"] == "illegal_state_change"
    current = path[-1] if path else "new"
    assert body["from_state"] == current and body["to_state"] == illegal
    assert f"from {current} to {illegal}" in info.value.message
    assert await events(conn, complaint) == before


async def test_assigning_needs_a_department_and_an_owner(conn, complaint):
    sup = await make.user(conn, "supervisor")
    with pytest.raises(UserError) as info:
        await move(conn, complaint, "assigned", sup, 1)
    assert info.value.status == 422 and info.value.fields == ["department", "owner_id"]
    with pytest.raises(UserError) as info:
        await move(conn, complaint, "assigned", sup, 1, department="marketing", owner_id=sup)
    assert info.value.fields == ["department"]
    with pytest.raises(UserError) as info:
        await move(conn, complaint, "assigned", sup, 1, department="billing", owner_id=12345)
    assert info.value.fields == ["owner_id"]
    assert await conn.fetchval("select state from complaints where id = $1", complaint) == "new"


async def test_resolving_needs_a_resolution(conn, complaint):
    sup = await make.user(conn, "supervisor")
    await move(conn, complaint, "in_progress", sup, 1)
    with pytest.raises(UserError) as info:
        await move(conn, complaint, "resolved", sup, 2)
    assert info.value.fields == ["resolution"]


async def test_unknown_state_or_complaint(conn, complaint):
    with pytest.raises(UserError) as info:
        await move(conn, complaint, "closed", None, 1)
    assert info.value.status == 422
    with pytest.raises(UserError) as info:
        await move(conn, 999, "assigned", None, 1)
    assert info.value.status == 404


async def test_evidence_file_is_stored_under_its_sha256_with_a_row(conn, complaint, tmp_path):
    sup = await make.user(conn, "supervisor")
    data = b"%PDF-1.4 receipt"
    folder = tmp_path / "evidence"
    row = await complaints.add_evidence(
        conn, complaint, "C:\\scans\\receipt.pdf", "application/pdf", data, folder, sup
    )
    digest = hashlib.sha256(data).hexdigest()
    assert (folder / digest).read_bytes() == data
    assert (row["file_name"], row["sha256"], row["size_bytes"]) == (
        "receipt.pdf",
        digest,
        len(data),
    )
    # the same bytes again: one file, two rows
    await complaints.add_evidence(conn, complaint, "copy.pdf", "application/pdf", data, folder, sup)
    assert [p.name for p in folder.iterdir()] == [digest]  # no temp files left behind
    full = await complaints.get_complaint(conn, complaint)
    assert [e["file_name"] for e in full["evidence"]] == ["receipt.pdf", "copy.pdf"]


async def test_empty_or_nameless_evidence_is_refused_and_unknown_complaint_is_404(
    conn, complaint, tmp_path
):
    with pytest.raises(UserError) as info:
        await complaints.add_evidence(conn, complaint, "a.txt", "text/plain", b"", tmp_path, None)
    assert info.value.status == 422
    with pytest.raises(UserError) as info:
        await complaints.add_evidence(conn, complaint, "", "text/plain", b"x", tmp_path, None)
    assert info.value.fields == ["file_name"]
    with pytest.raises(UserError) as info:
        await complaints.add_evidence(conn, 999, "a.txt", "text/plain", b"x", tmp_path, None)
    assert info.value.status == 404
    assert await make.count(conn, "complaint_evidence") == 0
