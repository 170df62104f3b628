"""A flow that runs until its process is killed, served as deployment `sleepy/zombie` with heartbeats on
(`python -m tests.integration.zombie_flow`; test_automations.py kills it mid-run)."""

from __future__ import annotations

import time

from prefect import flow


@flow(name="sleepy")
def sleepy() -> None:
    """Run for ten minutes (far longer than the test that kills it)."""
    time.sleep(600)


if __name__ == "__main__":
    sleepy.serve(name="zombie")
