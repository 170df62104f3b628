"""The automations shipped in deployments/automations.yaml, on a real Prefect server of this test's own (its
triggers and actions services running), installed by `zonesync automations install --webhook URL`: each one
watching what an operator must act on fires on the event real runs emit and its notification reaches a webhook
receiver this test runs; the zombie one marks a killed run Crashed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ZonePair
from tests.integration import operator_runs
from tests.integration.console import SQLITE_ONLY, zone_settings
from tests.processes import popen_owned, run_owned
from tests.torture.procs import PrefectServer, WorkerError, wait_until

REPO = Path(__file__).resolve().parents[2]
ZONESYNC = str(Path(sys.executable).with_name("zonesync"))


EVENTS = {  # each automation watching what an operator must act on, and the event it fires on
    "zonesync: rows quarantined": "zonesync.rows.quarantined",
    "zonesync: zones differ": "zonesync.reconciliation.differs",
    "zonesync: writers' contract broken": "zonesync.contract.broken",
    "zonesync: end-day check failed": "zonesync.end-day.failed",
    "zonesync: lease taken over": "zonesync.lease.taken-over",
    "zonesync: schema change stopped a mapping": "zonesync.schema.broken",
    "zonesync: failed keys flood the API": "zonesync.api.auth-refused",
}


class Receiver(ThreadingHTTPServer):
    """An operator's alert endpoint: the JSON bodies posted to it."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Hook)
        self.received: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/zonesync-alerts"


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"] or 0))
        assert isinstance(self.server, Receiver)
        self.server.received.append({"path": self.path, **json.loads(body)})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def install_automations(env: dict[str, str], webhook: str, *how: str) -> None:
    """`zonesync automations install --webhook URL` (or `how`), as the operations guide says."""
    installed = subprocess.run(
        [ZONESYNC, "automations", "install", *(how or ("--webhook", webhook))], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    shown = " ".join(installed.stdout.split())
    assert shown.count("notifies") == len(EVENTS) and "marks the run CRASHED" in shown, installed.stdout


@SQLITE_ONLY
def test_each_operator_automation_fires_on_the_event_of_a_real_run_and_notifies_the_operator(
    demo: ZonePair, prefect_server: PrefectServer, receiver: Receiver
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZONESYNC_", "PREFECT_"))}
    env |= prefect_server.worker_env() | zone_settings(demo)
    install_automations(env, receiver.url)
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
        notified = lambda: {message["subject"] for message in receiver.received}  # noqa: E731
        wait_until(lambda: notified() >= set(EVENTS), 90, "each automation's notification reaching the receiver")
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
        ("zonesync.contract.broken", "zonesync.mapping.merchants"),
        ("zonesync.api.auth-refused", f"zonesync.api.client-address.{operator_runs.FLOODING_ADDRESS}"),
    }, json.dumps(events)
    quarantined = emitted["zonesync.rows.quarantined", "zonesync.mapping.merchants"]
    assert quarantined["count"] == 1 and quarantined["job"] == "retry-sync", quarantined
    taken = emitted["zonesync.lease.taken-over", "zonesync.lease.mapping:merchants"]
    assert taken["previous_holder"] == operator_runs.ELSEWHERE and taken["why"] == "it expired", taken
    assert "busy" in emitted["zonesync.end-day.failed", "zonesync.job.end-day-check"]["message"]
    (broken,) = emitted["zonesync.schema.broken", "zonesync.mapping.merchants"]["changes"]
    assert broken.startswith("internet zone, table 'merchant', column 'fee': ") and "integer" in broken, broken
    contract = emitted["zonesync.contract.broken", "zonesync.mapping.merchants"]
    assert contract["broken"] == 1 and contract["keys"] == [f"merchant_id={operator_runs.CHANGED_BEHIND}"], contract
    with httpx.Client(base_url=prefect_server.api_url, timeout=30) as prefect:  # the URL is kept as a secret
        blocks = prefect.post("/block_documents/filter", json={}).json()
    assert receiver.url not in json.dumps(blocks) and any(b["name"] == "zonesync-webhook" for b in blocks), blocks
    install_automations(env, "", "--block", "custom-webhook/zonesync-webhook")  # the block it made: a block of yours
    with httpx.Client(base_url=prefect_server.api_url, timeout=30) as prefect:
        names = [automation["name"] for automation in prefect.post("/automations/filter", json={}).json()]
    assert sorted(names) == sorted(set(names)) and len(names) == len(EVENTS) + 1, names  # replaced, not added
    notices = {message["subject"]: message["body"] for message in receiver.received}
    contract_notice = notices["zonesync: writers' contract broken"]
    assert "zonesync.contract.broken on zonesync.mapping.merchants" in contract_notice, contract_notice
    assert "zonesync init --triggers" in contract_notice and "merchant_id=" in contract_notice, contract_notice


def test_the_zombie_automation_marks_a_run_whose_process_was_killed_crashed(prefect_server: PrefectServer) -> None:
    """A served run with heartbeats every 30 s; its process group is killed while it runs; within 90 s of its
    last heartbeat the shipped automation marks it Crashed (Prefect alone would leave it Running for ever)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZONESYNC_", "PREFECT_"))}
    env |= prefect_server.worker_env() | {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}
    install_automations(env, "http://127.0.0.1:9/nobody-listens")
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
