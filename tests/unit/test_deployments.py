"""deployments/: serve.py serves the deployments prefect.yaml declares, and every part of them is valid.

Offline: the schedules parse, the entrypoints load, the parameters validate against their flows, the scheduled
deployments cannot overlap, and a bad end-day time or time zone is refused with one clear line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import yaml
from prefect import Flow
from prefect.cli.deploy._models import PrefectYamlModel
from prefect.client.schemas.schedules import CronSchedule
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.templating import apply_values

from zonesync.deployments import serve
from zonesync.deployments.schedules import (
    PREFECT_FILE,
    PROJECT_DIR,
    WORK_POOL,
    DeploymentSpec,
    deploy_settings,
    deployment_specs,
)
from zonesync.flows.outcomes import STATE_NAMES
from zonesync.schemas.errors import ConfigError
from zonesync.tasks.setup.automations import declared, with_notification

SCHEDULED = {"retry-sync", "end-day-check", "reconcile-zones"}
EVERY_FIVE_MINUTES = "*/5 * * * *"
ON_DEMAND = {"realtime-push", "update-with-rollback", "delete-with-rollback", "retry-sync-slice"}
NO_OVERLAP = {"limit": 1, "collision_strategy": "CANCEL_NEW"}
# What a caller gives an on-demand run (the deployments cannot default these).
RUN_PARAMETERS: dict[str, dict[str, Any]] = {
    "realtime-push": {"mapping": "merchants", "records": [{"merchant_id": 1}]},
    "update-with-rollback": {"mapping": "merchants", "key": {"merchant_id": 1}, "changes": {"status": "I"}},
    "delete-with-rollback": {"mapping": "merchants", "key": {"merchant_id": 1}},
    "retry-sync-slice": {"mapping": "merchants", "slice_index": 0, "slices": 2, "batch_size": 100, "job_id": 1},
}


def prefect_yaml() -> dict[str, Any]:
    """prefect.yaml with its build step's outputs applied, as `prefect deploy` applies them."""
    raw = yaml.safe_load(PREFECT_FILE.read_text())
    [build_step] = raw["build"]
    [(function, inputs)] = build_step.items()
    assert function == "zonesync.deployments.schedules.deploy_settings"
    resolved: dict[str, Any] = apply_values(raw, {inputs["id"]: deploy_settings()})
    return resolved


def yaml_deployments() -> dict[str, dict[str, Any]]:
    """prefect.yaml's deployments by name (templates resolved)."""
    return {deployment["name"]: deployment for deployment in prefect_yaml()["deployments"]}


def specs() -> dict[str, DeploymentSpec]:
    """deployment_specs() by name."""
    return {spec.name: spec for spec in deployment_specs()}


def yaml_schedule(deployment: dict[str, Any]) -> CronSchedule | None:
    """The one cron schedule of a prefect.yaml deployment, or None."""
    schedules = deployment["schedules"]
    assert len(schedules) <= 1, deployment["name"]
    return CronSchedule(cron=schedules[0]["cron"], timezone=schedules[0]["timezone"]) if schedules else None


def load(entrypoint: str) -> Flow[..., Any]:
    """The flow of an entrypoint, loaded the way a worker loads it (from the project directory)."""
    path, _, function = entrypoint.partition(":")
    return load_flow_from_entrypoint(f"{PROJECT_DIR / path}:{function}")


def test_prefect_yaml_is_a_valid_prefect_file() -> None:
    """Prefect's own model of prefect.yaml accepts the file; one deployment per flow, all on the process pool."""
    model = PrefectYamlModel.model_validate(prefect_yaml())
    assert sorted(d.name or "" for d in model.deployments) == sorted(SCHEDULED | ON_DEMAND)
    assert {d.work_pool.name if d.work_pool else None for d in model.deployments} == {WORK_POOL}
    [pull] = prefect_yaml()["pull"]
    assert pull == {"prefect.deployments.steps.set_working_directory": {"directory": str(PROJECT_DIR)}}


