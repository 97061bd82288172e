"""Lead import: files in the encodings and layouts call centers get, row rejections, duplicates,
re-imports, and all-or-nothing writes (including a SIGKILL of the real CLI mid-import)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import factories
import pytest
from leadfiles import csv_bytes, write_big_csv, xlsx_bytes

from crm import db
from crm.errors import NotFound, UserError
from crm.lead_files import LeadFileError, read_lead_file
from crm.lead_import import import_leads
from telesales.settings import load_settings

SETTINGS = load_settings(environ={})
CHANNELS = SETTINGS.crm.source_channels
ROOT = Path(__file__).resolve().parent.parent


async def _import(conn, data, campaign_id, *, region="CN", file_name="leads.csv", **kw):
    return await import_leads(conn, data, file_name=file_name, campaign_id=campaign_id,
                              region=region, allowed_channels=CHANNELS, **kw)


async def _counts(conn) -> dict[str, int]:
    tables = ("customers", "customer_phones", "leads", "lead_imports")
    counts = {t: await conn.fetchval(f"select count(*) from {t}") for t in tables}
    counts["audit"] = await conn.fetchval(
        "select count(*) from audit_log where action = 'campaign.import_leads'")
    return counts


async def _leads(conn, campaign_id) -> dict[str, dict]:
    """phone -> the lead with its customer's name, company and numbers."""
    rows = await conn.fetch(
        """select l.phone, l.source_channel, l.priority, l.import_id, c.id as customer_id, c.name,
                  c.company, c.email, c.notes, c.tags,
                  array(select e164 from customer_phones p where p.customer_id = c.id
                        order by e164) as numbers
           from leads l join customers c on c.id = l.customer_id
           where l.campaign_id = $1""",
        campaign_id,
    )
    return {r["phone"]: dict(r) for r in rows}


GBK_ROWS = [
    ["姓名", "手机", "电话", "公司", "来源", "备注", "邮箱"],
    ["张伟", "138 0013 8000", "010-8888 8888", "北京科技有限公司", "展會", "老客户, 回访",
     "zhang@example.com"],
    ["王芳", "13912345678", "", "上海贸易公司", "referral", "第一行\n第二行", ""],
    ["李娜", "", "", "广州公司", "", "", ""],
    ["刘洋", "12345", "", "", "", "", ""],
    ["陈静", "13700001111", "", "", "电视广告", "", ""],
    ["杨磊", "13600002222", "", "", "", "", "not-an-email"],
    ["赵敏", "+86 138-0013-8000", "", "", "", "", ""],
    [],
    ["黄强", "13500003333", "", "", "", "", ""],
    ["周杰", "13400004444", "", "", "", "", "", "多出来的"],
    ["吴刚", "13300005555", "", "", "", "", ""],
    ["郑爽", "0086 13200006666", "", "", "", "", ""],
    ["孙丽", "13100007777", "", "", "", "", ""],
]
GBK_REJECTED = [
    {"row": 3, "reason": "no phone number"},
    {"row": 4, "reason": "invalid phone number '12345' for region CN"},
    {"row": 5, "reason": f"unknown source channel '电视广告' (allowed: {', '.join(CHANNELS)})"},
    {"row": 6, "reason": "invalid email 'not-an-email'"},
    {"row": 9, "reason": "number +8613500003333 is on the do-not-call list"},
    {"row": 10, "reason": "wrong number of fields: 8, the header has 7"},
]


