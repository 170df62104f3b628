"""The drift matrix: each change a DBA makes to a mapped table, between two runs and in the middle of a run, on
each backend where the change exists (and across engines for the server backends), with what must follow.

Every case starts from a first run that synced merchants 1-10 and accepted the tables. Then the change is made,
merchants 11-30 (40 in the middle of a run) arrive, and the next run must proceed, or stop before writing with one
line; after the change is accepted (or undone) the next run carries everything: each row flagged with a target
equal to it, or quarantined with a reason (`type_loss` for a value the accepted table would alter). The torture
checker's row rules (tests/torture/checker.py) hold after every run. A change made in the middle of a run rolls
the batch in flight back (any change of the table's catalog: the run stops at the batch boundary); the changes
made in the middle of a run are those of the target table, which no transaction of the run holds at that point
(a change of the source table waits for the claims' locks, so when the run sees it depends on timing: the
between-runs cases cover it). Non-UTC server time zones are drilled in tests/integration/test_time_zones.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Literal

import polars as pl
import pytest

from tests.conftest import ThrowawayServers, ZonePair, make_pair, pair_param
from tests.integration.helpers import (
    errors,
    errors_by_key,
    execute,
    reflect,
    seed,
    source_rows,
    sync,
)
from tests.torture.checker import check_rows
from zonesync.schemas.examples import MERCHANTS
from zonesync.schemas.examples.tables import internet_tables, intranet_tables
from zonesync.tasks.results import MappingSyncResult
from zonesync.tasks.schema.contract import accept_live
from zonesync.tasks.setup import demo_data
from zonesync.tasks.zones.checkpoints import interleaved

Backend = Literal["sqlite", "postgresql", "mariadb"]
FITTING_FEE, MISFIT_FEE = Decimal("3.00"), Decimal("123456789.15")  # the misfit: neither (18,1) nor (10,2)
LONG_NAME = "Toko " + "x" * 54 + " "  # 60 characters, a trailing blank


def misfit(key: int) -> bool:
    """Rows 11-40 with an odd key hold values a narrowed column would alter; rows 1-10 and even keys fit all."""
    return key > 10 and key % 2 == 1


def misfit_after_first_batch(key: int) -> bool:
    """In the middle of a run: the first batch (11-20) fits every narrowed column, or the ALTER would refuse it."""
    return key > 20 and key % 2 == 1


@dataclass(frozen=True)
class Drift:
    """One change of a mapped table, per backend (no entry: the database has no such change)."""

    name: str
    ddl: dict[str, list[str]]
    breaking: bool
    undo: dict[str, list[str]] = field(default_factory=dict)  # a breaking change is undone (else accepted)
    zone: Literal["internet", "intranet"] = "internet"
    quarantined: Literal["none", "misfits", "all"] = "none"  # after it is accepted
    unchanged: bool = False  # the table ends as it began (its catalog too)


ALL: tuple[Backend, ...] = ("sqlite", "postgresql", "mariadb")


def same(statements: list[str], *backends: Backend) -> dict[str, list[str]]:
    return {backend: statements for backend in backends or ALL}


DRIFTS = [
    Drift("add a nullable column", same(["ALTER TABLE merchant ADD COLUMN channel_note varchar(20)"]), False),
    Drift("add a NOT NULL column with a default",
          same(["ALTER TABLE merchant ADD COLUMN tier varchar(5) NOT NULL DEFAULT 'std'"]), False),
    Drift("add a NOT NULL column without a default",
          {"postgresql": ["ALTER TABLE merchant ADD COLUMN tier int NOT NULL DEFAULT 0",
                          "ALTER TABLE merchant ALTER COLUMN tier DROP DEFAULT"],
           "mariadb": ["ALTER TABLE merchant ADD COLUMN tier int NOT NULL"]}, True,
          undo=same(["ALTER TABLE merchant DROP COLUMN tier"])),
    Drift("drop a mapped column", same(["ALTER TABLE merchant DROP COLUMN name"]), True,
          undo=same(["ALTER TABLE merchant ADD COLUMN name varchar(100)"])),
    Drift("drop an unmapped column", same(["ALTER TABLE merchant DROP COLUMN tax_id"]), False, zone="intranet"),
    Drift("rename a mapped column", same(["ALTER TABLE merchant RENAME COLUMN name TO display_name"]), True,
          undo=same(["ALTER TABLE merchant RENAME COLUMN display_name TO name"])),
    Drift("widen varchar", {"postgresql": ["ALTER TABLE merchant ALTER COLUMN name TYPE varchar(200)"],
                            "mariadb": ["ALTER TABLE merchant MODIFY name varchar(200) NOT NULL"]}, False),
    Drift("narrow varchar", {"postgresql": ["ALTER TABLE merchant ALTER COLUMN name TYPE varchar(50)"],
                             "mariadb": ["ALTER TABLE merchant MODIFY name varchar(50) NOT NULL"]}, True,
          quarantined="misfits"),
    Drift("widen numeric", {"postgresql": ["ALTER TABLE merchant ALTER COLUMN fee TYPE numeric(20,4)"],
                            "mariadb": ["ALTER TABLE merchant MODIFY fee decimal(20,4) NOT NULL"]}, False),
    Drift("narrow numeric scale", {"postgresql": ["ALTER TABLE merchant ALTER COLUMN fee TYPE numeric(18,1)"],
                                   "mariadb": ["ALTER TABLE merchant MODIFY fee decimal(18,1) NOT NULL"]}, True,
          quarantined="misfits"),
    Drift("narrow numeric precision",
          {"postgresql": ["ALTER TABLE merchant ALTER COLUMN fee TYPE numeric(10,2)"],
           "mariadb": ["ALTER TABLE merchant MODIFY fee decimal(10,2) NOT NULL"]}, True, quarantined="misfits"),
    Drift("narrow fractional seconds",
          {"postgresql": ["ALTER TABLE merchant ALTER COLUMN updated_at TYPE timestamptz(3)"],
           "mariadb": ["ALTER TABLE merchant MODIFY updated_at datetime(3) NOT NULL"]}, True, quarantined="misfits"),
    Drift("timestamptz to timestamp", {"postgresql": ["ALTER TABLE merchant ALTER COLUMN updated_at TYPE timestamp"]},
          True),
    Drift("bigint to int", {"postgresql": ["ALTER TABLE merchant ALTER COLUMN merchant_id TYPE int"],
                            "mariadb": ["ALTER TABLE merchant MODIFY merchant_id int NOT NULL"]}, True),
    Drift("int back to bigint", {"postgresql": ["ALTER TABLE merchant ALTER COLUMN merchant_id TYPE int",
                                                "ALTER TABLE merchant ALTER COLUMN merchant_id TYPE bigint"],
                                 "mariadb": ["ALTER TABLE merchant MODIFY merchant_id int NOT NULL",
                                             "ALTER TABLE merchant MODIFY merchant_id bigint NOT NULL"]}, False,
          unchanged=True),
    Drift("numeric to double", {"postgresql": ["ALTER TABLE merchant ALTER COLUMN fee TYPE double precision"],
                                "mariadb": ["ALTER TABLE merchant MODIFY fee double NOT NULL"]}, True,
          quarantined="misfits"),
    Drift("char(n)", {"postgresql": ["ALTER TABLE merchant ALTER COLUMN status TYPE char(3)"],
                      "mariadb": ["ALTER TABLE merchant MODIFY name char(100) NOT NULL"]}, True,
          quarantined="all"),
    Drift("primary key change",
          {"postgresql": ["ALTER TABLE merchant DROP CONSTRAINT merchant_pkey",
                          "ALTER TABLE merchant ADD PRIMARY KEY (merchant_id, status)"],
           "mariadb": ["ALTER TABLE merchant DROP PRIMARY KEY, ADD PRIMARY KEY (merchant_id, status)"]}, True,
          undo={"postgresql": ["ALTER TABLE merchant DROP CONSTRAINT merchant_pkey",
                               "ALTER TABLE merchant ADD PRIMARY KEY (merchant_id)"],
                "mariadb": ["ALTER TABLE merchant DROP PRIMARY KEY, ADD PRIMARY KEY (merchant_id)"]}),
]  # fmt: skip
# MariaDB's CHAR drops trailing blanks (the misfits' names end in one); PostgreSQL's char(3) pads every status.
QUARANTINED_BY_BACKEND = {("char(n)", "mariadb"): "misfits"}

PAIRS = [("sqlite", "sqlite"), ("postgresql", "postgresql"), ("mariadb", "mariadb"), ("mariadb", "postgresql"),
         ("postgresql", "mariadb")]  # fmt: skip


def cases(*, mid_run: bool) -> list[object]:
    found = []
    for intranet, internet in PAIRS:
        for drift in DRIFTS:
            changed = internet if drift.zone == "internet" else intranet
            same_engine = (intranet, internet) in PAIRS[:3]
            if changed not in drift.ddl or (mid_run and (not same_engine or drift.zone != "internet")):
                continue
            param = pair_param(intranet, internet)
            found.append(pytest.param((intranet, internet), drift, id=f"{param.id}-{drift.name.replace(' ', '_')}",
                                      marks=param.marks))  # fmt: skip
    return found


def merchants(ids: range, misfits: Callable[[int], bool] = misfit) -> pl.DataFrame:
    """Valid merchants; the misfits hold a fee of 9 whole digits with a cent, microseconds, a 60-character name."""
    frame = demo_data.merchants(max(ids)).filter(pl.col("merchant_id").is_in(list(ids)))
    odd = pl.col("merchant_id").is_in([key for key in ids if misfits(key)])
    whole_second = demo_data.BASE_TIME.replace(microsecond=0)
    return frame.with_columns(
        pl.when(odd).then(pl.lit(MISFIT_FEE)).otherwise(pl.lit(FITTING_FEE)).cast(pl.Decimal(18, 2)).alias("fee"),
        pl.when(odd).then(pl.lit(whole_second + timedelta(microseconds=123457)))
        .otherwise(pl.lit(whole_second)).alias("updated_at"),
        pl.when(odd).then(pl.lit(LONG_NAME)).otherwise(pl.lit("Toko")).alias("merchant_name"),
        pl.lit("A").alias("status"),
        pl.lit(None, pl.String).alias("email"),
    )  # fmt: skip


@pytest.fixture
def drifted(servers: ThrowawayServers, request: pytest.FixtureRequest, tmp_path, use_zones) -> Iterator[ZonePair]:  # type: ignore[no-untyped-def]
    """A zone pair with the demo tables, merchants 1-10 synced by a first run (which accepted the tables)."""
    intranet, internet = request.param
    pair = make_pair(servers, intranet, internet, tmp_path)
    intranet_tables().create_all(pair.intranet)
    internet_tables().create_all(pair.internet)
    use_zones(pair, modules="zonesync.schemas.examples")
    seed(pair.intranet, "merchant", merchants(range(1, 11)), ["merchant_id"])
    assert run(pair).status == "success"
    yield pair
    pair.dispose()


def seed_merchants(pair: ZonePair, ids: range, misfits: Callable[[int], bool] = misfit) -> None:
    """New merchants in the intranet zone, with the columns its table has now."""
    columns = set(rows_columns(pair))
    frame = merchants(ids, misfits)
    seed(pair.intranet, "merchant", frame.select([c for c in frame.columns if c in columns]), ["merchant_id"])


def rows_columns(pair: ZonePair) -> list[str]:
    return [column.name for column in reflect(pair.intranet, "merchant").columns]


def run(pair: ZonePair, batch_size: int = 1000) -> MappingSyncResult:
    return sync(MERCHANTS, pair.intranet, pair.internet, pair.intranet, batch_size=batch_size)


def backend_of(pair: ZonePair, drift: Drift) -> str:
    return pair.internet_backend if drift.zone == "internet" else pair.intranet_backend


def apply(pair: ZonePair, drift: Drift, statements: dict[str, list[str]]) -> None:
    engine = pair.internet if drift.zone == "internet" else pair.intranet
    for statement in statements[backend_of(pair, drift)]:
        execute(engine, statement)


def target_keys(pair: ZonePair) -> set[tuple[int]]:
    """The target's keys (read without the mapped columns, some of which a change may have taken away)."""
    with pair.internet.connect() as conn:
        return {(int(key),) for key in conn.exec_driver_sql("SELECT merchant_id FROM merchant").scalars()}


