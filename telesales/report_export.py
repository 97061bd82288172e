"""A report (crm.reports.run_report) as a flat table: CSV text or an XLSX workbook."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from openpyxl import Workbook
from openpyxl.styles import Font


def columns(report: dict) -> list[str]:
    """key, label, the figures in definition order, then one column per QA category seen."""
    names = ["key", "label"] + [n for n in report["definitions"] if n != "qa_categories"]
    if report["report"] == "quality":
        seen = sorted({c for r in [*report["rows"], report["total"]] for c in r.get("qa_categories", {})})
        names += [f"qa_{c}" for c in seen]
    return names


def flat_rows(report: dict) -> list[dict]:
    out = []
    for row in [*report["rows"], report["total"]]:
        flat = {k: v for k, v in row.items() if k != "qa_categories"}
        for category, score in row.get("qa_categories", {}).items():
            flat[f"qa_{category}"] = score
        out.append(flat)
    return out


def to_csv(report: dict) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns(report), extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    for row in flat_rows(report):
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()


def to_xlsx(report: dict) -> bytes:
    wb = Workbook()
    sheet = wb.active
    sheet.title = report["report"]
    names = columns(report)
    sheet.append(names)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in flat_rows(report):
        # Money travels as Decimal; a spreadsheet wants numbers it can sum.
        sheet.append([float(v) if isinstance(v, Decimal) else v for v in (row.get(n) for n in names)])
    sheet.freeze_panes = "C2"
    about = wb.create_sheet("definitions")
    about.append(["report", report["report"], "from", report["from"], "to", report["to"], "by", report["by"],
                  "time zone", report["time_zone"]])
    for name, text in report["definitions"].items():
        about.append([name, text])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def file_name(report: dict, extension: str) -> str:
    return f"{report['report']}_{report['by']}_{report['from']}_{report['to']}.{extension}"
