"""The four deployments, defined once: serve.py builds them from here and the tests hold prefect.yaml to them."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import Flow
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.client.schemas.schedules import CronSchedule
from pydantic import ValidationError

from zonesync.schemas.settings import get_settings
from zonesync.tasks.errors import ConfigError

PROJECT_DIR = Path(__file__).resolve().parent.parent
PREFECT_FILE = PROJECT_DIR / "deployments" / "prefect.yaml"
WORK_POOL = "zonesync-pool"
RETRY_CRON = "*/5 * * * *"
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
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
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
    """The deployment of each of the four flows (DESIGN §5), with the end-day time read from the environment."""
    return [
        DeploymentSpec(
            name="retry-sync",
            entrypoint="flows/retry_sync.py:retry_sync",
            description="Every 5 minutes: push unsynced intranet rows to the internet zone (DESIGN §4.2).",
            tags=(*TAGS, "scheduled"),
            parameters={"mappings": None, "batch_size": None},
            schedule=CronSchedule(cron=RETRY_CRON, timezone="UTC"),
        ),
        DeploymentSpec(
            name="end-day-check",
            entrypoint="flows/end_day_check.py:end_day_check",
            description="Daily after midnight: carry the business day's internet rows home and reconcile (§4.4).",
            tags=(*TAGS, "scheduled"),
            parameters={"business_date": None, "mappings": None},
            schedule=end_day_schedule(),
        ),
        DeploymentSpec(
            name="realtime-push",
            entrypoint="flows/realtime_push.py:realtime_push",
            description="On demand: insert records in the source zone and push them to the target now (§4.1).",
            tags=(*TAGS, "on-demand"),
        ),
        DeploymentSpec(
            name="update-with-rollback",
            entrypoint="flows/update_with_rollback.py:update_with_rollback",
            description="On demand: update one record in both zones, or in neither (§4.3).",
            tags=(*TAGS, "on-demand"),
        ),
    ]


def deploy_settings() -> dict[str, str]:
    """A prefect.yaml build step: the project directory and the end-day schedule, for `prefect deploy`."""
    schedule = end_day_schedule()
    return {
        "project_dir": str(PROJECT_DIR),
        "end_day_cron": schedule.cron,
        "business_timezone": str(schedule.timezone),
    }