# Chunks of 3 rows put the duplicate of row 1 (row 7) in a later chunk than its original.
@pytest.mark.parametrize("chunk_rows", [10_000, 3])
async def test_gbk_csv_with_chinese_headers_imports_valid_rows_and_rejects_bad_ones(
        conn, chunk_rows):
    campaign = await factories.campaign(conn)
    await factories.lead(conn, campaign, number="+8613300005555")  # row 11: already in campaign
    other = await factories.campaign(conn)
    existing = await factories.customer(conn, name="孙丽 (老客户)", phones=["+8613100007777"])
    await factories.lead(conn, other, customer_id=existing, number="+8613100007777")
    await conn.execute("insert into do_not_call (e164, reason) values ('+8613500003333', 'asked')")
    before = await _counts(conn)
    data = csv_bytes(GBK_ROWS, encoding="gbk")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")  # really GBK, as Excel on a Chinese Windows saves it

    summary = await _import(conn, data, campaign, chunk_rows=chunk_rows)

    assert summary.to_json() == {"imported": 4, "duplicates": 2, "rejected": GBK_REJECTED}
    leads = await _leads(conn, campaign)
    assert set(leads) == {"+8613800138000", "+8613912345678", "+8613200006666", "+8613100007777",
                          "+8613300005555"}
    zhang = leads["+8613800138000"]
    assert (zhang["name"], zhang["company"], zhang["email"]) == (
        "张伟", "北京科技有限公司", "zhang@example.com")
    assert zhang["numbers"] == ["+861088888888", "+8613800138000"]  # 手机 and 电话 both kept
    assert zhang["source_channel"] == "展會"
    assert zhang["notes"] == "老客户, 回访"
    assert leads["+8613912345678"]["notes"] == "第一行\n第二行"
    assert leads["+8613912345678"]["source_channel"] == "referral"
    # an existing customer gets the lead, and keeps the name it had
    assert leads["+8613100007777"]["customer_id"] == existing
    assert leads["+8613100007777"]["name"] == "孙丽 (老客户)"
    labels = dict(await conn.fetch("select e164, label from customer_phones"))
    assert labels["+8613800138000"] == "mobile" and labels["+861088888888"] == "phone"
    after = await _counts(conn)
    assert after["customers"] - before["customers"] == 3
    assert after["customer_phones"] - before["customer_phones"] == 4
    assert after["leads"] - before["leads"] == 4
    record = await conn.fetchrow("select * from lead_imports")
    assert (record["imported"], record["duplicates"], record["rejected"]) == (4, 2, 6)
    assert {lead["import_id"] for p, lead in leads.items() if p != "+8613300005555"} == {
        record["id"]}
    audit = await conn.fetchrow("select * from audit_log where action = 'campaign.import_leads'")
    assert (audit["entity"], audit["entity_id"]) == ("campaign", str(campaign))
    assert audit["details"]["imported"] == 4

    again = await _import(conn, data, campaign, chunk_rows=chunk_rows)

    assert again.to_json() == {"imported": 0, "duplicates": 6, "rejected": GBK_REJECTED}
    final = await _counts(conn)
    for table in ("customers", "customer_phones", "leads"):
        assert final[table] == after[table]


@pytest.mark.parametrize("chunk_rows", [10_000, 1])
async def test_a_number_named_earlier_in_the_file_keeps_that_rows_customer(conn, chunk_rows):
    campaign = await factories.campaign(conn)
    rows = [["姓名", "手机", "电话"],
            ["张伟", "13800138000", "010-8888 8888"],
            ["前台", "010 8888 8888", ""]]  # the switchboard row 1 already named

    summary = await _import(conn, csv_bytes(rows), campaign, chunk_rows=chunk_rows)

    assert summary.to_json() == {"imported": 2, "duplicates": 0, "rejected": []}
    leads = await _leads(conn, campaign)
    assert leads["+861088888888"]["customer_id"] == leads["+8613800138000"]["customer_id"]
    assert leads["+861088888888"]["name"] == "张伟"
    assert await conn.fetchval("select count(*) from customers") == 1


async def test_utf8_bom_csv_with_traditional_headers_reads_taiwan_numbers(conn):
    campaign = await factories.campaign(conn)
    rows = [
        ["姓名", "手機", "電話", "公司名稱", "來源", "備註"],
        ["陳小明", "0912-345-678", "(02) 2345-6789", "台北科技股份有限公司", "partner", "VIP"],
        ["林美玲", "0922 333 444", "", "高雄貿易", "", ""],
        ["王大同", "0912345678", "", "", "", "重複"],
        ["張三", "09123", "", "", "", ""],
    ]
    data = csv_bytes(rows, bom=True)

    summary = await _import(conn, data, campaign, region="TW", default_source="Referral")

    assert summary.to_json() == {"imported": 2, "duplicates": 1, "rejected": [
        {"row": 4, "reason": "invalid phone number '09123' for region TW"}]}
    leads = await _leads(conn, campaign)
    assert leads["+886912345678"]["name"] == "陳小明"  # the BOM is not part of the 姓名 header
    assert leads["+886912345678"]["numbers"] == ["+886223456789", "+886912345678"]
    assert leads["+886912345678"]["source_channel"] == "partner"
    assert leads["+886922333444"]["source_channel"] == "referral"  # --source, spelled as configured
    assert (await _import(conn, data, campaign, region="TW")).imported == 0


