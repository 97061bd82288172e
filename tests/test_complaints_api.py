"""Complaints through the real HTTP app: intake, the list with missed deadlines, who sees
what, and evidence files uploaded and downloaded byte for byte (or refused when damaged)."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import urllib.parse

import factories as make
import pytest
from aiohttp import ClientPayloadError, FormData

from crm import complaints

DEPARTMENTS = make.RULES["departments"]
CHINESE_NAME = "投诉 收据（第2页）.pdf"


def headers(user: dict, key: str | None = None) -> dict:
    h = {"X-CSRF-Token": user["csrf_token"]}
    if key:
        h["Idempotency-Key"] = key
    return h


async def relogin(client, user: dict) -> dict:
    """Switch the client's session back to an existing user."""
    resp = await client.post(
        "/api/v1/session", json={"username": user["username"], "password": "correct horse"}
    )
    assert resp.status == 200
    return await resp.json()


@pytest.fixture
async def customer(app_ctx):
    async with app_ctx.pool.acquire() as c:
        return await make.customer(c, "Li Na")


async def stored_complaint(app_ctx, customer_id, *, created_by, hours_ago=0, **fields):
    """A complaint received `hours_ago` hours ago, recorded by created_by."""
    clean = complaints.validate_complaint(
        {"complainant": "Li Na", "channel": "letter", "content": "parcel arrived broken", **fields},
        departments=DEPARTMENTS,
        prefix="",
    )
    async with app_ctx.pool.acquire() as c:
        row = await complaints.create_complaint(
            c,
            clean,
            customer_id=customer_id,
            call_id=None,
            created_by=created_by,
            ack_hours=24,
            resolve_hours=72,
            now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours_ago),
        )
    return row["id"]


async def move(app_ctx, complaint_id, state, user_id, **kw):
    async with app_ctx.pool.acquire() as c:
        await complaints.transition(
            c, complaint_id, state, user_id=user_id, departments=DEPARTMENTS, **kw
        )


def evidence_form(data: bytes, name: str = CHINESE_NAME, content_type="application/pdf"):
    form = FormData()
    form.add_field("file", data, filename=name, content_type=content_type)
    return form


async def upload(client, user, complaint_id, data: bytes, **kw):
    return await client.post(
        f"/api/v1/complaints/{complaint_id}/evidence",
        data=evidence_form(data, **kw),
        headers=headers(user),
    )


# --- intake ------------------------------------------------------------------------


async def test_emailed_complaint_is_recorded_with_due_dates_history_and_customer_record(
    client, login, customer, app_ctx
):
    agent = await login(client, "agent")
    before = dt.datetime.now(dt.UTC)
    resp = await client.post(
        "/api/v1/complaints",
        headers=headers(agent),
        json={
            "customer_id": customer,
            "complainant": "Li Na",
            "channel": "email",
            "content": "  Charged twice for one kettle ",
            "department": "billing",
        },
    )
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert (body["state"], body["channel"], body["department"], body["created_by"]) == (
        "new",
        "email",
        "billing",
        agent["id"],
    )
    assert body["content"] == "Charged twice for one kettle" and body["call_id"] is None
    received = dt.datetime.fromisoformat(body["received_at"])
    assert before <= received <= dt.datetime.now(dt.UTC)
    assert dt.datetime.fromisoformat(body["ack_due_at"]) == received + dt.timedelta(hours=24)
    assert dt.datetime.fromisoformat(body["resolve_due_at"]) == received + dt.timedelta(hours=72)
    async with app_ctx.pool.acquire() as c:
        event = await c.fetchrow("select * from complaint_events where complaint_id = $1", body["id"])
        interaction = await c.fetchrow("select * from interactions where customer_id = $1", customer)
        audit = await c.fetchrow("select * from audit_log where action = 'complaint.create'")
    assert (event["to_state"], event["user_id"]) == ("new", agent["id"])
    assert interaction["kind"] == "complaint" and interaction["details"]["complaint_id"] == body["id"]
    assert (audit["user_id"], audit["entity_id"]) == (agent["id"], str(body["id"]))


async def test_complaint_without_anything_is_422_naming_every_missing_field(
    client, login, app_ctx
):
    agent = await login(client, "agent")
    resp = await client.post("/api/v1/complaints", headers=headers(agent), json={})
    body = await resp.json()
    assert resp.status == 422 and body["error"] == "missing_fields"
    assert body["fields"] == ["customer_id", "complainant", "channel", "content"]
    async with app_ctx.pool.acquire() as c:
        assert await make.count(c, "complaints") == 0


