"""What the HTTP entry point answers: status codes by outcome, JSON bodies with exact values, error answers,
and the OpenAPI description of each route's body and responses."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prefect.logging import get_logger
from starlette.exceptions import HTTPException

from zonesync.schemas.errors import SyncError, scrub
from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.results import PushResult
from zonesync.tasks.setup.mapping_docs import record_schema

logger = get_logger("zonesync.api")
PUSH_STATUS = {"success": 201, "pending": 202}


UPDATE_STATUS = {"not_found": 404, "conflict": 409, "unavailable": 503, "busy": 503, "invalid_body": 400}  # else 422


REFUSAL_STATUS = {"duplicate_key": 409, "unavailable": 503, "schema_changed": 503, "invalid_body": 400}  # else 422

PUSH_RESPONSES: dict[int | str, dict[str, Any]] = {
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


UPDATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Updated in both zones."},
    400: PUSH_RESPONSES[400],
    401: PUSH_RESPONSES[401],
    403: {"description": "The client may not update records of this mapping."},
    404: {"description": "No such row."},
    409: {
        "description": "The row changed meanwhile (nothing written), or a request with the same Idempotency-Key "
        "is being served (Retry-After)."
    },
    413: PUSH_RESPONSES[413],
    415: PUSH_RESPONSES[415],
    422: {"description": "The update fails a check; both zones keep their values."},
    503: {"description": "A zone is unavailable or busy; both zones keep their values."},
}


DELETE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **UPDATE_RESPONSES,
    200: {"description": "Deleted from the source, and from the target by the mapping's on_delete policy."},
    403: {"description": "The client may not delete records of this mapping (the delete scope)."},
    409: {
        "description": "The row changed meanwhile, or the target's copy is newer or in a state never deleted "
        "(nothing deleted), or a request with the same Idempotency-Key is being served (Retry-After)."
    },
    422: {"description": "The mapping does not carry deletes (on_delete='ignore'), or the key fails a check."},
}
DELETE_STATUS = {**UPDATE_STATUS, "delete_conflict": 409, "delete_kept": 409}  # else 422


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


def push_status_code(result: PushResult) -> int:
    return PUSH_STATUS.get(result.status) or REFUSAL_STATUS.get(result.reason, 422)


def push_json(result: PushResult) -> dict[str, Any]:
    return {
        "mapping": result.mapping, "status": result.status, "stage": result.stage, "reason": result.reason,
        "message": scrub(result.message),
        "records": [
            {"key": o.key, "status": o.status, "reason": o.reason, "detail": scrub(o.detail)} for o in result.outcomes
        ],
    }  # fmt: skip


def error_answer(status: int, error: str, detail: str) -> JSONResponse:
    return ExactJSONResponse({"error": error, "detail": scrub(detail)}, status_code=status)


def records_schema(mapping: SyncMapping) -> dict[str, Any]:
    record = record_schema(mapping)
    return {"oneOf": [record, {"type": "array", "items": record, "minItems": 1}]}


def route_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "parameters": [IDEMPOTENCY_PARAMETER],
    }


def add_error_answers(app: FastAPI) -> None:
    """Every failure answered as JSON with a reason code: zonesync's errors, Starlette's refusals, and defects."""
    app.add_exception_handler(SyncError, _sync_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


async def _sync_error(_request: Request, exc: Exception) -> JSONResponse:
    logger.error("request failed: %s", exc)
    if isinstance(exc, SyncError) and exc.transient:
        return error_answer(503, "unavailable", exc.for_caller)
    return error_answer(500, "server_error", exc.for_caller if isinstance(exc, SyncError) else "internal error")


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own refusals (no such path, a method a path does not take) with a reason code too."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
    return error_answer(status, code, str(getattr(exc, "detail", "")) or code.replace("_", " "))


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    """A defect, not the caller's mistake: logged with its traceback; the answer says only that."""
    logger.error("request failed unexpectedly", exc_info=exc)
    return error_answer(500, "server_error", "internal error (logged by the server)")
