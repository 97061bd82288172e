"""Helpers for page tests in headless Chromium (the `page` fixture in conftest)."""

from __future__ import annotations

from auth_helpers import password_hash

from crm.users import create_user

PASSWORD = "correct horse"


async def log_in_page(page, app_ctx, role: str, username: str | None = None) -> str:
    """Create a user with `role` (unless `username` exists) and log the page in through the form."""
    username = username or f"{role}_{id(page) % 100000}"
    async with app_ctx.pool.acquire() as c:
        exists = await c.fetchval("select 1 from users where username = $1", username)
        if not exists:
            await create_user(c, username, role, password_hash(PASSWORD))
    await page.goto(page.base_url + "/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(lambda url: "/login" not in url)
    return username
