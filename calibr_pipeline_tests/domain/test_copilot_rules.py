"""The copilot rule policy, pure: tool arguments, JSON Schema, validator, guardrails vs defaults."""

from __future__ import annotations

import pytest

from calibr_pipeline.domain.copilot_rules import COPILOT_RULE_PREFIX, RuleRefusal, check_proposal, check_tool_arguments

RULE = {"name": "beat", "transform": {"kind": "competitor", "reference": "lowest", "mode": "beat", "by_percent": "3"},
        "scope": {"kind": "project"}, "guardrails": {"min_margin_pct": "20"}}


def refusal(fn, *a, **kw):
    with pytest.raises(RuleRefusal) as info:
        fn(*a, **kw)
    return info.value.code


def check(doc, **kw):
    return check_proposal(doc, project_slug="p", currency="USD", **kw)


@pytest.mark.parametrize("args,expected", [
    ({"rule": RULE, "enabled": True}, "rule_enable_forbidden"),
    ({"rule": {**RULE, "active": "yes"}}, "rule_enable_forbidden"),
    ({"rule": RULE, "apply": True}, "apply_forbidden"),
    ({"rule": RULE, "project": "other"}, "cross_project"),
    ({"rule": RULE, "tenant_id": 3}, "cross_project"),
    ({"rule": RULE, "comment": "hi"}, "tool_args_invalid"),
    ({"rule": "x"}, "tool_args_invalid"),
    (["rule"], "tool_args_invalid"),
])
def test_tool_argument_refusals(args, expected):
    assert refusal(check_tool_arguments, args, project_slug="p") == expected


def test_only_the_rule_argument_is_accepted():
    assert check_tool_arguments({"rule": {**RULE}}, project_slug="p") == RULE
    # harmless extras (own project, disabled) are still not part of the tool's contract
    assert refusal(check_tool_arguments, {"rule": RULE, "enabled": False, "project": "p"}, project_slug="p") == "tool_args_invalid"


@pytest.mark.parametrize("doc,expected", [
    ({**RULE, "guardrails": {}}, "no_floor"),
    ({**RULE, "guardrails": {"min_margin_pct": "-5"}}, "negative_margin"),
    ({**RULE, "guardrails": {"min_margin_pct": "20", "max_change_pct": "75"}}, "guardrail_out_of_bounds"),
    ({**RULE, "guardrails": {"min_margin_pct": "20", "max_observation_age_hours": 1000}}, "guardrail_out_of_bounds"),
    ({**RULE, "guardrails": {"min_margin_pct": 20.5}}, "rule_schema_invalid"),
    ({**RULE, "extra": 1}, "rule_schema_invalid"),
    ({**RULE, "currency": "EUR"}, "cross_project"),
    ({**RULE, "transform": {"kind": "competitor", "reference": "lowest", "mode": "beat"}}, "rule_invalid"),
    ({**RULE, "transform": {"kind": "competitor", "reference": "competitor", "competitor_id": 5, "mode": "match"}}, "rule_invalid"),
])
def test_proposal_refusals(doc, expected):
    assert refusal(check, doc) == expected


def test_missing_guardrails_come_from_the_defaults_and_widening_is_always_said():
    checked = check(RULE)
    assert checked.document["guardrails"]["max_change_pct"] == "20"
    assert checked.document["name"] == COPILOT_RULE_PREFIX + "beat"
    assert any("project default of 20 %" in n for n in checked.guardrail_notes)
    wide = check({**RULE, "guardrails": {"min_margin_pct": "5", "max_change_pct": "40", "respect_map": False, "max_observation_age_hours": 96}})
    notes = " ".join(wide.guardrail_notes)
    for phrase in ("min_margin_pct 5 %", "max_change_pct 40 %", "respect_map is off", "max_observation_age_hours 96"):
        assert phrase in notes


def test_names_are_cleaned_of_control_characters():
    checked = check({**RULE, "name": "evil\u202e\nname\x00"})
    assert checked.document["name"] == COPILOT_RULE_PREFIX + "evil name"
