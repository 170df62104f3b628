"""The HTTP server's limits on a real server, through raw sockets: slow clients are cut off while good ones are
served, a flood of wrong keys is answered 429, oversized requests are refused as they arrive, and no log line
grows with what a client sent (`tests/unit/test_server_limits.py` has the access log line). The backend
plays no part."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ZonePair, backend_param
from tests.integration.helpers import rows
from tests.integration.test_http_api import RECORD, declared_clients, serve_app
from zonesync.deployments.api import create_app
from zonesync.schemas import settings

pytestmark = pytest.mark.parametrize("backend", [backend_param("sqlite")], indirect=True)
SLOW = 25  # connections of each kind


@pytest.fixture
def server(demo: ZonePair, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[httpx.Client, str]]:
    """A server with short limits: 1 s for a head or a body, 5 failed keys per address and minute."""
    for name, value in {"HEAD_SECONDS": "1", "BODY_SECONDS": "1", "MAX_FAILED_AUTH": "5"}.items():
        monkeypatch.setenv(f"ZONESYNC_API_{name}", value)
    settings.get_settings.cache_clear()
    with declared_clients(("good", None)) as [key]:
        for http in serve_app(create_app()):
            yield http, key


def _connect(http: httpx.Client, first_bytes: bytes) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", http.base_url.port or 0), timeout=10)
    conn.sendall(first_bytes)
    return conn


def _answer_then_closed(conn: socket.socket) -> bytes:
    """What the server sent before it closed the connection (raises if it did not within the timeout)."""
    answer = b""
    while chunk := conn.recv(65536):
        answer += chunk
    return answer


def test_slow_clients_are_cut_off_while_good_clients_are_served(
    server: tuple[httpx.Client, str], demo: ZonePair
) -> None:
    http, key = server
    body = RECORD % (9, "A")
    slow_heads = [_connect(http, b"POST /mappings/merchants/records HTTP/1.1\r\nHost: x\r\n") for _ in range(SLOW)]
    slow_bodies = [
        _connect(http, (f"POST /mappings/merchants/records HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body[:10]}").encode())
        for _ in range(SLOW)
    ]  # fmt: skip
    started = time.monotonic()

    good = http.post("/mappings/merchants/records", content=RECORD % (1, "A"),
                     headers={"authorization": f"Bearer {key}", "content-type": "application/json"})  # fmt: skip

    assert good.status_code == 201
    answers = [_answer_then_closed(conn) for conn in slow_heads + slow_bodies]
    assert time.monotonic() - started < 5
    assert all(answer.startswith(b"HTTP/1.1 408") for answer in answers), {a[:40] for a in answers}
    assert [r["merchant_id"] for r in rows(demo.intranet, "merchant")] == [1]


def test_a_flood_of_wrong_keys_is_answered_429_after_the_limit(
    server: tuple[httpx.Client, str], caplog: pytest.LogCaptureFixture
) -> None:
    http, key = server
    wrong = {"authorization": "Bearer good.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}

    answers = [http.post("/mappings/merchants/records", content="{}", headers=wrong) for _ in range(40)]

    assert [a.status_code for a in answers] == [401] * 5 + [429] * 35
    assert all(1 <= int(a.headers["retry-after"]) <= 60 for a in answers[5:])
    assert answers[-1].json()["error"] == "too_many_failed_authentications"
    # The address is refused whatever key it sends, until the window ends; logged once, not per request.
    assert http.post("/mappings/merchants/records", content="{}", headers={"authorization": f"Bearer {key}"}
                     ).status_code == 429  # fmt: skip
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("prefect.zonesync")]
    assert len([line for line in lines if "401 unauthorized" in line]) == 5
    assert len([line for line in lines if "failed authentications within" in line]) == 1


@pytest.mark.parametrize(
    ("request_head", "status"),
    [(b"GET /" + b"m" * 60_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414"),
     (b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-Filler-%d: %s\r\n" % (n, b"a" * 4000) for n in range(40)),
      b"431")],
    ids=["path", "headers"],
)  # fmt: skip
def test_an_oversized_request_is_refused_as_it_arrives(
    server: tuple[httpx.Client, str], request_head: bytes, status: bytes
) -> None:
    http, _ = server
    conn = _connect(http, request_head[:70_000])  # the server answers before the rest is even sent

    assert _answer_then_closed(conn).startswith(b"HTTP/1.1 " + status)
