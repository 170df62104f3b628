"""Serve every deployment from one process, for single-machine use: `python -m zonesync.deployments.serve`.

The deployments prefect.yaml declares (names, schedules, overlap protection), without a work pool or worker.
Deployments of the same names that `prefect deploy` registered for a work pool must be deleted first: served
from here, their runs would still carry the work pool's settings and crash (`FileNotFoundError: '.../None'`).
"""

from __future__ import annotations

import sys
from typing import cast

from prefect import serve
from prefect.client.orchestration import get_client
from prefect.deployments.runner import RunnerDeployment
from prefect.exceptions import ObjectNotFound

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
    deployment = cast(RunnerDeployment, deployment)  # async-dispatched: called from sync code it returns the value
    # As declared: what Prefect infers from the module's file depends on the way it was found (in the repository,
    # through the zonesync/ links when the working directory is on sys.path, as tests and `python -m` have it).
    deployment.entrypoint = spec.entrypoint
    return deployment


def build_deployments() -> list[RunnerDeployment]:
    """Every deployment, ready to serve."""
    return [to_deployment(spec) for spec in deployment_specs()]


def deployed_to_a_work_pool(deployments: list[RunnerDeployment]) -> list[str]:
    """The deployments of these names that the server already has for a work pool (made by `prefect deploy`)."""
    found = []
    with get_client(sync_client=True) as client:
        for deployment in deployments:
            name = f"{deployment.flow_name}/{deployment.name}"
            try:
                registered = client.read_deployment_by_name(name)
            except ObjectNotFound:
                continue
            if registered.work_pool_name:
                found.append(f"'{name}' (work pool {registered.work_pool_name})")
    return found


def main() -> None:
    """Serve every deployment until interrupted; a bad schedule setting, or deployments of the same names made
    for a work pool, print one line and exit 2."""
    try:
        deployments = build_deployments()
        if clashing := deployed_to_a_work_pool(deployments):
            raise ConfigError(
                f"the server has {', '.join(clashing)} from `prefect deploy`: served from here, their runs would "
                "crash; delete them first (prefect deployment delete NAME) or keep running them on the worker"
            )
    except ConfigError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(2) from None
    serve(*deployments)


if __name__ == "__main__":
    main()
