"""Runtime settings, read from ZONESYNC_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from zonesync.schemas.errors import ConfigError

Zone = Literal["intranet", "internet"]
ZONES: tuple[Zone, ...] = ("intranet", "internet")
MAX_BATCH_SIZE = 5_000_000  # rows per batch: a frame of that many rows is already several GB
BatchSize = Annotated[int, Field(ge=1, le=MAX_BATCH_SIZE)]
Workers = Annotated[int, Field(ge=1, le=64)]
# Where a run's slices of a partitioned mapping run (docs/scaling.md): tasks of its own task runner (threads), child
# flow runs on its work pool, or tasks on a Dask cluster (the `zonesync[dask]` extra).
FanOut = Literal["tasks", "work-pool", "dask"]


class Settings(BaseSettings):
    """Where the two zones live, which mappings are registered, and how big a batch is."""

    model_config = SettingsConfigDict(env_prefix="ZONESYNC_", extra="ignore")

    intranet_url: SecretStr = SecretStr("sqlite:///.zonesync/intranet.db")
    internet_url: SecretStr = SecretStr("sqlite:///.zonesync/internet.db")
    mapping_modules: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["zonesync.schemas.examples"])
    # 20,000: as fast as 50,000 on the 1M-row benchmark, with a worker peak of ~300 MB instead of ~345 MB.
    batch_size: BatchSize = 20_000

    @field_validator("mapping_modules", mode="before")
    @classmethod
    def _split_modules(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    # The time zone in which a business date starts and ends (end-day check, reconciliation).
    business_timezone: str = "UTC"

    @field_validator("business_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Asia/Jakarta)") from None
        return value

    # When the deployed end-day check runs, in business_timezone (validated as a cron string when deploying).
    end_day_cron: str = "30 0 * * *"

    # Two-phase commit for the update with rollback where both databases offer it; off: the intent record only.
    two_phase: bool = True

    # Bounded waits (seconds), applied to every connection of every backend and to connectorx reads
    # (tasks/zones/engines.py). A 20k-row batch statement takes a few seconds and a 1M-row reconciliation query
    # about 10 s, so 300 s only ends statements that are stuck; a lock held for 30 s is a conflict, not a queue.
    connect_timeout: float = Field(default=10, gt=0, le=3600)
    statement_timeout: float = Field(default=300, gt=0, le=86_400)
    lock_timeout: float = Field(default=30, gt=0, le=86_400)

    # Scale-out (docs/scaling.md). A mapping's (or partition's) lease is renewed every third of this by a keeper
    # thread, so it only bounds how long a run that died elsewhere holds its part: the takeover time.
    lease_seconds: float = Field(default=120, ge=2, le=3600)
    # Workers one run gives each partitioned mapping (its slices), and where they run: threads of the run (each with
    # about four connections per zone), child flow runs of the slice deployment, started on its work pool (a child
    # that no worker starts within slice_start_seconds is cancelled, and its slice counted as failed), or tasks on
    # the Dask scheduler at dask_address (none: a local cluster of one process per slice, for this run).
    workers: Workers = 1
    fan_out: FanOut = "tasks"
    slice_deployment: str = "retry-sync-slice/retry-sync-slice"
    slice_start_seconds: float = Field(default=600, gt=0, le=86_400)
    dask_address: str | None = None
    # How long a carrier waits for its share of the zones' connection budget (`zonesync budget`) before it fails.
    budget_wait_seconds: float = Field(default=600, gt=0, le=86_400)

    # The HTTP entry point (`zonesync api`). Its clients: a TOML file of `clients.<name> = {...}` lines
    # (schemas/api_clients.py; `zonesync api-key new` prints one). Without it the API refuses to start, unless
    # api_insecure_no_auth (`zonesync api --insecure-no-auth`, for local development) says otherwise.
    api_clients_file: Path | None = None
    api_insecure_no_auth: bool = False
    # Refused before they are read (413): a body longer than this, a request with more records than this.
    api_max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=1024**3)
    api_max_records: int = Field(default=5_000, ge=1, le=1_000_000)
    # How long the answer to a client's Idempotency-Key is kept (tasks/bookkeeping/idempotency.py).
    api_idempotency_hours: float = Field(default=24.0, gt=0, le=24 * 90)
    # Failed authentications per client address per minute before it is answered 429 (deployments/auth_limit.py).
    api_max_failed_auth: int = Field(default=30, ge=1, le=1_000_000)
    # Slow clients are cut off (deployments/server.py): a request's head and body must arrive within these.
    api_head_seconds: float = Field(default=10.0, gt=0, le=3600)
    api_body_seconds: float = Field(default=30.0, gt=0, le=3600)
    api_max_connections: int = Field(default=1000, ge=1, le=1_000_000)

    def url_for(self, zone: Zone) -> SecretStr:
        """The (secret) database URL of a zone."""
        return self.intranet_url if zone == "intranet" else self.internet_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests call `get_settings.cache_clear()` after changing the environment.

    A bad value is a ConfigError naming its environment variable (one line on the command line)."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(
            "; ".join(
                f"ZONESYNC_{'_'.join(map(str, error['loc'])).upper()}: {error['msg'].removeprefix('Value error, ')}"
                for error in exc.errors()
            )
        ) from None
