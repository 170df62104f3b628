"""The one retry policy. Each kind of failure is run again by one layer only, so attempts never multiply:

| failure                                                       | run again by                          | attempts |
| ------------------------------------------------------------- | ------------------------------------- | -------- |
| a pooled connection found dead before the commit              | the transaction, at once              | 2        |
| a deadlock (this transaction its victim)                      | the transaction, after 50/100/200 ms  | 4        |
| a lock timeout, a zone down or silent, other transient errors | Prefect's task retries, after 5, 30 s | 3        |
| anything else (a refused value, a bad mapping)                | nobody                                | 1        |

"The transaction" is `engines.in_transaction` (or a claim, which opens its own: `batch.SourceSide.claim`), both
deciding by `retry_delay`. A deadlock is retried where it happened (only its transaction runs again), and once
its attempts are spent it is marked, so Prefect does not run the whole task again: 4 attempts, not 4 x 3 x 2.
Only a deadlock in a transaction that cannot be run again by itself (a caller's, held across zones) is left to
Prefect's retries. A wait that already lasted its whole limit (a lock timeout, a server gone silent) is not
repeated at once, which would multiply the limit: Prefect's retries give the holder or the server time.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import exc as sa_exc

from zonesync.schemas.errors import NO_ANSWER
from zonesync.tasks.zones.failures import is_deadlock, is_transient

_RETRIES_SPENT = "zonesync_retries_spent"  # set on an error whose retries an inner layer has used up

DEAD_CONNECTION_ATTEMPTS = 2
DEADLOCK_ATTEMPTS = 4
DEADLOCK_BACKOFF_SECONDS = 0.05  # doubled after each deadlock: 50, 100, 200 ms
TASK_RETRIES = 2
TASK_RETRY_DELAYS_SECONDS = [5, 30]


def retry_delay(exc: BaseException, attempt: int) -> float | None:
    """How long to wait before running a failed transaction again (`attempt` just ended with `exc`, before its
    commit), or None: not here. A lock conflict whose attempts are spent is marked so that no outer layer runs
    it again."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        silent = getattr(exc.orig, NO_ANSWER, False)
        return 0.0 if attempt < DEAD_CONNECTION_ATTEMPTS and not silent else None
    if not is_deadlock(exc):
        return None
    if attempt < DEADLOCK_ATTEMPTS:
        return DEADLOCK_BACKOFF_SECONDS * 2 ** (attempt - 1)
    setattr(exc, _RETRIES_SPENT, True)
    return None


def retry_task(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: run a task again only for a transient error that no inner layer has
    retried to the end already."""
    try:
        state.result()
    except Exception as exc:
        return is_transient(exc) and not any(getattr(error, _RETRIES_SPENT, False) for error in _chain(exc))
    return False


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes (a SyncError raised from the driver's error)."""
    chain = [exc]
    while chain[-1].__cause__ is not None and len(chain) < 10:
        chain.append(chain[-1].__cause__)
    return chain


def task_retries() -> dict[str, Any]:
    """The retry options of every Prefect task that touches a database."""
    return {"retries": TASK_RETRIES, "retry_delay_seconds": TASK_RETRY_DELAYS_SECONDS, "retry_condition_fn": retry_task}
