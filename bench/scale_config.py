"""What `python -m bench.scale_out` runs: its options, shared by the runner, the takeover and the report."""

from __future__ import annotations

from dataclasses import dataclass

REGIMES = ("latency", "cpu")
TAKEOVER_MODES = ("same-host", "other-hosts")


@dataclass(frozen=True)
class ScaleConfig:
    """The benchmark's options, resolved."""

    rows: int
    workers: tuple[int, ...]
    regimes: tuple[str, ...]
    delay_ms: float
    latency_batch_size: int
    cpu_batch_size: int | None  # None: the setting (ZONESYNC_BATCH_SIZE)
    partitions: int
    partition_block: int  # neighbouring keys per block (SyncMapping.partition_block)
    repeat: int
    lease_seconds: float
    takeover: tuple[str, ...]
    pg_url: str
    prefix: str
    keep: bool
    prefect_server: str  # postgres | sqlite | harness
    budget: int | None = None  # carriers the zones' connection budget admits at once (None: no budget)

    def batch_size(self, regime: str, default: int) -> int:
        """Rows per batch in a regime (`default`: the setting)."""
        if regime == "latency":
            return self.latency_batch_size
        return self.cpu_batch_size or default

    def delay(self, regime: str) -> float:
        """Milliseconds added before every round trip in a regime."""
        return self.delay_ms if regime == "latency" else 0.0
