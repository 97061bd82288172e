"""Disposition codes from config/dispositions.toml, mirrored into the database."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import asyncpg

FLAGS = (
    "human_answered", "contact", "intent", "sale", "callback",
    "dnc", "complaint", "not_interested", "unworkable", "final",
)


@dataclass(frozen=True)
class Disposition:
    code: str
    label: str
    flags: frozenset[str]
    retry_after_minutes: int | None = None
    max_attempts: int | None = None

    def has(self, flag: str) -> bool:
        return flag in self.flags


def load_catalog(path: Path) -> dict[str, Disposition]:
    """Read and check the codes; a bad entry raises ValueError naming the code and key."""
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    catalog = {}
    for code, entry in raw.items():
        where = f"{path.name}: [{code}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a table")
        unknown = set(entry) - {"label", "flags", "retry_after_minutes", "max_attempts"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        flags = entry.get("flags", [])
        bad = [f for f in flags if f not in FLAGS]
        if bad:
            raise ValueError(f"{where}: unknown flags {bad}; allowed: {', '.join(FLAGS)}")
        for key in ("retry_after_minutes", "max_attempts"):
            value = entry.get(key)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{where}: {key} must be a non-negative integer")
        catalog[code] = Disposition(
            code=code,
            label=str(entry.get("label", code)),
            flags=frozenset(flags),
            retry_after_minutes=entry.get("retry_after_minutes"),
            max_attempts=entry.get("max_attempts"),
        )
    return catalog


async def sync_catalog(conn: asyncpg.Connection, catalog: dict[str, Disposition]) -> None:
    """Upsert the codes; codes no longer configured stay (old calls name them) but inactive."""
    columns = ", ".join(FLAGS)
    placeholders = ", ".join(f"${i}" for i in range(3, 3 + len(FLAGS)))
    updates = ", ".join(f"{c} = excluded.{c}" for c in FLAGS)
    async with conn.transaction():
        await conn.execute("update dispositions set active = false")
        for d in catalog.values():
            await conn.execute(
                f"""insert into dispositions (code, label, {columns},
                        retry_after_minutes, max_attempts, active)
                    values ($1, $2, {placeholders}, ${3 + len(FLAGS)}, ${4 + len(FLAGS)}, true)
                    on conflict (code) do update set label = excluded.label, {updates},
                        retry_after_minutes = excluded.retry_after_minutes,
                        max_attempts = excluded.max_attempts, active = true""",
                d.code, d.label, *(d.has(f) for f in FLAGS), d.retry_after_minutes, d.max_attempts,
            )
