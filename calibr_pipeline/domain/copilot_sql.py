"""The copilot's SQL policy: what SQL a language model (or the offline planner) may run, and how it is rewritten.

This is the first containment layer (the executors in ``services/copilot_query.py`` are the
second, the database role and views the third). It is pure: ``sqlglot`` parses, nothing runs.

The contract offered to a model: one ``SELECT`` (CTEs and set operations allowed, recursive
CTEs not) over the *logical* analytics views in :data:`ANALYTICS_VIEWS`, written in
PostgreSQL-flavoured SQL. The policy

1. refuses anything that is not exactly one read-only query (DML, DDL, PRAGMA, ATTACH, COPY,
   SET, ``SELECT ... INTO``, ``FOR UPDATE``, several statements, bind parameters);
2. allows only an allow-list of AST node types and functions (so ``pg_sleep``,
   ``pg_read_file``, ``load_extension``, ``randomblob``, ``generate_series`` ... are refused
   whatever their spelling), only logical view names or the query's own CTEs as tables
   (never ``shops``, ``tenants``, ``pg_*``, ``sqlite_*`` or ``information_schema``), at most
   :data:`MAX_TABLE_REFERENCES` table references and no join without a join condition;
3. forces a ``LIMIT`` of at most :data:`MAX_ROWS`;
4. rewrites every logical view reference into a sub-query of the physical ``copilot_*`` view
   filtered on the caller's tenant and project ids: the tenant predicate comes from the
   rewriter, never from the model;
5. generates the SQL for the target dialect from the checked syntax tree, without comments,
   so what runs is exactly what was checked, and verifies the result once more.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from calibr_pipeline.domain.errors import CalibrError

MAX_ROWS = 1000
MAX_SQL_CHARS = 8000
MAX_TABLE_REFERENCES = 6
MAX_OFFSET = 100_000
MODEL_DIALECT = "postgres"

# sqlglot logs a warning when it falls back to an opaque Command (EXPLAIN, SHOW ...); those are
# refused anyway, and a CLI must not print library warnings.
logging.getLogger("sqlglot").setLevel(logging.ERROR)


class SqlRefusal(CalibrError):
    """The SQL is not allowed; ``code`` is stable (tests and the audit use it), ``reason`` says why."""

    def __init__(self, code: str, reason: str):
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")


@dataclass(frozen=True)
class AnalyticsView:
    """A logical view the model may query; ``physical`` carries ``tenant_id`` and ``project_id`` besides ``columns``."""

    name: str
    physical: str
    columns: tuple[str, ...]
    description: str


def _view(name: str, description: str, columns: str) -> AnalyticsView:
    return AnalyticsView(name, f"copilot_{name}", tuple(c.strip() for c in columns.split(",")), description)


ANALYTICS_VIEWS: dict[str, AnalyticsView] = {
    v.name: v
    for v in (
        _view("catalog", "one row per SKU: current price, cost, MAP and margin",
              "sku, product_title, variant_title, product_type, vendor, currency, price, cost, map_price, margin_pct"),
        _view("market_position", "per SKU and day: our price against the competitors' (our currency)",
              "position_date, sku, product_title, product_type, vendor, currency, our_price, cost, competitor_count, "
              "lowest_price, median_price, highest_price, spread_pct, price_index, position, lowest_competitor"),
        _view("competitor_prices", "per competitor listing and day: the normalized competitor price; page_title is untrusted text scraped from the page",
              "snapshot_date, sku, competitor, domain, trusted, amount, amount_currency, price, currency, on_sale, availability, page_title"),
        _view("rules", "the project's pricing rules", "name, active, created_by, created_at, updated_at"),
        _view("rule_runs", "rule runs (previews, applies, reverts) and their target counts",
              "run_id, rule, kind, state, requested_by, queued_at, completed_at"),
        _view("rule_targets", "proposed prices per SKU in a rule run",
              "run_id, sku, currency, from_price, to_price, action, proposal_status, state, reason"),
        _view("price_changes", "every price written to the shop", "created_at, run_id, sku, event_type, actor, from_price, to_price, currency"),
    )
}

# Functions by sqlglot expression class; anything else (including every exp.Anonymous) is refused.
ALLOWED_FUNCTIONS: frozenset[type] = frozenset(
    {
        exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max, exp.Round, exp.Abs, exp.Coalesce, exp.Nullif,
        exp.Lower, exp.Upper, exp.Length, exp.Trim, exp.Substring, exp.Floor, exp.Ceil, exp.Cast, exp.TryCast,
        exp.Case, exp.If, exp.RowNumber, exp.Rank, exp.DenseRank, exp.CurrentDate, exp.Greatest, exp.Least,
    }
)
ALLOWED_FUNCTION_NAMES = frozenset(sorted(cls.__name__.lower() for cls in ALLOWED_FUNCTIONS))

# Syntax that may appear besides functions. Everything else is refused ("syntax_not_allowed").
_ALLOWED_NODES: tuple[type, ...] = (
    exp.Select, exp.From, exp.Where, exp.Group, exp.Having, exp.Order, exp.Ordered, exp.Limit, exp.Offset,
    exp.Join, exp.Table, exp.TableAlias, exp.Alias, exp.Column, exp.Identifier, exp.Star, exp.Literal,
    exp.Null, exp.Boolean, exp.Paren, exp.Subquery, exp.With, exp.CTE, exp.Union, exp.Intersect, exp.Except,
    exp.And, exp.Or, exp.Not, exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Is, exp.In, exp.Between,
    exp.Like, exp.ILike, exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.Neg, exp.DPipe, exp.DataType,
    exp.DataTypeParam, exp.Distinct, exp.Window, exp.Tuple, exp.Var, exp.Exists, exp.All, exp.Any, exp.Filter,
)

# Unquoted, these are niladic functions in PostgreSQL (``SELECT user`` returns the role name).
_SESSION_KEYWORDS = frozenset({"user", "current_user", "session_user", "current_role", "current_catalog", "current_schema",
                               "system_user", "current_time", "current_timestamp", "localtime", "localtimestamp"})

_SYSTEM_PREFIXES = ("pg_", "sqlite_", "information_schema", "mysql", "sys")
_WAREHOUSE_TABLES = frozenset(
    {
        "tenants", "projects", "shops", "products", "variants", "competitors", "competitor_listings",
        "competitor_price_observations", "fx_rates", "normalized_price_snapshots", "market_positions",
        "event_log", "outbox", "outbox_dead_letters", "alert_deliveries", "pricing_rules", "rule_runs",
        "rule_targets", "price_audit", "price_write_dlq", "reconciliation_mismatches", "rule_run_metrics",
        "warehouse_meta", "probe_results", "sla_reports", "connector_request_stats", "copilot_audit",
        "alembic_version", "api_tokens", "secrets",
    }
)
_WRITE_NODES = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Into, exp.Lock)
_DDL_NODES = (exp.Create, exp.Drop, exp.Alter, exp.TruncateTable)
_FORBIDDEN_STATEMENTS = (exp.Command, exp.Pragma, exp.Set, exp.Copy, exp.Attach, exp.Detach, exp.Use, exp.Transaction,
                         exp.Commit, exp.Rollback, exp.Analyze)


@dataclass(frozen=True)
class RewrittenQuery:
    sql: str  # what runs, in the target dialect
    views: tuple[str, ...]  # logical views read
    limit: int
    notes: tuple[str, ...] = field(default=())


def rewrite_query(sql: object, *, tenant_id: int, project_id: int, dialect: str, max_rows: int = MAX_ROWS) -> RewrittenQuery:
    """Check ``sql`` against the policy and return the tenant-scoped SQL to run, or raise :class:`SqlRefusal`."""
    if not isinstance(tenant_id, int) or not isinstance(project_id, int) or isinstance(tenant_id, bool):
        raise ValueError("tenant_id and project_id must be ints from the caller's session, never from the model")
    if dialect not in ("sqlite", "postgres"):
        raise ValueError(f"unsupported dialect {dialect!r}")
    if not isinstance(sql, str) or not sql.strip():
        raise SqlRefusal("sql_missing", "the query must be a non-empty string")
    if len(sql) > MAX_SQL_CHARS:
        raise SqlRefusal("sql_too_long", f"the query has {len(sql)} characters; at most {MAX_SQL_CHARS} are accepted")
    if "\x00" in sql:
        raise SqlRefusal("parse_error", "the query contains a NUL character")
    _check_leading_keyword(sql)
    try:
        statements = [s for s in sqlglot.parse(sql, read=MODEL_DIALECT) if s is not None]
    except (ParseError, TokenError) as exc:
        raise SqlRefusal("parse_error", f"not valid SQL: {str(exc).splitlines()[0][:200]}") from None
    except (TypeError, ValueError, AttributeError):
        # sqlglot's parser can trip over odd fragments ("0?" raised a TypeError inside it):
        # whatever it cannot turn into a tree is not a query we run.
        raise SqlRefusal("parse_error", "not valid SQL: the parser could not read it") from None
    except RecursionError:
        raise SqlRefusal("parse_error", "the query nests too deeply") from None
    if len(statements) != 1:
        raise SqlRefusal("multiple_statements", f"exactly one statement is allowed, got {len(statements)}")
    tree = statements[0]
    _check_statement_kind(tree)
    cte_names = _check_ctes(tree)
    views = _check_tables(tree, cte_names)
    _check_nodes(tree)
    _check_joins(tree)
    limit, notes = _force_limit(tree, max_rows)
    _scope_views(tree, tenant_id, project_id)
    out = tree.sql(dialect=dialect, comments=False)
    verify_rewritten(out, tenant_id=tenant_id, project_id=project_id, dialect=dialect, cte_names=cte_names)
    return RewrittenQuery(out, tuple(sorted(views)), limit, tuple(notes))


_LEADING_KEYWORDS = {"pragma": "pragma", "attach": "attach", "detach": "attach", "copy": "copy", "vacuum": "forbidden_statement",
                     "load": "forbidden_statement", "call": "forbidden_statement", "do": "forbidden_statement",
                     "listen": "forbidden_statement", "notify": "forbidden_statement", "grant": "ddl_statement",
                     "revoke": "ddl_statement", "reindex": "forbidden_statement", "checkpoint": "forbidden_statement"}


def _check_leading_keyword(sql: str) -> None:
    """Name the statements sqlglot has no tree for (they would otherwise be a bare parse error)."""
    try:
        tokens = sqlglot.tokenize(sql, read=MODEL_DIALECT)
    except (TokenError, ParseError):
        raise SqlRefusal("parse_error", "not valid SQL (tokenizer)") from None
    starts = [tokens[0]] if tokens else []
    starts += [tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t.text == ";"]
    for token in starts:
        code = _LEADING_KEYWORDS.get(token.text.lower())
        if code:
            raise SqlRefusal(code, f"{token.text.upper()} statements are not allowed; only one SELECT")


def _check_statement_kind(tree: exp.Expression) -> None:
    if isinstance(tree, _FORBIDDEN_STATEMENTS):
        word = (tree.name if isinstance(tree, exp.Command) else type(tree).__name__).upper()
        code = {"PRAGMA": "pragma", "ATTACH": "attach", "DETACH": "attach", "COPY": "copy"}.get(word, "forbidden_statement")
        raise SqlRefusal(code, f"{word} statements are not allowed; only one SELECT")
    if isinstance(tree, _WRITE_NODES):
        raise SqlRefusal("write_statement", f"{type(tree).__name__.upper()} writes data; the copilot only reads")
    if isinstance(tree, _DDL_NODES):
        raise SqlRefusal("ddl_statement", f"{type(tree).__name__.upper()} changes the schema; the copilot only reads")
    if not isinstance(tree, (exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Subquery)):
        raise SqlRefusal("not_select", f"only SELECT queries are allowed, got {type(tree).__name__}")
    for node in tree.walk():
        if isinstance(node, _WRITE_NODES):
            raise SqlRefusal("write_statement", f"{type(node).__name__.upper()} inside the query writes or locks data")
        if isinstance(node, _DDL_NODES):
            raise SqlRefusal("ddl_statement", f"{type(node).__name__.upper()} inside the query changes the schema")
        if isinstance(node, _FORBIDDEN_STATEMENTS):
            raise SqlRefusal("forbidden_statement", f"{type(node).__name__} is not allowed")
        if isinstance(node, (exp.Placeholder, exp.Parameter, exp.SessionParameter)):
            raise SqlRefusal("parameter", "bind parameters and session variables are not allowed; write literal values")


def _check_ctes(tree: exp.Expression) -> set[str]:
    names: set[str] = set()
    for with_ in tree.find_all(exp.With):
        if with_.args.get("recursive"):
            raise SqlRefusal("recursive_cte", "WITH RECURSIVE is not allowed (it can loop without end)")
    for cte in tree.find_all(exp.CTE):
        name = cte.alias_or_name.lower()
        if name in ANALYTICS_VIEWS or name in _WAREHOUSE_TABLES or name.startswith(_SYSTEM_PREFIXES) or name.startswith("copilot_"):
            raise SqlRefusal("cte_shadows_view", f"a CTE may not be named like the view or table {name!r}")
        names.add(name)
    return names


def is_cte_reference(table: exp.Table) -> bool:
    """Whether ``table`` names a CTE visible where it stands (SQL scoping, not a global name list):
    CTEs of enclosing WITH clauses; inside a CTE's own body only the CTEs defined before it."""
    name = table.name.lower()
    child: exp.Expression = table
    node = table.parent
    while node is not None:
        with_ = node.args.get("with_") or node.args.get("with") if not isinstance(node, exp.With) else None
        if isinstance(node, exp.With):
            visible = []
            for cte in node.expressions:
                if cte is child:
                    break
                visible.append(cte)
            else:
                visible = list(node.expressions)
            if any(c.alias_or_name.lower() == name for c in visible):
                return True
        elif isinstance(with_, exp.With) and with_ is not child:
            if any(c.alias_or_name.lower() == name for c in with_.expressions):
                return True
        child, node = node, node.parent
    return False


