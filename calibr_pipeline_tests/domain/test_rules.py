from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.domain.rules import (
    CompetitorPriceInput,
    Guardrails,
    PricingRule,
    Rounding,
    RuleValidationError,
    Scope,
    SkuContext,
    Transform,
    compute_target,
    in_scope,
    parse_rule,
    rule_to_dict,
)

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


NO_CHANGE = Transform("percent_change", value=D("0"))
EVERYTHING = Scope("project")
NO_GUARDRAILS = Guardrails()


def make_rule(
    transform: Transform = NO_CHANGE,
    *,
    scope: Scope = EVERYTHING,
    guardrails: Guardrails = NO_GUARDRAILS,
    rounding: Rounding | None = None,
    currency: str = "USD",
    name: str = "test rule",
) -> PricingRule:
    return PricingRule(name, transform, scope, guardrails, rounding, currency)


def make_sku(
    current: str = "100.00",
    *,
    cost: str | None = None,
    map_price: str | None = None,
    currency: str = "USD",
    sku: str = "SKU-1",
    product_type: str | None = "Tent",
    vendor: str | None = "Acme Outdoor",
    tags: tuple[str, ...] = ("Camping", "tents"),
) -> SkuContext:
    return SkuContext(
        variant_id=42,
        sku=sku,
        product_type=product_type,
        vendor=vendor,
        tags=tags,
        current_price=D(current),
        cost=D(cost) if cost is not None else None,
        map_price=D(map_price) if map_price is not None else None,
        currency=currency,
    )


def obs(obs_id: int, competitor_id: int, amount: str, *, hours_ago: float = 1, trusted=True, in_stock=True):
    return CompetitorPriceInput(
        observation_id=obs_id,
        competitor_id=competitor_id,
        amount=D(amount),
        observed_at=NOW - timedelta(hours=hours_ago),
        trusted=trusted,
        in_stock=in_stock,
    )


def beat_lowest(pct: str = "5") -> Transform:
    return Transform("competitor", reference="lowest", mode="beat", by_percent=D(pct))


def step(proposal, name: str) -> dict:
    [entry] = [s for s in proposal.explain["steps"] if s["name"] == name]
    return entry


def target(rule, sku=None, prices=()):
    return compute_target(rule, sku or make_sku(), list(prices), now=NOW)


# -- transforms -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "transform, current, expected",
    [
        (Transform("percent_change", value=D("-5")), "100.00", D("95.00")),
        (Transform("percent_change", value=D("12.5")), "80.00", D("90.00")),
        (Transform("fixed_change", value=D("-2.50")), "19.99", D("17.49")),
        (Transform("fixed_change", value=D("3")), "19.99", D("22.99")),
        (Transform("set_price", value=D("24.95")), "19.99", D("24.95")),
    ],
)
def test_own_price_transforms(transform, current, expected):
    proposal = target(make_rule(transform), make_sku(current))
    assert proposal.status == "change"
    assert proposal.to_price == expected
    assert proposal.from_price == D(current)


COMPETITION = [obs(1, 1, "90.00"), obs(2, 2, "100.00"), obs(3, 3, "120.00"), obs(4, 4, "130.00")]


@pytest.mark.parametrize(
    "transform, expected",
    [
        (beat_lowest("5"), D("85.50")),  # 90 * 0.95
        (Transform("competitor", reference="lowest", mode="beat", by_amount=D("1.01")), D("88.99")),
        (Transform("competitor", reference="lowest", mode="match"), D("90.00")),
        (Transform("competitor", reference="average", mode="match"), D("110.00")),  # (90+100+120+130)/4
        (Transform("competitor", reference="median", mode="match"), D("110.00")),  # (100+120)/2
        (Transform("competitor", reference="median", mode="beat", by_percent=D("10")), D("99.00")),
        (Transform("competitor", reference="competitor", competitor_id=3, mode="match"), D("120.00")),
        (Transform("competitor", reference="competitor", competitor_id=3, mode="beat", by_amount=D("5")), D("115.00")),
    ],
)
def test_competitor_transforms(transform, expected):
    proposal = target(make_rule(transform), make_sku("105.00"), COMPETITION)
    assert proposal.to_price == expected
    assert proposal.status == "change"


def test_average_that_does_not_divide_evenly_is_rounded_only_at_the_end():
    prices = [obs(1, 1, "10.00"), obs(2, 2, "10.00"), obs(3, 3, "10.01")]
    proposal = target(make_rule(Transform("competitor", reference="average", mode="match")), make_sku("12.00"), prices)
    assert D(step(proposal, "transform")["reference_price"]) == D("30.01") / 3
    assert proposal.to_price == D("10.00")


