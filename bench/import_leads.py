"""Lead import speed against a plain COPY of the same rows.

    .venv/bin/python bench/import_leads.py [--rows 100000] [--repeat 3] [--profile]

Starts its own embedded PostgreSQL in a temporary folder and generates a CSV of
mixed lead rows (CN mobile numbers written many ways, some landlines, Chinese
and English names, ~2% invalid, ~2% duplicates). Then, each round in fresh
databases made from one migrated template:

- ours: crm.lead_import.import_leads on the CSV bytes (decode, parse, full
  validation, staging COPY, set-based inserts, one transaction);
- baseline: a plain COPY of the rows our import stored (already normalised,
  ids given) into customers, customer_phones and leads, in one transaction,
  with no validation.

Both rates are rows of the input file per second, so the ratio ours/COPY is
the baseline's time over ours. The best round of each counts.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import csv
import io
import pstats
import random
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crm import db  # noqa: E402
from crm.lead_import import import_leads  # noqa: E402

MOBILE_BLOCKS = (130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 150, 151, 152, 153, 155, 156,
                 157, 158, 159, 166, 177, 180, 181, 182, 183, 185, 186, 187, 188, 189, 198, 199)
CHANNELS = ["trade show", "referral", "web search", "purchased list", "partner"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国志红玉兰文斌宇浩"
ENGLISH = ["James Smith", "Mary Chan", "Peter Wong", "Linda Lee", "David Ho", "Grace Lam"]
COMPANIES = ["北京科技有限公司", "上海贸易有限公司", "深圳电子厂", "广州物流", "杭州网络科技",
             "", "", "Acme Trading Ltd"]


def _written(n: str, rng: random.Random) -> str:
    """A CN mobile number as people type it into a spreadsheet."""
    return rng.choice([
        n, n, n, f"{n[:3]} {n[3:7]} {n[7:]}", f"{n[:3]}-{n[3:7]}-{n[7:]}", f"+86 {n}",
        f"+86 {n[:3]} {n[3:7]} {n[7:]}", f"0086-{n[:3]}-{n[3:7]}-{n[7:]}", f"86{n}",
        f"({n[:3]}) {n[3:7]}.{n[7:]}",
    ])


def generate_csv(rows: int, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    # distinct numbers in mobile blocks that are all valid
    mobiles = [f"{rng.choice(MOBILE_BLOCKS)}{n:08d}" for n in rng.sample(range(10**8), rows)]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(["姓名", "手机", "电话", "公司", "来源", "备注", "邮箱"])
    used = []
    for i in range(rows):
        roll = rng.random()
        if roll < 0.02 and used:
            phone = _written(rng.choice(used), rng)  # a duplicate, written another way
        elif roll < 0.04:
            phone = rng.choice(["12345", "1380013800", "238 0013 8000", "138001380001", "n/a"])
        else:
            number = mobiles[i]
            used.append(number)
            phone = _written(number, rng)
        landline = f"0{rng.choice(['10', '21', '20', '755'])}-{rng.randint(2000000, 8999999)}" \
            if rng.random() < 0.1 else ""
        name = (rng.choice(ENGLISH) if rng.random() < 0.05
                else rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(("", *GIVEN)))
        w.writerow([
            name, phone, landline, rng.choice(COMPANIES),
            rng.choice(CHANNELS) if rng.random() < 0.5 else "",
            "老客户推荐, 请回访" if rng.random() < 0.1 else "",
            f"user{i}@example.com" if rng.random() < 0.2 else "",
        ])
    return out.getvalue().encode("utf-8")


async def _fresh_database(admin: str, template: str, name: str) -> str:
    conn = await db.connect(admin)
    try:
        await conn.execute(f'drop database if exists "{name}"')
        await conn.execute(f'create database "{name}" template "{template}"')
    finally:
        await conn.close()
    return db.with_database(admin, name)


async def _ours(url: str, data: bytes, profile: bool):
    conn = await db.connect(url)
    try:
        campaign = await conn.fetchval("insert into campaigns (name) values ('bench') returning id")
        profiler = cProfile.Profile() if profile else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        summary = await import_leads(conn, data, file_name="bench.csv", campaign_id=campaign,
                                     region="CN", allowed_channels=CHANNELS)
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - started
        stored = (
            await conn.fetch("select id, name, company, email, source_channel, region, tags, notes "
                             "from customers"),
            await conn.fetch("select e164, customer_id, label, is_primary from customer_phones"),
            await conn.fetch("select customer_id, phone, priority, source_channel, import_id "
                             "from leads"),
        )
        return seconds, summary, stored, profiler
    finally:
        await conn.close()


async def _plain_copy(url: str, stored) -> float:
    customers, phones, leads = stored
    conn = await db.connect(url)
    try:
        campaign = await conn.fetchval("insert into campaigns (name) values ('bench') returning id")
        # the same rows: leads point at their import record, as ours do
        for import_id in {r["import_id"] for r in leads}:
            await conn.execute(
                "insert into lead_imports (id, campaign_id, file_name, file_sha256, imported, "
                "duplicates, rejected) values ($1, $2, 'bench.csv', '', 0, 0, 0)",
                import_id, campaign)
        lead_rows = [(campaign, *r) for r in leads]
        started = time.perf_counter()
        async with conn.transaction():
            await conn.copy_records_to_table(
                "customers", records=customers,
                columns=["id", "name", "company", "email", "source_channel", "region", "tags",
                         "notes"])
            await conn.copy_records_to_table(
                "customer_phones", records=phones,
                columns=["e164", "customer_id", "label", "is_primary"])
            await conn.copy_records_to_table(
                "leads", records=lead_rows,
                columns=["campaign_id", "customer_id", "phone", "priority", "source_channel",
                         "import_id"])
        return time.perf_counter() - started
    finally:
        await conn.close()


async def bench(rows: int, repeat: int, profile: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    folder = Path(tempfile.mkdtemp(prefix="tsbench"))
    server = pgserver.get_server(folder / "pgdata", cleanup_mode="delete")
    try:
        admin = server.get_uri()
        conn = await db.connect(admin)
        await conn.execute('create database "bench_template"')
        await conn.close()
        conn = await db.connect(db.with_database(admin, "bench_template"))
        await db.migrate(conn)
        await conn.close()

        data = generate_csv(rows)
        ours, plain, profiler = [], [], None
        for i in range(repeat):
            url = await _fresh_database(admin, "bench_template", f"bench_ours_{i}")
            seconds, summary, stored, p = await _ours(url, data, profile and i == repeat - 1)
            profiler = p or profiler
            ours.append(seconds)
            url = await _fresh_database(admin, "bench_template", f"bench_copy_{i}")
            plain.append(await _plain_copy(url, stored))
        best_ours, best_copy = min(ours), min(plain)
        print(f"file: {rows} rows, {len(data) / 1e6:.1f} MB; imported {summary.imported}, "
              f"duplicates {summary.duplicates}, rejected {len(summary.rejected)}")
        print(f"ours (import_leads):  {rows / best_ours:9,.0f} rows/s  ({best_ours:.2f} s; "
              f"rounds {', '.join(f'{s:.2f}' for s in ours)})")
        print(f"plain COPY:           {rows / best_copy:9,.0f} rows/s  ({best_copy:.2f} s; "
              f"rounds {', '.join(f'{s:.2f}' for s in plain)})")
        print(f"ratio ours/COPY:      {best_copy / best_ours:9.2f}   (goal >= 0.5)")
        if profiler:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile the last round of ours")
    args = parser.parse_args()
    asyncio.run(bench(args.rows, args.repeat, args.profile))


if __name__ == "__main__":
    main()
