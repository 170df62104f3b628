"""The table of a torture run: per drill and pairing, trials, trials with violations, the first violations."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from tests.torture.session import Pairing
from tests.torture.trial import TrialResult

SHOWN = 3  # distinct violation texts shown per cell


@dataclass
class Cell:
    """What the trials of one drill on one pairing found."""

    trials: int = 0
    failed: int = 0
    seconds: float = 0.0
    first: list[str] = field(default_factory=list)

    def add(self, result: TrialResult) -> None:
        """Count one trial; keep the first few distinct violation texts (with their seed)."""
        self.trials += 1
        self.seconds += result.seconds
        if result.violations:
            self.failed += 1
        for line in result.violations:
            if len(self.first) < SHOWN and not any(line in shown for shown in self.first):
                self.first.append(f"[seed {result.seed}] {line}")


def pairing_name(pairing: Pairing) -> str:
    """sqlite-sqlite, postgresql-mariadb, ..."""
    return f"{pairing[0]}-{pairing[1]}"


class Table:
    """Results collected drill by pairing."""

    def __init__(self) -> None:
        self.cells: dict[tuple[str, str], Cell] = defaultdict(Cell)
        self.skipped: set[tuple[str, str]] = set()

    def add(self, result: TrialResult) -> None:
        """Record a trial."""
        self.cells[(result.drill, pairing_name(result.pairing))].add(result)

    def not_applicable(self, drill: str, pairing: Pairing) -> None:
        """Record that a drill does not apply to a pairing."""
        self.skipped.add((drill, pairing_name(pairing)))

    def any_violation(self) -> bool:
        """Whether any trial found a violation."""
        return any(cell.failed for cell in self.cells.values())

    @staticmethod
    def line(result: TrialResult, *, verbose: bool = False) -> str:
        """One progress line per trial."""
        verdict = "ok" if not result.violations else f"{len(result.violations)} violation(s)"
        where = f"{result.drill:20} {pairing_name(result.pairing):22} seed {result.seed:<5}"
        text = f"{where} {result.seconds:6.1f}s  {verdict}"
        details = [f"    ! {line}" for line in result.violations]
        if verbose:
            details += [f"    . {note}" for note in result.notes]
        return "\n".join([text, *details])

    def render(self) -> str:
        """The table, then the first violation texts of each failing cell."""
        keys = sorted(set(self.cells) | self.skipped)
        rows = ["", f"{'drill':20} {'pairing':22} {'trials':>6} {'violating':>9} {'avg s':>6}", "-" * 68]
        details = []
        for drill, pairing in keys:
            if (drill, pairing) in self.skipped:
                rows.append(f"{drill:20} {pairing:22} {'n/a':>6}")
                continue
            cell = self.cells[(drill, pairing)]
            rows.append(f"{drill:20} {pairing:22} {cell.trials:>6} {cell.failed:>9} {cell.seconds / cell.trials:>6.1f}")
            details += [f"{drill} / {pairing}: {line}" for line in cell.first]
        return "\n".join(rows + (["", *details] if details else []))
