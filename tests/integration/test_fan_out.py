"""One partitioned mapping carried by several slices of one run: threads of the run's task runner (child runs on a
work pool are tested with the deployments, tests/integration/test_deployments.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterName

from tests.conftest import ZonePair, backend_param
from tests.integration.helpers import jobs, rows, seed, unflagged_keys
from tests.integration.partitioned_mappings import MERCHANTS as PARTITIONED
from zonesync.flows.retry_sync import retry_sync
from zonesync.tasks.bookkeeping.lease import Lease
from zonesync.tasks.setup import demo_data
from zonesync.tasks.sync.partitions import carried_parts, partition_of_key

SERVERS = [backend_param("postgresql"), backend_param("mariadb")]
INVALID = {(13,), (42,), (77,)}  # the demo's invalid merchants among the first hundred


def slice_task_runs(flow_run_id: object) -> list[dict[str, object]]:
    """The parameters of each sync-mapping task run of one flow run."""
    with get_client(sync_client=True) as client:
        found = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),  # type: ignore[list-item]
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="sync-mapping")),
        )
    return [run.task_inputs for run in found]


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("backend", SERVERS, indirect=True)
def test_a_run_fans_a_partitioned_mapping_out_to_threads_each_row_carried_and_counted_once(
    demo: ZonePair, use_zones: Callable[..., None]
) -> None:
    count = 3000
    use_zones(demo, modules="tests.integration.partitioned_mappings", batch_size=100)
    seed(demo.intranet, "merchant", demo_data.merchants(count), ("merchant_id",))

    state = retry_sync(mappings=["merchants"], workers=3, return_state=True)
    result = state.result()["merchants"]

    assert len(slice_task_runs(state.state_details.flow_run_id)) == 3  # one task run per slice
    assert (result.read, result.flagged, result.quarantined) == (count, count - 3, 3)
    assert result.partitions_carried == [1, 2, 3, 4] and result.partitions_left == []
    assert result.status == "partial" and "left to other runs" not in result.message
    assert unflagged_keys(demo.intranet, PARTITIONED) == INVALID
    assert len(rows(demo.internet, "merchant")) == count - 3
    last = jobs(demo.intranet)[-1]
    assert (last["rows_eligible"], last["rows_synced"], last["rows_failed"]) == (count, count - 3, 3)


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("backend", SERVERS, indirect=True)
def test_slices_leave_a_partition_another_run_holds_and_say_so_once(
    demo: ZonePair, use_zones: Callable[..., None]
) -> None:
    use_zones(demo, modules="tests.integration.partitioned_mappings")
    seed(demo.intranet, "merchant", demo_data.merchants(12), ("merchant_id",))
    other_run = Lease(demo.intranet, carried_parts(PARTITIONED, demo.intranet)[2].lease, ttl=60)
    assert other_run.try_acquire()
    try:
        result = retry_sync(mappings=["merchants"], workers=2)["merchants"]
    finally:
        other_run.release()

    in_held = {(key,) for key in range(1, 13) if partition_of_key(PARTITIONED, (key,)) == 2}
    assert unflagged_keys(demo.intranet, PARTITIONED) == in_held
    assert result.partitions_carried == [1, 2, 4] and result.partitions_left == [3]
    assert result.message == "partitions 3 left to other runs" and result.status == "success"
    assert jobs(demo.intranet)[-1]["rows_synced"] == 12 - len(in_held) == result.flagged


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("backend", [backend_param("sqlite")], indirect=True)
def test_sqlite_runs_one_slice_whatever_the_workers(demo: ZonePair, use_zones: Callable[..., None]) -> None:
    use_zones(demo, modules="tests.integration.partitioned_mappings")
    seed(demo.intranet, "merchant", demo_data.merchants(12), ("merchant_id",))

    state = retry_sync(mappings=["merchants"], workers=4, return_state=True)

    assert len(slice_task_runs(state.state_details.flow_run_id)) == 1
    assert state.result()["merchants"].flagged == 12 and unflagged_keys(demo.intranet, PARTITIONED) == set()


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("backend", [backend_param("postgresql")], indirect=True)
def test_a_run_fans_a_partitioned_mapping_out_to_a_local_dask_cluster(
    demo: ZonePair, use_zones: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    count = 1000
    use_zones(demo, modules="tests.integration.partitioned_mappings", batch_size=100)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))  # the cluster's processes import them
    seed(demo.intranet, "merchant", demo_data.merchants(count), ("merchant_id",))

    state = retry_sync(mappings=["merchants"], workers=2, fan_out="dask", return_state=True)
    result = state.result()["merchants"]

    runs = slice_task_runs(state.state_details.flow_run_id)
    assert len(runs) == 2
    assert (result.read, result.flagged, result.quarantined) == (count, count - 3, 3)
    assert result.partitions_carried == [1, 2, 3, 4] and unflagged_keys(demo.intranet, PARTITIONED) == INVALID
    assert len(rows(demo.internet, "merchant")) == count - 3
    assert jobs(demo.intranet)[-1]["rows_synced"] == count - 3
