"""Benchmark: carrying deletes (tombstones) against carrying the same rows, on PostgreSQL.

    .venv/bin/python -m bench.deletes            # 1M rows, each policy once
    .venv/bin/python -m bench.deletes --rows 100000

For each policy measured (`hard`, `archive`, `soft`), from fresh databases (`zs_bench_del_src`/`_dst`, untimed
setup): the source table is filled with N unsynced rows (`generate_series`) and one sync carries them (timed:
the **upsert rate**); the delete capture is installed and every source row deleted (untimed: the trigger records
N tombstones); one more sync carries the N tombstones (timed: the **delete rate**). Both go through the sync
engine itself (`sync_mapping_rows`, no Prefect flow), so the ratio compares like with like. Every run is
verified: after the deletes, the target holds no live row (`soft`: every row marked) and, for `archive`, the
archive holds N rows. Prints rows/s and the ratio delete/upsert per policy; exits 1 when a verification fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
POLICIES = ("hard", "archive", "soft")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every run verified."""
    parser = argparse.ArgumentParser(prog="python -m bench.deletes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="source rows (default 1,000,000)")
    parser.add_argument("--pg-url", default=os.environ.get("ZONESYNC_TEST_POSTGRES_URL", DEFAULT_PG_URL))
    parser.add_argument("--policies", default=",".join(POLICIES), help="comma-separated (default: all three)")
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    failed = 0
    for policy in args.policies.split(","):
        upsert, delete, ok = _measure(args.pg_url, args.rows, policy.strip())
        failed += not ok
        print(f"{policy:8} upserts {args.rows / upsert:>10,.0f} rows/s ({upsert:.2f} s)   deletes "
              f"{args.rows / delete:>10,.0f} rows/s ({delete:.2f} s)   ratio delete/upsert {upsert / delete:.2f}"
              f"{'' if ok else '   VERIFICATION FAILED'}", flush=True)  # fmt: skip
    return 1 if failed else 0


def _measure(pg_url: str, rows: int, policy: str) -> tuple[float, float, bool]:
    """(upsert seconds, delete seconds, verified) of one policy on fresh databases."""
    import sqlalchemy as sa

    from bench import database
    from bench.mappings import BENCH_PAYMENTS
    from bench.runner import configure_zonesync
    from zonesync.tasks.setup.triggers import install_delete_capture
    from zonesync.tasks.sync.run import Zones, sync_mapping_rows
    from zonesync.tasks.zones.engines import get_engine

    mapping = dataclasses.replace(BENCH_PAYMENTS, on_delete=policy)  # type: ignore[arg-type]
    pair = database.database_pair(pg_url, "zs_bench_del")
    database.recreate_databases(pair)
    try:
        database.create_tables(pair, mapping, pending_index=True)
        _policy_tables(pair, mapping)
        database.generate_rows(pair, mapping, rows)
        batch_size = configure_zonesync(pair, None)
        zones = Zones(get_engine("intranet"), get_engine("internet"), get_engine("intranet"))
        started = time.perf_counter()
        carried = sync_mapping_rows(mapping, zones, batch_size)
        upsert = time.perf_counter() - started
        install_delete_capture(mapping, zones.source)
        with zones.source.begin() as conn:
            conn.execute(sa.text(f"DELETE FROM {mapping.source_table}"))
        database._settle(pair, pair.source_db, "sync_tombstone")
        started = time.perf_counter()
        deleted = sync_mapping_rows(mapping, zones, batch_size)
        delete = time.perf_counter() - started
        ok = carried.flagged == rows and deleted.deletes_applied == rows and _verify(zones.target, mapping, rows)
        return upsert, delete, ok
    finally:
        from zonesync.tasks.zones.engines import dispose_engines

        dispose_engines()
        database.drop_databases(pair)


def _policy_tables(pair: object, mapping: object) -> None:
    """The soft marker column, or the archive table, in the target database."""
    import psycopg

    from bench.database import DatabasePair

    assert isinstance(pair, DatabasePair)
    table = mapping.target_table  # type: ignore[attr-defined]
    with psycopg.connect(pair.conninfo(pair.target_db)) as conn:
        if mapping.on_delete == "soft":  # type: ignore[attr-defined]
            conn.execute(f"ALTER TABLE {table} ADD COLUMN deleted_at timestamptz")
        if mapping.on_delete == "archive":  # type: ignore[attr-defined]
            conn.execute(f"CREATE TABLE {table}_archive AS SELECT * FROM {table} WITH NO DATA")
            conn.execute(f"ALTER TABLE {table}_archive ADD COLUMN deleted_at timestamptz NOT NULL")


def _verify(target: object, mapping: object, rows: int) -> bool:
    import sqlalchemy as sa

    table = mapping.target_table  # type: ignore[attr-defined]
    with target.connect() as conn:  # type: ignore[attr-defined]
        live = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
        if mapping.on_delete == "soft":  # type: ignore[attr-defined]
            marked = conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE deleted_at IS NOT NULL")).scalar_one()
            return bool(live == marked == rows)
        if mapping.on_delete == "archive":  # type: ignore[attr-defined]
            archived = conn.execute(sa.text(f"SELECT count(*) FROM {table}_archive")).scalar_one()
            return bool(live == 0 and archived == rows)
    return bool(live == 0)


if __name__ == "__main__":
    raise SystemExit(main())
