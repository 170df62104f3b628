"""Execution: everything that touches a database, a frame or the Prefect API."""
