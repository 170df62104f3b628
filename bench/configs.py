"""What each benchmark runs: its options, in a leaf module that the runners and the data builders share."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetrySyncConfig:
    """What `python -m bench.retry_sync` runs."""

    rows: int
    repeat: int
    batch_size: int | None
    pg_url: str
    prefix: str
    keep: bool
    pending_index: bool
    fillfactor: int | None
    incremental_every: int = 100
    scaling_divisor: int = 10


@dataclass(frozen=True)
class EndDayConfig:
    """What `python -m bench.end_day` runs."""

    rows: int
    repeat: int
    pg_url: str
    prefix: str
    keep: bool
    pending_index: bool
    failed_every: int = 10  # every 10th payment failed: a ninth as many failed rows as eligible ones

    @property
    def total(self) -> int:
        """Payments generated so that exactly `rows` of them are eligible."""
        total = self.rows * self.failed_every // (self.failed_every - 1)
        while total - total // self.failed_every < self.rows:
            total += 1
        return total