async def test_semicolon_csv_with_english_headers_and_quoted_delimiters(conn):
    campaign = await factories.campaign(conn)
    rows = [
        ["Full Name", "Mobile", "Company", "Lead Source", "E-mail", "Priority", "Tags"],
        ["Alice Smith", "+44 7400 123456", "Acme; Ltd", "Web Search", "alice@example.com", "5",
         "vip, uk"],
        ["Bob Jones", "07400 654321", "Beta", "", "bob@example.com", "", ""],
        ["Carol", "+44 20 7946 0958", "", "", "", "high", ""],
        ["Dave", "", "", "", "", "", ""],
    ]
    data = csv_bytes(rows, delimiter=";", newline="\n")

    summary = await _import(conn, data, campaign, region="GB")

    assert summary.to_json() == {"imported": 2, "duplicates": 0, "rejected": [
        {"row": 3, "reason": "invalid priority 'high' (a whole number)"},
        {"row": 4, "reason": "no phone number"}]}
    leads = await _leads(conn, campaign)
    alice = leads["+447400123456"]
    assert (alice["name"], alice["company"]) == ("Alice Smith", "Acme; Ltd")
    assert (alice["source_channel"], alice["priority"], alice["tags"]) == (
        "web search", 5, ["vip", "uk"])
    assert leads["+447400654321"]["name"] == "Bob Jones"
    assert (await _import(conn, data, campaign, region="GB")).to_json()["imported"] == 0


async def test_xlsx_with_a_title_row_and_numbers_stored_as_numbers(conn):
    campaign = await factories.campaign(conn)
    rows = [
        ["客户名单 2025"],
        ["姓名", "手机号码", "公司", "备注"],
        ["张伟", 13800138000, "北京科技", None],
        ["王芳", "139-1234-5678", "上海贸易", "回访"],
        [None, None, None, None],
        ["李娜", 12345, None, None],
        ["刘洋", 13800138000.0, None, None],
    ]
    data = xlsx_bytes(rows)

    summary = await _import(conn, data, campaign, file_name="名单.xlsx")

    assert summary.to_json() == {"imported": 2, "duplicates": 1, "rejected": [
        {"row": 4, "reason": "invalid phone number '12345' for region CN"}]}
    leads = await _leads(conn, campaign)
    assert leads["+8613800138000"]["name"] == "张伟"
    assert leads["+8613912345678"]["company"] == "上海贸易"
    # XLSX is recognised by its content, whatever the upload was called
    assert (await _import(conn, data, campaign, file_name="upload")).to_json() == {
        "imported": 0, "duplicates": 3, "rejected": summary.to_json()["rejected"]}


async def test_a_cell_with_two_numbers_gives_the_customer_both(conn):
    campaign = await factories.campaign(conn)
    rows = [["姓名", "联系电话"], ["张伟", "13800138000 / (010) 8888-8888"]]

    summary = await _import(conn, csv_bytes(rows), campaign)

    assert summary.imported == 1
    lead = (await _leads(conn, campaign))["+8613800138000"]
    assert lead["numbers"] == ["+861088888888", "+8613800138000"]


@pytest.mark.parametrize(("delimiter", "encoding"),
                         [("\t", "utf-16"), ("|", "utf-8"), (",", "gb18030"), (";", "utf-8-sig")])
def test_delimiter_and_encoding_are_recognised(delimiter, encoding):
    rows = [["姓名", "手机", "备注"], ["张伟", "138 0013 8000", "a, b; c | d"]]
    data = csv_bytes(rows, delimiter=delimiter, encoding=encoding)

    table = read_lead_file(data, "leads.txt")

    assert table.header == rows[0]
    assert list(table.rows) == [(1, rows[1])]


