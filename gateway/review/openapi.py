"""The review API's OpenAPI 3.1 document, made from the route table and the request models.

`gateway/review/openapi.json` is the committed document the service serves at
/api/v1/openapi.json; `python -m gateway.review.openapi` writes it again after a change, and
a test fails when the two drift or when the router has a route the document lacks.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

DOCUMENT = files("gateway.review") / "openapi.json"

_ERRORS = {
    "401": "no or bad credentials",
    "403": "the user's role does not allow this",
    "404": "unknown order, downtime, held count or queue entry",
    "409": "a stale revision number, or the order is confirmed",
    "422": "invalid request: nothing was written",
}

_CHANGE = {
    "type": "object",
    "description": "What an action wrote: one revision per target it changed.",
    "required": ["change_id", "action", "revisions"],
    "properties": {
        "change_id": {"type": "string", "format": "uuid"},
        "action": {"type": "string"},
        "revisions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["revision_id", "user", "source", "target", "revision", "field"],
                "properties": {
                    "revision_id": {"type": "integer"},
                    "created_at": {"type": "string", "format": "date-time"},
                    "user": {"type": "string"},
                    "source": {"enum": ["web", "cli", "api"]},
                    "target": {
                        "enum": ["order", "order_shift", "downtime", "held_count", "queue_entry"]
                    },
                    "target_key": {"type": "string"},
                    "revision": {"type": "integer", "description": "the target's new revision"},
                    "field": {"type": "string"},
                    "old": {},
                    "new": {},
                    "reason": {"type": "string"},
                },
            },
        },
    },
}

_ERROR = {
    "type": "object",
    "required": ["error", "kind"],
    "properties": {"error": {"type": "string"}, "kind": {"type": "string"}},
}


def generate() -> dict[str, Any]:
    """The document as the code defines it now."""
    from gateway.review.api import API, ROUTES

    schemas: dict[str, Any] = {"Change": _CHANGE, "Error": _ERROR}
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", route.path)
        ]
        params += [
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
            for name in route.query
        ]
        op: dict[str, Any] = {
            "operationId": route.handler_name,
            "summary": route.summary,
            "x-mesgw-role": route.role or "public",
            "security": [{"bearer": []}] if route.role else [],
        }
        if params:
            op["parameters"] = params
        if route.body is not None:
            schema = route.body.model_json_schema(
                by_alias=True, ref_template="#/components/schemas/{model}"
            )
            schemas.update(schema.pop("$defs", {}))
            schemas[route.body.__name__] = schema
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{route.body.__name__}"}
                    }
                },
            }
        writes = route.method == "POST" and not route.path.startswith("/export")
        ok: dict[str, Any] = {"description": "created" if writes else "ok", "content": {}}
        for media in route.produces:
            ok["content"][media] = (
                {"schema": {"$ref": "#/components/schemas/Change"}}
                if writes
                else {"schema": {"type": "object"} if media == "application/json" else {}}
            )
        responses: dict[str, Any] = {"201" if writes else "200": ok}
        for code, text in _ERRORS.items():
            if route.role is None and code in ("401", "403"):
                continue
            responses[code] = {
                "description": text,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        op["responses"] = responses
        paths.setdefault(API + route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mes-gateway review API",
            "version": "1",
            "description": "The clerk's loop: review queue, append-only corrections, order "
            "confirmation, ERP export. Bearer API tokens (`mesgw user token NAME`).",
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


@cache
def document() -> dict[str, Any]:
    """The committed document, as served."""
    loaded: dict[str, Any] = json.loads(DOCUMENT.read_text())
    return loaded


def main() -> None:
    target = Path(str(DOCUMENT))
    target.write_text(dumps(generate()))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