def test_median_of_an_odd_count_is_the_middle_price():
    prices = [obs(1, 1, "10.00"), obs(2, 2, "50.00"), obs(3, 3, "11.00")]
    proposal = target(make_rule(Transform("competitor", reference="median", mode="match")), make_sku("12.00"), prices)
    assert proposal.to_price == D("11.00")


def test_reference_competitor_ignores_other_competitors_and_uses_its_lowest_listing():
    prices = [obs(1, 1, "50.00"), obs(2, 7, "80.00"), obs(3, 7, "75.00")]
    rule = make_rule(Transform("competitor", reference="competitor", competitor_id=7, mode="match"))
    proposal = target(rule, make_sku("90.00"), prices)
    assert proposal.to_price == D("75.00")
    competitor_step = step(proposal, "competitor_data")
    assert [row["observation_id"] for row in competitor_step["used"]] == [2, 3]
    assert competitor_step["excluded"][0]["reason"] == "not competitor 7"


# -- competitor data selection and "kept" ------------------------------------------------------


def test_stale_untrusted_and_out_of_stock_observations_are_excluded_with_reasons():
    prices = [
        obs(1, 1, "50.00", hours_ago=49),
        obs(2, 2, "60.00", trusted=False),
        obs(3, 3, "70.00", in_stock=False),
        obs(4, 4, "80.00", hours_ago=48),  # exactly at the limit still counts
        obs(5, 5, "10.00", hours_ago=72, trusted=False),
    ]
    proposal = target(make_rule(Transform("competitor", reference="lowest", mode="match")), make_sku("90.00"), prices)
    assert proposal.to_price == D("80.00")
    data = step(proposal, "competitor_data")
    assert data["used"] == [
        {
            "observation_id": 4,
            "competitor_id": 4,
            "amount": "80.00",
            "observed_at": (NOW - timedelta(hours=48)).isoformat(),
            "age_hours": "48.00",
        }
    ]
    reasons = {row["observation_id"]: row["reason"] for row in data["excluded"]}
    assert reasons == {
        1: "older than 48 h",
        2: "competitor not trusted",
        3: "out of stock",
        5: "older than 48 h; competitor not trusted",
    }
    assert data["excluded"][0]["age_hours"] == "49.00"


def test_max_observation_age_is_configurable():
    rule = make_rule(
        Transform("competitor", reference="lowest", mode="match"), guardrails=Guardrails(max_observation_age_hours=2)
    )
    proposal = target(rule, make_sku("90.00"), [obs(1, 1, "50.00", hours_ago=3), obs(2, 2, "60.00", hours_ago=1.5)])
    assert proposal.to_price == D("60.00")


def test_no_competitor_data_keeps_the_current_price():
    proposal = target(make_rule(beat_lowest()), make_sku("90.00"), [])
    assert proposal.status == "kept"
    assert proposal.to_price == proposal.from_price == D("90.00")
    assert proposal.reason == "no usable competitor data: no competitor prices observed"
    assert proposal.explain["steps"][-1] == {
        "step": 9,
        "name": "final",
        "status": "kept",
        "to_price": "90.00",
        "reason": proposal.reason,
    }


def test_only_unusable_competitor_data_keeps_the_price_and_says_why():
    proposal = target(make_rule(beat_lowest()), make_sku("90.00"), [obs(7, 1, "50.00", hours_ago=100)])
    assert proposal.status == "kept"
    assert proposal.to_price == D("90.00")
    assert "#7: older than 48 h" in proposal.reason


