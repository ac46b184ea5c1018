"""Issue 10: a rule run over a tenant with planted bad observations (a soft-404 page's banner
price, a 1 cent price, a related product's price, a stale price) prices on none of them and its
explain trace says why; the quarantine view lists them; an anomaly is fetched once more."""

import json
from datetime import timedelta
from decimal import Decimal as D

from sqlalchemy import select, text

from calibr_pipeline.domain.offer_extraction import extract_offer
from calibr_pipeline.services.competitor_monitoring import confirm_anomalies, to_observation
from calibr_pipeline.services.rule_runs import compute_targets, create_run, save_rule
from calibr_pipeline.connectors.storefront import ListingTarget, ScrapeOutcome
from calibr_pipeline.warehouse.competitor_store import (
    ObservationRow,
    add_competitor_listing,
    replace_market_positions,
    replace_observations,
    replace_snapshots,
)
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import MarketPosition, NormalizedPriceSnapshot, RuleTarget, Variant

from calibr_pipeline_tests.conftest import DAY, NOW

RULE = {
    "name": "Match lowest",
    "transform": {"kind": "competitor", "reference": "lowest", "mode": "match"},
    "scope": {"kind": "project"},
    "guardrails": {"max_observation_age_hours": 48},
}


def _page(price, currency="USD", h1="Tent", extra=""):
    ld = {"@type": "Product", "name": h1, "offers": {"@type": "Offer", "price": price, "priceCurrency": currency, "availability": "InStock"}}
    return f'<html lang="en-US"><head><script type="application/ld+json">{json.dumps(ld)}</script></head><body><h1>{h1}</h1>{extra}</body></html>'


def _row(listing_id, url, html, at=NOW, amount=None):
    offer = extract_offer(html, url)
    extracted = offer.to_json_dict() | {"final_url": url}
    return ObservationRow(
        listing_id=listing_id, url=url, status="ok", http_status=200, error_class=None, error_message=None,
        amount=amount if amount is not None else offer.amount, currency=offer.currency, regular_amount=None,
        availability=offer.availability, extraction_source=offer.source, extracted=extracted, attempts=1,
        elapsed_ms=5, fetched_at=at,
    )


def test_rule_prices_on_none_of_the_planted_bad_observations(seeded):
    url, tenant_id = seeded
    sites = ["good-a", "good-b", "gone", "cent", "related", "stale"]
    with session_scope(url) as session:
        ids = {s: add_competitor_listing(session, project_slug="acme-store", sku="A", url=f"https://{s}.example.com/p/tent", currency="USD").listing_id for s in sites}
    link = lambda s: f"https://{s}.example.com/p/tent"  # noqa: E731
    yesterday = DAY - timedelta(days=1)
    # Yesterday every listing but the stale one showed a normal price.
    with session_scope(url) as session:
        replace_observations(session, tenant_id=tenant_id, observation_date=yesterday, run_id="y",
                             rows=[_row(ids[s], link(s), _page("9.80"), at=NOW - timedelta(days=1)) for s in sites if s != "stale"])
        replace_snapshots(session, tenant_id=tenant_id, snapshot_date=yesterday)
    today = [
        _row(ids["good-a"], link("good-a"), _page("9.50")),
        _row(ids["good-b"], link("good-b"), _page("9.90")),
        # A 200 page that says the product is gone, with a banner price in its markup.
        _row(ids["gone"], link("gone"), _page("1.00", h1="Page not found", extra="<p>This product is no longer available.</p>")),
        _row(ids["cent"], link("cent"), _page("0.01")),
        # The extraction picked a related product's price (a 39.00 accessory bundle).
        _row(ids["related"], link("related"), _page("39.00", h1="Tent + Footprint bundle")),
        # A price last fetched nine days ago, kept in today's partition.
        _row(ids["stale"], link("stale"), _page("8.00"), at=NOW - timedelta(days=9)),
    ]
    with session_scope(url) as session:
        replace_observations(session, tenant_id=tenant_id, observation_date=DAY, rows=today, run_id="t")
        stats = replace_snapshots(session, tenant_id=tenant_id, snapshot_date=DAY)
    assert stats.quarantined == 4
    with session_scope(url) as session:
        snaps = {s.listing_id: s for s in session.scalars(select(NormalizedPriceSnapshot).where(NormalizedPriceSnapshot.snapshot_date == DAY))}
        signals = {site: {r["signal"] for r in snaps[ids[site]].trust_reasons} for site in sites}
        assert not snaps[ids["good-a"]].quarantined and not snaps[ids["good-b"]].quarantined
        assert "soft_404" in signals["gone"]
        assert "implausible_low" in signals["cent"]
        assert {"history_jump", "peer_deviation"} <= signals["related"]
        assert "stale" in signals["stale"]
        quarantined_view = session.execute(text("SELECT listing_id, trust_score, reasons FROM v_quarantined_observations")).all()
        assert {row.listing_id for row in quarantined_view} == {ids[s] for s in ("gone", "cent", "related", "stale")}

        save_rule(session, project_slug="acme-store", definition=RULE, actor="test")
        run = create_run(session, project_slug="acme-store", rule_name=RULE["name"], actor="test")
        compute_targets(session, run.id, now=NOW + timedelta(hours=1))
        target = session.scalar(select(RuleTarget).where(RuleTarget.run_id == run.id, RuleTarget.sku == "A"))
    assert target.to_price == D("9.50")  # the lowest trusted price, not 0.01, 1.00 or 8.00
    with session_scope(url) as session:
        replace_market_positions(session, tenant_id=tenant_id, position_date=DAY)
        position = session.scalar(
            select(MarketPosition).join(Variant, Variant.id == MarketPosition.variant_id).where(MarketPosition.position_date == DAY, Variant.sku == "A")
        )
        assert (position.lowest_price, position.competitor_count) == (D("9.50"), 2)
    step = next(s for s in target.explain["steps"] if s.get("name") == "competitor_data" or s.get("step") == 2)
    used = {row["observation_id"] for row in step["used"]}
    excluded = {row["observation_id"]: row["reason"] for row in step["excluded"]}
    assert used == {snaps[ids["good-a"]].observation_id, snaps[ids["good-b"]].observation_id}
    for site in ("gone", "cent", "related", "stale"):
        assert "quarantined: trust" in excluded[snaps[ids[site]].observation_id], (site, excluded)