async def test_big5_csv_is_told_apart_from_gbk(conn):
    campaign = await factories.campaign(conn)
    rows = [["姓名", "手機", "公司"], ["陳小明", "0912345678", "台北科技股份有限公司"],
            ["林美玲", "0922333444", "高雄貿易公司"]]

    await _import(conn, csv_bytes(rows, encoding="big5"), campaign, region="TW")

    names = {lead["name"] for lead in (await _leads(conn, campaign)).values()}
    assert names == {"陳小明", "林美玲"}


async def test_big5_data_under_english_headers_is_detected_too(conn):
    campaign = await factories.campaign(conn)
    rows = [["name", "phone", "company"], ["陳小明", "0912345678", "台北科技股份有限公司"],
            ["林美玲", "0922333444", "高雄貿易公司"], ["黃志強", "0933444555", "台中精密機械"]]

    await _import(conn, csv_bytes(rows, encoding="big5"), campaign, region="TW")

    companies = {lead["company"] for lead in (await _leads(conn, campaign)).values()}
    assert companies == {"台北科技股份有限公司", "高雄貿易公司", "台中精密機械"}


async def test_file_without_a_phone_column_fails_whole_and_shows_the_header(conn):
    campaign = await factories.campaign(conn)
    data = csv_bytes([["客户", "号码"], ["张伟", "13800138000"]], encoding="gbk")

    with pytest.raises(LeadFileError) as e:
        await _import(conn, data, campaign)

    assert "['客户', '号码']" in e.value.message and "--encoding" in e.value.message
    assert (await _counts(conn))["lead_imports"] == 0


async def test_forced_wrong_encoding_names_it_and_the_byte_offset(conn):
    campaign = await factories.campaign(conn)
    data = csv_bytes([["phone", "name"], ["13800138000", "张伟"]], encoding="gbk")

    expected = r"not valid utf-8: byte 0x\w\w at offset 24 \(line 2\)"
    with pytest.raises(LeadFileError, match=expected):
        await _import(conn, data, campaign, encoding="utf-8")


async def test_required_fields_from_settings_reject_rows_without_them(conn):
    campaign = await factories.campaign(conn)
    data = csv_bytes([["name", "phone"], ["", "13800138000"], ["张伟", "13912345678"]])

    summary = await _import(conn, data, campaign, required_fields=("phone", "name"))

    assert summary.to_json() == {"imported": 1, "duplicates": 0, "rejected": [
        {"row": 1, "reason": "missing required field 'name'"}]}
    with pytest.raises(LeadFileError, match="no company column"):
        await _import(conn, data, campaign, required_fields=("phone", "company"))


async def test_unknown_default_source_or_campaign_fails_before_writing(conn):
    campaign = await factories.campaign(conn)
    data = csv_bytes([["phone"], ["13800138000"]])
    with pytest.raises(UserError, match="unknown source channel 'billboard'"):
        await _import(conn, data, campaign, default_source="billboard")
    with pytest.raises(NotFound):
        await _import(conn, data, campaign + 1000)
    assert (await _counts(conn))["lead_imports"] == 0


async def test_failure_after_some_rows_were_written_leaves_nothing_of_the_file(conn):
    campaign = await factories.campaign(conn)
    data = csv_bytes([["姓名", "手机"]] + [[f"客户{i}", f"1380013{i:04d}"] for i in range(50)])
    written = []

    def fail_midway(done, total):
        written.append(done)
        if done == 20:  # the first chunk is in the tables, the rest is not
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        await _import(conn, data, campaign, progress=fail_midway, chunk_rows=20)

    assert written == [20]

    assert await _counts(conn) == {"customers": 0, "customer_phones": 0, "leads": 0,
                                   "lead_imports": 0, "audit": 0}
    assert (await _import(conn, data, campaign)).imported == 50


