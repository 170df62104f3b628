"""A torture session: the throw-away zone databases, one Prefect server, warm workers, private clusters.

One session serves every trial of a run (pytest or `python -m tests.torture`); trials run one after another,
each on freshly wiped zone databases.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from tests.conftest import ThrowawayServers, ZonePair, make_pair
from tests.processes import owned_temp_dir
from tests.torture.checker import prepared_transactions
from tests.torture.clusters import PrivateCluster, Tarpit, private_cluster
from tests.torture.procs import PrefectServer, WorkerPool
from zonesync.tasks.bookkeeping.tables import sync_intent

Pairing = tuple[str, str]  # (intranet backend, internet backend)


@dataclass
class Limits:
    """How long things may take. The bounded (pytest) run shortens Prefect's retry delays."""

    hang_bound: float = 120.0  # a run against a lost target must end within this (see WORKER_WAITS)
    fast_retries: bool = False
    freeze_seconds: float | None = None  # thaw a frozen target after at most this; None: when the runs end
    command_timeout: float = 150.0  # a worker command that takes longer is a hang


# zonesync's bounded waits in the workers. A run against a silent target fails each attempt within connect +
# statement + 2 s (22 s); with Prefect's two task retries (5 s and 30 s apart) that is ~100 s, within the default
# hang bound. The defaults (300 s statements) would be right for production and far beyond any drill's patience.
WORKER_WAITS = {"ZONESYNC_CONNECT_TIMEOUT": "5", "ZONESYNC_STATEMENT_TIMEOUT": "15", "ZONESYNC_LOCK_TIMEOUT": "10"}


class Session:
    """Shared resources of a torture run; `close` releases all of them."""

    def __init__(self, servers: ThrowawayServers, limits: Limits | None = None) -> None:
        self.servers = servers
        self.limits = limits or Limits()
        self.root = Path(owned_temp_dir("torture-session-"))
        self.prefect = PrefectServer()
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("ZONESYNC_", "PREFECT_"))}
        self.pool = WorkerPool(base_env | WORKER_WAITS | self.prefect.worker_env(), self.root, warm=2)
        self._clusters: dict[str, PrivateCluster] = {}
        self._trial = 0
        try:
            self.prefect.wait_ready()
        except Exception:
            self.close()  # nothing this session started may outlive it
            raise

    def trial_dir(self) -> Path:
        """A fresh directory for one trial (SQLite files live here)."""
        self._trial += 1
        path = self.root / f"trial-{self._trial}"
        path.mkdir()
        return path

    def pair(self, pairing: Pairing, path: Path) -> ZonePair:
        """Empty zones of a pairing on the shared servers (or SQLite files), bookkeeping tables created."""
        return make_pair(self.servers, pairing[0], pairing[1], path)

    def private_pair(self, pairing: Pairing, path: Path) -> tuple[ZonePair, PrivateCluster]:
        """Empty zones whose internet zone is a database on this session's private cluster of that backend."""
        cluster = self.cluster(pairing[1])
        if not cluster.running():
            cluster.start()
        base = make_pair(self.servers, pairing[0], pairing[0], path)
        base.dispose()
        internet_url = cluster.fresh_database("torture_internet")
        return ZonePair(pairing[0], pairing[1], base.intranet_url, internet_url, base.passwords), cluster

    def cluster(self, backend: str) -> PrivateCluster:
        """The session's private cluster of a backend (initialised on first use)."""
        if backend not in self._clusters:
            self._clusters[backend] = private_cluster(backend)
        return self._clusters[backend]

    def tarpit(self) -> Tarpit:
        """A new tarpit (the drill closes it)."""
        return Tarpit()

    def close(self) -> None:
        """Stop workers, clusters and the Prefect server; drop the throw-away databases."""
        self.pool.close()
        for cluster in self._clusters.values():
            cluster.close()
        self.prefect.close()
        shutil.rmtree(self.root, ignore_errors=True)


def roll_back_leftovers(pair: ZonePair) -> None:
    """Roll back prepared transactions a drill left (they hold locks the next trial's wipe would wait for)."""
    with pair.intranet.connect() as conn:  # only this trial's (MariaDB lists every session's XA transactions)
        ours = {
            f"zonesync-{t}-{side}" for (t,) in conn.execute(sa.select(sync_intent.c.transaction_id)) for side in "st"
        }
    for engine in (pair.intranet, pair.internet):
        for xid in ours & set(prepared_transactions(engine)):
            autocommit = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            with autocommit as conn, contextlib.suppress(sa.exc.DBAPIError):  # resolved by someone else meanwhile
                conn.rollback_prepared(xid, recover=True)