def resolve_and_finish(pair: ZonePair, drift: Drift, misfits: Callable[[int], bool] = misfit) -> None:
    """Accept (or undo) a breaking change, run again: everything carried or quarantined for a reason."""
    if drift.breaking and drift.undo:
        apply(pair, drift, drift.undo)
    elif drift.breaking:
        accept_live(MERCHANTS, pair.intranet, pair.intranet, pair.internet, by="ops@bank")
    finished = run(pair)
    assert finished.status in ("success", "partial", "no_record"), finished.message
    assert check_rows(pair, MERCHANTS, final=True) == []
    expected = QUARANTINED_BY_BACKEND.get((drift.name, backend_of(pair, drift)), drift.quarantined)
    keys = set(source_rows(pair.intranet, MERCHANTS))
    wanted = {"none": set(), "all": keys, "misfits": {key for key in keys if misfits(key[0])}}[expected]
    if drift.undo or not drift.breaking:
        wanted = set()
    quarantined = errors_by_key(pair.intranet, MERCHANTS, open_only=True)
    assert set(quarantined) == wanted, f"quarantined {sorted(quarantined)}"
    assert all(row["reason"] == "type_loss" for row in quarantined.values())


def assert_stopped_before_writing(pair: ZonePair, result: MappingSyncResult, later: set[tuple[int]]) -> None:
    assert result.status == "error" and result.flagged == 0, result.message
    assert "\n" not in result.message and ("schema change: " in result.message or "has no column" in result.message)
    assert not later & target_keys(pair), "a row reached the changed target"
    assert not any(source_rows(pair.intranet, MERCHANTS)[key]["__flag"] for key in later)
    assert errors(pair.intranet) == [], "a schema break became a quarantine of rows"


