"""One mapping in partitions (docs/scaling.md): rows hashed by key alike on every database and in Python, each
partition carried under its own lease, runs sharing a mapping by taking the partitions that are free."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa

from tests.conftest import ZonePair, backend_param
from tests.integration.console import Cli, zone_settings
from tests.integration.data import notes as note_rows
from tests.integration.helpers import (
    create,
    errors_by_key,
    execute,
    jobs,
    rows,
    seed,
    source_rows,
    target_rows,
    unflagged_keys,
)
from tests.integration.mappings import NOTES
from tests.integration.tables import source_tables
from zonesync.flows.cli.support import EXIT_PARTIAL
from zonesync.flows.retry_sync import retry_sync
from zonesync.schemas.examples import MERCHANTS
from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.bookkeeping.lease import Lease
from zonesync.tasks.dialects.postgresql_fast_path import holds_none_of
from zonesync.tasks.setup import demo_data
from zonesync.tasks.setup.inspection import check_mapping
from zonesync.tasks.sync.extract import UnsyncedReader
from zonesync.tasks.sync.partitions import carried_parts, in_partition, partition_of_key, partitions_of
from zonesync.tasks.sync.run import Zones, sync_mapping_rows
from zonesync.tasks.zones.checkpoints import interleaved
from zonesync.tasks.zones.engines import dialect_for, reconciling_for

REPO = Path(__file__).resolve().parents[2]
SERVERS = [backend_param("postgresql"), backend_param("mariadb")]
PARTITIONED = dataclasses.replace(MERCHANTS, partitions=4)
VALID_MERCHANTS = 12  # merchant 13 is the demo's first invalid one


def keys_in(engine: sa.Engine, mapping: SyncMapping, table: str, index: int) -> set[tuple[object, ...]]:
    """The source keys the database puts in one partition."""
    source = sa.Table(table, sa.MetaData(), autoload_with=engine)
    reconciling = reconciling_for(engine)
    only = in_partition(reconciling, source, mapping, partitions_of(mapping)[index])
    keys = [source.c[name] for name in mapping.source_keys]
    with engine.connect() as conn:
        reconciling.prepare_reconcile(conn)
        return {tuple(row) for row in conn.execute(sa.select(*keys).where(only))}


@pytest.mark.parametrize(
    ("mapping", "table", "rows", "key"),
    [
        (PARTITIONED, "merchant", lambda: demo_data.merchants(40), "merchant_id"),
        (
            dataclasses.replace(NOTES, partitions=5),
            "zs_note_src",
            lambda: note_rows(["a", "B", "ü", "日本", "x y"]),
            "note_key",
        ),
        (  # negative keys too: a block starts toward zero on every database
            dataclasses.replace(PARTITIONED, partition_block=7),
            "merchant",
            lambda: demo_data.merchants(40).with_columns(pl.col("merchant_id") - 20),
            "merchant_id",
        ),
    ],
    ids=["integer-keys", "text-keys", "blocks-of-integer-keys"],
)
def test_each_key_is_in_one_partition_the_same_on_every_database_and_in_python(
    demo: ZonePair, mapping: SyncMapping, table: str, rows: Callable[[], object], key: str
) -> None:
    if table == "zs_note_src":
        create(demo.intranet, source_tables(), table)
    frame = rows()
    seed(demo.intranet, table, frame, (key,))  # type: ignore[arg-type]

    found = [keys_in(demo.intranet, mapping, table, index) for index in range(mapping.partitions)]

    every = {(value,) for value in frame[key].to_list()}  # type: ignore[index]
    assert set().union(*found) == every and sum(map(len, found)) == len(every)  # each in exactly one
    assert all(partition_of_key(mapping, k) == index for index, keys in enumerate(found) for k in keys)


@pytest.mark.parametrize("backend", SERVERS, indirect=True)
def test_a_partitioned_mapping_is_carried_partition_by_partition_each_row_once(demo: ZonePair) -> None:
    seed(demo.intranet, "merchant", demo_data.merchants(VALID_MERCHANTS), ("merchant_id",))
    zones = Zones(demo.intranet, demo.internet, demo.intranet)

    carried = [sync_mapping_rows(PARTITIONED, zones, 3, partition=part) for part in partitions_of(PARTITIONED)]

    expected = [sum(partition_of_key(PARTITIONED, (key,)) == index for key in range(1, VALID_MERCHANTS + 1))
                for index in range(PARTITIONED.partitions)]  # fmt: skip
    assert [result.flagged for result in carried] == expected and sum(expected) == VALID_MERCHANTS
    assert unflagged_keys(demo.intranet, PARTITIONED) == set()


def test_sqlite_carries_a_partitioned_mapping_with_one_writer(demo: ZonePair) -> None:
    """SQLite locks its whole file: a partitioned mapping is one part, under the mapping's own lease."""
    parts = carried_parts(PARTITIONED, demo.intranet)
    if demo.intranet_backend == "sqlite":
        assert [(part.lease, part.partition) for part in parts] == [("mapping:merchants", None)]
    else:
        assert [part.lease for part in parts] == [f"mapping:merchants:partition:{i}-of-4" for i in range(1, 5)]


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("backend", SERVERS, indirect=True)
def test_a_run_leaves_a_partition_another_run_holds_and_the_next_run_carries_it(
    demo: ZonePair, use_zones: Callable[..., None]
) -> None:
    use_zones(demo, modules="tests.integration.partitioned_mappings")
    seed(demo.intranet, "merchant", demo_data.merchants(VALID_MERCHANTS), ("merchant_id",))
    held = partitions_of(PARTITIONED)[1]
    other_run = Lease(demo.intranet, carried_parts(PARTITIONED, demo.intranet)[1].lease, ttl=60)
    assert other_run.try_acquire()

    first = retry_sync(mappings=["merchants"])["merchants"]
    in_held = {(key,) for key in range(1, VALID_MERCHANTS + 1) if partition_of_key(PARTITIONED, (key,)) == held.index}
    assert unflagged_keys(demo.intranet, PARTITIONED) == in_held
    assert first.flagged == VALID_MERCHANTS - len(in_held) and "partitions 2 left to other runs" in first.message
    other_run.release()

    second = retry_sync(mappings=["merchants"])["merchants"]

    assert second.flagged == len(in_held) and unflagged_keys(demo.intranet, PARTITIONED) == set()
    *_, before, last = jobs(demo.intranet)
    assert (before["rows_synced"], last["rows_synced"]) == (first.flagged, second.flagged)  # each run its own rows


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("backend", SERVERS, indirect=True)
def test_a_run_that_finds_every_partition_busy_says_it_skipped(demo: ZonePair, use_zones: Callable[..., None]) -> None:
    use_zones(demo, modules="tests.integration.partitioned_mappings")
    seed(demo.intranet, "merchant", demo_data.merchants(VALID_MERCHANTS), ("merchant_id",))
    holders = [Lease(demo.intranet, part.lease, ttl=60) for part in carried_parts(PARTITIONED, demo.intranet)]
    assert all(holder.try_acquire() for holder in holders)
    try:
        skipped = retry_sync(mappings=["merchants"])["merchants"]
    finally:
        for holder in holders:
            holder.release()

    assert skipped.status == "skipped" and "every partition is busy" in skipped.message
    assert len(unflagged_keys(demo.intranet, PARTITIONED)) == VALID_MERCHANTS


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("backend", SERVERS, indirect=True)
def test_a_run_tries_a_busy_partition_again_at_the_end_of_its_walk(
    demo: ZonePair, use_zones: Callable[..., None]
) -> None:
    """A partition busy when the run passed it, free by the end of its walk (its holder gone): carried by the
    same run, not left to the next one."""
    use_zones(demo, modules="tests.integration.partitioned_mappings")
    seed(demo.intranet, "merchant", demo_data.merchants(VALID_MERCHANTS), ("merchant_id",))
    other_run = Lease(demo.intranet, carried_parts(PARTITIONED, demo.intranet)[0].lease, ttl=60)
    assert other_run.try_acquire()

    with interleaved("batch:delivered", other_run.release):  # while the run carries partition 2
        result = retry_sync(mappings=["merchants"])["merchants"]

    assert result.partitions_carried == [1, 2, 3, 4] and result.partitions_left == []
    assert result.flagged == VALID_MERCHANTS and unflagged_keys(demo.intranet, PARTITIONED) == set()


