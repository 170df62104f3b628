"""Run states that tell the truth: a flow's final Prefect state names its business outcome.

Prefect marks a run Completed whenever its function returns. A rolled-back update, a push the source refused, a
pending push and a partial sync all returned, and all showed a green "Completed": operators watching the run
list, and automations matching on states, learned nothing. A flow made with `flow_with_outcome` turns its
result into a named state (`Completed(name="Partial")`, `Failed(name="RolledBack")`, ...), which Prefect takes
as the run's final state; its events are named after it too (`prefect.flow-run.Partial`).

A Python caller still gets the result object itself, whatever the state: `OutcomeFlow.__call__` asks Prefect
for the final state and hands back the result it carries (a genuine exception is raised, as before).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Literal, ParamSpec, TypeVar, overload

from prefect import Flow
from prefect.states import Completed, Failed, State
from prefect.utilities.hashing import file_hash

from zonesync.tasks.prefect_options import FLOW_OPTIONS

P = ParamSpec("P")
R = TypeVar("R")

Outcome = Callable[[Any], State]  # a result -> the final state that names it

# The names of zonesync's final states beyond Prefect's own (an automation that waits for a run to end must
# expect their events too: deployments/automations.yaml).
PENDING, REFUSED, ROLLED_BACK, CONTRACT_BROKEN = "Pending", "Refused", "RolledBack", "ContractBroken"
_JOB_STATES = {"SUCCESS": "Completed", "NO_RECORD": "NoRecord", "PARTIAL": "Partial", "SKIPPED": "Skipped"}
STATE_NAMES = frozenset({PENDING, REFUSED, ROLLED_BACK, CONTRACT_BROKEN, *_JOB_STATES.values(), "Failed"})


def completed(result: Any, message: str, name: str = "Completed") -> State:
    """A Completed state named after the outcome, carrying the result."""
    return Completed(data=result, message=message, name=name)


def failed(result: Any, message: str, name: str = "Failed") -> State:
    """A Failed state named after the outcome, carrying the result (not an exception: the caller still gets it)."""
    return Failed(data=result, message=message, name=name)


class OutcomeFlow(Flow[P, R]):
    """A flow whose final state is `outcome(result)`; called from Python, it returns the result itself."""

    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    @overload
    def __call__(self, *args: Any, return_state: Literal[True], **kwargs: Any) -> State[R]: ...

    def __call__(self, *args: Any, return_state: bool = False, **kwargs: Any) -> Any:  # type: ignore[misc]
        # (mypy cannot see that `*args: Any` takes the P.args of the first overload)
        state = super().__call__(*args, return_state=True, **kwargs)
        if return_state:
            return state
        result = state.result(raise_on_failure=False)
        if isinstance(result, BaseException):  # the flow raised: raise it, as a plain Prefect flow does
            raise result
        return result


def with_outcome(function: Callable[P, R], outcome: Outcome) -> Callable[P, Any]:
    """`function`, returning the state `outcome` makes of its result (same signature: Prefect reads it)."""

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> Any:
        return outcome(function(*args, **kwargs))

    # Prefect resolves the parameters' annotations in the wrapper's module: hand it them resolved already.
    run.__signature__ = inspect.signature(function, eval_str=True)  # type: ignore[attr-defined]
    return run


def flow_with_outcome(
    outcome: Outcome, *, flow_class: type[OutcomeFlow[Any, Any]] = OutcomeFlow, **options: Any
) -> Callable[[Callable[P, R]], OutcomeFlow[P, R]]:
    """Like `@prefect.flow(**options)`, for a flow whose final state names its result's outcome."""

    def decorate(function: Callable[P, R]) -> OutcomeFlow[P, R]:
        source = inspect.getsourcefile(inspect.unwrap(function))
        version = file_hash(source) if source else None  # of the flow's file (Prefect would hash this one)
        return flow_class(with_outcome(function, outcome), **{"version": version, **FLOW_OPTIONS, **options})

    return decorate


def job_state(result: Any, status: str, message: str) -> State:
    """The final state of a scheduled run that earned `status` in batch_job: FAILED fails it."""
    if status == "FAILED":
        return failed(result, message)
    return completed(result, message, _JOB_STATES.get(status, "Completed"))
