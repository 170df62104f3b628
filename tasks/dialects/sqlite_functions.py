"""The SQL functions SQLite lacks for the reconciliation, written in Python and registered on each connection that
reconciles (`SQLiteReconciling.prepare_reconcile`): MD5, a 32-bit hash prefix, and the canonical text of decimals,
timestamps and dates as SQLite stores them (text), summed or formatted exactly."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any

_EXACT = Context(prec=2000, rounding=ROUND_HALF_UP)  # half away from zero, as PostgreSQL and MariaDB round


def md5(text: str | None) -> str | None:
    return None if text is None else hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def hash32(digest: str | None) -> int | None:
    return None if digest is None else int(digest[:8], 16)


def number(value: Any) -> Decimal:
    """A stored number (text, integer or float) as a Decimal; floats at 15 digits, as PostgreSQL casts them."""
    return Decimal(f"{value:.15g}") if isinstance(value, float) else Decimal(str(value).strip())


def decimal_text(value: Any, scale: int) -> str | None:
    if value is None:
        return None
    try:
        rounded = _EXACT.quantize(number(value), Decimal(1).scaleb(-scale))
    except InvalidOperation:
        return str(value)  # not a number: compared as stored, so it shows up as a difference
    return f"{rounded if rounded else abs(rounded):f}"  # no "-0.00"


def timestamp_text(value: Any) -> str | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(sep=" ", timespec="microseconds")


def date_text(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value)[:10]).isoformat()
    except ValueError:
        return str(value)


class DecimalSum:
    """SUM over stored decimal text without passing through a float."""

    def __init__(self) -> None:
        self.total: Decimal | None = None

    def step(self, value: Any) -> None:
        if value is not None:
            self.total = _EXACT.add(self.total or Decimal(0), number(value))

    def finalize(self) -> str | None:
        return None if self.total is None else f"{self.total:f}"
