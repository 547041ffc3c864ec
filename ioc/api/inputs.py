"""The check every route runs first: no path or query value the database could not hold.

Installed once for the whole app (``FastAPI(dependencies=...)``), so a NUL or an over-long value
in any parameter is refused with a 4xx naming it, whichever router answers: the platform's
error shape, Open311's for its routes, a policy-violation close for WebSocket handshakes.
"""

from __future__ import annotations

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
