"""The hand-written hostile set over real HTTP, every backend: each bad request is a precise 4xx with a JSON
reason code (never a 5xx, never a traceback), writes nothing, and cannot fail the good requests beside it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ZonePair, backend_param
from tests.integration.data import SYNCED_MERCHANT
from tests.integration.helpers import rows, target_rows, unreachable_url
from tests.integration.test_http_api import serve
from zonesync.schemas import settings
from zonesync.schemas.examples import MERCHANTS
from zonesync.tasks.zones import engines

JSON = {"content-type": "application/json"}
# Refused before any database is touched: the backend plays no part, so these run on one (SQLite).
ONCE = pytest.mark.parametrize("backend", [backend_param("sqlite")])
RECORDS = "/mappings/merchants/records"


def record(key: int = 1, **changes: Any) -> dict[str, Any]:
    return {**SYNCED_MERCHANT, "merchant_id": key, "email": f"m{key}@example.com", **changes}


def body(key: int = 1, **raw: str) -> str:
    """A merchant record as JSON text, with some values spelled raw (NaN, 1.5, deep nesting ...)."""
    text = json.dumps(record(key))
    for name, value in raw.items():
        text = text.replace(f'"{name}": {json.dumps(record(key)[name])}', f'"{name}": {value}')
    assert all(f'"{name}": {value}' in text for name, value in raw.items())
    return text


DEEP = "[" * 100_000 + "]" * 100_000
# Refused before any database is touched (media type, JSON itself): the backend plays no part, so they run on one.
MALFORMED_POSTS = [
    pytest.param(body(), {"content-type": "text/plain"}, 415, "unsupported_media_type", id="text-plain"),
    pytest.param(
        body(), {"content-type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type", id="form"
    ),
    pytest.param(body(), {}, 415, "unsupported_media_type", id="no-content-type"),
    pytest.param('{"merchant_id": 1,', JSON, 400, "invalid_body", id="truncated"),
    pytest.param("", JSON, 400, "invalid_body", id="empty"),
    pytest.param(b"\xff\xfe{}", JSON, 400, "invalid_body", id="not-utf8"),
    pytest.param(DEEP, JSON, 400, "invalid_body", id="deep-array"),
    pytest.param('{"a":' * 100_000 + "1" + "}" * 100_000, JSON, 400, "invalid_body", id="deep-object"),
    pytest.param(body(fee="NaN"), JSON, 400, "invalid_body", id="nan"),
    pytest.param(body(fee="-Infinity"), JSON, 400, "invalid_body", id="infinity"),
    pytest.param("null", JSON, 400, "invalid_body", id="null"),
    pytest.param('"merchant"', JSON, 400, "invalid_body", id="string"),
    pytest.param("[1, 2]", JSON, 400, "invalid_body", id="array-of-numbers"),
    pytest.param(body(fee="1" * 5000), JSON, 400, "invalid_body", id="five-thousand-digits"),
]
# Refused by the checks against the live source table: on every backend.
HOSTILE_POSTS = [
    pytest.param(body(merchant_id="1.5"), JSON, 422, "invalid_value", id="fractional-key"),
    pytest.param(body(merchant_id="1e400"), JSON, 422, "invalid_value", id="exponent-key"),
    pytest.param(body(merchant_id=str(10**30)), JSON, 422, "invalid_value", id="huge-key"),
    pytest.param(body(merchant_id="true"), JSON, 422, "invalid_value", id="boolean-key"),
    pytest.param(body(merchant_id='{"$gt": 0}'), JSON, 422, "invalid_value", id="object-key"),
    pytest.param(body(fee="1e999999"), JSON, 422, "invalid_value", id="huge-exponent"),
    pytest.param(body(fee='"12.345"'), JSON, 422, "invalid_value", id="too-many-decimals"),
    pytest.param(body(updated_at='"0001-01-01T00:00:00+14:00"'), JSON, 422, "invalid_value", id="before-year-1"),
    pytest.param(body(updated_at='"9999-12-31T23:59:59-14:00"'), JSON, 422, "invalid_value", id="after-9999"),
    pytest.param(body(updated_at='"2026-11-26T10:00:00.1234567Z"'), JSON, 422, "invalid_value", id="nanoseconds"),
    pytest.param(body(updated_at="1764000000"), JSON, 422, "invalid_value", id="epoch-number"),
    pytest.param(body(merchant_name='["a"]'), JSON, 422, "invalid_value", id="array-as-text"),
    pytest.param(body(status="null"), JSON, 422, "missing_required", id="null-required"),
    pytest.param(json.dumps({**record(), "is_sync": True}), JSON, 422, "unknown_column", id="sets-the-flag"),
    pytest.param(
        json.dumps({**record(), "merchant_id); DROP TABLE merchant; --": 1}),
        JSON,
        422,
        "unknown_column",
        id="injection-column",
    ),
]


@pytest.fixture
def client(demo: ZonePair) -> Iterator[httpx.Client]:
    yield from serve()


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    """The status, a JSON body with the reason code and a message, no traceback."""
    assert response.status_code == status, response.text[:500]
    payload = response.json()
    assert payload.get("reason", payload.get("error")) == code, payload
    assert payload.get("message", payload.get("detail"))
    assert "Traceback" not in response.text and 'File "' not in response.text


@ONCE
@pytest.mark.parametrize(("content", "headers", "status", "code"), MALFORMED_POSTS)
def test_a_malformed_post_is_a_precise_refusal_that_writes_nothing(
    client: httpx.Client, demo: ZonePair, content: str | bytes, headers: dict[str, str], status: int, code: str
) -> None:
    _post_is_refused(client, demo, content, headers, status, code)


@pytest.mark.parametrize(("content", "headers", "status", "code"), HOSTILE_POSTS)
def test_a_hostile_post_is_a_precise_refusal_that_writes_nothing(
    client: httpx.Client, demo: ZonePair, content: str | bytes, headers: dict[str, str], status: int, code: str
) -> None:
    _post_is_refused(client, demo, content, headers, status, code)


def _post_is_refused(
    client: httpx.Client, demo: ZonePair, content: str | bytes, headers: dict[str, str], status: int, code: str
) -> None:
    response = client.post(RECORDS, content=content, headers=headers)

    assert_refused(response, status, code)
    assert rows(demo.intranet, "merchant") == [] and rows(demo.internet, "merchant") == []


@ONCE
@pytest.mark.parametrize(
    ("path", "status"),
    [("/mappings/merchants'%20OR%20'1'='1/records", 403), ("/mappings/..%2F..%2Fetc%2Fpasswd/records", 404),
     ("/mappings/" + "m" * 5000 + "/records", 403), ("/mappings/merchants%0A/records", 400),
     ("/mappings/%00/records", 400)],
    ids=["quote", "traversal", "long", "newline", "nul"],
)  # fmt: skip
def test_an_unknown_or_hostile_mapping_name_is_refused_without_a_trace(
    client: httpx.Client, path: str, status: int
) -> None:
    """A name no client may write to is 403 (as any mapping outside the client's scopes); a path that is no
    mapping's at all is 404; one holding a control character 400."""
    response = client.post(path, content=body(), headers=JSON)

    assert response.status_code == status
    assert "Traceback" not in response.text and len(response.text) < 1000


@ONCE
@pytest.mark.parametrize(("method", "path", "status", "code"), [
    ("GET", "/nowhere", 404, "not_found"), ("PUT", RECORDS, 405, "method_not_allowed"),
    ("GET", RECORDS, 405, "method_not_allowed"),
])  # fmt: skip
def test_a_path_or_method_the_api_does_not_have_is_a_json_refusal(
    client: httpx.Client, method: str, path: str, status: int, code: str
) -> None:
    assert_refused(client.request(method, path), status, code)


def test_injection_text_in_values_is_stored_verbatim(client: httpx.Client, demo: ZonePair) -> None:
    hostile = "Robert'); DROP TABLE merchant; -- \\ \" ` $$ \x00"[:-1] + " 😀"

    response = client.post(RECORDS, json=record(1, merchant_name=hostile))

    assert response.status_code == 201, response.text
    assert [row["merchant_name"] for row in rows(demo.intranet, "merchant")] == [hostile]
    assert [row["name"] for row in rows(demo.internet, "merchant")] == [hostile]


MALFORMED_PATCHES = [
    pytest.param('{"key": {"merchant_id": 1}, "changes": {"fee": NaN}}', 400, "invalid_body", id="nan"),
    pytest.param('{"key": ' * 50_000 + "1" + "}" * 50_000, 400, "invalid_body", id="deep"),
    pytest.param("[1]", 400, "invalid_body", id="array"),
    pytest.param('{"key": {"merchant_id": 1}, "changes": {}}', 400, "invalid_body", id="no-changes"),
]
HOSTILE_PATCHES = [
    pytest.param(
        '{"key": {"merchant_id": 1.5}, "changes": {"fee": "3.00"}}', 422, "invalid_value", id="fractional-key"
    ),
    pytest.param(
        '{"key": {"merchant_id": 1}, "changes": {"updated_at": "0001-01-01T00:00:00+14:00"}}',
        422,
        "invalid_value",
        id="before-year-1",
    ),
    pytest.param(
        '{"key": {"merchant_id": 1}, "changes": {"updated_at": "9999-12-31T23:59:59-14:00"}}',
        422,
        "invalid_value",
        id="after-9999",
    ),
    pytest.param('{"key": {"merchant_id": 1}, "changes": {"fee": 1e999999}}', 422, "invalid_value", id="huge-exponent"),
    pytest.param(
        '{"key": {"merchant_id": 1}, "changes": {"is_sync": false}}', 422, "unknown_column", id="sets-the-flag"
    ),
]


@ONCE
@pytest.mark.parametrize(("content", "status", "code"), MALFORMED_PATCHES)
def test_a_malformed_patch_is_a_precise_refusal_that_changes_nothing(
    synced: ZonePair, content: str, status: int, code: str
) -> None:
    _patch_is_refused(synced, content, status, code)


@pytest.mark.parametrize(("content", "status", "code"), HOSTILE_PATCHES)
def test_a_hostile_patch_is_a_precise_refusal_that_changes_nothing(
    synced: ZonePair, content: str, status: int, code: str
) -> None:
    _patch_is_refused(synced, content, status, code)


def _patch_is_refused(synced: ZonePair, content: str, status: int, code: str) -> None:
    before = target_rows(synced.internet, MERCHANTS)
    for client in serve():
        response = client.patch(RECORDS, content=content, headers=JSON)

        assert_refused(response, status, code)
    assert target_rows(synced.internet, MERCHANTS) == before


def test_a_patch_of_a_column_that_is_null_is_200(synced: ZonePair) -> None:
    for client in serve():
        assert client.post(RECORDS, json=record(2, email=None)).status_code == 201

        response = client.patch(RECORDS, json={"key": {"merchant_id": 2}, "changes": {"email": "x@example.com"}})

        assert response.status_code == 200, response.text
    assert target_rows(synced.internet, MERCHANTS)[(2,)]["email"] == "x@example.com"


def test_a_patch_while_the_intranet_zone_is_down_is_503(
    demo: ZonePair, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ZONESYNC_INTRANET_URL", unreachable_url(demo.intranet_backend, tmp_path))
    settings.get_settings.cache_clear()
    engines.dispose_engines()
    for client in serve():
        response = client.patch(RECORDS, json={"key": {"merchant_id": 1}, "changes": {"fee": "3.00"}})

        assert_refused(response, 503, "unavailable")
        assert "secret-pw" not in response.text and "127.0.0.1" not in response.text


def test_bad_requests_written_together_with_good_ones_fail_only_themselves(
    client: httpx.Client, demo: ZonePair
) -> None:
    """11 requests at once, so that they are written together: the bad one cannot fail the 10 good ones."""
    for round_number in range(3):
        keys = [100 * round_number + n for n in range(1, 11)]
        bad = body(100 * round_number + 50, updated_at='"0001-01-01T00:00:00+14:00"')
        requests = [json.dumps(record(key)) for key in keys[:5]] + [bad] + [json.dumps(record(k)) for k in keys[5:]]
        start = threading.Barrier(len(requests))

        def send(content: str, start: threading.Barrier = start) -> httpx.Response:
            start.wait()
            return client.post(RECORDS, content=content, headers=JSON)

        with ThreadPoolExecutor(len(requests)) as pool:
            answers = list(pool.map(send, requests))

        assert [a.status_code for a in answers] == [201] * 5 + [422] + [201] * 5, [a.text for a in answers]
        assert set(keys) <= {key for (key,) in target_rows(demo.internet, MERCHANTS)}
