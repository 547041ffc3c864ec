"""What the routes read: the check every route runs first (no path or query value the
database could not hold), and request-body schemas for the document.

Installed once for the whole app (``FastAPI(dependencies=...)``), so a NUL or an over-long value
in any parameter is refused with a 4xx naming it, whichever router answers: the platform's
error shape, Open311's for its routes, a policy-violation close for WebSocket handshakes.
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import WebSocketException, status
from starlette.requests import HTTPConnection

from ioc import params
from ioc.errors import InvalidInput


async def storable_parameters(connection: HTTPConnection) -> None:
    try:
        for name, value in connection.path_params.items():
            if isinstance(value, str):
                params.text(name, value, params.MAX_QUERY_VALUE)
        params.query_of(connection.query_params.multi_items())
    except InvalidInput as exc:
        if connection.scope["type"] == "websocket":
            raise WebSocketException(status.WS_1008_POLICY_VIOLATION, exc.message[:120]) from None
        raise


def body_schema(kind: Any) -> dict[str, Any]:
    """The JSON Schema of a msgspec type with its definitions inlined, for a route's
    ``openapi_extra`` (the document then states exactly what the decoder accepts)."""
    schema = msgspec.json.schema(kind)
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    result: dict[str, Any] = inline(schema)
    return result


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` declaring a required JSON request body of this schema."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