@pytest.mark.parametrize("backend", SERVERS, indirect=True)
def test_two_retry_processes_share_a_partitioned_mapping_each_row_carried_and_counted_once(
    demo_zones: ZonePair, tmp_path: Path, prefect_api: str
) -> None:
    """Two `zonesync retry` processes at once, on the 4 partitions of 6,000 merchants: whichever carries a
    partition, every valid row lands once and is counted once in the two runs' ledger rows."""
    count, invalid = 6000, 3  # demo merchants 13, 42 and 77 are invalid
    seed(demo_zones.intranet, "merchant", demo_data.merchants(count), ("merchant_id",))
    settings = zone_settings(demo_zones, "tests.integration.partitioned_mappings") | {
        "PYTHONPATH": str(REPO), "ZONESYNC_BATCH_SIZE": "250"}  # fmt: skip
    cli = Cli(tmp_path, settings, demo_zones.passwords, api_url=prefect_api)
    assert cli("init").code == 0

    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda _: cli("retry", "-m", "merchants"), range(2)))

    assert {run.code for run in runs} <= {0, EXIT_PARTIAL}, "\n".join(map(str, runs))
    assert unflagged_keys(demo_zones.intranet, PARTITIONED) == {(13,), (42,), (77,)}
    assert len(rows(demo_zones.internet, "merchant")) == count - invalid
    retries = [job for job in jobs(demo_zones.intranet) if job["job_name"] == "retry-sync"]
    assert len(retries) == 2
    assert sum(job["rows_synced"] for job in retries) == count - invalid
    # An invalid row stays pending: each run that passes its partition counts it again (as two runs in turn would).
    assert (
        all(job["rows_failed"] <= invalid for job in retries) and sum(job["rows_failed"] for job in retries) >= invalid
    )


