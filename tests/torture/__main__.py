"""The long torture run: `python -m tests.torture --trials N --seed S [--drills ...] [--pairings ...]`.

Prints a table drill by pairing (trials, trials with violations, the first violation texts). Needs
ZONESYNC_TEST_POSTGRES_URL / ZONESYNC_TEST_MARIADB_URL for the server pairings (as the test suite does).
Exit code 1 when any trial found a violation.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence

from tests.torture.drills import DEFAULT_PAIRINGS, DRILLS, run_trial
from tests.torture.report import Table
from tests.torture.session import Limits, Pairing, Session

SQLITE_TRIALS_SHARE = 0.4  # SQLite pairings run 20 trials where server pairings run 50


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m tests.torture", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50, help="trials per drill and server pairing (default 50)")
    parser.add_argument(
        "--sqlite-trials", type=int, help="trials per drill on SQLite pairings (default 40 %% of --trials)"
    )
    parser.add_argument("--seed", type=int, default=1, help="first seed; trial i uses seed + i")
    parser.add_argument("--drills", nargs="+", choices=sorted(DRILLS), default=list(DRILLS))
    parser.add_argument("--pairings", nargs="+", default=[f"{a}-{b}" for a, b in DEFAULT_PAIRINGS],
                        help="intranet-internet backends, e.g. postgresql-mariadb")  # fmt: skip
    parser.add_argument("--hang-bound", type=float, default=120.0, help="seconds a run may take on a lost target")
    parser.add_argument("--verbose", action="store_true", help="print each trial's notes")
    return parser.parse_args(argv)


def pairings(names: Sequence[str]) -> list[Pairing]:
    """`a-b` names as (intranet, internet) pairs."""
    found = []
    for name in names:
        intranet, _, internet = name.partition("-")
        found.append((intranet, internet))
    return found


def available(pairing: Pairing) -> bool:
    """Whether every server backend of the pairing has its ZONESYNC_TEST_*_URL."""
    from tests.conftest import SERVER_ENV

    return all(os.environ.get(SERVER_ENV[b]) for b in pairing if b != "sqlite")


def trials_for(pairing: Pairing, options: argparse.Namespace) -> int:
    """Trials per drill on a pairing: --trials on servers, --sqlite-trials (or 40 % of --trials) with SQLite."""
    if "sqlite" not in pairing:
        return int(options.trials)
    if options.sqlite_trials is not None:
        return int(options.sqlite_trials)
    return max(1, round(options.trials * SQLITE_TRIALS_SHARE))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the trials and print the table; 1 if anything was found."""
    options = parse(sys.argv[1:] if argv is None else argv)
    from tests.conftest import ThrowawayServers

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # A stopped run (kill, Ctrl-C) still stops its private clusters, Prefect server and workers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    servers = ThrowawayServers()
    session = Session(servers, Limits(hang_bound=options.hang_bound))
    table = Table()
    started = time.monotonic()
    try:
        for pairing in pairings(options.pairings):
            if not available(pairing):
                print(f"skipping {pairing[0]}-{pairing[1]}: no server URL (ZONESYNC_TEST_POSTGRES_URL / _MARIADB_URL)")
                continue
            trials = trials_for(pairing, options)
            for name in options.drills:
                spec = DRILLS[name]
                if not spec.applies(pairing):
                    table.not_applicable(name, pairing)
                    continue
                for i in range(trials):
                    result = run_trial(session, spec, pairing, options.seed + i)
                    table.add(result)
                    print(table.line(result, verbose=options.verbose), flush=True)
    finally:
        session.close()
        servers.drop_all()
    print(table.render())
    print(f"total {time.monotonic() - started:.0f} s")
    return 1 if table.any_violation() else 0


if __name__ == "__main__":
    raise SystemExit(main())
