"""Named points in the write paths, where tests interleave other work or simulate a crash.

Production never sets either hook: `checkpoint` is a dictionary lookup and an environment read. Tests use
`interleaved(name, action)` to run `action` at that point (another flow, an application's write, a
recovery), which is how the drills show that no timing can make a row flagged wrongly; a subprocess started
with `ZONESYNC_FAULT=<name>` dies there as a killed process would.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_actions: dict[str, tuple[int, Callable[[], None]]] = {}  # name -> (passes left before it runs, action)
_lock = threading.Lock()


def checkpoint(name: str) -> None:
    """Pass a named point: die here if `ZONESYNC_FAULT` names it; run the action a test placed here, once."""
    if os.environ.get("ZONESYNC_FAULT") == name:
        os._exit(70)
    if _actions:
        with _lock:
            placed = _actions.pop(name, None)
            if placed is not None and placed[0] > 1:
                _actions[name], placed = (placed[0] - 1, placed[1]), None
        if placed is not None:
            placed[1]()


@contextmanager
def interleaved(name: str, action: Callable[[], None], *, at: int = 1) -> Iterator[None]:
    """Run `action` the `at`-th time the code under test passes `name` within the block (tests only)."""
    with _lock:
        _actions[name] = (at, action)
    try:
        yield
    finally:
        with _lock:
            passed = name not in _actions
            _actions.pop(name, None)
    if not passed:
        raise AssertionError(f"the code under test never reached checkpoint {name!r}")
