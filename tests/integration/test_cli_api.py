"""`zonesync api` and `zonesync api-key new` as a user runs them: the console script in its own process."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import ZonePair
from tests.integration.console import SCRIPT, SQLITE_ONLY, Cli
from tests.integration.helpers import rows
from tests.integration.test_http_api import RECORD
from tests.processes import popen_owned
from zonesync.schemas.api_clients import read_clients

pytestmark = SQLITE_ONLY


def _new_key(cli: Cli, *args: str) -> tuple[str, str]:
    """`zonesync api-key new ...`: the key and the declaring line it printed."""
    run = cli("api-key", "new", *args)
    assert run.code == 0, run
    lines = run.stdout.splitlines()
    key = lines[lines.index(next(line for line in lines if line.startswith("Key of client"))) + 1]
    line = next(line for line in lines if line.startswith("clients."))
    return key, line


def test_api_key_new_prints_the_key_once_and_the_line_that_declares_it(cli: Cli, tmp_path: Path) -> None:
    key, line = _new_key(cli, "portal", "-m", "merchants", "-m", "payments", "--scope", "push,update")

    path = tmp_path / "clients.toml"
    path.write_text(line + "\n", encoding="utf-8")
    client = read_clients(path).authenticate(key)
    assert client is not None and client.may("merchants", "update") and client.may("payments", "push")
    assert key.partition(".")[2] not in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("portal", "-m", "nope"), "unknown mapping 'nope'"),
        (
            ("portal", "-m", "merchants", "--scope", "push,drop"),
            "--scope 'push,drop': choose from push, update, delete",
        ),
        (("bad name", "-m", "merchants"), "client name 'bad name'"),
    ],
    ids=["unknown-mapping", "unknown-scope", "bad-name"],
)
def test_api_key_new_refuses_mistakes_in_one_line(cli: Cli, args: tuple[str, ...], message: str) -> None:
    run = cli("api-key", "new", *args)

    assert run.code == 2, run
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_the_api_will_not_start_without_clients(cli: Cli) -> None:
    run = cli("api", "--port", str(_free_port()))

    assert run.code == 2, run
    assert "no API clients declared: set ZONESYNC_API_CLIENTS_FILE" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_the_api_without_authentication_will_not_listen_beyond_loopback(cli: Cli) -> None:
    run = cli("api", "--insecure-no-auth", "--host", "0.0.0.0", "--port", str(_free_port()))

    assert run.code == 2, run
    assert "refusing to listen on 0.0.0.0 without authentication" in run.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    loopback = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1)).add_extension(loopback, critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return certfile, keyfile


def _serving(cli: Cli, *args: str, **env: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`zonesync api *args` running in its own process until the test ends; yields it and its first line."""
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "zonesync.flows.cli"]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ZONESYNC_")} | cli.settings | env
    process = popen_owned(
        [*command, "api", *args], cwd=cli.home, env=environment | {"COLUMNS": "250", "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        yield process, process.stdout.readline()
    finally:
        process.terminate()
        process.wait(timeout=30)


def _answering(url: str, **client: object) -> httpx.Response:
    deadline = time.monotonic() + 30
    while True:
        try:
            return httpx.get(url, timeout=2, **client)  # type: ignore[arg-type]
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"nothing answers at {url}"
            time.sleep(0.2)


def test_the_api_serves_https_with_the_given_certificate_and_only_to_keys(
    cli: Cli, demo_zones: ZonePair, tmp_path: Path
) -> None:
    key, line = _new_key(cli, "portal", "-m", "merchants")
    clients_file = tmp_path / "clients.toml"
    clients_file.write_text(line + "\n", encoding="utf-8")
    certfile, keyfile = _self_signed(tmp_path)
    port = _free_port()

    for _, first_line in _serving(
        cli, "--port", str(port), "--ssl-certfile", str(certfile), "--ssl-keyfile", str(keyfile),
        ZONESYNC_API_CLIENTS_FILE=str(clients_file),
    ):  # fmt: skip
        assert first_line.strip() == f"zonesync API on https://127.0.0.1:{port} for 1 declared client(s)"
        base, trusted = f"https://127.0.0.1:{port}", ssl.create_default_context(cafile=str(certfile))
        assert _answering(f"{base}/health", verify=trusted).status_code == 200
        with httpx.Client(base_url=base, verify=trusted, timeout=30) as https:
            body = RECORD % (7, "A")
            json_type = {"content-type": "application/json"}
            assert https.post("/mappings/merchants/records", content=body, headers=json_type).status_code == 401
            authorized = json_type | {"authorization": f"Bearer {key}"}
            assert https.post("/mappings/merchants/records", content=body, headers=authorized).status_code == 201
        with pytest.raises(httpx.TransportError):  # plain HTTP is not served
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
    assert [row["merchant_id"] for row in rows(demo_zones.intranet, "merchant")] == [7]
    audit = cli("audit", "--client", "portal")
    assert audit.code == 0, audit
    [line] = [line for line in audit.stdout.splitlines() if "portal" in line]
    cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
    assert cells[1:] == ["portal", "merchants", "push", "201", "success", "1", '{"merchant_id": 7}']


def test_the_api_started_insecure_says_so_and_takes_writes_without_a_key(cli: Cli, demo_zones: ZonePair) -> None:
    port = _free_port()

    for _, first_line in _serving(cli, "--port", str(port), "--insecure-no-auth"):
        assert first_line.startswith(f"zonesync API on http://127.0.0.1:{port} for anyone (no authentication)")
        assert _answering(f"http://127.0.0.1:{port}/health").status_code == 200
        response = httpx.post(
            f"http://127.0.0.1:{port}/mappings/merchants/records", content=RECORD % (8, "A"),
            headers={"content-type": "application/json"}, timeout=30,
        )  # fmt: skip
        assert response.status_code == 201
