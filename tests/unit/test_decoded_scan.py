"""The sentinel scan's decoder finds a value wherever Prefect's result storage may keep it: a plain-text search
of a persisted result finds nothing (a base64 pickle), `decoded_forms` does — for each serializer Prefect offers."""

from __future__ import annotations

import base64
import json
import zlib
from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem
from prefect.results import ResultStore
from prefect.serializers import Serializer

from tests.integration.decoded import decoded_forms
from zonesync.tasks.results import KeyOutcome, PushResult

SENTINEL = "AcctSentinel0123456789"


def _found(data: bytes) -> bool:
    return any(SENTINEL.encode() in form for form in decoded_forms(data))


@pytest.mark.parametrize("serializer", ["pickle", "compressed/pickle", "json", "compressed/json"])
def test_a_value_in_a_persisted_prefect_result_is_found_however_it_is_serialized(
    tmp_path: Path, serializer: str
) -> None:
    result = PushResult("accounts", "success", outcomes=[KeyOutcome({"account_no": SENTINEL}, "success")])
    store = ResultStore(result_storage=LocalFileSystem(basepath=str(tmp_path)), serializer=Serializer(type=serializer))

    store.write(result, key="the-result")

    [stored] = tmp_path.iterdir()
    assert SENTINEL.encode() not in stored.read_bytes() or serializer == "json"  # what a plain scan would miss
    assert _found(stored.read_bytes())


def test_nested_encodings_are_followed_and_a_clean_blob_stays_clean() -> None:
    inner = zlib.compress(json.dumps({"key": SENTINEL}).encode())
    wrapped = json.dumps({"data": base64.b64encode(base64.b64encode(inner)).decode()}).encode()

    assert _found(wrapped)
    assert not _found(json.dumps({"data": base64.b64encode(zlib.compress(b"nothing here" * 8)).decode()}).encode())
