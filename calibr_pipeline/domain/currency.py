"""Map what a page shows ("$", "kr", "zł", "usd") to an ISO 4217 code.

Policy, in the order :func:`resolve_currency` applies it:

1. An ISO 4217 code (any case, e.g. ``"usd"``) is taken as written.
2. A symbol that belongs to one currency only (``€``, ``zł``, ``₹``, ``R$``, ``C$``, ``CHF``, ...)
   is taken as written; hints do not override what the text states.
3. A symbol shared by several currencies (``$``, ``kr``, ``¥``, ``£``, ``Rs``, ...) is decided by,
   in order: the explicit ``currency_hint`` (the currency the page or the competitor declares,
   which wins even when it is not a usual reading of the symbol: markup's declared currency is
   more trustworthy than a theme's symbol); the locale's region (``en-CA``, ``de_CH``: html
   ``lang``, ``og:locale``) when that region's currency is one the symbol can mean; the page URL's
   country TLD (``.ca``, ``.com.au``, ``.co.uk``) likewise; then the symbol's default.
   Defaults exist only where one currency dominates the symbol's use on the web:
   ``$`` -> USD, ``£`` -> GBP, ``¥`` -> JPY. ``kr`` (SEK/NOK/DKK/ISK) and ``Rs`` have no default:
   guessing between near-equal candidates would be silently wrong, so they raise
   ``CURRENCY_UNKNOWN`` without a hint.
4. No symbol at all (``None``/empty): ``currency_hint``, then locale region, then TLD, else
   ``CURRENCY_UNKNOWN``. There is no "$ means USD" default here: a bare number states nothing.

Locale and TLD hints are weak evidence, so for a shared symbol they only choose among the
currencies that symbol can mean. A language-only locale (``"de"``, ``"en"``) says nothing about
currency (German is spoken in three currency areas) and is ignored. Vanity ccTLDs that are used
worldwide for reasons other than country (``.io``, ``.co``, ``.me``, ``.tv``, ...) are ignored.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from calibr_pipeline.domain.errors import ErrorClass, PriceParseError

# Active ISO 4217 codes (plus a few still common in markup: HRK, which Croatia used until 2023).
ISO_CODES: frozenset[str] = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP
    BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP
    GEL GHS GIP GMD GNF GTQ GYD HKD HNL HRK HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS
    KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR
    MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF
    SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD
    TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL
    """.split()
)

# Symbols and local abbreviations that name exactly one currency. Keys are matched
# case-sensitively first, then case-insensitively (so "ZŁ", "kč" and "chf" work) — except the
# single Latin letters below, whose meaning depends on case and which are matched exactly.
_UNAMBIGUOUS_BY_CURRENCY: dict[str, str] = {
    "EUR": "€ EURO EUROS",
    "USD": "US$ USD$ U$S U$",
    "CAD": "C$ CA$ CAD$ CDN$",
    "AUD": "A$ AU$ AUD$",
    "NZD": "NZ$ NZD$",
    "HKD": "HK$ HKD$",
    "SGD": "S$ SG$ SGD$",
    "BRL": "R$",
    "MXN": "MX$ MEX$",
    "TWD": "NT$",
    "DOP": "RD$",
    "COP": "COL$ COP$",
    "CLP": "CLP$",
    "ARS": "AR$",
    "JMD": "J$",
    "TTD": "TT$",
    "JPY": "JP¥ 円",
    "CNY": "CN¥ 元 RMB 人民币",
    "INR": "₹",
    "KRW": "₩ 원",
    "TRY": "₺ TL",
    "PLN": "ZŁ ZL",
    "CZK": "KČ",
    "HUF": "FT",
    "RON": "LEI",
    "BGN": "ЛВ ЛВ.",
    "RUB": "₽ РУБ РУБ. Р. РУБЛЕЙ РУБЛЯ РУБЛЬ RUR",
    "UAH": "₴ ГРН ГРН.",
    "ILS": "₪",
    "VND": "₫ Đ VNĐ",
    "PHP": "₱",
    "THB": "฿",
    "NGN": "₦",
    "CRC": "₡",
    "PYG": "₲",
    "GHS": "₵",
    "KZT": "₸",
    "AZN": "₼",
    "GEL": "₾",
    "LAK": "₭",
    "MNT": "₮",
    "KHR": "៛",
    "CHF": "CHF FR. SFR. SFR",
    "MYR": "RM",
    "IDR": "RP",
    "KES": "KSH",
    "HRK": "KN",
    "MKD": "ДЕН",
    "RSD": "DIN DIN. ДИН.",
    "PEN": "S/ S/.",
    "BOB": "BS BS.",
    "AED": "د.إ",
    "SAR": "ر.س SR ﷼",
    "KWD": "د.ك KD د.ك.",
    "BYN": "BYN",
    "ALL": "LEK LEKË",
    "AFN": "؋ AFS",
    "IRR": "ریال",
    "OMR": "ر.ع. ر.ع",
    "BHD": "د.ب. د.ب BD",
    "JOD": "د.ا JD",
    "LBP": "ل.ل. ل.ل",
    "QAR": "ر.ق",
    "EGP": "ج.م ج.م. E£ LE",
}
_UNAMBIGUOUS: dict[str, str] = {
    symbol: currency for currency, symbols in _UNAMBIGUOUS_BY_CURRENCY.items() for symbol in symbols.split()
}

