"""The command line, `zonesync`: its commands (`commands`), how results are printed (`support`), and the demo
(`demo`). It runs the flows of `zonesync.flows`; nothing there depends on it."""

from __future__ import annotations

from zonesync.flows.cli.commands import app, main

__all__ = ["app", "main"]
