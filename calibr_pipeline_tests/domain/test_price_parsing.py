from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibr_pipeline.domain.errors import ErrorClass, PriceParseError
from calibr_pipeline.domain.price_parsing import ParsedPrice, normalize_amount, parse_amount, parse_price


@pytest.mark.parametrize(
    "text, kwargs, amount, currency",
    [
        ("$1,234.56", {}, "1234.56", "USD"),
        ("1.234,56 €", {}, "1234.56", "EUR"),
        ("1 234,56 zł", {}, "1234.56", "PLN"),
        ("1\u00a0234,56\u00a0zł", {}, "1234.56", "PLN"),
        ("1\u202f234,56 €", {}, "1234.56", "EUR"),
        ("CHF 1'234.50", {}, "1234.50", "CHF"),
        ("CHF 1’234.50", {}, "1234.50", "CHF"),
        ("¥12,000", {}, "12000", "JPY"),
        ("¥12.000", {}, "12000", "JPY"),
        ("￥1,980", {"locale_hint": "zh-CN"}, "1980.00", "CNY"),
        ("8097000", {"currency_hint": "COP"}, "8097000.00", "COP"),
        ("£5.29", {}, "5.29", "GBP"),
        ("USD 19.99", {}, "19.99", "USD"),
        ("19.99 USD", {}, "19.99", "USD"),
        ("19.99eur", {}, "19.99", "EUR"),
        ("19,99", {"currency_hint": "EUR"}, "19.99", "EUR"),
        ("R$ 1.234,56", {}, "1234.56", "BRL"),
        ("₹1,23,456.00", {}, "123456.00", "INR"),
        ("₩12,000", {}, "12000", "KRW"),
        ("1.234.567,89 €", {}, "1234567.89", "EUR"),
        ("123,456.78 $", {}, "123456.78", "USD"),
        ("Kč 1 234", {}, "1234.00", "CZK"),
        ("99,- kr", {"locale_hint": "sv_SE"}, "99.00", "SEK"),
        ("CHF 99.–", {}, "99.00", "CHF"),
        ("$.99", {}, "0.99", "USD"),
        ("0,99 €", {}, "0.99", "EUR"),
        ("12,5 €", {}, "12.50", "EUR"),
        ("$10 CAD", {}, "10.00", "CAD"),
        ("C$ 10", {}, "10.00", "CAD"),
        ("$5", {"page_url": "https://shop.example.com.au/p"}, "5.00", "AUD"),
        ("S/ 49.90", {}, "49.90", "PEN"),
        ("R 99", {}, "99.00", "ZAR"),
        ("10元", {}, "10.00", "CNY"),
        ("€19,99 inkl. 19% MwSt.", {}, "19.99", "EUR"),
        ("  119.99 ", {"currency_hint": "USD"}, "119.99", "USD"),
        ("Price - $5", {}, "5.00", "USD"),
    ],
)
def test_parse_price_formats(text, kwargs, amount, currency):
    parsed = parse_price(text, **kwargs)
    assert parsed == ParsedPrice(amount=Decimal(amount), currency=currency, raw=text)
    # Exact representation matters downstream (minor units): compare the digits too.
    assert str(parsed.amount) == amount


def test_three_decimal_currency_reads_single_separator_as_decimal():
    assert parse_price("KWD 1.234").amount == Decimal("1.234")
    assert parse_price("1,234.567 KWD").amount == Decimal("1234.567")
    # ...while in a two-decimal currency the same shape is a thousands group.
    assert parse_price("EUR 1.234").amount == Decimal("1234.00")


def test_amount_keeps_more_digits_than_the_minor_unit_exactly():
    assert str(parse_price("$1.2345").amount) == "1.2345"
    assert str(parse_price("¥12.5").amount) == "12.5"
    assert str(parse_price("$5.5").amount) == "5.50"


def test_normalize_amount():
    assert str(normalize_amount(Decimal("121.950"), "EUR")) == "121.95"
    assert str(normalize_amount(Decimal("8.097E+6"), "COP")) == "8097000.00"
    assert str(normalize_amount(Decimal("1999"), "JPY")) == "1999"
    assert str(normalize_amount(Decimal("1.2340"), "USD")) == "1.234"


def test_parse_amount_returns_token_without_resolving():
    assert parse_amount("99 kr") == (Decimal("99"), "kr")
    assert parse_amount("19,99") == (Decimal("19.99"), None)


