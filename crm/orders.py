"""Orders taken on a call: product, quantity, unit price, delivery, payment."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from decimal import Decimal, InvalidOperation

import asyncpg

from crm import audit, interactions
from crm.errors import IllegalTransition, MissingFields, NotFound, UserError

REQUIRED = (
    "product",
    "quantity",
    "unit_price",
    "delivery_date",
    "delivery_address",
    "payment_method",
)
OPTIONAL = ("currency",)
STATUSES = ("confirmed", "delivered", "cancelled")
TRANSITIONS = {"confirmed": {"delivered", "cancelled"}, "delivered": set(), "cancelled": set()}
REASON_MAX = 2000

# The column types: numeric(12, 3) and numeric(14, 2).
_QUANTITY_MAX = Decimal("1e9")
_PRICE_MAX = Decimal("1e12")


def _decimal(value) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        d = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def validate_order(
    raw,
    *,
    payment_methods: list[str],
    default_currency: str,
    now: dt.datetime,
    prefix: str = "order.",
) -> dict:
    """The order's clean values, or MissingFields naming every absent field (then a UserError
    naming every bad one). Field names carry `prefix`, as the client sent them."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{prefix.rstrip('.')} must be an object", fields=[prefix.rstrip(".")])
    unknown = sorted(set(raw) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise UserError(
            f"unknown order fields: {', '.join(prefix + u for u in unknown)}",
            fields=[prefix + u for u in unknown],
        )
    missing = [prefix + f for f in REQUIRED if _blank(raw.get(f))]
    if missing:
        raise MissingFields(f"an order needs {', '.join(missing)}", fields=missing)

    errors: dict[str, str] = {}
    clean: dict = {}
    if not isinstance(raw["product"], str):
        errors["product"] = "must be text"
    else:
        clean["product"] = raw["product"].strip()

    quantity = _decimal(raw["quantity"])
    if quantity is None:
        errors["quantity"] = "must be a number"
    elif quantity <= 0:
        errors["quantity"] = "must be more than 0"
    elif quantity >= _QUANTITY_MAX or quantity != quantity.quantize(Decimal("0.001")):
        errors["quantity"] = "must be below 1e9 with at most 3 decimals"
    else:
        clean["quantity"] = quantity

    price = _decimal(raw["unit_price"])
    if price is None:
        errors["unit_price"] = "must be a number"
    elif price < 0:
        errors["unit_price"] = "must not be negative"
    elif price >= _PRICE_MAX or price != price.quantize(Decimal("0.01")):
        errors["unit_price"] = "must be below 1e12 with at most 2 decimals"
    else:
        clean["unit_price"] = price

    currency = raw.get("currency")
    currency = default_currency if _blank(currency) else currency
    if not isinstance(currency, str) or not re.fullmatch(r"[A-Za-z]{3}", currency.strip()):
        errors["currency"] = "must be a 3-letter ISO 4217 code"
    else:
        clean["currency"] = currency.strip().upper()

    delivery = raw["delivery_date"]
    try:
        delivery = (
            delivery
            if isinstance(delivery, dt.date)
            else dt.date.fromisoformat(str(delivery).strip())
        )
    except ValueError:
        errors["delivery_date"] = "must be a date like 2025-03-31"
    else:
        # "Today" differs by time zone; a date is in the past only once it has ended
        # everywhere (UTC-12), so a customer ahead of the server is never refused.
        if delivery < (now.astimezone(dt.UTC) - dt.timedelta(hours=12)).date():
            errors["delivery_date"] = "must not be in the past"
        else:
            clean["delivery_date"] = delivery

    if not isinstance(raw["delivery_address"], str):
        errors["delivery_address"] = "must be text"
    else:
        clean["delivery_address"] = raw["delivery_address"].strip()

    method = raw["payment_method"]
    if method not in payment_methods:
        errors["payment_method"] = f"must be one of {', '.join(payment_methods)}"
    else:
        clean["payment_method"] = method

    if errors:
        detail = "; ".join(f"{prefix}{k} {v}" for k, v in errors.items())
        raise UserError(
            detail,
            fields=[prefix + k for k in errors],
            errors={prefix + k: v for k, v in errors.items()},
        )
    return clean


async def create_order(
    conn: asyncpg.Connection,
    order: dict,
    *,
    customer_id: int,
    lead_id: int | None,
    call_id: uuid.UUID | None,
    agent_id: int | None,
    now: dt.datetime,
) -> asyncpg.Record:
    """Insert an order already checked by validate_order, with its interaction entry."""
    async with conn.transaction():
        row = await conn.fetchrow(
            """insert into orders (customer_id, call_id, lead_id, agent_id, product, quantity,
                   unit_price, currency, delivery_date, delivery_address, payment_method,
                   created_at, updated_at)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) returning *""",
            customer_id,
            call_id,
            lead_id,
            agent_id,
            order["product"],
            order["quantity"],
            order["unit_price"],
            order["currency"],
            order["delivery_date"],
            order["delivery_address"],
            order["payment_method"],
            now,
        )
        await interactions.add(
            conn,
            customer_id,
            "order",
            user_id=agent_id,
            call_id=call_id,
            occurred_at=now,
            summary=f"Order: {row['quantity'].normalize():f} x {row['product']}, "
            f"{row['total']} {row['currency']}",
            details={"order_id": row["id"]},
        )
        return row


async def set_status(
    conn: asyncpg.Connection,
    order_id: int,
    status: str,
    *,
    user_id: int | None,
    reason: str | None = None,
    now: dt.datetime | None = None,
) -> asyncpg.Record:
    """confirmed -> delivered, or confirmed -> cancelled with a reason; anything else is an
    IllegalTransition. The change is an audit row and an 'order' entry on the customer's
    record (which carries the reason)."""
    if status not in STATUSES:
        raise UserError(f"status must be one of {', '.join(STATUSES)}", fields=["status"])
    if reason is not None and not isinstance(reason, str):
        raise UserError("reason must be text", fields=["reason"])
    reason = (reason or "").strip()
    if status == "cancelled" and not reason:
        raise MissingFields("cancelling an order needs a reason", fields=["reason"])
    if len(reason) > REASON_MAX or "\x00" in reason:
        raise UserError(
            f"reason must be at most {REASON_MAX} characters, without NUL characters",
            fields=["reason"],
        )
    try:
        reason.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError("reason is not valid Unicode text", fields=["reason"]) from None
    now = now or dt.datetime.now(dt.UTC)
    async with conn.transaction():
        current = await conn.fetchrow("select * from orders where id = $1 for update", order_id)
        if current is None:
            raise NotFound(f"no order {order_id}")
        if status not in TRANSITIONS[current["status"]]:
            allowed = sorted(TRANSITIONS[current["status"]])
            raise IllegalTransition(
                f"an order cannot go from {current['status']} to {status}"
                + (f"; it can go to {', '.join(allowed)}" if allowed else "; that status is final"),
                from_state=current["status"],
                to_state=status,
                allowed=allowed,
            )
        row = await conn.fetchrow(
            "update orders set status = $2, updated_at = $3 where id = $1 returning *",
            order_id,
            status,
            now,
        )
        change = {"from": current["status"], "to": status}
        if reason:
            change["reason"] = reason
        await audit.record(conn, user_id, "order.status", "order", order_id, change)
        await interactions.add(
            conn,
            current["customer_id"],
            "order",
            user_id=user_id,
            occurred_at=now,
            summary=f"Order {order_id} ({current['product']}) {status}"
            + (f": {reason}" if reason else ""),
            details={"order_id": order_id, **change},
        )
        return row


async def for_customer(conn: asyncpg.Connection, customer_id: int) -> list[asyncpg.Record]:
    """The customer's orders, newest first, with the agent who took each."""
    if not await conn.fetchval("select 1 from customers where id = $1", customer_id):
        raise NotFound(f"no customer {customer_id}")
    return await conn.fetch(
        """select o.*, u.username as agent_username
           from orders o left join users u on u.id = o.agent_id
           where o.customer_id = $1 order by o.created_at desc, o.id desc""",
        customer_id,
    )


async def get_order(conn: asyncpg.Connection, order_id: int) -> asyncpg.Record:
    row = await conn.fetchrow("select * from orders where id = $1", order_id)
    if row is None:
        raise NotFound(f"no order {order_id}")
    return row
