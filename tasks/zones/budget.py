"""The connection budget of each zone: how many connections zonesync's carriers may hold at once, across every
worker of every run, as a Prefect global concurrency limit per zone (`zonesync budget` sets them).

A carrier (one mapping's sync task, or one slice of a partitioned mapping) holds up to `CONNECTIONS_PER_SLICE`
pooled connections of each zone while it carries, so it takes that many slots of both zones' limits first, and
gives them back when it is done. Adding workers then queues carriers instead of exhausting a database's
`max_connections`. A limit that does not exist on the Prefect server limits nothing, and is not asked for: Prefect
answers a request for slots of a missing limit slowly (2 s at times, measured), a request for an existing one in
about 50 ms. Which limits exist is looked up once a minute per process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from prefect.client.orchestration import get_client
from prefect.concurrency.asyncio import AcquireConcurrencySlotTimeoutError
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectNotFound

from zonesync.schemas.errors import ConfigError, TerminalSyncError
from zonesync.schemas.settings import ZONES, Zone, get_settings
from zonesync.tasks.zones.engines import CONNECTIONS_PER_SLICE

LOOKUP_SECONDS = 60.0  # how long a process trusts what it found out about the limits
_found: tuple[float, list[str]] = (-LOOKUP_SECONDS, [])  # when, and the budget limits that existed then
_lookup = threading.Lock()


class BudgetExhausted(TerminalSyncError):
    """The zones' connection budget stayed taken by other carriers for longer than ZONESYNC_BUDGET_WAIT_SECONDS."""


def budget_limit(zone: Zone) -> str:
    """The name of a zone's global concurrency limit: 'zonesync-connections-intranet'."""
    return f"zonesync-connections-{zone}"


@contextmanager
def within_budget(what: str) -> Iterator[None]:
    """Hold a carrier's share of both zones' budgets for the block (waiting for it, within the setting's bound)."""
    wait = get_settings().budget_wait_seconds
    names = _existing_limits()
    if not names:
        yield
        return
    with ExitStack() as held:
        try:
            held.enter_context(concurrency(names, occupy=CONNECTIONS_PER_SLICE, timeout_seconds=wait, strict=False))
        except AcquireConcurrencySlotTimeoutError:
            raise BudgetExhausted(
                f"{what}: waited {wait:g} s for {CONNECTIONS_PER_SLICE} connections of the zones' budget "
                f"({', '.join(names)}); other zonesync carriers hold it (`zonesync budget` shows it)"
            ) from None
        yield


@dataclass(frozen=True)
class Budget:
    """A zone's budget as Prefect holds it: its limit and the connections taken now (None: no limit)."""

    zone: Zone
    limit: int | None
    taken: int = 0


def _existing_limits() -> list[str]:
    """The zones' budget limits that exist on the Prefect server (as found at most a minute ago)."""
    global _found
    with _lookup:
        if time.monotonic() - _found[0] >= LOOKUP_SECONDS:
            _found = (time.monotonic(), [budget_limit(found.zone) for found in read_budgets() if found.limit])
        return _found[1]


def forget_limits() -> None:
    """Look the limits up again on the next carrier (after `set_budget`, and in tests)."""
    global _found
    with _lookup:
        _found = (-LOOKUP_SECONDS, [])


def read_budgets() -> list[Budget]:
    """Each zone's budget."""
    budgets = []
    with get_client(sync_client=True) as client:
        for zone in ZONES:
            try:
                found = client.read_global_concurrency_limit_by_name(budget_limit(zone))
            except ObjectNotFound:
                budgets.append(Budget(zone, None))
                continue
            budgets.append(Budget(zone, found.limit, found.active_slots))
    return budgets


def set_budget(zone: Zone, connections: int) -> None:
    """Create or change a zone's budget: at most `connections` held by zonesync's carriers at once."""
    if connections < CONNECTIONS_PER_SLICE:
        raise ConfigError(
            f"a budget of {connections} connections for the {zone} zone is less than one carrier holds "
            f"({CONNECTIONS_PER_SLICE}): no run could ever carry a mapping"
        )
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(budget_limit(zone), connections)
    forget_limits()
