"""Leases: one writer per mapping at a time, across processes and machines (a row in the intranet zone).

A retry sync holds its mapping's lease for the whole run (kept alive between and after its batches), so overlapping cron
runs are harmless, and an update with rollback cannot interleave with a batch read before the update and
written after it (which would put old values back on the target of a row the update has flagged). A lease
expires by itself: a crashed holder blocks others for at most its time to live.

A lease may also tell the runs that share one job (the slices of a partitioned mapping, tasks/sync/slices.py)
that one of them has carried its part: released with the run's mark (`carried_by`), the row stays as an expired
lease holding the mark. Siblings of that run, which hold the same mark, leave the part alone; anyone else takes it
as a free lease.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from prefect.logging import get_logger
from sqlalchemy.engine import Connection, Engine

from zonesync.schemas.errors import TerminalSyncError, TransientSyncError
from zonesync.tasks.bookkeeping.tables import sync_lease, utc_now
from zonesync.tasks.reporting.events import emit_lease_taken_over
from zonesync.tasks.zones.engines import in_transaction
from zonesync.tasks.zones.failures import translate

logger = get_logger("zonesync.lease")


class LeaseBusy(TransientSyncError):
    """Someone else holds the lease."""


class LeaseLost(TerminalSyncError):
    """The lease expired and was taken while its holder was working (it stops; the new holder goes on)."""


class _CarriedByThisRun(Exception):
    """The part was carried by a sibling of this run (its lease released with the run's mark)."""


CARRIED_BY = "carried-by:"
# A batch loop renews its lease once the latest renewal is this share of the lease's time old: a holder that
# stalled long enough to lose the lease learns so at its next batch, and a loop of short batches does not pay a
# transaction for each (at 1,000 rows a batch, one in ten of its round trips).
RENEW_AFTER_SHARE = 0.1


def carried_by(run: str) -> str:
    """The mark of a run's released leases ('carried-by:<run>'): where its siblings need not go again."""
    return f"{CARRIED_BY}{run}"


class Lease:
    """A lease held by this process: renew it while working, release it when done.

    With a `run_mark`, the lease is released with that mark, and one still holding it is not taken again."""

    def __init__(self, engine: Engine, name: str, ttl: float, run_mark: str | None = None) -> None:
        self.engine, self.name, self.ttl, self.run_mark = engine, name, ttl, run_mark
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lost = False  # found taken by another run (by `renew`, in whichever thread)
        self._renewed = 0.0  # time.monotonic() when the latest acquire or renewal began

    def try_acquire(self) -> bool:
        """Take the lease if it is free, expired, or held by a process of this machine that has died (not when it
        holds this lease's run mark)."""
        started = time.monotonic()
        try:
            taken = in_transaction(self.engine, self.acquire_in)
        except (sa.exc.IntegrityError, _CarriedByThisRun):
            return False
        self._renewed = started
        if taken is not None:  # said once committed: a transaction that lost the race took nothing over
            taken.announce()
        return True

    def acquire_in(self, conn: Connection) -> Takeover | None:
        """Take the lease within the caller's transaction (IntegrityError when someone alive holds it); the
        takeover, when its holder had let it expire or had died."""
        named = sync_lease.c.name == self.name
        held = conn.execute(sa.select(sync_lease.c.holder).where(named)).scalar()
        why = None
        if held is not None and held.startswith(CARRIED_BY):  # released with a mark: free, unless ours
            if held == self.run_mark:
                raise _CarriedByThisRun(self.name)
            conn.execute(sa.delete(sync_lease).where(named, sync_lease.c.holder == held))
        # The DELETE itself checks the expiry: a holder renewing meanwhile keeps its lease.
        elif conn.execute(sa.delete(sync_lease).where(named, sync_lease.c.expires_at < utc_now())).rowcount:
            why = "it expired"
        elif held is not None and _died_here(held):
            conn.execute(sa.delete(sync_lease).where(named, sync_lease.c.holder == held))
            why = "its process died"
        conn.execute(sa.insert(sync_lease).values(name=self.name, holder=self.holder, expires_at=self._until()))
        return None if why is None else Takeover(self.name, str(held), self.holder, why)

    def renew(self) -> None:
        """Push the expiry forward; a lease lost meanwhile (expired and taken) is an error."""
        statement = (
            sa.update(sync_lease)
            .where(sync_lease.c.name == self.name, sync_lease.c.holder == self.holder)
            .values(expires_at=self._until())
        )
        started = time.monotonic()
        renewed = in_transaction(self.engine, lambda conn: conn.execute(statement).rowcount)
        if renewed != 1:
            self.lost = True
            raise LeaseLost(f"lost the lease {self.name!r}: it expired and another run took it")
        self._renewed = started

    def keep(self) -> None:
        """After a batch: renew once the latest renewal is RENEW_AFTER_SHARE of the lease's time old, and say
        LeaseLost if it was found taken (here or by the keeper thread). A lease is taken only once it expired,
        a whole time to live after its latest renewal, so a holder that lost it always renews here first."""
        if self.lost:
            raise LeaseLost(f"lost the lease {self.name!r}: it expired and another run took it")
        if time.monotonic() - self._renewed >= self.ttl * RENEW_AFTER_SHARE:
            self.renew()

    def release(self, *, done: bool = True) -> None:
        """Give the lease up (with the run's mark only when its work is `done`: work stopped midway is left to
        whoever comes next, siblings included)."""
        in_transaction(self.engine, lambda conn: self.release_in(conn, done=done))

    def release_in(self, conn: Connection, *, done: bool = True) -> None:
        """Give the lease up within the caller's transaction (with the change the lease guarded); with a run mark
        and the work done, leave the mark behind, already expired."""
        mine = (sync_lease.c.name == self.name, sync_lease.c.holder == self.holder)
        if self.run_mark is None or not done:
            conn.execute(sa.delete(sync_lease).where(*mine))
        else:
            conn.execute(sa.update(sync_lease).where(*mine).values(holder=self.run_mark, expires_at=utc_now()))

    def _until(self) -> object:
        return utc_now() + timedelta(seconds=self.ttl)


@dataclass(frozen=True)
class Takeover:
    """A lease taken from a holder that let it expire (slow, stuck or gone) or whose process died here."""

    lease: str
    previous_holder: str
    holder: str
    why: str

    def announce(self) -> None:
        """A warning in the log and `zonesync.lease.taken-over` for automations: the holder may still be working
        (a slow run stops when it next renews), so an operator wants to know."""
        logger.warning("took over the lease %s from %s: %s", self.lease, self.previous_holder, self.why)
        emit_lease_taken_over(self.lease, self.previous_holder, self.holder, self.why)


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
    try:
        with kept_alive(lease) if keep_alive else nullcontext():
            yield lease
    finally:
        lease.release()


@contextmanager
def kept_alive(lease: Lease) -> Iterator[Lease]:
    """Renew a held lease every ttl/3 seconds from a background thread while the block runs — also while one of
    its statements waits — so that a slow holder keeps it (a holder that lost it learns so when it renews)."""
    stop = threading.Event()
    renewer = threading.Thread(target=_keep_renewed, args=(lease, stop), name=f"lease-{lease.name}", daemon=True)
    renewer.start()
    try:
        yield lease
    finally:
        stop.set()
        renewer.join()


def _keep_renewed(lease: Lease, stop: threading.Event) -> None:
    while not stop.wait(lease.ttl / 3):
        try:
            lease.renew()
        except LeaseLost as lost:
            logger.warning("%s", lost)
            return
        except Exception as exc:  # unreachable for now: try again at the next tick, before the lease expires
            logger.warning("could not renew lease %s: %s", lease.name, translate(exc, what="renewing the lease"))


def mapping_lease(mapping: str) -> str:
    """The lease name that serialises the writers of one mapping."""
    return f"mapping:{mapping}"
