"""The login page in a real browser (headless Chromium)."""

from browser_helpers import log_in_page


async def test_login_form_leads_to_home_page_with_the_users_name(page, app_ctx):
    name = await log_in_page(page, app_ctx, "agent", "bella")
    assert page.url.rstrip("/") == page.base_url
    assert name in await page.inner_text("body")


async def test_wrong_password_in_the_form_shows_an_error(page, app_ctx):
    await log_in_page(page, app_ctx, "agent", "carl")
    await page.context.clear_cookies()
    await page.goto(page.base_url + "/login")
    await page.fill("input[name=username]", "carl")
    await page.fill("input[name=password]", "wrong")
    await page.click("button[type=submit]")
    assert await page.locator("[role=alert]").count() == 1
