"""Retries that are safe for a payment client, on a real server with a real client, each backend: a record sent
again identical to the stored one is answered as already there (per record, so one landed record never sinks its
neighbours), and an `Idempotency-Key` replays the first answer. A record that also sets a column the mapping does
not carry (tax_id) cannot be compared — zonesync never reads such a column back — so only its key makes it safe."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import ZonePair
from tests.integration.helpers import rows
from tests.integration.test_http_api import CARRIED_ONLY, RECORD, serve
from zonesync.tasks.bookkeeping import idempotency
from zonesync.tasks.bookkeeping.idempotency import IdempotencyKeys, Refusal, Replay
from zonesync.tasks.bookkeeping.tables import api_idempotency

JSON = {"content-type": "application/json"}


@pytest.fixture
def client(demo: ZonePair) -> Iterator[httpx.Client]:
    yield from serve()


def _post(client: httpx.Client, body: str, **headers: str) -> httpx.Response:
    return client.post("/mappings/merchants/records", content=body, headers=JSON | headers)


def _records(response: httpx.Response) -> list[tuple[int, str, str]]:
    return [(r["key"]["merchant_id"], r["status"], r["reason"]) for r in response.json()["records"]]


def _merchant_ids(zone: sa.Engine) -> list[int]:
    return sorted(row["merchant_id"] for row in rows(zone, "merchant"))


def test_a_push_sent_again_after_its_201_is_answered_as_already_there(client: httpx.Client, demo: ZonePair) -> None:
    first = _post(client, CARRIED_ONLY % (1, "A"))
    again = _post(client, CARRIED_ONLY % (1, "A"))

    assert first.status_code == again.status_code == 201, again.text
    assert _records(again) == [(1, "success", "already_there")]
    assert _merchant_ids(demo.intranet) == _merchant_ids(demo.internet) == [1]


def test_a_push_sent_again_after_its_202_is_still_pending(client: httpx.Client, demo: ZonePair) -> None:
    first = _post(client, CARRIED_ONLY % (1, "X"))  # the target model refuses status X: pending in the source
    again = _post(client, CARRIED_ONLY % (1, "X"))

    assert first.status_code == again.status_code == 202, again.text
    assert _records(again) == [(1, "pending", "already_there")]
    assert _merchant_ids(demo.intranet) == [1] and _merchant_ids(demo.internet) == []


def test_a_retried_batch_writes_its_new_records_beside_the_one_that_had_landed(
    client: httpx.Client, demo: ZonePair
) -> None:
    assert _post(client, CARRIED_ONLY % (2, "A")).status_code == 201

    retried = _post(client, f"[{CARRIED_ONLY % (1, 'A')}, {CARRIED_ONLY % (2, 'A')}, {CARRIED_ONLY % (3, 'A')}]")

    assert retried.status_code == 201, retried.text
    assert _records(retried) == [(1, "success", ""), (2, "success", "already_there"), (3, "success", "")]
    assert _merchant_ids(demo.intranet) == _merchant_ids(demo.internet) == [1, 2, 3]


def test_a_record_with_a_column_kept_inside_is_refused_when_sent_again_without_an_idempotency_key(
    client: httpx.Client, demo: ZonePair
) -> None:
    assert _post(client, RECORD % (1, "A")).status_code == 201

    again = _post(client, RECORD % (1, "A"))
    with_key = [_post(client, RECORD % (2, "A"), **{"idempotency-key": "order-2"}) for _ in range(2)]

    assert again.status_code == 409 and again.json()["reason"] == "duplicate_key", again.text
    assert [answer.status_code for answer in with_key] == [201, 201]
    assert with_key[1].headers.get("idempotent-replayed") == "true"
    assert _merchant_ids(demo.intranet) == _merchant_ids(demo.internet) == [1, 2]


def test_a_record_whose_key_holds_other_values_still_refuses_the_request_whole(
    client: httpx.Client, demo: ZonePair
) -> None:
    assert _post(client, RECORD % (2, "A")).status_code == 201

    refused = _post(client, f"[{RECORD % (1, 'A')}, {RECORD % (2, 'I')}]")

    assert refused.status_code == 409, refused.text
    assert refused.json()["reason"] == "duplicate_key"
    assert _merchant_ids(demo.intranet) == _merchant_ids(demo.internet) == [2]
    [merchant] = rows(demo.intranet, "merchant")
    assert merchant["status"] == "A"


def test_an_idempotency_key_replays_the_first_answer_and_refuses_another_request(
    client: httpx.Client, demo: ZonePair
) -> None:
    first = _post(client, RECORD % (1, "A"), **{"idempotency-key": "order-1"})
    replayed = _post(client, RECORD % (1, "A"), **{"idempotency-key": "order-1"})
    other_body = _post(client, RECORD % (2, "A"), **{"idempotency-key": "order-1"})

    assert first.status_code == replayed.status_code == 201
    assert replayed.json() == first.json() and replayed.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert (other_body.status_code, other_body.json()["error"]) == (422, "idempotency_key_reused")
    assert _merchant_ids(demo.intranet) == [1]
    # Served once: one write in the audit trail.
    assert [(r["operation"], r["status"]) for r in rows(demo.intranet, "api_audit")] == [("push", 201)]


def test_an_idempotency_key_replays_an_update_and_a_refusal(client: httpx.Client, demo: ZonePair) -> None:
    assert _post(client, RECORD % (1, "A")).status_code == 201
    change = json.dumps({"key": {"merchant_id": 1}, "changes": {"status": "I"}})
    bad = json.dumps({"key": {"merchant_id": 1}, "changes": {"status": "Z"}})
    headers = JSON | {"idempotency-key": "change-1"}

    first = client.patch("/mappings/merchants/records", content=change, headers=headers)
    replayed = client.patch("/mappings/merchants/records", content=change, headers=headers)
    refused = client.patch("/mappings/merchants/records", content=bad, headers=JSON | {"idempotency-key": "bad-1"})
    refused_again = client.patch(
        "/mappings/merchants/records", content=bad, headers=JSON | {"idempotency-key": "bad-1"}
    )

    assert (first.status_code, replayed.status_code) == (200, 200)
    assert replayed.headers["idempotent-replayed"] == "true" and replayed.json() == first.json()
    assert refused.status_code == refused_again.status_code == 422
    assert refused_again.json() == refused.json() and refused_again.headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize("key", ["", "x" * 256, "new\tline", "é"], ids=["empty", "long", "control", "non-ascii"])
def test_an_unusable_idempotency_key_is_400_and_writes_nothing(client: httpx.Client, demo: ZonePair, key: str) -> None:
    response = client.post(
        "/mappings/merchants/records", content=RECORD % (1, "A"), headers=JSON | {"idempotency-key": key.encode()}
    )

    assert (response.status_code, response.json()["error"]) == (400, "invalid_idempotency_key")
    assert rows(demo.intranet, "merchant") == []


def test_concurrent_requests_with_one_key_write_once(client: httpx.Client, demo: ZonePair) -> None:
    answers: list[httpx.Response] = []

    def send() -> None:
        answers.append(_post(client, RECORD % (1, "A"), **{"idempotency-key": "same"}))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = sorted(answer.status_code for answer in answers)
    assert set(statuses) <= {201, 409} and statuses.count(201) >= 1, statuses
    assert all(a.headers.get("retry-after") == "1" for a in answers if a.status_code == 409)
    assert _merchant_ids(demo.intranet) == _merchant_ids(demo.internet) == [1]
    assert len(rows(demo.intranet, "api_audit")) == 1


def test_the_key_store_takes_over_a_dead_request_frees_a_failed_one_and_forgets_old_answers(demo: ZonePair) -> None:
    keys = IdempotencyKeys(demo.intranet, timedelta(hours=1))

    assert keys.take("a", "k1", "sha-1") is None  # taken: serve it
    in_flight = keys.take("a", "k1", "sha-1")
    assert isinstance(in_flight, Refusal) and (in_flight.status, in_flight.error) == (409, "idempotency_key_in_flight")
    assert keys.take("b", "k1", "sha-2") is None  # another client's key is its own
    reused = keys.take("a", "k1", "sha-2")
    assert isinstance(reused, Refusal) and (reused.status, reused.error) == (422, "idempotency_key_reused")
    # The request that took it died: once TAKEN_SECONDS have passed, the same request takes it over.
    _age(demo.intranet, "a", "k1", timedelta(seconds=idempotency.TAKEN_SECONDS + 1))
    assert keys.take("a", "k1", "sha-1") is None
    keys.keep("a", "k1", 201, '{"status":"success"}')
    assert keys.take("a", "k1", "sha-1") == Replay(201, '{"status":"success"}')
    # A 5xx frees the key: the retry is served.
    assert keys.take("a", "k2", "sha-3") is None
    keys.keep("a", "k2", 503, "")
    assert keys.take("a", "k2", "sha-3") is None
    # An answer older than the retention is forgotten.
    _age(demo.intranet, "a", "k1", timedelta(hours=1, seconds=1))
    assert keys.take("a", "k1", "sha-9") is None


def _age(intranet: sa.Engine, client: str, key: str, by: timedelta) -> None:
    row = api_idempotency.c
    mine = sa.and_(row.client == client, row.idempotency_key == key)
    with intranet.begin() as conn:
        created = conn.execute(sa.select(row.created_at).where(mine)).scalar_one()
        conn.execute(sa.update(api_idempotency).where(mine).values(created_at=created - by))
