"""Rows that end: tombstones captured in the source zone and carried to the target by a mapping's on_delete policy."""
