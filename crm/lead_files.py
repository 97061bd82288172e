"""Reading lead files: CSV in any common delimiter and encoding, or XLSX; header aliases.

Lead lists come from Excel on Chinese, Taiwanese and Western desktops, so the
same column arrives as 手机, 手機, 手机号码, Mobile or "Phone Number", and the
bytes as UTF-8 (with or without BOM), GBK/GB18030 or Big5.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

from crm.errors import UserError

FIELDS = ("name", "phone", "company", "source", "notes", "email", "region", "tags", "priority")

_ALIASES = {
    "name": ("姓名", "名字", "客户名称", "客戶名稱", "联系人", "聯絡人", "聯繫人", "name",
             "full name", "contact"),
    "phone": ("手机", "手機", "手机号", "手机号码", "手機號碼", "电话", "電話", "联系电话",
              "聯絡電話", "电话号码", "電話號碼", "mobile", "phone", "tel", "telephone",
              "phone number", "cell"),
    "company": ("公司", "公司名称", "公司名稱", "单位", "單位", "company", "organization",
                "organisation"),
    "source": ("来源", "來源", "渠道", "source", "channel", "lead source"),
    "notes": ("备注", "備註", "说明", "說明", "notes", "note", "remark", "remarks", "comment"),
    "email": ("邮箱", "郵箱", "电子邮件", "電子郵件", "email", "e-mail"),
    "region": ("地区", "地區", "国家", "國家", "region", "country"),
    "tags": ("标签", "標籤", "tags"),
    "priority": ("优先级", "優先級", "priority"),
}
_MOBILE = ("手机", "手機", "手机号", "手机号码", "手機號碼", "mobile", "cell")
# How many records may precede the header (a title line, an empty line, ...).
_HEADER_SEARCH = 10
_DELIMITERS = (",", ";", "\t", "|")
# Big5 text nearly always decodes as GB18030 too (and GBK often as Big5), so a
# successful decode does not settle which one a file is.
_CJK_CANDIDATES = ("gb18030", "cp950", "big5hkscs")


class LeadFileError(UserError):
    """The whole file cannot be imported (unreadable, no phone column ...)."""

    error_id = "invalid_lead_file"


def header_key(text: str) -> str:
    """Normalise a header cell: full-width to half-width, lower case, no spaces, _ - : or *."""
    text = unicodedata.normalize("NFKC", text).strip().lower()
    return re.sub(r"[\s_\-:*]", "", text)


ALIAS_FIELD = {header_key(alias): field for field, aliases in _ALIASES.items() for alias in aliases}
MOBILE_KEYS = frozenset(header_key(alias) for alias in _MOBILE)


def column_field(cell: str) -> str | None:
    """The field a header cell names, or None; 手机2 / Phone 2 count as phone columns too."""
    key = header_key(cell)
    return ALIAS_FIELD.get(key) or ALIAS_FIELD.get(key.rstrip("0123456789"))


def phone_label(cell: str) -> str:
    return "mobile" if header_key(cell).rstrip("0123456789") in MOBILE_KEYS else "phone"


@dataclass
class LeadTable:
    """A decoded file: its header and its data rows.

    rows yields (row number, cells); row 1 is the first record after the
    header, blank records are counted but not yielded, so a row number is the
    spreadsheet line minus the header's line.
    """

    header: list[str]
    rows: Iterator[tuple[int, list[str]]]
    # CSV: cells beyond the header are an error; XLSX: columns without a heading are ignored
    extra_cells_are_errors: bool
    encoding: str | None
    # an upper bound of the row count, for progress bars
    size_hint: int


def read_lead_file(data: bytes, file_name: str = "", encoding: str | None = None) -> LeadTable:
    if not data.strip():
        raise LeadFileError("the file is empty")
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise LeadFileError("old Excel files (.xls) are not supported; save the sheet as XLSX "
                            "or CSV")
    if data.startswith(b"PK\x03\x04") or file_name.lower().endswith((".xlsx", ".xlsm")):
        return _read_xlsx(data)
    return _read_csv(data, encoding)


def _is_blank(cells) -> bool:
    return not any(cells)


def _find_header(records: Iterator[list[str]]) -> tuple[list[str], int]:
    """The first record naming a phone column (within the first few); else the first non-blank one.

    Returns the header and how many records were consumed.
    """
    seen: list[list[str]] = []
    for record in records:
        seen.append(record)
        if any(column_field(c) == "phone" for c in record):
            return record, len(seen)
        if len(seen) >= _HEADER_SEARCH:
            break
    first = next((r for r in seen if not _is_blank(r)), [])
    raise LeadFileError(
        f"no phone column found; the header was read as {first!r}. Name a column 手机, 电话, "
        "Mobile or Phone; if the header looks garbled, give the file's encoding (--encoding)",
        header=first,
    )


# -- CSV ---------------------------------------------------------------------


def _read_csv(data: bytes, encoding: str | None) -> LeadTable:
    text, used = decode(data, encoding)
    delimiter = pick_delimiter(text)
    records = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header, consumed = _find_header(records)

    def rows():
        for row_no, cells in enumerate(records, 1):
            if not _is_blank(cells):
                yield row_no, cells

    return LeadTable(header, rows(), True, used, max(text.count("\n") - consumed + 1, 0))


def pick_delimiter(text: str) -> str:
    """The delimiter that occurs most in the first line (csv.Sniffer guesses wrong on short
    files)."""
    first = text.lstrip("\r\n").split("\n", 1)[0]
    counts = [(first.count(d), -i, d) for i, d in enumerate(_DELIMITERS)]
    best = max(counts)
    return best[2] if best[0] else ","


def decode(data: bytes, encoding: str | None = None) -> tuple[str, str]:
    """Decode the file; returns (text, encoding used). A BOM wins, then strict UTF-8, then CJK."""
    if encoding:
        return _decode_as(data, encoding), encoding
    boms = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))
    for bom, name in boms:
        if data.startswith(bom):
            return _decode_as(data, name), name
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    decoded = {}
    for name in _CJK_CANDIDATES:
        try:
            decoded[name] = data.decode(name)
        except UnicodeDecodeError:
            continue
    if not decoded:
        raise LeadFileError(
            "cannot tell the file's encoding (it is not UTF-8, GB18030/GBK or Big5); "
            "give it with --encoding"
        )
    name = _likeliest(data, decoded)
    return decoded[name], name


def _decode_as(data: bytes, encoding: str) -> str:
    try:
        codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
        return data.decode(codec)
    except LookupError:
        raise LeadFileError(f"unknown encoding {encoding!r}") from None
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise LeadFileError(
            f"the file is not valid {encoding}: byte 0x{data[e.start]:02x} at offset {e.start} "
            f"(line {line}) cannot be decoded; check --encoding",
            encoding=encoding, offset=e.start, line=line,
        ) from None


def _likeliest(data: bytes, decoded: dict[str, str]) -> str:
    """Among encodings that all decode the bytes, the one whose header names the most known columns,
    then charset_normalizer's pick on a sample, then GB18030."""
    if len(decoded) == 1:
        return next(iter(decoded))

    def known_columns(text: str) -> int:
        lines = text[:4000].splitlines()[:_HEADER_SEARCH]
        return max((sum(column_field(c) is not None for c in re.split(r"[,;\t|]", line))
                    for line in lines), default=0)

    scores = {name: known_columns(text) for name, text in decoded.items()}
    top = max(scores.values())
    tied = [name for name in decoded if scores[name] == top]
    if len(tied) == 1:
        return tied[0]
    from charset_normalizer import from_bytes  # slow to import; only needed for ambiguous files

    # A newline byte never occurs inside a GBK or Big5 character, so cutting there is safe.
    cut = data.rfind(b"\n", 0, 65536)
    sample = data[: cut + 1] if cut > 0 else data[:65536]
    best = from_bytes(sample, cp_isolation=tied).best()
    if best is not None and best.encoding in tied:
        return best.encoding
    return tied[0]


# -- XLSX --------------------------------------------------------------------


def _cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        # Excel keeps phone numbers typed as numbers as floats: 13800138000.0
        return str(int(value))
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value).strip()


def _read_xlsx(data: bytes) -> LeadTable:
    import openpyxl  # heavy; only XLSX needs it

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as e:
        raise LeadFileError(f"not a readable XLSX file: {e}") from None
    sheet = book.active or book.worksheets[0]
    records = ([_cell_text(v) for v in row] for row in sheet.iter_rows(values_only=True))
    try:
        header, _ = _find_header(records)
    except LeadFileError:
        book.close()
        raise

    def rows():
        try:
            for row_no, cells in enumerate(records, 1):
                if not _is_blank(cells):
                    yield row_no, cells
        finally:
            book.close()

    return LeadTable(header, rows(), False, None, max((sheet.max_row or 0), 0))
