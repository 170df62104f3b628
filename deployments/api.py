"""HTTP entry point for applications that write data: the routes.

`POST /mappings/{name}/records` runs the real-time push — without a Prefect flow run per request (one costs
about a second); success and pending pushes are announced as Prefect events instead. The pushes of one mapping
that arrive while one runs are written together next (`coalescing.py`); each answered write is recorded in the
audit trail first (`audit_trail.py`); `PATCH` runs the update with rollback, `DELETE` (a scope of its own) the
delete with rollback. What each outcome answers is in `answers.py`, /health in `health.py`. Start it with
`zonesync api` (or `uvicorn zonesync.deployments.api:create_app --factory`). Every request but /health needs a
declared client's key, and writes need the client's scope (`deployments/guard.py`).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prefect.logging import get_logger
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from zonesync.deployments.answers import (
    DELETE_RESPONSES,
    DELETE_STATUS,
    PUSH_RESPONSES,
    UPDATE_RESPONSES,
    UPDATE_STATUS,
    ExactJSONResponse,
    add_error_answers,
    error_answer,
    push_json,
    push_status_code,
    records_schema,
    route_body,
)
from zonesync.deployments.audit_trail import AuditTrail
from zonesync.deployments.coalescing import Coalescer
from zonesync.deployments.documents import serve_documents
from zonesync.deployments.guard import CLIENT, Guard
from zonesync.deployments.health import health
from zonesync.deployments.idempotency import AnsweredOnce
from zonesync.deployments.watched_clients import WatchedClients
from zonesync.schemas.api_clients import ApiClient, Scope, declared_clients
from zonesync.schemas.errors import scrub
from zonesync.schemas.mapping import SyncMapping
from zonesync.schemas.registry import all_mappings
from zonesync.schemas.settings import get_settings
from zonesync.tasks.bookkeeping.audit import AuditEntry
from zonesync.tasks.push.pusher import Pusher
from zonesync.tasks.push.records import parse_json
from zonesync.tasks.reporting.events import emit_push_event, events_enabled
from zonesync.tasks.setup.mapping_docs import delete_schema, update_schema
from zonesync.tasks.update.deletion import delete_record
from zonesync.tasks.update.rollback import update_record
from zonesync.tasks.zones.engines import get_engine

logger = get_logger("zonesync.api")
JSON_TYPES = ("application/json",)  # and any type ending in +json


def create_app() -> FastAPI:
    """The application: one push route per registered mapping (each documents its record shape) and /health.

    Refuses to be made (ConfigError) when no client is declared, unless ZONESYNC_API_INSECURE_NO_AUTH is set.
    """
    app = FastAPI(
        title="zonesync", summary="Push records to both zones at once.", version="0.1.0",
        default_response_class=ExactJSONResponse, openapi_url=None,  # served per client (`documents.py`)
    )  # fmt: skip
    settings = get_settings()
    mappings = all_mappings()
    clients = declared_clients(settings, mappings)
    if clients is None:
        logger.warning("the HTTP API runs WITHOUT AUTHENTICATION (--insecure-no-auth): anyone who reaches it writes")
    pushers = {name: Coalescer(Pusher(mapping)) for name, mapping in mappings.items()}
    max_records = settings.api_max_records
    audit = AuditTrail(get_engine("intranet"))
    once = AnsweredOnce.kept_for(get_engine("intranet"), settings.api_idempotency_hours)

    async def push(name: str, request: Request) -> Response:
        if (refused := _outside_scope(request, name, "push")) is not None:
            return refused
        body = await _json_body(request, name, mappings, max_records)
        if isinstance(body, JSONResponse):
            return body

        async def serve() -> Response:
            result = await pushers[name].push(body if isinstance(body, list) else [body])
            emit_push_event(result)
            status = push_status_code(result)
            outcome = result.reason or result.status
            await audit.add(AuditEntry(_client(request), name, "push", status, outcome, result.keys))
            return ExactJSONResponse(push_json(result), status_code=status)

        return await once.answer(request, _client(request), name, body, serve, error_answer)

    async def delete(name: str, request: Request) -> Response:
        if (refused := _outside_scope(request, name, "delete")) is not None:
            return refused
        body = await _json_body(request, name, mappings, max_records)
        if isinstance(body, JSONResponse):
            return body
        if not isinstance(body, dict):
            return error_answer(400, "invalid_body", 'expected {"key": {...}}')

        async def serve() -> Response:
            result = await run_in_threadpool(delete_record, mappings[name], body.get("key"))
            status = 200 if result.status == "success" else DELETE_STATUS.get(result.reason, 422)
            outcome = result.reason or result.status
            await audit.add(AuditEntry(_client(request), name, "delete", status, outcome, [result.key]))
            return ExactJSONResponse({**asdict(result), "message": scrub(result.message)}, status_code=status)

        return await once.answer(request, _client(request), name, body, serve, error_answer)

    async def update(name: str, request: Request) -> Response:
        if (refused := _outside_scope(request, name, "update")) is not None:
            return refused
        body = await _json_body(request, name, mappings, max_records)
        if isinstance(body, JSONResponse):
            return body
        if not isinstance(body, dict):
            return error_answer(400, "invalid_body", 'expected {"key": {...}, "changes": {...}}')

        async def serve() -> Response:
            result = await run_in_threadpool(update_record, mappings[name], body.get("key"), body.get("changes"))
            status = 200 if result.status == "success" else UPDATE_STATUS.get(result.reason, 422)
            outcome = result.reason or result.status
            await audit.add(AuditEntry(_client(request), name, "update", status, outcome, [result.key]))
            return ExactJSONResponse({**asdict(result), "message": scrub(result.message)}, status_code=status)

        return await once.answer(request, _client(request), name, body, serve, error_answer)

    for mapping in mappings.values():
        path, direction = f"/mappings/{mapping.name}/records", f"{mapping.source_zone} → {mapping.target_zone}"
        app.add_api_route(
            path, _bound(push, mapping.name), methods=["POST"], status_code=201,
            summary=f"Push {mapping.name} records ({direction})", description=mapping.description,
            responses=PUSH_RESPONSES, openapi_extra=route_body(records_schema(mapping)),
            name=f"push-{mapping.artifact_slug}",
        )  # fmt: skip
        app.add_api_route(
            path, _bound(update, mapping.name), methods=["PATCH"], responses=UPDATE_RESPONSES,
            summary=f"Update one {mapping.name} record in both zones, or in neither",
            openapi_extra=route_body(update_schema(mapping)), name=f"update-{mapping.artifact_slug}",
        )  # fmt: skip
        app.add_api_route(
            path, _bound(delete, mapping.name), methods=["DELETE"], responses=DELETE_RESPONSES,
            summary=f"Delete one {mapping.name} record from both zones, or from neither",
            openapi_extra=route_body(delete_schema(mapping)), name=f"delete-{mapping.artifact_slug}",
        )  # fmt: skip
    # Any other name: a 404 that lists the registered mappings.
    app.add_api_route("/mappings/{name}/records", push, methods=["POST"], include_in_schema=False)
    app.add_api_route("/mappings/{name}/records", update, methods=["PATCH"], include_in_schema=False)
    app.add_api_route("/mappings/{name}/records", delete, methods=["DELETE"], include_in_schema=False)
    app.add_api_route("/health", health, methods=["GET"], summary="Whether both zones answer")
    add_error_answers(app)
    clients_file = settings.api_clients_file
    watched = None if clients is None or clients_file is None else WatchedClients(clients_file, mappings, clients)
    app.add_middleware(Guard, clients=watched, max_body_bytes=settings.api_max_body_bytes,
                       max_failed_auth=settings.api_max_failed_auth)  # fmt: skip
    paths = {f"/mappings/{name}/records": name for name in mappings}
    serve_documents(app, paths, authenticated=clients is not None)
    if not events_enabled():
        logger.warning("PREFECT_API_URL is not set: pushes are not announced as Prefect events")
    return app


def _client(request: Request) -> str:
    """The authenticated client's name (`anonymous` when the API runs without authentication)."""
    client: ApiClient | None = request.scope.get(CLIENT)
    return "anonymous" if client is None else client.name


