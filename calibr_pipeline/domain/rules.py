"""Pricing rules, their validation, and the engine that turns a rule and a SKU into a target price.

A rule is stored as JSON (:func:`rule_to_dict`) and read back with :func:`parse_rule`, which
collects every problem before refusing so that a merchant fixes a rule in one go. Amounts are
``Decimal`` throughout; JSON floats are refused because ``0.1`` in a float is not 0.1.

Engine order (:func:`compute_target`); each step is one entry of ``explain["steps"]``:

1. **inputs** - current price, cost, MAP.
2. **competitor data** - for a competitor transform, observations older than
   ``max_observation_age_hours``, untrusted, out of stock, not positive, or (for reference
   ``competitor``) from another competitor are excluded, each with its reason. Nothing usable
   left: status ``kept`` - we do not move a price on no evidence.
3. **transform** - the raw price. ``beat`` by a percent is ``reference * (1 - pct/100)``, by an
   amount ``reference - amount``; ``match`` is the reference itself.
4. **ceiling** - clamp down.
5. **floor** - the highest of ``cost * (1 + margin/100)`` (only when the cost is known: a cost
   is never invented), ``absolute_floor``, MAP (when ``respect_map``) and one minor unit (a
   price must stay positive). Clamp up. Floor above ceiling: status ``blocked``.
6. **max change** - clamp into ``current * (1 +- pct/100)``, intersected with [floor, ceiling].
   An empty intersection is ``blocked``: the guardrails contradict each other for this SKU,
   and a person has to choose which one gives way.
7. **rounding** - ``charm``: the price with the configured ending at or below the clamped
   price, else the next one above; ``step``: the same with multiples of ``step``. If neither
   candidate satisfies every guardrail the rounding is skipped, never the guardrail.
8. **quantize** - to the currency's minor unit, half-up, then nudged by one minor unit if
   that crossed a bound.
9. **final** - ``change`` or ``unchanged``.

Every clamp that moved the price is also listed in ``explain["clamps"]`` as
``{step, name, before, after, bound}``. ``explain`` holds only JSON types: Decimals are
strings (positional notation, never exponents), datetimes ISO 8601.

The engine does not check the scope: callers pick SKUs with :func:`in_scope`, and a preview
may deliberately run a rule on any SKU. Competitor observations are taken as given - the
caller passes the latest observation per competitor listing; several listings of one
competitor are separate offers, as in :mod:`calibr_pipeline.domain.market`.
"""

from __future__ import annotations

import functools
import json

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from statistics import median
from typing import Any, Literal

from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.domain.money import minor_unit_exponent, quantize

TRANSFORM_KINDS = ("percent_change", "fixed_change", "set_price", "competitor")
REFERENCES = ("lowest", "average", "median", "competitor")
MODES = ("beat", "match")
SCOPE_KINDS = ("project", "product_type", "vendor", "tag", "skus")
ROUNDING_MODES = ("charm", "step")

TransformKind = Literal["percent_change", "fixed_change", "set_price", "competitor"]
Reference = Literal["lowest", "average", "median", "competitor"]
Mode = Literal["beat", "match"]
ScopeKind = Literal["project", "product_type", "vendor", "tag", "skus"]
RoundingMode = Literal["charm", "step"]
Status = Literal["change", "unchanged", "kept", "blocked"]

# Anything larger is a typo, and Decimal's default 28-digit context could not quantize it.
_MAX_ADJUSTED_EXPONENT = 12


