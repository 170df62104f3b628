"""The drills' data: the demo tables seeded small, and seeded random writes (pushes, updates, application writes).

Merchants (intranet → internet, carried by the retry sync) and payments (internet → intranet, carried by the
end-day check), from `tasks.demo_data`, a few rows of each deliberately invalid (they end quarantined).
"""

from __future__ import annotations

import random
from datetime import date
from typing import Any

from tests.conftest import ZonePair
from tests.torture.ops import NOW
from zonesync.schemas.examples.tables import internet_tables, intranet_tables
from zonesync.tasks.setup.demo_data import (
    DEMO_BUSINESS_DATE,
    INVALID_MERCHANTS,
    INVALID_PAYMENTS,
    merchants,
    payments,
    write_rows,
)

BUSINESS_DATE: date = DEMO_BUSINESS_DATE
PUSHED_IDS_FROM = 100_000  # keys the pushes create: far from the seeded ones
MAPPING_KEY = {"merchants": "merchant_id", "payments": "payment_id"}
SOURCE_ZONE = {"merchants": "intranet", "payments": "internet"}
TARGET_ZONE = {"merchants": "internet", "payments": "intranet"}
TABLE = {"merchants": "merchant", "payments": "payment"}


def seed(pair: ZonePair, merchant_count: int, payment_count: int) -> None:
    """Create the demo tables in both zones and fill the sources (every row unsynced)."""
    intranet_tables().create_all(pair.intranet)
    internet_tables().create_all(pair.internet)
    if merchant_count:
        write_rows(pair.intranet, "merchant", merchants(merchant_count), ("merchant_id",))
    if payment_count:
        write_rows(pair.internet, "payment", payments(payment_count), ("payment_id",))


def valid_keys(mapping: str, count: int) -> list[int]:
    """Seeded keys whose rows pass the target model (updates of invalid rows are refused before anything runs)."""
    invalid = INVALID_MERCHANTS if mapping == "merchants" else INVALID_PAYMENTS
    eligible = (lambda i: True) if mapping == "merchants" else (lambda i: i % 10 not in (0, 1))  # status 'S'
    return [i for i in range(1, count + 1) if i not in invalid and eligible(i)]


def new_record(mapping: str, number: int, rng: random.Random) -> dict[str, Any]:
    """A record a push creates (a new key; values JSON-like, as an application sends them)."""
    key = PUSHED_IDS_FROM + number
    cents = f"{rng.randint(0, 4999) / 100:.2f}"
    if mapping == "merchants":
        return {"merchant_id": key, "merchant_name": f"Pushed #{key} é😀", "status": "A", "fee": cents,
                "email": f"pushed{key}@example.com", "tax_id": f"NPWP-{key}", "updated_at": NOW}  # fmt: skip
    return {"payment_id": key, "reference": f"PUSH-{key}", "merchant_id": 1 + key % 40, "account": f"ACC{key}",
            "amount": f"{rng.randint(1, 999999) / 100:.2f}", "currency": "IDR", "status": "S", "channel": "web",
            "customer_name": f"Customer {key}", "created_at": "2026-11-25T10:00:00.000001+00:00",
            "updated_at": NOW}  # fmt: skip


def push_batches(mapping: str, first: int, count: int, rng: random.Random, per_push: int = 1) -> list[list[Any]]:
    """`count` pushes of `per_push` new records each, numbered from `first`."""
    return [[new_record(mapping, first + n * per_push + i, rng) for i in range(per_push)] for n in range(count)]


def changed_values(mapping: str, rng: random.Random) -> dict[str, Any]:
    """New values for one row (valid ones), the version column bumped at write time."""
    if mapping == "merchants":
        return {"fee": f"{rng.randint(0, 4999) / 100:.2f}", "merchant_name": f"Renamed {rng.randint(0, 10**6)} ü",
                "updated_at": NOW}  # fmt: skip
    return {"amount": f"{rng.randint(1, 999999) / 100:.2f}", "customer_name": f"Cust {rng.randint(0, 10**6)}",
            "updated_at": NOW}  # fmt: skip


def update_items(mapping: str, keys: list[int], rng: random.Random) -> list[dict[str, Any]]:
    """{key, changes} for `update_record`, one per key."""
    return [{"key": {MAPPING_KEY[mapping]: key}, "changes": changed_values(mapping, rng)} for key in keys]


def app_items(mapping: str, keys: list[int], rng: random.Random) -> list[dict[str, Any]]:
    """{key, values} for the application writer, one per key."""
    return [{"key": {MAPPING_KEY[mapping]: key}, "values": changed_values(mapping, rng)} for key in keys]
