"""The project's deployments registered for real and run by a real process worker, against the test harness.

`prefect deploy --prefect-file deployments/prefect.yaml --all` registers the four deployments on the harness
server (once for the module); runs are queued with `run_deployment` and `prefect worker start --pool
zonesync-pool --run-once` runs them in subprocesses, with the ZONESYNC_* settings pointing at a throw-away
SQLite zone pair.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.responses import DeploymentResponse
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL

from tests.conftest import ZonePair, backend_param
from tests.integration.helpers import execute, flag_value, jobs, rows, seed, unflagged_keys
from tests.integration.partitioned_mappings import MERCHANTS as PARTITIONED
from tests.processes import popen_owned, run_owned
from zonesync.deployments.schedules import PREFECT_FILE, PROJECT_DIR, WORK_POOL, deployment_specs
from zonesync.tasks.setup import demo_data

pytestmark = pytest.mark.usefixtures("prefect_harness")

PREFECT = str(Path(sys.executable).with_name("prefect"))
MERCHANTS = 20  # merchant 13 of the demo data is invalid (empty name): quarantined, the other 19 sync


def prefect_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the `prefect` command line from the project directory against the harness server."""
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    done = run_owned(  # `prefect worker start` among them: it dies with this process
        [PREFECT, *args], cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def run_worker_once() -> None:
    """A process worker polls once: it runs every run already queued (each in a subprocess) and waits for them.
    It reads the ZONESYNC_* settings of the moment (the test's zone pair)."""
    prefect_cli("worker", "start", "--pool", WORK_POOL, "--run-once")


def deployment_runs(deployment_id: object) -> list[FlowRun]:
    """Every flow run of one deployment."""
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))  # type: ignore[list-item]
        )


@pytest.fixture(scope="module")
def registered(prefect_harness: None) -> dict[str, DeploymentResponse]:
    """The four deployments registered from prefect.yaml by `prefect deploy` (once: it takes seconds), by name."""
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=WORK_POOL, type="process"), overwrite=True)
    prefect_cli("--no-prompt", "deploy", "--prefect-file", os.path.relpath(PREFECT_FILE, PROJECT_DIR), "--all")
    with get_client(sync_client=True) as client:
        return {d.name: d for d in client.read_deployments() if d.work_pool_name == WORK_POOL}


