"""The original vendored reference pages (fixtures/pages/, see its README.md) must all extract exactly."""

import json
from decimal import Decimal

import pytest

from calibr_pipeline.domain.offer_extraction import extract_offer
from calibr_pipeline_tests.extraction_report import PAGES, reference_entries

FIXTURES = PAGES
MANIFEST = reference_entries(FIXTURES)

# Pages with no single correct price (expected_price null): the answers the manifest's note
# accepts, and the stated range the extraction must report alongside.
NO_SINGLE_PRICE = {
    "extruct_monsterpetsupplies_aggregateoffer.html": {
        "acceptable": {Decimal("5.29"), Decimal("9.56")},
        "low": Decimal("5.29"),
        "high": Decimal("9.56"),
    },
}

LICENCE_FILES = {
    "scrapinghub/extruct": "LICENSE-extruct-BSD-3-Clause.txt",
    "dgtlmoon/changedetection.io": "LICENSE-changedetection-Apache-2.0.txt",
}


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_reference_page(entry):
    html = (FIXTURES / "pages" / entry["file"]).read_bytes()
    result = extract_offer(html, "https://reference.example/product")

    if entry["expected_price"] is None:
        expected = NO_SINGLE_PRICE[entry["file"]]
        assert result.amount in expected["acceptable"]
        assert (result.low_amount, result.high_amount) == (expected["low"], expected["high"])
    else:
        assert result.amount == Decimal(entry["expected_price"])
    assert result.currency == entry["expected_currency"]
    assert result.availability == entry["expected_availability"]


def test_monsterpetsupplies_uses_the_lowest_from_price():
    html = (FIXTURES / "pages" / "extruct_monsterpetsupplies_aggregateoffer.html").read_bytes()
    result = extract_offer(html, "https://www.monsterpetsupplies.co.uk/cats/cat-flea-tick/x")
    assert (result.amount, result.offer_count, result.source) == (Decimal("5.29"), 2, "microdata")
    six_pack = extract_offer(html, "https://www.monsterpetsupplies.co.uk/x", variant_hint="CS20858_1")
    assert (six_pack.amount, six_pack.sku) == (Decimal("9.56"), "CS20858_1")


def test_every_vendored_page_is_in_the_manifest_with_its_licence():
    manifest = json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))
    listed = {e["file"] for e in manifest}
    on_disk = {p.name for p in (FIXTURES / "pages").iterdir()}
    assert listed == on_disk
    assert {e["file"] for e in MANIFEST} <= listed
    for entry in MANIFEST:
        licence = FIXTURES / LICENCE_FILES[entry["source_repo"]]
        assert licence.is_file() and licence.stat().st_size > 1000