@pytest.mark.parametrize("backend", [backend_param("postgresql")], indirect=True)
def test_init_advises_an_index_that_serves_each_partitions_reads(demo: ZonePair) -> None:
    """PostgreSQL indexes the partition number itself: the DDL `zonesync init` prints is accepted, and a
    partition's read goes through it."""
    [ddl] = [line for line in check_mapping(PARTITIONED, demo.intranet, demo.internet).advice if "partition" in line]
    with demo.intranet.begin() as conn:  # as psql would run it: no placeholders, so '%' is the operator
        conn.connection.driver_connection.execute(ddl)  # type: ignore[union-attr]
    seed(demo.intranet, "merchant", demo_data.merchants(200), ("merchant_id",))
    source = sa.Table("merchant", sa.MetaData(), autoload_with=demo.intranet)
    dialect = dialect_for(demo.intranet)
    only = in_partition(reconciling_for(demo.intranet), source, PARTITIONED, partitions_of(PARTITIONED)[2])
    query = dialect.render(UnsyncedReader(PARTITIONED, dialect, source, (only,)).batch_query(None, 50))

    with demo.intranet.connect() as conn:  # the query as connectorx receives it: literal SQL
        driver = conn.connection.driver_connection
        driver.execute("ANALYZE merchant")  # type: ignore[union-attr]
        plan = "\n".join(row for (row,) in driver.execute(f"EXPLAIN {query}"))  # type: ignore[union-attr]

    assert "ix_merchant_is_sync_partition" in plan, plan