def _table_refusal(name: str, qualified: bool) -> SqlRefusal:
    if name.startswith(_SYSTEM_PREFIXES) or qualified:
        return SqlRefusal("system_catalog", f"{name!r} is a system catalog or another schema; only the analytics views are readable")
    if name in _WAREHOUSE_TABLES or name.startswith("copilot_"):
        return SqlRefusal("table_not_allowed", f"{name!r} is not one of the analytics views ({', '.join(ANALYTICS_VIEWS)})")
    return SqlRefusal("unknown_table", f"{name!r} is not one of the analytics views ({', '.join(ANALYTICS_VIEWS)})")


def _check_tables(tree: exp.Expression, cte_names: set[str]) -> set[str]:
    views: set[str] = set()
    references = 0
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            raise SqlRefusal("function_not_allowed", f"table functions are not allowed ({table.this.sql()[:80]})")
        name = table.name.lower()
        qualified = bool(table.args.get("db") or table.args.get("catalog"))
        if qualified:
            raise _table_refusal(f"{table.args.get('db').name if table.args.get('db') else ''}.{name}".lower(), True)
        references += 1
        if is_cte_reference(table):
            continue
        if name not in ANALYTICS_VIEWS:
            raise _table_refusal(name, False)
        views.add(name)
    if references > MAX_TABLE_REFERENCES:
        raise SqlRefusal("too_many_tables", f"the query reads {references} tables; at most {MAX_TABLE_REFERENCES} are allowed")
    return views


