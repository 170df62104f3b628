"""Benchmark: single-record pushes over HTTP — latency (p50, p99) and throughput with concurrent clients.

    .venv/bin/python -m bench.push_latency                 # SQLite (temporary files) and PostgreSQL
    .venv/bin/python -m bench.push_latency --requests 300  # fewer requests per measurement
    .venv/bin/python -m bench.push_latency --client httpx  # clients as a Python application (httpx)
    .venv/bin/python -m bench.push_latency --databases mariadb

The API (`deployments.api`) runs in a uvicorn server on loopback in a thread of this process. The clients (one
thread and one keep-alive connection each) run in a separate process: in this process they would compete with
the server for its GIL (`--clients-in-process` measures that way, for comparison with figures taken before).
By default they speak HTTP/1.1 directly over the socket, as a load generator such as wrk does, so that they take
little of the 2 cores the server and the databases share; `--client httpx` measures with httpx clients, which
take ~0.4 ms of CPU per request. Each client sends its next push when the previous one is answered; latency is
timed by the client around each request. Measured in the same run, as the floor: the bare database statements
of a push (INSERT into the source, INSERT into the target, UPDATE of the flag) issued directly through the
driver. Targets from the issue (PostgreSQL, this 2-core machine): p50 <= 10 ms, p99 <= 50 ms, >= 500 pushes/s.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from itertools import count
from pathlib import Path

import httpx
import sqlalchemy as sa
import uvicorn

PUSH_PATH = "/mappings/merchants/records"
RECORD = (  # formatted with the key twice: the demo target allows one merchant per email
    '{"merchant_id": %d, "merchant_name": "Toko Benchmark", "status": "A", "fee": "2.50", '
    '"email": "bench-%d@example.com", "tax_id": "NPWP-1", "updated_at": "2026-11-26T10:00:00.123456+07:00"}'
)


def _configure(intranet: str, internet: str) -> None:
    from zonesync.schemas.registry import _registry
    from zonesync.schemas.settings import get_settings
    from zonesync.tasks.setup.demo_data import reset_demo_zones
    from zonesync.tasks.zones.engines import dispose_engines, get_engine

    os.environ.update(ZONESYNC_INTRANET_URL=intranet, ZONESYNC_INTERNET_URL=internet)
    os.environ["ZONESYNC_MAPPING_MODULES"] = "zonesync.schemas.examples"
    _declare_client()
    get_settings.cache_clear()
    _registry.cache_clear()
    dispose_engines()
    reset_demo_zones(get_engine("intranet"), get_engine("internet"))


def _declare_client() -> None:
    """A client that may push merchants, as a deployment declares one: every request carries its key, and the
    server checks it (the clients, in this process or their own, read it from the environment)."""
    from zonesync.schemas.api_clients import new_client

    key, line = new_client("bench", {"merchants": frozenset({"push"})})
    clients_file = Path(tempfile.mkdtemp(prefix="zonesync-bench-")) / "api-clients.toml"
    clients_file.write_text(line + "\n", encoding="utf-8")
    os.environ.update(ZONESYNC_API_CLIENTS_FILE=str(clients_file), ZONESYNC_BENCH_API_KEY=key)


@contextmanager
def _server() -> Iterator[str]:
    from zonesync.deployments.api import create_app

    config = uvicorn.Config(create_app(), host="127.0.0.1", port=0, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextmanager
def _server_processes(workers: int) -> Iterator[str]:
    """`zonesync api --workers N` as a user starts it (the zones from this process's environment)."""
    port = _free_port()
    command = [sys.executable, "-m", "zonesync.flows.cli", "api", "--port", str(port), "--workers", str(workers)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _answers(base_url):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"zonesync api did not start (exit {server.poll()})")
            time.sleep(0.2)
        yield base_url
    finally:
        server.terminate()
        server.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "mean_ms": statistics.mean(ordered) * 1000,
    }


def _timed(calls: int, call: Callable[[int], None], keys: Iterator[int]) -> list[float]:
    timings = []
    for _ in range(calls):
        key = next(keys)
        started = time.perf_counter()
        call(key)
        timings.append(time.perf_counter() - started)
    return timings


