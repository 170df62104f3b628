"""The project's deployments registered for real and run by a real process worker, against the test harness.

`prefect deploy --prefect-file deployments/prefect.yaml --all` registers the four deployments on the harness
server; a `retry-sync` run is queued and `prefect worker start --pool zonesync-pool --run-once` runs it in a
subprocess, with the ZONESYNC_* settings pointing at a throw-away SQLite zone pair.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL

from tests.conftest import ZonePair, backend_param
from tests.integration.helpers import flag_value, rows, seed
from zonesync.deployments.schedules import PREFECT_FILE, PROJECT_DIR, WORK_POOL, deployment_specs
from zonesync.tasks import demo_data

pytestmark = pytest.mark.usefixtures("prefect_harness")

PREFECT = str(Path(sys.executable).with_name("prefect"))
MERCHANTS = 20  # merchant 13 of the demo data is invalid (empty name): quarantined, the other 19 sync


def prefect_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the `prefect` command line from the project directory against the harness server."""
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    done = subprocess.run(
        [PREFECT, *args], cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def deployment_runs(deployment_id: object) -> list[FlowRun]:
    """Every flow run of one deployment."""
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))  # type: ignore[list-item]
        )


@pytest.mark.parametrize("backend", [backend_param("sqlite")])
def test_deploy_from_prefect_yaml_and_run_on_a_process_worker(demo: ZonePair) -> None:
    """All four deployments register from prefect.yaml with their schedules and overlap limits; of two retry-sync
    runs queued together a process worker completes one and the limit cancels the other; the internet zone holds
    the synced rows."""
    seed(demo.intranet, "merchant", demo_data.merchants(MERCHANTS), ("merchant_id",))
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=WORK_POOL, type="process"), overwrite=True)

    prefect_cli("--no-prompt", "deploy", "--prefect-file", os.path.relpath(PREFECT_FILE, PROJECT_DIR), "--all")

    with get_client(sync_client=True) as client:
        registered = {d.name: d for d in client.read_deployments() if d.work_pool_name == WORK_POOL}
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
    queued = [run_deployment("retry-sync/retry-sync", parameters={"batch_size": 7}, timeout=0) for _ in range(2)]
    prefect_cli("worker", "start", "--pool", WORK_POOL, "--run-once")

    runs = {run.id: run for run in deployment_runs(registered["retry-sync"].id)}
    assert set(runs) == {run.id for run in queued if isinstance(run, FlowRun)}, "not (only) the queued runs"
    states = sorted(run.state.type.value if run.state else "none" for run in runs.values())
    assert states == ["CANCELLED", "COMPLETED"], states
    names = sorted(run.state.name if run.state else "none" for run in runs.values())
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
