"""`zonesync demo`: the story on the embedded SQLite default, told step by step."""

from __future__ import annotations

from collections.abc import Callable

from flows.realtime_push import realtime_push
from flows.retry_sync import SyncReport, retry_sync
from flows.update_with_rollback import update_with_rollback
from schemas.registry import all_mappings
from tasks.demo_data import INVALID_MERCHANTS, NEW_MERCHANT, fix_merchant, reset_demo_zones, seed_demo
from tasks.engines import get_engine
from tasks.errors import ConfigError
from tasks.inspect import check_mapping

Say = Callable[[str], None]


def run_demo(say: Say) -> list[SyncReport]:
    """Create and seed the demo zones, run the retry sync, fix a quarantined row, run it again."""
    registered = all_mappings()
    if "merchants" not in registered or "payments" not in registered:
        raise ConfigError("the demo needs the demo mappings: set ZONESYNC_MAPPING_MODULES=schemas.examples")
    intranet, internet = get_engine("intranet"), get_engine("internet")
    say("[bold]1. init[/]: demo tables and bookkeeping tables (batch_job, sync_error), recreated empty")
    reset_demo_zones(intranet, internet)
    for mapping in registered.values():
        source, target = get_engine(mapping.source_zone), get_engine(mapping.target_zone)
        check = check_mapping(mapping, source, target)
        say(f"   mapping {mapping.name}: {'ok' if check.ok else '; '.join(check.problems)}")
    merchants, payments = seed_demo(intranet, internet)
    invalid = ", ".join(f"#{key} ({why})" for key, why in INVALID_MERCHANTS.items())
    say(f"[bold]2. seed[/]: {merchants} merchants in the intranet zone (invalid: {invalid}), {payments} payments")
    say("[bold]3. retry sync[/]: unsynced merchants go to the internet zone; invalid ones are quarantined")
    first = retry_sync()
    say("[bold]4. push[/]: an application writes two new merchants; #502 has a status the internet zone refuses")
    pushed = realtime_push("merchants", [NEW_MERCHANT, {**NEW_MERCHANT, "merchant_id": 502, "status": "X"}])
    for outcome in pushed.outcomes:
        say(f"   merchant {outcome.key['merchant_id']}: {outcome.status} {outcome.reason} {outcome.detail}".rstrip())
    say("[bold]5. fix[/]: an operator corrects #13's name and #502's status; the next retry carries both")
    fix_merchant(intranet, 13, merchant_name="Toko Baru #13")
    fix_merchant(intranet, 502, status="A")
    second = retry_sync()
    say("[bold]6. update with rollback[/]: merchant #1's fee changes in both zones; a status the internet zone")
    say("   refuses is not applied anywhere")
    for changes in ({"fee": "3.75"}, {"status": "X"}):
        updated = update_with_rollback("merchants", {"merchant_id": 1}, changes)
        say(f"   {changes}: {updated.status} — {updated.message}")
    return [first, second]