@pytest.mark.parametrize("backend", [backend_param("postgresql")], indirect=True)
def test_a_partitions_claim_goes_through_the_partition_index_too(demo: ZonePair) -> None:
    """A partition's batch spans a key range that holds the other partitions' rows as well: its claim names the
    partition, so that the index finds its own rows only (without it, a batch of 1 partition in 32 is joined
    with 32 times its rows: at 20,000 rows, the whole table)."""
    [ddl] = [line for line in check_mapping(PARTITIONED, demo.intranet, demo.internet).advice if "partition" in line]
    with demo.intranet.begin() as conn:
        conn.connection.driver_connection.execute(ddl)  # type: ignore[union-attr]
    seed(demo.intranet, "merchant", demo_data.merchants(4000), ("merchant_id",))
    with demo.intranet.connect() as conn:
        conn.connection.driver_connection.execute("ANALYZE merchant")  # type: ignore[union-attr]
    plans: list[str] = []

    def explain_claim(conn: object, cursor: Any, statement: str, parameters: object, *_: object) -> None:
        if statement.startswith("UPDATE merchant SET is_sync=true FROM zonesync_flag"):
            cursor.execute(f"EXPLAIN {statement}", parameters)  # the claim's own statement, with its temp table
            plans.append("\n".join(row for (row,) in cursor.fetchall()))

    sa.event.listen(demo.intranet, "before_cursor_execute", explain_claim)
    try:
        result = sync_mapping_rows(PARTITIONED, Zones(demo.intranet, demo.internet, demo.intranet), 500,
                                   partition=partitions_of(PARTITIONED)[1])  # fmt: skip
    finally:
        sa.event.remove(demo.intranet, "before_cursor_execute", explain_claim)

    assert result.flagged > 500 and plans  # more than one batch, each claimed in bulk
    assert all("ix_merchant_is_sync_partition" in plan for plan in plans), plans[0]


@pytest.mark.parametrize("backend", [backend_param("postgresql")], indirect=True)
def test_a_partitions_batch_goes_straight_into_the_target_among_the_other_partitions_rows(demo: ZonePair) -> None:
    """A large batch is COPYed straight into the target when the target holds none of its keys. One partition's
    keys are spread over a range that the other partitions' rows fill: it is asked about its own keys, so the
    fast path stays open; a batch whose keys are there (rows changed since) still takes the upsert."""
    seed(demo.intranet, "merchant", demo_data.merchants(2000), ("merchant_id",))
    zones = Zones(demo.intranet, demo.internet, demo.intranet)
    first, second = partitions_of(PARTITIONED)[:2]
    sync_mapping_rows(PARTITIONED, zones, 200, partition=first)  # its rows now sit in every key range
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    def carry_second() -> bool:  # whether it went through the upsert's temporary table
        statements.clear()
        sa.event.listen(demo.internet, "before_cursor_execute", seen)
        try:
            sync_mapping_rows(PARTITIONED, zones, 200, partition=second)
        finally:
            sa.event.remove(demo.internet, "before_cursor_execute", seen)
        return any("zonesync_upsert" in statement for statement in statements)

    assert not carry_second()
    execute(demo.intranet, "UPDATE merchant SET is_sync = false")  # changed since: their keys are in the target
    assert carry_second()
    landed, sent = target_rows(demo.internet, PARTITIONED), source_rows(demo.intranet, PARTITIONED)
    valid = set(sent) - set(errors_by_key(demo.intranet, PARTITIONED))
    assert {key for key in landed if partition_of_key(PARTITIONED, key) < 2} == {
        key for key in valid if partition_of_key(PARTITIONED, key) < 2
    }
    assert all(landed[key] == {k: v for k, v in sent[key].items() if k != "__flag"} for key in landed)


