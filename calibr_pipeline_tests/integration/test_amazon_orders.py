"""Amazon as an optional, read-only sales channel: configured, synced by the order_sync job."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from calibr_pipeline.definitions import build_definitions
from calibr_pipeline.defs.resources import WarehouseResource
from calibr_pipeline.demo import run_job_for_day
from calibr_pipeline.domain.orders import MalformedOrder
from calibr_pipeline.sandbox.amazon_sp_api import AmazonSpApiSandbox, SellerItem
from calibr_pipeline.services.amazon_sync import configure_amazon, parse_amazon_order
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import AmazonAccount, SalesOrderLine
from calibr_pipeline.warehouse.tenancy import project_by_slug

pytestmark = pytest.mark.integration

ITEMS = [SellerItem("AMZ-A", "B00000000A", "A on Amazon", Decimal("10.50")), SellerItem("AMZ-B", "B00000000B", "B", Decimal("21.00")),
         SellerItem("AMZ-X", "B00000000X", "not ours", Decimal("5.00"))]


def test_amazon_orders_and_competitive_prices_land_mapped_with_sealed_credentials(seeded, instance, monkeypatch, tmp_path):
    url, _tenant_id = seeded
    monkeypatch.setenv("CALIBR_HOME", str(tmp_path))
    with AmazonSpApiSandbox(rate_scale=200) as amazon:
        amazon.server.control.clock.set_date("2026-03-10")
        seller = amazon.add_seller("A1ACME", ITEMS, seed=5)
        with session_scope(url) as session:
            configure_amazon(
                session, project_by_slug(session, "acme-store"), seller_id="A1ACME", marketplace_id=seller.marketplace_id,
                endpoint=amazon.base_url, token_url=amazon.token_url, client_id=seller.client_id, client_secret=seller.client_secret,
                refresh_token=seller.refresh_token, currency="USD", sku_map={"AMZ-A": ("B00000000A", "A"), "AMZ-B": ("B00000000B", "B")},
            )
        with session_scope(url) as session:
            sealed = session.scalars(select(AmazonAccount.sealed_credentials)).one()
            assert seller.refresh_token not in sealed and seller.client_secret not in sealed
        defs = build_definitions(warehouse=WarehouseResource(url=url))
        day = dt.date(2026, 3, 4)
        assert run_job_for_day(defs, instance, "order_sync", ["acme"], day) == {"acme": True}
        expected = seller.orders_for_day(day)
        with session_scope(url) as session:
            lines = session.scalars(select(SalesOrderLine).where(SalesOrderLine.channel == "amazon")).all()
            assert len(lines) == len(expected) > 0
            by_order = {l.order_external_id: l for l in lines}
            for source in expected:
                line = by_order[source["AmazonOrderId"]]
                assert line.quantity == source["quantity"]
                assert line.original_unit_price == source["item"].price
                assert line.discounted_unit_price * line.quantity == source["item"].price * source["quantity"] - source["promo"]
                assert (line.variant_id is None) == (source["item"].seller_sku == "AMZ-X")
                assert line.sku == {"AMZ-A": "A", "AMZ-B": "B"}.get(source["item"].seller_sku, source["item"].seller_sku)
            prices = session.execute(text("SELECT asin, status, landed_price FROM amazon_competitive_prices ORDER BY asin")).all()
            assert [(p[0], p[1]) for p in prices] == [("B00000000A", "Success"), ("B00000000B", "Success")]


def test_malformed_amazon_orders_are_named():
    order = {"AmazonOrderId": "111-1", "PurchaseDate": "2026-03-01T10:00:00Z", "LastUpdateDate": "2026-03-01T10:00:00Z", "OrderStatus": "Shipped"}
    good = {"OrderItemId": "1", "SellerSKU": "S", "QuantityOrdered": 2, "ItemPrice": {"CurrencyCode": "USD", "Amount": "39.98"}}
    record = parse_amazon_order(order, [good], "USD", {"S": "A"})
    assert record.lines[0].original_unit_price == Decimal("19.99") and record.lines[0].sku == "A"
    for item, field in (
        ({**good, "QuantityOrdered": 0}, "OrderItems[0].QuantityOrdered"),
        ({**good, "ItemPrice": {"CurrencyCode": "EUR", "Amount": "1"}}, "OrderItems[0].ItemPrice"),
        ({**good, "ItemPrice": {"CurrencyCode": "USD", "Amount": "abc"}}, "OrderItems[0].ItemPrice.Amount"),
        ({**good, "PromotionDiscount": {"CurrencyCode": "USD", "Amount": "50"}}, "OrderItems[0].PromotionDiscount"),
    ):
        with pytest.raises(MalformedOrder) as raised:
            parse_amazon_order(order, [item], "USD", {})
        assert raised.value.field == field