def test_non_competitor_transforms_ignore_competitor_data():
    proposal = target(make_rule(Transform("set_price", value=D("9.00"))), make_sku("10.00"), [obs(1, 1, "1.00")])
    assert proposal.to_price == D("9.00")
    assert step(proposal, "competitor_data") == {
        "step": 2,
        "name": "competitor_data",
        "note": "not used by a set_price transform",
    }


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        compute_target(make_rule(), make_sku(), [], now=datetime(2025, 3, 1))
    naive = CompetitorPriceInput(1, 1, D("10"), datetime(2025, 3, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        compute_target(make_rule(beat_lowest()), make_sku(), [naive], now=NOW)


# -- scope ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scope, expected",
    [
        (Scope("project"), True),
        (Scope("product_type", ("tent",)), True),
        (Scope("product_type", ("Sleeping Bag", "TENT")), True),
        (Scope("product_type", ("Tents",)), False),
        (Scope("vendor", ("acme outdoor",)), True),
        (Scope("vendor", ("Acme",)), False),
        (Scope("tag", ("TENTS",)), True),
        (Scope("tag", ("camping ",)), True),
        (Scope("tag", ("hiking",)), False),
        (Scope("skus", ("SKU-1", "SKU-2")), True),
        (Scope("skus", ("sku-1",)), False),  # SKUs are identifiers: exact
    ],
)
def test_scope(scope, expected):
    assert in_scope(make_rule(scope=scope), make_sku()) is expected


def test_scope_on_missing_attributes():
    sku = make_sku(product_type=None, vendor=None, tags=())
    assert not in_scope(make_rule(scope=Scope("product_type", ("tent",))), sku)
    assert not in_scope(make_rule(scope=Scope("vendor", ("acme",))), sku)
    assert not in_scope(make_rule(scope=Scope("tag", ("tents",))), sku)
    assert in_scope(make_rule(scope=Scope("project")), sku)


# -- guardrails -------------------------------------------------------------------------------


def test_ceiling_clamps_down_and_is_recorded():
    rule = make_rule(Transform("percent_change", value=D("50")), guardrails=Guardrails(ceiling=D("120.00")))
    proposal = target(rule, make_sku("100.00"))
    assert proposal.to_price == D("120.00")
    assert proposal.explain["clamps"] == [
        {"step": 4, "name": "ceiling", "before": "150.00", "after": "120.00", "bound": "120.00"}
    ]
    assert "limited by ceiling" in proposal.reason


def test_margin_floor_clamps_up():
    rule = make_rule(beat_lowest("10"), guardrails=Guardrails(min_margin_pct=D("25")))
    proposal = target(rule, make_sku("100.00", cost="70.00"), [obs(1, 1, "90.00")])  # 81 < 70 * 1.25
    assert proposal.to_price == D("87.50")
    floor = step(proposal, "floor")
    assert floor["components"] == {"minimum_price": "0.01", "margin": "87.50"}
    assert floor["floor_source"] == "margin"
    assert proposal.explain["clamps"] == [
        {"step": 5, "name": "floor", "before": "81.00", "after": "87.50", "bound": "87.50"}
    ]


def test_margin_floor_without_cost_is_not_applicable_and_no_cost_is_invented():
    rule = make_rule(Transform("set_price", value=D("5.00")), guardrails=Guardrails(min_margin_pct=D("25")))
    proposal = target(rule, make_sku("100.00", cost=None))
    assert proposal.to_price == D("5.00")
    floor = step(proposal, "floor")
    assert "margin" not in floor["components"]
    assert "cost unknown: the 25 % margin floor is not applicable" in floor["notes"]


def test_fractional_margin_floor_is_shown_exactly():
    rule = make_rule(Transform("set_price", value=D("1.00")), guardrails=Guardrails(min_margin_pct=D("15")))
    proposal = target(rule, make_sku("20.00", cost="10.37"))
    assert step(proposal, "floor")["bound"] == "11.9255"
    assert proposal.to_price == D("11.93")


def test_quantize_nudges_above_a_fractional_floor():
    # Half-up turns the 10.004 floor into 10.00, which is below it: nudged one cent up.
    rule = make_rule(Transform("set_price", value=D("1.00")), guardrails=Guardrails(min_margin_pct=D("0.04")))
    proposal = target(rule, make_sku("20.00", cost="10.00"))
    assert proposal.to_price == D("10.01")
    assert step(proposal, "quantize") == {
        "step": 8, "name": "quantize", "before": "10.004", "quantized": "10.00", "after": "10.01", "nudged": True,
    }


def test_absolute_floor_clamps_up():
    rule = make_rule(Transform("set_price", value=D("5.00")), guardrails=Guardrails(absolute_floor=D("9.50")))
    assert target(rule, make_sku("10.00")).to_price == D("9.50")


def test_map_is_a_floor_when_respected():
    rule = make_rule(Transform("set_price", value=D("5.00")))
    proposal = target(rule, make_sku("10.00", map_price="8.99"))
    assert proposal.to_price == D("8.99")
    assert step(proposal, "floor")["floor_source"] == "map"


def test_map_is_ignored_when_not_respected():
    rule = make_rule(Transform("set_price", value=D("5.00")), guardrails=Guardrails(respect_map=False))
    proposal = target(rule, make_sku("10.00", map_price="8.99"))
    assert proposal.to_price == D("5.00")
    assert "MAP not respected by this rule" in step(proposal, "floor")["notes"]


def test_highest_floor_component_wins():
    guardrails = Guardrails(min_margin_pct=D("10"), absolute_floor=D("12.00"))
    rule = make_rule(Transform("set_price", value=D("1.00")), guardrails=guardrails)
    proposal = target(rule, make_sku("15.00", cost="10.00", map_price="13.00"))
    assert proposal.to_price == D("13.00")
    assert step(proposal, "floor")["components"] == {
        "minimum_price": "0.01",
        "margin": "11.00",
        "absolute_floor": "12.00",
        "map": "13.00",
    }


def test_price_never_drops_to_zero():
    rule = make_rule(Transform("percent_change", value=D("-100")))
    proposal = target(rule, make_sku("10.00"))
    assert proposal.to_price == D("0.01")
    assert step(proposal, "floor")["floor_source"] == "minimum_price"


def test_floor_above_ceiling_is_blocked():
    rule = make_rule(Transform("set_price", value=D("10.00")), guardrails=Guardrails(ceiling=D("11.00")))
    proposal = target(rule, make_sku("10.50", map_price="12.50"))
    assert proposal.status == "blocked"
    assert proposal.to_price == proposal.from_price == D("10.50")
    assert proposal.reason == "floor 12.50 (map) above ceiling 11.00"


@pytest.mark.parametrize(
    "transform, expected, clamp_bound",
    [
        (Transform("percent_change", value=D("-30")), D("90.00"), "90.00"),
        (Transform("percent_change", value=D("30")), D("110.00"), "110.00"),
        (Transform("percent_change", value=D("-5")), D("95.00"), None),
    ],
)
def test_max_change_band_in_both_directions(transform, expected, clamp_bound):
    rule = make_rule(transform, guardrails=Guardrails(max_change_pct=D("10")))
    proposal = target(rule, make_sku("100.00"))
    assert proposal.to_price == expected
    band = step(proposal, "max_change")
    assert (band["band_low"], band["band_high"]) == ("90.00", "110.00")
    assert band["clamped"] is (clamp_bound is not None)
    if clamp_bound:
        assert proposal.explain["clamps"][-1]["bound"] == clamp_bound


def test_band_below_the_floor_is_blocked():
    # Cost went up: the floor is 30 % above today's price and we may only move 10 % a run.
    rule = make_rule(Transform("set_price", value=D("10.00")), guardrails=Guardrails(max_change_pct=D("10"), min_margin_pct=D("30")))
    proposal = target(rule, make_sku("100.00", cost="100.00"))
    assert proposal.status == "blocked"
    assert proposal.to_price == D("100.00")
    assert proposal.reason.startswith("floor 130.00 (margin) above the max-change band")


def test_band_above_the_ceiling_is_blocked():
    rule = make_rule(Transform("set_price", value=D("10.00")), guardrails=Guardrails(max_change_pct=D("10"), ceiling=D("80.00")))
    proposal = target(rule, make_sku("100.00"))
    assert proposal.status == "blocked"
    assert proposal.reason.startswith("ceiling 80.00 below the max-change band")


def test_band_never_pushes_below_the_floor():
    guardrails = Guardrails(max_change_pct=D("50"), absolute_floor=D("95.00"))
    rule = make_rule(Transform("percent_change", value=D("-40")), guardrails=guardrails)
    proposal = target(rule, make_sku("100.00"))
    assert proposal.to_price == D("95.00")


def test_no_whole_minor_unit_between_bounds_is_blocked():
    # Built directly: parse_rule refuses sub-cent bounds, but the engine must not crash on them.
    guardrails = Guardrails(absolute_floor=D("10.001"), ceiling=D("10.009"))
    proposal = target(make_rule(Transform("set_price", value=D("10.005")), guardrails=guardrails), make_sku("10.00"))
    assert proposal.status == "blocked"
    assert "no price in whole USD minor units" in proposal.reason


def test_currency_mismatch_is_blocked():
    proposal = target(make_rule(currency="EUR"), make_sku(currency="USD"))
    assert proposal.status == "blocked"
    assert proposal.to_price == proposal.from_price
    assert "USD" in proposal.reason and "EUR" in proposal.reason


# -- rounding ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, ending, expected",
    [
        ("19.50", "0.99", "18.99"),
        ("19.99", "0.99", "19.99"),
        ("20.00", "0.99", "19.99"),
        ("20.97", "0.95", "20.95"),
        ("20.94", "0.95", "19.95"),
        ("20.50", "0.00", "20.00"),
    ],
)
def test_charm_rounds_down_to_the_ending(raw, ending, expected):
    rule = make_rule(Transform("set_price", value=D(raw)), rounding=Rounding("charm", ending=D(ending)))
    proposal = target(rule, make_sku("30.00"))
    assert proposal.to_price == D(expected)
    assert proposal.explain["rounding"]["after"] == expected


