"""Many concurrent clients of the HTTP API: pushes written together still answer each request
exactly, bad records never affect other requests, and both zones end up as the answers say."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.conftest import ZonePair
from tests.integration.helpers import errors, mapped, source_rows, target_rows
from tests.integration.test_http_api import post, serve
from zonesync.schemas.examples import MERCHANTS

CLIENTS = 8
REQUESTS_PER_CLIENT = 10


@pytest.fixture
def client(demo: ZonePair) -> Iterator[httpx.Client]:
    yield from serve()


def record(key: int, **changes: Any) -> dict[str, Any]:
    """A merchant as an application sends it (its own email: the demo target has one merchant per email)."""
    good = {"merchant_id": key, "merchant_name": f"Toko {key} 😀", "status": "A", "fee": "12345.67", "tax_id": "NPWP",
            "email": f"m{key}@example.com", "updated_at": "2026-11-26T10:00:00.123456+07:00"}  # fmt: skip
    return good | changes


def plan(client_number: int) -> list[tuple[Any, int, dict[int, str]]]:
    """A client's requests: (body, expected status, expected outcome per key), each kind of answer mixed in."""
    base = 1000 * (client_number + 1)
    requests: list[tuple[Any, int, dict[int, str]]] = [(record(base), 201, {base: "success"})]
    for n in range(1, REQUESTS_PER_CLIENT):
        key, kind = base + 10 * n, (n + client_number) % 5
        pair = {key: "success", key + 1: "pending"}
        if kind == 0:
            requests.append((record(key), 201, {key: "success"}))
        elif kind == 1:
            requests.append(([record(key), record(key + 1, status="X")], 202, pair))
        elif kind == 2:
            requests.append(([record(key), record(key + 1, fee="1.234")], 422, {key: "error", key + 1: "error"}))
        elif kind == 3:
            requests.append(([record(key), record(key + 1, merchant_name="")], 202, pair))
        else:  # the key of this client's first request again: refused, nothing changes
            requests.append((record(base, status="I"), 409, {base: "error"}))
    return requests


def test_concurrent_clients_each_get_their_exact_answer_and_both_zones_agree(
    client: httpx.Client, demo: ZonePair
) -> None:
    start = threading.Barrier(CLIENTS)
    raced: list[httpx.Response] = []

    def run(client_number: int) -> list[tuple[httpx.Response, int, dict[int, str]]]:
        start.wait()
        answers = []
        for body, status, outcomes in plan(client_number):
            answers.append((post(client, json.dumps(body)), status, outcomes))
        raced.append(post(client, json.dumps(record(7, merchant_name=f"client {client_number}"))))
        return answers

    with ThreadPoolExecutor(CLIENTS) as pool:
        answered = [answer for answers in pool.map(run, range(CLIENTS)) for answer in answers]

    for response, status, outcomes in answered:
        assert response.status_code == status, response.text
        assert {r["key"]["merchant_id"]: r["status"] for r in response.json()["records"]} == outcomes
    assert sorted(response.status_code for response in raced) == [201] + [409] * (CLIENTS - 1)

    expected = {key: state for _, status, outcomes in answered if status != 409 for key, state in outcomes.items()}
    landed = {key for key, state in expected.items() if state != "error"} | {7}
    source = source_rows(demo.intranet, MERCHANTS)
    assert {key for (key,) in source} == landed
    assert {key for (key,), row in source.items() if row["__flag"]} == {
        k for k in landed if expected.get(k) != "pending"
    }
    assert target_rows(demo.internet, MERCHANTS) == {key: mapped(row) for key, row in source.items() if row["__flag"]}
    assert sorted(e["key"]["merchant_id"] for e in errors(demo.intranet, open_only=True)) == sorted(
        key for key, state in expected.items() if state == "pending"
    )
    winner = next(r for r in raced if r.status_code == 201)
    assert source[(7,)]["name"] == json.loads(winner.request.content)["merchant_name"]
    assert all(source[(1000 * (n + 1),)]["status"] == "A" for n in range(CLIENTS))  # the 409s changed nothing
