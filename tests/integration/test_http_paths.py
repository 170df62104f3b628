"""Every spelling of every route, sent with keys of every scope, on a real server through a raw socket (no client
library tidies the path): a write lands only where the key's scope allows it, and a path holding a control
character is refused. The database is checked afterwards, not only the answers. The backend plays no part."""

from __future__ import annotations

import itertools
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import httpx
import pytest

from tests.conftest import ZonePair, backend_param
from tests.integration.helpers import rows
from tests.integration.test_http_api import RECORD, declared_clients, serve_app
from zonesync.deployments.api import create_app
from zonesync.schemas.api_clients import Scope

pytestmark = pytest.mark.parametrize("backend", [backend_param("sqlite")], indirect=True)

PAYMENT = (
    '{"payment_id": %d, "reference": "REF-%d", "merchant_id": 1, "account": "ACC-1", "amount": "10.00", '
    '"currency": "IDR", "status": "S", "channel": "qris", "client_ip": "10.0.0.1", '
    '"created_at": "2026-11-26T10:00:00+00:00", "updated_at": "2026-11-26T10:00:00+00:00"}'
)
CANONICAL = "/mappings/{m}/records"
# Paths (as sent on the request line) that decode to a control character somewhere.
CONTROL = [
    *(f"/mappings/{{m}}/records{c}" for c in ("%0A", "%0a", "%0D", "%0d%0a", "%09", "%00", "%0B", "%0C", "%7F", "%1b")),
    "/mappings/{m}%0A/records",
    "/mappings/%0A{m}/records",
    "/mappings/{m}/records%0A%0A",
]
# Raw control characters on the request line: the HTTP parser's to refuse, never a route's to serve.
RAW = ["/mappings/{m}/records\x00", "/mappings/{m}/records\x7f", "/mappings/{m}/records\x0b"]
OTHER = [
    "/mappings/{m}/records/", "/mappings/{m}/records//", "//mappings/{m}/records", "/mappings//{m}/records",
    "/mappings/{m}/./records", "/mappings/./{m}/records", "/mappings/x/../{m}/records", "/mappings/{m}/records/.",
    "/mappings/{m}/records/..", "/mappings/%2e%2e/{m}/records", "/mappings/{m}/records%2F",
    "/MAPPINGS/{m}/RECORDS", "/mappings/{M}/records", "/mappings/{m}/Records", "/mappings/{m}/records;x=1",
    "/mappings/{m};x=1/records", "/mappings/{m}/records%20", "/mappings/{m}%20/records",
    "/mappings/{m}/records%3B", "/mappings/{m}/records%3F", "/mappings/{m}/records%23", "/mappings/{m}/records\\",
    "/mappings/{m}\\records", "/mappings/{m}/records%",
    "/mappings/{m}/records%zz", "/mappings/{m}/records%C0%AE", "/mappings/{m}/records\u00a0".encode().decode("latin-1"),
]  # fmt: skip
# The same path, spelled otherwise: served as the canonical one, scopes and all.
SAME = [
    "http://127.0.0.1/mappings/{m}/records",
    "/mappings/%{h}{r}/records",
    "/%6Dappings/{m}/records",
    "/mappings/{m}%2Frecords",
    "/mappings/{m}/records?x=1",
]
SPELLINGS = [CANONICAL, *SAME, *CONTROL, *RAW, *OTHER]
MAPPINGS = ("merchants", "payments")
KEYS: dict[str, dict[str, frozenset[Scope]] | None] = {
    "all": None,
    "pusher": {"merchants": frozenset({"push"})},
    "updater": {"merchants": frozenset({"update"})},
    "payments": {"payments": frozenset({"push"})},
}
SCOPE_OF = {"POST": "push", "PATCH": "update"}


@dataclass(frozen=True)
class Sent:
    key: str
    method: str
    mapping: str
    spelling: str
    status: int
    record: int

    @property
    def allowed(self) -> bool:
        scopes = KEYS[self.key]
        return scopes is None or SCOPE_OF[self.method] in scopes.get(self.mapping, frozenset())


