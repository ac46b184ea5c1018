"""Issue 7 item 7: FX rates at fixed precision, a maximum rate age, and stale or missing rates
exclude the observation with a reason instead of failing the tenant-day."""

from datetime import date
from decimal import Decimal as D

import pytest
from sqlalchemy import select

from calibr_pipeline.warehouse.competitor_store import (
    add_competitor_listing,
    fx_quote,
    replace_observations,
    replace_snapshots,
    upsert_fx_rate,
)
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import FxRate, NormalizedPriceSnapshot

from calibr_pipeline_tests.conftest import DAY
from calibr_pipeline_tests.warehouse.test_stores import _obs


def _listing(session, site, currency, sku="A"):
    return add_competitor_listing(session, project_slug="acme-store", sku=sku, url=f"https://{site}/p/{sku}", currency=currency).listing_id


def test_inverse_rate_is_quantized_and_the_partition_succeeds(seeded):
    url, tenant_id = seeded
    with session_scope(url) as session:
        # Only USD -> GBP is known: GBP -> USD is its inverse, 1/0.75 = 1.3333... (28 digits).
        upsert_fx_rate(session, date(2026, 11, 19), "USD", "GBP", D("0.75"), "test")
        gbp = _listing(session, "uk.example", "GBP")
    with session_scope(url) as session:
        replace_observations(session, tenant_id=tenant_id, observation_date=DAY, rows=[_obs(gbp, amount="30.00", currency="GBP")], run_id="r1")
        stats = replace_snapshots(session, tenant_id=tenant_id, snapshot_date=DAY)
    assert stats.snapshots == 1
    with session_scope(url) as session:
        snap = session.scalar(select(NormalizedPriceSnapshot))
        assert snap.fx_rate == D("1.333333")  # stored at the column's fixed 6 decimals
        # The amount is divided by the stored forward rate, not multiplied by a rounded inverse.
        assert snap.amount_in_project_currency == D("40.00")
        assert snap.excluded_reason is None


def test_rates_are_stored_at_fixed_precision(seeded):
    url, _ = seeded
    with session_scope(url) as session:
        upsert_fx_rate(session, date(2026, 11, 19), "USD", "JPY", D(1) / D(3), "test")
    with session_scope(url) as session:
        assert session.scalar(select(FxRate.rate).where(FxRate.quote_currency == "JPY")) == D("0.333333")
    with pytest.raises(ValueError, match="rounds to zero"):
        with session_scope(url) as session:
            upsert_fx_rate(session, date(2026, 11, 19), "USD", "VND", D("0.0000001"), "test")


def test_stale_rate_excludes_the_observation_with_that_reason(seeded):
    url, tenant_id = seeded
    with session_scope(url) as session:
        upsert_fx_rate(session, date(2023, 3, 1), "CHF", "USD", D("1.08"), "test")
        chf = _listing(session, "ch.example", "CHF")
        eur = _listing(session, "eu.example", "EUR")
        jpy = _listing(session, "jp.example", "JPY", sku="C")
    rows = [_obs(chf, amount="50.00", currency="CHF"), _obs(eur, amount="8.00", currency="EUR"), _obs(jpy, amount="4000", currency="JPY")]
    with session_scope(url) as session:
        replace_observations(session, tenant_id=tenant_id, observation_date=DAY, rows=rows, run_id="r1")
        stats = replace_snapshots(session, tenant_id=tenant_id, snapshot_date=DAY, max_fx_age_days=30)
    assert stats.snapshots == 3
    assert stats.stale_fx == {"CHF->USD": 1} and stats.missing_fx == {"JPY->USD": 1}
    with session_scope(url) as session:
        by_listing = {s.listing_id: s for s in session.scalars(select(NormalizedPriceSnapshot))}
    assert by_listing[chf].amount_in_project_currency is None
    assert by_listing[chf].excluded_reason.startswith("fx_rate_stale: CHF->USD rate of 2023-03-01")
    assert by_listing[jpy].excluded_reason.startswith("fx_rate_missing: no JPY->USD rate")
    # The EUR rate of 2026-11-01 is 19 days old: within 30 days, used.
    assert by_listing[eur].amount_in_project_currency == D("8.80") and by_listing[eur].excluded_reason is None
    with session_scope(url) as session:
        replace_snapshots(session, tenant_id=tenant_id, snapshot_date=DAY, max_fx_age_days=7)
        eur_snap = session.scalar(select(NormalizedPriceSnapshot).where(NormalizedPriceSnapshot.listing_id == eur))
        assert eur_snap.amount_in_project_currency is None and eur_snap.excluded_reason.startswith("fx_rate_stale")


def test_default_maximum_rate_age_comes_from_the_environment(seeded, monkeypatch):
    url, _ = seeded
    monkeypatch.setenv("CALIBR_FX_MAX_RATE_AGE_DAYS", "3")
    with session_scope(url) as session:
        quote = fx_quote(session, "EUR", "USD", DAY)
    assert quote.rate == D("1.10") and quote.rate_date == date(2026, 11, 1)
    assert quote.stale_reason(DAY).startswith("fx_rate_stale: EUR->USD rate of 2026-11-01 is 19 days old (maximum 3;")
    monkeypatch.setenv("CALIBR_FX_MAX_RATE_AGE_DAYS", "soon")
    with pytest.raises(ValueError, match="CALIBR_FX_MAX_RATE_AGE_DAYS"):
        quote.stale_reason(DAY)


def test_an_observation_without_an_amount_in_our_currency_is_listed_as_excluded_in_the_explain(seeded):
    """Issue 10: the newest observation of a listing that could not be converted (stale FX rate)
    is not silently dropped: the preview's explain trace lists it as excluded, with the reason."""
    from calibr_pipeline.services.rule_runs import compute_targets, create_run, save_rule, target_explain
    from calibr_pipeline.warehouse.models import RuleTarget

    from calibr_pipeline_tests.conftest import NOW

    url, tenant_id = seeded
    with session_scope(url) as session:
        upsert_fx_rate(session, date(2023, 3, 1), "CHF", "USD", D("1.08"), "test")
        chf = _listing(session, "ch.example", "CHF")
        eur = _listing(session, "eu.example", "EUR")
    with session_scope(url) as session:
        replace_observations(session, tenant_id=tenant_id, observation_date=DAY,
                             rows=[_obs(chf, amount="5.00", currency="CHF"), _obs(eur, amount="8.00", currency="EUR")], run_id="r1")
        replace_snapshots(session, tenant_id=tenant_id, snapshot_date=DAY, max_fx_age_days=30)
    rule = {"name": "Beat by 5%", "transform": {"kind": "competitor", "reference": "lowest", "mode": "beat", "by_percent": "5"},
            "scope": {"kind": "project"}}
    with session_scope(url) as session:
        save_rule(session, project_slug="acme-store", definition=rule, actor="test")
        run_id = create_run(session, project_slug="acme-store", rule_name=rule["name"], actor="test").id
    with session_scope(url) as session:
        compute_targets(session, run_id, now=NOW)
    with session_scope(url) as session:
        target = session.scalar(select(RuleTarget).where(RuleTarget.run_id == run_id, RuleTarget.sku == "A"))
        data = next(s for s in target_explain(session, target)["steps"] if s["name"] == "competitor_data")
    assert [row["amount"] for row in data["used"]] == ["8.80"]  # the EUR listing, converted
    (excluded,) = data["excluded"]
    assert excluded["amount"] is None and excluded["reason"].startswith("no amount in our currency: fx_rate_stale: CHF->USD rate of 2023-03-01")
    assert target.to_price == D("8.36")  # 8.80 less 5 %, priced on the converted observation only