def _check_nodes(tree: exp.Expression) -> None:
    for node in tree.walk():
        if isinstance(node, exp.Func) and not isinstance(node, _ALLOWED_NODES):
            if type(node) not in ALLOWED_FUNCTIONS:
                name = node.name if isinstance(node, exp.Anonymous) else (node.sql_name() if hasattr(node, "sql_name") else type(node).__name__)
                name = (name or type(node).__name__).lower()
                code = "system_function" if name.startswith(("pg_", "sqlite_", "current_setting", "set_config")) else "function_not_allowed"
                raise SqlRefusal(code, f"function {name}() is not allowed (allowed: {', '.join(ALLOWED_FUNCTION_NAMES)})")
            if isinstance(node, (exp.Cast, exp.TryCast)):
                target = node.to.this if isinstance(node.to, exp.DataType) else None
                if target not in (exp.DataType.Type.DECIMAL, exp.DataType.Type.INT, exp.DataType.Type.BIGINT,
                                  exp.DataType.Type.TEXT, exp.DataType.Type.VARCHAR, exp.DataType.Type.DOUBLE,
                                  exp.DataType.Type.FLOAT, exp.DataType.Type.DATE, exp.DataType.Type.BIGDECIMAL):
                    raise SqlRefusal("syntax_not_allowed", f"CAST to {node.to.sql()} is not allowed")
            continue
        if not isinstance(node, _ALLOWED_NODES):
            raise SqlRefusal("syntax_not_allowed", f"{type(node).__name__} is not allowed in a copilot query")
        if isinstance(node, exp.Column) and not node.table and node.name.lower() in _SESSION_KEYWORDS and not node.this.quoted:
            raise SqlRefusal("system_function", f"{node.name} is a session function, not a column")
        if isinstance(node, exp.Literal) and node.is_string and len(node.this) > 500:
            raise SqlRefusal("sql_too_long", "string literals are limited to 500 characters")