@pytest.mark.parametrize(("drifted", "drift"), cases(mid_run=False), indirect=["drifted"])
def test_a_change_between_runs(drifted: ZonePair, drift: Drift) -> None:
    apply(drifted, drift, drift.ddl)
    seed_merchants(drifted, range(11, 31))
    later = {(key,) for key in range(11, 31)}

    result = run(drifted)

    if drift.breaking:
        assert_stopped_before_writing(drifted, result, later)
    else:
        assert result.status in ("success", "partial"), result.message
        assert check_rows(drifted, MERCHANTS, final=True) == []
    resolve_and_finish(drifted, drift)


@pytest.mark.parametrize(("drifted", "drift"), cases(mid_run=True), indirect=["drifted"])
def test_a_change_in_the_middle_of_a_run(drifted: ZonePair, drift: Drift) -> None:
    seed_merchants(drifted, range(11, 41), misfit_after_first_batch)
    before = target_keys(drifted)
    # At the second batch's claim (its rows flagged, uncommitted), from a second connection.
    with interleaved("batch:claimed", lambda: apply(drifted, drift, drift.ddl), at=2):
        stopped = run(drifted, batch_size=10)

    if drift.unchanged:
        assert stopped.status in ("success", "partial"), stopped.message
    else:
        assert stopped.status == "error" and "changed while a batch was written" in stopped.message, stopped.message
        assert stopped.flagged == 10, "only the first batch, written before the change, is flagged"
    flagged = {key for key, values in source_rows(drifted.intranet, MERCHANTS).items() if values["__flag"]}
    assert target_keys(drifted) - before <= flagged, "a rolled-back batch left rows in the target"
    assert errors(drifted.intranet) == []
    if not drift.breaking:
        assert check_rows(drifted, MERCHANTS, final=False) == []
    next_run = run(drifted)
    assert (next_run.status == "error") == drift.breaking, next_run.message
    resolve_and_finish(drifted, drift, misfit_after_first_batch)
