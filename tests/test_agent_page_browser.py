"""The agent desk page in headless Chromium: next lead, a refused (do-not-call) dial, dispositions."""

from __future__ import annotations

import datetime as dt

import factories as make
from browser_helpers import log_in_page

from crm import dnc

ALL_DAY = {"calling_window_start": dt.time(0), "calling_window_end": dt.time(0)}  # tests run at any hour
TIMEOUT = 15_000  # ms; a loaded machine is slow


async def _campaign_with_lead(app_ctx, name="Li Na", phone="+8613800138321") -> int:
    async with app_ctx.pool.acquire() as c:
        campaign_id = await make.campaign(c, name="Spring water", script="Good morning {name}, this is {agent}.",
                                          **ALL_DAY)
        customer_id = await make.customer(c, name, phones=[phone])
        await c.execute("update customers set company = 'Blue Sky Ltd', tags = '{vip}' where id = $1", customer_id)
        return await make.lead(c, campaign_id, customer_id, phone)


async def _ready_with_next_lead(page, app_ctx, username):
    await log_in_page(page, app_ctx, "agent", username)
    await page.goto(page.base_url + "/agent")
    await page.click("#ready")
    await page.wait_for_function("document.querySelector('#status').dataset.status === 'ready'", timeout=TIMEOUT)
    await page.click("#next-lead")
    await page.wait_for_selector("#lead:not([hidden])", timeout=TIMEOUT)


async def test_agent_takes_the_next_lead_dials_and_records_a_sale(page, app_ctx):
    lead_id = await _campaign_with_lead(app_ctx)
    await _ready_with_next_lead(page, app_ctx, "mei")

    assert await page.inner_text("#c-name") == "Li Na"
    assert await page.inner_text("#c-company") == "Blue Sky Ltd"
    assert await page.inner_text("#c-phone") == "+8613800138321"
    assert await page.inner_text("#script") == "Good morning Li Na, this is mei."

    await page.click("#dial")
    await page.wait_for_function("document.querySelector('#status').dataset.status === 'on_call'", timeout=TIMEOUT)
    await page.click("#hangup")
    await page.wait_for_function("document.querySelector('#status').dataset.status === 'wrap_up'", timeout=TIMEOUT)

    await page.select_option("#code", "SALE")
    assert await page.is_visible("fieldset[data-part=order]")
    assert not await page.is_visible("fieldset[data-part=follow_up]")
    await page.click("#save-disposition")  # the order is missing: the form says what is
    await page.wait_for_selector("#message:not([hidden])", timeout=TIMEOUT)
    assert "order.product" in await page.inner_text("#message")

    await page.fill("[name='order.product']", "Spring water, 20 bottles")
    await page.fill("[name='order.unit_price']", "88")
    await page.fill("[name='order.delivery_date']", "2099-05-01")
    await page.fill("[name='order.delivery_address']", "8 Century Ave, Shanghai")
    await page.click("#save-disposition")
    await page.wait_for_function("document.querySelector('#message').textContent === 'Disposition saved'",
                                 timeout=TIMEOUT)
    await page.wait_for_function("document.querySelector('#status').dataset.status === 'ready'", timeout=TIMEOUT)
    async with app_ctx.pool.acquire() as c:
        lead = await c.fetchrow("select status, closed, claimed_by from leads where id = $1", lead_id)
        order = await c.fetchrow("select product, total from orders")
        call = await c.fetchrow("select disposition, ended_at from calls")
    assert (lead["status"], lead["closed"], lead["claimed_by"]) == ("SALE", True, None)
    assert (order["product"], str(order["total"])) == ("Spring water, 20 bottles", "88.00")
    assert call["disposition"] == "SALE" and call["ended_at"] is not None


async def test_a_dial_to_a_do_not_call_number_is_refused_with_the_reason(page, app_ctx):
    await _campaign_with_lead(app_ctx)
    await _ready_with_next_lead(page, app_ctx, "jun")
    async with app_ctx.pool.acquire() as c:  # listed while the agent reads the card
        await dnc.add(c, "+8613800138321", "asked by e-mail not to be called", source="customer_request",
                      added_by=None)

    await page.click("#dial")
    await page.wait_for_selector("#message:not([hidden])", timeout=TIMEOUT)
    message = await page.inner_text("#message")
    assert "cannot dial +8613800138321" in message and "do-not-call list" in message
    assert await page.get_attribute("#status", "data-status") == "ready"
    async with app_ctx.pool.acquire() as c:
        assert await make.count(c, "calls") == 0


async def test_a_callback_disposition_asks_for_the_due_time_and_lands_in_my_callbacks(page, app_ctx):
    await _campaign_with_lead(app_ctx)
    await _ready_with_next_lead(page, app_ctx, "hui")
    await page.select_option("#code", "CALLBACK")
    assert await page.is_visible("fieldset[data-part=follow_up]")
    assert not await page.is_visible("fieldset[data-part=order]")
    due = (dt.datetime.now() + dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    await page.fill("[name='follow_up.due_at']", due)
    await page.click("#save-disposition")
    await page.wait_for_function("document.querySelector('#message').textContent === 'Disposition saved'",
                                 timeout=TIMEOUT)
    await page.wait_for_function("document.querySelector('#callbacks').textContent.includes('Li Na')",
                                 timeout=TIMEOUT)
    async with app_ctx.pool.acquire() as c:
        follow_up = await c.fetchrow("select status, owner_agent_id from follow_ups")
    assert follow_up["status"] == "open" and follow_up["owner_agent_id"] is not None
