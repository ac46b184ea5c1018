"""The copilot SQL policy, pure: parse, refuse, rewrite, verify."""

from __future__ import annotations

import pytest
import sqlglot
from hypothesis import given, settings, strategies as st
from sqlglot import exp

from calibr_pipeline.domain.copilot_sql import ANALYTICS_VIEWS, MAX_ROWS, SqlRefusal, rewrite_query, verify_rewritten


def rewrite(sql, dialect="sqlite"):
    return rewrite_query(sql, tenant_id=7, project_id=9, dialect=dialect)


def code(sql):
    with pytest.raises(SqlRefusal) as info:
        rewrite(sql)
    return info.value.code


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_every_view_read_is_wrapped_in_the_tenant_and_project_predicate(dialect):
    out = rewrite("SELECT m.sku, c.price FROM market_position m JOIN catalog c ON c.sku = m.sku WHERE c.price > 10", dialect).sql
    tree = sqlglot.parse_one(out, read=dialect)
    tables = list(tree.find_all(exp.Table))
    assert {t.name for t in tables} == {"copilot_market_position", "copilot_catalog"}
    for table in tables:
        where = table.find_ancestor(exp.Select).args["where"].sql()
        assert "tenant_id = 7" in where and "project_id = 9" in where
    assert out.endswith(f"LIMIT {MAX_ROWS}")


def test_the_subquery_exposes_only_the_logical_columns():
    out = rewrite("SELECT * FROM catalog").sql
    inner = sqlglot.parse_one(out).find(exp.Subquery).this
    assert [c.name for c in inner.expressions] == list(ANALYTICS_VIEWS["catalog"].columns)
    assert "tenant_id" not in [c.name for c in inner.expressions]


def test_limit_is_kept_when_small_and_forced_when_missing():
    assert rewrite("SELECT sku FROM catalog LIMIT 5").limit == 5
    assert rewrite("SELECT sku FROM catalog").limit == MAX_ROWS
    assert code("SELECT sku FROM catalog LIMIT 1001") == "limit_too_large"


def test_comments_are_dropped_from_what_runs():
    out = rewrite("SELECT sku /* x */ FROM catalog -- ; DROP TABLE shops").sql
    assert "DROP" not in out and "/*" not in out and "--" not in out


@pytest.mark.parametrize("sql,expected", [
    ("DROP TABLE variants", "ddl_statement"),
    ("DELETE FROM catalog", "write_statement"),
    ("PRAGMA table_info(variants)", "pragma"),
    ("ATTACH DATABASE 'x.db' AS x", "attach"),
    ("COPY catalog TO '/tmp/x'", "copy"),
    ("SELECT 1; SELECT 2", "multiple_statements"),
    ("WITH RECURSIVE r(n) AS (SELECT 1) SELECT * FROM r", "recursive_cte"),
    ("SELECT * FROM shops", "table_not_allowed"),
    ("SELECT * FROM sqlite_schema", "system_catalog"),
    ("SELECT * FROM pg_class", "system_catalog"),
    ("SELECT * FROM information_schema.columns", "system_catalog"),
    ("SELECT * FROM nowhere", "unknown_table"),
    ("SELECT pg_sleep(1)", "system_function"),
    ("SELECT lo_import('/etc/passwd')", "function_not_allowed"),
    ("SELECT * FROM catalog a JOIN rules b ON TRUE", "cartesian_join"),
    ("SELECT * FROM catalog LIMIT ALL", "limit_not_literal"),
    ("SELECT * FROM catalog WHERE sku = :sku", "parameter"),
    ("SELECT CAST(sku AS BLOB) FROM catalog", "syntax_not_allowed"),
    ("", "sql_missing"),
    ("SELECT (((((", "parse_error"),
    ("SELECT * FROM (WITH x AS (SELECT sku FROM catalog) SELECT * FROM x) t JOIN shops s ON s.id = t.sku", "table_not_allowed"),
    ("WITH x AS (SELECT sku FROM x) SELECT * FROM x", "unknown_table"),
    ("WITH variants AS (SELECT sku FROM catalog) SELECT * FROM variants", "cte_shadows_view"),
    ("SELECT user", "system_function"),
    ("SELECT current_role FROM catalog", "system_function"),
    ("SELECT * FROM catalog a JOIN catalog b ON a.sku = a.sku", "cartesian_join"),
    ("SELECT * FROM catalog NATURAL JOIN market_position", "cartesian_join"),
    ("SELECT * FROM catalog, LATERAL (SELECT 1) x", "syntax_not_allowed"),
    ("SELECT sku FROM catalog WHERE sku SIMILAR TO 'a%'", "syntax_not_allowed"),
    ("EXPLAIN ANALYZE SELECT * FROM catalog", "forbidden_statement"),
    ("SHOW ALL", "forbidden_statement"),
    ("VALUES (1)", "not_select"),
    ("SELECT $$a$$", "syntax_not_allowed"),
])
def test_refusals(sql, expected):
    assert code(sql) == expected


def test_ctes_set_operations_windows_and_subqueries_are_allowed():
    out = rewrite("WITH t AS (SELECT sku, price FROM catalog) SELECT sku, RANK() OVER (ORDER BY price DESC) AS r FROM t "
                  "WHERE sku IN (SELECT sku FROM market_position WHERE position = 'highest') UNION ALL SELECT sku, 0 FROM rules r JOIN catalog c ON c.sku = r.name").sql
    assert out.count("tenant_id = 7") == 4


def test_verify_catches_an_unpinned_or_foreign_read():
    with pytest.raises(SqlRefusal):
        verify_rewritten("SELECT * FROM copilot_catalog", tenant_id=7, project_id=9, dialect="sqlite")
    with pytest.raises(SqlRefusal):
        verify_rewritten("SELECT * FROM (SELECT * FROM copilot_catalog WHERE tenant_id = 7 AND project_id = 9) AS c JOIN shops s ON 1 = 1",
                         tenant_id=7, project_id=9, dialect="sqlite")
    with pytest.raises(SqlRefusal):
        verify_rewritten("SELECT * FROM copilot_catalog WHERE tenant_id = 7 OR project_id = 9", tenant_id=8, project_id=9, dialect="sqlite")


def test_tenant_ids_come_from_the_caller_as_ints():
    with pytest.raises(ValueError):
        rewrite_query("SELECT 1", tenant_id="7 OR 1=1", project_id=9, dialect="sqlite")


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_is_refused_or_comes_out_pinned(text):
    try:
        result = rewrite(text)
    except SqlRefusal:
        return
    tree = sqlglot.parse_one(result.sql, read="sqlite")
    assert isinstance(tree, (exp.Select, exp.Union, exp.Intersect, exp.Except))
    for table in tree.find_all(exp.Table):
        assert table.name in {v.physical for v in ANALYTICS_VIEWS.values()}


@pytest.mark.parametrize("sql", ["0?", "SELECT 1 ?", "? FROM catalog"])
def test_fragments_the_sql_parser_trips_over_are_refused(sql):
    # Found by hypothesis: "0?" made sqlglot raise a TypeError from inside its parser.
    with pytest.raises(SqlRefusal) as caught:
        rewrite(sql)
    assert caught.value.code == "parse_error"
