"""The `zonesync` console script against real databases.

What a user sees: the exit code, what is printed on stdout and stderr, and what the databases hold afterwards.
Commands that move data run on SQLite and on one server backend, in turn (the flows behind them are tested on
all three in their own modules); user mistakes (which must never reach a database) run on SQLite only. Most
commands run the script's entry point in this process (`InProcessCli`); the push, a few mistakes and the bare
command go through the real script. Every run is checked for leaked passwords; a user mistake is one line on
stderr and never a traceback.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa

from tests.conftest import ZonePair
from tests.integration.console import (
    SECRET,
    SQLITE_AND_MARIADB,
    SQLITE_AND_POSTGRESQL,
    SQLITE_ONLY,
    Cli,
    InProcessCli,
    Run,
)
from tests.integration.helpers import (
    assert_nothing_lost,
    create,
    errors,
    errors_by_key,
    execute,
    jobs,
    mapped,
    source_rows,
    target_rows,
)
from zonesync.schemas.examples import MERCHANTS, PAYMENTS
from zonesync.schemas.examples.tables import internet_tables, intranet_tables
from zonesync.tasks.bookkeeping import tables as bookkeeping
from zonesync.tasks.setup import demo_data

DOWN_URL = f"postgresql://zs_user:{SECRET}@127.0.0.1:1/zonesync"  # nothing listens on port 1
DEMO_DAY = "2026-11-25"  # tasks/setup/demo_data.py dates every demo payment on this day (UTC)


@pytest.fixture
def seeded(demo_zones: ZonePair) -> ZonePair:
    """The demo tables seeded: 500 merchants (13, 42 and 77 invalid) and 300 payments dated 2026-11-25."""
    demo_data.seed_demo(demo_zones.intranet, demo_zones.internet)
    return demo_zones


def assert_quiet(run: Run, code: int = 0) -> None:
    """A command that succeeded without a word on stderr."""
    assert run.code == code, str(run)
    assert run.stderr == "", str(run)


def table_names(engine: sa.Engine) -> set[str]:
    """The tables a database holds now."""
    return set(sa.inspect(engine).get_table_names())


# --- init, status, mappings, recover -------------------------------------------------------------------------


def test_init_creates_the_bookkeeping_tables_and_checks_every_mapping(zones: ZonePair, cli: Cli) -> None:
    bookkeeping.metadata.drop_all(zones.intranet)
    create(zones.intranet, intranet_tables())
    create(zones.internet, internet_tables(), "payment")  # the internet merchant table is missing

    first = cli("init")

    assert first.code == 2, str(first)
    assert "bookkeeping tables in" in first.stdout and "batch_job, sync_error" in first.stdout
    assert {"batch_job", "sync_error"} <= table_names(zones.intranet)
    assert "mapping merchants (intranet_to_internet): cannot run" in first.stdout
    assert "table 'merchant' not found in the internet zone" in first.stdout
    assert "mapping payments (internet_to_intranet): ok" in first.stdout

    create(zones.internet, internet_tables(), "merchant")
    second = cli("init")

    assert_quiet(second)
    assert "already present" in second.stdout
    assert "mapping merchants (intranet_to_internet): ok" in second.stdout
    assert "mapping payments (internet_to_intranet): ok" in second.stdout
    assert "cannot run" not in second.stdout and "problem:" not in second.stdout


@SQLITE_ONLY
def test_status_shows_backlog_quarantine_and_jobs(seeded: ZonePair, cli: Cli) -> None:
    run = cli("status")

    assert_quiet(run)
    assert run.row("merchants")[1:3] == ["intranet_to_internet", "500"]
    assert run.row("payments")[1:3] == ["internet_to_intranet", "240"]  # eligible (status 'S') only
    # nothing quarantined, no run yet: no shape of the tables accepted yet either
    assert run.row("merchants")[3:] == ["0", "-", "retry-sync: never", "not accepted yet"]
    assert run.row("payments")[3:] == ["0", "-", "end-day-check: never", "not accepted yet"]
    assert "Jobs" in run.stdout


def test_status_says_how_long_quarantined_rows_have_waited_and_when_each_job_last_ran(
    seeded: ZonePair, flow_cli_in_process: InProcessCli
) -> None:
    assert flow_cli_in_process("retry").code == 3  # merchants 13, 42 and 77 quarantined

    run = flow_cli_in_process("status")

    assert_quiet(run)
    unsynced, quarantined, waiting, last_ran, schema = run.row("merchants")[2:]
    assert (unsynced, quarantined, schema) == ("3", "3", "ok")
    assert waiting.endswith(" ago") and last_ran.startswith("retry-sync: ") and last_ran.endswith(" ago"), run
    assert run.row("payments")[5] == "end-day-check: never"


@SQLITE_ONLY
def test_mappings_lists_the_registered_mappings(cli: Cli) -> None:
    run = cli("mappings")

    assert_quiet(run)
    assert run.row("merchants")[1:5] == ["intranet_to_internet", "merchant", "merchant", "merchant_id"]
    assert run.row("payments")[1:5] == ["internet_to_intranet", "payment", "payment", "payment_id"]


@SQLITE_ONLY
def test_mappings_markdown_prints_the_data_mapping_tables(cli: Cli) -> None:
    run = cli("mappings", "--markdown")

    assert_quiet(run)
    lines = run.stdout.splitlines()
    assert lines.count("| Zone | Database Table | Field Name |") == 2
    assert "#### merchants" in lines and "#### payments" in lines
    rows = {tuple(cell.strip() for cell in line.strip("|").split("|")[:2]): line for line in lines if "|" in line}
    merchants_out, payments_back = rows[("Internet", "merchant")], rows[("Intranet", "payment")]
    assert "name (text, required)" in merchants_out and "fee (decimal(18,2), required)" in merchants_out
    assert "email (text)," in merchants_out and "updated_at (timestamp(us, UTC), required)" in merchants_out
    assert "merchant_name" in rows[("Intranet", "merchant")] and "is_sync" in rows[("Intranet", "merchant")]
    assert "amount (decimal(18,2), required)" in payments_back
    for line in rows.values():  # columns that never leave their zone are not documented as mapped fields
        assert "tax_id" not in line and "client_ip" not in line
    assert "\x1b[" not in run.stdout  # plain Markdown, pipeable into a document


@SQLITE_ONLY
def test_recover_with_nothing_to_do(demo_zones: ZonePair, cli: Cli) -> None:
    run = cli("recover")

    assert_quiet(run)
    assert run.stdout.strip() == "0 interrupted update(s) repaired, 0 abandoned batch job(s) closed"


# --- retry, push, update (SQLite and a server) ------------------------------------------------------------


@SQLITE_AND_POSTGRESQL
def test_retry_syncs_the_demo_merchants_and_quarantines_the_invalid_ones(
    seeded: ZonePair, flow_cli_in_process: InProcessCli
) -> None:
    run = flow_cli_in_process("retry")

    assert run.code == 3, str(run)  # quarantined rows make the run partial (exit 3), not failed (1)
    assert run.row("merchants")[1:7] == ["partial", "500", "497", "497", "3", "0"]
    assert "Traceback" not in run.stdout + run.stderr
    synced, quarantined = assert_nothing_lost(
        MERCHANTS, seeded.intranet, seeded.internet, seeded.intranet, [(key,) for key in range(1, 501)]
    )
    assert quarantined == {(13,), (42,), (77,)} and len(synced) == 497
    assert {key: row["reason"] for key, row in errors_by_key(seeded.intranet, MERCHANTS).items()} == {
        (13,): "validation",
        (42,): "validation",
        (77,): "validation",
    }
    assert [(job["job_name"], job["status"], job["rows_synced"]) for job in jobs(seeded.intranet)] == [
        ("retry-sync", "PARTIAL", 497)
    ]
    assert target_rows(seeded.intranet, PAYMENTS) == {}  # the retry only runs intranet_to_internet mappings

    status = flow_cli_in_process("status")

    assert_quiet(status)
    assert status.row("merchants")[2:4] == ["3", "3"]  # unsynced, open quarantine
    job = status.row("1")
    assert (job[1], job[3], job[6]) == ("retry-sync", "PARTIAL", "497")


NEW_MERCHANT: dict[str, Any] = dict(demo_data.NEW_MERCHANT)  # 501; decimals and timestamps as text


@SQLITE_AND_MARIADB
def test_push_success_pending_refused_and_from_a_file(demo_zones: ZonePair, flow_cli: Cli, tmp_path: Path) -> None:
    intranet, internet = demo_zones.intranet, demo_zones.internet

    ok = flow_cli("push", "merchants", "--json", json.dumps(NEW_MERCHANT))

    assert ok.code == 0, str(ok)
    assert "Push through merchants: success" in ok.stdout
    source = source_rows(intranet, MERCHANTS)[(501,)]
    assert source["__flag"] is True
    assert target_rows(internet, MERCHANTS)[(501,)] == mapped(source)
    assert source["name"] == "Kopi Kenangan 😀" and source["fee"] == Decimal("2.50")
    assert source["updated_at"] == datetime(2026, 11, 26, 3, 0, 0, 123456, tzinfo=UTC)

    pending = flow_cli("push", "merchants", "--json", json.dumps({**NEW_MERCHANT, "merchant_id": 502, "status": "X"}))

    assert pending.code == 3, str(pending)
    assert "Push through merchants: pending" in pending.stdout
    assert source_rows(intranet, MERCHANTS)[(502,)]["__flag"] is False
    assert (502,) not in target_rows(internet, MERCHANTS)
    assert [(e["key"], e["reason"]) for e in errors(intranet, "merchants", open_only=True)] == [
        ({"merchant_id": 502}, "validation")
    ]

    refused = flow_cli("push", "merchants", "--json", json.dumps({**NEW_MERCHANT, "merchant_name": "Someone else"}))

    assert refused.code == 1, str(refused)
    assert "Push through merchants: error" in refused.stdout and "duplicate_key" in refused.stdout
    assert source_rows(intranet, MERCHANTS)[(501,)]["name"] == "Kopi Kenangan 😀"
    assert target_rows(internet, MERCHANTS)[(501,)]["name"] == "Kopi Kenangan 😀"

    # A file with several records; a JSON number too long for a float arrives exact.
    records = tmp_path / "records.json"
    records.write_text(
        '[{"merchant_id": 503, "merchant_name": "Big Fee", "status": "A", "fee": 1234567890123456.78,'
        ' "email": null, "tax_id": "T-503", "updated_at": "2026-11-26T10:00:00.000001Z"},'
        f" {json.dumps({**NEW_MERCHANT, 'merchant_id': 504, 'email': 'kopi504@example.com'})}]",
        encoding="utf-8",
    )
    from_file = flow_cli("push", "merchants", "--file", str(records))

    assert from_file.code == 0, str(from_file)
    sources, targets = source_rows(intranet, MERCHANTS), target_rows(internet, MERCHANTS)
    assert sources[(503,)]["__flag"] and sources[(504,)]["__flag"]
    assert targets[(503,)] == mapped(sources[(503,)]) and targets[(504,)] == mapped(sources[(504,)])
    assert targets[(503,)]["fee"] == Decimal("1234567890123456.78") and targets[(503,)]["email"] is None
    assert set(targets) == {(501,), (503,), (504,)}


def _synced_merchants(pair: ZonePair, count: int) -> None:
    """`count` valid merchants present and flagged in both zones."""
    frame = demo_data.merchants(count).with_columns(pl.lit(True).alias("is_sync"))
    demo_data.write_rows(pair.intranet, "merchant", frame, ("merchant_id",))
    target = frame.rename({"merchant_name": "name"}).drop("tax_id", "is_sync")
    demo_data.write_rows(pair.internet, "merchant", target, ("merchant_id",))


@SQLITE_AND_POSTGRESQL
def test_update_applied_in_both_zones_or_in_neither(demo_zones: ZonePair, flow_cli_in_process: InProcessCli) -> None:
    intranet, internet = demo_zones.intranet, demo_zones.internet
    _synced_merchants(demo_zones, 5)
    key = json.dumps({"merchant_id": 2})

    applied = flow_cli_in_process(
        "update", "merchants", "--key", key, "--changes", '{"fee": 3.75, "merchant_name": "Neu 😀"}'
    )

    assert applied.code == 0, str(applied)
    assert applied.stdout.startswith('success {"merchant_id": 2}'), str(applied)
    source = source_rows(intranet, MERCHANTS)[(2,)]
    assert (source["fee"], source["name"], source["__flag"]) == (Decimal("3.75"), "Neu 😀", True)
    assert target_rows(internet, MERCHANTS)[(2,)] == mapped(source)
    before = (source_rows(intranet, MERCHANTS), target_rows(internet, MERCHANTS))

    refused = flow_cli_in_process("update", "merchants", "--key", key, "--changes", '{"status": "X", "fee": "9.99"}')

    assert refused.code == 1, str(refused)
    assert refused.stdout.startswith('error {"merchant_id": 2}') and "status" in refused.stdout, str(refused)
    assert (source_rows(intranet, MERCHANTS), target_rows(internet, MERCHANTS)) == before

    missing = flow_cli_in_process("update", "merchants", "--key", '{"merchant_id": 99}', "--changes", '{"fee": "1.00"}')

    assert missing.code == 1, str(missing)
    assert "no merchant row" in missing.stdout, str(missing)
    assert (source_rows(intranet, MERCHANTS), target_rows(internet, MERCHANTS)) == before


# --- user mistakes (SQLite only: none of them may reach a database) -------------------------------------------


@dataclass(frozen=True)
class Mistake:
    """A command a user gets wrong, the exit code it must end with and what its one line must say."""

    args: tuple[str, ...]
    says: str
    code: int = 2
    env: dict[str, str] = field(default_factory=dict)


MISTAKES = {
    "bad-url": Mistake(("status",), "ZONESYNC_INTRANET_URL is not a valid database URL", env={
        "ZONESYNC_INTRANET_URL": "nonsense"}),
    "bad-url-with-password": Mistake(("status",), "ZONESYNC_INTRANET_URL is not a valid database URL", env={
        "ZONESYNC_INTRANET_URL": f"postgresql://zs_user:{SECRET}@db.example.com:port/zonesync"}),
    "unsupported-database": Mistake(("status",), "unsupported database 'oracle'", env={
        "ZONESYNC_INTRANET_URL": f"oracle://zs_user:{SECRET}@db.example.com/orcl"}),
    "unsupported-database-retry": Mistake(("retry",), "ZONESYNC_INTERNET_URL uses unsupported database 'oracle'",
        env={"ZONESYNC_INTERNET_URL": f"oracle://zs_user:{SECRET}@db.example.com/orcl"}),
    "in-memory-sqlite": Mistake(("status",), "in-memory SQLite", env={"ZONESYNC_INTRANET_URL": "sqlite://"}),
    "retry-unknown-mapping": Mistake(("retry", "-m", "nope"), "unknown mapping 'nope' (registered: merchants,"),
    "retry-wrong-direction": Mistake(("retry", "-m", "payments"), "runs internet_to_intranet"),
    "push-unknown-mapping": Mistake(("push", "nope", "--json", "{}"), "unknown mapping 'nope'"),
    "push-invalid-json": Mistake(("push", "merchants", "--json", "{bad"), "not valid JSON"),
    "push-no-records": Mistake(("push", "merchants"), "exactly one of --json or --file"),
    "push-not-an-object": Mistake(("push", "merchants", "--json", "42"), "object"),
    "push-missing-file": Mistake(("push", "merchants", "--file", "no-such-file.json"), "no-such-file.json"),
    "update-invalid-json": Mistake(("update", "merchants", "--key", "{bad", "--changes", "{}"),
        "--key is not valid JSON"),
    "update-not-an-object": Mistake(("update", "merchants", "--key", '{"merchant_id": 1}', "--changes", "[1]"),
        "--changes must be a JSON object"),
    "update-unknown-mapping": Mistake(("update", "nope", "--key", "{}", "--changes", "{}"), "unknown mapping 'nope'"),
    "status-before-init": Mistake(("status",), "run `zonesync init`"),
    "database-down": Mistake(("status",), "database access failed", code=1, env={"ZONESYNC_INTRANET_URL": DOWN_URL}),
    "database-down-mariadb": Mistake(("init",), "database access failed", code=1, env={
        "ZONESYNC_INTRANET_URL": f"mariadb://zs_user:{SECRET}@127.0.0.1:1/zonesync"}),
    "end-day-wrong-direction": Mistake(("end-day", "-m", "merchants"), "runs intranet_to_internet"),
    "invalid-date": Mistake(("end-day", "--date", "2026-13-45"), "2026-13-45"),
    "invalid-date-reconcile": Mistake(("reconcile", "--date", "2026-13-45"), "2026-13-45"),
    "unknown-mapping-module": Mistake(("mappings",), "cannot import mapping module 'nope.nothing'", env={
        "ZONESYNC_MAPPING_MODULES": "nope.nothing"}),
    "bad-batch-size": Mistake(("retry",), "ZONESYNC_BATCH_SIZE", env={"ZONESYNC_BATCH_SIZE": "0"}),
    "bad-business-timezone": Mistake(("status",), "Mars/Olympus", env={"ZONESYNC_BUSINESS_TIMEZONE": "Mars/Olympus"}),
    "demo-on-configured-databases": Mistake(("demo",), "runs only on the default SQLite files"),
    "resync-no-selection": Mistake(("resync", "merchants"), "select the rows one way"),
    "resync-half-a-range": Mistake(("resync", "merchants", "--from", "1"), "needs both --from and --to"),
    "resync-wrong-key": Mistake(("resync", "merchants", "--key", '{"id": 1}'), "exactly the key columns"),
    "automations-without-a-block": Mistake(("automations", "install"), "give one of --block TYPE/NAME"),
    "automations-without-a-server": Mistake(("automations", "install", "--webhook", "https://alerts.example/z"),
        "PREFECT_API_URL is not set"),
}  # fmt: skip


@pytest.fixture(params=list(MISTAKES.values()), ids=list(MISTAKES))
def mistake(request: pytest.FixtureRequest) -> Mistake:
    """Each user mistake in turn."""
    return request.param


# A few mistakes also go through the real script: a password in a URL that nothing may print, a driver's error
# from a real connection attempt, a mapping module that cannot be imported.
THROUGH_THE_SCRIPT = ("bad-url-with-password", "database-down", "unknown-mapping-module")


def _mistake_settings(tmp_path: Path) -> dict[str, str]:
    """An empty SQLite intranet (no bookkeeping tables) and an internet URL with a password nothing may print."""
    sqlite3.connect(tmp_path / "intranet.db").close()
    return {
        "ZONESYNC_INTRANET_URL": f"sqlite:///{tmp_path / 'intranet.db'}",
        "ZONESYNC_INTERNET_URL": DOWN_URL,
        "ZONESYNC_MAPPING_MODULES": "zonesync.schemas.examples",
    }


def _assert_one_line_mistake(run: Run, mistake: Mistake) -> None:
    assert run.code == mistake.code, str(run)
    assert "Traceback" not in run.stdout + run.stderr, str(run)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr:\n{run}"
    assert mistake.says in lines[0], str(run)
    assert run.stdout.strip() == "", str(run)


@pytest.mark.backend("sqlite")
def test_a_user_mistake_is_one_line_and_a_non_zero_exit(
    mistake: Mistake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = InProcessCli(tmp_path, _mistake_settings(tmp_path), monkeypatch=monkeypatch)

    _assert_one_line_mistake(cli(*mistake.args, **mistake.env), mistake)


@pytest.mark.backend("sqlite")
@pytest.mark.parametrize("name", THROUGH_THE_SCRIPT)
def test_a_user_mistake_through_the_real_script_is_one_line(name: str, tmp_path: Path) -> None:
    mistake = MISTAKES[name]
    cli = Cli(tmp_path, _mistake_settings(tmp_path), timeout=60)

    _assert_one_line_mistake(cli(*mistake.args, **mistake.env), mistake)


@pytest.mark.backend("sqlite")
def test_a_temporary_prefect_server_too_slow_to_start_is_one_line_that_says_what_to_do(tmp_path: Path) -> None:
    """No PREFECT_API_URL: Prefect starts a server of its own and gives up once its start-up time is spent (20 s
    unless zonesync or the user sets more; a fresh PREFECT_HOME on a busy machine took longer)."""
    cli = Cli(tmp_path, {}, timeout=120)

    run = cli("demo", PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="1")

    assert run.code == 1, str(run)
    assert "Traceback" not in run.stdout + run.stderr, str(run)
    said = [line for line in run.stderr.splitlines() if "error:" in line]
    assert len(said) == 1, str(run)
    assert "temporary Prefect server did not start within 1 s" in said[0], str(run)
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in said[0], str(run)
    assert "PREFECT_API_URL" in said[0], str(run)


# --- end-day and reconcile (SQLite and a server) ---------------------------------------------------------


def _demo_payments() -> tuple[pl.DataFrame, set[tuple[int]], set[tuple[int]]]:
    """The demo payments, the keys of the eligible ones (status 'S') and of the eligible ones the intranet refuses."""
    frame = demo_data.payments()
    eligible = {(key,) for key in frame.filter(pl.col("status") == "S")["payment_id"]}
    invalid = {(key,) for key in getattr(demo_data, "INVALID_PAYMENTS", {})} & eligible
    return frame, eligible, invalid


def _rewrite(engine: sa.Engine, frame: pl.DataFrame, **values: Any) -> None:
    """Overwrite some payment rows of a zone with changed values (through the dialect's bulk path)."""
    table = sa.Table("payment", sa.MetaData(), autoload_with=engine)
    changed = frame.with_columns(
        *(pl.lit(value, dtype=frame.schema[name]).alias(name) for name, value in values.items())
    )
    demo_data.write_rows(engine, "payment", changed.select(table.columns.keys()), ("payment_id",))


@SQLITE_AND_MARIADB
def test_end_day_syncs_the_days_payments_and_reconcile_compares_the_zones(
    demo_zones: ZonePair, flow_cli_in_process: InProcessCli
) -> None:
    intranet, internet = demo_zones.intranet, demo_zones.internet
    frame, eligible, invalid = _demo_payments()
    assert invalid, "the demo payments are expected to hold invalid successful payments"
    demo_data.write_rows(internet, "payment", frame, ("payment_id",))

    partial = flow_cli_in_process("end-day", "--date", DEMO_DAY)

    assert partial.code == 3, str(partial)  # quarantined rows: partial
    assert f"End-day check {DEMO_DAY}: PARTIAL" in partial.stdout, str(partial)
    missing = ", ".join(f"payment_id={key}" for (key,) in sorted(invalid))
    assert f"Keys missing in the target: {len(invalid)}: {missing}" in partial.stdout, str(partial)
    synced, quarantined = assert_nothing_lost(PAYMENTS, internet, intranet, intranet, eligible)
    assert (synced, quarantined) == (eligible - invalid, invalid)
    assert set(target_rows(intranet, PAYMENTS)) == eligible - invalid  # failed and pending payments stay outside
    job = jobs(intranet)[-1]
    assert (job["job_name"], job["status"], str(job["business_date"])) == ("end-day-check", "PARTIAL", DEMO_DAY)
    assert (job["rows_synced"], job["rows_failed"]) == (len(eligible) - len(invalid), len(invalid))

    differ = flow_cli_in_process("reconcile", "--date", DEMO_DAY)

    assert differ.code == 3, str(differ)
    assert "Reconciliation of payments" in differ.stdout and "ZONES DIFFER" in differ.stdout, str(differ)
    assert f"Keys missing in the target: {len(invalid)}: {missing}" in differ.stdout

    # The operator corrects the refused payments in the internet zone; the next end-day check carries them.
    for (key,) in invalid:
        _rewrite(internet, frame.filter(pl.col("payment_id") == key), amount=Decimal("12.50"), reference=f"FIX-{key}")

    success = flow_cli_in_process("end-day", "--date", DEMO_DAY)

    assert success.code == 0, str(success)
    assert f"End-day check {DEMO_DAY}: SUCCESS" in success.stdout, str(success)
    assert set(target_rows(intranet, PAYMENTS)) == eligible
    assert assert_nothing_lost(PAYMENTS, internet, intranet, intranet, eligible) == (eligible, set())
    assert errors(intranet, "payments", open_only=True) == []
    assert [job["status"] for job in jobs(intranet)] == ["PARTIAL", "SUCCESS"]

    agree = flow_cli_in_process("reconcile", "--date", DEMO_DAY)

    assert agree.code == 0, str(agree)
    assert "ZONES DIFFER" not in agree.stdout and agree.stdout.count("zones agree") == 2, str(agree)

    # A payment changed behind zonesync's back in the intranet zone: the zones differ again, by that key.
    _rewrite(intranet, frame.filter(pl.col("payment_id") == 3), amount=Decimal("0.01"))
    changed = flow_cli_in_process("reconcile", "--date", DEMO_DAY, "-m", "payments")

    assert changed.code == 3, str(changed)
    assert "Reconciliation of merchants" not in changed.stdout
    assert "Keys different: 1: payment_id=3" in changed.stdout, str(changed)


@SQLITE_ONLY
def test_end_day_with_nothing_to_bring_back_is_no_record(
    demo_zones: ZonePair, flow_cli_in_process: InProcessCli
) -> None:
    run = flow_cli_in_process("end-day", "--date", DEMO_DAY)

    assert run.code == 0, str(run)
    assert f"End-day check {DEMO_DAY}: NO_RECORD" in run.stdout, str(run)
    assert [(job["job_name"], job["status"]) for job in jobs(demo_zones.intranet)] == [("end-day-check", "NO_RECORD")]


@SQLITE_ONLY
def test_end_day_that_cannot_run_reports_failed_and_exits_1(
    demo_zones: ZonePair, flow_cli_in_process: InProcessCli
) -> None:
    frame, _, _ = _demo_payments()
    demo_data.write_rows(demo_zones.internet, "payment", frame, ("payment_id",))
    execute(demo_zones.intranet, "DROP TABLE payment")

    run = flow_cli_in_process("end-day", "--date", DEMO_DAY)

    assert run.code == 1, str(run)
    assert f"End-day check {DEMO_DAY}: FAILED" in run.stdout, str(run)
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: end-day check {DEMO_DAY} failed:") and "table 'payment' not found" in last
    assert [job["status"] for job in jobs(demo_zones.intranet)] == ["FAILED"]
    assert not any(flag for flag in source_rows(demo_zones.internet, PAYMENTS).values() if flag["__flag"])


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("retry", "--bogus"), "error: No such option: --bogus (see zonesync retry --help)"),
        (("retry", "--batch-size", "x"),
         "error: Invalid value for '--batch-size': Input should be a valid integer, unable to parse string as an "
         "integer (see zonesync retry --help)"),
        (("nosuch",), "error: No such command 'nosuch'. (see zonesync --help)"),
        (("api-key", "new"), "error: Missing argument 'name'. (see zonesync api-key new --help)"),
    ],
    ids=["unknown-option", "bad-value", "unknown-command", "missing-argument"],
)  # fmt: skip
def test_a_usage_error_is_one_line_and_exit_code_2(
    cli_in_process: InProcessCli, args: tuple[str, ...], line: str
) -> None:
    run = cli_in_process(*args)

    assert (run.code, run.stdout, run.stderr.strip()) == (2, "", line), str(run)


@SQLITE_ONLY
def test_zonesync_alone_shows_its_help_and_exit_code_2(cli: Cli) -> None:
    run = cli()

    assert run.code == 2 and "Commands" in run.stdout + run.stderr and "error" not in run.stderr, str(run)
