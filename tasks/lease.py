"""Leases: one writer per mapping at a time, across processes and machines (a row in the intranet zone).

A retry sync holds its mapping's lease for the whole run (renewed after every batch), so overlapping cron
runs are harmless, and an update with rollback cannot interleave with a batch read before the update and
written after it (which would put old values back on the target of a row the update has flagged). A lease
expires by itself: a crashed holder blocks others for at most its time to live.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import sqlalchemy as sa
from prefect.logging import get_logger
from sqlalchemy.engine import Engine

from tasks.bookkeeping import sync_lease, utc_now
from tasks.errors import TransientSyncError, translate

logger = get_logger("zonesync.lease")


class LeaseBusy(TransientSyncError):
    """Someone else holds the lease."""


class Lease:
    """A lease held by this process: renew it while working, release it when done."""

    def __init__(self, engine: Engine, name: str, ttl: float) -> None:
        self.engine, self.name, self.ttl = engine, name, ttl
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def try_acquire(self) -> bool:
        """Take the lease if it is free, expired, or held by a process of this machine that has died."""
        now = utc_now()
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.delete(sync_lease).where(sync_lease.c.name == self.name, sync_lease.c.expires_at < now))
                holder = conn.execute(sa.select(sync_lease.c.holder).where(sync_lease.c.name == self.name)).scalar()
                if holder is not None and _died_here(holder):
                    conn.execute(
                        sa.delete(sync_lease).where(sync_lease.c.name == self.name, sync_lease.c.holder == holder)
                    )
                conn.execute(sa.insert(sync_lease).values(name=self.name, holder=self.holder, expires_at=self._until()))
        except sa.exc.IntegrityError:
            return False
        return True

    def renew(self) -> None:
        """Push the expiry forward; a lease lost meanwhile (expired and taken) is an error."""
        with self.engine.begin() as conn:
            renewed = conn.execute(
                sa.update(sync_lease)
                .where(sync_lease.c.name == self.name, sync_lease.c.holder == self.holder)
                .values(expires_at=self._until())
            ).rowcount
        if renewed != 1:
            raise LeaseBusy(f"lost the lease {self.name!r} (it expired and was taken)")

    def release(self) -> None:
        """Give the lease up."""
        with self.engine.begin() as conn:
            conn.execute(
                sa.delete(sync_lease).where(sync_lease.c.name == self.name, sync_lease.c.holder == self.holder)
            )

    def _until(self) -> object:
        return utc_now() + timedelta(seconds=self.ttl)


def _died_here(holder: str) -> bool:
    """Whether a holder ("host:pid:nonce") is a process of this machine that no longer runs."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@contextmanager
def holding(engine: Engine, name: str, *, ttl: float, wait: float = 0.0, keep_alive: bool = False) -> Iterator[Lease]:
    """Hold a lease for the block, waiting up to `wait` seconds for it; LeaseBusy if it stays taken.

    With `keep_alive`, a background thread renews the lease every ttl/3 seconds, for holders that have no
    natural point to renew it (a whole job rather than a batch loop).
    """
    lease = Lease(engine, name, ttl)
    deadline = time.monotonic() + wait
    while not lease.try_acquire():
        if time.monotonic() >= deadline:
            raise LeaseBusy(f"{name} is busy: another zonesync run is working on it; try again shortly")
        time.sleep(0.1)
    stop = threading.Event()
    renewer = threading.Thread(target=_keep_renewed, args=(lease, stop), name=f"lease-{name}", daemon=True)
    if keep_alive:
        renewer.start()
    try:
        yield lease
    finally:
        stop.set()
        if renewer.is_alive():
            renewer.join()
        lease.release()


def _keep_renewed(lease: Lease, stop: threading.Event) -> None:
    while not stop.wait(lease.ttl / 3):
        try:
            lease.renew()
        except Exception as exc:  # lost or unreachable: stop renewing; the job's own writes will fail loudly
            logger.warning("stopped renewing lease %s: %s", lease.name, translate(exc, what="renewing the lease"))
            return


def mapping_lease(mapping: str) -> str:
    """The lease name that serialises the writers of one mapping."""
    return f"mapping:{mapping}"
