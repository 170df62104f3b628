"""The command line, `zonesync`: the command table and entry point (`app`), the commands by group
(`setup_commands`, `flow_commands`, `operator_commands`, `api_commands`, `schema`), what they share (`support`) and
the demo's story (`demo`). It runs the flows of `zonesync.flows`; nothing there depends on it."""

from __future__ import annotations

from zonesync.flows.cli.app import app, main

__all__ = ["app", "main"]
