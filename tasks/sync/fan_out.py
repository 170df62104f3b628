"""Fanning one mapping out to several workers: its slices (tasks/sync/slices.py) as tasks of the run's own task
runner (threads), as tasks on a Dask cluster (prefect-dask's task runner), or as child flow runs on a work pool.

Whichever way, a slice is the same `sync-mapping` task with the mapping's name and the slice's numbers, and every
batch it commits is counted in the parent run's `batch_job` row, in the transaction that commits it: the ledger
sums the slices exactly, whoever ran them, also after kills and takeovers. A child flow run reports its counts
back as a Prefect artifact (counts and a message, never record values): Prefect keeps no flow results of zonesync.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any
from uuid import UUID

from prefect import get_run_logger, runtime
from prefect.artifacts import create_table_artifact
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.states import Cancelled
from prefect.task_runners import TaskRunner

from zonesync.schemas.errors import ConfigError
from zonesync.schemas.mapping import SyncMapping
from zonesync.schemas.settings import FanOut, get_settings
from zonesync.tasks.prefect_tasks import outcome, sync_mapping
from zonesync.tasks.results import MappingSyncResult
from zonesync.tasks.sync.partitions import carried_parts
from zonesync.tasks.sync.slices import Slice, merged, slices_for
from zonesync.tasks.zones.engines import get_engine

SLICE_RESULT_KEY = "retry-sync-slice-result"
POLL_SECONDS = 1.0


def carry_mapping(mapping: SyncMapping, batch_size: int, flow_key: str, job_id: int,
                  workers: int, fan_out: FanOut) -> MappingSyncResult:  # fmt: skip
    """One mapping's sync: one task, or (a partitioned mapping, several workers) one slice per worker, merged."""
    slices = slices_for(len(carried_parts(mapping, get_engine(mapping.source_zone))), workers)
    if len(slices) == 1:
        return outcome(sync_mapping(mapping.name, batch_size, flow_key, job_id, return_state=True), mapping.name)
    get_run_logger().info("%s: %s slices (%s)", mapping.name, len(slices), fan_out)
    if fan_out == "work-pool":
        results = _on_work_pool(mapping.name, slices, batch_size, job_id)
    elif fan_out == "dask":
        with _dask_runner(len(slices)) as runner:
            results = _as_tasks(mapping.name, slices, batch_size, flow_key, job_id, runner)
    else:
        results = _as_tasks(mapping.name, slices, batch_size, flow_key, job_id, None)
    return merged(mapping.name, results)


def _as_tasks(mapping: str, slices: list[Slice], batch_size: int, flow_key: str, job_id: int,
              runner: TaskRunner[Any] | None) -> list[MappingSyncResult]:  # fmt: skip
    """Each slice as a sync-mapping task run, on the given task runner (none: the flow's own), and their results."""
    futures = []
    for slice_ in slices:
        arguments: dict[str, Any] = {"mapping_name": mapping, "batch_size": batch_size, "flow_key": flow_key,
                                     "job_id": job_id, "slice_": slice_}  # fmt: skip
        futures.append(runner.submit(sync_mapping, arguments) if runner else sync_mapping.submit(**arguments))
    return [outcome(future.wait() or future.state, mapping) for future in futures]


def _dask_runner(slices: int) -> TaskRunner[Any]:
    """prefect-dask's task runner: on the cluster at ZONESYNC_DASK_ADDRESS, or a local one of a process per slice."""
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise ConfigError("ZONESYNC_FAN_OUT=dask needs prefect-dask: pip install 'zonesync[dask]'") from None
    address = get_settings().dask_address
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": slices, "threads_per_worker": 1, "processes": True})


def _on_work_pool(mapping: str, slices: list[Slice], batch_size: int, job_id: int) -> list[MappingSyncResult]:
    """Start a child flow run per slice on the slice deployment and wait for them all. Each run's idempotency key
    names this run, its job and the slice: a creation sent twice (the client retrying a request) starts one child."""
    deployment = get_settings().slice_deployment
    parent = runtime.flow_run.id or "ad-hoc"
    runs = []
    for slice_ in slices:
        parameters = {"mapping": mapping, "slice_index": slice_.index, "slices": slice_.count,
                      "batch_size": batch_size, "job_id": job_id}  # fmt: skip
        key = f"{parent}:{job_id}:{mapping}:{slice_.index + 1}-of-{slice_.count}"
        started = run_deployment(deployment, parameters=parameters, timeout=0, idempotency_key=key)
        assert isinstance(started, FlowRun)  # called from a synchronous flow: sync_compatible returns the run
        runs.append(started)
    deadline = time.monotonic() + get_settings().slice_start_seconds
    with get_client(sync_client=True) as client:
        return [_slice_result(client, mapping, _finished(client, run.id, deadline)) for run in runs]


def _finished(client: SyncPrefectClient, run_id: UUID, deadline: float) -> FlowRun:
    """The child run once it has ended; one that no worker started by the deadline is cancelled (nothing ran)."""
    while True:
        run = client.read_flow_run(run_id)
        if run.state is not None and run.state.is_final():
            return run
        waiting = run.state is not None and (run.state.is_scheduled() or run.state.is_pending())
        if waiting and time.monotonic() > deadline:
            why = f"no worker of the pool started it within {get_settings().slice_start_seconds:g} s"
            client.set_flow_run_state(run_id, Cancelled(message=why), force=True)
        time.sleep(POLL_SECONDS)


def _slice_result(client: SyncPrefectClient, mapping: str, run: FlowRun) -> MappingSyncResult:
    """What a child run reported, or an error naming the run and how it ended."""
    found = client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]), key=ArtifactFilterKey(any_=[SLICE_RESULT_KEY])
        )
    )
    assert run.state is not None
    if run.state.is_completed() and found:
        return slice_result_from(json.loads(str(found[0].data))[0])
    return MappingSyncResult(
        mapping=mapping, status="error",
        message=f"slice flow run {run.name} ended {run.state.name}: {run.state.message or 'no message'}",
    )  # fmt: skip


def publish_slice_result(result: MappingSyncResult) -> None:
    """A child run's counts, for its parent (and the UI): a one-row table artifact."""
    create_table_artifact(table=[dataclasses.asdict(result)], key=SLICE_RESULT_KEY, description=result.mapping)


def slice_result_from(row: dict[str, Any]) -> MappingSyncResult:
    """The result a child run published."""
    known = {field.name for field in dataclasses.fields(MappingSyncResult)}
    return MappingSyncResult(**{name: value for name, value in row.items() if name in known})
