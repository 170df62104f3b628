"""`python -m zonesync.flows.cli`: the command line, as the `zonesync` script runs it."""

from zonesync.flows.cli.app import main

main()
