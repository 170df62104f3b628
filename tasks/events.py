"""Prefect events for pushes, so automations can react (a push creates no flow run: it must stay fast)."""

from __future__ import annotations

from prefect.events import emit_event
from prefect.settings import PREFECT_API_URL

from zonesync.schemas.registry import get_mapping
from zonesync.tasks.push import PushResult

_KEYS_IN_EVENT = 100


def events_enabled() -> bool:
    """Only with a Prefect API configured: otherwise the first event would start a temporary server (~10 s)."""
    return bool(PREFECT_API_URL.value())


def emit_push_event(result: PushResult) -> None:
    """`zonesync.push.success` / `zonesync.push.pending` on resource `zonesync.mapping.<name>` (queued, ~0.1 ms)."""
    if result.status == "error" or not events_enabled():
        return
    mapping = get_mapping(result.mapping)
    emit_event(
        event=f"zonesync.push.{result.status}",
        resource={"prefect.resource.id": f"zonesync.mapping.{result.mapping}", "prefect.resource.name": result.mapping},
        payload={
            "keys": [mapping.shown_key(key) for key in result.keys[:_KEYS_IN_EVENT]],
            "stage": result.stage,
            "reason": result.reason,
        },
    )
