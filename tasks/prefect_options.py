"""What zonesync asks of Prefect for each flow and task it declares, on purpose rather than by Prefect's defaults.

- **Results stay in the process.** A flow's result (PushResult, UpdateResult, SyncReport, EndDayReport) and a
  task's (a mapping's counts and samples) hold record keys, some of which a mapping declares sensitive, and the
  caller's own messages. They are returned to the Python caller and never written to Prefect's result storage,
  whatever PREFECT_RESULTS_PERSIST_BY_DEFAULT says (it would keep each as a base64 pickle). A run's lasting record
  is zonesync's own: `batch_job`, `sync_error`, and the artifacts and events, which mask sensitive keys.
- **No cache.** A task's inputs are a mapping's name and settings, not the rows it carries: a cached result would
  skip rows that arrived since. Flow retries (Prefect's "retry" in the UI) run the tasks again; they are idempotent.
- Tasks that touch a database retry transient failures only (`task_retries`).
"""

from __future__ import annotations

from typing import Any

from prefect.cache_policies import NO_CACHE

from zonesync.tasks.zones.retrying import task_retries

FLOW_OPTIONS: dict[str, Any] = {"persist_result": False}


def task_options() -> dict[str, Any]:
    """The options of every Prefect task zonesync declares (see the module docstring)."""
    return {"persist_result": False, "cache_policy": NO_CACHE, **task_retries()}
