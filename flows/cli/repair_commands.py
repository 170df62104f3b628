"""Comparing the zones and sending rows again: `reconcile` (with `--repair`) and `resync`.

Each command imports what it runs when it runs: `zonesync --help`, a usage error or another command loads none of it.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Annotated, Any

import typer

from zonesync.flows.cli.support import (
    EXIT_PARTIAL,
    BusinessDate,
    Mappings,
    console,
    friendly_errors,
    json_object,
    parse_date,
    parse_json,
    print_markdown,
)
from zonesync.schemas.errors import ConfigError

if TYPE_CHECKING:  # the declarations import polars and pandera: `zonesync --help` should not pay for them
    from zonesync.schemas.mapping import SyncMapping
    from zonesync.tasks.reconcile.findings import Reconciliation

REPAIRED_PER_RUN = 100_000  # keys one `reconcile --repair` marks per mapping (the rest: run it again)


@friendly_errors
def reconcile(
    business_date: BusinessDate = None,
    mapping: Mappings = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="Send again what is missing in the target or differs there, then check.")
    ] = False,
    orphans: Annotated[
        bool, typer.Option("--orphans", help="Sweep for target rows whose source row is gone (nothing is deleted).")
    ] = False,
) -> None:
    """Compare both zones for a business date (counts and sums per group, keys missing or different).

    With --orphans: list the target rows whose source row is gone with no delete on its way (deleted behind
    zonesync's back: a trigger dropped, TRUNCATE, a restore); nothing is deleted.

    With --repair: mark the source rows that are missing in the target or differ there for the next sync, run it
    for those mappings, and compare again. Rows only in the target are reported, never deleted, unless the mapping
    carries deletes (on_delete other than ignore, with `init --triggers`): then their deletes are recorded and carried.
    Exit code 0: the zones agree (after the repair); 3: they differ.
    """
    from zonesync.schemas.registry import select_mappings

    if orphans:
        _sweep(select_mappings(None, mapping or None))
        return
    day = _business_date(business_date)
    found = [_reconciled(selected, day, listing=REPAIRED_PER_RUN if repair else 50)
             for selected in select_mappings(None, mapping or None)]  # fmt: skip
    if not repair:
        for each in found:
            print_markdown(_report(each))
        _exit_unless_all_agree(found)
        return
    differing = [each for each in found if not each.ok]
    for each in found:
        console.print(f"{each.mapping}: {'agree' if each.ok else 'ZONES DIFFER'}: {each.headline()}", highlight=False)
    _mark_and_sync(differing, day)
    after = [_reconciled(_declared(each), day, listing=50) for each in differing]
    for each in after:
        console.print(f"{each.mapping} after the repair: {'agree' if each.ok else 'ZONES DIFFER'}: "
                      f"{each.headline()}", highlight=False)  # fmt: skip
        if not each.ok:
            print_markdown(_report(each))
    _exit_unless_all_agree(after)


def _sweep(selected: list[SyncMapping]) -> None:
    """Print each mapping's orphans; exit 3 when some mapping has any."""
    from zonesync.tasks.deletes.sweep import sweep_orphans
    from zonesync.tasks.zones.engines import get_engine

    found = [sweep_orphans(m, get_engine(m.source_zone), get_engine(m.target_zone)) for m in selected]
    for each in found:
        console.print(each.line(), highlight=False, soft_wrap=True)
    if not all(each.ok for each in found):
        raise typer.Exit(EXIT_PARTIAL)


@friendly_errors
def resync(
    mapping: Annotated[str, typer.Argument(help="The mapping, e.g. merchants.")],
    key: Annotated[
        list[str] | None, typer.Option("--key", help="A key, as JSON (repeatable): '{\"merchant_id\": 7}'.")
    ] = None,
    low: Annotated[str | None, typer.Option("--from", help="The first key of a range, as JSON: 100.")] = None,
    high: Annotated[str | None, typer.Option("--to", help="The last key of a range, as JSON: 199.")] = None,
    business_date: Annotated[str | None, typer.Option("--date", help="The rows of a business date.")] = None,
) -> None:
    """Mark rows of a mapping's source for the next sync (their flag set back to false, in chunks): some keys, a key
    range, or a business date. The next retry (or end-day check) sends them; values never change."""
    from zonesync.schemas.registry import get_mapping
    from zonesync.schemas.settings import get_settings
    from zonesync.tasks.reconcile.repair import Selection
    from zonesync.tasks.reconcile.repair import resync as mark
    from zonesync.tasks.zones.engines import get_engine

    declared = get_mapping(mapping)
    if (low is None) != (high is None):
        raise ConfigError("a key range needs both --from and --to")
    keys = tuple(_key(declared, json_object(text, "--key")) for text in key or ())
    span = (parse_json(low, "--from"), parse_json(high, "--to")) if low is not None and high is not None else None
    day = parse_date(business_date) if business_date else None
    selection = Selection(keys=keys, key_range=span, business_date=day)
    result = mark(declared, get_engine(declared.source_zone), selection, timezone=get_settings().business_timezone)
    console.print(result.headline(), highlight=False)
    console.print(f"`{_carrier(declared)}` sends them now.", highlight=False)


def _key(mapping: SyncMapping, given: dict[str, Any]) -> tuple[Any, ...]:
    """A --key object as a key tuple (source column names, the mapping's key order)."""
    if set(given) != set(mapping.source_keys):
        raise ConfigError(f"--key must name exactly the key columns ({', '.join(mapping.source_keys)})")
    return tuple(given[name] for name in mapping.source_keys)


def _carrier(mapping: SyncMapping) -> str:
    """The command that carries a mapping's unsynced rows."""
    command = "retry" if mapping.direction == "intranet_to_internet" else "end-day"
    return f"zonesync {command} -m {mapping.name}"


def _business_date(given: str | None) -> date:
    from zonesync.schemas.settings import get_settings
    from zonesync.tasks.reporting.end_day import previous_business_date

    return parse_date(given) if given else previous_business_date(get_settings().business_timezone)


def _reconciled(mapping: SyncMapping, day: date, *, listing: int) -> Reconciliation:
    from zonesync.schemas.settings import get_settings
    from zonesync.tasks.reconcile.compare import reconcile_mapping
    from zonesync.tasks.zones.engines import get_engine

    source, target = get_engine(mapping.source_zone), get_engine(mapping.target_zone)
    return reconcile_mapping(mapping, day, source, target, timezone=get_settings().business_timezone,
                             list_limit=listing)  # fmt: skip


def _declared(found: Reconciliation) -> SyncMapping:
    """The mapping a reconciliation compared."""
    from zonesync.schemas.registry import get_mapping

    return get_mapping(found.mapping)


def _mark_and_sync(differing: list[Reconciliation], day: date) -> None:
    """Mark each mapping's missing and different rows, say what is left alone, and run the syncs that carry them."""
    from zonesync.flows.end_day_check import EndDayFailed, end_day_check
    from zonesync.flows.retry_sync import retry_sync
    from zonesync.tasks.reconcile.repair import Selection, resync
    from zonesync.tasks.zones.engines import get_engine

    for found in differing:
        mapping, compared = _declared(found), found.comparison
        keys = (*compared.missing_in_target_keys, *compared.different_keys)
        if keys:
            marked = resync(mapping, get_engine(mapping.source_zone), Selection(keys=keys))
            console.print(f"  {marked.headline()}", highlight=False)
        if len(keys) < compared.missing_in_target + compared.different:
            console.print(f"  more rows differ than one repair marks ({REPAIRED_PER_RUN:,}): run it again")
        if compared.only_in_target:
            console.print(f"  {_only_in_target(mapping, compared.only_in_target_keys, compared.only_in_target)}",
                          highlight=False)  # fmt: skip
    outgoing = [f.mapping for f in differing if _declared(f).direction == "intranet_to_internet"]
    incoming = [f.mapping for f in differing if _declared(f).direction == "internet_to_intranet"]
    if outgoing:
        console.print(f"  retry sync: {retry_sync(mappings=outgoing).headline()}", highlight=False)
    if incoming:
        try:
            console.print(f"  end-day check: {end_day_check(business_date=day, mappings=incoming).message}",
                          highlight=False)  # fmt: skip
        except EndDayFailed as failed:
            console.print(f"  end-day check failed: {failed.report.message}", highlight=False)


def _only_in_target(mapping: SyncMapping, keys: tuple[tuple[Any, ...], ...], count: int) -> str:
    """Rows only in the target go by the mapping's policy where deletes are captured (their tombstones are written
    and the sync carries them); otherwise they are reported, never deleted."""
    from zonesync.tasks.deletes.sweep import record_deletes
    from zonesync.tasks.zones.engines import get_engine

    recorded = record_deletes(mapping, get_engine(mapping.source_zone), keys)
    if not recorded:
        return f"{count} row(s) only in the target: reported, never deleted (on_delete={mapping.on_delete!r})"
    return (
        f"{count} row(s) only in the target: {recorded} delete(s) recorded, carried by on_delete={mapping.on_delete!r}"
    )


def _report(found: Reconciliation) -> str:
    from zonesync.tasks.reconcile.report import reconciliation_markdown

    return reconciliation_markdown(found)


def _exit_unless_all_agree(found: list[Reconciliation]) -> None:
    if not all(each.ok for each in found):
        raise typer.Exit(EXIT_PARTIAL)