async def test_concurrent_imports_sharing_numbers_give_each_number_one_customer(db_url):
    first, second = await db.connect(db_url), await db.connect(db_url)
    try:
        campaigns = [await factories.campaign(first) for _ in range(2)]
        rows = [[f"客户{i}", f"1390013{i:04d}"] for i in range(2000)]
        data = csv_bytes([["姓名", "手机"], *rows])

        results = await asyncio.gather(_import(first, data, campaigns[0]),
                                       _import(second, data, campaigns[1]))

        assert [r.imported for r in results] == [2000, 2000]
        assert await first.fetchval("select count(*) from customers") == 2000
        # every lead belongs to the customer that owns its number
        assert await first.fetchval(
            """select count(*) from leads l join customer_phones p
               on p.e164 = l.phone and p.customer_id = l.customer_id""") == 4000
    finally:
        await first.close()
        await second.close()


# -- the real CLI --------------------------------------------------------------


def _cli(db_url: str, *args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "TELESALES_DATABASE_URL": db_url, "TELESALES_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "-m", "telesales", "import", "leads", *args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)


async def _run_cli(db_url: str, *args: str) -> tuple[int, str, str]:
    proc = _cli(db_url, *args)
    out, err = await asyncio.to_thread(proc.communicate, timeout=120)
    return proc.returncode, out, err


async def test_cli_prints_the_exact_json_summary(conn, db_url, tmp_path):
    await factories.campaign(conn, name="春季促销")
    path = tmp_path / "leads.csv"
    path.write_bytes(csv_bytes(GBK_ROWS[:5], encoding="gbk"))

    code, out, err = await _run_cli(db_url, str(path), "--campaign", "春季促销", "--json")

    assert code == 0, err
    assert json.loads(out) == {"imported": 2, "duplicates": 0, "rejected": GBK_REJECTED[:2]}


async def test_cli_reports_missing_file_and_unknown_campaign(conn, db_url, tmp_path):
    code, _, err = await _run_cli(db_url, str(tmp_path / "nope.csv"), "--campaign", "x")
    assert code == 2 and "no such file" in err
    path = tmp_path / "leads.csv"
    path.write_bytes(csv_bytes([["phone"], ["13800138000"]]))
    code, _, err = await _run_cli(db_url, str(path), "--campaign", "no such campaign")
    assert code == 1 and "no campaign named 'no such campaign'" in err


async def _wait_for(condition, deadline_s: float, what: str):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        result = await condition()
        if result:
            return result
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


async def test_sigkill_mid_import_leaves_no_rows_and_the_next_import_succeeds(
        conn, db_url, tmp_path):
    await factories.campaign(conn, name="big")
    path = tmp_path / "big.csv"
    numbers = write_big_csv(path, 100_000)
    database = await conn.fetchval("select current_database()")
    proc = _cli(db_url, str(path), "--campaign", "big", "--json")

    async def import_writing():
        if proc.poll() is not None:
            raise AssertionError(f"the import ended before it was killed: {proc.communicate()}")
        # the import's own statements, inside its open transaction, into the real tables
        return await conn.fetchval(
            """select pid from pg_stat_activity
               where datname = $1 and pid <> pg_backend_pid() and state = 'active'
                 and xact_start is not null
                 and query ~* '^\\s*insert into (customers|customer_phones|leads)\\M'""",
            database)

    backend = await _wait_for(import_writing, 120, "the import to write rows")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    async def backend_gone():
        return not await conn.fetchval("select count(*) from pg_stat_activity where pid = $1",
                                       backend)

    await _wait_for(backend_gone, 120, "the killed import's server session to end")
    assert await _counts(conn) == {"customers": 0, "customer_phones": 0, "leads": 0,
                                   "lead_imports": 0, "audit": 0}

    code, out, err = await _run_cli(db_url, str(path), "--campaign", "big", "--json")

    assert code == 0, err
    assert json.loads(out) == {"imported": 100_000, "duplicates": 0, "rejected": []}
    assert await conn.fetchval("select count(*) from leads") == 100_000
    sample = await conn.fetch("select phone from leads where phone = any($1::text[])",
                              numbers[::997])
    assert len(sample) == len(numbers[::997])


@pytest.mark.parametrize("bad", ["ZZ", "xx"])
async def test_unknown_region_is_refused(conn, bad):
    campaign = await factories.campaign(conn)
    with pytest.raises(UserError, match="unknown region"):
        await _import(conn, csv_bytes([["phone"], ["1"]]), campaign, region=bad)
