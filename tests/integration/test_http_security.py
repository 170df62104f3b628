"""The HTTP entry point's gate (deployments/guard.py), on a real uvicorn server with a real HTTP client: no write
without a client's key, none outside its scopes, and oversized requests refused before they are read."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import ZonePair, backend_param
from tests.integration.helpers import rows
from tests.integration.test_http_api import RECORD, declared_clients, post, serve_app
from zonesync.deployments.api import create_app
from zonesync.schemas import settings
from zonesync.schemas.api_clients import Scope
from zonesync.schemas.errors import ConfigError

PUSH_ONLY: dict[str, frozenset[Scope]] = {"merchants": frozenset({"push"})}
# A request refused at the gate, or a decision made before any database is touched: the backend plays no part,
# so it runs on one (SQLite); what reaches the zones runs on every backend.
ONCE = pytest.mark.parametrize("backend", [backend_param("sqlite")])


@pytest.fixture
def keys(demo: ZonePair) -> Iterator[dict[str, str]]:
    """A server with two clients: `all` may do everything, `pusher` may only push merchants."""
    with declared_clients(("all", None), ("pusher", PUSH_ONLY)) as [everything, pusher]:
        yield {"all": everything, "pusher": pusher}


@pytest.fixture
def anonymous(keys: dict[str, str]) -> Iterator[httpx.Client]:
    """A client that sends no key, to the server of `keys`."""
    yield from serve_app(create_app())


def _as(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", "content-type": "application/json"}


REQUESTS = [
    ("POST", "/mappings/merchants/records"),
    ("PATCH", "/mappings/merchants/records"),
    ("POST", "/mappings/no_such_mapping/records"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/no/such/path"),
]


@ONCE
@pytest.mark.parametrize(("method", "path"), REQUESTS, ids=[f"{m} {p}" for m, p in REQUESTS])
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer all.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "Basic YWxsOmFsbA==", "Bearer x.y.z"],
    ids=["none", "empty", "wrong-secret", "basic", "malformed"],
)
def test_without_a_valid_key_every_request_is_401_and_tells_nothing(
    anonymous: httpx.Client, demo: ZonePair, method: str, path: str, authorization: str | None
) -> None:
    headers = {"content-type": "application/json"} | ({"authorization": authorization} if authorization else {})
    response = anonymous.request(method, path, content=RECORD % (1, "A"), headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "unauthorized"
    assert "merchants" not in response.text and "no_such_mapping" not in response.text
    assert rows(demo.intranet, "merchant") == []


def test_health_needs_no_key(anonymous: httpx.Client) -> None:
    assert anonymous.get("/health").status_code == 200


def test_a_client_writes_only_within_its_scopes(anonymous: httpx.Client, keys: dict[str, str], demo: ZonePair) -> None:
    pusher = _as(keys["pusher"])

    pushed = anonymous.post("/mappings/merchants/records", content=RECORD % (1, "A"), headers=pusher)
    patched = anonymous.patch(
        "/mappings/merchants/records", content='{"key": {"merchant_id": 1}, "changes": {"status": "I"}}', headers=pusher
    )
    deleted = anonymous.request("DELETE", "/mappings/merchants/records", content='{"key": {"merchant_id": 1}}',
                                headers=pusher)  # fmt: skip
    other_mapping = anonymous.post("/mappings/payments/records", content="{}", headers=pusher)
    unknown = anonymous.post("/mappings/no_such_mapping/records", content="{}", headers=pusher)

    assert pushed.status_code == 201
    assert (patched.status_code, patched.json()["error"]) == (403, "forbidden")
    assert "'pusher' may not update" in patched.json()["detail"]
    assert (deleted.status_code, deleted.json()["error"]) == (403, "forbidden")  # delete: a scope of its own
    # A mapping the client may not write is 403 whether it exists or not: the answer tells nothing more.
    assert other_mapping.status_code == unknown.status_code == 403
    assert other_mapping.json() | {"detail": ""} == unknown.json() | {"detail": ""}
    [merchant] = rows(demo.intranet, "merchant")
    assert merchant["status"] == "A"  # the refused update changed nothing

    everything = _as(keys["all"])
    patched = anonymous.patch(
        "/mappings/merchants/records", content='{"key": {"merchant_id": 1}, "changes": {"status": "I"}}',
        headers=everything,
    )  # fmt: skip
    assert patched.status_code == 200
    # The audit trail has the writes that were answered (the refusals at the gate are not writes).
    audited = [
        (row["client"], row["mapping"], row["operation"], row["status"], row["outcome"], row["records"],
         json.loads(row["record_keys"]))
        for row in rows(demo.intranet, "api_audit")
    ]  # fmt: skip
    assert sorted(audited) == [
        ("all", "merchants", "update", 200, "success", 1, [{"merchant_id": 1}]),
        ("pusher", "merchants", "push", 201, "success", 1, [{"merchant_id": 1}]),
    ]


def test_a_write_is_answered_even_when_its_audit_row_cannot_be_written(
    anonymous: httpx.Client, keys: dict[str, str], demo: ZonePair
) -> None:
    with demo.intranet.begin() as conn:
        conn.execute(sa.text("DROP TABLE api_audit"))

    response = anonymous.post("/mappings/merchants/records", content=RECORD % (1, "A"), headers=_as(keys["all"]))

    assert response.status_code == 201
    assert len(rows(demo.intranet, "merchant")) == 1


@ONCE
def test_the_openapi_document_declares_the_bearer_key(anonymous: httpx.Client, keys: dict[str, str]) -> None:
    document = anonymous.get("/openapi.json", headers=_as(keys["all"])).json()

    assert document["components"]["securitySchemes"]["clientKey"] == {
        "type": "http", "scheme": "bearer", "description": "a key made by `zonesync api-key new`",
    }  # fmt: skip
    assert document["security"] == [{"clientKey": []}]
    assert document["paths"]["/health"]["get"]["security"] == []
    responses = document["paths"]["/mappings/merchants/records"]["post"]["responses"]
    assert {"401", "403", "413"} <= set(responses)


@pytest.fixture
def small_limits(demo: ZonePair, monkeypatch: pytest.MonkeyPatch) -> Iterator[httpx.Client]:
    """A server taking bodies of at most 4096 bytes and 3 records per request."""
    monkeypatch.setenv("ZONESYNC_API_MAX_BODY_BYTES", "4096")
    monkeypatch.setenv("ZONESYNC_API_MAX_RECORDS", "3")
    settings.get_settings.cache_clear()
    with declared_clients(("all", None)) as [key]:
        yield from serve_app(create_app(), headers={"authorization": f"Bearer {key}"})


@ONCE
def test_a_body_over_the_limit_is_413_before_it_is_read(small_limits: httpx.Client, demo: ZonePair) -> None:
    big = "[" + ",".join([RECORD % (1, "A")] * 40) + "]"  # ~6 kB, its Content-Length says so
    sent = 0

    def streamed() -> Iterator[bytes]:  # no Content-Length: refused once the bytes received pass the limit
        nonlocal sent
        for chunk in ["[", *([RECORD % (2, "A") + ","] * 39), RECORD % (2, "A"), "]"]:
            sent += len(chunk)
            yield chunk.encode()

    announced = post(small_limits, big)
    chunked = small_limits.post(
        "/mappings/merchants/records", content=streamed(), headers={"content-type": "application/json"}
    )

    for response in (announced, chunked):
        assert (response.status_code, response.json()["error"]) == (413, "body_too_large")
        assert "ZONESYNC_API_MAX_BODY_BYTES" in response.json()["detail"]
    assert rows(demo.intranet, "merchant") == []


@ONCE
def test_more_records_than_the_limit_is_413_naming_it(small_limits: httpx.Client, demo: ZonePair) -> None:
    records = ",".join(RECORD % (key, "A") for key in range(1, 5))

    response = post(small_limits, f"[{records}]")

    assert (response.status_code, response.json()["error"]) == (413, "too_many_records")
    assert response.json()["detail"] == "4 records in one request; at most 3 (ZONESYNC_API_MAX_RECORDS)"
    assert rows(demo.intranet, "merchant") == []


@ONCE
def test_an_oversized_stream_is_not_read_to_its_end(keys: dict[str, str], demo: ZonePair) -> None:
    """50 MB offered: the server stops reading at its limit (4 MiB by default), so its memory stays flat."""
    offered = 0

    def endless() -> Iterator[bytes]:
        nonlocal offered
        chunk = b" " * 65536
        while offered < 50 * 1024 * 1024:
            offered += len(chunk)
            yield chunk

    for client in serve_app(create_app(), headers={"authorization": f"Bearer {keys['all']}"}):
        try:
            response = client.post("/mappings/merchants/records", content=endless(),
                                   headers={"content-type": "application/json"})  # fmt: skip
        except httpx.TransportError:  # the server answered and closed while the client was still writing
            pass
        else:
            assert response.status_code == 413
        assert client.get("/health").status_code == 200
    assert offered < 20 * 1024 * 1024


@ONCE
def test_the_app_refuses_to_start_without_clients_unless_told_it_is_insecure(
    demo: ZonePair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ZONESYNC_API_CLIENTS_FILE", raising=False)
    settings.get_settings.cache_clear()
    with pytest.raises(ConfigError, match="no API clients declared: set ZONESYNC_API_CLIENTS_FILE"):
        create_app()

    monkeypatch.setenv("ZONESYNC_API_INSECURE_NO_AUTH", "true")
    settings.get_settings.cache_clear()
    for client in serve_app(create_app()):
        assert post(client, RECORD % (1, "A")).status_code == 201
        unknown = post(client, RECORD % (2, "A"), mapping="customers")  # no scopes to keep it quiet about
        assert (unknown.status_code, unknown.json()) == (
            404,
            {"error": "unknown_mapping", "detail": "unknown mapping 'customers' (registered: merchants, payments)"},
        )


@ONCE
def test_a_clients_file_naming_an_unknown_mapping_is_refused(demo: ZonePair) -> None:
    typo: dict[str, frozenset[Scope]] = {"merchant": frozenset({"push"})}
    with declared_clients(("typo", typo)), pytest.raises(ConfigError) as refused:
        create_app()
    assert str(refused.value).startswith("ZONESYNC_API_CLIENTS_FILE: scopes on unknown mappings merchant")


@ONCE
def test_a_refusal_is_logged_in_one_line_whatever_the_path(
    anonymous: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    anonymous.post("/mappings/x%0A12:00:00 INFO forged/records", content="{}")

    [line] = [record.getMessage() for record in caplog.records if record.getMessage().startswith("refused")]
    assert "\n" not in line and "no valid key" in line and "400 invalid_path" in line


@ONCE
def test_a_revoked_client_is_refused_within_seconds_and_a_broken_file_opens_nothing(demo: ZonePair) -> None:
    """Revocation without a restart: the clients file is read again when it changes (`watched_clients.py`)."""
    with declared_clients(("kept", None), ("revoked", None)) as [kept, revoked]:
        path = Path(os.environ["ZONESYNC_API_CLIENTS_FILE"])
        declared = path.read_text(encoding="utf-8").splitlines()
        for http in serve_app(create_app()):

            def status(key: str, merchant_id: int, http: httpx.Client = http) -> int:
                return post_as(http, key, RECORD % (merchant_id, "A")).status_code

            assert (status(kept, 1), status(revoked, 2)) == (201, 201)
            path.write_text(declared[0] + "\n", encoding="utf-8")  # the line of `revoked` removed
            assert _within_seconds(lambda: status(revoked, 3) == 401)
            assert status(kept, 4) == 201  # the others are served all along
            path.write_text("clients.kept = { not toml", encoding="utf-8")
            assert _within_seconds(lambda: status(kept, 5) == 401)  # invalid: no key, never "no authentication"
            path.unlink()
            assert status(kept, 6) == 401 and status(revoked, 7) == 401
            path.write_text("\n".join(declared) + "\n", encoding="utf-8")
            assert _within_seconds(lambda: status(kept, 8) == 201)
    written = {r["merchant_id"] for r in rows(demo.intranet, "merchant")}
    assert written >= {1, 2, 4, 8} and not written & {6, 7}  # 3 and 5 were sent until refused


def _within_seconds(condition: Callable[[], bool], seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def post_as(http: httpx.Client, key: str, body: str) -> httpx.Response:
    return http.post("/mappings/merchants/records", content=body, headers=_as(key))


@ONCE
def test_a_client_is_shown_only_the_mappings_it_may_use(anonymous: httpx.Client, keys: dict[str, str]) -> None:
    pusher = anonymous.get("/openapi.json", headers=_as(keys["pusher"])).json()
    everything = anonymous.get("/openapi.json", headers=_as(keys["all"])).json()

    assert set(pusher["paths"]) == {"/health", "/mappings/merchants/records"}
    assert set(pusher["paths"]["/mappings/merchants/records"]) == {"post"}
    shown = json.dumps(pusher)
    assert "/mappings/payments" not in shown and "customer_name" not in shown  # the payments record shape
    assert set(everything["paths"]["/mappings/payments/records"]) == {"post", "patch", "delete"}
    assert anonymous.get("/docs", headers=_as(keys["pusher"])).status_code == 200
