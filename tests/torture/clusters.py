"""Private database servers for the outage drills, and a tarpit.

The shared servers (5432, 3306) are never stopped, frozen or reconfigured: a drill that takes the target away
uses a cluster of its own, on a free port in a temp dir, that this module starts and stops. Freezing stops
the server's processes (the ones these clusters started) with SIGSTOP; thawing continues them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
from pathlib import Path

import sqlalchemy as sa

from tests.processes import owned_temp_dir, popen_owned
from tests.torture.procs import free_port, wait_until
from zonesync.tasks.zones.engines import parse_url

PG_BIN = Path("/usr/lib/postgresql/15/bin")
MARIADBD = "/usr/sbin/mariadbd"


class PrivateCluster:
    """A database server this process owns: start, stop (crash-like), freeze, thaw, fresh databases."""

    backend = ""

    def __init__(self) -> None:
        self.dir = Path(owned_temp_dir(f"torture-{self.backend}-"))  # with its server, gone with its owner
        self.port = free_port()

    def url(self, database: str) -> str:
        """The URL of one of its databases (trust / passwordless root: the cluster is private)."""
        raise NotImplementedError

    def pids(self) -> list[int]:
        """The server's processes (the main one first)."""
        raise NotImplementedError

    def start(self) -> None:
        """Start the server and wait until it answers."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server at once, as a crash would (no clean shutdown)."""
        raise NotImplementedError

    def running(self) -> bool:
        """Whether the server's main process exists."""
        return bool(self.pids())

    def freeze(self) -> None:
        """SIGSTOP every process of the server: connections stay open, nothing answers."""
        for pid in self.pids():
            _signal(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT every process of the server."""
        for pid in self.pids():
            _signal(pid, signal.SIGCONT)

    def fresh_database(self, name: str) -> str:
        """Drop and create a database; its URL."""
        url = parse_url(self.url(self.admin_database), setting="a private cluster")  # zonesync's drivers
        admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                for statement in self.create_statements(name):
                    conn.exec_driver_sql(statement)
        finally:
            admin.dispose()
        return self.url(name)

    admin_database = ""

    def create_statements(self, name: str) -> list[str]:
        """SQL that recreates a database, empty."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop the server (if it runs) and remove its files."""
        self.thaw()
        if self.running():
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _children(pid: int) -> list[int]:
    """Direct children of a process (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


class PrivatePostgres(PrivateCluster):
    """A PostgreSQL 15 cluster (initdb as user postgres, which must own the directory)."""

    backend = "postgresql"
    admin_database = "postgres"

    def __init__(self) -> None:
        super().__init__()
        shutil.chown(self.dir, "postgres")
        self.data = self.dir / "data"
        self._as_postgres(PG_BIN / "initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")
        settings = (
            f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.dir}'\n"
            "max_prepared_transactions = 20\nfsync = off\nshared_buffers = 16MB\nmax_connections = 60\n"
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(settings)

    def _as_postgres(self, *command: object) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *map(str, command)], check=True, capture_output=True)

    def url(self, database: str) -> str:
        """postgresql://postgres@127.0.0.1:PORT/database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def pids(self) -> list[int]:
        """The postmaster (from postmaster.pid) and its children."""
        try:
            main = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(main, 0)
        except (OSError, ValueError, IndexError):
            return []
        return [main, *_children(main)]

    def start(self) -> None:
        """pg_ctl start (waits until it accepts connections)."""
        self._as_postgres(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.dir / "server.log", "-w", "-t", "60", "start")

    def stop(self) -> None:
        """pg_ctl stop -m immediate: the server quits without a clean shutdown (recovery at the next start)."""
        self._as_postgres(PG_BIN / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def create_statements(self, name: str) -> list[str]:
        """DROP (forcing sessions out) and CREATE."""
        return [f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}"]


class PrivateMariaDB(PrivateCluster):
    """A MariaDB server (mariadb-install-db, root without a password on 127.0.0.1)."""

    backend = "mariadb"
    admin_database = "mysql"

    def __init__(self, *server_options: str) -> None:
        super().__init__()
        self.data = self.dir / "data"
        self.server_options = server_options  # more mariadbd options (TLS, say)
        self.proc: subprocess.Popen[bytes] | None = None
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={self.data}", "--user=root",
             "--auth-root-authentication-method=normal", "--skip-test-db"],
            check=True, capture_output=True,
        )  # fmt: skip

    def url(self, database: str) -> str:
        """mysql://root@127.0.0.1:PORT/database."""
        return f"mysql://root@127.0.0.1:{self.port}/{database}"

    def pids(self) -> list[int]:
        """The one mariadbd process."""
        return [self.proc.pid] if self.proc is not None and self.proc.poll() is None else []

    def start(self) -> None:
        """Start mariadbd and wait until it accepts connections."""
        log = open(self.dir / "server.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = popen_owned(
            [MARIADBD, "--no-defaults", f"--datadir={self.data}", f"--port={self.port}", "--bind-address=127.0.0.1",
             f"--socket={self.dir / 'sock'}", "--user=root", f"--pid-file={self.dir / 'pid'}", "--skip-log-bin",
             "--innodb-buffer-pool-size=32M", "--innodb-flush-log-at-trx-commit=2", "--local-infile=1",
             *self.server_options],
            stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        wait_until(self._answers, 60, f"private MariaDB on port {self.port}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                return bool(probe.recv(1))  # the server greets first
        except OSError:
            return False

    def stop(self) -> None:
        """SIGKILL mariadbd (crash recovery at the next start)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=30)
            self.proc = None

    def create_statements(self, name: str) -> list[str]:
        """DROP and CREATE (utf8mb4, binary collation as zonesync asks)."""
        return [f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"]


class Tarpit:
    """A TCP server that accepts every connection and never answers (a host that black-holes its clients)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = int(self.listener.getsockname()[1])
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self._held.append(conn)

    def url(self, backend: str) -> str:
        """A URL of `backend`'s kind pointing at the tarpit."""
        scheme = "postgresql" if backend == "postgresql" else "mysql"
        return f"{scheme}://tarpit:tarpit-pw@127.0.0.1:{self.port}/nowhere"

    def close(self) -> None:
        """Close the listener and every held connection."""
        self.listener.close()
        for conn in self._held:
            conn.close()


def private_cluster(backend: str) -> PrivateCluster:
    """A new private cluster of a backend (initialised, not started)."""
    return PrivatePostgres() if backend == "postgresql" else PrivateMariaDB()