class RuleValidationError(CalibrError):
    """A rule document has problems; ``problems`` lists all of them, not just the first."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid pricing rule:\n" + "\n".join(f"- {p}" for p in self.problems))


@dataclass(frozen=True)
class Transform:
    kind: TransformKind
    value: Decimal | None = None  # percent for percent_change; amount for fixed_change / set_price
    reference: Reference | None = None
    competitor_id: int | None = None
    mode: Mode | None = None
    by_percent: Decimal | None = None
    by_amount: Decimal | None = None


@dataclass(frozen=True)
class Scope:
    kind: ScopeKind
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Guardrails:
    min_margin_pct: Decimal | None = None
    absolute_floor: Decimal | None = None
    respect_map: bool = True
    ceiling: Decimal | None = None
    max_change_pct: Decimal | None = None
    max_observation_age_hours: int = 48


@dataclass(frozen=True)
class Rounding:
    mode: RoundingMode
    ending: Decimal | None = None
    step: Decimal | None = None


@dataclass(frozen=True)
class PricingRule:
    name: str
    transform: Transform
    scope: Scope
    guardrails: Guardrails
    rounding: Rounding | None
    currency: str


@dataclass(frozen=True, slots=True)
class SkuContext:
    variant_id: int
    sku: str
    product_type: str | None
    vendor: str | None
    tags: tuple[str, ...]
    current_price: Decimal
    cost: Decimal | None
    map_price: Decimal | None
    currency: str


@dataclass(frozen=True, slots=True)
class CompetitorPriceInput:
    observation_id: int
    competitor_id: int
    amount: Decimal | None  # already in our currency; None when it could not be converted
    observed_at: datetime  # aware
    trusted: bool = True
    in_stock: bool = True
    # Issue 10: why the observation's trust score put it in quarantine (None: not quarantined).
    quarantine_reason: str | None = None
    # Why there is no amount in our currency (an FX rate missing or stale): listed as excluded.
    unconverted_reason: str | None = None


@dataclass(frozen=True)
class TargetProposal:
    variant_id: int
    sku: str
    currency: str
    from_price: Decimal
    to_price: Decimal
    status: Status
    reason: str
    # The trace in two parts (see :func:`expand_explain`): this SKU's part as compact JSON text
    # (what the preview stores per target), and the part every SKU of the rule and moment
    # shares (:func:`explain_base`, stored once per run).
    explain_json: str = field(repr=False)
    explain_base: dict = field(repr=False)

    @functools.cached_property
    def explain(self) -> dict:
        """The whole trace, as readers see it (decoded on first use only)."""
        return expand_explain(json.loads(self.explain_json), self.explain_base, variant_id=self.variant_id, sku=self.sku)


# --------------------------------------------------------------------------------------------
# Parsing and serialising
# --------------------------------------------------------------------------------------------

_MISSING: Any = object()
_INVALID: Any = object()

_RULE_KEYS = frozenset({"name", "transform", "scope", "guardrails", "rounding", "currency"})
_TRANSFORM_KEYS = frozenset({"kind", "value", "reference", "competitor_id", "mode", "by_percent", "by_amount"})
_SCOPE_KEYS = frozenset({"kind", "values"})
_GUARDRAIL_KEYS = frozenset(
    {"min_margin_pct", "absolute_floor", "respect_map", "ceiling", "max_change_pct", "max_observation_age_hours"}
)
_ROUNDING_KEYS = frozenset({"mode", "ending", "step"})


class _Reader:
    """Reads one JSON object, appending a problem per bad field and carrying on."""

    def __init__(self, data: Mapping, path: str, problems: list[str], allowed: frozenset[str]):
        self.data = data
        self.path = path
        self.problems = problems
        for key in sorted(set(data) - allowed, key=str):
            self.problem(str(key), f"unknown key (expected one of: {', '.join(sorted(allowed))})")

    def problem(self, key: str | None, message: str) -> None:
        where = f"{self.path}.{key}" if key and self.path else (key or self.path)
        self.problems.append(f"{where}: {message}")

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def decimal(self, key: str) -> Decimal | Any:
        if not self.has(key):
            return _MISSING
        raw = self.data[key]
        if isinstance(raw, float):
            self.problem(key, f'{raw!r} is a JSON float, which is not exact; write it as a string, e.g. "{raw}"')
            return _INVALID
        if isinstance(raw, bool) or not isinstance(raw, (int, str, Decimal)):
            self.problem(key, f"must be a decimal string or an integer, got {type(raw).__name__}")
            return _INVALID
        try:
            value = Decimal(raw.strip()) if isinstance(raw, str) else Decimal(raw)
        except InvalidOperation:
            self.problem(key, f"not a decimal number: {raw!r}")
            return _INVALID
        if not value.is_finite():
            self.problem(key, f"must be finite, got {raw!r}")
            return _INVALID
        if value and value.adjusted() > _MAX_ADJUSTED_EXPONENT:
            self.problem(key, f"{raw} is out of range")
            return _INVALID
        return value

    def integer(self, key: str) -> int | Any:
        if not self.has(key):
            return _MISSING
        raw = self.data[key]
        if isinstance(raw, float):
            self.problem(key, f"{raw!r} is a JSON float; write a whole number")
            return _INVALID
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
            return int(raw.strip())
        self.problem(key, f"must be a whole number, got {raw!r}")
        return _INVALID

    def choice(self, key: str, options: Sequence[str]) -> str | Any:
        if not self.has(key):
            return _MISSING
        raw = self.data[key]
        if raw not in options:
            self.problem(key, f"unknown {key} {raw!r} (expected one of: {', '.join(options)})")
            return _INVALID
        return raw

    def boolean(self, key: str, default: bool) -> bool:
        if not self.has(key):
            return default
        raw = self.data[key]
        if not isinstance(raw, bool):
            self.problem(key, f"must be true or false, got {raw!r}")
            return default
        return raw

    def section(self, key: str, *, required: bool) -> Mapping | None:
        if not self.has(key):
            if required:
                self.problem(key, "is required")
            return None
        raw = self.data[key]
        if not isinstance(raw, Mapping):
            self.problem(key, f"must be an object, got {type(raw).__name__}")
            return None
        return raw


def _is(value: Any) -> bool:
    return value is not _MISSING and value is not _INVALID


def _fits_minor_unit(value: Decimal, exponent: int) -> bool:
    return value == value.quantize(Decimal(1).scaleb(-exponent), rounding=ROUND_FLOOR)


def _valid_currency(currency: object) -> bool:
    return isinstance(currency, str) and len(currency) == 3 and currency.isalpha() and currency.isupper()


def parse_rule(data: Mapping, *, currency: str, known_competitor_ids: Collection[int] = ()) -> PricingRule:
    """Validate a rule document and build the rule, or raise :class:`RuleValidationError`.

    ``currency`` is the shop's: rules are priced in it. A ``currency`` key in ``data`` (as
    written by :func:`rule_to_dict`) must agree with it.
    """
    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise RuleValidationError([f"rule: must be an object, got {type(data).__name__}"])
    exponent: int | None = None
    if _valid_currency(currency):
        exponent = minor_unit_exponent(currency)
    else:
        problems.append(f"currency: {currency!r} is not an ISO 4217 code")
    top = _Reader(data, "", problems, _RULE_KEYS)
    if top.has("currency") and data["currency"] != currency:
        top.problem("currency", f"rule is in {data['currency']!r} but the shop prices in {currency!r}")

    name = data.get("name")
    if name is None or (isinstance(name, str) and not name.strip()):
        top.problem("name", "is required")
    elif not isinstance(name, str):
        top.problem("name", f"must be a string, got {type(name).__name__}")

    transform_data = top.section("transform", required=True)
    transform = (
        _parse_transform(_Reader(transform_data, "transform", problems, _TRANSFORM_KEYS), exponent, known_competitor_ids)
        if transform_data is not None
        else None
    )
    scope_data = top.section("scope", required=True)
    scope = _parse_scope(_Reader(scope_data, "scope", problems, _SCOPE_KEYS)) if scope_data is not None else None
    guardrails_data = top.section("guardrails", required=False)
    guardrails = _parse_guardrails(_Reader(guardrails_data or {}, "guardrails", problems, _GUARDRAIL_KEYS), exponent)
    rounding_data = top.section("rounding", required=False)
    rounding = (
        _parse_rounding(_Reader(rounding_data, "rounding", problems, _ROUNDING_KEYS), currency, exponent)
        if rounding_data is not None
        else None
    )

    if problems:
        raise RuleValidationError(problems)
    assert transform is not None and scope is not None and guardrails is not None
    return PricingRule(name=name, transform=transform, scope=scope, guardrails=guardrails, rounding=rounding, currency=currency)


def _check_amount_decimals(r: _Reader, key: str, value: Any, exponent: int | None) -> None:
    if _is(value) and exponent is not None and not _fits_minor_unit(value, exponent):
        r.problem(key, f"{value} has more decimals than the currency allows ({exponent})")


def _parse_transform(r: _Reader, exponent: int | None, known_competitor_ids: Collection[int]) -> Transform | None:
    kind = r.choice("kind", TRANSFORM_KINDS)
    value = r.decimal("value")
    reference = r.choice("reference", REFERENCES)
    mode = r.choice("mode", MODES)
    competitor_id = r.integer("competitor_id")
    by_percent = r.decimal("by_percent")
    by_amount = r.decimal("by_amount")
    if kind is _MISSING:
        r.problem("kind", "is required")
    if not _is(kind):
        return None

    if kind == "competitor":
        if value is not _MISSING:
            r.problem("value", "is not used by a competitor transform (use by_percent or by_amount)")
        if reference is _MISSING:
            r.problem("reference", "is required for a competitor transform")
        if mode is _MISSING:
            r.problem("mode", "is required for a competitor transform")
        if reference == "competitor":
            if competitor_id is _MISSING:
                r.problem("competitor_id", "is required when reference is 'competitor'")
            elif _is(competitor_id) and competitor_id not in known_competitor_ids:
                r.problem("competitor_id", f"unknown competitor {competitor_id}")
        elif competitor_id is not _MISSING and _is(reference):
            r.problem("competitor_id", f"is only used with reference 'competitor', not {reference!r}")
        if mode == "beat":
            given = [k for k, v in (("by_percent", by_percent), ("by_amount", by_amount)) if v is not _MISSING]
            if len(given) != 1:
                r.problem(None, "beat needs exactly one of by_percent or by_amount" + (" (both given)" if given else ""))
        elif mode == "match":
            for key, v in (("by_percent", by_percent), ("by_amount", by_amount)):
                if v is not _MISSING:
                    r.problem(key, "is not used by match (match takes the reference price as is)")
        for key, v in (("by_percent", by_percent), ("by_amount", by_amount)):
            if _is(v) and v < 0:
                r.problem(key, f"must not be negative (got {v})")
        if _is(by_percent) and by_percent >= 100:
            r.problem("by_percent", f"must be below 100 (got {by_percent}): the price would be zero or negative")
        _check_amount_decimals(r, "by_amount", by_amount, exponent)
    else:
        for key, v in (
            ("reference", reference),
            ("mode", mode),
            ("competitor_id", competitor_id),
            ("by_percent", by_percent),
            ("by_amount", by_amount),
        ):
            if v is not _MISSING:
                r.problem(key, f"is only used by a competitor transform, not {kind}")
        if value is _MISSING:
            r.problem("value", f"is required for {kind}")
        elif _is(value):
            if kind == "percent_change" and value < -100:
                r.problem("value", f"a percent change below -100 would make the price negative (got {value})")
            if kind == "set_price" and value <= 0:
                r.problem("value", f"set_price must be positive (got {value})")
            if kind in ("fixed_change", "set_price"):
                _check_amount_decimals(r, "value", value, exponent)

    def opt(v: Any) -> Any:
        return v if _is(v) else None

    return Transform(
        kind=kind,
        value=opt(value),
        reference=opt(reference),
        competitor_id=opt(competitor_id),
        mode=opt(mode),
        by_percent=opt(by_percent),
        by_amount=opt(by_amount),
    )


def _parse_scope(r: _Reader) -> Scope | None:
    kind = r.choice("kind", SCOPE_KINDS)
    if kind is _MISSING:
        r.problem("kind", "is required")
    raw_values = r.data.get("values")
    values: tuple[str, ...] = ()
    if raw_values is not None:
        if isinstance(raw_values, (str, bytes)) or not isinstance(raw_values, Sequence):
            r.problem("values", f"must be a list of strings, got {type(raw_values).__name__}")
        elif any(not isinstance(v, str) or not v.strip() for v in raw_values):
            r.problem("values", "must be non-empty strings")
        else:
            values = tuple(raw_values)
    if not _is(kind):
        return None
    if kind == "project":
        if values:
            r.problem("values", "a project scope covers every SKU and takes no values")
    elif raw_values is None or (not values and isinstance(raw_values, Sequence) and not raw_values):
        r.problem("values", f"a {kind} scope needs at least one value")
    return Scope(kind=kind, values=values)


def _parse_guardrails(r: _Reader, exponent: int | None) -> Guardrails:
    margin = r.decimal("min_margin_pct")
    floor = r.decimal("absolute_floor")
    ceiling = r.decimal("ceiling")
    max_change = r.decimal("max_change_pct")
    respect_map = r.boolean("respect_map", True)
    max_age = r.integer("max_observation_age_hours")
    if _is(margin) and margin < 0:
        r.problem("min_margin_pct", f"must not be negative (got {margin})")
    if _is(floor) and floor <= 0:
        r.problem("absolute_floor", f"must be positive (got {floor})")
    if _is(ceiling) and ceiling <= 0:
        r.problem("ceiling", f"must be positive (got {ceiling})")
    if _is(floor) and _is(ceiling) and floor > 0 and ceiling > 0 and floor > ceiling:
        r.problem("absolute_floor", f"{floor} is above the ceiling {ceiling}")
    _check_amount_decimals(r, "absolute_floor", floor, exponent)
    _check_amount_decimals(r, "ceiling", ceiling, exponent)
    if _is(max_change) and not (0 < max_change <= 100):
        r.problem("max_change_pct", f"must be above 0 and at most 100 (got {max_change})")
    if _is(max_age) and max_age <= 0:
        r.problem("max_observation_age_hours", f"must be positive (got {max_age})")

    def opt(v: Any) -> Any:
        return v if _is(v) else None

    return Guardrails(
        min_margin_pct=opt(margin),
        absolute_floor=opt(floor),
        respect_map=respect_map,
        ceiling=opt(ceiling),
        max_change_pct=opt(max_change),
        max_observation_age_hours=max_age if _is(max_age) else 48,
    )


def _parse_rounding(r: _Reader, currency: str, exponent: int | None) -> Rounding | None:
    mode = r.choice("mode", ROUNDING_MODES)
    ending = r.decimal("ending")
    step = r.decimal("step")
    if mode is _MISSING:
        r.problem("mode", "is required")
    if not _is(mode):
        return None
    if mode == "charm":
        if step is not _MISSING:
            r.problem("step", "is only used by step rounding")
        if exponent == 0:
            r.problem("mode", f"charm rounding needs a currency with minor units; {currency} has none: use step rounding")
        if ending is _MISSING:
            r.problem("ending", "is required for charm rounding")
        elif _is(ending):
            if not (0 <= ending < 1):
                r.problem("ending", f"must be a fractional part in [0, 1) (got {ending})")
            elif exponent and not _fits_minor_unit(ending, exponent):
                r.problem("ending", f"{ending} has more decimals than {currency} allows ({exponent})")
    else:
        if ending is not _MISSING:
            r.problem("ending", "is only used by charm rounding")
        if step is _MISSING:
            r.problem("step", "is required for step rounding")
        elif _is(step):
            if step <= 0:
                r.problem("step", f"must be positive (got {step})")
            else:
                _check_amount_decimals(r, "step", step, exponent)
    return Rounding(mode=mode, ending=ending if _is(ending) else None, step=step if _is(step) else None)


def _fmt(value: Decimal) -> str:
    """Positional notation: ``Decimal("1E+1")`` is written ``"10"``, never ``"1E+1"``."""
    return format(value, "f")


def rule_to_dict(rule: PricingRule) -> dict:
    """The rule as a JSON-safe document that :func:`parse_rule` reads back to an equal rule."""
    t = rule.transform
    transform: dict[str, Any] = {"kind": t.kind}
    for key in ("value", "reference", "competitor_id", "mode", "by_percent", "by_amount"):
        v = getattr(t, key)
        if v is not None:
            transform[key] = _fmt(v) if isinstance(v, Decimal) else v
    g = rule.guardrails
    guardrails: dict[str, Any] = {"respect_map": g.respect_map, "max_observation_age_hours": g.max_observation_age_hours}
    for key in ("min_margin_pct", "absolute_floor", "ceiling", "max_change_pct"):
        v = getattr(g, key)
        if v is not None:
            guardrails[key] = _fmt(v)
    rounding: dict[str, Any] | None = None
    if rule.rounding is not None:
        rounding = {"mode": rule.rounding.mode}
        if rule.rounding.ending is not None:
            rounding["ending"] = _fmt(rule.rounding.ending)
        if rule.rounding.step is not None:
            rounding["step"] = _fmt(rule.rounding.step)
    return {
        "name": rule.name,
        "currency": rule.currency,
        "transform": transform,
        "scope": {"kind": rule.scope.kind, "values": list(rule.scope.values)},
        "guardrails": guardrails,
        "rounding": rounding,
    }


# --------------------------------------------------------------------------------------------
# Scope
# --------------------------------------------------------------------------------------------


def _norm(text: str) -> str:
    return text.strip().casefold()


def in_scope(rule: PricingRule, sku: SkuContext) -> bool:
    """Whether the rule applies to the SKU. Type, vendor and tag ignore case and surrounding
    spaces (merchants type them inconsistently); SKUs are identifiers and must match exactly."""
    scope = rule.scope
    if scope.kind == "project":
        return True
    if scope.kind == "skus":
        return sku.sku in scope.values
    wanted = {_norm(v) for v in scope.values}
    if scope.kind == "product_type":
        return sku.product_type is not None and _norm(sku.product_type) in wanted
    if scope.kind == "vendor":
        return sku.vendor is not None and _norm(sku.vendor) in wanted
    if scope.kind == "tag":
        return any(_norm(tag) in wanted for tag in sku.tags)
    raise ValueError(f"unknown scope kind {scope.kind!r}")


# --------------------------------------------------------------------------------------------
# Engine
# --------------------------------------------------------------------------------------------


def _amount_text(value: Decimal, exponent: int) -> str:
    """An amount for people: the currency's minor digits when that is exact (``150.000`` reads
    ``150.00``), every digit otherwise (a margin floor of ``11.9255`` is not rounded away)."""
    if value and value.adjusted() > _MAX_ADJUSTED_EXPONENT + 6:
        return _fmt(value)
    unit = _UNITS.get(exponent) or Decimal(1).scaleb(-exponent)
    floored = value.quantize(unit, rounding=ROUND_FLOOR)
    if value == floored:
        return _fmt(floored)
    return _fmt(value.normalize())


_UNITS = {e: Decimal(1).scaleb(-e) for e in range(0, 7)}


def _json(value: Any, exponent: int) -> Any:
    """JSON-safe copy; Decimals here are amounts (percentages are formatted before they get here)."""
    # Exact-type fast paths first: a 100,000-SKU preview builds millions of these nodes.
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is dict:
        return {str(k): _json(v, exponent) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_json(v, exponent) for v in value]
    if isinstance(value, Decimal):
        return _amount_text(value, exponent)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _json(v, exponent) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v, exponent) for v in value]
    return value


@functools.lru_cache(maxsize=8)
def _encoder(exponent: int) -> Callable[[Any], str]:
    """Compact JSON text of a trace: the C encoder, calling back only for amounts and datetimes."""
    # Equal amounts read the same (_amount_text depends on the value, not on its exponent), and
    # a catalog repeats prices, costs and bounds: the texts are remembered (up to a bound).
    texts: dict[Decimal, str] = {}

    def default(value: Any) -> Any:
        if isinstance(value, Decimal):
            # Most amounts carry exactly the currency's minor digits, and then their own text
            # is _amount_text's (positional, those digits): no lookup needed.
            text = str(value)
            if exponent:
                if text[-exponent - 1 : -exponent] == "." and "E" not in text:
                    return text
            elif text.isdigit() or (text[:1] == "-" and text[1:].isdigit()):
                return text
            text = texts.get(value) if value.is_finite() else None
            if text is None:
                text = _amount_text(value, exponent)
                if value.is_finite():
                    if len(texts) >= 200_000:
                        texts.clear()
                    texts[value] = text
            return text
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, Mapping):
            return {str(k): v for k, v in value.items()}
        raise TypeError(f"{type(value).__name__} is not JSON-serialisable in an explain trace")

    return json.JSONEncoder(separators=(",", ":"), default=default, check_circular=False).encode


# -- the stored form of a trace --------------------------------------------------------------
#
# A preview stores one trace per SKU; most of a full trace is the same for every SKU of a run
# (the rule's name, currency, transform, guardrails and the moment it was computed) or repeats
# the steps (the final step, the list of clamps, the rounding summary). So a trace is kept in
# two parts: the run's :func:`explain_base`, stored once, and each SKU's own part, marked
# ``{"compact": 1, "steps": [steps 1-8], "status", "reason", "final_price", ...}``.
# :func:`expand_explain` gives back the full trace, key for key what the engine describes in
# the module docstring. Keys written later into a stored trace (the apply's
# ``write_time_check``) are kept; a stored trace without the mark (older runs, reverts) is
# already whole and returned as it is.

COMPACT_KEY = "compact"
COMPACT_VERSION = 1
_COMPACT_OWN = frozenset({COMPACT_KEY, "steps", "status", "reason", "final_price"})
_CLAMP_KEYS = ("step", "name", "before", "after", "bound")
_last_base: tuple[PricingRule, datetime, dict] | None = None


def explain_base(rule: PricingRule, now: datetime) -> dict:
    """The part of every trace that the rule and the moment fix (JSON-safe; stored once per run)."""
    global _last_base
    cached = _last_base
    if cached is not None and cached[0] is rule and cached[1] == now:
        return cached[2]
    exponent = minor_unit_exponent(rule.currency)
    document = rule_to_dict(rule)
    base = {
        "rule": rule.name,
        "currency": rule.currency,
        "computed_at": now.isoformat(),
        "transform": _json(document["transform"], exponent),
        "guardrails": _json(document["guardrails"], exponent),
    }
    _last_base = (rule, now, base)
    return base


def is_compact_explain(stored: Any) -> bool:
    return isinstance(stored, Mapping) and stored.get(COMPACT_KEY) == COMPACT_VERSION


def _rounding_summary(step: Mapping) -> dict:
    # Step 7 is {"step": 7, "name": "rounding", **summary}; with step rounding the summary's own
    # "step" (the multiple) took the place of the step number, as it always has in these traces.
    key = "ending" if step["mode"] == "charm" else "step"
    summary = {"mode": step["mode"], key: step.get(key)}
    summary.update((k, v) for k, v in step.items() if k not in ("step", "name", "mode", "ending"))
    return summary


def expand_explain(stored: Mapping | None, base: Mapping | None, *, variant_id: int, sku: str) -> dict:
    """The full trace of one target from its stored part and its run's :func:`explain_base`."""
    if stored is None:
        return {}
    if not is_compact_explain(stored):
        return dict(stored)
    base = base or {}
    steps = [dict(step) for step in stored.get("steps") or []]
    status, reason, final_price = stored.get("status"), stored.get("reason"), stored.get("final_price")
    rounding = next((_rounding_summary(step) for step in steps if step.get("name") == "rounding" and "mode" in step), None)
    clamps = [{k: step.get(k) for k in _CLAMP_KEYS} for step in steps if step.get("clamped") is True]
    steps.append({"step": 9, "name": "final", "status": status, "to_price": final_price, "reason": reason})
    full = {
        "rule": base.get("rule"),
        "currency": base.get("currency"),
        "variant_id": variant_id,
        "sku": sku,
        "computed_at": base.get("computed_at"),
        "steps": steps,
        "clamps": clamps,
        "rounding": rounding,
        "status": status,
        "reason": reason,
        "final_price": final_price,
        "transform": dict(base.get("transform") or {}),
        "guardrails": dict(base.get("guardrails") or {}),
    }
    for key, value in stored.items():
        if key not in _COMPACT_OWN:
            full[key] = value
    return full


