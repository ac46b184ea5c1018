"""Whatever the rule, SKU and competitor data, a proposal never breaks a guardrail.

Rules are generated as JSON documents and go through ``parse_rule``, so the generator only
produces rules a merchant could save; the guardrail checks below recompute every bound from the
rule and the SKU instead of trusting the engine's trace.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from calibr_pipeline.domain.money import minor_unit_exponent
from calibr_pipeline.domain.rules import (
    CompetitorPriceInput,
    SkuContext,
    compute_target,
    parse_rule,
    rule_to_dict,
)

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
COMPETITORS = (1, 2, 3, 4)
CURRENCIES = ("USD", "EUR", "JPY", "KWD")


def scaled(draw, low: int, high: int, exponent: int) -> Decimal:
    return Decimal(draw(st.integers(low, high))).scaleb(-exponent)


def amount(draw, exponent: int, anchor: Decimal, amount_max: int) -> Decimal:
    """A positive amount: anywhere, within 30 % of ``anchor``, or within 1 % of it, so that
    guardrails, competitor prices and rounding candidates often crowd each other."""
    spread = draw(st.sampled_from(["anywhere", "30", "1"]))
    if spread == "anywhere":
        return scaled(draw, 1, amount_max, exponent)
    unit = Decimal(1).scaleb(-exponent)
    factor = 1 + percent(draw, f"-{spread}", spread) / 100
    return max(unit, (anchor * factor).quantize(unit))


def percent(draw, low: str, high: str) -> Decimal:
    """A percentage with up to two decimals in [low, high]."""
    return scaled(draw, int(Decimal(low) * 100), int(Decimal(high) * 100), 2)


@st.composite
def rule_documents(draw, currency: str, anchor: Decimal) -> dict:
    e = minor_unit_exponent(currency)
    amount_max = 200_000 if e < 3 else 2_000_000
    kind = draw(st.sampled_from(["percent_change", "fixed_change", "set_price", "competitor"]))
    if kind == "percent_change":
        transform = {"kind": kind, "value": str(percent(draw, "-100", "300"))}
    elif kind == "fixed_change":
        transform = {"kind": kind, "value": str(scaled(draw, -amount_max // 4, amount_max // 4, e))}
    elif kind == "set_price":
        transform = {"kind": kind, "value": str(amount(draw, e, anchor, amount_max))}
    else:
        transform = {"kind": kind, "reference": draw(st.sampled_from(["lowest", "average", "median", "competitor"]))}
        if transform["reference"] == "competitor":
            transform["competitor_id"] = draw(st.sampled_from(COMPETITORS))
        transform["mode"] = draw(st.sampled_from(["beat", "match"]))
        if transform["mode"] == "beat":
            if draw(st.booleans()):
                transform["by_percent"] = str(percent(draw, "0", "99.99"))
            else:
                transform["by_amount"] = str(scaled(draw, 0, amount_max // 10, e))

    guardrails: dict = {
        "respect_map": draw(st.booleans()),
        "max_observation_age_hours": draw(st.integers(1, 96)),
    }
    if draw(st.booleans()):
        guardrails["min_margin_pct"] = str(percent(draw, "0", "200"))
    floor = amount(draw, e, anchor, amount_max) if draw(st.booleans()) else None
    ceiling = amount(draw, e, anchor, amount_max) if draw(st.booleans()) else None
    if floor is not None and ceiling is not None and floor > ceiling:
        floor, ceiling = ceiling, floor
    if floor is not None:
        guardrails["absolute_floor"] = str(floor)
    if ceiling is not None:
        guardrails["ceiling"] = str(ceiling)
    if draw(st.booleans()):
        guardrails["max_change_pct"] = str(percent(draw, "0.01", "100"))

    rounding_kind = draw(st.sampled_from(["none", "charm", "step"] if e else ["none", "step"]))
    if rounding_kind == "charm":
        rounding = {"mode": "charm", "ending": str(scaled(draw, 0, 10**e - 1, e))}
    elif rounding_kind == "step":
        rounding = {"mode": "step", "step": str(scaled(draw, 1, 1000 if e == 0 else 500, e))}
    else:
        rounding = None
    return {
        "name": "generated",
        "transform": transform,
        "scope": {"kind": "project"},
        "guardrails": guardrails,
        "rounding": rounding,
    }


@st.composite
def scenarios(draw):
    currency = draw(st.sampled_from(CURRENCIES))
    e = minor_unit_exponent(currency)
    amount_max = 200_000 if e < 3 else 2_000_000
    # Spread over orders of magnitude: cheap items make charm endings and steps coarse.
    current = scaled(draw, 1, min(amount_max, 10 ** draw(st.integers(2, 7))), e)
    rule = parse_rule(draw(rule_documents(currency, current)), currency=currency, known_competitor_ids=COMPETITORS)

    def optional_amount():
        return amount(draw, e, current, amount_max) if draw(st.booleans()) else None

    sku = SkuContext(
        variant_id=1,
        sku="S-1",
        product_type=None,
        vendor=None,
        tags=(),
        current_price=current,
        cost=optional_amount(),
        map_price=optional_amount(),
        currency=currency,
    )
    observations = [
        CompetitorPriceInput(
            observation_id=i,
            competitor_id=draw(st.sampled_from(COMPETITORS)),
            amount=amount(draw, e, current, amount_max),
            observed_at=NOW - timedelta(minutes=draw(st.integers(0, 100 * 60))),
            trusted=draw(st.booleans()) or draw(st.booleans()),
            in_stock=draw(st.booleans()) or draw(st.booleans()),
        )
        for i in range(draw(st.integers(0, 6)))
    ]
    return rule, sku, observations


def bounds(rule, sku) -> tuple[Decimal, Decimal | None]:
    """[low, high] every proposed price must lie in, recomputed from the rule and the SKU."""
    g = rule.guardrails
    unit = Decimal(1).scaleb(-minor_unit_exponent(rule.currency))
    lows = [unit]
    if g.min_margin_pct is not None and sku.cost is not None:
        lows.append(sku.cost * (1 + g.min_margin_pct / 100))
    if g.absolute_floor is not None:
        lows.append(g.absolute_floor)
    if g.respect_map and sku.map_price is not None:
        lows.append(sku.map_price)
    highs = [] if g.ceiling is None else [g.ceiling]
    if g.max_change_pct is not None:
        lows.append(sku.current_price * (1 - g.max_change_pct / 100))
        highs.append(sku.current_price * (1 + g.max_change_pct / 100))
    return max(lows), (min(highs) if highs else None)


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_proposals_never_break_a_guardrail(scenario):
    rule, sku, observations = scenario
    assert parse_rule(rule_to_dict(rule), currency=rule.currency, known_competitor_ids=COMPETITORS) == rule

    proposal = compute_target(rule, sku, observations, now=NOW)
    assert json.loads(json.dumps(proposal.explain)) == proposal.explain
    assert proposal.explain["final_price"] == str(proposal.to_price)
    assert proposal.from_price == sku.current_price
    exponent = minor_unit_exponent(rule.currency)
    unit = Decimal(1).scaleb(-exponent)
    low, high = bounds(rule, sku)

    if rule.transform.kind == "competitor" and len(proposal.explain["steps"]) > 2:
        data = proposal.explain["steps"][1]
        by_id = {o.observation_id: o for o in observations}
        assert sorted(r["observation_id"] for r in data["used"] + data["excluded"]) == sorted(by_id)
        for row in data["used"]:
            used = by_id[row["observation_id"]]
            assert used.trusted and used.in_stock
            assert NOW - used.observed_at <= timedelta(hours=rule.guardrails.max_observation_age_hours)
        assert all(row["reason"] for row in data["excluded"])

    if proposal.status in ("kept", "blocked"):
        assert proposal.to_price == sku.current_price
        assert proposal.reason
    if proposal.status == "kept":
        assert rule.transform.kind == "competitor"
        assert proposal.explain["steps"][1]["used"] == []
    if proposal.status == "blocked":
        # Blocked only when no whole-minor-unit price satisfies every guardrail at once.
        assert high is not None
        assert (low / unit).to_integral_value(ROUND_CEILING) > (high / unit).to_integral_value(ROUND_FLOOR)
        return
    if proposal.status == "kept":
        return

    assert proposal.status == ("change" if proposal.to_price != sku.current_price else "unchanged")
    price = proposal.to_price
    g = rule.guardrails
    assert price > 0
    assert price.as_tuple().exponent == -exponent
    if g.min_margin_pct is not None and sku.cost is not None:
        assert price >= sku.cost * (1 + g.min_margin_pct / 100)
    if g.absolute_floor is not None:
        assert price >= g.absolute_floor
    if g.respect_map and sku.map_price is not None:
        assert price >= sku.map_price
    if g.ceiling is not None:
        assert price <= g.ceiling
    if g.max_change_pct is not None:
        assert sku.current_price * (1 - g.max_change_pct / 100) <= price
        assert price <= sku.current_price * (1 + g.max_change_pct / 100)

    rounding = proposal.explain["rounding"]
    if rule.rounding is not None and not rounding["skipped"]:
        if rule.rounding.mode == "charm":
            assert (price - rule.rounding.ending) % 1 == 0
        else:
            assert price % rule.rounding.step == 0