def test_every_schedule_parses() -> None:
    """Every schedule is a valid cron string with an explicit time zone; only the scheduled flows have one."""
    for name, deployment in yaml_deployments().items():
        for schedule in deployment["schedules"]:
            assert schedule.get("timezone"), f"{name}: a schedule without an explicit time zone"
        parsed = yaml_schedule(deployment)
        assert (parsed is not None) == (name in SCHEDULED), name
    deployments = yaml_deployments()
    assert yaml_schedule(deployments["retry-sync"]) == CronSchedule(cron=EVERY_FIVE_MINUTES, timezone="UTC")
    assert yaml_schedule(deployments["end-day-check"]) == CronSchedule(cron="30 0 * * *", timezone="UTC")


@pytest.mark.parametrize("name", sorted(SCHEDULED | ON_DEMAND))
def test_entrypoint_loads_and_parameters_validate(name: str) -> None:
    """Each entrypoint loads a flow named like its deployment; the deployment's parameters (plus what a caller
    gives an on-demand run) validate against the flow's signature."""
    deployment = yaml_deployments()[name]
    flow = load(deployment["entrypoint"])
    assert flow.name == name
    parameters = deployment["parameters"]
    assert set(parameters) <= set(flow.parameters.properties), "a parameter the flow does not take"
    flow.validate_parameters({**RUN_PARAMETERS.get(name, {}), **parameters})
    if name in SCHEDULED:  # a scheduled run gets no caller: the deployment must be complete on its own
        flow.validate_parameters(parameters)


@pytest.mark.parametrize("name", sorted(SCHEDULED | ON_DEMAND))
def test_the_same_flow_loads_by_module_path(name: str) -> None:
    """`flows/retry_sync.py:retry_sync` from the project directory, or `zonesync.flows.retry_sync:retry_sync`."""
    path, _, function = yaml_deployments()[name]["entrypoint"].partition(":")
    module = "zonesync." + path.removesuffix(".py").replace("/", ".")

    flow = load_flow_from_entrypoint(f"{module}:{function}")

    assert flow.name == name == load(f"{path}:{function}").name


def test_scheduled_deployments_cannot_overlap() -> None:
    """The scheduled deployments cancel a run that would overlap a running one; the on-demand ones do not."""
    for name, deployment in yaml_deployments().items():
        expected = NO_OVERLAP if name in SCHEDULED else None
        assert deployment.get("concurrency_limit") == expected, name
    for name, spec in specs().items():
        limit = spec.concurrency_limit
        if name in ON_DEMAND:
            assert limit is None
        else:
            assert limit is not None
            assert (limit.limit, limit.collision_strategy.value) == (1, "CANCEL_NEW")


def test_prefect_yaml_agrees_with_the_specs() -> None:
    """deployment_specs() (what serve.py serves) is exactly what prefect.yaml declares, templates filled."""
    deployments, declared = yaml_deployments(), specs()
    assert set(deployments) == set(declared)
    for name, spec in declared.items():
        deployment = deployments[name]
        assert deployment["entrypoint"] == spec.entrypoint, name
        assert deployment["description"] == spec.description, name
        assert tuple(deployment["tags"]) == spec.tags, name
        assert deployment["parameters"] == spec.parameters, name
        assert yaml_schedule(deployment) == spec.schedule, name


def test_served_deployments_match_prefect_yaml() -> None:
    """serve.py serves the deployments of prefect.yaml: names, entrypoints, schedules, limits, parameters."""
    deployments = yaml_deployments()
    served = {deployment.name: deployment for deployment in serve.build_deployments()}
    assert set(served) == set(deployments)
    for name, deployment in served.items():
        declared = deployments[name]
        assert deployment.entrypoint == declared["entrypoint"], name
        assert deployment.flow_name == name
        assert [s.schedule for s in deployment.schedules or []] == [
            s for s in [yaml_schedule(declared)] if s is not None
        ], name
        limit = declared.get("concurrency_limit") or {}
        options = deployment.concurrency_options
        assert deployment.concurrency_limit == limit.get("limit"), name
        assert (options.collision_strategy.value if options else None) == limit.get("collision_strategy"), name
        assert deployment.parameters == declared["parameters"], name
        assert deployment.description == declared["description"], name
        assert deployment.tags == declared["tags"], name


