"""Search, review and override in a real browser (headless Chromium), as a reviewer and as agents."""

from __future__ import annotations

import os
from pathlib import Path

from browser_helpers import PASSWORD, log_in_page
from scored_calls import scored_call
from test_qa_review import write_recording
from test_transcript_search import CHINESE, ENGLISH

from crm.users import create_user
from telesales.passwords import hash_password

# TELESALES_SCREENSHOTS=folder keeps a picture of the review page for a person to look at.
SCREENSHOTS = Path(os.environ["TELESALES_SCREENSHOTS"]) if os.environ.get("TELESALES_SCREENSHOTS") else None


async def _agent_with_calls(app_ctx) -> dict:
    write_recording(app_ctx.settings.data_dir, "en.wav")
    write_recording(app_ctx.settings.data_dir, "zh.wav")
    async with app_ctx.pool.acquire() as c:
        anna = (await create_user(c, "anna", "agent", hash_password(PASSWORD)))["id"]
        return {
            "en": await scored_call(c, ENGLISH, agent_id=anna, recording_path="recordings/en.wav"),
            "zh": await scored_call(c, CHINESE, agent_id=anna, recording_path="recordings/zh.wav"),
        }


async def _search_and_open(page, q: str, mode: str = "hybrid") -> None:
    await page.goto(page.base_url + "/qa/search")
    await page.fill("#q", q)
    await page.select_option("select[name=mode]", mode)
    await page.click("#search-form button[type=submit]")
    first = page.locator("#results .hit").first
    await first.wait_for()
    assert q.lower() in (await first.locator("mark").first.inner_text()).lower()
    await first.locator("a.hit-link").click()
    await page.wait_for_url(lambda url: "/review/" in url)


async def _starts_at(page, seconds: float) -> None:
    # The page seeks once the audio's metadata is in, then plays on: the position is at the
    # phrase or a little past it (a loaded machine may take a while to get here).
    await page.wait_for_function("document.getElementById('player').currentTime > 0")
    position = await page.evaluate("document.getElementById('player').currentTime")
    assert seconds - 0.05 <= position < seconds + 3.0


async def test_reviewer_finds_english_and_chinese_phrases_and_playback_starts_there(page, app_ctx):
    ids = await _agent_with_calls(app_ctx)
    await log_in_page(page, app_ctx, "qa", "rita")

    await _search_and_open(page, "want to cancel")
    assert ids["en"] in page.url and "t=6.5" in page.url
    await _starts_at(page, 6.5)
    await page.wait_for_selector("#transcript li.current:has-text('want to cancel')")

    await _search_and_open(page, "退货", mode="keyword")
    assert ids["zh"] in page.url
    await _starts_at(page, 6.5)
    await page.wait_for_selector("#transcript li.current:has-text('退货')")
    await page.screenshot(path=str(SCREENSHOTS / "review.png")) if SCREENSHOTS else None
    # clicking a line seeks there
    await page.click("#transcript li >> nth=3")
    await page.wait_for_function("Math.abs(document.getElementById('player').currentTime - 9.5) < 3")
    await page.wait_for_selector("#transcript li.current:has-text('再见')")


async def test_override_changes_the_score_the_agent_sees_it_and_another_agent_gets_nothing(page, app_ctx):
    ids = await _agent_with_calls(app_ctx)
    await log_in_page(page, app_ctx, "qa", "rita")
    await page.goto(page.base_url + f"/review/{ids['en']}")
    await page.wait_for_selector("#checks tr[data-check=needs_question]")
    before = await page.inner_text("#score")
    row = page.locator("#checks tr[data-check=needs_question]")
    assert "fail" in await row.inner_text()
    await row.locator("select[name=passed]").select_option("true")
    await row.locator("input[name=comment]").fill("asked what matters most, in other words")
    await row.locator("button[type=submit]").click()
    await page.wait_for_function(f"document.getElementById('score').textContent !== {before!r}")
    after = await page.inner_text("#score")
    assert float(after) > float(before)
    assert f"automatic {before}" in await page.inner_text("#score-note")

    await page.context.clear_cookies()
    await log_in_page(page, app_ctx, "agent", "anna")
    await page.goto(page.base_url + f"/review/{ids['en']}")
    await page.wait_for_selector("#overrides li")
    assert "asked what matters most" in await page.inner_text("#overrides")
    assert await page.inner_text("#score") == after

    await page.context.clear_cookies()
    await log_in_page(page, app_ctx, "agent", "boris")
    resp = await page.goto(page.base_url + f"/review/{ids['en']}")
    assert resp.status == 403
    assert "want to cancel" not in await page.content()
    await page.goto(page.base_url + "/qa/search?q=cancel&mode=keyword")
    await page.wait_for_function("document.getElementById('search-status').textContent === 'Nothing found'")
    assert await page.locator("#results .hit").count() == 0
    resp = await page.request.get(page.base_url + f"/api/v1/calls/{ids['en']}/recording")
    assert resp.status == 403


async def test_reviewer_claims_a_call_from_the_queue_on_the_search_page(page, app_ctx):
    ids = await _agent_with_calls(app_ctx)
    await log_in_page(page, app_ctx, "qa", "rita")
    await page.goto(page.base_url + "/qa/search")
    first = page.locator("#queue li").first
    await first.locator("button").wait_for()
    assert "anna" in await first.inner_text()
    await first.locator("button").click()
    await page.wait_for_selector("#queue li button:has-text('Yours')")
    async with app_ctx.pool.acquire() as c:
        claimed = await c.fetchval("select call_id::text from review_claims")
    assert claimed in ids.values()
    await page.screenshot(path=str(SCREENSHOTS / "search.png")) if SCREENSHOTS else None
