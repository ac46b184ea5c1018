"""How far to trust one competitor price observation: a score in [0, 1] with its reasons.

Pure and deterministic; :func:`calibr_pipeline.warehouse.competitor_store.replace_snapshots`
computes it for every normalized snapshot, and rules never price on a snapshot whose score is
under the project's threshold (quarantined). Each signal subtracts a documented penalty from
1.0 (the score is clamped to [0, 1]); every signal that fires adds one reason
``{"signal", "penalty", "detail"}``:

=====================  ===========================================================  ==========
signal                 fires when                                                   penalty
=====================  ===========================================================  ==========
extraction             the reading's own confidence is below 1 (source + evidence)  0.6 x (1 - confidence)
stale                  the observation is older than 24 h / 72 h / 7 days           0.1 / 0.3 / 0.5
peer_deviation         more than 30 % / 50 % from the median of other competitors   0.15 / 0.3
                       (or from our own price when no competitor is comparable)
implausible_low        under 10 % of that reference (a 1 ¢ price, a banner's "$1")  0.5
history_drop           more than 60 % below the listing's previous price             0.4
history_jump           more than 150 % above the listing's previous price            0.4
                       (either one is halved when a confirming re-fetch agreed)
multi_price            the page shows several prices for the product (from price)   0.1
soft_404               the page says "not found" / "no longer available", or the    0.8
                       request was redirected to a home or category page
out_of_stock           the offer is out of stock                                     0.15
currency_inferred      the currency was read from a symbol, not declared             0.1
match_equivalent       the listing is a similar, not the same, product               0.1
=====================  ===========================================================  ==========

With the default threshold of 0.5 any one of soft-404, implausibly low, or (unconfirmed) a
history anomaly combined with one more doubt, quarantines the observation; a clean JSON-LD
reading of an exact match scores 0.97.

An observation is *anomalous* (:func:`is_anomaly`) when it drops more than 60 % or jumps more
than 150 % against the listing's previous price: the scraper fetches it once more before it is
trusted, and the second reading confirms it or replaces it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from decimal import Decimal
from statistics import median
from typing import Any, Sequence
from urllib.parse import urlsplit

DEFAULT_THRESHOLD = Decimal("0.5")
THRESHOLD_ENV = "CALIBR_TRUST_THRESHOLD"
DROP_LIMIT = Decimal("0.60")  # a drop of more than 60 %
JUMP_LIMIT = Decimal("1.50")  # a jump of more than 150 %

PENALTIES: dict[str, float] = {
    "stale_24h": 0.1,
    "stale_72h": 0.3,
    "stale_7d": 0.5,
    "peer_deviation_30": 0.15,
    "peer_deviation_50": 0.3,
    "implausible_low": 0.5,
    "history_drop": 0.4,
    "history_jump": 0.4,
    "multi_price": 0.1,
    "soft_404": 0.8,
    "out_of_stock": 0.15,
    "currency_inferred": 0.1,
    "match_equivalent": 0.1,
}
EXTRACTION_WEIGHT = 0.6

# Pages whose own words say the product is gone: a price on them is a banner, not an offer.
SOFT_404_TEXT = re.compile(
    r"page not found|404|not be found|no longer available|no longer exists|product (is )?unavailable|"
    r"seite nicht gefunden|nicht mehr verfügbar|nicht mehr erhältlich|page introuvable|n'est plus disponible|"
    r"página no encontrada|ya no está disponible|pagina non trovata|non è più disponibile|pagina niet gevonden|"
    r"strona nie została znaleziona|страница не найдена",
    re.I,
)


def threshold(project_threshold: Decimal | None = None, environ: dict | None = None) -> Decimal:
    """The project's quarantine threshold, else ``CALIBR_TRUST_THRESHOLD``, else 0.5."""
    if project_threshold is not None:
        return Decimal(project_threshold)
    env = os.environ if environ is None else environ
    raw = env.get(THRESHOLD_ENV)
    if raw is None or not str(raw).strip():
        return DEFAULT_THRESHOLD
    try:
        value = Decimal(str(raw).strip())
    except ArithmeticError:
        raise ValueError(f"{THRESHOLD_ENV} must be a number between 0 and 1, got {raw!r}") from None
    if not (0 <= value <= 1):
        raise ValueError(f"{THRESHOLD_ENV} must be a number between 0 and 1, got {raw!r}")
    return value


def is_anomaly(previous: Decimal | None, current: Decimal | None) -> str | None:
    """"history_drop" / "history_jump" when ``current`` moved too far from ``previous``."""
    if previous is None or current is None or previous <= 0:
        return None
    if current < previous * (1 - DROP_LIMIT):
        return "history_drop"
    if current > previous * (1 + JUMP_LIMIT):
        return "history_jump"
    return None


def redirected_away(requested_url: str | None, final_url: str | None) -> bool:
    """A product URL that ended on the site's home page or on a shorter (category) path."""
    if not requested_url or not final_url or requested_url == final_url:
        return False
    try:
        requested, final = urlsplit(requested_url), urlsplit(final_url)
    except ValueError:
        return False
    req_path = [p for p in requested.path.split("/") if p]
    fin_path = [p for p in final.path.split("/") if p]
    if not req_path:
        return False
    if not fin_path:
        return True  # the home page
    return len(fin_path) < len(req_path) and req_path[: len(fin_path)] == fin_path


