"""Lead files the tests make themselves: CSV in several encodings and delimiters, and XLSX."""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path


def csv_bytes(rows: list[list[str]], *, encoding: str = "utf-8", delimiter: str = ",",
              bom: bool = False, newline: str = "\r\n") -> bytes:
    """rows as Excel writes a CSV: CRLF line ends, fields quoted only when they must be."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=newline)
    for row in rows:
        writer.writerow(row)
    data = out.getvalue().encode(encoding)
    return (b"\xef\xbb\xbf" + data) if bom else data


def xlsx_bytes(rows: list[list]) -> bytes:
    """rows in the first sheet of a workbook; numbers stay numbers, as in a real Excel file."""
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚"


def write_big_csv(path: Path, rows: int, *, seed: int = 1) -> list[str]:
    """A UTF-8 CSV of `rows` leads with distinct valid CN mobile numbers; returns their E.164."""
    rng = random.Random(seed)
    numbers = rng.sample(range(13000000000, 13999999999), rows)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        writer.writerow(["姓名", "手机", "公司", "备注"])
        for n in numbers:
            name = rng.choice(_SURNAMES) + rng.choice(_GIVEN) + rng.choice(("", *_GIVEN))
            writer.writerow([name, f"{str(n)[:3]} {str(n)[3:7]} {str(n)[7:]}", "测试公司", ""])
    return [f"+86{n}" for n in numbers]
