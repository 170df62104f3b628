"""The HTTP entry point, served by a real uvicorn server on loopback and called with a real HTTP client."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import uvicorn

from tests.conftest import ZonePair
from tests.integration.helpers import errors, execute, mapped, rows, source_rows, target_rows
from zonesync.deployments.api import create_app
from zonesync.deployments.server import protocol_options
from zonesync.schemas import settings
from zonesync.schemas.api_clients import SCOPES, Scope, new_client
from zonesync.schemas.examples import MERCHANTS
from zonesync.schemas.registry import all_mappings
from zonesync.tasks.zones import engines

RECORD = (
    '{"merchant_id": %d, "merchant_name": "Warung 😀", "status": "%s", "fee": 1234567890123456.78, '
    '"tax_id": "NPWP-9", "updated_at": "2026-11-26T10:00:00.123456+07:00"}'
)
# A merchant that sets only columns the mapping carries (no tax_id): one zonesync can compare when sent again.
CARRIED_ONLY = (
    '{"merchant_id": %d, "merchant_name": "Toko", "status": "%s", "fee": "1.50", "updated_at": "2026-11-26T10:00:00Z"}'
)


@contextmanager
def declared_clients(*clients: tuple[str, Mapping[str, frozenset[Scope]] | None]) -> Iterator[list[str]]:
    """A clients file (ZONESYNC_API_CLIENTS_FILE) declaring each (name, scopes) — None: every scope on every
    registered mapping; yields their keys."""
    made = [new_client(name, scopes or dict.fromkeys(all_mappings(), frozenset(SCOPES))) for name, scopes in clients]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "api-clients.toml"
        path.write_text("".join(f"{line}\n" for _, line in made), encoding="utf-8")
        previous = os.environ.get("ZONESYNC_API_CLIENTS_FILE")
        os.environ["ZONESYNC_API_CLIENTS_FILE"] = str(path)
        settings.get_settings.cache_clear()
        try:
            yield [key for key, _ in made]
        finally:
            if previous is None:
                os.environ.pop("ZONESYNC_API_CLIENTS_FILE", None)
            else:
                os.environ["ZONESYNC_API_CLIENTS_FILE"] = previous
            settings.get_settings.cache_clear()


def serve() -> Iterator[httpx.Client]:
    """Start the app on a free loopback port in a thread, with one client declared that may do everything;
    yield an HTTP client that sends its key; stop the server."""
    with declared_clients(("tests", None)) as [key]:
        yield from serve_app(create_app(), headers={"authorization": f"Bearer {key}"})


def serve_app(app: object, headers: Mapping[str, str] | None = None) -> Iterator[httpx.Client]:
    """Serve `app` on a free loopback port in a thread; yield a client (sending `headers`); stop the server."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", **protocol_options()))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the API server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, headers=headers) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def client(demo: ZonePair) -> Iterator[httpx.Client]:
    yield from serve()


def post(client: httpx.Client, body: str, mapping: str = "merchants") -> httpx.Response:
    return client.post(f"/mappings/{mapping}/records", content=body, headers={"content-type": "application/json"})


def test_a_record_lands_in_both_zones_with_201_and_its_json_number_is_exact(
    client: httpx.Client, demo: ZonePair
) -> None:
    response = post(client, RECORD % (1, "A"))

    assert response.status_code == 201
    assert response.json()["records"] == [{"key": {"merchant_id": 1}, "status": "success", "reason": "", "detail": ""}]
    source = source_rows(demo.intranet, MERCHANTS)[(1,)]
    assert source["__flag"] is True and target_rows(demo.internet, MERCHANTS)[(1,)] == mapped(source)
    assert source["fee"] == Decimal("1234567890123456.78")  # a JSON number, never a float on the way


def test_records_the_target_refuses_are_accepted_as_pending_with_202(client: httpx.Client, demo: ZonePair) -> None:
    response = post(client, f"[{RECORD % (1, 'A')}, {RECORD % (2, 'X')}]")

    assert response.status_code == 202
    body = response.json()
    assert (body["status"], body["stage"]) == ("pending", "target")
    assert [(r["key"]["merchant_id"], r["status"], r["reason"]) for r in body["records"]] == [
        (1, "success", ""),
        (2, "pending", "validation"),
    ]
    assert "status" in body["records"][1]["detail"]
    assert [e["key"] for e in errors(demo.intranet, open_only=True)] == [{"merchant_id": 2}]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ('{"merchant_id": 1, "colour": "red"}', 422, "unknown_column"),
        (RECORD.replace("1234567890123456.78", '"1.234"') % (1, "A"), 422, "invalid_value"),
        (RECORD.replace('"merchant_id": %d', '"merchant_id": "one"').replace("%s", "A", 1), 422, "invalid_value"),
        ('{"merchant_id": 1, "status": "A"}', 422, "missing_required"),
        ("[]", 400, "invalid_body"),
        ("not json", 400, "invalid_body"),
    ],
)
def test_bad_records_get_a_clear_4xx_and_nothing_is_written(
    client: httpx.Client, demo: ZonePair, body: str, status: int, error: str
) -> None:
    response = post(client, body)

    assert response.status_code == status
    payload = response.json()
    assert payload.get("reason", payload.get("error")) == error
    assert payload.get("message", payload.get("detail"))
    assert rows(demo.intranet, "merchant") == [] and rows(demo.internet, "merchant") == []


def test_a_duplicate_key_is_a_409_conflict_that_changes_nothing(client: httpx.Client, demo: ZonePair) -> None:
    post(client, RECORD % (1, "A"))

    response = post(client, (RECORD % (1, "I")))

    assert response.status_code == 409
    assert response.json()["reason"] == "duplicate_key"
    assert target_rows(demo.internet, MERCHANTS)[(1,)]["status"] == "A"


