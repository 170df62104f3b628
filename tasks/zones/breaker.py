"""A circuit breaker per zone: after a zone failed to connect, callers skip it for a few seconds.

Without it, every push to a zone that is down waits the whole connect timeout, one after another (the HTTP API
served every push 10 s late). With it, the first failure is waited for once; until a probe in the background
connects again, callers fail at once (a push answers `pending` and the cron retry carries its rows).

    if not breaker.allow(zone, probe=check):   # False: skip the zone now
        ...
    try: connect()
    except ...: breaker.failed(zone); raise
    breaker.succeeded(zone)

`zone` is any hashable naming what was connected to (tasks/zones/engines.py passes the engine, so that two URLs used
for one zone name never share a state).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

# How long a zone is skipped after it failed to connect, before it is tried again.
OPEN_SECONDS = 5.0

_lock = threading.Lock()
_retry_at: dict[Hashable, float] = {}  # zones that failed, and when they may be tried again
_probing: set[Hashable] = set()  # zones a probe is connecting to right now


def allow(zone: Hashable, probe: Callable[[], object] | None = None) -> bool:
    """Whether to connect to `zone` now.

    A zone that failed less than OPEN_SECONDS ago is skipped. After that, one caller tries again: the caller
    itself, or — given a `probe` (a function that connects and raises if it cannot) — a background thread, so
    that no caller waits for a zone that is still down.
    """
    if zone not in _retry_at:  # the common case, without a lock: the zone never failed or is back
        return True
    with _lock:
        retry_at = _retry_at.get(zone)
        if retry_at is None:
            return True
        if time.monotonic() < retry_at or zone in _probing:
            return False
        _retry_at[zone] = time.monotonic() + OPEN_SECONDS  # the others keep skipping while this one tries
        if probe is None:
            return True
        _probing.add(zone)
    threading.Thread(target=_probe, args=(zone, probe), name="zonesync-breaker-probe", daemon=True).start()
    return False


def failed(zone: Hashable) -> None:
    """`zone` could not be connected to: skip it for OPEN_SECONDS."""
    with _lock:
        _retry_at[zone] = time.monotonic() + OPEN_SECONDS


def succeeded(zone: Hashable) -> None:
    """`zone` answered: stop skipping it."""
    if zone in _retry_at:
        with _lock:
            _retry_at.pop(zone, None)


def reset() -> None:
    """Forget every failure (tests, and when the engines are disposed)."""
    with _lock:
        _retry_at.clear()
        _probing.clear()


def _probe(zone: Hashable, probe: Callable[[], object]) -> None:
    try:
        probe()
    except Exception:  # still down: skipped for another OPEN_SECONDS
        failed(zone)
    else:
        succeeded(zone)
    finally:
        with _lock:
            _probing.discard(zone)
