"""The shape of one page of a list answer."""

from __future__ import annotations

import asyncpg


def page_of(rows: list[asyncpg.Record], page: int, per_page: int, total: int) -> dict:
    return {"items": [dict(r.items()) for r in rows], "page": page, "per_page": per_page, "total": total}