def _age_hours(delta: timedelta) -> Decimal:
    # timedelta.total_seconds() is a float; count microseconds instead to stay exact.
    return (Decimal(delta // timedelta(microseconds=1)) / Decimal(3_600_000_000)).quantize(Decimal("0.01"))


def _ceil_to(value: Decimal, unit: Decimal) -> Decimal:
    return (value / unit).to_integral_value(rounding=ROUND_CEILING) * unit


def _floor_to(value: Decimal, unit: Decimal) -> Decimal:
    return (value / unit).to_integral_value(rounding=ROUND_FLOOR) * unit


class _Trace:
    def __init__(self, rule: PricingRule, sku: SkuContext, now: datetime):
        self.rule = rule
        self.sku = sku
        self.steps: list[dict] = []
        self.clamps: list[str] = []  # names of the steps that moved the price
        self.rounding: dict | None = None
        self.now = now

    def step(self, number: int, name: str, **details: Any) -> dict:
        entry = {"step": number, "name": name, **details}
        self.steps.append(entry)
        return entry

    def clamp(self, number: int, name: str, before: Decimal, after: Decimal, bound: Decimal, **details: Any) -> Decimal:
        # A step with ``clamped: true`` is a clamp (expand_explain lists them under "clamps");
        # only this method writes ``clamped``, and true only when the price moved.
        clamped = after != before
        self.step(number, name, before=before, after=after, bound=bound, clamped=clamped, **details)
        if clamped:
            self.clamps.append(name)
        return after

    def finish(self, status: Status, to_price: Decimal, reason: str) -> TargetProposal:
        # Only what is this SKU's own: steps 1-8 and the outcome. The final step, the clamps
        # and the rounding summary repeat the steps, and the rule's header is the run's
        # (explain_base); expand_explain puts the whole trace back together.
        compact = {COMPACT_KEY: COMPACT_VERSION, "steps": self.steps, "status": status, "reason": reason, "final_price": to_price}
        # One pass of the C JSON encoder, calling back only for Decimals and datetimes.
        text = _encoder(minor_unit_exponent(self.rule.currency))(compact)
        return TargetProposal(
            variant_id=self.sku.variant_id,
            sku=self.sku.sku,
            currency=self.sku.currency,
            from_price=self.sku.current_price,
            to_price=to_price,
            status=status,
            reason=reason,
            explain_json=text,
            explain_base=explain_base(self.rule, self.now),
        )

    def stop(self, status: Literal["kept", "blocked"], reason: str) -> TargetProposal:
        return self.finish(status, self.sku.current_price, reason)


def _select_observations(
    rule: PricingRule, observations: Sequence[CompetitorPriceInput], now: datetime
) -> tuple[list[CompetitorPriceInput], list[dict], list[dict]]:
    max_age = timedelta(hours=rule.guardrails.max_observation_age_hours)
    wanted_competitor = rule.transform.competitor_id if rule.transform.reference == "competitor" else None
    used: list[CompetitorPriceInput] = []
    used_rows: list[dict] = []
    excluded_rows: list[dict] = []
    for obs in observations:
        if obs.observed_at.tzinfo is None or obs.observed_at.utcoffset() is None:
            raise ValueError(f"observation {obs.observation_id}: observed_at must be timezone-aware")
        age = now - obs.observed_at
        reasons = []
        if wanted_competitor is not None and obs.competitor_id != wanted_competitor:
            reasons.append(f"not competitor {wanted_competitor}")
        if age > max_age:
            reasons.append(f"older than {rule.guardrails.max_observation_age_hours} h")
        if not obs.trusted:
            reasons.append("competitor not trusted")
        if obs.quarantine_reason:
            reasons.append(f"quarantined: {obs.quarantine_reason}")
        if not obs.in_stock:
            reasons.append("out of stock")
        if obs.amount is None:
            reasons.append(f"no amount in our currency: {obs.unconverted_reason or 'not converted'}")
        elif obs.amount <= 0:
            reasons.append("amount not positive")
        row = {
            "observation_id": obs.observation_id,
            "competitor_id": obs.competitor_id,
            "amount": obs.amount,
            "observed_at": obs.observed_at,
            "age_hours": _fmt(_age_hours(age)),
        }
        if reasons:
            excluded_rows.append({**row, "reason": "; ".join(reasons)})
        else:
            used.append(obs)
            used_rows.append(row)
    return used, used_rows, excluded_rows


def _apply_transform(transform: Transform, current: Decimal, used: Sequence[CompetitorPriceInput]) -> tuple[Decimal, dict]:
    if transform.kind == "percent_change":
        assert transform.value is not None
        return current * (1 + transform.value / 100), {"formula": f"current * (1 + {_fmt(transform.value)} / 100)"}
    if transform.kind == "fixed_change":
        assert transform.value is not None
        return current + transform.value, {"formula": f"current + {_fmt(transform.value)}"}
    if transform.kind == "set_price":
        assert transform.value is not None
        return transform.value, {"formula": f"set to {_fmt(transform.value)}"}

    amounts = sorted(obs.amount for obs in used)
    if transform.reference in ("lowest", "competitor"):
        reference = amounts[0]
    elif transform.reference == "average":
        reference = sum(amounts, Decimal(0)) / len(amounts)
    elif transform.reference == "median":
        reference = Decimal(median(amounts))
    else:
        raise ValueError(f"unknown reference {transform.reference!r}")
    details: dict[str, Any] = {"reference": transform.reference, "reference_price": reference}
    if transform.mode == "match":
        details["formula"] = "match: reference"
        return reference, details
    if transform.by_percent is not None:
        details["formula"] = f"beat: reference * (1 - {_fmt(transform.by_percent)} / 100)"
        return reference * (1 - transform.by_percent / 100), details
    assert transform.by_amount is not None
    details["formula"] = f"beat: reference - {_fmt(transform.by_amount)}"
    return reference - transform.by_amount, details


def _round_candidates(rounding: Rounding, price: Decimal) -> tuple[Decimal, Decimal]:
    if rounding.mode == "charm":
        assert rounding.ending is not None
        below = _floor_to(price - rounding.ending, Decimal(1)) + rounding.ending
        return below, below + 1
    assert rounding.step is not None
    below = _floor_to(price, rounding.step)
    return below, below + rounding.step


def compute_target(
    rule: PricingRule, sku: SkuContext, competitor_prices: Sequence[CompetitorPriceInput], *, now: datetime
) -> TargetProposal:
    """The price ``rule`` proposes for ``sku``, with the trace that explains it (see module doc)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    trace = _Trace(rule, sku, now)
    g = rule.guardrails
    current = sku.current_price
    exponent = minor_unit_exponent(rule.currency)
    unit = Decimal(1).scaleb(-exponent)

    def amount(value: Decimal) -> str:
        return _amount_text(value, exponent)


    # 1. inputs
    trace.step(1, "inputs", current_price=current, cost=sku.cost, map_price=sku.map_price, currency=sku.currency)
    if sku.currency != rule.currency:
        return trace.stop("blocked", f"SKU is priced in {sku.currency} but the rule is in {rule.currency}")

    # 2. competitor data
    used: list[CompetitorPriceInput] = []
    if rule.transform.kind == "competitor":
        used, used_rows, excluded_rows = _select_observations(rule, competitor_prices, now)
        trace.step(2, "competitor_data", used=used_rows, excluded=excluded_rows)
        if not used:
            if not excluded_rows:
                why = "no competitor prices observed"
            else:
                why = f"all {len(excluded_rows)} competitor observation(s) excluded (" + ", ".join(
                    f"#{row['observation_id']}: {row['reason']}" for row in excluded_rows
                ) + ")"
            return trace.stop("kept", f"no usable competitor data: {why}")
    else:
        trace.step(2, "competitor_data", note=f"not used by a {rule.transform.kind} transform")

    # 3. transform
    price, details = _apply_transform(rule.transform, current, used)
    trace.step(3, "transform", kind=rule.transform.kind, **details, raw_price=price)

    # 4. ceiling
    if g.ceiling is not None:
        price = trace.clamp(4, "ceiling", price, min(price, g.ceiling), g.ceiling)
    else:
        trace.step(4, "ceiling", note="no ceiling")

    # 5. floor
    components: dict[str, Decimal] = {"minimum_price": unit}
    notes: list[str] = []
    if g.min_margin_pct is not None:
        if sku.cost is None:
            notes.append(f"cost unknown: the {_fmt(g.min_margin_pct)} % margin floor is not applicable")
        else:
            components["margin"] = sku.cost * (1 + g.min_margin_pct / 100)
    if g.absolute_floor is not None:
        components["absolute_floor"] = g.absolute_floor
    if g.respect_map:
        if sku.map_price is not None:
            components["map"] = sku.map_price
        else:
            notes.append("no MAP for this SKU")
    else:
        notes.append("MAP not respected by this rule")
    floor_source, floor = max(components.items(), key=lambda item: item[1])
    if g.ceiling is not None and floor > g.ceiling:
        trace.step(5, "floor", components=components, floor=floor, floor_source=floor_source, notes=notes)
        return trace.stop("blocked", f"floor {amount(floor)} ({floor_source}) above ceiling {amount(g.ceiling)}")
    price = trace.clamp(
        5, "floor", price, max(price, floor), floor, components=components, floor_source=floor_source, notes=notes
    )

    # 6. max change per run
    low, high = floor, g.ceiling
    if g.max_change_pct is not None:
        band_low = current * (1 - g.max_change_pct / 100)
        band_high = current * (1 + g.max_change_pct / 100)
        band = {"band_low": band_low, "band_high": band_high, "max_change_pct": _fmt(g.max_change_pct)}
        if band_high < floor:
            trace.step(6, "max_change", **band)
            return trace.stop(
                "blocked",
                f"floor {amount(floor)} ({floor_source}) above the max-change band: at most {_fmt(g.max_change_pct)} % "
                f"from {amount(current)} reaches {amount(band_high)}",
            )
        if g.ceiling is not None and band_low > g.ceiling:
            trace.step(6, "max_change", **band)
            return trace.stop(
                "blocked",
                f"ceiling {amount(g.ceiling)} below the max-change band: at most {_fmt(g.max_change_pct)} % "
                f"from {amount(current)} reaches down to {amount(band_low)}",
            )
        low = max(floor, band_low)
        high = band_high if g.ceiling is None else min(g.ceiling, band_high)
        if price < band_low:
            price = trace.clamp(6, "max_change", price, band_low, band_low, **band)
        elif price > band_high:
            price = trace.clamp(6, "max_change", price, band_high, band_high, **band)
        else:
            trace.step(6, "max_change", before=price, after=price, clamped=False, **band)
    else:
        trace.step(6, "max_change", note="no max change")

    low_unit = _ceil_to(low, unit)
    high_unit = _floor_to(high, unit) if high is not None else None
    if high_unit is not None and low_unit > high_unit:
        return trace.stop(
            "blocked", f"no price in whole {rule.currency} minor units between {amount(low)} and {amount(high)}"
        )

    def fits(candidate: Decimal) -> bool:
        return low <= candidate and (high is None or candidate <= high)

    # 7. rounding
    rounding_note: str | None = None
    if rule.rounding is not None:
        below, above = _round_candidates(rule.rounding, price)
        target = rule.rounding.ending if rule.rounding.mode == "charm" else rule.rounding.step
        chosen = below if fits(below) else above if fits(above) else None
        trace.rounding = {
            "mode": rule.rounding.mode,
            ("ending" if rule.rounding.mode == "charm" else "step"): target,
            "before": price,
            "candidate_below": below,
            "candidate_above": above,
        }
        if chosen is None:
            what = f"ending in {_fmt(target)}" if rule.rounding.mode == "charm" else f"multiple of {_fmt(target)}"
            bounds = f"{amount(low)} and {amount(high)}" if high is not None else f"{amount(low)} and no ceiling"
            rounding_note = f"rounding skipped: no price {what} between {bounds}"
            trace.rounding.update(after=price, skipped=True, note=rounding_note)
        else:
            trace.rounding.update(after=chosen, skipped=False)
            price = chosen
        trace.step(7, "rounding", **trace.rounding)
    else:
        trace.step(7, "rounding", note="no rounding")

    # 8. quantize
    quantized = quantize(price, rule.currency)
    nudged = max(quantized, low_unit)
    if high_unit is not None:
        nudged = min(nudged, high_unit)
    trace.step(8, "quantize", before=price, quantized=quantized, after=nudged, nudged=nudged != quantized)
    # The nudged bound can carry another exponent (integer * unit may give 1E+3), so fix it here.
    price = quantize(nudged, rule.currency)

    # 9. final
    status: Status = "change" if price != current else "unchanged"
    if status == "change":
        reason = f"{amount(current)} -> {amount(price)}"
    else:
        reason = f"target equals the current price {amount(current)}"
    if trace.clamps:
        reason += "; limited by " + ", ".join(trace.clamps)
    if rounding_note:
        reason += f"; {rounding_note}"
    return trace.finish(status, price, reason)