def test_charm_goes_up_when_rounding_down_breaks_the_floor():
    rule = make_rule(
        Transform("set_price", value=D("19.50")),
        guardrails=Guardrails(absolute_floor=D("19.25")),
        rounding=Rounding("charm", ending=D("0.99")),
    )
    proposal = target(rule, make_sku("30.00"))
    assert proposal.to_price == D("19.99")
    rounding = step(proposal, "rounding")
    assert (rounding["candidate_below"], rounding["candidate_above"]) == ("18.99", "19.99")


def test_charm_is_skipped_when_no_candidate_fits_and_guardrails_win():
    rule = make_rule(
        Transform("set_price", value=D("19.50")),
        guardrails=Guardrails(absolute_floor=D("19.25"), ceiling=D("19.75")),
        rounding=Rounding("charm", ending=D("0.99")),
    )
    proposal = target(rule, make_sku("30.00"))
    assert proposal.status == "change"
    assert proposal.to_price == D("19.50")
    assert proposal.explain["rounding"]["skipped"] is True
    assert "rounding skipped: no price ending in 0.99 between 19.25 and 19.75" in proposal.reason


def test_charm_respects_the_max_change_band():
    rule = make_rule(
        Transform("percent_change", value=D("-50")),
        guardrails=Guardrails(max_change_pct=D("10")),
        rounding=Rounding("charm", ending=D("0.99")),
    )
    proposal = target(rule, make_sku("20.00"))  # band [18, 22]: 17.99 breaks it, 18.99 fits
    assert proposal.to_price == D("18.99")


