"""The reports API: JSON, CSV and XLSX of the same figures, for managers only; and the CLI."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import openpyxl
import report_data

QUERY = "from=2026-03-02&to=2026-03-03&by=agent"


async def _history(app_ctx):
    async with app_ctx.pool.acquire() as conn:
        return await report_data.build(conn, app_ctx.catalog)


async def test_funnel_json_csv_and_xlsx_carry_the_same_figures(client, login, app_ctx):
    await _history(app_ctx)
    await login(client, "supervisor")
    resp = await client.get(f"/api/v1/reports/funnel?{QUERY}")
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    ann = next(r for r in report["rows"] if r["label"] == "ann")
    assert (ann["dials"], ann["connects"], ann["revenue"]) == (3, 2, "0.00")
    assert "connect_rate" in report["definitions"]

    resp = await client.get(f"/api/v1/reports/funnel?{QUERY}&format=csv")
    assert resp.status == 200
    assert "attachment" in resp.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO((await resp.read()).decode("utf-8-sig"))))
    by_label = {r["label"]: r for r in rows}
    assert by_label["ann"]["dials"] == "3" and by_label["bob"]["revenue"] == "300.00"
    assert by_label["Total"]["dials"] == "7"

    resp = await client.get(f"/api/v1/reports/funnel?{QUERY}&format=xlsx")
    assert resp.status == 200
    sheet = openpyxl.load_workbook(io.BytesIO(await resp.read())).active
    header = [c.value for c in sheet[1]]
    values = {row[header.index("label")]: dict(zip(header, row, strict=True))
              for row in sheet.iter_rows(min_row=2, values_only=True)}
    assert values["bob"]["dials"] == 2 and values["bob"]["revenue"] == 300.0


async def test_quality_csv_has_a_column_per_qa_category(client, login, app_ctx):
    history = await _history(app_ctx)
    async with app_ctx.pool.acquire() as conn:
        await conn.execute("update qa_results set score = 70, categories = '{\"attitude\": 70}' where call_id = $1",
                           history.calls[4])
    await login(client, "admin")
    resp = await client.get(f"/api/v1/reports/quality?{QUERY}&format=csv")
    rows = {r["label"]: r for r in csv.DictReader(io.StringIO((await resp.read()).decode("utf-8-sig")))}
    assert rows["bob"]["qa_attitude"] == "70.0" and rows["bob"]["qa_score"] == "70.0"


async def test_agents_may_not_read_reports(client, login):
    await login(client, "agent")
    resp = await client.get(f"/api/v1/reports/funnel?{QUERY}")
    assert resp.status == 403


async def test_bad_report_queries_are_400_or_404_with_an_error_id(client, login):
    await login(client, "supervisor")
    for path, status, error in (
        (f"/api/v1/reports/sales?{QUERY}", 404, "not_found"),
        ("/api/v1/reports/funnel?from=yesterday", 400, "bad_request"),
        ("/api/v1/reports/funnel?by=region", 422, "invalid_request"),
        ("/api/v1/reports/funnel?format=pdf", 400, "bad_request"),
        ("/api/v1/reports/funnel?from=2026-03-03&to=2026-03-01", 422, "invalid_request"),
        ("/api/v1/reports/funnel?form=2026-03-03", 400, "bad_request"),
    ):
        resp = await client.get(path)
        assert (resp.status, (await resp.json())["error"]) == (status, error), path


async def test_admin_sets_a_lead_imports_cost(client, login, app_ctx):
    async with app_ctx.pool.acquire() as conn:
        campaign = await conn.fetchval("insert into campaigns (name) values ('fair') returning id")
        import_id = await conn.fetchval(
            """insert into lead_imports (campaign_id, file_name, file_sha256, imported, duplicates, rejected)
               values ($1, 'fair.csv', 'x', 1, 0, 0) returning id""", campaign)
    user = await login(client, "admin")
    headers = {"X-CSRF-Token": user["csrf_token"]}
    resp = await client.put(f"/api/v1/lead-imports/{import_id}/cost", json={"cost_per_lead": "12.5"}, headers=headers)
    assert resp.status == 200 and (await resp.json())["cost_per_lead"] == "12.5000"
    resp = await client.put(f"/api/v1/lead-imports/{import_id}/cost", json={"cost_per_lead": "-1"}, headers=headers)
    assert resp.status == 422
    resp = await client.put("/api/v1/lead-imports/999/cost", json={"cost_per_lead": None}, headers=headers)
    assert resp.status == 404


async def test_cli_prints_the_report_as_json_and_csv(db_url, app_ctx, tmp_path):
    await _history(app_ctx)
    env = {"TELESALES_DATABASE_URL": db_url, "TELESALES_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    base = [sys.executable, "-m", "telesales", "report", "funnel", "--from", "2026-03-02", "--to", "2026-03-03"]
    out = subprocess.run([*base, "--by", "campaign"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = {r["label"]: r for r in json.loads(out.stdout)["rows"]}
    assert (rows["C1"]["dials"], rows["C2"]["sales"]) == (4, 1)
    out = subprocess.run([*base, "--by", "source", "--format", "csv"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    rows = {r["label"]: r for r in csv.DictReader(io.StringIO(out.stdout))}
    assert rows["trade show"]["sales"] == "2"
    out = subprocess.run([*base[:-2], "--to", "March"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2 and "2026-03-31" in out.stderr
