"""HTTP fuzzing from the OpenAPI document (schemathesis), against a real server and the real databases, every
backend: requests that follow the document and requests that break it, for every operation. None may get a
5xx; every refusal is a 4xx whose JSON body has a reason code and no traceback.

The seed is fixed (`derandomize`); ZONESYNC_FUZZ_EXAMPLES (cases per operation and mode) makes the long run
(`make fuzz`), which prints how many cases it sent and the answers by status.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode

from tests.conftest import ZonePair
from tests.integration.test_http_api import serve

EXAMPLES = int(os.environ.get("ZONESYNC_FUZZ_EXAMPLES", "40"))
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


@pytest.fixture
def api(demo: ZonePair) -> Iterator[httpx.Client]:
    yield from serve()


def test_generated_requests_never_get_a_5xx_and_every_refusal_says_why(api: httpx.Client) -> None:
    schema = schemathesis.openapi.from_dict(api.get("/openapi.json").json())
    operations = [result.ok() for result in schema.get_all_operations()]
    cases = st.one_of(*(operation.as_strategy(generation_mode=mode) for operation in operations for mode in MODES))
    answers: Counter[int] = Counter()
    session = requests.Session()
    session.headers["authorization"] = api.headers["authorization"]  # the declared client's key

    @settings(max_examples=EXAMPLES * len(operations) * len(MODES), derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=cases)
    def send(case: Any) -> None:
        response = case.call(base_url=str(api.base_url), session=session, timeout=60)
        answers[response.status_code] += 1
        described = f"{case.method} {case.formatted_path} {str(case.body)[:300]!r} -> {response.status_code}"
        assert response.status_code < 500, f"{described}: {response.text[:500]}"
        assert "Traceback" not in response.text and 'File "' not in response.text, described
        if response.status_code >= 400:
            payload = response.json()
            assert payload.get("reason") or payload.get("error"), f"{described}: no reason code in {payload}"

    send()
    print(f"\nHTTP fuzzing: {sum(answers.values())} cases, answers by status {dict(sorted(answers.items()))}")
    assert answers[201] + answers[202] and sum(n for status, n in answers.items() if 400 <= status < 500)
