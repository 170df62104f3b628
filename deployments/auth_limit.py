"""Failed authentications are limited per client address: past `limit` failures within WINDOW_SECONDS, every
request from that address is answered 429 with `Retry-After` (its key is not even looked at) until the window
ends. Each window in which an address passes the limit is logged once and announced once as a Prefect event
(`zonesync.api.auth-refused`, for an automation to watch), so a flood of wrong keys costs neither CPU nor log.

A key is 256 random bits: the limit is not what keeps keys safe, it keeps a flood from being an outage or a
log that fills a disk. Clients behind one proxy share an address: give the limit room for that.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from prefect.logging import get_logger

from zonesync.tasks.reporting.events import emit_auth_refused

WINDOW_SECONDS = 60.0
MAX_ADDRESSES = 100_000  # addresses remembered at once (a flood from many addresses cannot grow memory unbounded)
logger = get_logger("zonesync.api")


@dataclass
class Window:
    """One address's failures in the window that started at `started`."""

    started: float
    failures: int = 0
    announced: bool = False


@dataclass
class FailedAuthLimit:
    """Counts failed authentications per address (see the module docstring)."""

    limit: int
    windows: dict[str, Window] = field(default_factory=dict)

    def retry_after(self, address: str) -> int | None:
        """Seconds until `address` may try again, or None when it is within the limit."""
        window = self._window(address, time.monotonic())
        if window is None or window.failures < self.limit:
            return None
        return max(1, math.ceil(window.started + WINDOW_SECONDS - time.monotonic()))

    def failed(self, address: str) -> None:
        """Count one failed authentication; announce the address the first time it passes the limit."""
        now = time.monotonic()
        window = self._window(address, now)
        if window is None:
            if len(self.windows) >= MAX_ADDRESSES:
                self._forget_ended(now)
            window = self.windows[address] = Window(now)
        window.failures += 1
        if window.failures >= self.limit and not window.announced:
            window.announced = True
            logger.warning("client address %s: %d failed authentications within %.0f s; refused with 429 until "
                           "the window ends", address[:64], window.failures, WINDOW_SECONDS)  # fmt: skip
            emit_auth_refused(address[:64], window.failures, WINDOW_SECONDS)

    def _window(self, address: str, now: float) -> Window | None:
        window = self.windows.get(address)
        if window is not None and now - window.started >= WINDOW_SECONDS:
            del self.windows[address]
            return None
        return window

    def _forget_ended(self, now: float) -> None:
        self.windows = {a: w for a, w in self.windows.items() if now - w.started < WINDOW_SECONDS}
        if len(self.windows) >= MAX_ADDRESSES:  # all current: forget the oldest half
            kept = sorted(self.windows.items(), key=lambda item: item[1].started)[MAX_ADDRESSES // 2 :]
            self.windows = dict(kept)