def _bare_statements(requests: int, keys: Iterator[int]) -> dict[str, float]:
    """The floor: a push's three statements through the driver, no HTTP, no validation."""
    from zonesync.tasks.zones.engines import get_engine

    intranet, internet = get_engine("intranet"), get_engine("internet")
    source, target = (sa.Table("merchant", sa.MetaData(), autoload_with=e) for e in (intranet, internet))
    moment = "2026-11-26 03:00:00.123456" + ("" if intranet.dialect.name == "mysql" else "+00:00")  # MariaDB: UTC
    values = {"merchant_name": "Toko", "status": "A", "fee": "2.50", "updated_at": moment}

    def push(key: int) -> None:
        with intranet.begin() as conn:
            conn.execute(sa.insert(source).values(merchant_id=key, is_sync=False, **values))
        with internet.begin() as conn:
            target_values = {
                "name": values["merchant_name"],
                **{k: v for k, v in values.items() if k != "merchant_name"},
            }
            conn.execute(sa.insert(target).values(merchant_id=key, **target_values))
        with intranet.begin() as conn:
            conn.execute(sa.update(source).where(source.c.merchant_id == key).values(is_sync=True))

    return _percentiles(_timed(requests, push, keys))


def _http(
    base_url: str, requests: int, clients: int, keys: Iterator[int], pool: Executor | None, kind: str
) -> dict[str, float]:
    """Pushes/s and latency of `requests` pushes by `clients` clients of `kind`: in the client process `pool`, or
    here."""
    first_key = next(keys)
    for _ in range(requests):  # the keys the clients use: this process's counter moves past them
        next(keys)
    if pool is None:
        timings, elapsed = _clients(base_url, requests, clients, first_key, kind)
    else:
        timings, elapsed = pool.submit(_clients, base_url, requests, clients, first_key, kind).result()
    return _percentiles(timings) | {"pushes_per_second": len(timings) / elapsed}