def _outside_scope(request: Request, name: str, scope: Scope) -> JSONResponse | None:
    """403 unless the authenticated client may `scope` records of the mapping this route serves (decided here, by
    the route the router chose, so that no other reading of the path can differ from it). A mapping that does not
    exist is answered the same: the answer tells nothing more."""
    client: ApiClient | None = request.scope.get(CLIENT)
    if client is None or client.may(name, scope):  # no client: the API runs without authentication
        return None
    logger.warning("refused %s of %r by client %r: 403 forbidden", scope, name[:80], client.name)
    return error_answer(403, "forbidden", f"client {client.name!r} may not {scope} records of this mapping")


async def _json_body(request: Request, name: str, mappings: dict[str, SyncMapping], max_records: int) -> Any:
    """The parsed body (numbers as exact decimals, never floats), or the error answer to send instead."""
    if name not in mappings:
        registered = ", ".join(sorted(mappings))
        return error_answer(404, "unknown_mapping", f"unknown mapping {name[:80]!r} (registered: {registered})")
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type not in JSON_TYPES and not media_type.endswith("+json"):
        return error_answer(415, "unsupported_media_type", "send the body as JSON, with Content-Type: application/json")
    try:
        body = parse_json(await request.body())
    except ClientDisconnect:  # the client went, or was cut off for sending too slowly (`deployments/server.py`)
        return error_answer(408, "request_timeout", "the body was not received")
    except ValueError as exc:
        return error_answer(400, "invalid_body", f"the request body is not valid JSON: {exc}")
    if isinstance(body, list) and len(body) > max_records:
        detail = f"{len(body)} records in one request; at most {max_records} (ZONESYNC_API_MAX_RECORDS)"
        return error_answer(413, "too_many_records", detail)
    return body


def _bound(route: Any, name: str) -> Any:
    """The route of one mapping (`route(name, request)` with the name fixed)."""

    async def route_of_mapping(request: Request) -> Response:
        return await route(name, request)

    return route_of_mapping
