"""HTTP entry point for applications that write data.

`POST /mappings/{name}/records` runs the real-time push — without a Prefect flow run per request (one costs
about a second); success and pending pushes are announced as Prefect events instead. Pushes of one mapping run
one at a time; the requests that arrive meanwhile are written together as the next batch (one source
transaction, one validation, one target upsert, one flag update), each still answered for its own records.
Start it with `zonesync api` (or `uvicorn zonesync.deployments.api:create_app --factory`). Every request but
/health needs a declared client's key, and writes need the client's scope (`deployments/guard.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
from dataclasses import asdict
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prefect.logging import get_logger
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from zonesync.deployments.documents import serve_documents
from zonesync.deployments.guard import CLIENT, Guard
from zonesync.deployments.idempotency import AnsweredOnce
from zonesync.deployments.watched_clients import WatchedClients
from zonesync.schemas.api_clients import ApiClient, Scope, declared_clients
from zonesync.schemas.errors import SyncError, scrub, short_message
from zonesync.schemas.mapping import SyncMapping
from zonesync.schemas.registry import all_mappings
from zonesync.schemas.settings import ZONES, Zone, get_settings
from zonesync.tasks.bookkeeping.audit import AuditEntry, record
from zonesync.tasks.push.pusher import Pusher
from zonesync.tasks.push.records import parse_json
from zonesync.tasks.reporting.events import emit_push_event, events_enabled
from zonesync.tasks.results import PushResult
from zonesync.tasks.setup.mapping_docs import record_schema, update_schema
from zonesync.tasks.update.rollback import update_record
from zonesync.tasks.zones.engines import get_engine, health_engine
from zonesync.tasks.zones.profiles import HEALTH_SECONDS

logger = get_logger("zonesync.api")
PUSH_STATUS = {"success": 201, "pending": 202}
UPDATE_STATUS = {"not_found": 404, "conflict": 409, "unavailable": 503, "busy": 503, "invalid_body": 400}  # else 422
REFUSAL_STATUS = {"duplicate_key": 409, "unavailable": 503, "schema_changed": 503, "invalid_body": 400}  # else 422
MAX_BATCH_RECORDS = 1000  # records of waiting requests written together (a larger request goes alone)
GATHER_SECONDS = 0.002  # the longest a batch waits, after the previous one, for the clients it expects
# /health answers within ~2 s whatever the zones do: each is given this long (its engine gives up by itself soon
# after: psycopg waits at least 2 s to connect).
HEALTH_WAIT_SECONDS = HEALTH_SECONDS + 0.25
_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: {"description": "In both zones (the source row is flagged synced)."},
    202: {"description": "In the source zone; the target refused or failed, the cron retry carries it."},
    400: {"description": "The body is not JSON, or not an object or array of objects."},
    401: {"description": "No client key, or a wrong one (`Authorization: Bearer <key>`)."},
    403: {"description": "The client may not push records of this mapping."},
    404: {"description": "No such mapping."},
    409: {
        "description": "A record with this key exists already with other values (nothing written), or a request "
        "with the same Idempotency-Key is being served (Retry-After)."
    },
    413: {"description": "The body or its number of records is over the limit; nothing read or written."},
    415: {"description": "The body is not sent as application/json."},
    422: {
        "description": "A record failed the source's checks (unknown column, bad value, missing field), or the "
        "Idempotency-Key was used for another request."
    },
    503: {"description": "The source zone is unavailable; nothing written."},
}
_UPDATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Updated in both zones."},
    400: _RESPONSES[400],
    401: _RESPONSES[401],
    403: {"description": "The client may not update records of this mapping."},
    404: {"description": "No such row."},
    409: {
        "description": "The row changed meanwhile (nothing written), or a request with the same Idempotency-Key "
        "is being served (Retry-After)."
    },
    413: _RESPONSES[413],
    415: _RESPONSES[415],
    422: {"description": "The update fails a check; both zones keep their values."},
    503: {"description": "A zone is unavailable or busy; both zones keep their values."},
}
JSON_TYPES = ("application/json",)  # and any type ending in +json
IDEMPOTENCY_PARAMETER = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
    "description": "Send the request again with the same key (after a timeout, say) to get its first answer again "
                   "instead of a second write; the same key with another body is 422 (kept 24 h by default).",
}  # fmt: skip


class ExactJSONResponse(JSONResponse):
    """JSON whose decimals, dates and timestamps are written as their exact text (never through a float)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str).encode()


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
            status = _status_code(result)
            outcome = result.reason or result.status
            await audit.add(AuditEntry(_client(request), name, "push", status, outcome, result.keys))
            return ExactJSONResponse(_push_json(result), status_code=status)

        return await once.answer(request, _client(request), name, body, serve, _error)

    async def update(name: str, request: Request) -> Response:
        if (refused := _outside_scope(request, name, "update")) is not None:
            return refused
        body = await _json_body(request, name, mappings, max_records)
        if isinstance(body, JSONResponse):
            return body
        if not isinstance(body, dict):
            return _error(400, "invalid_body", 'expected {"key": {...}, "changes": {...}}')

        async def serve() -> Response:
            result = await run_in_threadpool(update_record, mappings[name], body.get("key"), body.get("changes"))
            status = 200 if result.status == "success" else UPDATE_STATUS.get(result.reason, 422)
            outcome = result.reason or result.status
            await audit.add(AuditEntry(_client(request), name, "update", status, outcome, [result.key]))
            return ExactJSONResponse({**asdict(result), "message": scrub(result.message)}, status_code=status)

        return await once.answer(request, _client(request), name, body, serve, _error)

    for mapping in mappings.values():
        path, direction = f"/mappings/{mapping.name}/records", f"{mapping.source_zone} → {mapping.target_zone}"
        app.add_api_route(
            path, _bound(push, mapping.name), methods=["POST"], status_code=201,
            summary=f"Push {mapping.name} records ({direction})", description=mapping.description,
            responses=_RESPONSES, openapi_extra=_body(_records_schema(mapping)), name=f"push-{mapping.artifact_slug}",
        )  # fmt: skip
        app.add_api_route(
            path, _bound(update, mapping.name), methods=["PATCH"], responses=_UPDATE_RESPONSES,
            summary=f"Update one {mapping.name} record in both zones, or in neither",
            openapi_extra=_body(update_schema(mapping)), name=f"update-{mapping.artifact_slug}",
        )  # fmt: skip
    # Any other name: a 404 that lists the registered mappings.
    app.add_api_route("/mappings/{name}/records", push, methods=["POST"], include_in_schema=False)
    app.add_api_route("/mappings/{name}/records", update, methods=["PATCH"], include_in_schema=False)
    app.add_api_route("/health", health, methods=["GET"], summary="Whether both zones answer")
    app.add_exception_handler(SyncError, _sync_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    clients_file = settings.api_clients_file
    watched = None if clients is None or clients_file is None else WatchedClients(clients_file, mappings, clients)
    app.add_middleware(Guard, clients=watched, max_body_bytes=settings.api_max_body_bytes,
                       max_failed_auth=settings.api_max_failed_auth)  # fmt: skip
    paths = {f"/mappings/{name}/records": name for name in mappings}
    serve_documents(app, paths, authenticated=clients is not None)
    if not events_enabled():
        logger.warning("PREFECT_API_URL is not set: pushes are not announced as Prefect events")
    return app


class Coalescer:
    """Runs one push at a time for a mapping; requests that arrive meanwhile are pushed together next.

    Right after a batch, the next one waits (at most `gather_seconds` after the batch ended) for as many requests
    as there were clients in play — those it answered and those already waiting — so that concurrent clients
    keep being pushed together. Without it they settle into two halves that take turns, each waiting for the
    other's batch as well as its own. A lone client never waits: its next request is all that is expected.
    """

    def __init__(
        self, pusher: Pusher, max_records: int = MAX_BATCH_RECORDS, gather_seconds: float = GATHER_SECONDS
    ) -> None:
        self.pusher = pusher
        self.max_records = max_records
        self.gather_seconds = gather_seconds
        self._waiting: list[tuple[list[Any], asyncio.Future[PushResult]]] = []
        self._drainer: asyncio.Task[None] | None = None  # the one push of this mapping running (a second would
        # only compete for the same CPU: measured slower)
        self._arrived = asyncio.Event()
        self._expected = 0  # requests in play when the last batch ended
        self._ended = -math.inf  # when it ended (event loop time)

    async def push(self, records: list[Any]) -> PushResult:
        """This request's result, from the batch it was written in."""
        future: asyncio.Future[PushResult] = asyncio.get_running_loop().create_future()
        self._waiting.append((records, future))
        self._arrived.set()
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        """Push the waiting requests batch by batch until none is left."""
        try:
            while self._waiting:
                await self._gather()
                batch = self._next_batch()
                try:
                    results = await run_in_threadpool(self.pusher.push_many, [records for records, _ in batch])
                except Exception as exc:  # each request raises it, as it would have alone
                    for _, future in batch:
                        _settle(future, exc)
                else:
                    for (_, future), result in zip(batch, results, strict=True):
                        _settle(future, result)
                finally:
                    for _, future in batch:  # only if this task was cancelled: do not leave a request waiting
                        future.cancel()
                self._expected, self._ended = len(batch) + len(self._waiting), asyncio.get_running_loop().time()
        finally:
            self._drainer = None

    async def _gather(self) -> None:
        """Wait, until `gather_seconds` after the last batch ended, for the requests expected (or a full batch)."""
        loop = asyncio.get_running_loop()
        while len(self._waiting) < self._expected and sum(len(r) for r, _ in self._waiting) < self.max_records:
            remaining = self._ended + self.gather_seconds - loop.time()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    def _next_batch(self) -> list[tuple[list[Any], asyncio.Future[PushResult]]]:
        """The longest run of waiting requests within `max_records` (at least one request)."""
        taken, records = 1, len(self._waiting[0][0])
        while taken < len(self._waiting) and records + len(self._waiting[taken][0]) <= self.max_records:
            records += len(self._waiting[taken][0])
            taken += 1
        batch, self._waiting = self._waiting[:taken], self._waiting[taken:]
        return batch


class AuditTrail:
    """Records each answered write (`tasks/bookkeeping/audit.py`) before it is answered; entries that arrive while
    a write is under way go together in the next one (one statement for many concurrent requests)."""

    def __init__(self, intranet: sa.Engine) -> None:
        self.intranet = intranet
        self._waiting: list[tuple[AuditEntry, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def add(self, entry: AuditEntry) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((entry, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_all())
        await future

    async def _write_all(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    await run_in_threadpool(record, self.intranet, [entry for entry, _ in batch])
                finally:  # `record` logs its own failures: the writes it describes stand either way
                    for _, future in batch:
                        if not future.done():
                            future.set_result(None)
        finally:
            self._writer = None


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
    return _error(403, "forbidden", f"client {client.name!r} may not {scope} records of this mapping")


def _settle(future: asyncio.Future[PushResult], outcome: PushResult | Exception) -> None:
    """Answer a waiting request (unless it went away: its records were pushed all the same)."""
    if future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


async def _json_body(request: Request, name: str, mappings: dict[str, SyncMapping], max_records: int) -> Any:
    """The parsed body (numbers as exact decimals, never floats), or the error answer to send instead."""
    if name not in mappings:
        registered = ", ".join(sorted(mappings))
        return _error(404, "unknown_mapping", f"unknown mapping {name[:80]!r} (registered: {registered})")
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type not in JSON_TYPES and not media_type.endswith("+json"):
        return _error(415, "unsupported_media_type", "send the body as JSON, with Content-Type: application/json")
    try:
        body = parse_json(await request.body())
    except ClientDisconnect:  # the client went, or was cut off for sending too slowly (`deployments/server.py`)
        return _error(408, "request_timeout", "the body was not received")
    except ValueError as exc:
        return _error(400, "invalid_body", f"the request body is not valid JSON: {exc}")
    if isinstance(body, list) and len(body) > max_records:
        detail = f"{len(body)} records in one request; at most {max_records} (ZONESYNC_API_MAX_RECORDS)"
        return _error(413, "too_many_records", detail)
    return body


def _bound(route: Any, name: str) -> Any:
    """The route of one mapping (`route(name, request)` with the name fixed)."""

    async def route_of_mapping(request: Request) -> Response:
        return await route(name, request)

    return route_of_mapping


def _records_schema(mapping: SyncMapping) -> dict[str, Any]:
    record = record_schema(mapping)
    return {"oneOf": [record, {"type": "array", "items": record, "minItems": 1}]}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "parameters": [IDEMPOTENCY_PARAMETER],
    }


def _status_code(result: PushResult) -> int:
    return PUSH_STATUS.get(result.status) or REFUSAL_STATUS.get(result.reason, 422)


def _push_json(result: PushResult) -> dict[str, Any]:
    return {
        "mapping": result.mapping, "status": result.status, "stage": result.stage, "reason": result.reason,
        "message": scrub(result.message),
        "records": [
            {"key": o.key, "status": o.status, "reason": o.reason, "detail": scrub(o.detail)} for o in result.outcomes
        ],
    }  # fmt: skip


def _error(status: int, error: str, detail: str) -> JSONResponse:
    return ExactJSONResponse({"error": error, "detail": scrub(detail)}, status_code=status)


async def _sync_error(_request: Request, exc: Exception) -> JSONResponse:
    logger.error("request failed: %s", exc)
    if isinstance(exc, SyncError) and exc.transient:
        return _error(503, "unavailable", exc.for_caller)
    return _error(500, "server_error", exc.for_caller if isinstance(exc, SyncError) else "internal error")


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own refusals (no such path, a method a path does not take) with a reason code too."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
    return _error(status, code, str(getattr(exc, "detail", "")) or code.replace("_", " "))


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    """A defect, not the caller's mistake: logged with its traceback; the answer says only that."""
    logger.error("request failed unexpectedly", exc_info=exc)
    return _error(500, "server_error", "internal error (logged by the server)")


async def health() -> JSONResponse:
    """`ok` when both zones answer a trivial query; 503 naming the zone that does not (never its URL).

    Both zones are asked at once, each on its own short-limited engine (`health_engine`), and given up after
    HEALTH_WAIT_SECONDS: a zone that accepts connections and never answers cannot hold the answer up.
    """
    states = await asyncio.gather(*(_zone_state(zone) for zone in ZONES))
    zones = dict(zip(ZONES, states, strict=True))
    healthy = all(state == "up" for state in zones.values())
    return JSONResponse(
        {"status": "ok" if healthy else "degraded", "zones": zones}, status_code=200 if healthy else 503
    )


async def _zone_state(zone: Zone) -> str:
    """'up' when the zone answers SELECT 1 within HEALTH_WAIT_SECONDS, else 'down' (the reason is logged).

    The check runs in a thread of its own, not a pool's: checks stuck on a silent zone (each ends within the
    health engine's limits, unawaited) must not hold up the next ones, nor the interpreter's exit.
    """
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[None] = loop.create_future()

    def check() -> None:
        try:
            _select_one(zone)
        except Exception as exc:
            outcome: Exception | None = exc
        else:
            outcome = None
        with contextlib.suppress(RuntimeError):  # the loop is gone (server stopped): nobody is waiting
            loop.call_soon_threadsafe(_answer, answered, outcome)

    threading.Thread(target=check, name=f"zonesync-health-{zone}", daemon=True).start()
    try:
        await asyncio.wait_for(answered, HEALTH_WAIT_SECONDS)
    except TimeoutError:
        logger.warning("health: %s zone is down: no answer within %.1f s", zone, HEALTH_WAIT_SECONDS)
        return "down"
    except Exception as exc:  # any failure means "down" here; the reason goes to the log, scrubbed, values hidden
        logger.warning("health: %s zone is down: %s", zone, short_message(exc))
        return "down"
    return "up"


def _select_one(zone: Zone) -> None:
    with health_engine(zone).connect() as conn:
        conn.execute(sa.text("SELECT 1"))


def _answer(answered: asyncio.Future[None], outcome: Exception | None) -> None:
    if answered.done():  # given up already
        return
    if outcome is None:
        answered.set_result(None)
    else:
        answered.set_exception(outcome)
