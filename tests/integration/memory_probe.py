"""Run one SQLite sync of N generated rows in a fresh process and report its peak memory growth (invariant 8).

Usage: python -m tests.integration.memory_probe ROWS BATCH_SIZE WORK_DIR  -> one JSON line on stdout.
The rows are generated inside SQLite (no Python copy of them exists); a small warm-up sync runs first so
imports, caches and thread pools are already paid for when the baseline is taken.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import sqlalchemy as sa

from tests.integration.mappings import NOTES
from tests.integration.tables import source_tables, target_tables
from zonesync.tasks.bookkeeping.tables import create_bookkeeping
from zonesync.tasks.sync.run import Zones, sync_mapping_rows
from zonesync.tasks.zones.engines import create_engine, parse_url

BODY_CHARS = 1000
_FILL = sa.text(
    "INSERT INTO zs_note_src (note_key, body, amount, noted_at, is_sync) "
    "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < :rows) "
    f"SELECT printf('k%09d', i), printf('%0{BODY_CHARS}d', i), printf('%d.%02d', i, i % 100), "
    "'2026-03-04 05:06:07.891011+00:00', 0 FROM seq"
)


def _zones(directory: Path, rows: int) -> Zones:
    directory.mkdir(parents=True, exist_ok=True)
    source = create_engine(parse_url(f"sqlite:///{directory / 'intranet.db'}", setting="source"))
    target = create_engine(parse_url(f"sqlite:///{directory / 'internet.db'}", setting="target"))
    source_tables().create_all(source, tables=[source_tables().tables["zs_note_src"]])
    target_tables().create_all(target, tables=[target_tables().tables["zs_note"]])
    create_bookkeeping(source)
    with source.begin() as conn:
        conn.execute(_FILL, {"rows": rows})
    return Zones(source=source, target=target, intranet=source)


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def main(rows: int, batch_size: int, work_dir: Path) -> dict[str, int]:
    """Warm up, take the baseline, sync `rows` rows, report counts and peak memory."""
    warm = sync_mapping_rows(NOTES, _zones(work_dir / "warm", 3 * batch_size), batch_size)
    zones = _zones(work_dir / "main", rows)
    baseline = _peak_kib()
    result = sync_mapping_rows(NOTES, zones, batch_size)
    return {
        "warm_flagged": warm.flagged,
        "read": result.read,
        "upserted": result.upserted,
        "flagged": result.flagged,
        "batches": result.batches,
        "baseline_kib": baseline,
        "peak_kib": _peak_kib(),
    }


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))))
