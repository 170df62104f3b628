"""The four deployments, defined once in prefect.yaml: `prefect deploy` reads it for work pools, and
`deployment_specs` reads it for serve.py (with the same end-day schedule, from the environment)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.client.schemas.schedules import CronSchedule
from prefect.utilities.templating import apply_values
from pydantic import ValidationError

from zonesync.schemas.errors import ConfigError
from zonesync.schemas.settings import get_settings

PROJECT_DIR = Path(__file__).resolve().parent.parent
PREFECT_FILE = PROJECT_DIR / "deployments" / "prefect.yaml"
WORK_POOL = "zonesync-pool"
TAGS = ("zonesync",)


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment of one flow: what prefect.yaml declares and serve.py serves."""

    name: str
    entrypoint: str
    description: str
    tags: tuple[str, ...] = TAGS
    parameters: dict[str, Any] = field(default_factory=dict)
    schedule: CronSchedule | None = None

    @property
    def concurrency_limit(self) -> ConcurrencyLimitConfig | None:
        """Scheduled deployments never overlap: a run that would is cancelled, not queued."""
        if self.schedule is None:
            return None
        return ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)

    def load_flow(self) -> Flow[..., Any]:
        """The flow object of the entrypoint, imported as its package module (not loaded twice by path)."""
        path, _, function = self.entrypoint.partition(":")
        module = importlib.import_module("zonesync." + path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, function)
        if not isinstance(flow, Flow):
            raise ConfigError(f"entrypoint {self.entrypoint} is not a Prefect flow")
        return flow


def cron_schedule(cron: str, timezone: str, *, cron_setting: str, timezone_setting: str) -> CronSchedule:
    """A validated cron schedule; a bad cron string or time zone is a one-line ConfigError naming its setting."""
    try:
        return CronSchedule(cron=cron, timezone=timezone)
    except ValidationError as exc:
        error = exc.errors()[0]
        setting = timezone_setting if error["loc"] == ("timezone",) else cron_setting
        raise ConfigError(f"{setting}: {error['msg'].removeprefix('Value error, ')}") from None


def end_day_schedule() -> CronSchedule:
    """ZONESYNC_END_DAY_CRON (default 00:30) in ZONESYNC_BUSINESS_TIMEZONE (default UTC)."""
    settings = get_settings()  # a bad time zone is already a ConfigError naming its setting
    return cron_schedule(
        settings.end_day_cron,
        settings.business_timezone,
        cron_setting="ZONESYNC_END_DAY_CRON",
        timezone_setting="ZONESYNC_BUSINESS_TIMEZONE",
    )


def deployment_specs() -> list[DeploymentSpec]:
    """The deployments prefect.yaml declares, its templates filled as its build step fills them."""
    document = yaml.safe_load(PREFECT_FILE.read_text(encoding="utf-8"))
    [build_step] = document["build"]
    [step_id] = [inputs["id"] for inputs in build_step.values()]
    resolved = apply_values(document["deployments"], {step_id: deploy_settings()})
    return [_spec(deployment) for deployment in resolved]


def _spec(deployment: dict[str, Any]) -> DeploymentSpec:
    schedules = deployment.get("schedules") or []
    if len(schedules) > 1:
        raise ConfigError(f"deployment {deployment['name']}: one schedule at most")
    schedule = CronSchedule(cron=schedules[0]["cron"], timezone=schedules[0]["timezone"]) if schedules else None
    return DeploymentSpec(
        name=deployment["name"],
        entrypoint=deployment["entrypoint"],
        description=deployment["description"],
        tags=tuple(deployment.get("tags") or TAGS),
        parameters=dict(deployment.get("parameters") or {}),
        schedule=schedule,
    )


def deploy_settings() -> dict[str, str]:
    """A prefect.yaml build step: the project directory and the end-day schedule, for `prefect deploy`."""
    schedule = end_day_schedule()
    return {
        "project_dir": str(PROJECT_DIR),
        "end_day_cron": schedule.cron,
        "business_timezone": str(schedule.timezone),
    }
