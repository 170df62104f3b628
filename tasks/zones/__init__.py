"""Connecting to the two zones: engines with bounded waits, what an error means, the one retry policy."""
