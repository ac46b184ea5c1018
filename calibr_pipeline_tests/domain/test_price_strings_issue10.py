"""Issue 10 category 6: price strings refused or misread although unambiguous. The strings are
price-parser's public test strings (fixtures/price_parser, BSD-3-Clause) and the issue's."""

from decimal import Decimal as D

import pytest

from calibr_pipeline.domain.errors import ErrorClass, ExtractionError
from calibr_pipeline.domain.price_parsing import parse_price

from calibr_pipeline_tests.extraction_report import score_price_parser


@pytest.mark.parametrize(
    "text, amount, currency",
    [
        ("6 300 Р", "6300", "RUB"),
        ("Р 1 890", "1890", "RUB"),
        ("1128240 рублей", "1128240", "RUB"),
        ("423.923 KD", "423.923", "KWD"),
        ("880,000 đ", "880000", "VND"),
        ("150 Br", "150", "BYN"),
        ("1 200 Lek", "1200", "ALL"),
        ("500 ؋", "500", "AFN"),
        ("$119. 95", "119.95", "USD"),
        ("205,68 € 205.68", "205.68", "EUR"),
        ("10,50 € 10,50 €", "10.50", "EUR"),
        ("45 E£", "45.00", "EGP"),
        ("AU $59.95", "59.95", "AUD"),
        ("118, 99 TL", "118.99", "TRY"),
        ("150 RUR", "150.00", "RUB"),
    ],
)
def test_unambiguous_strings_are_read(text, amount, currency):
    parsed = parse_price(text)
    assert (parsed.amount, parsed.currency) == (D(amount), currency)


@pytest.mark.parametrize("text", ["$10 - $20", "3,49 zł 1,75 zł", "2 for $10", "10 20"])
def test_two_different_amounts_stay_ambiguous(text):
    with pytest.raises(ExtractionError) as info:
        parse_price(text)
    assert info.value.error_class is ErrorClass.PARSE_AMBIGUOUS


def test_price_parser_public_strings_score_at_least_95_percent():
    right, total, misses = score_price_parser()
    assert total > 1000
    assert right / total >= 0.95, "\n".join(misses[:40])


def test_a_stray_separator_run_is_not_guessed():
    with pytest.raises(ExtractionError) as info:
        parse_price("$..75")
    assert info.value.error_class is ErrorClass.PARSE_AMBIGUOUS