@pytest.mark.parametrize(
    ("change", "status", "error", "field"),
    [
        ({"customer_id": 99999}, 404, "not_found", "customer_id"),
        ({"customer_id": "1"}, 422, "invalid_request", "customer_id"),
        ({"customer_id": 2**70}, 404, "not_found", "customer_id"),
        ({"channel": "fax"}, 422, "invalid_request", "channel"),
        ({"department": "marketing"}, 422, "invalid_request", "department"),
        ({"content": "bad\x00byte"}, 422, "invalid_request", "content"),
        ({"complainant": "x" * 201}, 422, "invalid_request", "complainant"),
        ({"priority": "high"}, 422, "invalid_request", "priority"),
    ],
    ids=["unknown-customer", "customer-id-text", "customer-id-huge", "channel", "department", "nul", "long", "unknown"],
)
async def test_bad_complaint_field_is_refused_naming_it_and_nothing_is_written(
    client, login, customer, app_ctx, change, status, error, field
):
    agent = await login(client, "agent")
    request = {"customer_id": customer, "complainant": "Li Na", "channel": "letter",
               "content": "broken"}
    resp = await client.post(
        "/api/v1/complaints", headers=headers(agent), json={**request, **change}
    )
    body = await resp.json()
    assert (resp.status, body["error"], body["fields"]) == (status, error, [field])
    async with app_ctx.pool.acquire() as c:
        assert await make.count(c, "complaints") == 0
        assert await make.count(c, "interactions") == 0


async def test_complaint_retried_with_the_same_idempotency_key_is_recorded_once(
    client, login, customer, app_ctx
):
    agent = await login(client, "agent")
    request = {"customer_id": customer, "complainant": "Li Na", "channel": "in_person",
               "content": "walked in with a broken kettle"}
    first = await client.post("/api/v1/complaints", json=request, headers=headers(agent, "k-1"))
    second = await client.post("/api/v1/complaints", json=request, headers=headers(agent, "k-1"))
    assert (first.status, second.status) == (201, 201)
    assert await first.json() == await second.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    async with app_ctx.pool.acquire() as c:
        assert await make.count(c, "complaints") == 1


# --- the list ----------------------------------------------------------------------


async def ids(resp) -> list[int]:
    assert resp.status == 200, await resp.text()
    return [row["id"] for row in (await resp.json())["items"]]


async def test_agent_lists_only_complaints_they_own_or_recorded_supervisor_lists_all(
    client, login, customer, app_ctx
):
    agent = await login(client, "agent")
    async with app_ctx.pool.acquire() as c:
        other = await make.user(c, "agent")
        sup_id = await make.user(c, "supervisor")
    recorded = await stored_complaint(app_ctx, customer, created_by=agent["id"])
    owned = await stored_complaint(app_ctx, customer, created_by=other)
    await move(app_ctx, owned, "assigned", sup_id, department="service", owner_id=agent["id"])
    foreign = await stored_complaint(app_ctx, customer, created_by=other)

    assert set(await ids(await client.get("/api/v1/complaints"))) == {recorded, owned}
    resp = await client.get(f"/api/v1/complaints/{foreign}")
    assert resp.status == 403 and (await resp.json())["error"] == "not_complaint_owner"
    assert (await client.get(f"/api/v1/complaints/{owned}")).status == 200

    await login(client, "supervisor")
    assert set(await ids(await client.get("/api/v1/complaints"))) == {recorded, owned, foreign}
    assert (await client.get(f"/api/v1/complaints/{foreign}")).status == 200


