"""static/live_transcript.js in headless Chromium: a supervisor's page shows the call's transcript so far, then
each new segment and alert as the store announces it (no reload, no polling)."""

from __future__ import annotations

from browser_helpers import log_in_page

from crm import live


async def test_the_page_shows_the_backlog_then_new_lines_and_alerts(page, app_ctx):
    async with app_ctx.pool.acquire() as c:
        call_id = await c.fetchval("insert into calls (direction, seat) values ('outbound', 'seat1') returning id")
        await live.add_segment(c, call_id, "agent", 1.0, 2.5, "Good morning, how can I help?")
    await log_in_page(page, app_ctx, "supervisor")
    # The supervisor's call page (built elsewhere) holds this div and loads the script; a page of our own
    # on the same origin stands in for it.
    await page.set_content(
        f'<div id="live-transcript" data-call-id="{call_id}"></div>'
        f'<script src="{page.base_url}/static/live_transcript.js"></script>'
    )
    lines = page.locator("#live-transcript li.live-line")
    await lines.first.wait_for()
    assert await lines.count() == 1
    assert await lines.first.get_attribute("data-speaker") == "agent"
    async with app_ctx.pool.acquire() as c:
        await live.add_segment(c, call_id, "customer", 3.0, 4.2, "I want a refund, 我要退款")
        await live.add_alert(c, call_id, "phrase", "customer", "退款", "I want a refund, 我要退款")
    await page.locator("li.live-line[data-speaker=customer]").wait_for()
    await page.locator("li.live-alert[data-alert='退款']").wait_for()
    texts = await lines.all_inner_texts()
    assert texts[0].startswith("0:01 Agent: Good morning") and texts[1].startswith("0:03 Customer: I want a refund")
    assert await page.locator("#live-transcript").get_attribute("data-state") == "open"


async def test_an_agent_page_gets_no_transcript(page, app_ctx):
    async with app_ctx.pool.acquire() as c:
        call_id = await c.fetchval("insert into calls (direction, seat) values ('outbound', 'seat1') returning id")
        await live.add_segment(c, call_id, "agent", 1.0, 2.5, "Good morning")
    await log_in_page(page, app_ctx, "agent")
    await page.set_content(
        f'<div id="live-transcript" data-call-id="{call_id}"></div>'
        f'<script src="{page.base_url}/static/live_transcript.js"></script>'
    )
    await page.wait_for_function("document.getElementById('live-transcript').dataset.state === 'closed'")
    assert await page.locator("#live-transcript li").count() == 0
