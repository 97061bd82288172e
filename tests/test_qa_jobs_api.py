"""Parked QA jobs for admins: the list with last error and attempts, retry through the API and the page."""

from __future__ import annotations

from browser_helpers import log_in_page

from crm import calls, qa_jobs

POLICY = qa_jobs.QueuePolicy(lease_s=60, max_attempts=2, backoff_s=0, backoff_max_s=0)


async def _parked_job(app_ctx, error="recordings/x.wav: not a WAV file") -> int:
    async with app_ctx.pool.acquire() as c:
        call = await calls.create_call(c, direction="outbound", agent_id=None)
        job_id = await qa_jobs.enqueue(c, call["id"], "recordings/x.wav", "sales")
        await qa_jobs.claim(c, "w1", POLICY)
        assert await qa_jobs.fail(c, job_id, "w1", error, POLICY, permanent=True) == "parked"
    return job_id


async def _state(app_ctx, job_id):
    async with app_ctx.pool.acquire() as c:
        return await c.fetchrow("select state, attempts from qa_jobs where id = $1", job_id)


async def test_admin_lists_parked_jobs_with_error_and_attempts_and_retries_one(client, login, app_ctx):
    job_id = await _parked_job(app_ctx)
    async with app_ctx.pool.acquire() as c:  # a queued job is not in the parked list
        await qa_jobs.enqueue(c, (await calls.create_call(c, direction="outbound", agent_id=None))["id"],
                              "recordings/y.wav", "sales")
    admin = await login(client, "admin")
    resp = await client.get("/api/v1/qa/jobs?state=parked")
    assert resp.status == 200
    body = await resp.json()
    assert body["total"] == 1
    [item] = body["items"]
    assert (item["id"], item["state"], item["attempts"]) == (job_id, "parked", 1)
    assert item["last_error"] == "recordings/x.wav: not a WAV file"

    resp = await client.post(f"/api/v1/qa/jobs/{job_id}/retry", headers={"X-CSRF-Token": admin["csrf_token"]})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["state"] == "queued"
    assert tuple(await _state(app_ctx, job_id)) == ("queued", 0)
    async with app_ctx.pool.acquire() as c:
        claimed = {(await qa_jobs.claim(c, "w2", POLICY))["id"] for _ in range(2)}
        assert job_id in claimed  # claimable at once
        assert await c.fetchval("select count(*) from audit_log where action = 'qa_job.retry'") == 1
    assert (await (await client.get("/api/v1/qa/jobs")).json())["total"] == 0


async def test_retrying_a_job_that_is_not_parked_is_409_and_an_unknown_one_404(client, login, app_ctx):
    job_id = await _parked_job(app_ctx)
    admin = await login(client, "admin")
    headers = {"X-CSRF-Token": admin["csrf_token"]}
    assert (await client.post(f"/api/v1/qa/jobs/{job_id}/retry", headers=headers)).status == 200
    resp = await client.post(f"/api/v1/qa/jobs/{job_id}/retry", headers=headers)
    assert resp.status == 409 and (await resp.json())["error"] == "illegal_state_change"
    resp = await client.post("/api/v1/qa/jobs/999999/retry", headers=headers)
    assert resp.status == 404
    resp = await client.get("/api/v1/qa/jobs?state=lost")
    assert resp.status == 422 and (await resp.json())["fields"] == ["state"]


async def test_only_admins_see_the_queue(client, login, app_ctx):
    await _parked_job(app_ctx)
    await login(client, "supervisor")
    assert (await client.get("/api/v1/qa/jobs")).status == 403


async def test_the_admin_page_shows_a_parked_job_and_its_retry_button_queues_it(page, app_ctx):
    job_id = await _parked_job(app_ctx, error="no scorecard 'gone'; known: sales, service")
    await log_in_page(page, app_ctx, "admin")
    await page.click("text=Parked QA jobs")
    row = page.locator(f"tr[data-job-id='{job_id}']")
    assert "no scorecard 'gone'" in await row.inner_text()
    await row.locator("button", has_text="Retry").click()
    await page.wait_for_url(lambda url: "retried=" in url)
    assert f"Job {job_id} is back in the queue" in await page.inner_text("[role=status]")
    assert await page.locator(f"tr[data-job-id='{job_id}']").count() == 0
    assert (await _state(app_ctx, job_id))["state"] == "queued"