def _clients(base_url: str, requests: int, clients: int, first_key: int, kind: str) -> tuple[list[float], float]:
    """Run the clients (in whatever process calls this): each push's seconds, and the seconds all took."""
    lock = threading.Lock()
    keys = count(first_key)

    def next_key() -> int:
        with lock:
            return next(keys)

    client_run = _raw_client if kind == "raw" else _httpx_client
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as threads:
        shares = threads.map(client_run, [base_url] * clients, [requests // clients] * clients, [next_key] * clients)
        timings = [t for part in shares for t in part]
    return timings, time.perf_counter() - started


def _httpx_client(base_url: str, share: int, next_key: Callable[[], int]) -> list[float]:
    """One httpx client (keep-alive), as a Python application would push."""
    headers = {"content-type": "application/json", "authorization": f"Bearer {os.environ['ZONESYNC_BENCH_API_KEY']}"}
    with httpx.Client(base_url=base_url, headers=headers) as client:

        def push(key: int) -> None:
            response = client.post(PUSH_PATH, content=RECORD % (key, key))
            if response.status_code != 201:
                raise RuntimeError(f"push answered {response.status_code}: {response.text}")

        return _timed(share, push, iter(next_key, None))


def _raw_client(base_url: str, share: int, next_key: Callable[[], int]) -> list[float]:
    """One keep-alive HTTP/1.1 connection spoken directly over a socket, as a load generator (wrk) does: a few
    microseconds of CPU a request, where httpx takes ~0.4 ms that the server, on 2 cores, would have used."""
    host, port = httpx.URL(base_url).host, httpx.URL(base_url).port
    authorization = f"authorization: Bearer {os.environ['ZONESYNC_BENCH_API_KEY']}\r\n"
    with socket.create_connection((host, port)) as connection, connection.makefile("rb") as answers:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def push(key: int) -> None:
            body = (RECORD % (key, key)).encode()
            head = f"POST {PUSH_PATH} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n{authorization}"
            connection.sendall(f"{head}content-length: {len(body)}\r\n\r\n".encode() + body)
            status, length = answers.readline(), 0
            while (line := answers.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            answer = answers.read(length)
            if status.split()[1:2] != [b"201"]:
                raise RuntimeError(f"push answered {status.decode().strip()}: {answer.decode()}")

        return _timed(share, push, iter(next_key, None))


@contextmanager
def _client_process(in_process: bool) -> Iterator[Executor | None]:
    """The process the clients run in (started before anything is timed), or None: this one."""
    if in_process:
        yield None
        return
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(time.sleep, 0).result()
        yield pool


def measure(name: str, urls: tuple[str, str], args: argparse.Namespace) -> None:
    """Print the floor and the HTTP push figures (medians of `args.repeat` runs) for one pair of databases."""
    _configure(*urls)
    keys = count(1)
    floor = _bare_statements(args.requests, keys)
    print(f"{name}: bare statements p50 {floor['p50_ms']:.1f} ms p99 {floor['p99_ms']:.1f} ms")
    server = _server_processes(args.server_workers) if args.server_workers else _server()
    with server as base_url, _client_process(args.clients_in_process) as pool:
        _http(base_url, 30, 1, keys, pool, args.client)  # warm-up: connections, caches
        for clients in (1, *args.clients):
            runs = [_http(base_url, args.requests, clients, keys, pool, args.client) for _ in range(args.repeat)]
            median = {field: statistics.median(run[field] for run in runs) for field in runs[0]}
            print(f"{name}: HTTP push, {clients:2d} {args.client} client(s): p50 {median['p50_ms']:.1f} ms "
                  f"({median['p50_ms'] / floor['p50_ms']:.1f}x the bare statements) p99 "
                  f"{median['p99_ms']:.1f} ms, {median['pushes_per_second']:.0f} pushes/s "
                  f"(runs: {', '.join(format(run['pushes_per_second'], '.0f') for run in runs)} pushes/s)")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Run the latency benchmark on SQLite and PostgreSQL (and MariaDB when asked)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=600, help="pushes per measurement")
    parser.add_argument(
        "--clients", type=int, nargs="+", default=[4, 16], help="concurrent clients for the throughput figures"
    )
    parser.add_argument(
        "--client", choices=("raw", "httpx"), default="raw",
        help="raw: HTTP/1.1 over a socket, as a load generator (default); httpx: as a Python application",
    )  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement (medians reported)")
    parser.add_argument(
        "--clients-in-process", action="store_true", help="run the clients in the server's process (as before)"
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("ZONESYNC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument(
        "--mariadb-url", default=os.environ.get("ZONESYNC_TEST_MARIADB_URL", "mysql://root@127.0.0.1:3306/mysql")
    )
    parser.add_argument(
        "--server-workers", type=int, default=0,
        help="run `zonesync api --workers N` in its own processes instead of a server thread in this process",
    )  # fmt: skip
    parser.add_argument(
        "--databases", nargs="+", choices=("sqlite", "postgresql", "mariadb"), default=["sqlite", "postgresql"]
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if "sqlite" in args.databases:
        with tempfile.TemporaryDirectory(prefix="zs-latency-") as folder:
            measure("sqlite", (f"sqlite:///{folder}/intranet.db", f"sqlite:///{folder}/internet.db"), args)
    for name, server_url in (("postgresql", args.pg_url), ("mariadb", args.mariadb_url)):
        if name in args.databases:
            _measure_on_server(name, server_url, args)


def _measure_on_server(name: str, server_url: str, args: argparse.Namespace) -> None:
    """Measure on two fresh databases of a PostgreSQL or MariaDB server, dropped afterwards."""
    server = sa.make_url(server_url)
    driver, force = ("postgresql+psycopg", " WITH (FORCE)") if name == "postgresql" else ("mysql+pymysql", "")
    admin = sa.create_engine(server.set(drivername=driver), isolation_level="AUTOCOMMIT")
    names = ("zs_latency_intranet", "zs_latency_internet")
    with admin.connect() as conn:
        for db in names:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {db}{force}")
            conn.exec_driver_sql(f"CREATE DATABASE {db}")
    try:
        urls = [server.set(database=db).render_as_string(hide_password=False) for db in names]
        measure(name, (urls[0], urls[1]), args)
    finally:
        from zonesync.tasks.zones.engines import dispose_engines

        dispose_engines()
        with admin.connect() as conn:
            for db in names:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {db}{force}")


if __name__ == "__main__":
    main()
