"""The `telesales` command line: serve, users, campaigns, lead import, migrate, qa."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from types import SimpleNamespace

import asyncpg

from crm import campaigns as campaign_store
from crm import users as user_store
from crm.db import MigrationError
from crm.errors import UserError
from telesales import passwords, store
from telesales.logs import configure_logging
from telesales.settings import SettingsError, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="telesales", description="Call-center service")
    parser.add_argument("--config", help="a TOML file overriding config/default.toml")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the web service (embedded database unless configured)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("migrate", help="apply database migrations and exit")
    p.set_defaults(func=cmd_migrate)

    users = sub.add_parser("users", help="manage users").add_subparsers(dest="action", required=True)
    p = users.add_parser("add", help="create a user; password from stdin, or generated and printed once")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=user_store.ROLES)
    p.add_argument("--team")
    p.add_argument("--sip-uri", help="the agent's own phone, e.g. sip:1001@pbx.example")
    p.add_argument("--skills", default="", help="comma-separated skills")
    p.set_defaults(func=cmd_users_add)

    camps = sub.add_parser("campaigns", help="manage campaigns").add_subparsers(dest="action", required=True)
    p = camps.add_parser("add", help="create a campaign")
    p.add_argument("name")
    p.add_argument("--kind", default="outbound_sales", choices=campaign_store.KINDS)
    p.add_argument("--dialing-mode", default="preview", choices=campaign_store.DIALING_MODES)
    p.add_argument("--script", default="")
    p.set_defaults(func=cmd_campaigns_add)

    imp = sub.add_parser("import", help="import data").add_subparsers(dest="what", required=True)
    p = imp.add_parser("leads", help="import a CSV or XLSX lead list into a campaign (one transaction)")
    p.add_argument("file")
    p.add_argument("--campaign", required=True, help="campaign name")
    p.add_argument("--region", help="region for numbers without a country code (default crm.default_region)")
    p.add_argument("--source", help="source channel for rows that name none")
    p.add_argument("--encoding", help="file encoding (default: detected; UTF-8, GB18030/GBK, Big5)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_import_leads)

    p = sub.add_parser("call", help="line test: place one call through a seat (no service needed) and print it")
    p.add_argument("target", help="SIP URI to call, e.g. sip:+8613800138000@trunk.example")
    p.add_argument("--play", help="WAV file to play as the local side")
    p.add_argument("--hangup-after", type=float, help="hang up S seconds after the answer (default: wait)")
    p.add_argument("--ring-timeout", type=float, help="give up after ringing S seconds")
    p.add_argument("--json", action="store_true", help="print the call record as JSON")
    p.set_defaults(func=cmd_call)

    qa = sub.add_parser("qa", help="call quality").add_subparsers(dest="action", required=True)
    p = qa.add_parser("score", help="transcribe and score a WAV recording (left = agent, right = customer)")
    p.add_argument("file")
    p.add_argument("--scorecard", help="name in config/scorecards/ or a .toml path (default qa.scorecard)")
    p.add_argument("--disposition", help="the call's disposition code, e.g. SALE (some checks apply only to some)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_qa_score)
    p = qa.add_parser("worker", help="claim QA jobs from the database, transcribe and score them, store the results")
    p.add_argument("--once", action="store_true", help="process the jobs that are ready, then exit")
    p.add_argument("--worker-id", help="name in the job table (default host-pid)")
    p.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)  # set by serve: stop when the service dies
    p.set_defaults(func=cmd_qa_worker)
    p = qa.add_parser("rescore", help="score stored transcripts again under the current scorecard (no model needed)")
    p.add_argument("--call", help="one call's id")
    p.add_argument("--scorecard", help="only results of this scorecard")
    p.add_argument("--since", help="only calls from this date (crm.default_time_zone) or ISO time on")
    p.add_argument("--json", action="store_true", help="print what was re-scored as JSON")
    p.set_defaults(func=cmd_qa_rescore)
    tokens = qa.add_parser("token", help="worker tokens: QA workers on other machines fetch recordings with one")
    tokens = tokens.add_subparsers(dest="token_action", required=True)
    p = tokens.add_parser("create", help="make a worker token; it is printed once and stored hashed")
    p.add_argument("name", help="who uses it, e.g. the worker machine's name")
    p.set_defaults(func=cmd_qa_token_create)
    p = tokens.add_parser("revoke", help="revoke a worker token at once")
    p.add_argument("name")
    p.set_defaults(func=cmd_qa_token_revoke)
    p = tokens.add_parser("list", help="list worker tokens (names and use, never the tokens)")
    p.set_defaults(func=cmd_qa_token_list)
    _add_report_parser(sub)
    return parser


def _add_report_parser(sub) -> None:
    from crm.report_definitions import GROUPINGS, REPORTS

    p = sub.add_parser("report", help="print a report (funnel, quality, cost) for a date range")
    p.add_argument("name", choices=list(REPORTS))
    p.add_argument("--from", dest="first", required=True, type=_iso_date, help="first day, e.g. 2026-03-01")
    p.add_argument("--to", dest="last", required=True, type=_iso_date, help="last day (inclusive)")
    p.add_argument("--by", default="day", choices=list(GROUPINGS))
    p.add_argument("--format", default="json", choices=("json", "csv"))
    p.set_defaults(func=cmd_report)


def _iso_date(value: str):
    import datetime as dt

    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date like 2026-03-31, got {value!r}") from None


def cmd_report(args, settings) -> int:
    from crm import reports
    from crm.json_values import json_default
    from telesales.report_export import to_csv

    async def work(conn):
        return await reports.run_report(
            conn, args.name, args.first, args.last, args.by, reports.report_settings(settings.reports)
        )

    report = asyncio.run(_with_store(settings, work))
    if args.format == "csv":
        sys.stdout.write(to_csv(report))
    else:
        print(json.dumps(report, default=json_default, ensure_ascii=False, indent=1))
    return 0


async def _with_store(settings: SimpleNamespace, work):
    """Open the store (migrating it), run work(conn), close."""
    catalog = store.disposition_catalog(settings)
    url = await store.database_url(settings)
    await store.prepare(url, catalog)
    from crm import db

    conn = await db.connect(url)
    try:
        return await work(conn)
    finally:
        await conn.close()


def _read_password() -> tuple[str, bool]:
    """Password from stdin when it is piped, else generated; returns (password, generated)."""
    if not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
        if password:
            return password, False
    elif sys.stdin.isatty() and sys.stdout.isatty():
        password = getpass.getpass("Password (empty: generate one): ")
        if password:
            return password, False
    return passwords.generate_password(), True


def cmd_users_add(args, settings) -> int:
    password, generated = _read_password()
    try:
        password_hash = passwords.hash_password(password)
    except ValueError as e:
        print(f"telesales: {e}", file=sys.stderr)
        return 2
    skills = [s.strip() for s in args.skills.split(",") if s.strip()]

    async def work(conn):
        return await user_store.create_user(
            conn, args.name, args.role, password_hash, team=args.team, sip_uri=args.sip_uri, skills=skills
        )

    user = asyncio.run(_with_store(settings, work))
    print(f"created {user['role']} {user['username']} (id {user['id']})")
    if generated:
        print(f"password: {password}  (shown once; store it now)")
    return 0


def cmd_campaigns_add(args, settings) -> int:
    async def work(conn):
        return await campaign_store.create_campaign(
            conn, args.name, kind=args.kind, dialing_mode=args.dialing_mode, script=args.script
        )

    campaign = asyncio.run(_with_store(settings, work))
    print(f"created campaign {campaign['name']} (id {campaign['id']})")
    return 0


def cmd_import_leads(args, settings) -> int:
    from telesales.lead_import_cli import run_import

    return run_import(args, settings, _with_store)


def cmd_migrate(args, settings) -> int:
    asyncio.run(_with_store(settings, lambda conn: asyncio.sleep(0)))
    print("database is up to date")
    return 0


def cmd_call(args, settings) -> int:
    from telesales.seats import line_test

    result = asyncio.run(line_test(settings, args.target, play=args.play, hangup_after=args.hangup_after,
                                   ring_timeout=args.ring_timeout))
    record = result.to_dict()
    if args.json:
        print(json.dumps(record, ensure_ascii=False))
    else:
        for key, value in record.items():
            print(f"{key:>17}: {value}")
    return 0 if result.status == "answered" else 1


def cmd_qa_score(args, settings) -> int:
    from qa.command import score_command

    return score_command(args, settings)


def cmd_qa_worker(args, settings) -> int:
    from qa.worker import worker_command

    return worker_command(args, settings, _with_store)


def cmd_qa_rescore(args, settings) -> int:
    from qa.rescore import rescore_command

    if not (args.call or args.scorecard):
        print("telesales: qa rescore needs --call ID or --scorecard NAME [--since DATE]", file=sys.stderr)
        return 2
    return rescore_command(args, settings, _with_store)


def cmd_qa_token_create(args, settings) -> int:
    from crm import worker_tokens

    row, token = asyncio.run(_with_store(settings, lambda conn: worker_tokens.create_token(conn, args.name)))
    print(f"created worker token {row['name']} (id {row['id']})")
    print(f"token: {token}  (shown once; set it as qa.worker_token on the worker machine)")
    return 0


def cmd_qa_token_revoke(args, settings) -> int:
    from crm import worker_tokens

    row = asyncio.run(_with_store(settings, lambda conn: worker_tokens.revoke(conn, args.name)))
    print(f"revoked worker token {row['name']}")
    return 0


def cmd_qa_token_list(args, settings) -> int:
    from crm import worker_tokens

    for row in asyncio.run(_with_store(settings, worker_tokens.list_tokens)):
        state = f"revoked {row['revoked_at']:%Y-%m-%d %H:%M}" if row["revoked_at"] else "live"
        used = f"last used {row['last_used_at']:%Y-%m-%d %H:%M}" if row["last_used_at"] else "never used"
        print(f"{row['name']}\t{state}\t{used}")
    return 0


def cmd_serve(args, settings) -> int:
    from telesales.server import serve

    return serve(settings)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except SettingsError as e:
        print(f"telesales: configuration error: {e}", file=sys.stderr)
        return 2
    configure_logging(settings.log.level, settings.log.format)
    try:
        return args.func(args, settings)
    except UserError as e:
        print(f"telesales: {e.message}", file=sys.stderr)
        return 1
    except SettingsError as e:
        print(f"telesales: configuration error: {e}", file=sys.stderr)
        return 2
    except MigrationError as e:
        print(f"telesales: cannot start: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the interpreter's final flush quiet
        return 141
    except (ConnectionError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
        where = "the embedded database" if not settings.database.url else "database.url"
        print(f"telesales: cannot use {where}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