@pytest.mark.parametrize(
    "raw, step_size, currency, expected",
    [
        ("19.53", "0.05", "USD", "19.50"),
        ("19.50", "0.05", "USD", "19.50"),
        ("1234", "10", "JPY", "1230"),
        ("1239.6", "1", "JPY", "1239"),
    ],
)
def test_step_rounds_down_to_a_multiple(raw, step_size, currency, expected):
    rule = make_rule(
        Transform("set_price", value=D(raw)), rounding=Rounding("step", step=D(step_size)), currency=currency
    )
    proposal = target(rule, make_sku("5000", currency=currency))
    assert proposal.to_price == D(expected)


def test_step_goes_up_when_rounding_down_breaks_the_floor():
    rule = make_rule(
        Transform("set_price", value=D("1234")),
        guardrails=Guardrails(absolute_floor=D("1232")),
        rounding=Rounding("step", step=D("10")),
        currency="JPY",
    )
    assert target(rule, make_sku("5000", currency="JPY")).to_price == D("1240")


def test_quantize_uses_the_currency_minor_unit():
    for currency, raw, expected in [("JPY", "1234.5", "1235"), ("KWD", "1.2345", "1.235"), ("EUR", "1.005", "1.01")]:
        proposal = target(make_rule(Transform("set_price", value=D(raw)), currency=currency), make_sku("9", currency=currency))
        assert str(proposal.to_price) == expected


def test_quantize_nudges_inside_the_ceiling():
    # Half-up would give 10.01, above the ceiling once the band allows only up to 10.005.
    rule = make_rule(Transform("percent_change", value=D("50")), guardrails=Guardrails(max_change_pct=D("0.05")))
    proposal = target(rule, make_sku("10.00"))
    assert proposal.to_price == D("10.00")
    assert proposal.status == "unchanged"
    quantize_step = step(proposal, "quantize")
    assert quantize_step["quantized"] == "10.01" and quantize_step["nudged"] is True


def test_unchanged_when_target_equals_current():
    proposal = target(make_rule(Transform("competitor", reference="lowest", mode="match")), make_sku("90.00"), [obs(1, 1, "90")])
    assert proposal.status == "unchanged"
    assert proposal.to_price == D("90.00")
    assert proposal.reason == "target equals the current price 90.00"


# -- explain trace ----------------------------------------------------------------------------


