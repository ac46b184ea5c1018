import pytest

from calibr_pipeline.domain.currency import (
    currency_from_locale,
    currency_from_url,
    region_from_locale,
    resolve_currency,
)
from calibr_pipeline.domain.errors import ErrorClass, PriceParseError


@pytest.mark.parametrize(
    "token, expected",
    [
        ("USD", "USD"),
        ("usd", "USD"),
        (" eur ", "EUR"),
        ("€", "EUR"),
        ("zł", "PLN"),
        ("ZŁ", "PLN"),
        ("zl", "PLN"),
        ("Kč", "CZK"),
        ("₹", "INR"),
        ("₩", "KRW"),
        ("₺", "TRY"),
        ("CHF", "CHF"),
        ("Fr.", "CHF"),
        ("R$", "BRL"),
        ("A$", "AUD"),
        ("C$", "CAD"),
        ("CA$", "CAD"),
        ("NZ$", "NZD"),
        ("HK$", "HKD"),
        ("US$", "USD"),
        ("S$", "SGD"),
        ("CN¥", "CNY"),
        ("円", "JPY"),
        ("R", "ZAR"),
        ("S/", "PEN"),
        ("₽", "RUB"),
        ("Ft", "HUF"),
    ],
)
def test_codes_and_unambiguous_symbols(token, expected):
    assert resolve_currency(token) == expected


@pytest.mark.parametrize("token, expected", [("$", "USD"), ("£", "GBP"), ("¥", "JPY")])
def test_shared_symbols_fall_back_to_their_documented_default(token, expected):
    assert resolve_currency(token) == expected


@pytest.mark.parametrize("token", ["kr", "kr.", "Rs", "₨"])
def test_shared_symbols_without_a_default_need_a_hint(token):
    with pytest.raises(PriceParseError) as info:
        resolve_currency(token)
    assert info.value.error_class is ErrorClass.CURRENCY_UNKNOWN
    assert token.strip() in info.value.message


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"locale_hint": "en-CA"}, "CAD"),
        ({"locale_hint": "en_AU"}, "AUD"),
        ({"locale_hint": "es-MX"}, "MXN"),
        ({"page_url": "https://shop.example.ca/p/1"}, "CAD"),
        ({"page_url": "https://www.example.com.au/p"}, "AUD"),
        ({"page_url": "https://example.co.nz/"}, "NZD"),
        ({"page_url": "https://example.com/p"}, "USD"),
        # A locale whose currency a "$" cannot mean is weak evidence and is skipped.
        ({"locale_hint": "de-DE"}, "USD"),
        ({"locale_hint": "de-DE", "page_url": "https://example.ca/"}, "CAD"),
    ],
)
def test_dollar_sign_uses_locale_then_tld_then_usd(kwargs, expected):
    assert resolve_currency("$", **kwargs) == expected


def test_hint_precedence_currency_hint_beats_locale_beats_tld():
    url = "https://example.com.au/p"
    assert resolve_currency("$", currency_hint="NZD", locale_hint="en-CA", page_url=url) == "NZD"
    assert resolve_currency("$", locale_hint="en-CA", page_url=url) == "CAD"
    assert resolve_currency("$", page_url=url) == "AUD"


def test_declared_currency_hint_wins_even_against_the_usual_reading_of_a_symbol():
    # Markup declaring EUR next to a theme's "$" is trusted over the symbol.
    assert resolve_currency("$", currency_hint="EUR") == "EUR"


def test_explicit_text_is_not_overridden_by_hints():
    assert resolve_currency("€", currency_hint="USD", locale_hint="en-US") == "EUR"
    assert resolve_currency("GBP", currency_hint="USD") == "GBP"


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"page_url": "https://butik.example.se/"}, "SEK"),
        ({"locale_hint": "nb_NO"}, "NOK"),
        ({"locale_hint": "da-DK"}, "DKK"),
        ({"currency_hint": "isk"}, "ISK"),
    ],
)
def test_kr_is_decided_by_hints(kwargs, expected):
    assert resolve_currency("kr", **kwargs) == expected


def test_yen_sign_in_chinese_locale_is_yuan():
    assert resolve_currency("¥", locale_hint="zh-CN") == "CNY"
    assert resolve_currency("¥", locale_hint="ja-JP") == "JPY"


def test_pound_on_egyptian_site_uses_tld():
    assert resolve_currency("£", page_url="https://shop.example.eg/") == "EGP"


def test_no_symbol_uses_hints_in_order():
    assert resolve_currency(None, currency_hint="chf", locale_hint="en-GB") == "CHF"
    assert resolve_currency("", locale_hint="de-CH", page_url="https://example.de/") == "CHF"
    assert resolve_currency(None, page_url="https://example.de/x") == "EUR"
    assert resolve_currency(None, page_url="https://example.co.uk/x") == "GBP"


def test_no_symbol_and_no_hint_is_unknown_not_usd():
    with pytest.raises(PriceParseError) as info:
        resolve_currency(None, locale_hint="en", page_url="https://example.com/")
    assert info.value.error_class is ErrorClass.CURRENCY_UNKNOWN


@pytest.mark.parametrize("token", ["XYZ", "dollars-ish", "¤"])
def test_unknown_symbol(token):
    with pytest.raises(PriceParseError) as info:
        resolve_currency(token, currency_hint="USD")
    assert info.value.error_class is ErrorClass.CURRENCY_UNKNOWN


def test_invalid_currency_hint_is_reported():
    with pytest.raises(PriceParseError) as info:
        resolve_currency("$", currency_hint="Dollar")
    assert info.value.error_class is ErrorClass.CURRENCY_UNKNOWN
    assert "Dollar" in info.value.message


@pytest.mark.parametrize(
    "locale, region",
    [
        ("en-CA", "CA"),
        ("en_AU", "AU"),
        ("de-CH", "CH"),
        ("zh-Hant-TW", "TW"),
        ("en_US.UTF-8", "US"),
        ("de", None),
        ("es-419", None),
        ("", None),
        (None, None),
    ],
)
def test_region_from_locale(locale, region):
    assert region_from_locale(locale) == region


def test_language_only_locale_says_nothing_about_currency():
    assert currency_from_locale("de") is None
    assert currency_from_locale("fr-FR") == "EUR"


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://a.example.co.uk/x", "GBP"),
        ("https://example.de", "EUR"),
        ("https://example.eu/", "EUR"),
        ("https://example.jp/item?id=1", "JPY"),
        ("https://example.io/", None),  # vanity ccTLD
        ("https://example.co/", None),
        ("https://example.com/", None),
        ("example.ch/produkt", "CHF"),
        ("not a url at all", None),
        (None, None),
    ],
)
def test_currency_from_url(url, expected):
    assert currency_from_url(url) == expected