async def test_overdue_lists_each_complaint_with_the_deadlines_it_missed(
    client, login, customer, app_ctx
):
    sup = await login(client, "supervisor")
    fresh = await stored_complaint(app_ctx, customer, created_by=sup["id"])
    unacknowledged = await stored_complaint(app_ctx, customer, created_by=sup["id"], hours_ago=30)
    forgotten = await stored_complaint(app_ctx, customer, created_by=sup["id"], hours_ago=80)
    worked_late = await stored_complaint(app_ctx, customer, created_by=sup["id"], hours_ago=80)
    await move(app_ctx, worked_late, "in_progress", sup["id"])
    resolved_late = await stored_complaint(app_ctx, customer, created_by=sup["id"], hours_ago=80)
    await move(app_ctx, resolved_late, "in_progress", sup["id"])
    await move(app_ctx, resolved_late, "resolved", sup["id"], resolution="refunded")

    resp = await client.get("/api/v1/complaints", params={"overdue": "true"})
    body = await resp.json()
    missed = {row["id"]: row["missed_deadlines"] for row in body["items"]}
    assert missed == {
        unacknowledged: ["ack_due_at"],
        forgotten: ["ack_due_at", "resolve_due_at"],
        worked_late: ["resolve_due_at"],
    }
    assert body["total"] == 3
    not_overdue = await client.get("/api/v1/complaints", params={"overdue": "false"})
    assert set(await ids(not_overdue)) == {fresh, resolved_late}


async def test_list_filters_by_state_department_and_owner_and_pages(
    client, login, customer, app_ctx
):
    sup = await login(client, "supervisor")
    async with app_ctx.pool.acquire() as c:
        owner = await make.user(c, "agent")
    first = await stored_complaint(app_ctx, customer, created_by=sup["id"], department="billing")
    second = await stored_complaint(app_ctx, customer, created_by=sup["id"], hours_ago=1)
    await move(app_ctx, second, "assigned", sup["id"], department="logistics", owner_id=owner)

    assert await ids(await client.get("/api/v1/complaints?state=new")) == [first]
    assert await ids(await client.get("/api/v1/complaints?department=logistics")) == [second]
    assert await ids(await client.get(f"/api/v1/complaints?owner_id={owner}")) == [second]
    # the most urgent (earliest resolve_due_at) first, one per page
    assert await ids(await client.get("/api/v1/complaints?per_page=1")) == [second]
    page2 = await client.get("/api/v1/complaints?per_page=1&page=2")
    assert await ids(page2) == [first]
    assert (await page2.json())["total"] == 2


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("state=closed", 422, "state"),
        ("department=marketing", 422, "department"),
        ("overdue=maybe", 400, "overdue"),
        ("owner_id=me", 400, "owner_id"),
        ("owner_id=123456789012345678901234", 400, "owner_id"),
        ("page=0", 400, "page"),
        ("page=999999999999999999", 400, "page"),
        ("per_page=1000", 400, "per_page"),
    ],
)
async def test_bad_list_filter_is_refused_naming_it(client, login, query, status, field):
    await login(client, "agent")
    resp = await client.get(f"/api/v1/complaints?{query}")
    body = await resp.json()
    assert (resp.status, body["fields"]) == (status, [field])


# --- evidence ----------------------------------------------------------------------


async def test_evidence_with_a_chinese_name_downloads_as_the_same_bytes_and_is_audited(
    client, login, customer, app_ctx
):
    agent = await login(client, "agent")
    complaint = await stored_complaint(app_ctx, customer, created_by=agent["id"])
    data = b"%PDF-1.4\n" + bytes(range(256)) * 2000  # more than one read chunk
    resp = await upload(client, agent, complaint, data)
    assert resp.status == 201, await resp.text()
    evidence = await resp.json()
    assert (evidence["file_name"], evidence["size_bytes"]) == (CHINESE_NAME, len(data))
    assert evidence["sha256"] == hashlib.sha256(data).hexdigest()
    assert (app_ctx.settings.data_dir / "evidence" / evidence["sha256"]).read_bytes() == data

    resp = await client.get(f"/api/v1/complaints/{complaint}/evidence/{evidence['id']}")
    assert resp.status == 200
    assert await resp.read() == data
    assert resp.headers["Content-Type"] == "application/pdf"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    disposition = resp.headers["Content-Disposition"]
    assert disposition.startswith("attachment;")
    encoded = disposition.split("filename*=UTF-8''", 1)[1]
    assert urllib.parse.unquote(encoded, encoding="utf-8", errors="strict") == CHINESE_NAME
    assert disposition.isascii()

    async with app_ctx.pool.acquire() as c:
        audit = await c.fetch(
            "select * from audit_log where action = 'complaint.evidence_download'"
        )
    assert len(audit) == 1
    assert (audit[0]["user_id"], audit[0]["entity"], audit[0]["entity_id"]) == (
        agent["id"],
        "complaint",
        str(complaint),
    )
    assert audit[0]["details"]["evidence_id"] == evidence["id"]
    detail = await (await client.get(f"/api/v1/complaints/{complaint}")).json()
    assert [e["file_name"] for e in detail["evidence"]] == [CHINESE_NAME]


