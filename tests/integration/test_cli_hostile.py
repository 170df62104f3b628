"""The hostile set through the `zonesync` console script: the same inputs as over HTTP give one clear line or the
refusal table, the documented exit code, never a traceback, and nothing written. The refusals run the script's
entry point in this process (`InProcessCli`); the 20,000-record file goes through the real script."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ZonePair
from tests.integration.console import SQLITE_ONLY, Cli, InProcessCli, Run
from tests.integration.helpers import rows, source_rows, target_rows
from zonesync.schemas.examples import MERCHANTS
from zonesync.tasks.setup import demo_data

MERCHANT: dict[str, Any] = dict(demo_data.NEW_MERCHANT)
BAD_VALUES = {
    "before-year-1": {"updated_at": "0001-01-01T00:00:00+14:00"},
    "after-9999": {"updated_at": "9999-12-31T23:59:59-14:00"},
    "nanoseconds": {"updated_at": "2026-11-26T10:00:00.1234567Z"},
    "huge-key": {"merchant_id": 10**30},
    "too-many-decimals": {"fee": "12.345"},
}


def assert_no_traceback(run: Run) -> None:
    assert "Traceback" not in run.stdout + run.stderr and 'File "' not in run.stderr, str(run)


def assert_one_line(run: Run, says: str, code: int = 2) -> None:
    """A user mistake: one line on stderr saying `says`, nothing on stdout."""
    assert run.code == code, str(run)
    assert_no_traceback(run)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and says in lines[0], str(run)


@SQLITE_ONLY
@pytest.mark.parametrize("bad", list(BAD_VALUES.values()), ids=list(BAD_VALUES))
def test_a_push_with_a_value_the_zones_cannot_hold_is_refused_with_exit_1(
    demo_zones: ZonePair, flow_cli_in_process: InProcessCli, bad: dict[str, Any]
) -> None:
    run = flow_cli_in_process("push", "merchants", "--json", json.dumps({**MERCHANT, **bad}))

    assert run.code == 1, str(run)
    assert_no_traceback(run)
    assert "invalid_value" in run.stdout, str(run)
    assert rows(demo_zones.intranet, "merchant") == [] and rows(demo_zones.internet, "merchant") == []


@SQLITE_ONLY
@pytest.mark.parametrize("bad", [BAD_VALUES["before-year-1"], BAD_VALUES["after-9999"], {"fee": "1e999999"}])
def test_an_update_with_a_value_the_zones_cannot_hold_is_refused_with_exit_1(
    demo_zones: ZonePair, flow_cli_in_process: InProcessCli, bad: dict[str, Any]
) -> None:
    assert flow_cli_in_process("push", "merchants", "--json", json.dumps(MERCHANT)).code == 0
    before = target_rows(demo_zones.internet, MERCHANTS)

    run = flow_cli_in_process("update", "merchants", "--key", '{"merchant_id": 501}', "--changes", json.dumps(bad))

    assert run.code == 1, str(run)
    assert_no_traceback(run)
    assert run.stdout.startswith("error") and "(invalid_value)" in run.stdout, str(run)
    assert target_rows(demo_zones.internet, MERCHANTS) == before


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("text", "says"),
    [("[" * 100_000 + "]" * 100_000, "nested too deeply"), ('{"fee": NaN}', "NaN is not a JSON value"),
     ('{"merchant_id": ' + "9" * 5000 + "}", "more than 4300 digits"), ("[]", "non-empty array")],
    ids=["deep", "nan", "long-number", "empty"],
)  # fmt: skip
def test_a_bad_records_file_is_one_line_and_exit_2(
    demo_zones: ZonePair, cli_in_process: InProcessCli, tmp_path: Path, text: str, says: str
) -> None:
    (tmp_path / "records.json").write_text(text)

    assert_one_line(cli_in_process("push", "merchants", "--file", "records.json"), says)
    assert_one_line(cli_in_process("update", "merchants", "--key", '{"merchant_id": 1}', "--changes", text[:100_000]),
                    "--changes is not valid JSON" if text != "[]" else "must be a JSON object")  # fmt: skip


@SQLITE_ONLY
def test_a_batch_size_beyond_the_cap_is_refused(demo_zones: ZonePair, cli_in_process: InProcessCli) -> None:
    run = cli_in_process("retry", "--batch-size", "99999999999999999999")

    assert run.code == 2, str(run)
    assert_no_traceback(run)
    assert "batch-size" in run.stderr, str(run)


@SQLITE_ONLY
def test_a_file_of_twenty_thousand_records_is_pushed_and_stays_out_of_prefect(
    demo_zones: ZonePair, flow_cli: Cli, tmp_path: Path
) -> None:
    records = [{**MERCHANT, "merchant_id": key, "email": f"m{key}@example.com"} for key in range(1, 20_001)]
    (tmp_path / "records.json").write_text(json.dumps(records))

    run = flow_cli("push", "merchants", "--file", "records.json")

    assert run.code == 0, str(run)[-3000:]
    assert len(target_rows(demo_zones.internet, MERCHANTS)) == 20_000
    assert all(row["__flag"] for row in source_rows(demo_zones.intranet, MERCHANTS).values())
    assert _last_push_parameters() == {"mapping": "merchants", "records": "<20000 record(s): kept out of Prefect>"}


def _last_push_parameters() -> dict[str, Any]:
    """The parameters Prefect stored for the latest realtime-push flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["realtime-push"])), sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )  # fmt: skip
    return dict(runs[0].parameters)