def _check_joins(tree: exp.Expression) -> None:
    for join in tree.find_all(exp.Join):
        condition = join.args.get("on")
        using = join.args.get("using")
        if using:
            continue
        columns = list(condition.find_all(exp.Column)) if condition is not None else []
        if not columns:
            raise SqlRefusal("cartesian_join", "every join needs a condition on columns (ON a.x = b.x or USING); cross joins are not allowed")
        qualifiers = {c.table.lower() for c in columns}
        if "" not in qualifiers and len(qualifiers) < 2:
            raise SqlRefusal("cartesian_join", f"the join condition only uses columns of {qualifiers.pop()!r}: it does not relate the two sides")


def _literal_int(node: exp.Expression | None, what: str) -> int | None:
    if node is None:
        return None
    if not (isinstance(node, exp.Literal) and not node.is_string and node.this.isdigit()):
        raise SqlRefusal("limit_not_literal", f"{what} must be a whole number literal")
    return int(node.this)


def _force_limit(tree: exp.Expression, max_rows: int) -> tuple[int, list[str]]:
    notes: list[str] = []
    for node in tree.find_all(exp.Limit):
        _literal_int(node.expression, "LIMIT")
    for node in tree.find_all(exp.Offset):
        offset = _literal_int(node.expression, "OFFSET")
        if offset is not None and offset > MAX_OFFSET:
            raise SqlRefusal("offset_too_large", f"OFFSET {offset} is above {MAX_OFFSET}")
    limit_node = tree.args.get("limit")
    requested = _literal_int(limit_node.expression, "LIMIT") if limit_node is not None else None
    if requested is not None and requested > max_rows:
        raise SqlRefusal("limit_too_large", f"LIMIT {requested} is above the {max_rows}-row cap; ask for at most {max_rows} rows")
    if requested is None:
        tree.set("limit", exp.Limit(expression=exp.Literal.number(max_rows)))
        notes.append(f"LIMIT {max_rows} added")
        requested = max_rows
    return requested, notes