async def test_every_download_is_a_separate_audit_row(client, login, customer, app_ctx):
    sup = await login(client, "supervisor")
    complaint = await stored_complaint(app_ctx, customer, created_by=sup["id"])
    evidence = await (await upload(client, sup, complaint, b"photo", name="a.jpg",
                                   content_type="image/jpeg")).json()
    for _ in range(2):
        resp = await client.get(f"/api/v1/complaints/{complaint}/evidence/{evidence['id']}")
        assert await resp.read() == b"photo"
    async with app_ctx.pool.acquire() as c:
        assert await c.fetchval(
            "select count(*) from audit_log where action = 'complaint.evidence_download'"
        ) == 2


async def test_browser_style_utf8_file_name_is_kept(client, login, customer, app_ctx):
    """Browsers put the UTF-8 name in the part header as it is, not percent-encoded."""
    agent = await login(client, "agent")
    complaint = await stored_complaint(app_ctx, customer, created_by=agent["id"])
    boundary = "----browserform"
    body = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{CHINESE_NAME}"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode() + "收据内容".encode() + f"\r\n--{boundary}--\r\n".encode()
    resp = await client.post(
        f"/api/v1/complaints/{complaint}/evidence",
        data=body,
        headers={**headers(agent), "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["file_name"] == CHINESE_NAME


async def test_damaged_evidence_file_is_a_500_evidence_damaged_never_the_bytes(
    client, login, customer, app_ctx, caplog
):
    agent = await login(client, "agent")
    complaint = await stored_complaint(app_ctx, customer, created_by=agent["id"])
    data = b"original scan bytes"
    evidence = await (await upload(client, agent, complaint, data)).json()
    path = app_ctx.settings.data_dir / "evidence" / evidence["sha256"]
    path.write_bytes(b"tampered scan bytes")  # same length, other bytes

    with caplog.at_level(logging.ERROR, logger="telesales.complaints"):
        resp = await client.get(f"/api/v1/complaints/{complaint}/evidence/{evidence['id']}")
    assert resp.status == 500
    assert resp.content_type == "application/json"
    assert (await resp.json())["error"] == "evidence_damaged"
    logged = [r for r in caplog.records if getattr(r, "error", None) == "evidence_damaged"]
    assert logged and logged[0].evidence_id == evidence["id"]
    async with app_ctx.pool.acquire() as c:
        assert await c.fetchval(
            "select count(*) from audit_log where action = 'complaint.evidence_download'"
        ) == 0

    # uploading the right bytes again repairs the stored copy
    assert (await upload(client, agent, complaint, data)).status == 201
    resp = await client.get(f"/api/v1/complaints/{complaint}/evidence/{evidence['id']}")
    assert resp.status == 200 and await resp.read() == data


async def test_missing_evidence_file_is_a_500_evidence_missing(client, login, customer, app_ctx):
    agent = await login(client, "agent")
    complaint = await stored_complaint(app_ctx, customer, created_by=agent["id"])
    evidence = await (await upload(client, agent, complaint, b"scan")).json()
    (app_ctx.settings.data_dir / "evidence" / evidence["sha256"]).unlink()
    resp = await client.get(f"/api/v1/complaints/{complaint}/evidence/{evidence['id']}")
    assert resp.status == 500 and (await resp.json())["error"] == "evidence_missing"


async def test_file_changed_during_a_download_cuts_the_response_short(
    client, login, customer, app_ctx, monkeypatch
):
    agent = await login(client, "agent")
    complaint = await stored_complaint(app_ctx, customer, created_by=agent["id"])
    data = b"A" * 600_000
    evidence = await (await upload(client, agent, complaint, data)).json()
    path = app_ctx.settings.data_dir / "evidence" / evidence["sha256"]
    checked_open = complaints.open_evidence

    async def open_then_change(evidence_dir, row):
        f = await checked_open(evidence_dir, row)
        with open(path, "r+b") as w:  # in place, after the check: the same inode changes
            w.seek(len(data) - 1)
            w.write(b"B")
        return f

    monkeypatch.setattr(complaints, "open_evidence", open_then_change)
    resp = await client.get(f"/api/v1/complaints/{complaint}/evidence/{evidence['id']}")
    assert resp.status == 200  # the status line went out before the change could be seen
    with pytest.raises(ClientPayloadError):
        await resp.read()


async def test_empty_evidence_file_is_422_and_leaves_no_row_or_file(
    client, login, customer, app_ctx
):
    agent = await login(client, "agent")
    complaint = await stored_complaint(app_ctx, customer, created_by=agent["id"])
    resp = await upload(client, agent, complaint, b"")
    body = await resp.json()
    assert (resp.status, body["fields"]) == (422, ["file"])
    async with app_ctx.pool.acquire() as c:
        assert await make.count(c, "complaint_evidence") == 0
    folder = app_ctx.settings.data_dir / "evidence"
    assert not folder.exists() or list(folder.iterdir()) == []


async def test_evidence_larger_than_max_upload_mb_is_413(client, login, customer, app_ctx):
    agent = await login(client, "agent")
    complaint = await stored_complaint(app_ctx, customer, created_by=agent["id"])
    app_ctx.settings.http.max_upload_mb = 1
    for size in (1024 * 1024 + 1, 3 * 1024 * 1024):  # caught while reading; by Content-Length
        resp = await upload(client, agent, complaint, b"x" * size)
        body = await resp.json()
        assert (resp.status, body["error"], body["fields"]) == (413, "file_too_large", ["file"])
    resp = await upload(client, agent, complaint, b"x" * (1024 * 1024))
    assert resp.status == 201
    async with app_ctx.pool.acquire() as c:
        assert await make.count(c, "complaint_evidence") == 1


async def test_bad_evidence_uploads_are_refused_naming_the_field(
    client, login, customer, app_ctx
):
    agent = await login(client, "agent")
    complaint = await stored_complaint(app_ctx, customer, created_by=agent["id"])
    path = f"/api/v1/complaints/{complaint}/evidence"

    resp = await client.post(path, data=evidence_form(b"x"))  # no CSRF header
    assert resp.status == 403 and (await resp.json())["error"] == "csrf_failed"

    resp = await client.post(path, json={"file": "x"}, headers=headers(agent))
    assert (resp.status, (await resp.json())["fields"]) == (400, ["file"])

    form = FormData()
    form.add_field("note", "no file here")
    form.add_field("other", b"x", filename="x.txt")
    resp = await client.post(path, data=form, headers=headers(agent))
    body = await resp.json()
    assert (resp.status, body["error"], body["fields"]) == (422, "missing_fields", ["file"])

    resp = await upload(client, agent, complaint, b"x", content_type="not a type")
    assert (resp.status, (await resp.json())["fields"]) == (422, ["content_type"])

    resp = await upload(client, agent, 99999, b"x")
    assert resp.status == 404
    async with app_ctx.pool.acquire() as c:
        assert await make.count(c, "complaint_evidence") == 0


async def test_agent_cannot_add_or_fetch_evidence_of_someone_elses_complaint(
    client, login, customer, app_ctx
):
    sup = await login(client, "supervisor")
    complaint = await stored_complaint(app_ctx, customer, created_by=sup["id"])
    evidence = await (await upload(client, sup, complaint, b"scan")).json()
    url = f"/api/v1/complaints/{complaint}/evidence/{evidence['id']}"

    agent = await login(client, "agent")
    resp = await upload(client, agent, complaint, b"more")
    assert resp.status == 403 and (await resp.json())["error"] == "not_complaint_owner"
    resp = await client.get(url)
    assert resp.status == 403 and (await resp.json())["error"] == "not_complaint_owner"

    async with app_ctx.pool.acquire() as c:
        await complaints.transition(
            c, complaint, "assigned", user_id=sup["id"], departments=DEPARTMENTS,
            department="service", owner_id=agent["id"],
        )
    resp = await client.get(url)
    assert resp.status == 200 and await resp.read() == b"scan"


async def test_evidence_of_another_complaint_is_404(client, login, customer, app_ctx):
    sup = await login(client, "supervisor")
    one = await stored_complaint(app_ctx, customer, created_by=sup["id"])
    other = await stored_complaint(app_ctx, customer, created_by=sup["id"])
    evidence = await (await upload(client, sup, one, b"scan")).json()
    resp = await client.get(f"/api/v1/complaints/{other}/evidence/{evidence['id']}")
    assert resp.status == 404 and (await resp.json())["error"] == "not_found"
    resp = await client.get(f"/api/v1/complaints/{one}/evidence/abc")
    assert resp.status == 400 and (await resp.json())["fields"] == ["evidence_id"]
