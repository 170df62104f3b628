"""`zonesync demo`: the whole story on the embedded SQLite default, told step by step."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from prefect.logging.handlers import PrefectConsoleHandler

from zonesync.flows.end_day_check import end_day_check
from zonesync.flows.realtime_push import realtime_push
from zonesync.flows.retry_sync import SyncReport, retry_sync
from zonesync.flows.update_with_rollback import update_with_rollback
from zonesync.schemas.errors import ConfigError
from zonesync.schemas.mapping import SyncMapping
from zonesync.schemas.registry import all_mappings
from zonesync.tasks.bookkeeping.tables import metadata as bookkeeping
from zonesync.tasks.results import EndDayReport
from zonesync.tasks.setup.demo_data import (
    CLOSED_MERCHANT,
    DEMO_BUSINESS_DATE,
    INVALID_MERCHANTS,
    INVALID_PAYMENTS,
    NEW_MERCHANT,
    delete_merchant,
    fix_merchant,
    reset_demo_zones,
    seed_demo,
)
from zonesync.tasks.setup.inspection import check_mapping
from zonesync.tasks.setup.triggers import install_delete_capture
from zonesync.tasks.zones.engines import get_engine

Say = Callable[[str], None]


@dataclass
class DemoRun:
    """What the demo's flow runs returned, for printing."""

    retries: list[SyncReport] = field(default_factory=list)
    end_day: EndDayReport | None = None


def run_demo(say: Say) -> DemoRun:
    """Init, seed, retry, push, fix, retry, update (applied and rolled back), delete, retry, end-day check."""
    registered = all_mappings()
    if "merchants" not in registered or "payments" not in registered:
        raise ConfigError("the demo needs the demo mappings: set ZONESYNC_MAPPING_MODULES=zonesync.schemas.examples")
    with _flow_logs_off_the_console():
        return _story(say, registered)


@contextmanager
def _flow_logs_off_the_console() -> Iterator[None]:
    """The flow runs' log lines stay in Prefect (the UI shows each run's log) and leave the terminal to the story,
    which tells the same."""
    consoles = [handler for handler in logging.getLogger().handlers if isinstance(handler, PrefectConsoleHandler)]
    levels = [handler.level for handler in consoles]
    for handler in consoles:
        handler.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for handler, level in zip(consoles, levels, strict=True):
            handler.setLevel(level)


def _story(say: Say, registered: dict[str, SyncMapping]) -> DemoRun:
    intranet, internet = get_engine("intranet"), get_engine("internet")
    say(f"[bold]1. init[/]: demo tables and bookkeeping tables ({', '.join(sorted(bookkeeping.tables))}), "
        "recreated empty")  # fmt: skip
    reset_demo_zones(intranet, internet)
    for mapping in registered.values():
        check = check_mapping(mapping, get_engine(mapping.source_zone), get_engine(mapping.target_zone))
        say(f"   mapping {mapping.name}: {'ok' if check.ok else '; '.join(check.problems)}")
    install_delete_capture(registered["merchants"], intranet)
    say("   a merchant deleted in the intranet zone leaves a tombstone (sync_tombstone): `zonesync init --triggers`")
    merchants, payments = seed_demo(intranet, internet)
    say(f"[bold]2. seed[/]: {merchants} merchants in the intranet zone (invalid: {_listed(INVALID_MERCHANTS)}),")
    say(f"   {payments} payments of {DEMO_BUSINESS_DATE} in the internet zone: successful, failed, pending, and")
    say(f"   invalid ones ({_listed(INVALID_PAYMENTS)})")
    run = DemoRun()
    say("[bold]3. cron retry sync[/]: unsynced merchants go to the internet zone; invalid ones are quarantined")
    run.retries.append(retry_sync())
    _push(say)
    say("[bold]5. fix[/]: an operator corrects #13's name and #502's status; the next retry carries both")
    fix_merchant(intranet, 13, merchant_name="Toko Baru #13")
    fix_merchant(intranet, 502, status="A")
    run.retries.append(retry_sync())
    _update(say)
    say(f"[bold]7. delete[/]: merchant #{CLOSED_MERCHANT} closes and is deleted in the intranet zone; the next retry")
    say("   moves it to merchant_archive in the internet zone (on_delete='archive'): off the channels, kept on record")
    delete_merchant(intranet, CLOSED_MERCHANT)
    run.retries.append(retry_sync())
    say(f"[bold]8. end-day check[/] for {DEMO_BUSINESS_DATE}: successful payments come back to the intranet zone,")
    say("   invalid ones are quarantined, and both zones are reconciled")
    run.end_day = end_day_check(business_date=DEMO_BUSINESS_DATE)
    return run


def _push(say: Say) -> None:
    say("[bold]4. real-time push[/]: an application writes two new merchants; #502 has a status the internet zone")
    say("   refuses, so it stays pending for the cron retry")
    refused = {**NEW_MERCHANT, "merchant_id": 502, "status": "X", "email": "merchant502@example.com"}
    pushed = realtime_push("merchants", [NEW_MERCHANT, refused])
    for outcome in pushed.outcomes:
        reason = f" ({outcome.reason})" if outcome.reason else ""
        say(f"   merchant {outcome.key['merchant_id']}: {outcome.status}{reason} {outcome.detail}".rstrip())


def _update(say: Say) -> None:
    say("[bold]6. update with rollback[/]: merchant #1's fee changes in both zones; then #2 takes #3's email,")
    say("   which the internet zone refuses (one merchant per login email): the update is rolled back in both zones")
    for key, changes in (
        ({"merchant_id": 1}, {"fee": "3.75"}),
        ({"merchant_id": 2}, {"email": "merchant3@example.com"}),
    ):
        updated = update_with_rollback("merchants", key, changes)
        reason = f" ({updated.reason})" if updated.reason else ""
        say(f"   #{key['merchant_id']} {changes}: {updated.status}{reason} — {updated.message}")


def _listed(invalid: dict[int, str]) -> str:
    return ", ".join(f"#{key} ({why})" for key, why in invalid.items())
