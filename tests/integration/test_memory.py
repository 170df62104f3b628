"""Invariant 8 (bounded memory): a sync holds a few batches, whatever the table size.

Two fresh processes sync N and 4N generated rows (1 kB each) on SQLite at the same batch size. Were the
rows held, the larger run's peak would be at least 3N kB higher; a bounded engine's peaks are about equal.
This is a resource bound, not a timing assertion.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration.memory_probe import BODY_CHARS
from tests.processes import popen_owned

ROWS = 15_000
BATCH_SIZE = 1_000
REPO = Path(__file__).resolve().parents[2]


def test_peak_memory_does_not_grow_with_the_backlog(tmp_path: Path) -> None:
    """Peak RSS growth of a 4N-row sync stays within a quarter of what holding the extra 3N rows would take."""
    runs = {
        rows: popen_owned(
            [
                sys.executable,
                "-m",
                "tests.integration.memory_probe",
                str(rows),
                str(BATCH_SIZE),
                str(tmp_path / str(rows)),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rows in (ROWS, 4 * ROWS)
    }
    reports = {}
    for rows, process in runs.items():
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-2000:]
        reports[rows] = json.loads(stdout.strip().splitlines()[-1])
        assert reports[rows]["read"] == reports[rows]["flagged"] == rows
        assert reports[rows]["batches"] == rows // BATCH_SIZE

    growth = {rows: report["peak_kib"] - report["baseline_kib"] for rows, report in reports.items()}
    held_extra_kib = 3 * ROWS * BODY_CHARS // 1024  # the payload alone of the 3N extra rows
    assert growth[4 * ROWS] - growth[ROWS] < held_extra_kib // 4, f"peak growth by backlog size: {growth} KiB"
    assert growth[4 * ROWS] < 4 * ROWS * BODY_CHARS // 1024 // 2, f"peak growth by backlog size: {growth} KiB"
