"""The automations shipped in deployments/automations.yaml, on a real Prefect server of this test's own (its
triggers service running): `prefect automation create` takes them, and one fires on the quarantine event a
real retry run emits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import ZonePair
from tests.integration.console import SQLITE_ONLY, zone_settings
from tests.integration.helpers import seed
from tests.torture.procs import PrefectServer, wait_until
from zonesync.tasks import demo_data

REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))


@SQLITE_ONLY
def test_the_quarantine_automation_fires_on_a_real_retry_that_quarantines_rows(
    demo: ZonePair, prefect_server: PrefectServer
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZONESYNC_", "PREFECT_"))}
    env |= prefect_server.worker_env() | zone_settings(demo)
    created = subprocess.run(
        [PREFECT, "automation", "create", "--from-file", "deployments/automations.yaml"], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr
    assert "Created 4 automation(s)" in created.stdout, created.stdout
    with httpx.Client(base_url=prefect_server.api_url, timeout=30) as prefect:
        automations = {a["name"]: a["id"] for a in prefect.post("/automations/filter", json={}).json()}
        quarantine = automations["zonesync: rows quarantined"]

        seed(demo.intranet, "merchant", demo_data.merchants(20), ("merchant_id",))  # merchant 13 is invalid
        ran = subprocess.run(
            [sys.executable, "-c", "from zonesync.flows.retry_sync import retry_sync; retry_sync()"], cwd=REPO,
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]

        def fired() -> bool:
            body = {"filter": {"event": {"prefix": ["prefect.automation.triggered"]},
                               "resource": {"id": [f"prefect.automation.{quarantine}"]}}}  # fmt: skip
            return bool(prefect.post("/events/filter", json=body).json()["events"])

        wait_until(fired, 90, "the quarantine automation firing")
        body = {"filter": {"event": {"name": ["zonesync.rows.quarantined"]}}}
        [event] = prefect.post("/events/filter", json=body).json()["events"]
    assert event["resource"]["prefect.resource.id"] == "zonesync.mapping.merchants"
    assert event["payload"]["count"] == 1 and event["payload"]["job"] == "retry-sync", json.dumps(event)


def test_the_zombie_automation_marks_a_run_whose_process_was_killed_crashed(prefect_server: PrefectServer) -> None:
    """A served run with heartbeats every 30 s; its process group is killed while it runs; within 90 s of its
    last heartbeat the shipped automation marks it Crashed (Prefect alone would leave it Running for ever)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZONESYNC_", "PREFECT_"))}
    env |= prefect_server.worker_env() | {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}
    created = subprocess.run(
        [PREFECT, "automation", "create", "--from-file", "deployments/automations.yaml"], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr
    served = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.zombie_flow"], cwd=REPO, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with httpx.Client(base_url=prefect_server.api_url, timeout=30) as prefect:

            def deployment() -> str | None:
                found = prefect.post("/deployments/filter", json={}).json()
                return next((d["id"] for d in found if d["name"] == "zombie"), None)

            wait_until(lambda: deployment() is not None, 60, "the served deployment")
            run = prefect.post(f"/deployments/{deployment()}/create_flow_run", json={}).json()

            def state() -> str:
                return str(prefect.get(f"/flow_runs/{run['id']}").json()["state"]["type"])

            wait_until(lambda: state() == "RUNNING", 120, "the flow run starting")
            os.killpg(served.pid, signal.SIGKILL)  # the server (runner) and the flow run's process with it
            served.wait(timeout=30)
            wait_until(lambda: state() == "CRASHED", 240, "the automation marking the killed run Crashed", interval=2)
            message = prefect.get(f"/flow_runs/{run['id']}").json()["state"]["message"]
    finally:
        if served.poll() is None:
            os.killpg(served.pid, signal.SIGKILL)
            served.wait(timeout=30)
    assert "No heartbeat for 90 s" in message
