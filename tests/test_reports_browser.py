"""The reports page in headless Chromium: charts drawn with data, the table, CSV and XLSX downloads."""

from __future__ import annotations

import csv

import openpyxl
import report_data
from browser_helpers import log_in_page


async def _show(page, report: str, by: str) -> None:
    await page.select_option("select[name=report]", report)
    await page.select_option("select[name=by]", by)
    await page.fill("input[name=from]", "2026-03-02")
    await page.fill("input[name=to]", "2026-03-03")
    await page.click("#filters button[type=submit]")
    await page.wait_for_selector(f"#charts[data-ready='{report}:{by}:2026-03-02:2026-03-03']")


async def _painted_pixels(page, selector: str) -> int:
    return await page.evaluate(
        """(sel) => {
            const c = document.querySelector(sel + ' canvas');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
            return n;
        }""",
        selector,
    )


async def test_reports_page_draws_charts_and_downloads_csv_and_xlsx(page, app_ctx, tmp_path):
    async with app_ctx.pool.acquire() as conn:
        await report_data.build(conn, app_ctx.catalog)
    await log_in_page(page, app_ctx, "supervisor")
    await page.goto(page.base_url + "/reports")
    await _show(page, "funnel", "agent")

    assert int(await page.get_attribute("#chart-0", "data-points")) == 15  # 3 agents x 5 series
    assert await _painted_pixels(page, "#chart-0") > 500
    assert await _painted_pixels(page, "#chart-1") > 500
    first_cells = await page.locator("#report-table tbody tr td:first-child").all_inner_texts()
    assert first_cells == ["ann", "bob", "cyd"]
    assert "human_answered" in await page.inner_text("#definitions")

    async with page.expect_download() as info:
        await page.click("#download-csv")
    path = tmp_path / "funnel.csv"
    await (await info.value).save_as(path)
    rows = {r["label"]: r for r in csv.DictReader(path.open(encoding="utf-8-sig"))}
    assert rows["bob"]["dials"] == "2" and rows["Total"]["dials"] == "7"

    await _show(page, "cost", "day")
    assert int(await page.get_attribute("#chart-0", "data-points")) == 6  # 2 days x 3 series
    async with page.expect_download() as info:
        await page.click("#download-xlsx")
    path = tmp_path / "cost.xlsx"
    await (await info.value).save_as(path)
    sheet = openpyxl.load_workbook(path).active
    labels = [row[1] for row in sheet.iter_rows(min_row=2, values_only=True)]
    assert labels == ["2026-03-02", "2026-03-03", "Total"]