def _scope_views(tree: exp.Expression, tenant_id: int, project_id: int) -> None:
    for table in list(tree.find_all(exp.Table)):
        view = ANALYTICS_VIEWS.get(table.name.lower())
        if view is None or is_cte_reference(table):
            continue  # a CTE
        alias = table.alias or view.name
        inner = (
            exp.select(*[exp.column(c) for c in view.columns])
            .from_(exp.to_table(view.physical))
            .where(exp.and_(exp.column("tenant_id").eq(exp.Literal.number(tenant_id)), exp.column("project_id").eq(exp.Literal.number(project_id))))
        )
        table.replace(exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier(alias))))


def verify_rewritten(sql: str, *, tenant_id: int, project_id: int, dialect: str, cte_names: set[str] | frozenset[str] = frozenset()) -> None:
    """Independent check of the rewriter's output: every table is a physical copilot view read
    through a SELECT whose WHERE pins the tenant and project ids, and there is one statement."""
    statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    if len(statements) != 1:
        raise SqlRefusal("internal_rewrite_check", "rewritten SQL is not one statement")
    physical = {v.physical for v in ANALYTICS_VIEWS.values()}
    for table in statements[0].find_all(exp.Table):
        name = table.name.lower()
        if name not in physical and is_cte_reference(table):
            continue
        if name not in physical or table.args.get("db"):
            raise SqlRefusal("internal_rewrite_check", f"rewritten SQL reads {name!r}")
        select = table.find_ancestor(exp.Select)
        where = select.args.get("where") if select else None
        wanted = {f"tenant_id = {tenant_id}", f"project_id = {project_id}"}
        found = {c.sql() for c in where.find_all(exp.EQ)} if where else set()
        if not wanted <= found or select.args.get("from_") is None or select.args["from_"].this is not table:
            raise SqlRefusal("internal_rewrite_check", f"rewritten SQL reads {name!r} without the tenant predicate")
