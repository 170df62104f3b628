"""A torture worker process: `python -m tests.torture.worker RESULT_FD`.

It imports zonesync once, says `ready`, then runs one JSON command per stdin line ({"op", "env", "args"}) and
answers each with a JSON line on RESULT_FD. A command's `env` is applied to os.environ first (zones, two-phase,
the torture knobs below), and the caches that read it are cleared, as a fresh process would start.

Torture knobs (environment, per command) — test hooks in this process only, no database is mocked:
- TORTURE_PAUSE_AT=<point>: at that point the worker reports `paused` and SIGSTOPs itself; the drill continues it.
  Points: push:before-target, sync:before-upsert, sync:before-flag, update:after-source, update:after-target,
  update:undecided, update:prepared (tests/torture/pauses.py).
- TORTURE_LEASE_SECONDS (as ZONESYNC_LEASE_SECONDS) / TORTURE_UPDATE_LEASE_SECONDS: shorter leases (retry 120 s, update
  60 s) to keep drills short.
- TORTURE_FAST_RETRIES=1: Prefect task retry delays of 0.5 s and 1 s instead of 5 s and 30 s.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from typing import Any

from tests.torture import pauses
from tests.torture.ops import OPERATIONS
from zonesync.flows import end_day_check, retry_sync
from zonesync.schemas import registry, settings
from zonesync.tasks.bookkeeping import lease
from zonesync.tasks.push import pusher  # noqa: F401 (loaded once, warm)
from zonesync.tasks.sync import (
    fan_out,
    run,  # noqa: F401 (loaded once, warm)
)
from zonesync.tasks.update import deletion, rollback
from zonesync.tasks.zones import engines

_write_lock = threading.Lock()
_ORIGINAL = {
    "retry_task": fan_out.sync_mapping,
    "endday_task": end_day_check.sync_mapping,
    "reconcile": end_day_check.reconcile,
}


class Answers:
    """The result pipe: one JSON object per line, written whole even from several threads."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __call__(self, event: dict[str, Any]) -> None:
        data = (json.dumps(event, default=str) + "\n").encode()
        with _write_lock:
            os.write(self.fd, data)


def shorten_update_lease() -> None:
    """TORTURE_UPDATE_LEASE_SECONDS: the update's (and recover's) lease lasts that long instead of 60 s."""
    original_holding = lease.holding

    def holding(engine: Any, name: str, *, ttl: float, **kwargs: Any) -> Any:
        short = os.environ.get("TORTURE_UPDATE_LEASE_SECONDS")
        return original_holding(engine, name, ttl=float(short) if short else ttl, **kwargs)

    for module in (rollback, deletion, sys.modules.get("zonesync.tasks.update.recovery")):
        if module is not None and hasattr(module, "holding"):
            module.holding = holding


def apply_env(env: dict[str, str | None]) -> None:
    """Set the command's environment and clear what caches it, as a fresh process would see it."""
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if short := os.environ.get("TORTURE_LEASE_SECONDS"):
        os.environ["ZONESYNC_LEASE_SECONDS"] = short
    settings.get_settings.cache_clear()
    registry._registry.cache_clear()
    engines.dispose_engines()
    fast = os.environ.get("TORTURE_FAST_RETRIES") == "1"
    delays = {"retry_delay_seconds": [0.5, 1.0]}
    retry_task = _ORIGINAL["retry_task"].with_options(**delays) if fast else _ORIGINAL["retry_task"]
    fan_out.sync_mapping = retry_sync.sync_mapping = retry_task  # the retry flow's tasks, and its slice flow's
    end_day_check.sync_mapping = _ORIGINAL["endday_task"].with_options(**delays) if fast else _ORIGINAL["endday_task"]
    end_day_check.reconcile = _ORIGINAL["reconcile"].with_options(**delays) if fast else _ORIGINAL["reconcile"]


def run_command(line: str, emit: Answers) -> None:
    """Run one command line and report `done` with its answer, or `error` with the exception."""
    command = json.loads(line)
    started = time.monotonic()
    try:
        apply_env(command.get("env", {}))
        with pauses.armed(emit):
            answer = OPERATIONS[command["op"]](emit=emit, **command.get("args", {}))
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
        emit({"event": "error", "error": error, "trace": traceback.format_exc()[-2000:], "seconds": _since(started)})
    else:
        emit({"event": "done", "result": answer, "seconds": _since(started)})
    finally:
        engines.dispose_engines()  # no pooled connection outlives a command (the next trial wipes the databases)


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


def main() -> None:
    """Answer `ready`, then run commands until stdin closes."""
    emit = Answers(int(sys.argv[1]))
    shorten_update_lease()
    emit({"event": "ready", "pid": os.getpid()})
    for line in sys.stdin:
        if line.strip():
            run_command(line, emit)


if __name__ == "__main__":
    main()
