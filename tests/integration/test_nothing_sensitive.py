"""Nothing sensitive reaches Prefect, a log or an answer: the sentinel scan.

All four flows (called from Python), the CLI and the HTTP API run against a real Prefect server of their own,
intranet on PostgreSQL and internet on MariaDB, each zone's URL holding a sentinel password. Every record carries
sentinel values: in a column the mapping keeps inside (`tax_id`, `client_ip`), in ordinary columns, and as the
offending value of a refused record (model, source and target refusals, a rolled-back update, quarantined rows).

Then every byte Prefect kept (its database file and WAL, its logs, the client-side home), every line the
processes printed, every answer of the HTTP API, and what Prefect's API returns for logs, artifacts, events, flow
runs and task runs are searched for each sentinel. Keys may appear (they do: that is the positive control),
but not those of a mapping that declares its key sensitive; only the answers to a caller give its keys back.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import ThrowawayServers, ZonePair, make_pair, pair_param
from tests.integration.console import SCRIPT, Cli, zone_settings
from tests.integration.decoded import decoded_forms
from tests.integration.helpers import execute, rows
from tests.integration.sentinel_flows import without_keys
from tests.integration.sentinel_mappings import account_tables
from tests.processes import popen_owned, run_owned
from tests.torture.procs import PrefectServer, free_port, wait_until
from zonesync.schemas.api_clients import SCOPES, new_client
from zonesync.schemas.examples.tables import internet_tables, intranet_tables

REPO = Path(__file__).resolve().parents[2]
BUSINESS_DATE = date(2026, 3, 4)
NEGATIVE_FEE = "-8675309.41"  # a refused number: the value must not be quoted back either
QUERIES = ("logs", "artifacts", "flow_runs", "task_runs")


@pytest.fixture(params=[pair_param("postgresql", "mariadb")])
def zones(servers: ThrowawayServers, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ZonePair]:
    """The demo tables, intranet on PostgreSQL and internet on MariaDB (both URLs hold a password)."""
    pair = make_pair(servers, *request.param, tmp_path)
    accounts_source, accounts_target = account_tables()
    for metadata in (intranet_tables(), accounts_source):
        metadata.create_all(pair.intranet)
    for metadata in (internet_tables(), accounts_target):
        metadata.create_all(pair.internet)
    yield pair
    pair.dispose()


class Sentinels:
    """Unique strings planted in the data and the URLs: none may be found outside the zone databases."""

    def __init__(self, passwords: tuple[str, ...]) -> None:
        token = secrets.token_hex(6)
        self.value = f"ValSentinel{token}"
        self.tax_id = f"TaxSentinel{token}"[:20]
        self.client_ip = f"IpSentinel{token}"
        self.account = f"AcctSentinel{token}"  # the key of a mapping that declares it sensitive
        self.taken_email = f"{self.value}.taken@example.com"
        self.everything = {
            "value": self.value, "tax_id": self.tax_id, "client_ip": self.client_ip, "refused number": NEGATIVE_FEE,
            "sensitive key": self.account,
            **{f"password {n}": password for n, password in enumerate(passwords, 1)},
        }  # fmt: skip
        assert len(passwords) == 2, "each zone's URL must hold a password"

    def found_in(self, text: bytes) -> list[str]:
        """The names of the sentinels `text` contains."""
        return [name for name, sentinel in self.everything.items() if sentinel.encode() in text]


@pytest.mark.parametrize("persist", [False, True], ids=["results-not-persisted", "results-persisted"])
def test_no_value_or_password_reaches_prefect_a_log_or_an_answer(
    zones: ZonePair, prefect_server: PrefectServer, tmp_path: Path, persist: bool
) -> None:
    """With Prefect's result persistence off (its default) and on (PREFECT_RESULTS_PERSIST_BY_DEFAULT, which
    operators turn on), every file is scanned in every form Prefect may have stored a value in (`decoded_forms`)."""
    sentinels = Sentinels(zones.passwords)
    _seed(zones, sentinels)
    settings = _settings(zones) | {"PREFECT_RESULTS_PERSIST_BY_DEFAULT": str(persist).lower()}
    cli = Cli(tmp_path, settings, zones.passwords, api_url=prefect_server.api_url)
    printed: dict[str, str] = {}

    printed["python flows"] = _python_flows(settings, prefect_server, sentinels, tmp_path)
    printed |= _cli_commands(cli, sentinels, tmp_path)
    printed |= _http_api(cli, sentinels, tmp_path)
    kept_by_prefect = _prefect_api_answers(prefect_server)
    prefect_server.stop()

    hits = {where: found for where, text in printed.items() if (found := sentinels.found_in(text.encode()))}
    hits |= {where: found for where, body in kept_by_prefect.items() if (found := sentinels.found_in(body))}
    scanned = _files(Path(prefect_server.home), tmp_path / "prefect")
    hits |= {str(path): found for path in scanned if (found := _found_decoded(sentinels, path.read_bytes()))}
    assert not hits, f"sentinels found: {json.dumps(hits, indent=1)}"

    # Positive controls: the runs happened, Prefect kept them where the scan looked, and keys do reach it.
    database = b"".join(path.read_bytes() for path in scanned if path.name.startswith("prefect.db"))
    assert b"retry-sync-summary" in database and b"zonesync.push.pending" in database
    assert b"9002" in kept_by_prefect["artifacts"], "the quarantine sample names the refused key"
    assert b"account_no" in kept_by_prefect["events"] and b"***" in kept_by_prefect["events"]
    assert _tax_ids(zones) >= {sentinels.tax_id}, "the sentinel did reach the intranet database"
    quarantined = {row["mapping"]: row["record_key"] for row in rows(zones.intranet, "sync_error")}
    assert sentinels.account in quarantined["accounts"], "the intranet's own quarantine keeps the whole key"


def _seed(zones: ZonePair, sentinels: Sentinels) -> None:
    """A merchant the internet zone already has (its email is taken), two unsynced intranet merchants (one with a
    refused fee), and the day's payments in the internet zone (one with a refused amount, one whose reference the
    intranet already holds)."""
    stamp = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
    merchant = {"status": "A", "fee": "1.50", "updated_at": stamp.replace(tzinfo=None)}
    execute(
        zones.internet, sa.text("INSERT INTO merchant (merchant_id, name, status, fee, email, updated_at) "
                                "VALUES (9900, :name, :status, :fee, :email, :updated_at)"),
        merchant | {"name": sentinels.value, "email": sentinels.taken_email},
    )  # fmt: skip
    for merchant_id, fee in ((9010, "2.00"), (9011, NEGATIVE_FEE)):
        execute(
            zones.intranet, sa.text("INSERT INTO merchant (merchant_id, merchant_name, status, fee, email, tax_id, "
                                    "updated_at, is_sync) VALUES (:id, :name, 'A', :fee, :email, :tax, :stamp, false)"),
            {"id": merchant_id, "name": sentinels.value, "fee": fee, "email": f"{sentinels.value}.{merchant_id}@x.io",
             "tax": sentinels.tax_id, "stamp": stamp},
        )  # fmt: skip
    reference = f"Ref{sentinels.value}"[:40]
    payment = {"merchant_id": 9001, "account": "ACC-1", "currency": "IDR", "status": "S", "channel": "qris",
               "created_at": stamp.replace(tzinfo=None), "updated_at": stamp.replace(tzinfo=None)}  # fmt: skip
    columns = "payment_id, reference, merchant_id, account, amount, currency, status, channel, customer_name, " \
              "created_at, updated_at"  # fmt: skip
    values = ":payment_id, :reference, :merchant_id, :account, :amount, :currency, :status, :channel, " \
             ":customer_name, :created_at, :updated_at"  # fmt: skip
    execute(
        zones.intranet, sa.text(f"INSERT INTO payment ({columns}) VALUES ({values})"),
        payment | {"payment_id": 7100, "reference": reference, "amount": "5.00", "customer_name": sentinels.value},
    )  # fmt: skip
    day = ((7001, "10.00", "R-7001"), (7002, NEGATIVE_FEE, "R-7002"), (7003, "3.00", reference))
    for payment_id, amount, ref in day:
        execute(
            zones.internet,
            sa.text(f"INSERT INTO payment ({columns}, client_ip, is_sync) VALUES ({values}, :client_ip, false)"),
            payment | {"payment_id": payment_id, "reference": ref, "amount": amount, "customer_name": sentinels.value,
                       "client_ip": sentinels.client_ip},
        )  # fmt: skip


def _found_decoded(sentinels: Sentinels, data: bytes) -> list[str]:
    """The sentinels found in `data` in any of its decoded forms (base64, compressed, pickled)."""
    return sorted({name for form in decoded_forms(data) for name in sentinels.found_in(form)})


def _python_flows(settings: dict[str, str], server: PrefectServer, sentinels: Sentinels, tmp_path: Path) -> str:
    """Run the four flows from Python in a process of their own; check each took the path it was meant to."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZONESYNC_", "PREFECT_"))}
    env |= settings | {
        "PREFECT_API_URL": server.api_url, "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "SENTINEL_ACCOUNT": sentinels.account,
        "SENTINEL_VALUE": sentinels.value, "SENTINEL_TAX": sentinels.tax_id,
        "SENTINEL_TAKEN_EMAIL": sentinels.taken_email, "SENTINEL_BUSINESS_DATE": BUSINESS_DATE.isoformat(),
        "ZONESYNC_TWO_PHASE": "false",
    }  # fmt: skip
    done = run_owned(
        [sys.executable, "-m", "tests.integration.sentinel_flows"], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed[-5000:]
    outcomes = json.loads(printed.split("OUTCOMES ", 1)[1].splitlines()[0])
    assert outcomes == {
        "push": "success", "push-refused-by-model": "pending", "push-refused-by-target": "pending",
        "push-refused-by-source": "error", "account push": "success", "account push refused-by-model": "pending",
        "retry": {"merchants": "partial", "accounts": "partial"}, "update": "success",
        "update-refused-kept-inside": "error", "update-refused-by-model": "error", "update-refused-by-target": "error",
        "account update": "success",
        "account update not found": "error", "end-day": "PARTIAL",
    }, printed[-5000:]  # fmt: skip
    return printed


def _settings(zones: ZonePair) -> dict[str, str]:
    """The zones, the demo mappings and the sensitive-key mapping (importable from this repository)."""
    modules = "zonesync.schemas.examples,tests.integration.sentinel_mappings"
    return zone_settings(zones, modules) | {"PYTHONPATH": str(REPO)}


def _cli_commands(cli: Cli, sentinels: Sentinels, tmp_path: Path) -> dict[str, str]:
    """The CLI's flow commands, each through a refusal as well."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    good = {"merchant_id": 9020, "merchant_name": sentinels.value, "status": "A", "fee": "1.00",
            "email": f"{sentinels.value}.9020@x.io", "tax_id": sentinels.tax_id,
            "updated_at": "2026-03-04T05:06:07+00:00"}  # fmt: skip
    (inputs / "good.json").write_text(json.dumps([good]))
    account = {"account_no": f"{sentinels.account}c", "holder": sentinels.value, "balance": NEGATIVE_FEE}
    (inputs / "account.json").write_text(json.dumps([account]))
    (inputs / "refused.json").write_text(json.dumps([good | {"merchant_id": 9021, "fee": sentinels.value}]))
    runs = {
        "cli push": (cli("push", "merchants", "--file", str(inputs / "good.json")), 0),
        "cli push refused": (cli("push", "merchants", "--file", str(inputs / "refused.json")), 1),
        "cli push account": (cli("push", "accounts", "--file", str(inputs / "account.json")), 3),
        "cli update": (cli("update", "merchants", "--key", '{"merchant_id": 9020}', "--changes",
                           json.dumps({"merchant_name": f"{sentinels.value} 2"})), 0),
        "cli update refused": (cli("update", "merchants", "--key", '{"merchant_id": 9020}', "--changes",
                                   json.dumps({"fee": NEGATIVE_FEE})), 1),
        "cli retry": (cli("retry"), None),
        "cli end-day": (cli("end-day", "--date", BUSINESS_DATE.isoformat()), 3),
        "cli status": (cli("status"), 0),
    }  # fmt: skip
    for name, (run, code) in runs.items():
        assert code is None or run.code == code, f"{name}: {run}"
    return {name: f"{run.stdout}\n{run.stderr}" for name, (run, _) in runs.items()}


def _http_api(cli: Cli, sentinels: Sentinels, tmp_path: Path) -> dict[str, str]:
    """`zonesync api` in its own process (emitting events to the Prefect server): accepted, pending and refused
    writes; every answer's body is kept for the scan, and so is what the API printed."""
    key, line = new_client("portal", dict.fromkeys(("merchants", "accounts"), frozenset(SCOPES)))
    clients = tmp_path / "inputs" / "clients.toml"
    clients.write_text(line + "\n", encoding="utf-8")
    port, log = free_port(), tmp_path / "api.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZONESYNC_", "PREFECT_"))} | cli.settings | {
        "ZONESYNC_API_CLIENTS_FILE": str(clients), "PREFECT_API_URL": str(cli.api_url),
        "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }  # fmt: skip
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "zonesync.flows.cli"]
    record = {
        "merchant_id": 9030,
        "merchant_name": sentinels.value,
        "status": "A",
        "fee": "1.00",
        "email": f"{sentinels.value}.9030@x.io",
        "tax_id": sentinels.tax_id,
        "updated_at": "2026-03-04T05:06:07Z",
    }
    account = {"account_no": f"{sentinels.account}d", "holder": sentinels.value, "balance": NEGATIVE_FEE}
    writes = [
        ("post", "merchants", record, 201),
        ("post", "merchants", record | {"merchant_id": 9031, "fee": sentinels.value}, 422),
        ("post", "merchants", record | {"merchant_id": 9032, "fee": NEGATIVE_FEE, "email": None}, 202),
        ("post", "merchants", record | {"merchant_id": 9033, "email": sentinels.taken_email}, 202),
        ("patch", "merchants", {"key": {"merchant_id": 9030}, "changes": {"merchant_name": sentinels.value}}, 200),
        ("patch", "merchants", {"key": {"merchant_id": 9030}, "changes": {"fee": NEGATIVE_FEE}}, 422),
        ("patch", "merchants", {"key": {"merchant_id": 9030}, "changes": {"email": sentinels.taken_email}}, 422),
        ("post", "accounts", account, 202),
    ]  # fmt: skip
    answers: dict[str, str] = {}
    with log.open("w") as output:
        process = popen_owned([*command, "api", "--port", str(port)], cwd=tmp_path, env=env, stdout=output,
                              stderr=subprocess.STDOUT)  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until(lambda: _answers(f"{base}/health"), 60, "zonesync api")
            with httpx.Client(base_url=base, headers={"authorization": f"Bearer {key}"}, timeout=60) as http:
                for n, (method, mapping, body, status) in enumerate(writes):
                    answer = http.request(method, f"/mappings/{mapping}/records", json=body)
                    shown = json.dumps(without_keys(answer.json()))  # a caller is given its own keys back
                    answers[f"http {method} {mapping} {n}: {answer.status_code}"] = shown
                    assert answer.status_code == status, f"{method} {body}: {answer.status_code} {answer.text}"
        finally:
            process.terminate()
            process.wait(timeout=30)
    return answers | {"http api output": log.read_text()}


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _prefect_api_answers(server: PrefectServer) -> dict[str, bytes]:
    """What Prefect's API gives back about these runs: logs, artifacts, flow runs, task runs and events (once
    the server has written the API's push events: it persists events in batches)."""
    with httpx.Client(base_url=server.api_url, timeout=30) as prefect:
        answers = {name: prefect.post(f"/{name}/filter", json={}).content for name in QUERIES}

        def events() -> bytes:
            body = {"filter": {"occurred": {"since": "2000-01-01T00:00:00Z"}}, "limit": 50}
            pages, answer = [], prefect.post("/events/filter", json=body).json()
            pages.append(json.dumps(answer))
            while answer.get("next_page"):
                answer = prefect.get(answer["next_page"]).json()
                pages.append(json.dumps(answer))
            return "\n".join(pages).encode()

        wait_until(lambda: b"zonesync.push.pending" in events(), 60, "the API's push events in Prefect")
        answers["events"] = events()
    return answers


def _files(*roots: Path) -> list[Path]:
    return [path for root in roots for path in root.rglob("*") if path.is_file()]


def _tax_ids(zones: ZonePair) -> set[str]:
    with zones.intranet.connect() as conn:
        return {row[0] for row in conn.execute(sa.text("SELECT tax_id FROM merchant"))}