def test_explain_trace_is_json_safe_and_complete():
    rule = parse_rule(
        {
            "name": "Beat competition by 5%",
            "transform": {"kind": "competitor", "reference": "lowest", "mode": "beat", "by_percent": "5"},
            "scope": {"kind": "tag", "values": ["tents"]},
            "guardrails": {"min_margin_pct": "20", "ceiling": "999", "max_change_pct": "15", "max_observation_age_hours": 48},
            "rounding": {"mode": "charm", "ending": "0.99"},
        },
        currency="USD",
    )
    sku = make_sku("199.99", cost="160.00")
    proposal = compute_target(rule, sku, [obs(1, 1, "189.00"), obs(2, 2, "150.00", hours_ago=60)], now=NOW)
    explain = proposal.explain
    assert json.loads(json.dumps(explain)) == explain
    assert explain["rule"] == "Beat competition by 5%"
    assert explain["transform"] == {"kind": "competitor", "reference": "lowest", "mode": "beat", "by_percent": "5"}
    assert explain["computed_at"] == "2025-03-01T12:00:00+00:00"
    assert [(s["step"], s["name"]) for s in explain["steps"]] == [
        (1, "inputs"),
        (2, "competitor_data"),
        (3, "transform"),
        (4, "ceiling"),
        (5, "floor"),
        (6, "max_change"),
        (7, "rounding"),
        (8, "quantize"),
        (9, "final"),
    ]
    assert explain["steps"][0] == {
        "step": 1,
        "name": "inputs",
        "current_price": "199.99",
        "cost": "160.00",
        "map_price": None,
        "currency": "USD",
    }
    assert step(proposal, "transform")["raw_price"] == "179.55"
    # 179.55 < margin floor 192 -> clamped up; then charm 191.99 breaks the floor -> 192.99.
    assert explain["clamps"] == [{"step": 5, "name": "floor", "before": "179.55", "after": "192.00", "bound": "192.00"}]
    assert explain["rounding"]["after"] == "192.99"
    assert explain["final_price"] == "192.99" and explain["status"] == "change"
    assert proposal.to_price == D("192.99")


def test_blocked_trace_stops_at_the_blocking_step():
    rule = make_rule(Transform("set_price", value=D("10.00")), guardrails=Guardrails(ceiling=D("11.00")))
    proposal = target(rule, make_sku("10.50", map_price="12.50"))
    assert [s["name"] for s in proposal.explain["steps"]] == [
        "inputs", "competitor_data", "transform", "ceiling", "floor", "final",
    ]
    assert proposal.explain["final_price"] == "10.50"


# -- parsing ----------------------------------------------------------------------------------


def valid_document(**overrides) -> dict:
    document = {
        "name": "Beat competition by 5%",
        "transform": {"kind": "competitor", "reference": "lowest", "mode": "beat", "by_percent": "5"},
        "scope": {"kind": "tag", "values": ["tents"]},
        "guardrails": {"min_margin_pct": "20", "ceiling": "999", "max_change_pct": "15", "max_observation_age_hours": 48},
        "rounding": {"mode": "charm", "ending": "0.99"},
    }
    document.update(overrides)
    return document


def test_parse_valid_rule():
    rule = parse_rule(valid_document(), currency="USD")
    assert rule == PricingRule(
        name="Beat competition by 5%",
        transform=Transform("competitor", reference="lowest", mode="beat", by_percent=D("5")),
        scope=Scope("tag", ("tents",)),
        guardrails=Guardrails(min_margin_pct=D("20"), ceiling=D("999"), max_change_pct=D("15"), max_observation_age_hours=48),
        rounding=Rounding("charm", ending=D("0.99")),
        currency="USD",
    )


def test_parse_accepts_integers_and_defaults_guardrails():
    rule = parse_rule(
        {"name": "up", "transform": {"kind": "percent_change", "value": 3}, "scope": {"kind": "project"}}, currency="EUR"
    )
    assert rule.transform.value == D(3)
    assert rule.guardrails == Guardrails()
    assert rule.rounding is None