@pytest.mark.parametrize("backend", [backend_param("postgresql")], indirect=True)
def test_a_thin_batchs_probe_reads_the_target_at_most_once_with_a_plan_made_for_it_as_it_is(zones: ZonePair) -> None:
    """A pooled connection outlives many batches while the target fills. psycopg prepares a statement on its fifth
    run, and PostgreSQL may then keep a plan made while the target was known to be empty (TRUNCATE, then
    ANALYZE), which compared every row with every key once the target had filled (614 ms at 100,000 rows): each
    run is planned anew (plan_cache_mode=force_custom_plan on every connection). And whatever the plan, a probe
    reads the target at most once (asked by one subquery per key, it read the target once per key)."""
    execute(zones.internet, "CREATE TABLE probe_target (id BIGINT PRIMARY KEY, note VARCHAR(40)) "
                            "WITH (autovacuum_enabled = off)")  # fmt: skip
    table = sa.Table("probe_target", sa.MetaData(), autoload_with=zones.internet)
    thin = pl.DataFrame({"id": [200_000 + 32 * i for i in range(1000)]})  # one key in 32, beyond the rows to come
    with zones.internet.connect() as conn:  # one connection throughout, as a worker's pooled one
        for statement in ("TRUNCATE probe_target", "ANALYZE probe_target"):
            conn.execute(sa.text(statement))
            conn.commit()
        for _ in range(15):  # prepared by psycopg after 5, then 5 custom plans before PostgreSQL weighs a generic one
            before = _scans(conn, "probe_target")  # read in the probe's transaction: counted, not yet reported
            assert holds_none_of(conn, table, thin, ["id"])
            assert _scans(conn, "probe_target")[0] - before[0] <= 1  # seq scans of the empty target
            conn.commit()
        conn.execute(sa.text("INSERT INTO probe_target SELECT g, 'note ' || g FROM generate_series(1, 100000) g"))
        conn.commit()
        before = _scans(conn, "probe_target")
        absent = holds_none_of(conn, table, thin, ["id"])
        present = holds_none_of(conn, table, thin.with_columns(pl.col("id") - 150_000), ["id"])
        after = _scans(conn, "probe_target")
        plans = conn.execute(
            sa.text("SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE :probe"),
            {"probe": "%FROM probe_target%"},
        ).all()

    assert absent and not present
    assert after[0] - before[0] <= 2, (before, after)  # (seq scans, index scans): at most one for each probe
    assert plans and all(generic == 0 and custom > 0 for generic, custom in plans), plans


def _scans(conn: sa.Connection, table: str) -> tuple[int, int]:
    """The seq scans and index scans of `table` this connection's backend has counted, not yet reported."""
    query = sa.text("SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables WHERE relname = :table")
    seq, index = conn.execute(query, {"table": table}).one()
    return seq, index


@pytest.mark.parametrize("backend", SERVERS, indirect=True)
def test_a_run_reflects_its_tables_once_for_every_partition_and_again_once_one_changed(demo: ZonePair) -> None:
    """Reflecting a table is about ten catalog queries: a run's partitions share its reflections while the catalog
    is the one they were made from, and a table changed meanwhile is reflected afresh (and held to the contract)."""
    seed(demo.intranet, "merchant", demo_data.merchants(VALID_MERCHANTS), ("merchant_id",))
    zones = Zones(demo.intranet, demo.internet, demo.intranet)
    first, second, third = partitions_of(PARTITIONED)[:3]
    for partition in (first, second):
        assert sync_mapping_rows(PARTITIONED, zones, 100, partition=partition).flagged > 0

    assert len(zones.reflections.tables) == 2  # the source and the target, once each
    execute(demo.internet, f"ALTER TABLE {PARTITIONED.target_table} ADD COLUMN zs_added_later TEXT")
    result = sync_mapping_rows(PARTITIONED, zones, 100, partition=third)

    assert result.status == "success" and result.flagged > 0
    assert len(zones.reflections.tables) == 3  # the target again, as it is now
    target = next(table for table in zones.reflections.tables.values() if "zs_added_later" in table.c)
    assert target.name == PARTITIONED.target_table


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("backend", SERVERS, indirect=True)
def test_a_partitioned_run_counts_its_backlog_once_and_asks_each_partition_only_whether_it_has_any(
    demo: ZonePair, use_zones: Callable[..., None]
) -> None:
    """Counting a partition's pending rows visits them all (90-180 ms each at 1M rows): the run counts its whole
    backlog once, for its progress, and each partition it takes only has to say whether it holds any."""
    use_zones(demo, modules="tests.integration.partitioned_mappings")
    seed(demo.intranet, "merchant", demo_data.merchants(VALID_MERCHANTS), ("merchant_id",))
    counts: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "count(" in statement.lower() and "merchant" in statement and "sync_error" not in statement:
            counts.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", seen)
    try:
        result = retry_sync(mappings=["merchants"])["merchants"]
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", seen)

    assert result.flagged == VALID_MERCHANTS and result.pending_at_start == VALID_MERCHANTS
    assert len(counts) == 1, counts
