"""Turn a price string ("1.234,56 €", "CHF 1'234.50", "¥12,000") into an exact amount and currency.

``price_parser`` finds the currency token and turns the digits into a ``Decimal``; this module
adds what it leaves to the caller: refusing strings that hold more than one number (ranges like
"$10 - $20", "2 for $10"), negative and zero amounts, and deciding the decimal separator
explicitly instead of letting a guess turn "123,456.789" into 123456789.

Separator rule for one number: with both "." and "," present the last one is the decimal point;
a separator that repeats, or a single one followed by exactly three digits after a non-zero
group of 1-3 digits ("1.234", "12,000"), groups thousands — except in three-decimal currencies
(KWD, BHD, ...) where a single "1.234" is read as a decimal. Apostrophes and spaces (including
no-break and thin spaces) only ever group digits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from price_parser import Price

from calibr_pipeline.domain.currency import is_currency_token, lookup_symbol, resolve_currency
from calibr_pipeline.domain.errors import ErrorClass, PriceParseError
from calibr_pipeline.domain.money import minor_unit_exponent, quantize

# Digit groups joined by a single separator; a space or apostrophe only counts as a separator
# when a full three-digit group follows, so "10 20" stays two numbers. A leading decimal point
# ("$.99") counts unless it ends an abbreviation ("S/.10", "Fr.5").
_NUMBER = re.compile(r"(?:(?<![\w/.])[.,](?=\d))?\d+(?:[ ']\d{3}|[.,]\d+)*")
_PERCENT_AFTER = re.compile(r"\s*%")
_SPACES = re.compile(r"[\u00a0\u2007\u2008\u2009\u200a\u202f\u205f\u3000\t\r\n]")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u00b4": "'"})
_MINUS = ("-", "\u2212")
# Beyond this an amount is a parsing accident (a phone number, an id), not a price; it also
# keeps quantize() inside Decimal's default 28-digit precision.
_MAX_ADJUSTED_EXPONENT = 15


@dataclass(frozen=True)
class ParsedPrice:
    amount: Decimal
    currency: str
    raw: str


def _fail(error_class: ErrorClass, message: str) -> PriceParseError:
    return PriceParseError(error_class, message)


# "$119. 95", "118, 99 TL": a theme put a space between the decimal point and the cents.
_SPLIT_DECIMALS = re.compile(r"(?<=\d)([.,]) (?=\d{2}(?!\d))")


def _normalize_text(text: str) -> str:
    return _SPLIT_DECIMALS.sub(r"\1", _SPACES.sub(" ", text.translate(_QUOTES)))


def _single_number(text: str, raw: str, exponent: int | None = None) -> re.Match[str]:
    numbers = [m for m in _NUMBER.finditer(text) if not _PERCENT_AFTER.match(text, m.end())]
    if not numbers:
        raise _fail(ErrorClass.PARSE_NO_PRICE, f"no price in {raw!r}: it contains no digits")
    if len(numbers) > 1 and _same_amount(numbers, raw, exponent):
        return numbers[0]  # "205,68 € 205.68": one price written twice
    if len(numbers) == 1 and re.search(r"[.,]{2}$", text[: numbers[0].start()]):
        # "$..75": a stray separator run before the digits; 75 or 0.75 would both be a guess.
        raise _fail(ErrorClass.PARSE_AMBIGUOUS, f"cannot tell where the number starts in {raw!r}")
    if len(numbers) > 1:
        found = ", ".join(repr(m.group()) for m in numbers[:4])
        raise _fail(
            ErrorClass.PARSE_AMBIGUOUS,
            f"{raw!r} holds several numbers ({found}); a range or multi-buy is not one price",
        )
    return numbers[0]


def _amount_of_number(number: str, raw: str, exponent: int | None) -> Decimal | None:
    core = number.replace("'", "").replace(" ", "")
    try:
        decimal = _decimal_separator(core, raw, exponent)
    except PriceParseError:
        return None
    if core[0] in ".,":
        core = "0" + core
    return Price.fromstring(core, decimal_separator=decimal).amount


def _same_amount(numbers: list[re.Match[str]], raw: str, exponent: int | None) -> bool:
    amounts = {_amount_of_number(m.group(), raw, exponent) for m in numbers}
    return len(amounts) == 1 and None not in amounts


def _is_negative(prefix: str) -> bool:
    before = prefix.strip()
    if before.endswith(_MINUS):
        return True
    # "-$5", "-EUR 5": a minus in front of the currency token.
    return before.startswith(_MINUS) and is_currency_token(before[1:].strip())


def _valid_grouping(parts: list[str]) -> bool:
    # Thousands groups: a non-zero lead of 1-3 digits, then groups of 3 (Indian lakh grouping
    # also uses groups of 2 before the final 3: "1,23,456").
    if not re.fullmatch(r"[1-9]\d{0,2}", parts[0]) or len(parts[-1]) != 3:
        return False
    return all(len(part) in (2, 3) for part in parts[1:-1])


def _decimal_separator(core: str, raw: str, exponent: int | None) -> str | None:
    """Which of "." / "," is the decimal point in ``core`` (digits and . , only); None if neither."""
    dots, commas = core.count("."), core.count(",")
    if dots and commas:
        decimal = "." if core.rfind(".") > core.rfind(",") else ","
        group = "," if decimal == "." else "."
        integer_part = core.rsplit(decimal, 1)[0]
        if core.count(decimal) > 1 or not _valid_grouping(integer_part.split(group)):
            raise _fail(ErrorClass.PARSE_AMBIGUOUS, f"cannot tell the decimal separator in {raw!r}")
        return decimal
    if not (dots or commas):
        return None
    sep = "." if dots else ","
    other = "," if sep == "." else "."
    parts = core.split(sep)
    if len(parts) > 2:
        if not _valid_grouping(parts):
            raise _fail(ErrorClass.PARSE_AMBIGUOUS, f"cannot tell the decimal separator in {raw!r}")
        return other
    if _valid_grouping(parts) and exponent != 3:
        return other
    return sep


def _residue_tokens(text: str, number: re.Match[str]) -> list[str]:
    """Words around the number, and adjacent pairs joined ("AU $" -> "AU$"), in reading order."""
    words: list[str] = []
    for part in (text[: number.start()], text[number.end() :]):
        split = [w.strip(",;:*()[]-–~") for w in part.split()]
        split = [w for w in split if w]
        words.extend(a + b for a, b in zip(split, split[1:]))
        words.extend(split)
    return words


def _currency_token(text: str, number: re.Match[str]) -> str | None:
    residue = _residue_tokens(text, number)
    # The project's own table first: a token that names exactly one currency ("E£", "AU$",
    # "KD") beats price_parser's pick, which may be a shared symbol inside it ("£", "$").
    # Plain lowercase words are left to price_parser: "all", "top", "pen" are also ISO codes.
    for candidate in residue:
        written_as_mark = not candidate.isalpha() or candidate.isupper() or candidate in ("Р", "Br")
        if written_as_mark and not candidate.isdigit() and lookup_symbol(candidate)[0] is not None:
            return candidate
    found = Price.fromstring(text).currency
    if found:
        return found
    # price_parser misses some local forms ("S/ 10", "R 99", "10元", "10 zl").
    for candidate in residue:
        if is_currency_token(candidate):
            return candidate
    return None


def _parse_number(text: str, raw: str, exponent: int | None) -> tuple[Decimal, re.Match[str]]:
    number = _single_number(text, raw, exponent)
    if _is_negative(text[: number.start()]):
        raise _fail(ErrorClass.PARSE_NO_PRICE, f"{raw!r} is a negative amount, not a price")
    core = number.group().replace("'", "").replace(" ", "")
    decimal = _decimal_separator(core, raw, exponent)
    if core[0] in ".,":
        core = "0" + core  # price_parser drops a leading ",": ",99" would read as 99
    amount = Price.fromstring(core, decimal_separator=decimal).amount
    if amount is None:
        raise _fail(ErrorClass.PARSE_NO_PRICE, f"no price in {raw!r}")
    return validate_amount(amount, raw), number


def validate_amount(amount: Decimal, raw: object) -> Decimal:
    """Refuse what cannot be a buyer's price: non-finite, negative, zero, absurdly large.
    ``raw`` is what the amount was read from, for the message."""
    if not amount.is_finite():
        raise _fail(ErrorClass.PARSE_NO_PRICE, f"{raw!r} is not a finite amount")
    if amount < 0:
        raise _fail(ErrorClass.PARSE_NO_PRICE, f"{raw!r} is a negative amount, not a price")
    if amount == 0:
        raise _fail(ErrorClass.PARSE_ZERO_PRICE, f"{raw!r} is a zero price (a placeholder, not a price)")
    if amount.adjusted() > _MAX_ADJUSTED_EXPONENT:
        raise _fail(ErrorClass.PARSE_NO_PRICE, f"{raw!r} is implausibly large for a price")
    return amount


# The longest text read as one price ("Sale price: 1.299,00 € incl. VAT, was 1.499,00 €" is
# 48): anything longer is a block of text, never one amount.
MAX_PRICE_TEXT_CHARS = 256


def parse_amount(text: str, *, currency: str | None = None) -> tuple[Decimal, str | None]:
    """Exact amount in ``text`` and its currency token as written ("$", "zł", "EUR"), or None.

    The amount is not quantized. ``currency`` (ISO) only matters for three-decimal currencies,
    where a single "1.234" is a decimal, not a thousands group.
    Raises :class:`PriceParseError` (PARSE_NO_PRICE / PARSE_AMBIGUOUS / PARSE_ZERO_PRICE).
    """
    if not isinstance(text, str):
        raise _fail(ErrorClass.PARSE_NO_PRICE, f"price must be text, got {type(text).__name__}")
    if len(text) > MAX_PRICE_TEXT_CHARS:
        # Not a price, and price_parser's separator search is quadratic in the length: a
        # hostile page's 200,000-digit attribute took 25 s (found by the extraction fuzz test).
        raise _fail(ErrorClass.PARSE_NO_PRICE, f"{len(text):,} characters are not a price ({text[:40]!r}…)")
    normalized = _normalize_text(text)
    exponent = minor_unit_exponent(currency) if currency else None
    amount, number = _parse_number(normalized, text, exponent)
    return amount, _currency_token(normalized, number)


def normalize_amount(amount: Decimal, currency: str) -> Decimal:
    """Quantize to the currency's minor unit when that loses nothing ("5.5" USD -> 5.50);
    an amount with more significant decimals ("1.2345" USD) is kept exact."""
    try:
        significant = amount.normalize()
        decimals = max(0, -significant.as_tuple().exponent)  # type: ignore[operator]
        if decimals <= minor_unit_exponent(currency):
            return quantize(amount, currency)
        return significant
    except InvalidOperation as exc:
        raise _fail(ErrorClass.PARSE_NO_PRICE, f"amount {amount} cannot be represented exactly") from exc


def parse_price(
    text: str,
    *,
    currency_hint: str | None = None,
    locale_hint: str | None = None,
    page_url: str | None = None,
) -> ParsedPrice:
    """Parse one price string. Currency: the token in the text resolved with
    :func:`~calibr_pipeline.domain.currency.resolve_currency` and the hints; a bare number
    takes the hints' currency, else CURRENCY_UNKNOWN."""
    amount, token = parse_amount(text)
    currency = resolve_currency(
        token, currency_hint=currency_hint, locale_hint=locale_hint, page_url=page_url
    )
    if minor_unit_exponent(currency) == 3:
        amount, _ = parse_amount(text, currency=currency)
    return ParsedPrice(amount=normalize_amount(amount, currency), currency=currency, raw=text)