# Single letters whose meaning depends on case ("R" is the rand, "r" is nothing).
_EXACT_ONLY: dict[str, str] = {
    "R": "ZAR",
    "Q": "GTQ",
    "Р": "RUB",  # Cyrillic Er: Russian shops write "6 300 Р" for roubles
    "Br": "BYN",  # Belarusian rouble; "BR"/"br" are not currency marks
}


class _Shared:
    def __init__(self, default: str | None, candidates: str):
        self.default = default
        self.candidates = frozenset(candidates.split())


# Symbols that several currencies use. ``default`` is used only when no hint decides.
_AMBIGUOUS: dict[str, _Shared] = {
    "$": _Shared(
        "USD",
        "USD CAD AUD NZD HKD SGD MXN ARS CLP COP TWD BRL UYU DOP JMD TTD BSD BBD BZD "
        "BMD KYD FJD XCD LRD NAD SRD GYD SBD WST TOP CUP",
    ),
    "£": _Shared("GBP", "GBP GIP FKP SHP EGP LBP SYP"),
    "¥": _Shared("JPY", "JPY CNY"),
    "￥": _Shared("JPY", "JPY CNY"),
    "KR": _Shared(None, "SEK NOK DKK ISK"),
    "KR.": _Shared(None, "DKK SEK NOK ISK"),
    ":-": _Shared(None, "SEK NOK DKK"),
    "RS": _Shared(None, "INR PKR LKR NPR MUR SCR"),
    "RS.": _Shared(None, "INR PKR LKR NPR MUR SCR"),
    "₨": _Shared(None, "INR PKR LKR NPR MUR SCR"),
    "CFA": _Shared(None, "XOF XAF"),
    # Arabic currency words shared by several countries ("riyal/rial", "dirham", "dinar", "pound").
    "ريال": _Shared(None, "SAR QAR OMR YER IRR"),
    "درهم": _Shared(None, "AED MAD"),
    "دينار": _Shared(None, "KWD BHD JOD IQD LYD TND DZD"),
    "جنيه": _Shared(None, "EGP SDG SSP"),
    "FCFA": _Shared(None, "XOF XAF"),
}

_EURO_AREA = "AT BE CY DE EE ES FI FR GR HR IE IT LT LU LV MT NL PT SI SK AD MC SM VA ME XK"

_CURRENCY_REGIONS: dict[str, str] = {
    "EUR": _EURO_AREA,
    "USD": "US",
    "CAD": "CA",
    "AUD": "AU",
    "NZD": "NZ",
    "GBP": "GB UK GG JE IM",
    "CHF": "CH LI",
    "JPY": "JP",
    "CNY": "CN",
    "HKD": "HK",
    "MOP": "MO",
    "TWD": "TW",
    "SGD": "SG",
    "INR": "IN",
    "KRW": "KR",
    "TRY": "TR",
    "PLN": "PL",
    "CZK": "CZ",
    "SEK": "SE",
    "NOK": "NO",
    "DKK": "DK",
    "ISK": "IS",
    "HUF": "HU",
    "RON": "RO",
    "BGN": "BG",
    "RSD": "RS",
    "MKD": "MK",
    "BAM": "BA",
    "ALL": "AL",
    "MDL": "MD",
    "UAH": "UA",
    "RUB": "RU",
    "BYN": "BY",
    "GEL": "GE",
    "AMD": "AM",
    "AZN": "AZ",
    "KZT": "KZ",
    "ILS": "IL",
    "AED": "AE",
    "SAR": "SA",
    "QAR": "QA",
    "KWD": "KW",
    "BHD": "BH",
    "OMR": "OM",
    "JOD": "JO",
    "EGP": "EG",
    "MAD": "MA",
    "TND": "TN",
    "ZAR": "ZA",
    "NGN": "NG",
    "KES": "KE",
    "GHS": "GH",
    "BRL": "BR",
    "MXN": "MX",
    "ARS": "AR",
    "CLP": "CL",
    "COP": "CO",
    "PEN": "PE",
    "UYU": "UY",
    "PYG": "PY",
    "BOB": "BO",
    "CRC": "CR",
    "GTQ": "GT",
    "DOP": "DO",
    "JMD": "JM",
    "PAB": "PA",
    "THB": "TH",
    "VND": "VN",
    "PHP": "PH",
    "MYR": "MY",
    "IDR": "ID",
    "PKR": "PK",
    "LKR": "LK",
    "BDT": "BD",
    "NPR": "NP",
}
# ISO 3166 region -> currency. Used for locale hints ("en-CA") and country TLDs (".ca").
REGION_CURRENCY: dict[str, str] = {
    region: currency for currency, regions in _CURRENCY_REGIONS.items() for region in regions.split()
}

