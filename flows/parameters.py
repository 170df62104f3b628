"""Flows whose record values stay out of Prefect's database.

Prefect stores every flow run's parameters (the UI's Parameters tab) and refuses large ones: a push of 20,000
records failed outright, and columns a mapping keeps inside the intranet showed up there. The flows that take
record values (`realtime_push`, `update_with_rollback`) send Prefect a placeholder for them instead — how many
records, which columns — while the flow function itself receives the values as passed. A `key` parameter is
stored as its mapping shows keys (sensitive key columns hidden).

A run of their deployments (the UI's Run button, `run_deployment`, `prefect deployment run`) is different: its
creator hands Prefect the values as parameters, and the worker reads them from there. Prefect keeps them only
until the run starts: its first step replaces the run's stored parameters with the placeholders.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar, cast

from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.logging import get_logger

from zonesync.flows.outcomes import Outcome, OutcomeFlow, flow_with_outcome
from zonesync.schemas.errors import SyncError
from zonesync.schemas.registry import get_mapping

P = ParamSpec("P")
R = TypeVar("R")


class ValuesKeptOut(OutcomeFlow[P, R]):
    """A flow whose `kept_out` parameters reach Prefect only as a placeholder (see the module docstring)."""

    kept_out: tuple[str, ...] = ()

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        shown = {name: value for name, value in parameters.items() if name not in self.kept_out}
        if isinstance(shown.get("key"), Mapping):
            shown["key"] = shown_key(shown.get("mapping"), shown["key"])
        placeholders = {name: placeholder(parameters[name]) for name in self.kept_out if name in parameters}
        return super().serialize_parameters(shown) | placeholders


def shown_key(mapping_name: object, key: Mapping[str, Any]) -> Any:
    """A key as its mapping lets Prefect keep it; a placeholder when the mapping is unknown (the run fails)."""
    try:
        return get_mapping(str(mapping_name)).shown_key(key)
    except SyncError:
        return placeholder(key)


def placeholder(value: Any) -> str:
    """What Prefect stores instead of record values: their number, or the names of the columns they set."""
    if isinstance(value, Mapping):
        return f"<values of {', '.join(sorted(map(str, value)))}: kept out of Prefect>"
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return f"<{len(value)} record(s): kept out of Prefect>"
    return "<kept out of Prefect>"


def flow_keeping_out(
    *kept_out: str, outcome: Outcome, **options: Any
) -> Callable[[Callable[P, R]], ValuesKeptOut[P, R]]:
    """Like `flow_with_outcome(outcome, **options)`, for a flow whose parameters `kept_out` hold record values."""

    def decorate(function: Callable[P, R]) -> ValuesKeptOut[P, R]:
        @functools.wraps(function)
        def forgetting(*args: P.args, **kwargs: P.kwargs) -> R:
            forget_given_values()
            return function(*args, **kwargs)

        made = cast(ValuesKeptOut[P, R], flow_with_outcome(outcome, flow_class=ValuesKeptOut, **options)(forgetting))
        made.kept_out = kept_out
        return made

    return decorate


def forget_given_values() -> None:
    """In a deployment's run, replace the values its creator gave Prefect with their placeholders (the run has
    read them already). A run called from Python stored placeholders from the start: nothing to do."""
    context = FlowRunContext.get()
    flow, flow_run = (context.flow, context.flow_run) if context else (None, None)
    if flow is None or flow_run is None or flow_run.deployment_id is None:
        return
    forgotten = flow.serialize_parameters(flow_run.parameters)
    if forgotten == flow_run.parameters:
        return
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(flow_run.id, parameters=forgotten)
    except Exception as exc:  # the push goes on; the values stay in Prefect, which an operator must know
        get_logger("zonesync.parameters").warning(
            "could not replace the record values given to flow run %s with placeholders in Prefect: %s",
            flow_run.id, type(exc).__name__,
        )  # fmt: skip
