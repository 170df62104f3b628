"""Prefect flows: orchestration only, reading like the specification's flow diagrams."""
