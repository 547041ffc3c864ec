"""What the routes read: the check every route runs first (no path or query value the
database could not hold), and request-body schemas for the document.

Installed once for the whole app (``FastAPI(dependencies=...)``), so a NUL or an over-long value
in any parameter is refused with a 4xx naming it, whichever router answers: the platform's
error shape, Open311's for its routes, a policy-violation close for WebSocket handshakes.
"""

from __future__ import annotations

from collections.abc import Iterable
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
        if connection.scope.get("query_string"):  # most requests have none: nothing to parse
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


# --- query parameters, declared for the document ---------------------------------------------
# The list endpoints parse their query in the domain (one value each, blank counts as absent,
# errors that name the field and list what is accepted), so the routes take no typed parameters
# and declare them here instead: the document states the types, enums and bounds the domain
# enforces, and a refusal keeps the domain's words and the one error shape.


# A blank value counts as not given (``ioc.params.one``), so the document admits one.
_BLANK: dict[str, Any] = {"type": "string", "maxLength": 0}
_CONSTRAINTS = frozenset({"enum", "format", "pattern", "minLength", "minimum", "maximum"})


def _or_blank(schema: dict[str, Any]) -> dict[str, Any]:
    if schema.get("type") == "array" or (
        schema.get("type") == "string" and not _CONSTRAINTS & schema.keys()
    ):
        return schema
    return {"anyOf": [schema, _BLANK]}


def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    """One optional query parameter; an array schema is sent repeated (``?state=a&state=b``).
    A single value may also be blank, which means the same as leaving it out."""
    parameter = {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": _or_blank(schema),
    }
    if schema.get("type") == "array":
        parameter |= {"style": "form", "explode": True}
    return parameter


def whole_number(low: int, high: int, default: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high, "default": default}


def one_of(values: Iterable[str], default: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "enum": list(values)}
    if default is not None:
        schema["default"] = default
    return schema


def any_of(values: Iterable[str]) -> dict[str, Any]:
    """Repeatable; each value one of ``values``."""
    return {"type": "array", "items": one_of(values)}


def cursor(listing: str) -> dict[str, Any]:
    """A page cursor: opaque, valid only as the ``next`` of a page this API gave out. Its
    format names the listing it belongs to (a tool that knows the encoding can make them)."""
    return {"type": "string", "format": f"{listing}-cursor"}


def query_parameters(*parameters: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` declaring an operation's query parameters."""
    return {"parameters": list(parameters)}
