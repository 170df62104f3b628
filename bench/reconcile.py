"""Benchmark: the end-day reconciliation of the payments mapping on PostgreSQL (both zones).

    .venv/bin/python -m bench.reconcile                 # 1,000,000 payments of one business date
    .venv/bin/python -m bench.reconcile --rows 100000   # a smoke run

Creates `zs_bench_rec_src` (internet: payments, 10 % failed) and `zs_bench_rec_dst` (intranet: the
successful ones), generated server-side, then times `reconcile_mapping` on identical zones (the fast path:
per-bucket aggregates only) and after ~100 differences (missing, extra and changed rows). Nothing is
asserted about speed; the differences found are checked and the seconds printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import date

from psycopg import sql

from bench.database import DatabasePair, database_pair, drop_databases, recreate_databases
from zonesync.schemas.examples import PAYMENTS
from zonesync.schemas.examples.tables import internet_tables, intranet_tables
from zonesync.tasks.reconcile.compare import reconcile_mapping
from zonesync.tasks.reconcile.findings import Reconciliation
from zonesync.tasks.zones.engines import create_engine

DAY = date(2026, 11, 25)
TIMEZONE = "Asia/Jakarta"  # DAY is [2026-11-24 17:00, 2026-11-25 17:00) UTC
GENERATED = """
INSERT INTO payment (payment_id, reference, merchant_id, account, amount, currency, status, channel,
                     customer_name, created_at, updated_at{extra_columns})
SELECT i, 'PAY-' || i, 1 + i % 400, 'ID' || lpad(i::text, 20, '0'), (i % 100000) * 1.25 + 0.01,
       CASE WHEN i % 3 = 0 THEN 'USD' ELSE 'IDR' END, CASE WHEN i % 10 = 0 THEN 'F' ELSE 'S' END,
       CASE WHEN i % 2 = 0 THEN 'web' ELSE 'mobile' END, CASE WHEN i % 9 = 0 THEN NULL ELSE 'Café Ünïcode ' || i END,
       timestamptz '2026-11-24 17:00:00+00' + i * interval '79 ms',
       timestamptz '2026-11-24 17:00:05.123456+00' + i * interval '79 ms'{extra_values}
FROM generate_series(1, {rows}) AS i {where}
"""
DIFFERENCES = [  # in the target (intranet): 40 changed amounts, 30 missing, 30 extra rows
    "UPDATE payment SET amount = amount + 0.01 WHERE payment_id BETWEEN 1001 AND 1045 AND status = 'S'",
    "DELETE FROM payment WHERE payment_id BETWEEN 5001 AND 5033 AND status = 'S'",
    "INSERT INTO payment SELECT payment_id + 5000000, 'X' || reference, merchant_id, account, amount, currency, "
    "status, channel, customer_name, created_at, updated_at FROM payment WHERE payment_id BETWEEN 9001 AND 9033",
]


def fill(pair: DatabasePair, rows: int) -> None:
    """Demo tables in both databases; payments generated server-side (the target: the successful ones)."""
    for database, metadata in ((pair.source_db, internet_tables()), (pair.target_db, intranet_tables())):
        engine = create_engine(pair.url(database))
        metadata.create_all(engine, tables=[metadata.tables["payment"]])
        engine.dispose()
    common = {"rows": int(rows)}
    source = GENERATED.format(
        extra_columns=", client_ip, is_sync", extra_values=", '203.0.113.9', true", where="", **common
    )
    target = GENERATED.format(extra_columns="", extra_values="", where="WHERE i % 10 <> 0", **common)
    for database, statement in ((pair.source_db, source), (pair.target_db, target)):
        with pair.connect(database) as conn:
            conn.execute(sql.SQL(statement))
            conn.commit()
        with pair.connect(database, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE payment")


def timed(pair: DatabasePair, repeat: int) -> tuple[list[float], Reconciliation]:
    """Run the reconciliation `repeat` times; seconds of each, and the last result."""
    source, target = create_engine(pair.url(pair.source_db)), create_engine(pair.url(pair.target_db))
    seconds, found = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        found = reconcile_mapping(PAYMENTS, DAY, source, target, timezone=TIMEZONE)
        seconds.append(time.perf_counter() - started)
    source.dispose()
    target.dispose()
    assert found is not None
    return seconds, found


def main() -> None:
    """Fill, time identical zones, add differences, time again, drop."""
    parser = argparse.ArgumentParser(prog="python -m bench.reconcile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    default_url = os.environ.get("ZONESYNC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--pg-url", default=default_url)
    args = parser.parse_args()
    pair = database_pair(args.pg_url, "zs_bench_rec")
    recreate_databases(pair)
    try:
        started = time.perf_counter()
        fill(pair, args.rows)
        print(f"filled {args.rows:,} source rows in {time.perf_counter() - started:.1f} s (not timed)")
        for label in ("identical", "~100 differences"):
            if label != "identical":
                with pair.connect(pair.target_db) as conn:
                    for statement in DIFFERENCES:
                        conn.execute(statement)
                    conn.commit()
            seconds, found = timed(pair, args.repeat)
            c = found.comparison
            runs = ", ".join(f"{s:.2f}" for s in seconds)
            print(f"{label:>17}: median {statistics.median(seconds):.2f} s (runs {runs}); {c.buckets} buckets,")
            print(f"{'':>19}fast path {c.fast_path}; {found.headline()}")
    finally:
        if not args.keep:
            drop_databases(pair)


if __name__ == "__main__":
    main()
