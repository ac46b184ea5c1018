"""The extraction development set (fixtures/pages): complete, licensed, and extracted at the
issue's targets (price F1 >= 0.95 with precision >= 0.97, availability F1 >= 0.95)."""

import json
from pathlib import Path

from calibr_pipeline_tests.extraction_report import PAGES, score_pages

LICENCE_FILES = {
    "scrapinghub/extruct": "LICENSE-extruct-BSD-3-Clause.txt",
    "dgtlmoon/changedetection.io": "LICENSE-changedetection-Apache-2.0.txt",
    "kovalovme/hotline-ua-mcp": "LICENSE-hotline-ua-mcp-MIT.txt",
    "lukabudik/alza-mcp": "LICENSE-alza-mcp-MIT.txt",
    "Eralquine/amazon-mx-watcher": "LICENSE-amazon-mx-watcher-MIT.txt",
    "fzozyurt/BookStoresDatasets": "LICENSE-BookStoresDatasets-MIT.txt",
    "CAPeddle/amazon-shopping": "LICENSE-amazon-shopping-MIT.txt",
    "cyberchen1995/DealBuddy": "LICENSE-DealBuddy-MIT.txt",
    "barath-207/Amazon-Price-Tracker": "LICENSE-Amazon-Price-Tracker-MIT.txt",
    "ecarriedo19/amazon-price-tracker": "LICENSE-amazon-price-tracker-ecarriedo19-MIT.txt",
    "CookieCN/ecom-radar": "LICENSE-ecom-radar-MIT.txt",
    "amitchakraborty123/tecno-agricola-scraper": "LICENSE-tecno-agricola-scraper-MIT.txt",
    "appbeforelunch/lunch-unitprice": "LICENSE-lunch-unitprice-MIT.txt",
    "hlaff147/price-scout-agent": "LICENSE-price-scout-agent-MIT.txt",
    "muly/product-track": "LICENSE-product-track-MIT.txt",
    "Grcajr/restock-sentinel": "LICENSE-restock-sentinel-MIT.txt",
    "aghakazimali-ML/pricepulse": "LICENSE-pricepulse-MIT.txt",
    "arthurnobrega/deal-watcher": "LICENSE-deal-watcher-MIT.txt",
}
REQUIRED = {"file", "site", "country", "source_repo", "source_path", "license", "expected_price", "expected_currency", "expected_availability", "note"}


def test_every_page_is_listed_with_source_licence_and_labels():
    manifest = json.loads((PAGES / "manifest.json").read_text(encoding="utf-8"))
    assert {e["file"] for e in manifest} == {p.name for p in (PAGES / "pages").iterdir()}
    for entry in manifest:
        assert REQUIRED <= set(entry), entry["file"]
        licence = PAGES / LICENCE_FILES[entry["source_repo"]]
        assert licence.is_file() and licence.stat().st_size > 1000
        assert len(entry["expected_currency"]) == 3 and len(entry["country"]) == 2


def test_extraction_meets_the_targets_on_the_development_set():
    report = score_pages()
    assert report.price.precision >= 0.97 and report.price.f1 >= 0.95, report.misses
    assert report.availability.f1 >= 0.95, report.misses


def test_the_set_spans_at_least_ten_countries():
    report = score_pages()
    countries = {e["country"] for e in json.loads((PAGES / "manifest.json").read_text(encoding="utf-8"))} - {"EU"}
    assert report.countries >= 10 and len(countries) >= 10, sorted(countries)


def test_the_set_holds_at_least_sixty_pages_from_thirty_sites():
    # The size: 60 pages from 30 sites (distinct shop domains), each site with at least
    # one page whose right price is known (a bot wall alone does not make a site count).
    report = score_pages()
    manifest = json.loads((PAGES / "manifest.json").read_text(encoding="utf-8"))
    priced_sites = {e["site"] for e in manifest if e["expected_price"] is not None or e.get("acceptable_prices")}
    assert report.pages >= 60 and len(manifest) >= 60, report.pages
    assert report.sites >= 30 and len(priced_sites) >= 30, sorted(priced_sites)
