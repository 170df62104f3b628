"""The automations shipped in deployments/automations.yaml, on a real Prefect server of this test's own (its
triggers service running): `prefect automation create` takes them, each one watching what an operator must act
on fires on the event real runs emit, and the zombie one marks a killed run Crashed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import ZonePair
from tests.integration import operator_runs
from tests.integration.console import SQLITE_ONLY, zone_settings
from tests.processes import popen_owned, run_owned
from tests.torture.procs import PrefectServer, WorkerError, wait_until

REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))


EVENTS = {  # each automation watching what an operator must act on, and the event it fires on
    "zonesync: rows quarantined": "zonesync.rows.quarantined",
    "zonesync: zones differ": "zonesync.reconciliation.differs",
    "zonesync: end-day check failed": "zonesync.end-day.failed",
    "zonesync: lease taken over": "zonesync.lease.taken-over",
    "zonesync: schema change stopped a mapping": "zonesync.schema.broken",
    "zonesync: failed keys flood the API": "zonesync.api.auth-refused",
}


def create_automations(env: dict[str, str]) -> None:
    """`prefect automation create` with the shipped file, as the README says."""
    created = subprocess.run(
        [PREFECT, "automation", "create", "--from-file", "deployments/automations.yaml"], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr
    assert "Created 7 automation(s)" in created.stdout, created.stdout


@SQLITE_ONLY
def test_each_operator_automation_fires_on_the_event_of_a_real_run(
    demo: ZonePair, prefect_server: PrefectServer
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZONESYNC_", "PREFECT_"))}
    env |= prefect_server.worker_env() | zone_settings(demo)
    create_automations(env)
    ran = run_owned(
        [sys.executable, "-m", "tests.integration.operator_runs"], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=300, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]

    with httpx.Client(base_url=prefect_server.api_url, timeout=30) as prefect:
        automations = {a["name"]: a["id"] for a in prefect.post("/automations/filter", json={}).json()}

        def fired() -> set[str]:
            body = {"filter": {"event": {"prefix": ["prefect.automation.triggered"]}}}
            triggered = {
                e["resource"]["prefect.resource.id"] for e in prefect.post("/events/filter", json=body).json()["events"]
            }
            return {name for name in EVENTS if f"prefect.automation.{automations[name]}" in triggered}

        wait_until(lambda: fired() == set(EVENTS), 90, "each operator automation firing")
        body = {"filter": {"event": {"prefix": ["zonesync."]}}}
        events = prefect.post("/events/filter", json=body).json()["events"]
    emitted = {(e["event"], e["resource"]["prefect.resource.id"]): e["payload"] for e in events}
    assert emitted.keys() >= {
        ("zonesync.rows.quarantined", "zonesync.mapping.merchants"),
        ("zonesync.rows.quarantined", "zonesync.mapping.payments"),
        ("zonesync.reconciliation.differs", "zonesync.mapping.payments"),
        ("zonesync.end-day.failed", "zonesync.job.end-day-check"),
        ("zonesync.lease.taken-over", "zonesync.lease.mapping:merchants"),
        ("zonesync.schema.broken", "zonesync.mapping.merchants"),
        ("zonesync.api.auth-refused", f"zonesync.api.client-address.{operator_runs.FLOODING_ADDRESS}"),
    }, json.dumps(events)
    quarantined = emitted["zonesync.rows.quarantined", "zonesync.mapping.merchants"]
    assert quarantined["count"] == 1 and quarantined["job"] == "retry-sync", quarantined
    taken = emitted["zonesync.lease.taken-over", "zonesync.lease.mapping:merchants"]
    assert taken["previous_holder"] == operator_runs.ELSEWHERE and taken["why"] == "it expired", taken
    assert "busy" in emitted["zonesync.end-day.failed", "zonesync.job.end-day-check"]["message"]
    (broken,) = emitted["zonesync.schema.broken", "zonesync.mapping.merchants"]["changes"]
    assert broken.startswith("internet zone, table 'merchant', column 'fee': ") and "integer" in broken, broken


def test_the_zombie_automation_marks_a_run_whose_process_was_killed_crashed(prefect_server: PrefectServer) -> None:
    """A served run with heartbeats every 30 s; its process group is killed while it runs; within 90 s of its
    last heartbeat the shipped automation marks it Crashed (Prefect alone would leave it Running for ever)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZONESYNC_", "PREFECT_"))}
    env |= prefect_server.worker_env() | {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}
    create_automations(env)
    served = popen_owned(
        [sys.executable, "-m", "tests.integration.zombie_flow"], cwd=REPO, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with httpx.Client(base_url=prefect_server.api_url, timeout=30) as prefect:

            def deployment() -> str | None:
                found = prefect.post("/deployments/filter", json={}).json()
                return next((d["id"] for d in found if d["name"] == "zombie"), None)

            wait_until(lambda: deployment() is not None, 60, "the served deployment")
            run: dict[str, str] = {}
            refusals: list[str] = []

            def created() -> bool:  # a busy test server may refuse once (seen: an answer without an id)
                answer = prefect.post(f"/deployments/{deployment()}/create_flow_run", json={})
                if answer.status_code == 201 and "id" in answer.json():
                    run.update(answer.json())
                    return True
                refusals.append(f"{answer.status_code} {answer.text[:300]}")
                return False

            try:
                wait_until(created, 60, "a flow run of the deployment", interval=1)
            except WorkerError as exc:
                raise AssertionError(f"{exc}; the server answered: {refusals}") from None

            def state() -> str:
                return str(prefect.get(f"/flow_runs/{run['id']}").json()["state"]["type"])

            def beating() -> bool:  # the automation watches runs that sent a heartbeat: one killed before is not
                body = {"filter": {"event": {"name": ["prefect.flow-run.heartbeat"]},
                                   "resource": {"id": [f"prefect.flow-run.{run['id']}"]}}}  # fmt: skip
                return bool(prefect.post("/events/filter", json=body).json()["events"])

            wait_until(lambda: state() == "RUNNING", 120, "the flow run starting")
            wait_until(beating, 120, "the flow run's first heartbeat")
            os.killpg(served.pid, signal.SIGKILL)  # the server (runner) and the flow run's process with it
            served.wait(timeout=30)
            wait_until(lambda: state() == "CRASHED", 240, "the automation marking the killed run Crashed", interval=2)
            message = prefect.get(f"/flow_runs/{run['id']}").json()["state"]["message"]
    finally:
        if served.poll() is None:
            os.killpg(served.pid, signal.SIGKILL)
            served.wait(timeout=30)
    assert "No heartbeat for 90 s" in message