@pytest.mark.parametrize(
    "text, error_class",
    [
        ("0.00", ErrorClass.PARSE_ZERO_PRICE),
        ("$0", ErrorClass.PARSE_ZERO_PRICE),
        ("0,00 €", ErrorClass.PARSE_ZERO_PRICE),
        ("-5.00", ErrorClass.PARSE_NO_PRICE),
        ("$-5", ErrorClass.PARSE_NO_PRICE),
        ("-$5", ErrorClass.PARSE_NO_PRICE),
        ("\u22125,00 €", ErrorClass.PARSE_NO_PRICE),
        ("", ErrorClass.PARSE_NO_PRICE),
        ("   ", ErrorClass.PARSE_NO_PRICE),
        ("Sold out", ErrorClass.PARSE_NO_PRICE),
        ("$", ErrorClass.PARSE_NO_PRICE),
        ("12345678901234567890", ErrorClass.PARSE_NO_PRICE),
        ("$10 - $20", ErrorClass.PARSE_AMBIGUOUS),
        ("$10-$20", ErrorClass.PARSE_AMBIGUOUS),
        ("10 – 20 €", ErrorClass.PARSE_AMBIGUOUS),
        ("from $10 to $20", ErrorClass.PARSE_AMBIGUOUS),
        ("2 for $10", ErrorClass.PARSE_AMBIGUOUS),
        ("1.234.5", ErrorClass.PARSE_AMBIGUOUS),
        ("1,2.345,6", ErrorClass.PARSE_AMBIGUOUS),
        ("19,99", ErrorClass.CURRENCY_UNKNOWN),
        ("99 kr", ErrorClass.CURRENCY_UNKNOWN),
    ],
)
def test_rejections(text, error_class):
    with pytest.raises(PriceParseError) as info:
        parse_price(text)
    assert info.value.error_class is error_class
    assert info.value.message  # a message for the operator, not a bare class


def test_zero_is_reported_before_currency():
    # "0.00" has no currency either, but the placeholder is the useful diagnosis.
    with pytest.raises(PriceParseError) as info:
        parse_price("0.00")
    assert info.value.error_class is ErrorClass.PARSE_ZERO_PRICE


def test_non_string_is_rejected_cleanly():
    with pytest.raises(PriceParseError) as info:
        parse_price(19.99)  # type: ignore[arg-type]
    assert info.value.error_class is ErrorClass.PARSE_NO_PRICE


# --------------------------------------------------------------------------- property

_CONVENTIONS = [
    # (thousands separator, decimal separator)
    (",", "."),
    (".", ","),
    (" ", ","),
    ("\u00a0", ","),
    ("\u202f", ","),
    ("'", "."),
    ("’", "."),
    ("", "."),
    ("", ","),
]

_SYMBOLS = [
    # (symbol, prefix?, hint kwargs, currency)
    ("$", True, {}, "USD"),
    ("€", False, {}, "EUR"),
    ("€", True, {}, "EUR"),
    ("£", True, {}, "GBP"),
    ("zł", False, {}, "PLN"),
    ("CHF", True, {}, "CHF"),
    ("kr", False, {"locale_hint": "sv-SE"}, "SEK"),
    ("R$", True, {}, "BRL"),
    ("USD", False, {}, "USD"),
    ("", True, {"currency_hint": "EUR"}, "EUR"),
]


def _group(digits: str, sep: str) -> str:
    if not sep:
        return digits
    head = len(digits) % 3 or 3
    parts = [digits[:head]] + [digits[i : i + 3] for i in range(head, len(digits), 3)]
    return sep.join(parts)


@settings(max_examples=300, deadline=None)
@given(
    cents=st.integers(min_value=1, max_value=10**11),
    convention=st.sampled_from(_CONVENTIONS),
    symbol=st.sampled_from(_SYMBOLS),
    space=st.sampled_from(["", " ", "\u00a0"]),
)
def test_formatted_amount_parses_back_exactly(cents, convention, symbol, space):
    thousands, decimal = convention
    sign, prefix, hints, currency = symbol
    amount = Decimal(cents).scaleb(-2)
    whole, frac = f"{amount:.2f}".split(".")
    number = f"{_group(whole, thousands)}{decimal}{frac}"
    text = f"{sign}{space}{number}" if prefix else f"{number}{space}{sign}"
    parsed = parse_price(text, **hints)
    assert parsed.amount == amount
    assert str(parsed.amount) == f"{amount:.2f}"
    assert parsed.currency == currency


@settings(max_examples=100, deadline=None)
@given(
    yen=st.integers(min_value=1, max_value=10**12),
    thousands=st.sampled_from([",", ".", " ", ""]),
)
def test_zero_decimal_currency_grouping_parses_back_exactly(yen, thousands):
    text = "¥" + _group(str(yen), thousands)
    parsed = parse_price(text)
    assert (parsed.amount, parsed.currency) == (Decimal(yen), "JPY")


def test_a_text_longer_than_any_price_is_refused_before_parsing():
    # A hostile page's data-price="999…9" (200,000 digits) once spent 25 s in price_parser's
    # quadratic separator search; it is refused by its length, with a short message.
    with pytest.raises(PriceParseError) as caught:
        parse_amount("9" * 200_000)
    assert caught.value.error_class is ErrorClass.PARSE_NO_PRICE and "200,000 characters are not a price" in str(caught.value)
    assert len(str(caught.value)) < 200
    longest = "Sale price: 1.299,00 € incl. VAT" + " " * 200
    assert parse_amount(longest[:256])[0] == Decimal("1299.00")
