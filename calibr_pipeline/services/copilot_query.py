"""Read-only execution of copilot SQL (already rewritten by ``domain/copilot_sql.py``).

The second containment layer: even SQL that slipped past the policy cannot write, read
anything but the copilot views, or run for long.

- **SQLite**: a separate connection opened ``mode=ro`` (the file cannot be written through
  it), ``PRAGMA query_only``, no attached databases allowed (``SQLITE_LIMIT_ATTACHED`` 0), an
  authorizer (``set_authorizer``) that allows SELECT, reads of the copilot views (and of the
  tables those views read, only on the views' behalf) and the allow-listed functions, and
  denies everything else, and a progress handler that aborts once the time budget is spent.
- **PostgreSQL**: a transaction that is ``READ ONLY``, runs as the NOLOGIN role
  ``calibr_copilot_reader`` (SELECT on the copilot views only), sets ``app.tenant_id`` so the
  views' security barrier returns the tenant's rows only, and has a ``statement_timeout``.
  The transaction is always rolled back.
"""

from __future__ import annotations

import sqlite3
import time
import urllib.parse
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy.engine import make_url

from calibr_pipeline.domain.copilot_sql import ANALYTICS_VIEWS, MAX_ROWS, SqlRefusal, verify_rewritten
from calibr_pipeline.warehouse.engine import get_engine

READER_ROLE = "calibr_copilot_reader"
DEFAULT_TIME_BUDGET_S = 3.0
PHYSICAL_VIEWS = frozenset(v.physical for v in ANALYTICS_VIEWS.values())
# SQLite function names the model's SQL may call (sqlglot output for the allowed classes),
# plus those the copilot views themselves use (allowed only on a view's behalf).
SQLITE_FUNCTIONS = frozenset(
    {"count", "sum", "avg", "min", "max", "round", "abs", "coalesce", "nullif", "lower", "upper", "length", "trim",
     "substr", "substring", "floor", "ceil", "ceiling", "row_number", "rank", "dense_rank", "iif", "date", "like", "max", "min"}
)
VIEW_ONLY_FUNCTIONS = frozenset({"json_extract"})
# SQLite flattens views into the query, so the authorizer sees reads of the views' base
# tables without naming the view. Those reads are allowed column by column: exactly the
# columns the copilot views use ('' is a table read without a column, e.g. for a join).
# Anything else - shops.access_token, tenants, event_log, copilot_audit - is denied.
BASE_COLUMNS: dict[str, frozenset[str]] = {t: frozenset(c.split() + [""]) for t, c in {
    "competitor_price_observations": "extracted id",
    "competitors": "domain id name trusted",
    "market_positions": "competitor_count currency highest_price lowest_competitor_id lowest_price median_price our_price position "
                        "position_date price_index project_id spread_pct tenant_id variant_id",
    "normalized_price_snapshots": "amount amount_in_project_currency availability competitor_id currency observation_id on_sale "
                                  "project_currency project_id snapshot_date tenant_id variant_id",
    "price_audit": "actor created_at currency event_type from_price project_id run_id sku tenant_id to_price",
    "pricing_rules": "active created_at created_by id name project_id updated_at",
    "products": "id product_type title vendor",
    "projects": "id tenant_id",
    "rule_runs": "completed_at id kind project_id queued_at requested_by rule_id state tenant_id",
    "rule_targets": "action currency from_price proposal_status reason run_id sku state tenant_id to_price",
    "variants": "cost currency id map_price price product_id project_id sku title",
}.items()}


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[dict]
    row_count: int
    truncated: bool
    duration_ms: int


