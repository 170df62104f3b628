"""The API's OpenAPI document and its /docs page, per client: a client is shown the operations of the mappings it
may use (its scopes), never the record shapes of the others. Both need a key, as every route but /health."""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from zonesync.deployments.guard import CLIENT
from zonesync.schemas.api_clients import ApiClient, Scope

_SCOPE_OF_OPERATION: dict[str, Scope] = {"post": "push", "patch": "update", "delete": "delete"}


def serve_documents(app: FastAPI, mapping_of_path: dict[str, str], *, authenticated: bool) -> None:
    """Add GET /openapi.json and GET /docs (the app is made with openapi_url=None), each as the client may see it."""
    full = _with_security(app.openapi(), authenticated=authenticated)
    shown: dict[frozenset[tuple[str, Scope]], dict[str, Any]] = {}

    async def openapi(request: Request) -> JSONResponse:
        client: ApiClient | None = request.scope.get(CLIENT)
        if client is None:  # no authentication (local development): everything
            return JSONResponse(full)
        scopes = frozenset((m, s) for m, granted in client.scopes.items() for s in granted)
        if scopes not in shown:
            shown[scopes] = _for_scopes(full, mapping_of_path, scopes)
        return JSONResponse(shown[scopes])

    async def docs(_request: Request) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - documentation")

    app.add_api_route("/openapi.json", openapi, methods=["GET"], include_in_schema=False)
    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False)


def _for_scopes(
    full: dict[str, Any], mapping_of_path: dict[str, str], scopes: frozenset[tuple[str, Scope]]
) -> dict[str, Any]:
    """The document without the operations on mappings outside `scopes`."""
    document = copy.deepcopy(full)
    paths = {}
    for path, operations in document["paths"].items():
        mapping = mapping_of_path.get(path)
        kept = {
            method: operation for method, operation in operations.items()
            if mapping is None or (mapping, _SCOPE_OF_OPERATION.get(method)) in scopes  # an unknown method: not shown
        }  # fmt: skip
        if kept:
            paths[path] = kept
    document["paths"] = paths
    return document


def _with_security(schema: dict[str, Any], *, authenticated: bool) -> dict[str, Any]:
    """The document says every operation but /health needs a bearer key."""
    if authenticated:
        schema.setdefault("components", {})["securitySchemes"] = {
            "clientKey": {"type": "http", "scheme": "bearer", "description": "a key made by `zonesync api-key new`"}
        }
        schema["security"] = [{"clientKey": []}]
        schema["paths"]["/health"]["get"]["security"] = []
    return schema