@pytest.fixture
def server(demo: ZonePair) -> Iterator[tuple[int, dict[str, str]]]:
    with declared_clients(*KEYS.items()) as keys:
        for client in serve_app(create_app()):
            yield client.base_url.port or 0, dict(zip(KEYS, keys, strict=True))


def _send(port: int, method: str, target: str, key: str, body: str) -> int:
    """One request on a connection of its own, the request line exactly as given; the status answered."""
    payload = body.encode()
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(head.encode("latin-1") + payload)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def _body(method: str, mapping: str, record: int) -> str:
    if method == "PATCH":
        key = "merchant_id" if mapping == "merchants" else "payment_id"
        changes = {"status": "I"} if mapping == "merchants" else {"amount": f"{record}.00"}
        return json.dumps({"key": {key: 1}, "changes": changes})
    return RECORD % (record, "A") if mapping == "merchants" else PAYMENT % (record, record)


def test_a_write_lands_only_where_the_keys_scope_allows_whatever_the_path(
    server: tuple[int, dict[str, str]], demo: ZonePair
) -> None:
    port, keys = server
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"authorization": f"Bearer {keys['all']}"}) as http:
        assert http.post(CANONICAL.format(m="merchants"), content=RECORD % (1, "A"), headers=_JSON).status_code == 201
        assert http.post(CANONICAL.format(m="payments"), content=PAYMENT % (1, 1), headers=_JSON).status_code == 201
    numbers = itertools.count(100)
    sent = []
    for key, method, mapping, spelling in itertools.product(KEYS, SCOPE_OF, MAPPINGS, SPELLINGS):
        target = spelling.format(m=mapping, M=mapping.upper(), h=f"{ord(mapping[0]):02X}", r=mapping[1:])
        record = next(numbers)
        status = _send(port, method, target, keys[key], _body(method, mapping, record))
        sent.append(Sent(key, method, mapping, spelling, status, record))

    written = [s for s in sent if 200 <= s.status < 300]
    assert [s for s in written if not s.allowed] == []
    assert sorted({s.spelling for s in written} - {CANONICAL, *SAME}) == []
    assert {(s.key, s.method, s.mapping, s.spelling) for s in written} == {
        (s.key, s.method, s.mapping, s.spelling) for s in sent if s.allowed and s.spelling in (CANONICAL, *SAME)
    }
    refused = {s.spelling: s.status for s in sent if s.spelling in CONTROL}
    assert set(refused.values()) == {400}, refused
    assert {s.status for s in sent if s.spelling in RAW} == {400}
    # The databases hold exactly what the written requests carried, in both zones.
    pushed = {m: {1} | {s.record for s in written if s.method == "POST" and s.mapping == m} for m in MAPPINGS}
    for zone in (demo.intranet, demo.internet):
        assert {r["merchant_id"] for r in rows(zone, "merchant")} == pushed["merchants"]
        assert {r["payment_id"] for r in rows(zone, "payment")} == pushed["payments"]
    merchant = next(r for r in rows(demo.intranet, "merchant") if r["merchant_id"] == 1)
    assert merchant["status"] == "I"  # patched by the key that may
    [last_patch] = [s for s in written if (s.method, s.mapping) == ("PATCH", "payments")][-1:]
    payment = next(r for r in rows(demo.internet, "payment") if r["payment_id"] == 1)
    assert Decimal(str(payment["amount"])) == Decimal(f"{last_patch.record}.00")
    # The audit trail holds no answered write outside a key's scope either.
    audited = {(r["client"], r["operation"], r["mapping"]) for r in rows(demo.intranet, "api_audit")}
    allowed = {(k, SCOPE_OF[m], mapping) for k, m, mapping in itertools.product(KEYS, SCOPE_OF, MAPPINGS)
               if Sent(k, m, mapping, "", 0, 0).allowed}  # fmt: skip
    assert audited <= allowed


_JSON = {"content-type": "application/json"}