def json_value(value):
    """Rows as JSON: exact decimals as strings, floats through their shortest repr, dates ISO."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else format(value.normalize(), "f")
    if isinstance(value, float):
        return int(value) if value.is_integer() else format(Decimal(repr(value)).normalize(), "f")
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return "<binary>"
    return value


def execute_readonly(warehouse_url: str, sql: str, *, tenant_id: int, project_id: int, max_rows: int = MAX_ROWS,
                     time_budget_s: float = DEFAULT_TIME_BUDGET_S) -> QueryResult:
    """Run rewritten SQL; it is verified once more here (every view read pinned to the tenant and project)."""
    verify_rewritten(sql, tenant_id=tenant_id, project_id=project_id, dialect="sqlite" if warehouse_url.startswith("sqlite") else "postgres")
    return execute_contained(warehouse_url, sql, tenant_id=tenant_id, max_rows=max_rows, time_budget_s=time_budget_s)


def execute_contained(warehouse_url: str, sql: str, *, tenant_id: int, max_rows: int = MAX_ROWS, time_budget_s: float = DEFAULT_TIME_BUDGET_S) -> QueryResult:
    """The database layer alone (no SQL policy): what the connection itself allows. Tests call it with raw SQL."""
    if warehouse_url.startswith("sqlite"):
        return _execute_sqlite(warehouse_url, sql, max_rows=max_rows, time_budget_s=time_budget_s)
    return _execute_postgres(warehouse_url, sql, tenant_id=tenant_id, max_rows=max_rows, time_budget_s=time_budget_s)


def _result(columns: list[str], raw_rows: list, max_rows: int, started: float) -> QueryResult:
    truncated = len(raw_rows) > max_rows
    rows = [{c: json_value(v) for c, v in zip(columns, row)} for row in raw_rows[:max_rows]]
    return QueryResult(columns, rows, len(rows), truncated, int((time.perf_counter() - started) * 1000))


# --- SQLite -----------------------------------------------------------------------------------


def _sqlite_path(warehouse_url: str) -> str:
    database = make_url(warehouse_url).database
    if not database or database == ":memory:":
        raise SqlRefusal("backend_unavailable", "the copilot needs a file-backed SQLite warehouse")
    return database


def sqlite_authorizer(action: int, arg1, arg2, db_name, source):
    """Allow SELECT, reads of the copilot views and of the columns they are built from, and allow-listed functions."""
    if action == sqlite3.SQLITE_SELECT:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_READ:
        if db_name not in (None, "main"):
            return sqlite3.SQLITE_DENY
        table, column = (arg1 or "").lower(), (arg2 or "").lower()
        if table in PHYSICAL_VIEWS or column in BASE_COLUMNS.get(table, ()):
            return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION:
        name = (arg2 or "").lower()
        if name in SQLITE_FUNCTIONS or name in VIEW_ONLY_FUNCTIONS:
            return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_DENY  # writes, DDL, PRAGMA, ATTACH, transactions, recursive CTEs, ...


def _execute_sqlite(warehouse_url: str, sql: str, *, max_rows: int, time_budget_s: float) -> QueryResult:
    path = _sqlite_path(warehouse_url)
    connection = sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=ro", uri=True, timeout=5, isolation_level=None, check_same_thread=False)
    started = time.perf_counter()
    try:
        connection.execute("PRAGMA query_only = 1")
        connection.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 10_000_000)
        connection.set_authorizer(sqlite_authorizer)
        deadline = started + time_budget_s
        connection.set_progress_handler(lambda: 1 if time.perf_counter() > deadline else 0, 2000)
        try:
            cursor = connection.execute(sql)
            columns = [d[0] for d in cursor.description or ()]
            raw = cursor.fetchmany(max_rows + 1)
        except sqlite3.DatabaseError as exc:
            message = str(exc)
            if "interrupted" in message:
                raise SqlRefusal("time_budget_exceeded", f"the query ran longer than {time_budget_s:g} s and was stopped") from None
            if "not authorized" in message or "prohibited" in message:
                raise SqlRefusal("permission_denied", f"the database refused: {message}") from None
            raise SqlRefusal("query_failed", f"the query failed: {message[:200]}") from None
        return _result(columns, raw, max_rows, started)
    finally:
        connection.close()


# --- PostgreSQL -------------------------------------------------------------------------------


def _execute_postgres(warehouse_url: str, sql: str, *, tenant_id: int, max_rows: int, time_budget_s: float) -> QueryResult:
    from sqlalchemy.exc import DBAPIError

    engine = get_engine(warehouse_url)
    started = time.perf_counter()
    with engine.connect() as connection:
        try:
            connection.exec_driver_sql("SET TRANSACTION READ ONLY")
            connection.exec_driver_sql(f"SET LOCAL statement_timeout = {int(time_budget_s * 1000)}")
            connection.exec_driver_sql("SELECT set_config('app.tenant_id', %(tenant)s, true)", {"tenant": str(int(tenant_id))})
            connection.exec_driver_sql(f"SET LOCAL ROLE {READER_ROLE}")
            cursor = connection.exec_driver_sql(sql.replace("%", "%%"))
            columns = list(cursor.keys())
            raw = cursor.fetchmany(max_rows + 1)
            return _result(columns, [tuple(r) for r in raw], max_rows, started)
        except DBAPIError as exc:
            code = getattr(exc.orig, "pgcode", None)
            message = str(exc.orig).splitlines()[0] if exc.orig is not None else "database error"
            if code == "57014":
                raise SqlRefusal("time_budget_exceeded", f"the query ran longer than {time_budget_s:g} s and was stopped") from None
            if code in ("42501", "25006"):
                raise SqlRefusal("permission_denied", f"the database refused: {message}") from None
            if code == "22023" or "role" in message and "does not exist" in message:
                raise SqlRefusal("backend_unavailable", f"the copilot reader role is missing: {message}") from None
            raise SqlRefusal("query_failed", f"the query failed: {message[:200]}") from None
        finally:
            connection.rollback()
