"""The customer API through the real HTTP app: lookup, create, edit, communication record, surveys."""

from __future__ import annotations

import asyncio
import datetime as dt

import factories as make
import pytest


def headers(user: dict, key: str | None = None) -> dict:
    h = {"X-CSRF-Token": user["csrf_token"]}
    if key:
        h["Idempotency-Key"] = key
    return h


@pytest.fixture
async def agent(client, login):
    return await login(client, "agent")


async def create(client, agent, **body):
    resp = await client.post("/api/v1/customers", json=body, headers=headers(agent))
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def wait_until(condition, *, timeout: float = 10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail("condition not met in time")
        await asyncio.sleep(0.02)


async def audit_rows(app_ctx, customer_id: int) -> list[dict]:
    rows = await app_ctx.pool.fetch(
        "select * from audit_log where entity = 'customer' and entity_id = $1 order by id",
        str(customer_id),
    )
    return [dict(r.items()) for r in rows]


# --- search ----------------------------------------------------------------


async def test_search_finds_a_chinese_name_by_a_substring(client, agent):
    wang = await create(client, agent, name="王小明", phones=["13800138001"])
    await create(client, agent, name="李大明", phones=["13800138002"])
    resp = await client.get("/api/v1/customers", params={"q": "小明"})
    assert resp.status == 200
    body = await resp.json()
    assert [c["id"] for c in body["items"]] == [wang["id"]] and body["total"] == 1
    assert body["items"][0]["phones"][0]["e164"] == "+8613800138001"


async def test_search_matches_company_case_insensitively_and_takes_wildcards_literally(
    client, agent
):
    acme = await create(client, agent, name="Chen Wei", company="ACME Trading")
    await create(client, agent, name="Li Na", company="Globex")
    found = await (await client.get("/api/v1/customers", params={"q": "acme"})).json()
    assert [c["id"] for c in found["items"]] == [acme["id"]]
    for wildcard in ("%", "_", "\\"):
        body = await (await client.get("/api/v1/customers", params={"q": wildcard})).json()
        assert body["total"] == 0, wildcard


async def test_search_by_a_number_written_in_local_format(client, agent):
    c = await create(client, agent, name="Zhao Lei", phones=["+86 138 0013 8003"])
    await create(client, agent, name="Other", phones=["13800138004"])
    for written in ("138-0013-8003", "(138) 0013 8003", "+8613800138003", "0086 138 0013 8003"):
        body = await (await client.get("/api/v1/customers", params={"phone": written})).json()
        assert [x["id"] for x in body["items"]] == [c["id"]], written


async def test_search_puts_the_exact_name_before_longer_ones(client, agent):
    longer = await create(client, agent, name="张伟明")
    exact = await create(client, agent, name="张伟")
    body = await (await client.get("/api/v1/customers", params={"q": "张伟"})).json()
    assert [c["id"] for c in body["items"]] == [exact["id"], longer["id"]]


async def test_search_pages_cover_every_match_once_in_a_stable_order(client, agent):
    ids = {(await create(client, agent, name="同名客户"))["id"] for _ in range(5)}
    seen = []
    for page in (1, 2, 3):
        resp = await client.get(
            "/api/v1/customers", params={"q": "同名", "page": page, "per_page": 2}
        )
        body = await resp.json()
        assert body["total"] == 5 and body["page"] == page and body["per_page"] == 2
        seen += [c["id"] for c in body["items"]]
    assert len(seen) == 5 and set(seen) == ids
    again = await (
        await client.get("/api/v1/customers", params={"q": "同名", "page": 2, "per_page": 2})
    ).json()
    assert [c["id"] for c in again["items"]] == seen[2:4]
    beyond = await (
        await client.get("/api/v1/customers", params={"q": "同名", "page": 9, "per_page": 2})
    ).json()
    assert beyond["items"] == [] and beyond["total"] == 5


@pytest.mark.parametrize(
    "params, field",
    [
        ({"page": "0"}, "page"),
        ({"page": "two"}, "page"),
        ({"per_page": "1000"}, "per_page"),
        ({"pgae": "2"}, "pgae"),
    ],
)
async def test_search_with_a_bad_page_parameter_is_400_naming_it(client, agent, params, field):
    resp = await client.get("/api/v1/customers", params=params)
    body = await resp.json()
    assert resp.status == 400 and body["fields"] == [field]


async def test_search_with_something_that_is_not_a_number_is_422_naming_phone(client, agent):
    resp = await client.get("/api/v1/customers", params={"phone": "12"})
    body = await resp.json()
    assert resp.status == 422 and body["error"] == "invalid_phone" and body["fields"] == ["phone"]


# --- create ----------------------------------------------------------------


async def test_create_stores_numbers_as_e164_and_writes_an_audit_row(client, agent, app_ctx):
    resp = await client.post(
        "/api/v1/customers",
        headers=headers(agent),
        json={
            "name": "陈伟",
            "company": "上海贸易",
            "email": "chen@example.cn",
            "source_channel": "展会",
            "region": "cn",
            "time_zone": "Asia/Shanghai",
            "tags": ["vip", " vip ", "b2b"],
            "notes": "met at the Canton fair",
            "consent": True,
            "phones": ["138 0013 8005", {"number": "+886 2 2345 6789", "label": "office"}],
        },
    )
    assert resp.status == 201, await resp.text()
    c = await resp.json()
    assert [(p["e164"], p["label"], p["is_primary"]) for p in c["phones"]] == [
        ("+8613800138005", "phone", True),
        ("+886223456789", "office", False),
    ]
    assert c["region"] == "CN" and c["tags"] == ["b2b", "vip"]
    assert c["consent"] and c["consent_at"] is not None
    [row] = await audit_rows(app_ctx, c["id"])
    assert row["action"] == "customer.create" and row["user_id"] == agent["id"]
    assert row["details"]["phones"] == ["+8613800138005", "+886223456789"]
    assert row["details"]["fields"]["source_channel"] == "展会"


async def test_create_with_a_number_of_another_customer_is_409_naming_that_customer(
    client, agent, app_ctx
):
    first = await create(client, agent, name="A", phones=["13800138006"])
    resp = await client.post(
        "/api/v1/customers",
        headers=headers(agent),
        json={"name": "B", "phones": ["13900139000", "+86 138-0013-8006"]},
    )
    body = await resp.json()
    assert resp.status == 409 and body["error"] == "phone_taken"
    assert body["customer_id"] == first["id"] and body["number"] == "+8613800138006"
    assert body["fields"] == ["phones[1]"]
    async with app_ctx.pool.acquire() as c:
        assert await make.count(c, "customers") == 1
        assert await make.count(c, "customer_phones") == 1


async def test_a_number_a_concurrent_request_is_adding_is_409_not_silently_dropped(
    client, agent, app_ctx
):
    blocker = await app_ctx.pool.acquire()
    tx = blocker.transaction()
    await tx.start()
    try:
        other = await make.customer(blocker, "Racer", ["+8613800138007"])
        request = asyncio.create_task(
            client.post(
                "/api/v1/customers",
                headers=headers(agent),
                json={"name": "Late", "phones": ["13800138007"]},
            )
        )

        async def request_waits_on_the_number() -> bool:
            return bool(
                await app_ctx.pool.fetchval(
                    """select count(*) from pg_stat_activity
                       where wait_event_type = 'Lock' and query like '%customer_phones%'"""
                )
            )

        await wait_until(request_waits_on_the_number)
        await tx.commit()
    except BaseException:
        await tx.rollback()
        raise
    finally:
        await app_ctx.pool.release(blocker)
    resp = await asyncio.wait_for(request, 10)
    body = await resp.json()
    assert resp.status == 409 and body["customer_id"] == other
    async with app_ctx.pool.acquire() as c:
        assert await make.count(c, "customers") == 1


async def test_create_with_an_unknown_source_channel_is_422_listing_the_channels(
    client, agent, app_ctx
):
    resp = await client.post(
        "/api/v1/customers",
        headers=headers(agent),
        json={"name": "A", "source_channel": "billboard"},
    )
    body = await resp.json()
    assert resp.status == 422 and body["error"] == "invalid_fields"
    assert body["fields"] == ["source_channel"]
    assert body["valid_source_channels"] == app_ctx.settings.crm.source_channels


async def test_create_with_an_unknown_field_is_422_naming_it(client, agent):
    resp = await client.post(
        "/api/v1/customers", headers=headers(agent), json={"name": "A", "birthday": "1990-01-01"}
    )
    body = await resp.json()
    assert resp.status == 422 and body["error"] == "unknown_fields" and body["fields"] == ["birthday"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "A", "time_zone": "Mars/Olympus"}, "time_zone"),
        ({"name": "A", "time_zone": "localtime"}, "time_zone"),
        ({"name": "A", "email": "not-an-address"}, "email"),
        ({"name": "A", "region": ["CN"]}, "region"),
        ({"name": "A", "consent": "yes"}, "consent"),
        ({"name": "A\x00B"}, "name"),
        ({"name": "A", "tags": "vip"}, "tags"),
    ],
)
async def test_create_with_a_bad_value_is_422_naming_the_field(client, agent, body, field, app_ctx):
    resp = await client.post("/api/v1/customers", headers=headers(agent), json=body)
    answer = await resp.json()
    assert resp.status == 422 and answer["error"] == "invalid_fields" and answer["fields"] == [field]
    async with app_ctx.pool.acquire() as c:
        assert await make.count(c, "customers") == 0


