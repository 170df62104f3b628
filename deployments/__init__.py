"""Deployments: prefect.yaml and serve.py (the scheduled and on-demand flows), and the HTTP entry point (api.py)."""
