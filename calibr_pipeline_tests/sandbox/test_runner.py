"""The whole sandbox world, in-process and as the foreground CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from calibr_pipeline.sandbox.demo_catalog import generate_demo_catalog
from calibr_pipeline.sandbox.runner import DEMO_TENANTS, SandboxWorld, TenantSpec, main

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_world_starts_admin_and_competitors_per_tenant():
    tenants = [TenantSpec("alpha", "USD", 20), TenantSpec("beta", "EUR", 15, preset="plus")]
    with SandboxWorld(tenants, seed=4, date="2025-02-10") as world:
        assert set(world.tenants) == {"alpha", "beta"}
        alpha = world.tenant("alpha")
        assert alpha.catalog == generate_demo_catalog("alpha", 20, 4, "USD")
        assert alpha.shop_url.endswith("/shops/alpha")
        assert alpha.admin_endpoint == f"{alpha.shop_url}/admin/api/2025-01/graphql.json"
        assert alpha.access_token.startswith("shpat_") and alpha.access_token not in repr(alpha)
        assert world.tenant("beta").admin_shop.preset.name == "plus"

        # the admin API answers with this tenant's token only
        answer = requests.post(alpha.admin_endpoint, json={"query": "{ shop { currencyCode } }"},
                               headers={"X-Shopify-Access-Token": alpha.access_token}, timeout=5)
        assert answer.json()["data"] == {"shop": {"currencyCode": "USD"}}

        for name in ("alpha", "beta"):
            competitors = world.tenant(name).competitors
            assert len(competitors) >= 3
            assert len({c.currency for c in competitors}) >= 3
            listings = world.listings_for(name)
            skus = {row.sku for row in world.tenant(name).catalog}
            assert listings and all(l.our_sku in skus for l in listings)
        # two tenants together cover more markup kinds than one
        kinds = {c.kind.key for t in world.tenants.values() for c in t.competitors}
        assert len(kinds) >= 6

        listing = world.listings_for("beta")[0]
        assert requests.get(listing.url, timeout=5).status_code == 200
        assert len(world.allowed_hosts) == 1 + sum(len(t.competitors) for t in world.tenants.values())
        json.dumps(world.summary())  # JSON-able for the CLI


def test_same_seed_same_world():
    with SandboxWorld([TenantSpec("gamma", "GBP", 10)], seed=11, date="2025-01-06") as a:
        first = [(l.competitor, l.our_sku, l.expected_amount, l.expected_currency) for l in a.listings_for("gamma")]
        token = a.tenant("gamma").access_token
    with SandboxWorld([TenantSpec("gamma", "GBP", 10)], seed=11, date="2025-01-06") as b:
        assert [(l.competitor, l.our_sku, l.expected_amount, l.expected_currency) for l in b.listings_for("gamma")] == first
        assert b.tenant("gamma").access_token == token


def test_main_runs_until_stopped(capsys):
    stop = threading.Event()
    result = {}
    thread = threading.Thread(
        target=lambda: result.setdefault("rc", main(["--tenant", "delta:CHF:8", "--seed", "2", "--json"], stop=stop))
    )
    thread.start()
    try:
        for _ in range(100):
            out = capsys.readouterr().out
            if out:
                break
            stop.wait(0.05)
        summary = json.loads(out.splitlines()[0])
    finally:
        stop.set()
        thread.join(timeout=10)
    assert result["rc"] == 0
    assert summary["tenants"][0]["name"] == "delta"
    assert summary["tenants"][0]["currency"] == "CHF"


def test_cli_in_a_subprocess_prints_urls_and_stops_on_sigint():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "calibr_pipeline.sandbox.runner", "--tenant", "epsilon:USD:6", "--json", "--date", "2025-04-01"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        summary = json.loads(proc.stdout.readline())
        tenant = summary["tenants"][0]
        assert summary["date"] == "2025-04-01"
        health = requests.get(summary["admin"]["control"] + "health", timeout=5).json()
        assert health["ok"] is True
        page = requests.get(tenant["competitors"][0]["base_url"] + "/robots.txt", timeout=5)
        assert page.status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=10)
    assert rc == 0


def test_demo_tenants_are_valid():
    assert len(DEMO_TENANTS) >= 3
    assert len({t.currency for t in DEMO_TENANTS}) == len(DEMO_TENANTS)


def test_demo_catalog_is_realistic_and_exact():
    rows = generate_demo_catalog("acme", 300, seed=1, currency="USD")
    assert len(rows) == 300 and rows == generate_demo_catalog("acme", 300, seed=1, currency="USD")
    assert rows != generate_demo_catalog("acme", 300, seed=2, currency="USD")
    assert len({r.sku for r in rows}) == 300
    per_product: dict[str, int] = {}
    for r in rows:
        per_product[r.product_external_id] = per_product.get(r.product_external_id, 0) + 1
        assert isinstance(r.price, Decimal) and r.price.as_tuple().exponent == -2
        assert r.cost is None or Decimal(0) < r.cost < r.price
        assert r.compare_at_price is None or r.compare_at_price > r.price
        assert r.product_external_id.startswith("gid://shopify/Product/")
        assert r.variant_external_id.startswith("gid://shopify/ProductVariant/")
    assert set(per_product.values()) <= {1, 2, 3, 4} and max(per_product.values()) > 1
    assert len({r.product_type for r in rows}) >= 6 and len({r.vendor for r in rows}) >= 5
    assert any(r.compare_at_price for r in rows) and any(r.price >= 1000 for r in rows)
    yen = generate_demo_catalog("acme", 20, seed=1, currency="JPY")
    assert all(r.price == r.price.to_integral_value() and r.currency == "JPY" for r in yen)
