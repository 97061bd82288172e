"""Small builders for test rows: users, campaigns, customers, leads, calls."""

from __future__ import annotations

import datetime as dt
import itertools

from crm import calls
from crm.campaigns import create_campaign
from crm.users import create_user

_n = itertools.count(1)

# Valid CN mobile numbers (+86 138 ...), distinct per call of phone().
_phones = itertools.count(13800138000)

RULES = dict(
    payment_methods=[
        "cash_on_delivery",
        "bank_transfer",
        "credit_card",
        "alipay",
        "wechat_pay",
        "invoice",
    ],
    departments=["sales", "service", "logistics", "billing", "quality"],
    default_currency="CNY",
    ack_hours=24,
    resolve_hours=72,
)


def phone() -> str:
    return f"+86{next(_phones)}"


async def user(conn, role: str = "agent", username: str | None = None) -> int:
    row = await create_user(conn, username or f"{role}{next(_n)}", role, "not-a-real-hash")
    return row["id"]


async def campaign(conn, **fields) -> int:
    row = await create_campaign(conn, fields.pop("name", f"campaign {next(_n)}"), **fields)
    return row["id"]


async def customer(conn, name: str = "Wang Fang", phones: list[str] | None = None) -> int:
    customer_id = await conn.fetchval("insert into customers (name) values ($1) returning id", name)
    for i, number in enumerate(phones or []):
        await conn.execute(
            "insert into customer_phones (e164, customer_id, is_primary) values ($1, $2, $3)",
            number,
            customer_id,
            i == 0,
        )
    return customer_id


async def lead(
    conn,
    campaign_id: int | None = None,
    customer_id: int | None = None,
    number: str | None = None,
    **fields,
) -> int:
    """A lead (with a customer owning its number unless customer_id is given)."""
    number = number or phone()
    if campaign_id is None:
        campaign_id = await campaign(conn)
    if customer_id is None:
        customer_id = await customer(conn, phones=[number])
    columns = ["campaign_id", "customer_id", "phone", *fields]
    values = [campaign_id, customer_id, number, *fields.values()]
    placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    return await conn.fetchval(
        f"insert into leads ({', '.join(columns)}) values ({placeholders}) returning id", *values
    )


async def call(
    conn,
    lead_id: int | None = None,
    agent_id: int | None = None,
    direction: str = "outbound",
    now: dt.datetime | None = None,
    **fields,
) -> str:
    """A call on the lead (counting as an attempt when outbound); returns its id as text."""
    row = await calls.create_call(
        conn, direction=direction, agent_id=agent_id, lead_id=lead_id, now=now, **fields
    )
    return str(row["id"])


async def count(conn, table: str) -> int:
    return await conn.fetchval(f"select count(*) from {table}")
