"""The last look before a price goes live: is this target still safe to write *now*?

A preview is a proposal computed from the catalog as it was then. Between the preview and
the write the supplier cost can rise, a MAP can be set, the merchant can change the price
by hand, another run can write the variant. :func:`check_write` judges one target against
what the shop and the warehouse say right before the write, with the rule's own guardrails,
and returns one verdict:

* ``write``            - safe: the shop still shows the preview's ``from_price`` and the target
                         price is inside every guardrail computed from write-time data;
* ``already_applied``  - the shop already shows the target price and we had sent a write for
                         it (a lost answer or an interrupted apply): it *was* written;
* ``stale``            - the shop shows neither the preview's ``from_price`` nor (for a target
                         never sent) anything we wrote: someone else set the price, or the
                         variant is gone. Never overwritten;
* ``guardrail``        - the target breaks a guardrail on write-time data; ``bound`` names it.

Guardrails, as in :mod:`calibr_pipeline.domain.rules` (step 5 and 6 of the engine), but
from write-time data: floor = max(cost x (1 + margin), absolute floor, MAP when respected,
one minor unit); ceiling; max change measured from the shop's *current* price. The target
price is never adjusted here: a price the merchant did not preview is not written.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from calibr_pipeline.domain.money import minor_unit_exponent
from calibr_pipeline.domain.rules import Guardrails

Verdict = Literal["write", "already_applied", "stale", "guardrail"]


@dataclass(frozen=True)
class WriteTimeFacts:
    """What is true right before the write."""

    shop_price: Decimal | None  # None: the variant no longer exists in the shop
    cost: Decimal | None  # the unit cost now (shop first, else the warehouse), None if unknown
    map_price: Decimal | None  # the MAP now (warehouse)


@dataclass(frozen=True)
class WriteDecision:
    verdict: Verdict
    reason: str
    bound: dict[str, str] | None = None  # for "guardrail": {"name", "limit", "price"}
    checks: list[dict[str, Any]] = field(default_factory=list)  # the explain trace of the check

    def explain(self) -> dict[str, Any]:
        """JSON-safe record of this check, appended to the target's explain trace."""
        out: dict[str, Any] = {"verdict": self.verdict, "reason": self.reason, "checks": self.checks}
        if self.bound is not None:
            out["bound"] = self.bound
        return out


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def check_write(
    guardrails: Guardrails | None,
    currency: str,
    *,
    from_price: Decimal,
    to_price: Decimal,
    facts: WriteTimeFacts,
    sent_before: bool,
    check_max_change: bool = True,
) -> WriteDecision:
    """Judge one target right before its write (see module docstring).

    ``sent_before``: a write of this target was already sent (and its answer lost, or the
    process died); the shop showing ``to_price`` then means it landed. For a target never
    sent, the shop showing ``to_price`` means someone else set it: nothing to write, and
    nothing of ours to audit.

    ``guardrails`` is None for runs without a rule; ``check_max_change`` is off for reverts,
    whose purpose is to undo a change of that very size.
    """
    shop = facts.shop_price
    checks: list[dict[str, Any]] = [
        {"check": "shop_price", "shop_price": _text(shop), "preview_from_price": _text(from_price), "to_price": _text(to_price)}
    ]
    if shop is None:
        return WriteDecision("stale", "the variant no longer exists in the shop", checks=checks)
    if shop == to_price:
        if sent_before:
            return WriteDecision("already_applied", f"the shop shows the target price {_text(to_price)}: our earlier write landed", checks=checks)
        return WriteDecision("stale", f"the shop already shows {_text(to_price)}, set outside this run: nothing to write", checks=checks)
    if shop != from_price:
        return WriteDecision(
            "stale", f"the shop price is {_text(shop)}, not the previewed {_text(from_price)}: changed since the preview, left alone", checks=checks
        )
    if guardrails is None:
        return WriteDecision("write", "no rule guardrails apply to this run", checks=checks)

    unit = Decimal(1).scaleb(-minor_unit_exponent(currency))
    floors: dict[str, Decimal] = {"minimum_price": unit}
    if guardrails.min_margin_pct is not None and facts.cost is not None:
        floors["margin_floor"] = facts.cost * (1 + guardrails.min_margin_pct / 100)
    if guardrails.absolute_floor is not None:
        floors["absolute_floor"] = guardrails.absolute_floor
    if guardrails.respect_map and facts.map_price is not None:
        floors["map"] = facts.map_price
    checks.append({"check": "floor", "cost": _text(facts.cost), "map_price": _text(facts.map_price), "components": {k: _text(v) for k, v in floors.items()}})
    for name, limit in sorted(floors.items(), key=lambda item: -item[1]):
        if to_price < limit:
            return _violation(name, limit, to_price, f"{_text(to_price)} is below the {name.replace('_', ' ')} {_text(limit)}", checks)
    if guardrails.ceiling is not None:
        checks.append({"check": "ceiling", "ceiling": _text(guardrails.ceiling)})
        if to_price > guardrails.ceiling:
            return _violation("ceiling", guardrails.ceiling, to_price, f"{_text(to_price)} is above the ceiling {_text(guardrails.ceiling)}", checks)
    if check_max_change and guardrails.max_change_pct is not None:
        low = shop * (1 - guardrails.max_change_pct / 100)
        high = shop * (1 + guardrails.max_change_pct / 100)
        checks.append({"check": "max_change", "from": _text(shop), "band_low": _text(low), "band_high": _text(high), "max_change_pct": _text(guardrails.max_change_pct)})
        if to_price < low:
            return _violation("max_change_low", low, to_price, f"{_text(to_price)} is more than {_text(guardrails.max_change_pct)} % below the current {_text(shop)}", checks)
        if to_price > high:
            return _violation("max_change_high", high, to_price, f"{_text(to_price)} is more than {_text(guardrails.max_change_pct)} % above the current {_text(shop)}", checks)
    return WriteDecision("write", "inside every guardrail on write-time data", checks=checks)


def _violation(name: str, limit: Decimal, price: Decimal, reason: str, checks: list[dict[str, Any]]) -> WriteDecision:
    return WriteDecision("guardrail", reason, bound={"name": name, "limit": _text(limit), "price": _text(price)}, checks=checks)