@dataclass(frozen=True)
class TrustInputs:
    amount: Decimal | None  # in the project currency (None: not comparable)
    extraction_confidence: float | None = None
    extraction_source: str | None = None
    age_hours: float = 0.0
    peer_amounts: Sequence[Decimal] = ()  # other competitors' prices for the same SKU, same currency
    our_price: Decimal | None = None
    listing_amount: Decimal | None = None  # in the listing's own currency (history compares these)
    previous_amount: Decimal | None = None  # the listing's last price before this one, its currency
    confirmed_by_refetch: bool | None = None
    multi_price: bool = False
    soft_404: bool = False
    out_of_stock: bool = False
    currency_inferred: bool = False
    match_type: str | None = "exact"


@dataclass(frozen=True)
class TrustScore:
    score: Decimal
    reasons: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def quarantined(self, limit: Decimal) -> bool:
        return self.score < limit

    def summary(self) -> str:
        return ", ".join(f"{r['signal']} (-{r['penalty']})" for r in self.reasons) or "no doubts"


def _pct(value: Decimal) -> str:
    return f"{(value * 100).quantize(Decimal('1'))} %"


def score(inputs: TrustInputs) -> TrustScore:
    reasons: list[dict[str, Any]] = []

    def doubt(signal: str, penalty: float, detail: str) -> None:
        reasons.append({"signal": signal, "penalty": round(penalty, 3), "detail": detail})

    if inputs.extraction_confidence is not None and inputs.extraction_confidence < 1:
        doubt(
            "extraction",
            EXTRACTION_WEIGHT * (1 - float(inputs.extraction_confidence)),
            f"{inputs.extraction_source or 'unknown source'} reading with confidence {inputs.extraction_confidence:.2f}",
        )
    if inputs.age_hours > 24 * 7:
        doubt("stale", PENALTIES["stale_7d"], f"observed {inputs.age_hours:.0f} h ago")
    elif inputs.age_hours > 72:
        doubt("stale", PENALTIES["stale_72h"], f"observed {inputs.age_hours:.0f} h ago")
    elif inputs.age_hours > 24:
        doubt("stale", PENALTIES["stale_24h"], f"observed {inputs.age_hours:.0f} h ago")

    amount = inputs.amount
    peers = [p for p in inputs.peer_amounts if p is not None and p > 0]
    reference, reference_name = None, None
    if peers:
        reference, reference_name = Decimal(median(peers)), f"median of {len(peers)} other competitor(s)"
    elif inputs.our_price is not None and inputs.our_price > 0:
        reference, reference_name = inputs.our_price, "our own price"
    if amount is not None and reference is not None and reference > 0:
        ratio = amount / reference
        if ratio < Decimal("0.10"):
            doubt("implausible_low", PENALTIES["implausible_low"], f"{amount} is {_pct(ratio)} of the {reference_name} ({reference})")
        deviation = abs(ratio - 1)
        if deviation > Decimal("0.5"):
            doubt("peer_deviation", PENALTIES["peer_deviation_50"], f"{_pct(deviation)} from the {reference_name} ({reference})")
        elif deviation > Decimal("0.3"):
            doubt("peer_deviation", PENALTIES["peer_deviation_30"], f"{_pct(deviation)} from the {reference_name} ({reference})")

    current = inputs.listing_amount if inputs.listing_amount is not None else amount
    anomaly = is_anomaly(inputs.previous_amount, current)
    if anomaly is not None:
        penalty = PENALTIES[anomaly]
        confirmed = " (confirmed by a re-fetch)" if inputs.confirmed_by_refetch else ""
        if inputs.confirmed_by_refetch:
            penalty /= 2
        doubt(anomaly, penalty, f"{inputs.previous_amount} -> {current}{confirmed}")
    if inputs.multi_price:
        doubt("multi_price", PENALTIES["multi_price"], "the page shows several prices for this product")
    if inputs.soft_404:
        doubt("soft_404", PENALTIES["soft_404"], "the page says the product is not found / no longer available, or redirected away")
    if inputs.out_of_stock:
        doubt("out_of_stock", PENALTIES["out_of_stock"], "out of stock")
    if inputs.currency_inferred:
        doubt("currency_inferred", PENALTIES["currency_inferred"], "currency read from a symbol, not declared")
    if inputs.match_type not in (None, "exact", "manual"):
        doubt("match_equivalent", PENALTIES["match_equivalent"], f"listing matched as {inputs.match_type!r}")

    total = sum(r["penalty"] for r in reasons)
    value = Decimal(str(max(0.0, min(1.0, 1.0 - total)))).quantize(Decimal("0.001"))
    return TrustScore(score=value, reasons=tuple(reasons))


# --------------------------------------------------------------------------- quarantine monitoring

QUARANTINE_RATE_WARN = 0.10  # a tenant-day with more than 10 % of snapshots quarantined warns
QUARANTINE_RATE_ERROR = 0.30  # more than 30 % is an error: the extraction or a site broke
QUARANTINE_ALERT_DAYS = 3  # a listing quarantined this many snapshot days in a row alerts


def quarantine_rate_verdict(quarantined: int, total: int) -> tuple[str, float]:
    """("pass" | "warn" | "error", rate) for a partition's quarantine rate."""
    rate = quarantined / total if total else 0.0
    if rate > QUARANTINE_RATE_ERROR:
        return "error", rate
    if rate > QUARANTINE_RATE_WARN:
        return "warn", rate
    return "pass", rate


def quarantine_streak(flags_newest_first: Sequence[bool]) -> int:
    """How many of the newest snapshot days in a row were quarantined."""
    streak = 0
    for flag in flags_newest_first:
        if not flag:
            break
        streak += 1
    return streak