@pytest.mark.parametrize("backend", [backend_param("sqlite")])
def test_deploy_from_prefect_yaml_and_run_on_a_process_worker(
    demo: ZonePair, registered: dict[str, DeploymentResponse]
) -> None:
    """All four deployments register from prefect.yaml with their schedules and overlap limits; of two retry-sync
    runs queued together a process worker completes one and the limit cancels the other; the internet zone holds
    the synced rows."""
    seed(demo.intranet, "merchant", demo_data.merchants(MERCHANTS), ("merchant_id",))

    assert set(registered) == {spec.name for spec in deployment_specs()}
    for spec in deployment_specs():
        deployment = registered[spec.name]
        assert deployment.entrypoint == spec.entrypoint
        assert [s.schedule for s in deployment.schedules] == ([spec.schedule] if spec.schedule else [])
        limit, registered_limit = spec.concurrency_limit, deployment.global_concurrency_limit
        if limit is None:
            assert registered_limit is None, spec.name
        else:
            assert registered_limit is not None and registered_limit.limit == limit.limit, spec.name
            assert deployment.concurrency_options is not None
            assert deployment.concurrency_options.collision_strategy == limit.collision_strategy
        assert deployment.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(PROJECT_DIR)}}
        ]

    # Two runs due at once: the deployment's limit lets one run and cancels the overlapping one (CANCEL_NEW).
    retry_sync_id = registered["retry-sync"].id
    earlier = {run.id for run in deployment_runs(retry_sync_id)}  # the other test's runs, if it ran first
    queued = [run_deployment("retry-sync/retry-sync", parameters={"batch_size": 7}, timeout=0) for _ in range(2)]
    run_worker_once()

    runs = {run.id: run for run in deployment_runs(retry_sync_id) if run.id not in earlier}
    assert set(runs) == {run.id for run in queued if isinstance(run, FlowRun)}, "not (only) the queued runs"
    states = sorted(run.state.type.value if run.state else "none" for run in runs.values())
    assert states == ["CANCELLED", "COMPLETED"], states
    names = sorted((run.state.name if run.state else None) or "none" for run in runs.values())
    assert names == ["Cancelled", "Partial"], names  # merchant 13 quarantined: a partial run, named so
    assert len(rows(demo.internet, "merchant")) == MERCHANTS - 1
    unsynced = [row["merchant_id"] for row in rows(demo.intranet, "merchant") if not flag_value(row["is_sync"])]
    assert unsynced == [13]

    # serve.py on the same server would serve deployments of the same names whose runs then crash: it refuses.
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    served = subprocess.run([sys.executable, "-m", "zonesync.deployments.serve"], cwd=PROJECT_DIR, env=env,
                            capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert served.returncode == 2 and len(served.stderr.strip().splitlines()) == 1, served.stderr
    assert f"'retry-sync/retry-sync' (work pool {WORK_POOL})" in served.stderr
    assert "from `prefect deploy`" in served.stderr and "prefect deployment delete" in served.stderr


Named = tuple[str, str]  # a flow run's final state as the server stores it (type, name): what the run list shows
COMPLETED, FAILED = ("COMPLETED", "Completed"), ("FAILED", "Failed")
NO_RECORD, PARTIAL, PENDING = ("COMPLETED", "NoRecord"), ("COMPLETED", "Partial"), ("COMPLETED", "Pending")
REFUSED, ROLLED_BACK = ("FAILED", "Refused"), ("FAILED", "RolledBack")
VALID_PAYMENTS = min(demo_data.INVALID_PAYMENTS) - 1  # demo payments 1-6 are valid (7 and 8 are not)


@dataclass(frozen=True)
class Run:
    """A run to queue on a deployment, and the final state it must end in."""

    deployment: str
    state: Named
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How a failed check names the run (unique within a phase)."""
        return f"{self.deployment} {self.state[1]}"


def merchant(merchant_id: int, **changes: Any) -> dict[str, Any]:
    """A merchant record as an application sends it (source column names, values as JSON text)."""
    return {
        "merchant_id": merchant_id, "merchant_name": f"Toko {merchant_id}", "status": "A", "fee": "1.50",
        "email": None, "tax_id": f"NPWP-{merchant_id}", "updated_at": "2026-11-26T10:00:00+07:00", **changes,
    }  # fmt: skip


def push(record: dict[str, Any], state: Named) -> Run:
    """A realtime-push run of one merchant record."""
    return Run("realtime-push", state, {"mapping": "merchants", "records": [record]})


def update(merchant_id: int, changes: dict[str, Any], state: Named) -> Run:
    """An update-with-rollback run of one merchant."""
    parameters = {"mapping": "merchants", "key": {"merchant_id": merchant_id}, "changes": changes}
    return Run("update-with-rollback", state, parameters)


def retry(state: Named) -> Run:
    """A retry-sync run with the deployment's parameters (every mapping, the default batch size)."""
    return Run("retry-sync", state)


def end_day(state: Named) -> Run:
    """An end-day-check run of the demo data's business day."""
    return Run("end-day-check", state, {"business_date": demo_data.DEMO_BUSINESS_DATE.isoformat()})


def queue(run: Run) -> FlowRun:
    """Create the run on its deployment, due now: the next worker poll picks it up."""
    flow_run = run_deployment(f"{run.deployment}/{run.deployment}", parameters=run.parameters, timeout=0)
    assert isinstance(flow_run, FlowRun)
    return flow_run


def run_phase(*runs: Run) -> dict[str, FlowRun]:
    """Queue the runs of a phase, run them all with one worker poll (each worker start costs seconds), and check
    the final state of each as the server stores it.

    The runs of a phase run at once, so they must not depend on each other; and a phase holds at most one
    retry-sync and one end-day-check run: their deployments' limit would cancel a second one."""
    labels = [run.label for run in runs]
    assert len(set(labels)) == len(labels), labels
    queued = {run.label: queue(run) for run in runs}
    run_worker_once()
    with get_client(sync_client=True) as client:
        stored = {label: client.read_flow_run(flow_run.id).state for label, flow_run in queued.items()}
    ended = {label: (state.type.value, state.name) if state else None for label, state in stored.items()}
    expected = {run.label: run.state for run in runs}
    said = {label: stored[label].message for label in ended if ended[label] != expected[label] and stored[label]}
    assert ended == expected, said  # each run that ended otherwise, with its state's whole message
    return queued


@pytest.mark.parametrize("backend", [backend_param("sqlite")])
def test_each_outcome_of_each_flow_is_its_named_state_on_a_process_worker(
    demo: ZonePair, registered: dict[str, DeploymentResponse]
) -> None:
    """Run by a process worker from the registered deployments, each business outcome of each flow ends in its
    named state (docs/flows.md, "Run states in Prefect") as the server stores it: push Completed / Pending / Refused,
    update Completed / RolledBack, retry NoRecord / Completed / Failed (Partial: the test above; Skipped, a race,
    in-process in test_run_states.py), end-day NoRecord / Completed (SUCCESS) / Partial / Failed.

    Four phases, one worker poll each. A retry-sync or end-day run sees the data set up before its phase; the
    merchant pushes and updates get the phase without a retry-sync run: an update holds the merchants' lease, and
    a retry meanwhile would be Skipped (end-day runs carry payments: they share every phase)."""
    # 1. Empty zones: nothing to sync either way.
    run_phase(retry(NO_RECORD), end_day(NO_RECORD))

    # 2. Two valid unsynced merchants; valid payments only (payment 1 is pending: not eligible, not a difference).
    seed(demo.intranet, "merchant", demo_data.merchants(2), ("merchant_id",))
    seed(demo.internet, "payment", demo_data.payments(VALID_PAYMENTS), ("payment_id",))
    run_phase(retry(COMPLETED), end_day(COMPLETED))

    # 3. Merchants 1 and 2 are in both zones now: updated by the application, next to its pushes of new ones.
    # More payments, two of them invalid: quarantined.
    seed(demo.internet, "payment", demo_data.payments(60)[VALID_PAYMENTS:], ("payment_id",))
    phase = run_phase(
        push(merchant(3), COMPLETED),
        push(merchant(4, fee="-1.00"), PENDING),  # the target model refuses it: the cron retry carries it
        push(merchant(5, fee="one"), REFUSED),  # the source refuses it: nothing written
        update(1, {"fee": "2.00"}, COMPLETED),
        update(2, {"fee": "-2.00"}, ROLLED_BACK),  # the target model refuses it: both zones keep the old fee
        end_day(PARTIAL),
    )
    fees = {row["merchant_id"]: str(row["fee"]) for row in rows(demo.internet, "merchant")}
    assert fees == {1: "2.00", 2: "2.25", 3: "1.50"}, fees  # the runs did what their states say
    # Their creator gave Prefect the record values; once the runs had them, Prefect kept only placeholders.
    with get_client(sync_client=True) as client:
        kept = {
            label: client.read_flow_run(run.id).parameters for label, run in phase.items() if "end-day" not in label
        }
    for label, parameters in kept.items():
        given = parameters.get("records") or parameters["changes"]
        assert given in ("<1 record(s): kept out of Prefect>", "<values of fee: kept out of Prefect>"), (label, given)

    # 4. The internet zone lost its tables: the retry of merchant 4 and the end-day sync both fail, nothing synced.
    execute(demo.internet, "DROP TABLE merchant")
    execute(demo.internet, "DROP TABLE payment")
    run_phase(retry(FAILED), end_day(FAILED))


@pytest.mark.parametrize("backend", [backend_param("postgresql")], indirect=True)
def test_a_retry_fans_a_partitioned_mapping_out_to_two_process_workers_of_the_pool(
    demo: ZonePair, use_zones: Any, registered: dict[str, DeploymentResponse], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`retry-sync` with fan_out work-pool starts a `retry-sync-slice` run per slice; two process workers of the
    pool run them: every valid row lands once, the parent's batch_job row counts each row once."""
    count = 2000  # of which 13, 42 and 77 are invalid
    use_zones(demo, modules="tests.integration.partitioned_mappings", batch_size=50)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))  # the runs import the test mappings
    seed(demo.intranet, "merchant", demo_data.merchants(count), ("merchant_id",))
    parent = queue(Run("retry-sync", PARTIAL, {"mappings": ["merchants"], "workers": 2, "fan_out": "work-pool"}))

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    workers = [
        popen_owned([PREFECT, "worker", "start", "--pool", WORK_POOL, "--name", f"worker-{n}"], cwd=PROJECT_DIR,
                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for n in (1, 2)
    ]  # fmt: skip
    try:
        ended = wait_until_final(parent.id, seconds=240)
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()

    assert (ended.type.value, ended.name) == PARTIAL, ended.message
    children = deployment_runs(registered["retry-sync-slice"].id)
    assert len(children) == 2 and all(child.state and child.state.is_completed() for child in children)
    assert {child.parameters["slice_index"] for child in children} == {0, 1}
    assert unflagged_keys(demo.intranet, PARTITIONED) == {(13,), (42,), (77,)}
    assert len(rows(demo.internet, "merchant")) == count - 3
    last = jobs(demo.intranet)[-1]
    assert (last["status"], last["rows_eligible"], last["rows_synced"], last["rows_failed"]) == (
        "PARTIAL", count, count - 3, 3)  # fmt: skip


def wait_until_final(flow_run_id: object, seconds: float) -> Any:
    """The flow run's state once it has ended (the test fails after `seconds`)."""
    deadline = time.monotonic() + seconds
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(flow_run_id).state  # type: ignore[arg-type]
            if state is not None and state.is_final():
                return state
            time.sleep(1)
    raise AssertionError(f"flow run {flow_run_id} did not end within {seconds} s")
