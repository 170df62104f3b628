"""Serve all four deployments from one process, for single-machine use: `python -m zonesync.deployments.serve`.

The deployments prefect.yaml declares (names, schedules, overlap protection), without a work pool or worker.
"""

from __future__ import annotations

import sys
from typing import cast

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from zonesync.deployments.schedules import DeploymentSpec, deployment_specs
from zonesync.schemas.errors import ConfigError


def to_deployment(spec: DeploymentSpec) -> RunnerDeployment:
    """A runner deployment of one spec's flow."""
    deployment = spec.load_flow().to_deployment(
        name=spec.name,
        schedules=[spec.schedule] if spec.schedule else [],
        concurrency_limit=spec.concurrency_limit,
        parameters=spec.parameters,
        description=spec.description,
        tags=list(spec.tags),
    )
    return cast(RunnerDeployment, deployment)  # async-dispatched: called from sync code it returns the value


def build_deployments() -> list[RunnerDeployment]:
    """Every deployment, ready to serve."""
    return [to_deployment(spec) for spec in deployment_specs()]


def main() -> None:
    """Serve every deployment until interrupted; a bad schedule setting prints one line and exits 2."""
    try:
        deployments = build_deployments()
    except ConfigError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(2) from None
    serve(*deployments)


if __name__ == "__main__":
    main()
