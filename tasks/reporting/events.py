"""Prefect events for what an operator must act on, so automations can react (deployments/automations.yaml):

- `zonesync.push.success` / `zonesync.push.pending` (a push creates no flow run: it must stay fast);
- `zonesync.rows.quarantined`: a run refused rows of a mapping (how many; `zonesync status` lists them);
- `zonesync.reconciliation.differs`: the zones disagree for a business date;
- `zonesync.contract.broken`: rows flagged synced differ in the other zone (changed without setting the flag
  back to false: the retry never sends them);
- `zonesync.end-day.failed`: the end-day check could not do its work;
- `zonesync.lease.taken-over`: a run took a lease whose holder had let it expire or had died (a slow or stuck
  run, a killed worker: the holder stops when it next renews);
- `zonesync.schema.broken`: a mapped table changed in a way the mapping cannot run with (it stopped);
  `zonesync.schema.changed`: a compatible change, accepted (tasks/schema/contract.py).

Payloads carry counts, keys and zonesync's own words, never a record value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from zonesync.schemas.registry import get_mapping
from zonesync.tasks.reconcile.findings import ContractCheck, Reconciliation
from zonesync.tasks.results import MappingSyncResult, PushResult
from zonesync.tasks.schema.shape import Change

_KEYS_IN_EVENT = 100


def events_enabled() -> bool:
    """Only with a Prefect API configured: otherwise the first event would start a temporary server (~10 s)."""
    from prefect.settings import PREFECT_API_URL  # Prefect loads when an event may be sent (see `_emit`)

    return bool(PREFECT_API_URL.value())


def _emit(**event: Any) -> None:
    """Queue an event. Prefect is imported here, not with this module: a command that sends none (`zonesync status`,
    which reads the schema contract) does not pay a second for it."""
    from prefect.events import emit_event

    emit_event(**event)


def emit_push_event(result: PushResult) -> None:
    """`zonesync.push.success` / `zonesync.push.pending` on resource `zonesync.mapping.<name>` (queued, ~0.1 ms)."""
    if result.status == "error" or not events_enabled():
        return
    mapping = get_mapping(result.mapping)
    _emit(
        event=f"zonesync.push.{result.status}",
        resource={"prefect.resource.id": f"zonesync.mapping.{result.mapping}", "prefect.resource.name": result.mapping},
        payload={
            "keys": [mapping.shown_key(key) for key in result.keys[:_KEYS_IN_EVENT]],
            "stage": result.stage,
            "reason": result.reason,
        },
    )


def _on_mapping(name: str) -> dict[str, str]:
    return {"prefect.resource.id": f"zonesync.mapping.{name}", "prefect.resource.name": name}


def emit_refusals(result: MappingSyncResult, job_name: str, job_id: int | None) -> None:
    """`zonesync.rows.quarantined` on the mapping when this run refused some of its rows, `zonesync.deletes.refused`
    when it refused deletes (the target row newer, or in a state never deleted)."""
    if not events_enabled():
        return
    for event, count in (("zonesync.rows.quarantined", result.quarantined),
                         ("zonesync.deletes.refused", result.deletes_refused)):  # fmt: skip
        if count:
            _emit(event=event, resource=_on_mapping(result.mapping),
                  payload={"count": count, "job": job_name, "batch_job_id": job_id})  # fmt: skip


def emit_zones_differ(found: Reconciliation) -> None:
    """`zonesync.reconciliation.differs` on the mapping, when its zones disagree."""
    if not found.ok and events_enabled():
        day = found.business_date.isoformat() if found.business_date else None
        _emit(
            event="zonesync.reconciliation.differs", resource=_on_mapping(found.mapping),
            payload={"business_date": day, "found": found.headline()},
        )  # fmt: skip


def emit_contract_broken(found: ContractCheck) -> None:
    """`zonesync.contract.broken` on `zonesync.mapping.<name>`: the rows, flagged synced, that the target holds
    otherwise or not at all (their keys, sensitive values hidden)."""
    if found.ok or not events_enabled():
        return
    mapping = get_mapping(found.mapping)
    keys = [found.format_key(key) for key in found.broken_keys[:_KEYS_IN_EVENT]]
    _emit(
        event="zonesync.contract.broken",
        resource=_on_mapping(found.mapping),
        payload={"broken": len(found.broken_keys), "unchecked": found.unchecked, "keys": keys,
                 "source_table": mapping.source_table, "flag_column": mapping.flag_column},
    )  # fmt: skip


def emit_end_day_failed(business_date: str, job_id: int | None, message: str) -> None:
    """`zonesync.end-day.failed` on the end-day job."""
    if events_enabled():
        _emit(
            event="zonesync.end-day.failed",
            resource={"prefect.resource.id": "zonesync.job.end-day-check", "prefect.resource.name": "end-day-check"},
            payload={"business_date": business_date, "batch_job_id": job_id, "message": message},
        )


def emit_lease_taken_over(lease: str, previous_holder: str, holder: str, why: str) -> None:
    """`zonesync.lease.taken-over` on the lease, when a run took it from a holder that let it expire or died."""
    if events_enabled():
        _emit(
            event="zonesync.lease.taken-over",
            resource={"prefect.resource.id": f"zonesync.lease.{lease}", "prefect.resource.name": lease},
            payload={"previous_holder": previous_holder, "holder": holder, "why": why},
        )


def emit_schema_change(mapping: str, changes: Sequence[Change], *, broken: bool) -> None:
    """`zonesync.schema.broken` (the mapping stopped) or `zonesync.schema.changed` (accepted) on the mapping."""
    if changes and events_enabled():
        _emit(
            event=f"zonesync.schema.{'broken' if broken else 'changed'}", resource=_on_mapping(mapping),
            payload={"changes": [change.line() for change in changes[:_KEYS_IN_EVENT]]},
        )  # fmt: skip


def emit_auth_refused(address: str, failures: int, window_seconds: float) -> None:
    """`zonesync.api.auth-refused` on the address, once per window in which it passed the failed-key limit."""
    if events_enabled():
        _emit(
            event="zonesync.api.auth-refused",
            resource={
                "prefect.resource.id": f"zonesync.api.client-address.{address}",
                "prefect.resource.name": address,
            },
            payload={"failures": failures, "window_seconds": window_seconds},
        )
