"""A read-mostly engine for the monitoring server, with short timeouts.

The pipeline's engine (``warehouse.engine.get_engine``) waits up to 30 s for locks and
has no connect timeout; a scrape must answer within the scraper's timeout even when the
warehouse is down or a host black-holes packets, so the server uses its own engine.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url

CONNECT_TIMEOUT_S = 3
STATEMENT_TIMEOUT_MS = 5000


class WarehouseUnavailable(Exception):
    """The warehouse cannot be reached (message is safe to show: no credentials)."""


def monitoring_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 5}, pool_pre_ping=True)

        def _pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.execute("PRAGMA query_only=ON")  # the monitoring server never writes
            cursor.close()

        event.listen(engine, "connect", _pragmas)
        return engine
    connect_args: dict = {}
    if parsed.get_backend_name() == "postgresql":
        connect_args = {
            "connect_timeout": CONNECT_TIMEOUT_S,
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            "application_name": "calibr-serve",
        }
    return create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2, pool_timeout=CONNECT_TIMEOUT_S, connect_args=connect_args)


def sqlite_file_missing(url: str) -> str | None:
    """The path of a file-based SQLite warehouse that does not exist (connecting would create it)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return None if Path(database).exists() else database


def describe_error(exc: BaseException) -> str:
    """One line naming the failure without SQL parameters or connection secrets."""
    from sqlalchemy.exc import StatementError

    if isinstance(exc, StatementError) and exc.orig is not None:
        exc = exc.orig
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= 300 else text[:299] + "…"


def safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
