"""The API's clients, as the clients file says now: a client removed from it (or the whole file) is refused within
RELOAD_SECONDS, without a restart and without dropping a request.

The file is looked at (one `stat`) at most once per RELOAD_SECONDS, by the request that comes then, and read again
only when it changed. A file that became invalid or was deleted is never read as "no authentication": no key is
accepted until it is valid again, and the reason is logged once per change.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection
from pathlib import Path

from prefect.logging import get_logger

from zonesync.schemas.api_clients import ApiClient, ApiClients, clients_in
from zonesync.schemas.errors import ConfigError

RELOAD_SECONDS = 1.0
logger = get_logger("zonesync.api")
_NOBODY = ApiClients({})
Stamp = tuple[int, int, int] | None  # (inode, size, modification time in ns) of the file; None: no file


class WatchedClients:
    """`authenticate` against the clients file as it is now (see the module docstring)."""

    def __init__(self, path: Path, mappings: Collection[str], clients: ApiClients) -> None:
        self.path, self.mappings, self._clients = path, tuple(mappings), clients
        self._stamp = _stamp(path)
        self._looked = time.monotonic()

    def authenticate(self, key: str) -> ApiClient | None:
        """The client whose key this is, as the file declares it now, or None."""
        return self._current().authenticate(key)

    def _current(self) -> ApiClients:
        now = time.monotonic()
        if now - self._looked < RELOAD_SECONDS:
            return self._clients
        self._looked = now
        stamp = _stamp(self.path)
        if stamp != self._stamp:
            self._stamp = stamp
            self._clients = self._read()
        return self._clients

    def _read(self) -> ApiClients:
        try:
            clients = clients_in(self.path, self.mappings)
        except ConfigError as exc:
            logger.error("%s; no key is accepted until the clients file is valid again", exc)
            return _NOBODY
        logger.warning("clients file %s read again: %d client(s)", self.path, len(clients.by_name))
        return clients


def _stamp(path: Path) -> Stamp:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns
