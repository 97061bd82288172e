"""The wallboard page in headless Chromium: an agent's status change and a call starting show on the
supervisor's board within 1 s of the agent's request, and a live alert appears with a link to the call."""

from __future__ import annotations

import datetime as dt
import json
import time

import factories as make
from browser_helpers import log_in_page
from wallboard_helpers import logged_in, make_user

ALL_DAY = {"calling_window_start": dt.time(0), "calling_window_end": dt.time(0)}  # tests run at any hour
TIMEOUT = 15_000  # ms: how long to wait at most; the 1 s promise is checked on the measured times

# Records, in the page, when each (agent, status) and (agent, call) first shows in the table.
OBSERVER = """
() => {
  window.__seen = {};
  const note = () => {
    for (const tr of document.querySelectorAll('#agents tr[data-agent-id]')) {
      const id = tr.dataset.agentId;
      const keys = [`${id}:${tr.dataset.status}`];
      const link = tr.querySelector('a.call-link');
      if (link) keys.push(`${id}:${link.getAttribute('href')}`);
      for (const k of keys) if (!(k in window.__seen)) window.__seen[k] = Date.now();
    }
  };
  note();
  new MutationObserver(note).observe(document.querySelector('#agents'), {childList: true, subtree: true});
}
"""


async def _shown(page, key: str) -> float:
    """Wait until `key` has been seen; the page's clock (ms since the epoch) when it first was."""
    await page.wait_for_function(f"window.__seen && {json.dumps(key)} in window.__seen", timeout=TIMEOUT)
    return await page.evaluate(f"window.__seen[{json.dumps(key)}]")


async def test_status_change_and_call_start_show_on_the_wallboard_within_a_second(page, client, app_ctx):
    agent = await make_user(app_ctx, "mei", "agent", team="North")
    async with app_ctx.pool.acquire() as c:
        campaign = await make.campaign(c, name="Spring water", **ALL_DAY)
        customer = await make.customer(c, "Li Na", phones=["+8613800138321"])
        lead = await make.lead(c, campaign, customer, "+8613800138321")
    await log_in_page(page, app_ctx, "supervisor", "floor_boss")
    await page.goto(page.base_url + "/supervisor/wallboard")
    await page.wait_for_selector("#conn[data-state=live]", timeout=TIMEOUT)
    await page.wait_for_selector(f"#agents tr[data-agent-id='{agent['id']}'][data-status=logged_out]",
                                 timeout=TIMEOUT)
    await page.evaluate(OBSERVER)

    http, csrf = await logged_in(client, "mei")
    headers = {"X-CSRF-Token": csrf}
    async with http:
        sent = time.time() * 1000
        resp = await http.post("/api/v1/agent/status", json={"status": "ready", "campaign_id": campaign},
                               headers=headers)
        assert resp.status == 200, await resp.text()
        ready_ms = await _shown(page, f"{agent['id']}:ready") - sent

        resp = await http.post("/api/v1/agent/next-lead", json={"campaign_id": campaign}, headers=headers)
        assert (await resp.json())["lead"]["lead_id"] == lead
        sent = time.time() * 1000
        resp = await http.post("/api/v1/agent/dial", json={"lead_id": lead}, headers=headers)
        assert resp.status == 201, await resp.text()
        call_id = (await resp.json())["call_id"]
        call_ms = await _shown(page, f"{agent['id']}:/supervisor/calls/{call_id}") - sent

    print(f"\nshown after the agent's request: status {ready_ms:.0f} ms, call {call_ms:.0f} ms; "
          f"loadavg {open('/proc/loadavg').read().strip()}")
    row = page.locator(f"#agents tr[data-agent-id='{agent['id']}']")
    assert await row.get_attribute("data-status") == "on_call"
    assert await row.locator(".customer").inner_text() == "Li Na"
    assert await row.locator(".campaign").inner_text() == "Spring water"
    assert await row.locator(".dials").inner_text() == "1"
    assert "North: 1 agents" in await page.locator("tr.team-total[data-team=North]").inner_text()
    assert ready_ms < 1000 and call_ms < 1000

    async with app_ctx.pool.acquire() as c:
        await c.execute("select pg_notify('live_events', $1)", json.dumps(
            {"type": "alert", "call_id": call_id, "kind": "complaint", "speaker": "customer", "text": "我要投诉"}))
    alert = page.locator(f"#alerts li[data-call-id='{call_id}']")
    await alert.wait_for(timeout=TIMEOUT)
    assert "我要投诉" in await alert.inner_text() and "mei" in await alert.inner_text()
    assert await alert.locator("a").get_attribute("href") == f"/supervisor/calls/{call_id}"


async def test_an_agent_gets_no_wallboard_page(page, app_ctx):
    await log_in_page(page, app_ctx, "agent", "just_agent")
    resp = await page.goto(page.base_url + "/supervisor/wallboard")
    assert resp.status == 403
