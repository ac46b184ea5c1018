"""Fault injection over real HTTP: deterministic and seeded modes, HTTP control, counters."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
import requests

from calibr_pipeline.sandbox.demo_catalog import generate_demo_catalog
from calibr_pipeline.sandbox.faults import FaultInjector, FaultRule
from calibr_pipeline.sandbox.storefronts import StorefrontWorld

pytestmark = pytest.mark.integration

CATALOG = generate_demo_catalog("shop", 30, seed=9)


@pytest.fixture(scope="module")
def world():
    with StorefrontWorld(seed=9) as w:
        w.add_tenant("shop", CATALOG, kinds=["shopify", "jsonld-offer", "microdata"])
        w.set_date(dt.date(2025, 5, 5))
        yield w


@pytest.fixture(autouse=True)
def clean(world):
    world.faults.clear()
    world.faults.reset_counters()
    yield
    world.faults.clear()


def listing(world, kind):
    return next(l for l in world.listings_for("shop") if l.kind == kind)


def test_fail_next_n_then_recover(world):
    url = listing(world, "jsonld-offer").url
    world.faults.add(shop="shop-jsonld-offer", path="/artikel/*", fail_next=2, fail_mode="5xx", error_status=502)
    statuses = [requests.get(url, timeout=5).status_code for _ in range(4)]
    assert statuses == [502, 502, 200, 200]
    assert world.faults.requests(shop="shop-jsonld-offer") == 4
    assert world.faults.faults("5xx", shop="shop-jsonld-offer") == 2


def test_rules_are_scoped_to_a_shop_and_path(world):
    world.faults.add(shop="shop-microdata", fail_next=5)
    assert requests.get(listing(world, "jsonld-offer").url, timeout=5).status_code == 200
    shopify = listing(world, "shopify").url.split("?")[0]
    world.faults.add(shop="shop-shopify", path="/products/*.json", fail_next=1)
    assert requests.get(shopify + ".js", timeout=5).status_code == 200
    assert requests.get(shopify + ".json", timeout=5).status_code == 503
    assert requests.get(shopify + ".json", timeout=5).status_code == 200


def test_429_carries_retry_after(world):
    url = listing(world, "shopify").url.split("?")[0] + ".json"
    world.faults.add(shop="shop-shopify", fail_next=1, fail_mode="429", retry_after="2.5")
    response = requests.get(url, timeout=5)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2.5"
    assert world.faults.faults("429") == 1


def test_timeout_answers_after_the_delay(world):
    url = listing(world, "microdata").url
    world.faults.add(shop="shop-microdata", fail_next=1, fail_mode="timeout", timeout_delay=1.0)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(url, timeout=(1, 0.2))
    assert time.monotonic() - started < 0.9
    assert requests.get(url, timeout=5).status_code == 200  # the next request is served normally


def test_malformed_json_is_truncated(world):
    url = listing(world, "shopify").url.split("?")[0] + ".json"
    world.faults.add(shop="shop-shopify", fail_next=1, fail_mode="malformed")
    response = requests.get(url, timeout=5)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)
    assert requests.get(url, timeout=5).json()["product"]  # the next one is whole


@pytest.mark.parametrize("kind", ["jsonld-offer", "microdata", "shopify"])
def test_malformed_html_has_no_price(world, kind):
    item = listing(world, kind)
    world.faults.add(shop=f"shop-{kind}", fail_next=1, fail_mode="malformed")
    page = requests.get(item.url, timeout=5).text
    assert "<title>" in page and "</html>" in page  # a whole page, just no price in it
    for marker in ('"price"', '"offers"', 'itemprop="price"', "price:amount", str(item.expected_amount), "class=\"price"):
        assert marker not in page
    assert str(item.expected_amount) in requests.get(item.url, timeout=5).text.replace(",", "")


def test_probabilities_are_seeded():
    def roll(seed):
        injector = FaultInjector(seed)
        injector.add(error_rate=0.3, rate_limit_rate=0.2)
        return [(f.kind if (f := injector.decide("s", "/p")) else None) for _ in range(200)]

    first = roll(42)
    assert first == roll(42)
    assert first != roll(43)
    assert 40 < first.count("5xx") < 80 and 20 < first.count("429") < 60


def test_rule_validation():
    with pytest.raises(ValueError):
        FaultRule(error_rate=0.8, timeout_rate=0.5)
    with pytest.raises(ValueError):
        FaultRule(fail_mode="explode")
    with pytest.raises(ValueError):
        FaultRule.from_dict({"shop": "x", "bogus": 1})


def test_faults_and_counters_over_http(world):
    item = listing(world, "jsonld-offer")
    base = item.url.split("/artikel/")[0]
    answer = requests.post(
        f"{base}/__sandbox/faults",
        json={"rules": [{"shop": "shop-jsonld-offer", "fail_next": 1, "fail_mode": "429", "retry_after": 3}], "replace": True},
        timeout=5,
    ).json()
    assert answer["rules"][0]["fail_next"] == 1 and answer["rules"][0]["retry_after"] == "3"
    assert requests.get(item.url, timeout=5).status_code == 429
    assert requests.get(item.url, timeout=5).status_code == 200
    counters = requests.get(f"{base}/__sandbox/counters", timeout=5).json()
    path = item.url.split(base)[1]
    assert counters["routes"][f"shop-jsonld-offer {path}"] == {"requests": 2, "429": 1}
    # the control plane is shared: any server of the world sees the same state
    other = listing(world, "microdata").url.split("/produit/")[0]
    assert requests.get(f"{other}/__sandbox/counters", timeout=5).json() == counters
    assert requests.delete(f"{base}/__sandbox/faults", timeout=5).json() == {"rules": []}
    bad = requests.post(f"{base}/__sandbox/faults", json={"error_rate": 2}, timeout=5)
    assert bad.status_code == 400
