"""The offline planner's documented forms (docs/copilot_simulation.md), end to end on each backend:
prompt -> grammar -> tool call -> containment -> rows or a preview, checked against the seeded data."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from calibr_pipeline.copilot.service import run_copilot
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import PricingRule, RuleRun, RuleTarget


def skus(result):
    return [row["sku"] for row in result["rows"]]


def changes(result):
    return {c["sku"]: str(c["to"]) for c in result["preview"]["price_changes"]}


# (form, command, prompt, check(result))
FORMS = [
    ("most_vs_market", "simulate", "Which of my SKUs are the most expensive vs the market?", lambda r: skus(r)[:2] == ["TENT-1", "BOOT-1"]),
    ("cheapest_vs_market", "simulate", "Which SKUs are the cheapest compared to the market?", lambda r: skus(r)[0] == "TENT-2" and len(r["rows"]) == 5),
    ("top_expensive", "simulate", "Show me the top 3 most expensive products", lambda r: skus(r) == ["TENT-2", "JACKET-2", "TENT-1"]),
    ("top_cheapest", "simulate", "List the top 2 cheapest SKUs", lambda r: skus(r) == ["BOOT-1", "JACKET-1"]),
    ("count_skus", "simulate", "How many SKUs do I have?", lambda r: r["rows"] == [{"skus": 6}]),
    ("count_highest", "simulate", "How many SKUs are priced the highest?", lambda r: r["rows"] == [{"skus": 1}]),
    ("count_cheapest", "simulate", "How many products are the cheapest?", lambda r: r["rows"] == [{"skus": 2}]),
    ("no_competitor_data", "simulate", "Which SKUs have no competitor data?", lambda r: skus(r) == ["BOOT-2"]),
    ("average_margin", "simulate", "What is my average margin?", lambda r: r["rows"] == [{"average_margin_pct": "29.35", "skus_with_cost": 6}]),
    ("margin_below", "simulate", "Which SKUs have a margin below 20%?", lambda r: skus(r) == ["BOOT-2", "JACKET-2"] and r["rows"][0]["margin_pct"] == "-5.56"),
    ("margin_above", "simulate", "Which products have a margin over 45 %?", lambda r: sorted(skus(r)) == ["BOOT-1", "JACKET-1"]),
    ("below_cost", "simulate", "Which products are priced below cost?", lambda r: skus(r) == ["BOOT-2"]),
    ("competitor_prices", "simulate", "Show competitor prices for TENT-1", lambda r: [row["price"] for row in r["rows"]] == [90, 95]),
    ("cheapest_competitor", "simulate", "Which competitor is the cheapest most often?",
     lambda r: r["rows"] == [{"lowest_competitor": "acme-rival-a", "skus": 3}, {"lowest_competitor": "acme-rival-b", "skus": 2}]),
    ("count_per_type", "simulate", "How many SKUs per product type?",
     lambda r: r["rows"] == [{"product_type": t, "skus": 2} for t in ("Boots", "Jackets", "Tents")]),
    ("average_price_by_vendor", "simulate", "What is the average price by vendor?",
     lambda r: r["rows"] == [{"vendor": "Acme", "average_price": 80, "skus": 3}, {"vendor": "Peak", "average_price": "136.67", "skus": 3}]),
    ("list_rules", "simulate", "List my rules", lambda r: r["rows"] == []),
    ("recent_runs", "simulate", "Show the recent rule runs", lambda r: r["rows"] == []),
    ("recent_changes", "simulate", "Show the latest price changes", lambda r: r["rows"] == []),
    ("above_lowest", "simulate", "Which SKUs are more than 5% above the lowest competitor price?",
     lambda r: [(row["sku"], str(row["pct_above"])) for row in r["rows"]] == [("BOOT-1", "20"), ("JACKET-1", "14.29"), ("TENT-1", "11.11")]),
    ("spread_for", "simulate", "What is the price spread for tents?", lambda r: sorted(skus(r)) == ["TENT-1", "TENT-2"]),
    ("what_if_beat", "simulate", "What would beat-lowest-by-3% do to my margin?",
     lambda r: r["preview"]["skus_affected"] == 5 and changes(r)["TENT-1"] == "87.3" and r["preview"]["run_id"] is None and r["rule"]["id"] is None),
    ("what_if_match", "simulate", "What would matching the median competitor price do?",
     lambda r: changes(r) == {"BOOT-1": "57.5", "JACKET-1": "85", "JACKET-2": "127.5", "TENT-1": "92.5", "TENT-2": "215"}),
    ("what_if_increase", "simulate", "What would a 10% price increase do to my prices?",
     lambda r: r["preview"]["skus_affected"] == 5 and changes(r)["TENT-1"] == "110" and r["preview"]["by_status"] == {"blocked": 1, "change": 5}),
    ("propose_beat_margin_round", "propose", "Undercut the cheapest competitor by 2 % on tents but keep 25 % margin, round to .99",
     lambda r: changes(r) == {"TENT-1": "87.99", "TENT-2": "204.99"} and r["rule"]["guardrails"]["min_margin_pct"] == "25"
     and r["rule"]["rounding"] == {"mode": "charm", "ending": "0.99"}),
    ("propose_beat_amount_floor", "propose", "Beat the average competitor price by $5 for vendor acme, never below 55",
     lambda r: changes(r) == {"BOOT-1": "55", "TENT-1": "87.5"} and r["rule"]["guardrails"]["absolute_floor"] == "55"),
    ("propose_match_vendor", "propose", "Match the median competitor price for vendor peak with a minimum margin of 10%",
     lambda r: changes(r) == {"JACKET-2": "127.5", "TENT-2": "215"} and any("below the project default" in n for n in r["guardrail_notes"])),
    ("propose_lower_all", "propose", "Lower all prices by 10% with a floor of 50",
     lambda r: r["preview"]["skus_affected"] == 6 and changes(r)["BOOT-1"] == "54"),
    ("propose_raise_tag", "propose", "Raise prices by 5% on tag outdoor, never change more than 10%",
     lambda r: changes(r)["TENT-1"] == "105" and r["rule"]["scope"] == {"kind": "tag", "values": ["outdoor"]} and r["rule"]["guardrails"]["max_change_pct"] == "10"),
    ("propose_set_price_blocked", "propose", "Set the price of sku BOOT-2 to 99.99",
     lambda r: r["preview"]["by_status"] == {"blocked": 1} and r["preview"]["guardrail_hits"]["blocked"] == 1),
    ("propose_step_rounding", "propose", "Propose a rule to beat the lowest competitor by 1 dollar on jackets, keep at least 30% margin, round to the nearest 5",
     lambda r: changes(r) == {"JACKET-1": "65", "JACKET-2": "130"} and r["rule"]["rounding"] == {"mode": "step", "step": "5"}),
    ("propose_ignore_map", "propose", 'I want to beat the median competitor price by 4% on "Boots", ignore MAP, keep a 20% margin',
     lambda r: changes(r) == {"BOOT-1": "55.2"} and any("respect_map is off" in n for n in r["guardrail_notes"])),
]


@pytest.mark.parametrize("form,command,prompt,check", FORMS, ids=[f[0] for f in FORMS])
def test_offline_planner_form(copilot_world, form, command, prompt, check):
    result = run_copilot(copilot_world["url"], command=command, project_slug="acme-outdoor", prompt=prompt, actor="forms")
    assert result["status"] == "ok", result["refusal"]
    assert result["backend"] == "offline"
    assert check(result), result
    if command == "propose":
        with session_scope(copilot_world["url"]) as session:
            rule = session.get(PricingRule, result["rule"]["id"])
            assert rule.active is False and rule.name.startswith("Copilot: ")
            run = session.get(RuleRun, result["preview"]["run_id"])
            assert run.state == "QUEUED" and run.rule_id == rule.id
            assert session.scalar(select(RuleTarget.id).where(RuleTarget.run_id == run.id).limit(1)) is not None
        assert result["handoff"]["enable"].startswith("calibr rules add --project acme-outdoor --json ")
    else:
        assert "handoff" not in result


def test_at_least_25_forms():
    assert len(FORMS) >= 25


def test_a_second_identical_proposal_never_replaces_the_first(copilot_world):
    prompt = "Raise prices by 2% on tag outdoor, keep 20% margin"
    first = run_copilot(copilot_world["url"], command="propose", project_slug="acme-outdoor", prompt=prompt, actor="forms")
    second = run_copilot(copilot_world["url"], command="propose", project_slug="acme-outdoor", prompt=prompt, actor="forms")
    assert first["rule"]["id"] != second["rule"]["id"]
    assert second["rule"]["name"] == first["rule"]["name"] + " (2)"


def test_simulate_persists_nothing_but_the_audit_row(copilot_world):
    with session_scope(copilot_world["url"]) as session:
        before = (session.query(PricingRule).count(), session.query(RuleRun).count())
    result = run_copilot(copilot_world["url"], command="simulate", project_slug="acme-outdoor", prompt="What would beat the lowest competitor by 1% do?", actor="forms")
    assert result["status"] == "ok" and result["preview"]["skus_affected"] > 0
    with session_scope(copilot_world["url"]) as session:
        assert (session.query(PricingRule).count(), session.query(RuleRun).count()) == before


@pytest.mark.parametrize("command,prompt,code", [
    ("simulate", "write me a poem about tents", "not_understood"),
    ("simulate", "drop table shops", "not_understood"),
    ("propose", "How many SKUs do I have?", "not_a_rule"),
    ("simulate", "Beat the highest competitor by 5%", "not_understood"),
])
def test_what_the_planner_does_not_understand_is_refused_not_guessed(copilot_world, command, prompt, code):
    result = run_copilot(copilot_world["url"], command=command, project_slug="acme-outdoor", prompt=prompt, actor="forms")
    assert result["status"] == "refused" and result["refusal"]["code"] == code
    assert result["sql"] == [] and result["rule"] is None