def test_end_day_time_and_time_zone_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """ZONESYNC_END_DAY_CRON and ZONESYNC_BUSINESS_TIMEZONE move the end-day schedule of both serve.py and
    prefect.yaml; the retry schedule stays every 5 minutes."""
    monkeypatch.setenv("ZONESYNC_END_DAY_CRON", "15 1 * * *")
    monkeypatch.setenv("ZONESYNC_BUSINESS_TIMEZONE", "Asia/Jakarta")
    expected = CronSchedule(cron="15 1 * * *", timezone="Asia/Jakarta")
    assert specs()["end-day-check"].schedule == expected
    assert yaml_schedule(yaml_deployments()["end-day-check"]) == expected
    assert specs()["retry-sync"].schedule == CronSchedule(cron=EVERY_FIVE_MINUTES, timezone="UTC")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ZONESYNC_END_DAY_CRON", "30 25 * * *", 'ZONESYNC_END_DAY_CRON: Invalid cron string: "30 25 * * *"'),
        ("ZONESYNC_END_DAY_CRON", "half past midnight", "ZONESYNC_END_DAY_CRON: Invalid cron string"),
        ("ZONESYNC_BUSINESS_TIMEZONE", "Mars/Olympus", "ZONESYNC_BUSINESS_TIMEZONE: unknown time zone 'Mars/Olympus'"),
    ],
)
def test_bad_end_day_setting_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str, message: str
) -> None:
    """A bad end-day cron or time zone stops serve.py and the prefect.yaml build step with one line naming it."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as refused:
        deploy_settings()
    assert str(refused.value).startswith(message)
    with pytest.raises(SystemExit) as exited:
        serve.main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1, err


AUTOMATIONS = Path(__file__).resolve().parents[2] / "deployments" / "automations.yaml"


def _automations() -> list[AutomationCore]:
    return [AutomationCore.model_validate(one) for one in yaml.safe_load(AUTOMATIONS.read_text())["automations"]]


def test_the_shipped_automations_are_what_prefect_automation_create_accepts() -> None:
    names = [automation.name for automation in _automations()]

    assert names == ["zonesync: rows quarantined", "zonesync: end-day check failed", "zonesync: zones differ",
                     "zonesync: writers' contract broken", "zonesync: lease taken over",
                     "zonesync: schema change stopped a mapping", "zonesync: failed keys flood the API",
                     "zonesync: crash zombie flow runs"]  # fmt: skip


def test_the_zombie_automation_waits_for_every_final_state_zonesync_names() -> None:
    """A run that ends Partial emits prefect.flow-run.Partial, not ...Completed: missing it, the automation would
    mark a finished run Crashed 90 s later."""
    [zombies] = [automation for automation in _automations() if "zombie" in automation.name]
    assert isinstance(zombies.trigger, EventTrigger)

    expected = {f"prefect.flow-run.{name}" for name in STATE_NAMES | {"Completed", "Cancelled", "Crashed"}}
    assert expected <= set(zombies.trigger.expect)


def test_installing_gives_each_alert_the_operator_s_notification_and_keeps_the_zombie_action() -> None:
    block = uuid4()
    installed = [with_notification(spec, block) for spec in declared()]

    notifying = [a for a in installed if [action.type for action in a.actions] == ["send-notification"]]
    assert [a.name for a in notifying] == [a.name for a in _automations() if "zombie" not in a.name]
    for automation in notifying:
        [action] = automation.actions
        assert isinstance(action, SendNotification) and action.block_document_id == block
        assert action.subject == "{{ automation.name }}" and "{{ automation.description }}" in action.body
    [zombies] = [a for a in installed if "zombie" in a.name]
    assert [action.type for action in zombies.actions] == ["change-flow-run-state"] and zombies.enabled


@pytest.mark.parametrize("name", sorted(SCHEDULED | ON_DEMAND))
def test_the_run_form_explains_every_parameter(name: str) -> None:
    """Prefect's UI shows a flow's docstring Args as the run form's help: a custom run of `realtime-push` without
    them left the user guessing (`'mapping' is a required property`)."""
    flow = load(yaml_deployments()[name]["entrypoint"])
    described = {key: prop.get("description") for key, prop in flow.parameters.properties.items()}
    assert all(described.values()), described