# ccTLDs used worldwide as generic names: their country says nothing about the shop's currency.
_VANITY_TLDS = frozenset("co io ai me tv fm ly to ws cc sh gg la im am nu is ac gl so st vc".split())


def _unknown(message: str) -> PriceParseError:
    return PriceParseError(ErrorClass.CURRENCY_UNKNOWN, message)


# Withdrawn codes still found in markup that name today's currency at face value (the 1998
# rouble redenomination is long past; shops writing "RUR" mean today's rouble).
_LEGACY_CODES = {"RUR": "RUB"}


def normalize_code(value: str | None) -> str | None:
    """The ISO code in ``value`` ("usd", " EUR ") or ``None`` if it is not one."""
    if value is None:
        return None
    code = value.strip().upper()
    code = _LEGACY_CODES.get(code, code)
    return code if code in ISO_CODES else None


def region_from_locale(locale_hint: str | None) -> str | None:
    """ISO region of a BCP 47 / POSIX locale: "en-CA" -> "CA", "zh_Hant_TW" -> "TW", "de" -> None."""
    if not locale_hint:
        return None
    # "en_US.UTF-8" and "de-CH@euro" carry an encoding/modifier that is not part of the tag.
    tag = re.split(r"[.@]", locale_hint.strip())[0]
    subtags = re.split(r"[-_]", tag)
    for subtag in subtags[1:]:
        if len(subtag) == 2 and subtag.isalpha():
            return subtag.upper()
    return None


def currency_from_locale(locale_hint: str | None) -> str | None:
    region = region_from_locale(locale_hint)
    return REGION_CURRENCY.get(region) if region else None


def currency_from_url(page_url: str | None) -> str | None:
    """Currency of the page URL's country TLD (".ca", ".com.au", ".co.uk"), if it has one."""
    if not page_url:
        return None
    try:
        host = urlsplit(page_url if "//" in page_url else f"//{page_url}").hostname
    except ValueError:
        return None
    if not host:
        return None
    tld = host.rstrip(".").rsplit(".", 1)[-1].lower()
    if tld == "eu":
        return "EUR"
    if len(tld) != 2 or tld in _VANITY_TLDS:
        return None
    return REGION_CURRENCY.get(tld.upper())


def lookup_symbol(token: str) -> tuple[str | None, frozenset[str]]:
    """``(currency, candidates)`` for a symbol or code: a currency if it names exactly one,
    else ``None`` with the currencies it may mean (empty if the token is unknown)."""
    stripped = token.strip()
    if stripped in _EXACT_ONLY:
        return _EXACT_ONLY[stripped], frozenset()
    code = normalize_code(stripped)
    if code:
        return code, frozenset()
    for key in (stripped, stripped.upper()):
        if key in _UNAMBIGUOUS:
            return _UNAMBIGUOUS[key], frozenset()
        if key in _AMBIGUOUS:
            return None, _AMBIGUOUS[key].candidates
    return None, frozenset()


def is_currency_token(token: str) -> bool:
    currency, candidates = lookup_symbol(token)
    return currency is not None or bool(candidates)


def resolve_currency(
    symbol_or_code: str | None,
    *,
    currency_hint: str | None = None,
    locale_hint: str | None = None,
    page_url: str | None = None,
) -> str:
    """ISO 4217 code for a code or symbol, using hints for shared symbols (see module doc)."""
    hint = None
    if currency_hint is not None and currency_hint.strip():
        hint, _ = lookup_symbol(currency_hint)
        if hint is None:
            raise _unknown(f"currency hint {currency_hint!r} does not name exactly one ISO 4217 currency")
    locale_currency = currency_from_locale(locale_hint)
    url_currency = currency_from_url(page_url)

    token = (symbol_or_code or "").strip()
    if not token:
        chosen = hint or locale_currency or url_currency
        if chosen is None:
            raise _unknown("no currency symbol or code, and no currency, locale or country-TLD hint")
        return chosen

    currency, candidates = lookup_symbol(token)
    if currency is not None:
        return currency
    if not candidates:
        raise _unknown(f"unknown currency symbol or code {token!r}")
    if hint is not None:
        return hint
    for weak in (locale_currency, url_currency):
        if weak in candidates:
            return weak
    shared = _AMBIGUOUS.get(token) or _AMBIGUOUS[token.upper()]
    if shared.default is None:
        raise _unknown(
            f"currency symbol {token!r} may mean any of {', '.join(sorted(candidates))} "
            "and no currency, locale or country-TLD hint decides"
        )
    return shared.default
