from decimal import Decimal

import pytest

from calibr_pipeline.domain.catalog_csv import CatalogCsvError, parse_catalog_csv

HEADER = "product_id,product_title,variant_id,sku,price,currency,compare_at_price,cost,tags,vendor\n"


def test_parses_rows_exactly():
    rows = parse_catalog_csv(
        HEADER
        + 'p1,Trail Tent,v1,TENT-1,"1299.99",USD,1499.00,800.10,"camping; tents",Acme\n'
        + "p1,Trail Tent,v2,TENT-2,19.9,usd,,,,\n"
    )
    assert [r.sku for r in rows] == ["TENT-1", "TENT-2"]
    first = rows[0]
    assert first.price == Decimal("1299.99") and first.compare_at_price == Decimal("1499.00")
    assert first.cost == Decimal("800.10") and first.tags == ("camping", "tents") and first.vendor == "Acme"
    assert rows[1].currency == "USD" and rows[1].cost is None and rows[1].compare_at_price is None


def test_header_is_case_insensitive_and_bom_tolerant():
    rows = parse_catalog_csv("\ufeffProduct_ID,Product_Title,Variant_ID,SKU,Price,Currency\np,T,v,S,1.00,EUR\n")
    assert rows[0].sku == "S" and rows[0].currency == "EUR"


def test_every_problem_is_reported_with_its_line_and_nothing_is_returned():
    text = HEADER + "p1,T,v1,A,abc,USD,,,,\n" + "p2,T,v2,B,0,USD,,,,\n" + "p3,T,v3,A,5,US,,,,\n" + "p4,,v4,C,-1,USD,,-2,,\n"
    with pytest.raises(CatalogCsvError) as info:
        parse_catalog_csv(text)
    problems = info.value.problems
    assert "line 2: price 'abc' is not a decimal number (use 19.99, no symbols)" in problems
    assert "line 3: price must be positive, got 0" in problems
    assert any(p.startswith("line 4: currency 'US'") for p in problems)
    assert "line 4: sku 'A' already appears on line 2" in problems
    assert "line 5: product_title is empty" in problems
    assert "line 5: cost must be zero or more, got -2" in problems
    assert "nothing was imported" in str(info.value)


@pytest.mark.parametrize(
    "text, message",
    [("", "empty"), ("product_id,sku\n", "missing required column(s): product_title, variant_id, price, currency"), (HEADER, "no rows")],
)
def test_structural_errors(text, message):
    with pytest.raises(CatalogCsvError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_catalog_csv(text)