def problems_of(document, currency="USD", known=()) -> list[str]:
    with pytest.raises(RuleValidationError) as info:
        parse_rule(document, currency=currency, known_competitor_ids=known)
    assert isinstance(info.value, CalibrError)
    assert str(info.value).splitlines()[1:] == [f"- {p}" for p in info.value.problems]
    return info.value.problems


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"colour": "red"}, "colour: unknown key"),
        ({"name": None}, "name: is required"),
        ({"name": "  "}, "name: is required"),
        ({"transform": {"kind": "percent_change", "value": 5.5}}, 'transform.value: 5.5 is a JSON float, which is not exact; write it as a string, e.g. "5.5"'),
        ({"transform": {"kind": "percent_change", "value": "-100.01"}}, "transform.value: a percent change below -100 would make the price negative (got -100.01)"),
        ({"transform": {"kind": "set_price", "value": "0"}}, "transform.value: set_price must be positive (got 0)"),
        ({"transform": {"kind": "set_price"}}, "transform.value: is required for set_price"),
        ({"transform": {"kind": "fixed_change", "value": "0.001"}}, "transform.value: 0.001 has more decimals than the currency allows (2)"),
        ({"transform": {"kind": "percent_change", "value": "5", "mode": "beat"}}, "transform.mode: is only used by a competitor transform, not percent_change"),
        ({"transform": {"kind": "discount", "value": "5"}}, "transform.kind: unknown kind 'discount'"),
        ({"transform": {"kind": "competitor", "mode": "match"}}, "transform.reference: is required for a competitor transform"),
        ({"transform": {"kind": "competitor", "reference": "lowest"}}, "transform.mode: is required for a competitor transform"),
        ({"transform": {"kind": "competitor", "reference": "competitor", "mode": "match"}}, "transform.competitor_id: is required when reference is 'competitor'"),
        ({"transform": {"kind": "competitor", "reference": "competitor", "competitor_id": 99, "mode": "match"}}, "transform.competitor_id: unknown competitor 99"),
        ({"transform": {"kind": "competitor", "reference": "lowest", "competitor_id": 1, "mode": "match"}}, "transform.competitor_id: is only used with reference 'competitor', not 'lowest'"),
        ({"transform": {"kind": "competitor", "reference": "lowest", "mode": "beat"}}, "transform: beat needs exactly one of by_percent or by_amount"),
        ({"transform": {"kind": "competitor", "reference": "lowest", "mode": "beat", "by_percent": "1", "by_amount": "1"}}, "transform: beat needs exactly one of by_percent or by_amount (both given)"),
        ({"transform": {"kind": "competitor", "reference": "lowest", "mode": "match", "by_amount": "1"}}, "transform.by_amount: is not used by match"),
        ({"transform": {"kind": "competitor", "reference": "lowest", "mode": "beat", "by_percent": "-1"}}, "transform.by_percent: must not be negative (got -1)"),
        ({"transform": {"kind": "competitor", "reference": "lowest", "mode": "beat", "by_amount": "-0.50"}}, "transform.by_amount: must not be negative (got -0.50)"),
        ({"transform": {"kind": "competitor", "reference": "lowest", "mode": "beat", "by_percent": "100"}}, "transform.by_percent: must be below 100"),
        ({"scope": {"kind": "tag", "values": []}}, "scope.values: a tag scope needs at least one value"),
        ({"scope": {"kind": "skus"}}, "scope.values: a skus scope needs at least one value"),
        ({"scope": {"kind": "tag", "values": ["ok", ""]}}, "scope.values: must be non-empty strings"),
        ({"scope": {"kind": "collection", "values": ["x"]}}, "scope.kind: unknown kind 'collection'"),
        ({"scope": {"kind": "project", "values": ["x"]}}, "scope.values: a project scope covers every SKU and takes no values"),
        ({"guardrails": {"min_margin_pct": "-5"}}, "guardrails.min_margin_pct: must not be negative (got -5)"),
        ({"guardrails": {"absolute_floor": "-1"}}, "guardrails.absolute_floor: must be positive (got -1)"),
        ({"guardrails": {"absolute_floor": "0"}}, "guardrails.absolute_floor: must be positive (got 0)"),
        ({"guardrails": {"absolute_floor": "50", "ceiling": "40"}}, "guardrails.absolute_floor: 50 is above the ceiling 40"),
        ({"guardrails": {"max_change_pct": "0"}}, "guardrails.max_change_pct: must be above 0 and at most 100 (got 0)"),
        ({"guardrails": {"max_change_pct": "100.5"}}, "guardrails.max_change_pct: must be above 0 and at most 100 (got 100.5)"),
        ({"guardrails": {"max_observation_age_hours": 0}}, "guardrails.max_observation_age_hours: must be positive (got 0)"),
        ({"guardrails": {"max_observation_age_hours": 1.5}}, "guardrails.max_observation_age_hours: 1.5 is a JSON float"),
        ({"guardrails": {"respect_map": "yes"}}, "guardrails.respect_map: must be true or false"),
        ({"rounding": {"mode": "charm", "ending": "1"}}, "rounding.ending: must be a fractional part in [0, 1) (got 1)"),
        ({"rounding": {"mode": "charm", "ending": "-0.01"}}, "rounding.ending: must be a fractional part in [0, 1)"),
        ({"rounding": {"mode": "charm", "ending": "0.999"}}, "rounding.ending: 0.999 has more decimals than USD allows (2)"),
        ({"rounding": {"mode": "charm"}}, "rounding.ending: is required for charm rounding"),
        ({"rounding": {"mode": "step", "step": "0"}}, "rounding.step: must be positive (got 0)"),
        ({"rounding": {"mode": "step", "step": "-0.05"}}, "rounding.step: must be positive (got -0.05)"),
        ({"rounding": {"mode": "step"}}, "rounding.step: is required for step rounding"),
        ({"rounding": {"mode": "nearest"}}, "rounding.mode: unknown mode 'nearest'"),
        ({"transform": "percent"}, "transform: must be an object, got str"),
        ({"currency": "EUR"}, "currency: rule is in 'EUR' but the shop prices in 'USD'"),
    ],
)
def test_each_validation_problem(overrides, expected):
    problems = problems_of(valid_document(**overrides), known=(1, 2))
    assert any(p.startswith(expected) for p in problems), problems


