"""Pause points: a worker told TORTURE_PAUSE_AT=<point> reports `paused` there and SIGSTOPs itself.

The pause is placed at zonesync's named checkpoint of that moment (`tasks.checkpoints.interleaved`, its test
hook). Nothing else changes: no database is mocked, the process simply stops there until the drill continues it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from typing import Any

Emit = Callable[[dict[str, Any]], None]
# A drill's point -> zonesync's checkpoint of the same moment (when it has them).
CHECKPOINTS = {
    "push:before-target": "push:inserted",
    "update:after-source": "update:source-written",
    "update:after-target": "update:after-target",
    "update:undecided": "update:undecided",
    "update:prepared": "update:prepared",
    "sync:before-upsert": "batch:claimed",
    "sync:before-flag": "batch:delivered",
}
_paused: set[str] = set()


def pause_point(name: str, emit: Emit) -> None:
    """Stop this process here (once per command) when the drill asked for it."""
    if os.environ.get("TORTURE_PAUSE_AT") == name and name not in _paused:
        _paused.add(name)
        emit({"event": "paused", "at": name})
        os.kill(os.getpid(), signal.SIGSTOP)


@contextlib.contextmanager
def armed(emit: Emit) -> Iterator[None]:
    """For one command: arm the requested pause at zonesync's checkpoint."""
    _paused.clear()
    point = os.environ.get("TORTURE_PAUSE_AT")
    if not point:
        yield
        return
    from zonesync.tasks.zones.checkpoints import interleaved

    try:
        with interleaved(CHECKPOINTS.get(point, point), lambda: pause_point(point, emit)):
            yield
    except AssertionError as missed:  # the command ended without passing the point: the drill notes it
        if "never reached" not in str(missed):
            raise
