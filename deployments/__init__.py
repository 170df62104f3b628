"""Deployment definitions and entry points (filled in by the deployment work)."""
