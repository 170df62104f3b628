"""The bounded, seeded torture run of the test suite: every drill, two trials spread over three pairings.

A failing test is a guarantee broken (the checker's violations are the message). Drills that find known
defects fail until those are fixed: they are kept on purpose. `python -m tests.torture` runs the long version.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import pair_param
from tests.torture.checker import describe
from tests.torture.drills import DEFAULT_PAIRINGS, DRILLS, DrillSpec, run_trial
from tests.torture.session import Pairing, Session

pytestmark = pytest.mark.torture
TRIALS_PER_DRILL = 2
ONCE = {"outage-freeze", "outage-tarpit"}  # the slowest drills (a hang costs the whole bound): one trial each
FIRST_SEED = 1000


def bounded_cases() -> list[Any]:
    """(drill, pairing, seed) params: each drill on two of the pairings it applies to, rotating the pairings."""
    cases = []
    for number, spec in enumerate(DRILLS.values()):
        pairings = [p for p in DEFAULT_PAIRINGS if spec.applies(p)]
        rotated = pairings[number % len(pairings) :] + pairings[: number % len(pairings)]
        for trial, pairing in enumerate(rotated[: 1 if spec.name in ONCE else TRIALS_PER_DRILL]):
            cases.append(_case(spec, pairing, FIRST_SEED + number * 10 + trial))
    return cases


def _case(spec: DrillSpec, pairing: Pairing, seed: int) -> Any:
    backends = pair_param(*pairing)
    return pytest.param(spec.name, pairing, seed, marks=backends.marks, id=f"{spec.name}-{backends.id}-seed{seed}")


@pytest.mark.parametrize(("drill", "pairing", "seed"), bounded_cases())
def test_drill(torture_session: Session, drill: str, pairing: Pairing, seed: int) -> None:
    """One trial of a drill: the checker finds no violation."""
    result = run_trial(torture_session, DRILLS[drill], pairing, seed)
    notes = "\n".join(f"  . {note}" for note in result.notes)
    assert not result.violations, f"{drill} on {pairing} (seed {seed}):\n{describe(result.violations)}\n{notes}"
