"""The stored form of an explain trace: each SKU's own part, plus the part a run shares.

A preview of 100,000 SKUs stores 100,000 traces, so a target keeps only what is its own
(steps 1-8 and the outcome); the rule's header is stored once per run, and the final step,
the clamps and the rounding summary, which repeat the steps, are put back on reading.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from calibr_pipeline.domain.rules import (
    COMPACT_KEY,
    CompetitorPriceInput,
    SkuContext,
    compute_target,
    expand_explain,
    explain_base,
    is_compact_explain,
    parse_rule,
)

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
FULL_KEYS = ["rule", "currency", "variant_id", "sku", "computed_at", "steps", "clamps", "rounding", "status", "reason",
             "final_price", "transform", "guardrails"]


def rule(**overrides):
    document = {
        "name": "Beat competition by 5%",
        "transform": {"kind": "competitor", "reference": "lowest", "mode": "beat", "by_percent": "5"},
        "scope": {"kind": "project"},
        "guardrails": {"min_margin_pct": "20", "ceiling": "999", "max_change_pct": "15", "max_observation_age_hours": 48},
        "rounding": {"mode": "charm", "ending": "0.99"},
    }
    document.update(overrides)
    return parse_rule(document, currency="USD")


def sku(current="199.99", cost="160.00"):
    return SkuContext(variant_id=42, sku="SKU-1", product_type=None, vendor=None, tags=(), current_price=D(current),
                      cost=D(cost) if cost else None, map_price=None, currency="USD")


def obs(obs_id, amount, hours_ago=1.0):
    return CompetitorPriceInput(observation_id=obs_id, competitor_id=obs_id, amount=D(amount), observed_at=NOW - timedelta(hours=hours_ago))


def test_the_stored_part_is_the_skus_own_and_the_header_is_shared():
    the_rule = rule()
    proposal = compute_target(the_rule, sku(), [obs(1, "189.00"), obs(2, "150.00", hours_ago=60)], now=NOW)
    stored = json.loads(proposal.explain_json)
    assert is_compact_explain(stored) and stored[COMPACT_KEY] == 1
    assert list(stored) == [COMPACT_KEY, "steps", "status", "reason", "final_price"]
    # Steps 1-8 only: the final step repeats status, price and reason.
    assert [s["name"] for s in stored["steps"]] == ["inputs", "competitor_data", "transform", "ceiling", "floor", "max_change", "rounding", "quantize"]
    assert (stored["status"], stored["final_price"]) == ("change", "192.99")
    # The header is the rule's and the moment's: one object for every SKU of the run.
    assert proposal.explain_base == {
        "rule": "Beat competition by 5%", "currency": "USD", "computed_at": "2025-03-01T12:00:00+00:00",
        "transform": {"kind": "competitor", "reference": "lowest", "mode": "beat", "by_percent": "5"},
        "guardrails": {"respect_map": True, "max_observation_age_hours": 48, "min_margin_pct": "20", "ceiling": "999", "max_change_pct": "15"},
    }
    other = compute_target(the_rule, sku("50.00", "10.00"), [], now=NOW)
    assert other.explain_base is proposal.explain_base
    assert explain_base(the_rule, NOW + timedelta(seconds=1))["computed_at"] == "2025-03-01T12:00:01+00:00"
    # What a target stores is much smaller than the whole trace (a third off a priced SKU's,
    # over half off one kept for lack of competitor data).
    assert len(proposal.explain_json) * 4 < len(json.dumps(proposal.explain, separators=(",", ":"))) * 3
    assert len(other.explain_json) * 2 < len(json.dumps(other.explain, separators=(",", ":")))


def test_expanding_gives_back_the_whole_trace_key_for_key():
    proposal = compute_target(rule(), sku(), [obs(1, "189.00"), obs(2, "150.00", hours_ago=60)], now=NOW)
    full = expand_explain(json.loads(proposal.explain_json), json.loads(json.dumps(proposal.explain_base)), variant_id=42, sku="SKU-1")
    assert full == proposal.explain and list(full) == FULL_KEYS
    assert full["steps"][-1] == {"step": 9, "name": "final", "status": "change", "to_price": "192.99", "reason": proposal.reason}
    assert full["clamps"] == [{"step": 5, "name": "floor", "before": "179.55", "after": "192.00", "bound": "192.00"}]
    assert full["rounding"] == {"mode": "charm", "ending": "0.99", "before": "192.00", "candidate_below": "191.99",
                                "candidate_above": "192.99", "after": "192.99", "skipped": False}
    assert full["variant_id"] == 42 and full["sku"] == "SKU-1"


def test_step_rounding_summary_and_a_stop_before_rounding():
    stepped = compute_target(rule(rounding={"mode": "step", "step": "0.05"}), sku("100.00", None), [obs(1, "99.02")], now=NOW)
    assert stepped.explain["rounding"] == {"mode": "step", "step": "0.05", "before": "94.069", "candidate_below": "94.05",
                                           "candidate_above": "94.10", "after": "94.05", "skipped": False}
    assert list(stepped.explain["rounding"]) == ["mode", "step", "before", "candidate_below", "candidate_above", "after", "skipped"]
    kept = compute_target(rule(), sku(), [], now=NOW)
    assert kept.explain["rounding"] is None and kept.explain["clamps"] == []
    assert [s["step"] for s in kept.explain["steps"]] == [1, 2, 9]
    no_rounding = compute_target(rule(rounding=None), sku(), [obs(1, "189.00")], now=NOW)
    assert no_rounding.explain["rounding"] is None
    assert {"step": 7, "name": "rounding", "note": "no rounding"} in no_rounding.explain["steps"]


def test_keys_added_later_are_kept_and_whole_traces_read_as_they_are():
    proposal = compute_target(rule(), sku(), [obs(1, "189.00")], now=NOW)
    stored = {**json.loads(proposal.explain_json), "write_time_check": {"decision": "write"}}
    full = expand_explain(stored, proposal.explain_base, variant_id=42, sku="SKU-1")
    assert list(full) == [*FULL_KEYS, "write_time_check"] and full["write_time_check"] == {"decision": "write"}
    revert = {"kind": "revert", "source_run_id": "r", "final_price": "10.00", "reason": "revert of run r"}
    assert expand_explain(revert, None, variant_id=1, sku="A") == revert
    assert expand_explain(revert, proposal.explain_base, variant_id=1, sku="A") == revert
    assert expand_explain(None, None, variant_id=1, sku="A") == {}
    # The whole trace is a copy: changing it leaves the shared header alone.
    proposal.explain["transform"]["kind"] = "changed"
    assert proposal.explain_base["transform"]["kind"] == "competitor"
