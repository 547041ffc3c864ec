"""Pipelines (``conn.pipeline()``) that never hand back a connection stuck in pipeline mode.

When the server goes away while a pipeline waits for its synchronization point (its backend
terminated, its postmaster killed), the last message may be read before the end of the
stream: psycopg raises, but libpq still counts the pipeline's results as pending, stays in
pipeline mode and calls the connection good. The transaction's ROLLBACK that follows is then
refused ("PQsendQuery not allowed in pipeline mode") and the connection would go back to the
pool for another request. Here such a connection is closed instead, which rolls its
transaction back on the server, and the failure is raised as a lost connection
(``psycopg.OperationalError``), which the API answers as the store being unavailable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import pq


@asynccontextmanager
async def pipeline(conn: psycopg.AsyncConnection[Any]) -> AsyncIterator[None]:
    """``conn.pipeline()``; a failure that leaves the connection in pipeline mode closes it
    and is raised as the connection lost."""
    try:
        async with conn.pipeline():
            yield
    except psycopg.Error as exc:
        if conn.closed or conn.pgconn.pipeline_status == pq.PipelineStatus.OFF:
            raise  # lost already, or an error the connection survives in a usable state
        await conn.close()
        raise psycopg.OperationalError(
            f"the connection to the database was lost during a pipeline ({exc})"
        ) from exc