async def test_create_with_an_invalid_number_is_422_naming_its_position(client, agent):
    resp = await client.post(
        "/api/v1/customers", headers=headers(agent), json={"name": "A", "phones": ["13800138008", "12"]}
    )
    body = await resp.json()
    assert resp.status == 422 and body["error"] == "invalid_phone" and body["fields"] == ["phones[1]"]


async def test_create_without_a_name_company_or_number_is_422(client, agent):
    resp = await client.post("/api/v1/customers", headers=headers(agent), json={"notes": "?"})
    body = await resp.json()
    assert resp.status == 422 and body["error"] == "missing_fields"


async def test_create_retried_with_the_same_idempotency_key_creates_one_customer(
    client, agent, app_ctx
):
    request = {"name": "Once", "phones": ["13800138009"]}
    first = await client.post("/api/v1/customers", json=request, headers=headers(agent, "c-1"))
    second = await client.post("/api/v1/customers", json=request, headers=headers(agent, "c-1"))
    assert (first.status, second.status) == (201, 201)
    assert (await first.json())["id"] == (await second.json())["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    async with app_ctx.pool.acquire() as c:
        assert await make.count(c, "customers") == 1


# --- edit ------------------------------------------------------------------


async def test_patch_changes_fields_and_audits_each_old_and_new_value(client, agent, app_ctx):
    c = await create(client, agent, name="Anna", phones=["13800138010"])
    resp = await client.patch(
        f"/api/v1/customers/{c['id']}",
        headers=headers(agent),
        json={"name": "Anna Li", "consent": True, "tags": ["vip"], "time_zone": "Asia/Taipei"},
    )
    assert resp.status == 200, await resp.text()
    after = await resp.json()
    assert after["name"] == "Anna Li" and after["consent"] and after["consent_at"]
    assert after["tags"] == ["vip"] and after["time_zone"] == "Asia/Taipei"
    row = (await audit_rows(app_ctx, c["id"]))[-1]
    assert row["action"] == "customer.update" and row["user_id"] == agent["id"]
    changes = row["details"]["changes"]
    assert changes["name"] == {"old": "Anna", "new": "Anna Li"}
    assert changes["consent"] == {"old": False, "new": True}
    assert changes["consent_at"]["old"] is None and changes["consent_at"]["new"]
    assert changes["tags"] == {"old": [], "new": ["vip"]}


async def test_patch_that_changes_nothing_writes_no_audit_row(client, agent, app_ctx):
    c = await create(client, agent, name="Same", phones=["13800138011"])
    resp = await client.patch(
        f"/api/v1/customers/{c['id']}",
        headers=headers(agent),
        json={"name": "Same", "add_phones": ["138 0013 8011"]},
    )
    assert resp.status == 200
    assert [r["action"] for r in await audit_rows(app_ctx, c["id"])] == ["customer.create"]


async def test_patch_adds_and_removes_numbers_and_the_primary_moves(client, agent, app_ctx):
    c = await create(client, agent, name="Phones", phones=["13800138012"])
    path = f"/api/v1/customers/{c['id']}"
    resp = await client.patch(
        path,
        headers=headers(agent),
        json={"add_phones": [{"number": "139 0013 9001", "label": "home", "primary": True}]},
    )
    assert resp.status == 200, await resp.text()
    assert [(p["e164"], p["is_primary"]) for p in (await resp.json())["phones"]] == [
        ("+8613900139001", True),
        ("+8613800138012", False),
    ]
    resp = await client.patch(path, headers=headers(agent), json={"remove_phones": ["139-0013-9001"]})
    assert [(p["e164"], p["is_primary"]) for p in (await resp.json())["phones"]] == [
        ("+8613800138012", True)
    ]
    rows = await audit_rows(app_ctx, c["id"])
    assert rows[1]["details"]["phones"]["added"] == ["+8613900139001"]
    assert rows[2]["details"]["phones"] == {
        "removed": ["+8613900139001"],
        "primary": {"old": "+8613900139001", "new": "+8613800138012"},
    }


async def test_patch_adding_a_number_of_another_customer_is_409_and_changes_nothing(
    client, agent
):
    owner = await create(client, agent, name="Owner", phones=["13800138013"])
    c = await create(client, agent, name="Taker")
    resp = await client.patch(
        f"/api/v1/customers/{c['id']}",
        headers=headers(agent),
        json={"name": "Renamed", "add_phones": ["13800138013"]},
    )
    body = await resp.json()
    assert resp.status == 409 and body["customer_id"] == owner["id"]
    assert body["fields"] == ["add_phones[0]"]
    f = await (await client.get(f"/api/v1/customers/{c['id']}")).json()
    assert f["customer"]["name"] == "Taker" and f["customer"]["phones"] == []


async def test_patch_with_an_unknown_field_is_422_and_changes_nothing(client, agent, app_ctx):
    c = await create(client, agent, name="Keep")
    resp = await client.patch(
        f"/api/v1/customers/{c['id']}",
        headers=headers(agent),
        json={"name": "Changed", "do_not_call": False, "id": 5},
    )
    body = await resp.json()
    assert resp.status == 422 and body["error"] == "unknown_fields"
    assert body["fields"] == ["do_not_call", "id"]
    f = await (await client.get(f"/api/v1/customers/{c['id']}")).json()
    assert f["customer"]["name"] == "Keep"
    assert len(await audit_rows(app_ctx, c["id"])) == 1


async def test_patch_removing_a_number_the_customer_lacks_is_422_naming_it(client, agent):
    c = await create(client, agent, name="X", phones=["13800138014"])
    resp = await client.patch(
        f"/api/v1/customers/{c['id']}",
        headers=headers(agent),
        json={"remove_phones": ["13800138015"]},
    )
    body = await resp.json()
    assert resp.status == 422 and body["fields"] == ["remove_phones[0]"]


async def test_patch_of_an_unknown_customer_is_404(client, agent):
    resp = await client.patch("/api/v1/customers/99999", headers=headers(agent), json={"name": "x"})
    assert resp.status == 404 and (await resp.json())["error"] == "not_found"


# --- communication record ----------------------------------------------------


async def test_notes_emails_and_sms_come_back_in_time_order_one_page_at_a_time(client, agent):
    c = await create(client, agent, name="History")
    path = f"/api/v1/customers/{c['id']}/interactions"
    t0 = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    written = [
        ("sms", t0 + dt.timedelta(hours=3)),
        ("note", t0 + dt.timedelta(hours=1)),
        ("email", t0 + dt.timedelta(hours=2)),
    ]
    for kind, at in written:
        resp = await client.post(
            path,
            headers=headers(agent),
            json={"kind": kind, "summary": f"{kind} entry", "occurred_at": at.isoformat(),
                  "details": {"subject": "报价"}},
        )
        assert resp.status == 201, await resp.text()
        entry = await resp.json()
        assert entry["user_id"] == agent["id"] and entry["username"] == agent["username"]
    resp = await client.post(path, headers=headers(agent), json={"kind": "note", "summary": "now"})
    assert resp.status == 201
    first = await (await client.get(path, params={"per_page": 2})).json()
    second = await (await client.get(path, params={"per_page": 2, "page": 2})).json()
    assert first["total"] == 4
    assert [i["kind"] for i in first["items"] + second["items"]] == ["note", "email", "sms", "note"]
    newest = await (await client.get(path, params={"per_page": 1, "order": "desc"})).json()
    assert newest["items"][0]["summary"] == "now"


@pytest.mark.parametrize(
    "body, error, field",
    [
        ({"kind": "call", "summary": "x"}, "invalid_value", "kind"),
        ({"kind": "note"}, "missing_fields", "summary"),
        ({"kind": "note", "summary": "x", "occurred_at": "2025-01-01T10:00:00"}, "invalid_value",
         "occurred_at"),
        ({"kind": "note", "summary": "x", "occurred_at": "2999-01-01T10:00:00Z"}, "invalid_value",
         "occurred_at"),
        ({"kind": "note", "summary": "x", "details": [1]}, "invalid_value", "details"),
        ({"kind": "note", "summary": "x", "call_id": "nope"}, "invalid_value", "call_id"),
        ({"kind": "note", "summary": "x", "mood": "happy"}, "unknown_fields", "mood"),
    ],
)
async def test_a_bad_interaction_is_422_naming_the_field(client, agent, app_ctx, body, error, field):
    c = await create(client, agent, name="Bad")
    resp = await client.post(
        f"/api/v1/customers/{c['id']}/interactions", headers=headers(agent), json=body
    )
    answer = await resp.json()
    assert resp.status == 422 and answer["error"] == error and answer["fields"] == [field]
    async with app_ctx.pool.acquire() as conn:
        assert await make.count(conn, "interactions") == 0


async def test_interactions_of_an_unknown_customer_are_404(client, agent):
    path = "/api/v1/customers/99999/interactions"
    assert (await client.get(path)).status == 404
    resp = await client.post(path, headers=headers(agent), json={"kind": "note", "summary": "x"})
    assert resp.status == 404


# --- surveys -------------------------------------------------------------------


async def test_survey_answers_are_stored_together_with_one_survey_entry(client, agent, app_ctx):
    async with app_ctx.pool.acquire() as conn:
        lead = await make.lead(conn)
        call = await make.call(conn, lead, agent["id"])
        customer_id, campaign_id = await conn.fetchval(
            "select (customer_id, campaign_id) from leads where id = $1", lead
        )
    resp = await client.post(
        f"/api/v1/customers/{customer_id}/surveys",
        headers=headers(agent),
        json={
            "survey": "csat",
            "call_id": call,
            "answers": [
                {"question": "How satisfied are you?", "score": 9},
                {"question": "Anything to add?", "answer": "送货很快"},
                {"question": "Would you recommend us?", "score": 7},
            ],
        },
    )
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert [a["score"] for a in body["answers"]] == [9, None, 7]
    assert body["campaign_id"] == campaign_id and body["call_id"] == call
    history = await (
        await client.get(f"/api/v1/customers/{customer_id}/interactions", params={"order": "desc"})
    ).json()
    survey = history["items"][0]
    assert survey["kind"] == "survey" and survey["id"] == body["interaction_id"]
    assert survey["summary"] == "Survey csat: 3 answers, average score 8.0"
    assert survey["details"]["answers"][1]["answer"] == "送货很快"


@pytest.mark.parametrize(
    "answers, field",
    [
        ([{"question": "ok?", "score": 10}, {"question": "again?", "score": 11}], "answers[1].score"),
        ([{"question": "ok?", "score": 3.5}], "answers[0].score"),
        ([{"score": 3}], "answers[0].question"),
        ([], "answers"),
    ],
)
async def test_a_bad_survey_answer_is_422_and_no_answer_is_stored(
    client, agent, app_ctx, answers, field
):
    c = await create(client, agent, name="Survey")
    resp = await client.post(
        f"/api/v1/customers/{c['id']}/surveys",
        headers=headers(agent),
        json={"survey": "csat", "answers": answers},
    )
    body = await resp.json()
    assert resp.status == 422 and body["fields"] == [field]
    async with app_ctx.pool.acquire() as conn:
        assert await make.count(conn, "survey_answers") == 0
        assert await make.count(conn, "interactions") == 0


async def test_a_survey_naming_another_customers_call_is_422(client, agent, app_ctx):
    async with app_ctx.pool.acquire() as conn:
        call = await make.call(conn, await make.lead(conn), agent["id"])
    c = await create(client, agent, name="Not the caller")
    resp = await client.post(
        f"/api/v1/customers/{c['id']}/surveys",
        headers=headers(agent),
        json={"survey": "csat", "call_id": call, "answers": [{"question": "q", "score": 5}]},
    )
    body = await resp.json()
    assert resp.status == 422 and body["fields"] == ["call_id"]
