"""The end-day benchmark's zones and data: the demo tables, freshly generated payments, and the check of a run."""

from __future__ import annotations

from datetime import date

from psycopg import sql

from bench.configs import EndDayConfig
from bench.database import DatabasePair

DAY = date(2026, 11, 25)
TIMEZONE = "Asia/Jakarta"  # DAY is [2026-11-24 17:00, 2026-11-25 17:00) UTC
_GENERATE = """
INSERT INTO payment (payment_id, reference, merchant_id, account, amount, currency, status, channel,
                     customer_name, created_at, updated_at, client_ip, is_sync)
SELECT i, 'PAY-' || lpad(i::text, 12, '0'), 1 + i % 400, 'ID' || lpad(((i * 7919) % 100000000)::text, 20, '0'),
       (1 + (i * 104729) % 5000000) / 100.0, (ARRAY['IDR', 'USD', 'SGD'])[1 + i % 3],
       CASE WHEN i % {every} = 0 THEN 'F' ELSE 'S' END, (ARRAY['web', 'mobile', 'qris'])[1 + (i / 7) % 3],
       CASE WHEN i % 50 = 0 THEN NULL WHEN i % 7 = 0 THEN 'សុខ ចាន់ ' || i ELSE 'Café Ünïcode ' || i END,
       timestamptz '2026-11-24 17:00:00+00' + (i * {step}) * interval '1 microsecond',
       timestamptz '2026-11-24 17:00:05.123456+00' + (i * {step}) * interval '1 microsecond',
       '203.0.113.' || (i % 250), false
FROM generate_series(1::bigint, {total}) AS i
"""
COLUMNS = ("payment_id", "reference", "merchant_id", "account", "amount", "currency", "status", "channel",
           "customer_name", "created_at", "updated_at")  # fmt: skip


def create_zones(pair: DatabasePair, config: EndDayConfig) -> str | None:
    """Demo payment tables in both zones, bookkeeping in the intranet; the pending-index DDL used, if any."""
    from zonesync.schemas.examples.tables import internet_tables, intranet_tables
    from zonesync.tasks.bookkeeping import tables as bookkeeping
    from zonesync.tasks.zones.engines import create_engine, installing_for

    internet, intranet = create_engine(pair.url(pair.source_db)), create_engine(pair.url(pair.target_db))
    try:
        for engine, metadata in ((internet, internet_tables()), (intranet, intranet_tables())):
            metadata.create_all(engine, tables=[metadata.tables["payment"]])
        bookkeeping.create_bookkeeping(intranet)
        if not config.pending_index:
            return None
        ddl = installing_for(internet).recommended_index(
            internet_tables().tables["payment"], ("payment_id",), "is_sync"
        )
        with internet.begin() as conn:
            conn.exec_driver_sql(ddl)
        return ddl
    finally:
        internet.dispose()
        intranet.dispose()


def fresh_data(pair: DatabasePair, config: EndDayConfig) -> None:
    """Empty intranet table and ledger, newly generated internet payments; VACUUM ANALYZE and CHECKPOINT."""
    step = 86_400_000_000 // (config.total + 1)  # microseconds between payments: all within the business date
    generate = sql.SQL(_GENERATE).format(every=config.failed_every, step=step, total=config.total)
    statements: dict[str, list[str | sql.Composed]] = {
        pair.target_db: ["TRUNCATE payment", "TRUNCATE batch_job, sync_error, sync_lease"],
        pair.source_db: ["TRUNCATE payment", generate],
    }
    for database, steps in statements.items():
        with pair.connect(database) as conn:
            for statement in steps:
                conn.execute(statement)
        with pair.connect(database, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            conn.execute("CHECKPOINT")


def verify(pair: DatabasePair) -> list[str]:
    """What is wrong with the zones after an end-day sync (nothing: an empty list)."""
    columns = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
    row = sql.SQL("hashtextextended(ROW({})::text, 0)::numeric").format(columns)
    digest = sql.SQL("SELECT count(*), coalesce(sum({}), 0) FROM payment").format(row)
    with pair.connect(pair.source_db) as conn:
        eligible = conn.execute(digest + sql.SQL(" WHERE status = 'S'")).fetchone()
        flags = conn.execute("SELECT count(*) FILTER (WHERE status = 'S' AND NOT is_sync), "
                             "count(*) FILTER (WHERE status <> 'S' AND is_sync) FROM payment").fetchone()  # fmt: skip
    with pair.connect(pair.target_db) as conn:
        copied = conn.execute(digest).fetchone()
    problems = [] if eligible == copied else [f"intranet (rows, hash) {copied} != eligible internet {eligible}"]
    if flags != (0, 0):
        problems.append(f"{flags[0]} eligible rows left unflagged, {flags[1]} ineligible rows flagged")  # type: ignore[index]
    return problems
