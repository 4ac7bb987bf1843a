"""The OpenAPI 3.1 document of the REST API and the HTML page that renders it.

Both are built once from the route table (``api.ROUTES``) and the schemas (``schemas``), the
same objects that serve and validate requests. The HTML page is self-contained (inline CSS, no
script, no external resources) so it works offline and behind the bearer token.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from scheduler.rest import schemas

if TYPE_CHECKING:
    from scheduler.rest import api

_REASONS = {
    200: "OK",
    400: "Invalid request, unknown execution or vertex, cycle (nothing changed)",
    401: "Missing or wrong bearer token",
    404: "Unknown task, strategy name or route",
    405: "Method not allowed on this path",
    409: "Already registered",
    413: "Body too large or too many items",
    429: "Too many executions",
    503: "Not the leader (writes), or the scheduling loop did not answer in time",
}

_PARAMS = {
    "execution": {
        "name": "execution",
        "in": "path",
        "required": True,
        "description": "The execution (Nextflow run name); pods use schedulerName "
        "<scheduler name>-<execution>.",
        "schema": {"type": "string", "pattern": schemas.EXECUTION_PATTERN},
    },
    "id": {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "The engine's task id (32-bit integer).",
        "schema": {"type": "integer", "format": "int32"},
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _request_body(kind: str, max_items: int) -> dict[str, Any]:
    schema: dict[str, Any]
    if kind == "vertices":
        schema = schemas.list_of("Vertex", max_items)
    elif kind == "edges":
        schema = schemas.list_of("Edge", max_items)
    elif kind == "uids":
        schema = schemas.uid_list(max_items)
    elif kind == "count":
        schema = schemas.BATCH_COUNT
    else:
        schema = _ref(kind)
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _success(kind: str) -> dict[str, Any]:
    content: dict[str, Any]
    if kind == "text":
        content = {"text/plain": {"schema": {"type": "string", "enum": ["0"]}}}
    elif kind == "html":
        content = {"text/html": {"schema": {"type": "string"}}}
    elif kind == "openapi":
        content = {"application/json": {"schema": {"type": "object"}}}
    else:
        content = {"application/json": {"schema": _ref(kind)}}
    return {"description": _REASONS[200], "content": content}


def build(
    routes: Iterable[api.Route], *, max_items: int, version: str, auth: bool
) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document for ``routes``."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        responses: dict[str, Any] = {"200": _success(route.response)}
        statuses = {*route.errors, 405}
        if "{" in route.path or route.body is not None:
            statuses.add(400)  # a bad path parameter or body
        if route.body is not None:
            statuses.add(413)
        for status in sorted(statuses):
            if status == 401 and not auth:
                continue
            responses[str(status)] = {
                "description": _REASONS[status],
                "content": {"application/json": {"schema": _ref("Error")}},
            }
        operation: dict[str, Any] = {
            "operationId": f"{route.operation}_{route.method.lower()}",
            "summary": route.summary,
            "tags": [route.path.split("/")[2] if route.path.startswith("/v1/") else "service"],
            "responses": responses,
        }
        if route.description:
            operation["description"] = route.description
        params = [_PARAMS[n] for n in ("execution", "id") if "{" + n + "}" in route.path]
        if params:
            operation["parameters"] = params
        if route.body is not None:
            operation["requestBody"] = _request_body(route.body, max_items)
        if route.write:
            operation["description"] = (
                operation.get("description", "") + " Leader only: followers answer 503."
            ).strip()
        if route.operation == "health" or not auth:
            operation["security"] = []
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "wfsched Common Workflow Scheduling Interface",
            "version": version,
            "description": (
                "The CWS-compatible REST API of wfsched (nf-cws 2.0.1). Every success is "
                'exactly 200; errors are JSON {"error": ...} and change nothing.'
            ),
        },
        "paths": paths,
        "components": {"schemas": schemas.COMPONENTS},
    }
    if auth:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#222}
h2{border-bottom:1px solid #ccc;margin-top:2rem}
.op{border:1px solid #ddd;border-radius:4px;margin:.8rem 0;padding:.5rem .8rem}
.m{display:inline-block;min-width:4.5rem;font-weight:bold;font-family:monospace}
.GET{color:#1565c0}.POST{color:#2e7d32}.PUT{color:#ef6c00}.DELETE{color:#c62828}
code,pre{background:#f5f5f5;font-size:.85rem}pre{padding:.5rem;overflow:auto}
.s{color:#555;font-size:.9rem}
"""


def _pre(value: Any) -> str:
    return f"<pre>{html.escape(json.dumps(value, indent=2))}</pre>"


def docs_html(doc: dict[str, Any]) -> str:
    """Render the OpenAPI document as one self-contained HTML page."""
    esc = html.escape
    info = doc["info"]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{esc(info['title'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(info['title'])} <small>{esc(info['version'])}</small></h1>",
        f"<p>{esc(info['description'])}</p>",
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>.</p>",
        "<h2>Routes</h2>",
    ]
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            verb = method.upper()
            parts.append(
                f"<div class='op'><span class='m {verb}'>{verb}</span> <code>{esc(path)}</code>"
                f"<div>{esc(op['summary'])}</div>"
            )
            if op.get("description"):
                parts.append(f"<div class='s'>{esc(op['description'])}</div>")
            body = op.get("requestBody")
            if body is not None:
                schema = body["content"]["application/json"]["schema"]
                parts.append("<div class='s'>Request body:</div>" + _pre(schema))
            codes = ", ".join(
                f"{code} {esc(resp['description'])}" for code, resp in op["responses"].items()
            )
            parts.append(f"<div class='s'>Responses: {codes}</div></div>")
    parts.append("<h2>Schemas</h2>")
    for name, schema in doc["components"]["schemas"].items():
        parts.append(f"<h3 id='{esc(name)}'>{esc(name)}</h3>" + _pre(schema))
    parts.append("</body></html>")
    return "\n".join(parts)