class _FakeScraper:
    def __init__(self, amount):
        self.amount, self.calls = amount, []

    def scrape_many(self, targets):
        self.calls.extend(t.listing_id for t in targets)
        return [_outcome(t.listing_id, self.amount) for t in targets]


def _outcome(listing_id, amount):
    html = _page(amount)
    return ScrapeOutcome(listing_id=listing_id, url="https://x.example.com/p/tent", status="ok", http_status=200, error_class=None,
                         error_message=None, offer=extract_offer(html, "https://x.example.com/p/tent"), attempts=1,
                         started_at=NOW, fetched_at=NOW, elapsed_ms=3, final_url="https://x.example.com/p/tent")


def test_an_anomalous_price_is_fetched_once_more_and_confirmed(seeded):
    url, tenant_id = seeded
    with session_scope(url) as session:
        listing = add_competitor_listing(session, project_slug="acme-store", sku="A", url="https://x.example.com/p/tent", currency="USD").listing_id
        normal = add_competitor_listing(session, project_slug="acme-store", sku="B", url="https://y.example.com/p/tent", currency="USD").listing_id
    yesterday = DAY - timedelta(days=1)
    with session_scope(url) as session:
        replace_observations(session, tenant_id=tenant_id, observation_date=yesterday, run_id="y",
                             rows=[to_observation(_outcome(listing, "100.00")), to_observation(_outcome(normal, "20.00"))])
        replace_snapshots(session, tenant_id=tenant_id, snapshot_date=yesterday)
    targets = [ListingTarget(listing_id=listing, url="https://x.example.com/p/tent", kind="html", variant_hint=None, currency_hint=None),
               ListingTarget(listing_id=normal, url="https://y.example.com/p/tent", kind="html", variant_hint=None, currency_hint=None)]
    first = [_outcome(listing, "30.00"), _outcome(normal, "21.00")]  # -70 %: an anomaly; +5 %: not
    scraper = _FakeScraper("30.00")
    outcomes, confirmations = confirm_anomalies(url, scraper, tenant_id, DAY, targets, first)
    assert scraper.calls == [listing] and confirmations == {listing: True}
    assert to_observation(outcomes[0], confirmations[listing]).extracted["confirmed_by_refetch"] is True
    scraper = _FakeScraper("99.00")  # the second reading disagrees: it replaces the first, unconfirmed
    outcomes, confirmations = confirm_anomalies(url, scraper, tenant_id, DAY, targets, first)
    assert confirmations == {listing: False} and outcomes[0].offer.amount == D("99.00")


class _Alerts:
    def __init__(self):
        self.sent = []

    def send(self, alert, warehouse, tenant_id=None):
        self.sent.append(alert)
        return []


def test_a_listing_quarantined_three_days_in_a_row_alerts(seeded):
    from calibr_pipeline.defs.competitors.checks import evaluate_quarantine
    from calibr_pipeline.defs.resources import WarehouseResource

    url, tenant_id = seeded
    with session_scope(url) as session:
        bad = add_competitor_listing(session, project_slug="acme-store", sku="A", url="https://cent.example.com/p/tent", currency="USD").listing_id
        good = add_competitor_listing(session, project_slug="acme-store", sku="A", url="https://fine.example.com/p/tent", currency="USD").listing_id
    for back in (2, 1, 0):
        day = DAY - timedelta(days=back)
        at = NOW - timedelta(days=back)
        with session_scope(url) as session:
            replace_observations(session, tenant_id=tenant_id, observation_date=day, run_id=f"d{back}", rows=[
                _row(bad, "https://cent.example.com/p/tent", _page("0.01"), at=at),
                _row(good, "https://fine.example.com/p/tent", _page("9.90"), at=at),
            ])
            replace_snapshots(session, tenant_id=tenant_id, snapshot_date=day)
        alerts = _Alerts()
        outcome = evaluate_quarantine(WarehouseResource(url=url), alerts, "acme", day)
        assert (outcome["quarantined"], outcome["snapshots"], outcome["verdict"]) == (1, 2, "error")
        assert outcome["stuck_listings"] == ([bad] if back == 0 else [])
    assert {a.source for a in alerts.sent} == {"snapshot_quarantine_rate", "listing_quarantined"}
    stuck_alert = next(a for a in alerts.sent if a.source == "listing_quarantined")
    assert stuck_alert.details == {"listing_id": bad, "days": 3} and "3 days in a row" in stuck_alert.title
