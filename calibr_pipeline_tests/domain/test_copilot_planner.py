"""The offline planner, pure: whatever the words, it either refuses to guess or emits tool calls
that pass the containment policies."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from calibr_pipeline.copilot.planner import NotUnderstood, normalize, plan
from calibr_pipeline.domain.copilot_rules import RuleRefusal, check_proposal, check_tool_arguments
from calibr_pipeline.domain.copilot_sql import rewrite_query

WORDS = ("which what how many skus products are the most cheapest expensive vs market show me top 5 list my rules recent runs "
         "price changes beat undercut match lowest median average competitor by 3% $2 on tents for vendor acme tag outdoor keep 25% "
         "margin round to .99 never below 10 above change more than set of sku tent-1 a increase would do ; drop table shops ' \" --").split()


def _contained(p) -> None:
    for call in p.calls:
        if call.name == "query_analytics":
            rewrite_query(call.arguments["sql"], tenant_id=1, project_id=1, dialect="sqlite")
        else:
            document = check_tool_arguments(json.loads(json.dumps(call.arguments)), project_slug="p")
            try:
                check_proposal(document, project_slug="p", currency="USD")
            except RuleRefusal as exc:
                assert exc.code in ("rule_invalid",), exc  # e.g. a 100 % beat: the validator says why


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=14))
def test_word_salad_is_refused_or_contained(words):
    try:
        p = plan(" ".join(words))
    except NotUnderstood:
        return
    _contained(p)


@pytest.mark.parametrize("prompt", [
    "Which of my SKUs are the most expensive vs the market? ; DROP TABLE shops",
    "show competitor prices for x' OR '1'='1",
])
def test_injection_outside_the_grammar_is_not_understood(prompt):
    with pytest.raises(NotUnderstood):
        plan(prompt)


def test_injection_inside_a_quoted_value_stays_a_string_literal():
    import sqlglot
    from sqlglot import exp

    p = plan("what is the price spread for \"tents'); DROP TABLE shops; --\"")
    out = rewrite_query(p.calls[0].arguments["sql"], tenant_id=1, project_id=1, dialect="sqlite").sql
    statements = sqlglot.parse(out, read="sqlite")
    assert len(statements) == 1 and not list(statements[0].find_all(exp.Drop))
    literals = [l.this for l in statements[0].find_all(exp.Literal) if l.is_string]
    assert "tents') drop table shops --" in literals


def test_normalization():
    assert normalize("Beat-lowest-by-3% on $5, round to .99!") == "beat lowest by 3 percent on 5 dollars , round to 0.99"
