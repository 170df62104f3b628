"""What a run tells people and automations: Prefect artifacts, progress, events."""
