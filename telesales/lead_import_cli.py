"""`telesales import leads FILE --campaign NAME`: the lead import on the command line."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import phonenumbers

from crm.campaigns import find_campaign
from crm.errors import UserError
from crm.lead_import import ImportSummary, import_leads

_SHOWN_REJECTIONS = 20


def run_import(args, settings: SimpleNamespace, with_store) -> int:
    """Exit 0 when the file was imported (some rows may be rejected), 1 when the whole file
    failed, 2 for a bad invocation."""
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return _fail(f"no such file: {path}", 2)
    except OSError as e:
        return _fail(f"cannot read {path}: {e.strerror}", 2)
    region = (args.region or settings.crm.default_region).upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        return _fail(f"unknown region {region!r}; use an ISO 3166 code like CN, TW, US", 2)

    bar = _ProgressBar() if sys.stderr.isatty() else None

    async def work(conn):
        campaign = await find_campaign(conn, args.campaign)
        return await import_leads(
            conn, data,
            file_name=path.name,
            campaign_id=campaign["id"],
            region=region,
            allowed_channels=settings.crm.source_channels,
            default_source=args.source,
            encoding=args.encoding,
            required_fields=tuple(settings.lead_import.required_fields),
            progress=bar,
            # the bar moves once per chunk of rows checked and written
            chunk_rows=settings.lead_import.progress_every,
        )

    try:
        summary = asyncio.run(with_store(settings, work))
    except UserError as e:
        return _fail(e.message, 1)
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print(json.dumps(summary.to_json(), ensure_ascii=False))
    else:
        _print_summary(summary, path.name, args.campaign)
    return 0


def _fail(message: str, code: int) -> int:
    print(f"telesales: {message}", file=sys.stderr)
    return code


def _print_summary(summary: ImportSummary, file_name: str, campaign: str) -> None:
    print(f"{file_name} -> campaign {campaign}")
    print(f"  imported:   {summary.imported}")
    print(f"  duplicates: {summary.duplicates}")
    print(f"  rejected:   {len(summary.rejected)}")
    for r in summary.rejected[:_SHOWN_REJECTIONS]:
        print(f"    row {r.row}: {r.reason}")
    if len(summary.rejected) > _SHOWN_REJECTIONS:
        print(f"    ... and {len(summary.rejected) - _SHOWN_REJECTIONS} more (--json lists all)")


class _ProgressBar:
    """tqdm on stderr, fed by import_leads' progress(done, total) calls."""

    def __init__(self):
        self._bar = None

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(total=total, desc="importing", unit="row", file=sys.stderr,
                             leave=False)
        self._bar.total = total
        self._bar.n = done
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
