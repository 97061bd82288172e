"""Lead file upload through the real HTTP app: multipart or raw body, roles, errors."""

from __future__ import annotations

import aiohttp
import factories as make
from leadfiles import csv_bytes, xlsx_bytes

ROWS = [["姓名", "手机", "来源"], ["张伟", "138 0013 8000", "referral"], ["王芳", "12345", ""],
        ["李娜", "13800138000", ""]]
SUMMARY = {"imported": 1, "duplicates": 1,
           "rejected": [{"row": 2, "reason": "invalid phone number '12345' for region CN"}]}


async def _campaign(app_ctx) -> int:
    async with app_ctx.pool.acquire() as c:
        return await make.campaign(c)


def _url(campaign: int, query: str = "") -> str:
    return f"/api/v1/campaigns/{campaign}/leads/import{query}"


async def test_supervisor_uploads_a_gbk_csv_as_multipart_and_gets_the_summary(
        client, login, app_ctx):
    user = await login(client, "supervisor")
    campaign = await _campaign(app_ctx)
    form = aiohttp.FormData()
    form.add_field("file", csv_bytes(ROWS, encoding="gbk"), filename="名单.csv",
                   content_type="text/csv")

    resp = await client.post(_url(campaign), data=form,
                             headers={"X-CSRF-Token": user["csrf_token"]})

    assert resp.status == 200, await resp.text()
    assert await resp.json() == SUMMARY
    async with app_ctx.pool.acquire() as c:
        row = await c.fetchrow("select file_name, imported_by from lead_imports")
        lead = await c.fetchrow("select l.phone, c.name from leads l join customers c "
                                "on c.id = l.customer_id where l.campaign_id = $1", campaign)
    assert dict(row) == {"file_name": "名单.csv", "imported_by": user["id"]}
    assert dict(lead) == {"phone": "+8613800138000", "name": "张伟"}


async def test_admin_uploads_xlsx_as_raw_body_with_query_options(client, login, app_ctx):
    user = await login(client, "admin")
    campaign = await _campaign(app_ctx)
    data = xlsx_bytes([["Name", "Mobile"], ["Alice", "07400 123456"]])

    resp = await client.post(_url(campaign, "?file_name=uk.xlsx&region=GB&source=partner"),
                             data=data, headers={"X-CSRF-Token": user["csrf_token"]})

    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"imported": 1, "duplicates": 0, "rejected": []}
    async with app_ctx.pool.acquire() as c:
        assert await c.fetchval("select source_channel from leads where phone = '+447400123456'") \
            == "partner"


async def test_a_retry_with_the_same_idempotency_key_replays_the_first_answer(
        client, login, app_ctx):
    user = await login(client, "admin")
    campaign = await _campaign(app_ctx)
    headers = {"X-CSRF-Token": user["csrf_token"], "Idempotency-Key": "upload-1"}
    data = csv_bytes(ROWS)

    first = await client.post(_url(campaign), data=data, headers=headers)
    again = await client.post(_url(campaign), data=data, headers=headers)

    assert await first.json() == await again.json() == SUMMARY
    assert again.headers.get("Idempotent-Replayed") == "true"


async def test_unusable_file_is_422_and_writes_nothing(client, login, app_ctx):
    user = await login(client, "admin")
    campaign = await _campaign(app_ctx)

    resp = await client.post(_url(campaign), data=csv_bytes([["foo", "bar"], ["1", "2"]]),
                             headers={"X-CSRF-Token": user["csrf_token"]})

    body = await resp.json()
    assert resp.status == 422 and body["error"] == "invalid_lead_file"
    assert "no phone column" in body["message"]
    async with app_ctx.pool.acquire() as c:
        assert await c.fetchval("select count(*) from lead_imports") == 0


async def test_unknown_campaign_is_404(client, login):
    user = await login(client, "admin")
    resp = await client.post(_url(999), data=csv_bytes(ROWS),
                             headers={"X-CSRF-Token": user["csrf_token"]})
    assert resp.status == 404


async def test_agents_may_not_import(client, login, app_ctx):
    user = await login(client, "agent")
    campaign = await _campaign(app_ctx)
    resp = await client.post(_url(campaign), data=csv_bytes(ROWS),
                             headers={"X-CSRF-Token": user["csrf_token"]})
    assert resp.status == 403


async def test_multipart_file_over_the_upload_limit_is_413_and_imports_nothing(client, login, app_ctx):
    app_ctx.settings.http.max_upload_mb = 1
    user = await login(client, "admin")
    campaign = await _campaign(app_ctx)
    rows = [["phone"]] + [[f"1380013{i:04d}"] for i in range(10000)] * 10  # ~1.3 MB
    form = aiohttp.FormData()
    form.add_field("file", csv_bytes(rows), filename="big.csv", content_type="text/csv")

    resp = await client.post(_url(campaign), data=form, headers={"X-CSRF-Token": user["csrf_token"]})

    assert resp.status == 413 and (await resp.json())["error"] == "file_too_large"
    async with app_ctx.pool.acquire() as c:
        assert await c.fetchval("select count(*) from leads") == 0