def test_an_unknown_mapping_is_403_like_any_mapping_outside_the_clients_scopes(client: httpx.Client) -> None:
    response = post(client, RECORD % (1, "A"), mapping="customers")

    assert response.status_code == 403
    assert response.json() == {"error": "forbidden", "detail": "client 'tests' may not push records of this mapping"}


def test_health_reports_both_zones(client: httpx.Client) -> None:
    response = client.get("/health")

    assert (response.status_code, response.json()) == (
        200,
        {"status": "ok", "zones": {"intranet": "up", "internet": "up"}},
    )


def test_the_openapi_schema_documents_each_mappings_record_shape(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()

    operation = spec["paths"]["/mappings/merchants/records"]["post"]
    record = operation["requestBody"]["content"]["application/json"]["schema"]["oneOf"][0]
    assert set(record["properties"]) == {"merchant_id", "merchant_name", "status", "fee", "email", "updated_at"}
    assert "email" not in record["required"] and "merchant_name" in record["required"]
    assert "decimal(18,2)" in record["properties"]["fee"]["description"]
    assert {"201", "202", "409", "422", "503"} <= set(operation["responses"])
    assert "/mappings/payments/records" in spec["paths"]


def test_an_unavailable_source_zone_is_503_without_secrets(demo: ZonePair, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZONESYNC_INTRANET_URL", "postgresql://zonesync:secret-pw@127.0.0.1:1/nowhere")
    settings.get_settings.cache_clear()
    engines.dispose_engines()
    for client in serve():
        pushed = post(client, RECORD % (1, "A"))
        health = client.get("/health")

    assert pushed.status_code == 503 and pushed.json()["reason"] == "unavailable"
    assert health.status_code == 503 and health.json()["zones"] == {"intranet": "down", "internet": "up"}
    assert "secret-pw" not in pushed.text + health.text
    assert rows(demo.internet, "merchant") == []


def patch(client: httpx.Client, body: str) -> httpx.Response:
    return client.patch("/mappings/merchants/records", content=body, headers={"content-type": "application/json"})


def test_an_update_changes_both_zones_or_neither(client: httpx.Client, demo: ZonePair) -> None:
    post(client, RECORD % (1, "A"))

    applied = patch(client, '{"key": {"merchant_id": 1}, "changes": {"fee": 3.75, "merchant_name": "Baru"}}')
    refused = patch(client, '{"key": {"merchant_id": 1}, "changes": {"status": "X"}}')
    missing = patch(client, '{"key": {"merchant_id": 404}, "changes": {"status": "I"}}')

    assert (applied.status_code, applied.json()["status"]) == (200, "success")
    assert (refused.status_code, refused.json()["reason"]) == (422, "validation")
    assert (missing.status_code, missing.json()["reason"]) == (404, "not_found")
    source = source_rows(demo.intranet, MERCHANTS)[(1,)]
    target = target_rows(demo.internet, MERCHANTS)[(1,)]
    assert target == mapped(source) and source["__flag"] is True
    assert (target["fee"], target["name"], target["status"]) == (Decimal("3.75"), "Baru", "A")


def test_an_oversized_value_is_refused_by_a_server_database_or_quarantined_by_the_target_model(
    client: httpx.Client, demo: ZonePair
) -> None:
    response = post(client, RECORD.replace("Warung 😀", "x" * 300) % (1, "A"))

    if demo.intranet_backend == "sqlite":  # SQLite does not enforce varchar lengths: the target model does
        assert response.status_code == 202
        assert response.json()["records"][0]["reason"] == "validation"
        assert rows(demo.internet, "merchant") == []
    else:
        assert (response.status_code, response.json()["reason"]) == (422, "invalid_value")
        assert rows(demo.intranet, "merchant") == [] and rows(demo.internet, "merchant") == []


def delete(client: httpx.Client, body: str) -> httpx.Response:
    return client.request("DELETE", "/mappings/merchants/records", content=body,
                          headers={"content-type": "application/json"})  # fmt: skip


def test_a_delete_removes_the_row_from_both_zones_or_neither(client: httpx.Client, demo: ZonePair) -> None:
    post(client, RECORD % (1, "A"))
    post(client, RECORD % (2, "A"))
    later = "2099-01-01 00:00:00" + ("+00" if demo.internet_backend == "postgresql" else "")
    execute(demo.internet, "UPDATE merchant SET updated_at = :later WHERE merchant_id = 2", {"later": later})

    deleted = delete(client, '{"key": {"merchant_id": 1}}')
    newer = delete(client, '{"key": {"merchant_id": 2}}')
    missing = delete(client, '{"key": {"merchant_id": 404}}')
    no_key = delete(client, "[1]")

    assert (deleted.status_code, deleted.json()["status"]) == (200, "success"), deleted.text
    assert (newer.status_code, newer.json()["reason"]) == (409, "delete_conflict")
    assert (missing.status_code, missing.json()["reason"]) == (404, "not_found")
    assert (no_key.status_code, no_key.json()["error"]) == (400, "invalid_body")
    assert set(source_rows(demo.intranet, MERCHANTS)) == set(target_rows(demo.internet, MERCHANTS)) == {(2,)}
    assert [row["merchant_id"] for row in rows(demo.internet, "merchant_archive")] == [1]
    audited = [(row["operation"], row["status"]) for row in rows(demo.intranet, "api_audit")]
    assert [entry for entry in audited if entry[0] == "delete"] == [("delete", 200), ("delete", 409), ("delete", 404)]