def test_missing_transform_and_scope():
    problems = problems_of({"name": "x"})
    assert problems == ["transform: is required", "scope: is required"]


def test_charm_on_a_zero_decimal_currency_is_refused():
    problems = problems_of(valid_document(guardrails={}), currency="JPY")
    assert problems == [
        "rounding.mode: charm rounding needs a currency with minor units; JPY has none: use step rounding"
    ]


def test_all_problems_are_reported_together():
    document = {
        "transform": {"kind": "competitor", "reference": "competitor", "mode": "beat", "competitor_id": 5},
        "scope": {"kind": "vendor", "values": []},
        "guardrails": {"min_margin_pct": "-1", "max_change_pct": "0", "extra": True},
        "rounding": {"mode": "step", "step": "0"},
    }
    problems = problems_of(document, known=(1,))
    assert problems == [
        "name: is required",
        "transform.competitor_id: unknown competitor 5",
        "transform: beat needs exactly one of by_percent or by_amount",
        "scope.values: a vendor scope needs at least one value",
        "guardrails.extra: unknown key (expected one of: absolute_floor, ceiling, max_change_pct, max_observation_age_hours, min_margin_pct, respect_map)",
        "guardrails.min_margin_pct: must not be negative (got -1)",
        "guardrails.max_change_pct: must be above 0 and at most 100 (got 0)",
        "rounding.step: must be positive (got 0)",
    ]
    with pytest.raises(RuleValidationError) as info:
        parse_rule(document, currency="USD", known_competitor_ids=(1,))
    assert str(info.value).count("\n") == len(problems)


def test_known_competitor_passes():
    document = valid_document(transform={"kind": "competitor", "reference": "competitor", "competitor_id": "3", "mode": "match"})
    assert parse_rule(document, currency="USD", known_competitor_ids={3}).transform.competitor_id == 3


def test_step_rounding_for_jpy_is_valid():
    rule = parse_rule(valid_document(rounding={"mode": "step", "step": "10"}, guardrails={}), currency="JPY")
    assert rule.rounding == Rounding("step", step=D("10"))


@pytest.mark.parametrize(
    "document, currency, known",
    [
        (valid_document(), "USD", ()),
        (valid_document(rounding={"mode": "step", "step": "10"}, guardrails={"absolute_floor": "1000", "respect_map": False}), "JPY", ()),
        (
            valid_document(
                transform={"kind": "competitor", "reference": "competitor", "competitor_id": 4, "mode": "beat", "by_amount": "0.5"},
                scope={"kind": "skus", "values": ["A-1", "b-2"]},
                rounding=None,
            ),
            "EUR",
            (4,),
        ),
        ({"name": "flat", "transform": {"kind": "fixed_change", "value": "-1.250"}, "scope": {"kind": "project"}}, "KWD", ()),
    ],
)
def test_rule_to_dict_round_trips(document, currency, known):
    rule = parse_rule(document, currency=currency, known_competitor_ids=known)
    as_dict = rule_to_dict(rule)
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert all(not isinstance(v, float) for v in as_dict["guardrails"].values())
    assert parse_rule(as_dict, currency=currency, known_competitor_ids=known) == rule


def test_rule_to_dict_writes_decimals_positionally():
    rule = make_rule(Transform("set_price", value=D("1E+3")), rounding=Rounding("step", step=D("1E+1")), currency="JPY")
    as_dict = rule_to_dict(rule)
    assert as_dict["transform"]["value"] == "1000"
    assert as_dict["rounding"] == {"mode": "step", "step": "10"}
