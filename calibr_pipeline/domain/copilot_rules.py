"""The copilot's rule policy: what a proposed rule must satisfy before it is saved (disabled).

Pure. Layers, in order, each with a stable refusal code:

1. the tool arguments: exactly ``{"rule": {...}}``. Asking to enable the rule, apply it,
   or name a project / tenant (the project is the caller's, never the model's) is refused
   with ``rule_enable_forbidden``, ``apply_forbidden`` or ``cross_project``;
2. :data:`RULE_JSON_SCHEMA` (``jsonschema``), ``rule_schema_invalid``;
3. the existing validator (:func:`calibr_pipeline.domain.rules.parse_rule`), ``rule_invalid``;
4. guardrails against the project defaults (:data:`PROJECT_GUARDRAIL_DEFAULTS`): a rule must
   have a floor (``no_floor``); missing guardrails are filled in from the defaults; anything
   looser than a default is either refused (beyond :data:`HARD_LIMITS`) or reported in the
   proposal's ``guardrail_notes`` - a proposal never widens a guardrail without saying so.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import jsonschema

from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.domain.rules import (
    MODES,
    REFERENCES,
    ROUNDING_MODES,
    SCOPE_KINDS,
    TRANSFORM_KINDS,
    PricingRule,
    RuleValidationError,
    parse_rule,
    rule_to_dict,
)

COPILOT_RULE_PREFIX = "Copilot: "

# The guardrails every project starts from (there is no per-project override yet): a rule
# proposed by the copilot is never looser than this unless its notes say so.
PROJECT_GUARDRAIL_DEFAULTS = {
    "min_margin_pct": Decimal("15"),
    "max_change_pct": Decimal("20"),
    "respect_map": True,
    "max_observation_age_hours": 48,
}
# Beyond these a proposal is refused outright, whatever it says.
HARD_LIMITS = {"max_change_pct": Decimal("50"), "max_observation_age_hours": 168, "min_margin_pct_floor": Decimal("0")}

_DECIMAL = {"type": ["string", "integer"], "pattern": r"^-?\d{1,12}(\.\d{1,6})?$"}
RULE_JSON_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Calibrate pricing rule (see docs/rules.md)",
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "transform", "scope"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 120},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "transform": {
            "type": "object",
            "additionalProperties": False,
            "required": ["kind"],
            "properties": {
                "kind": {"enum": list(TRANSFORM_KINDS)},
                "value": _DECIMAL,
                "reference": {"enum": list(REFERENCES)},
                "competitor_id": {"type": "integer", "minimum": 1},
                "mode": {"enum": list(MODES)},
                "by_percent": _DECIMAL,
                "by_amount": _DECIMAL,
            },
        },
        "scope": {
            "type": "object",
            "additionalProperties": False,
            "required": ["kind"],
            "properties": {
                "kind": {"enum": list(SCOPE_KINDS)},
                "values": {"type": "array", "maxItems": 200, "items": {"type": "string", "minLength": 1, "maxLength": 200}},
            },
        },
        "guardrails": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "min_margin_pct": _DECIMAL,
                "absolute_floor": _DECIMAL,
                "respect_map": {"type": "boolean"},
                "ceiling": _DECIMAL,
                "max_change_pct": _DECIMAL,
                "max_observation_age_hours": {"type": "integer", "minimum": 1},
            },
        },
        "rounding": {
            "type": ["object", "null"],
            "additionalProperties": False,
            "required": ["mode"],
            "properties": {"mode": {"enum": list(ROUNDING_MODES)}, "ending": _DECIMAL, "step": _DECIMAL},
        },
    },
}
PROPOSE_RULE_PARAMETERS: dict = {
    "type": "object",
    "additionalProperties": False,
    "required": ["rule"],
    "properties": {"rule": RULE_JSON_SCHEMA},
}

_ENABLE_KEYS = {"enabled", "enable", "active", "activate", "status", "state"}
_APPLY_KEYS = {"apply", "apply_now", "run", "execute", "publish", "go_live", "request_apply"}
_SCOPE_KEYS = {"project", "project_id", "project_slug", "tenant", "tenant_id", "tenant_slug", "shop", "shop_id"}


class RuleRefusal(CalibrError):
    def __init__(self, code: str, reason: str):
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")


@dataclass(frozen=True)
class CheckedProposal:
    rule: PricingRule
    document: dict  # what is saved (rule_to_dict of the checked rule, copilot name)
    guardrail_notes: tuple[str, ...]


def _clean_name(name: str) -> str:
    text = unicodedata.normalize("NFKC", name)
    text = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in text)
    text = re.sub(r"\s+", " ", text).strip()[:100]
    return text or "proposal"


def _walk_keys(value, depth=0):
    if depth > 6:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key).lower(), item
            yield from _walk_keys(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from _walk_keys(item, depth + 1)


def check_tool_arguments(arguments: object, *, project_slug: str) -> dict:
    """The ``propose_rule`` arguments -> the rule document, or a refusal naming what was asked."""
    if not isinstance(arguments, dict):
        raise RuleRefusal("tool_args_invalid", "propose_rule takes a JSON object {\"rule\": {...}}")
    for key, value in _walk_keys(arguments):
        if key in _ENABLE_KEYS and value not in (False, None, "disabled", "inactive"):
            raise RuleRefusal("rule_enable_forbidden", "the copilot saves proposals disabled; a person enables them with `calibr rules`")
        if key in _APPLY_KEYS and value not in (False, None):
            raise RuleRefusal("apply_forbidden", "the copilot never applies prices; a person previews and applies with `calibr runs apply`")
        if key in _SCOPE_KEYS and value not in (None, project_slug):
            raise RuleRefusal("cross_project", f"the proposal is for project {project_slug!r} only; it cannot name another project, tenant or shop")
    extra = set(arguments) - {"rule"}
    if extra:
        raise RuleRefusal("tool_args_invalid", f"unexpected arguments {sorted(extra)}; propose_rule takes only \"rule\"")
    rule = arguments.get("rule")
    if not isinstance(rule, dict):
        raise RuleRefusal("tool_args_invalid", "\"rule\" must be a JSON object")
    return rule


def check_proposal(document: dict, *, project_slug: str, currency: str, known_competitor_ids=(), defaults: dict | None = None) -> CheckedProposal:
    defaults = dict(PROJECT_GUARDRAIL_DEFAULTS if defaults is None else defaults)
    document = dict(document)
    if document.get("currency") not in (None, currency):
        raise RuleRefusal("cross_project", f"the rule's currency {document['currency']!r} is not the project's {currency}")
    document.pop("currency", None)
    validator = jsonschema.Draft202012Validator(RULE_JSON_SCHEMA)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
    if errors:
        problems = "; ".join(f"{'/'.join(map(str, e.path)) or '(rule)'}: {e.message[:160]}" for e in errors[:5])
        raise RuleRefusal("rule_schema_invalid", problems)
    guardrails = dict(document.get("guardrails") or {})
    notes: list[str] = []

    def dec(key):
        try:
            return Decimal(str(guardrails[key])) if guardrails.get(key) is not None else None
        except InvalidOperation:
            return None

    margin, floor = dec("min_margin_pct"), dec("absolute_floor")
    if margin is not None and margin < HARD_LIMITS["min_margin_pct_floor"]:
        raise RuleRefusal("negative_margin", f"a minimum margin of {margin} % would allow selling below cost")
    if margin is None and floor is None:
        raise RuleRefusal("no_floor", "a proposed rule needs a floor: min_margin_pct (the project default is "
                          f"{defaults['min_margin_pct']} %) or absolute_floor")
    if margin is not None and margin < defaults["min_margin_pct"]:
        notes.append(f"min_margin_pct {margin} % is below the project default of {defaults['min_margin_pct']} % (widened)")
    if margin is None:
        notes.append(f"no min_margin_pct given: only the absolute floor {floor} protects margin (the project default is {defaults['min_margin_pct']} %)")
    max_change = dec("max_change_pct")
    if max_change is None:
        guardrails["max_change_pct"] = str(defaults["max_change_pct"])
        notes.append(f"max_change_pct set to the project default of {defaults['max_change_pct']} %")
    elif max_change > HARD_LIMITS["max_change_pct"]:
        raise RuleRefusal("guardrail_out_of_bounds", f"max_change_pct {max_change} % is above the copilot's hard limit of {HARD_LIMITS['max_change_pct']} %")
    elif max_change > defaults["max_change_pct"]:
        notes.append(f"max_change_pct {max_change} % is above the project default of {defaults['max_change_pct']} % (widened)")
    if guardrails.get("respect_map") is False:
        notes.append("respect_map is off: prices may go below the minimum advertised price (widened from the project default)")
    age = guardrails.get("max_observation_age_hours")
    if age is not None and age > HARD_LIMITS["max_observation_age_hours"]:
        raise RuleRefusal("guardrail_out_of_bounds", f"max_observation_age_hours {age} is above the hard limit of {HARD_LIMITS['max_observation_age_hours']}")
    if age is not None and age > defaults["max_observation_age_hours"]:
        notes.append(f"max_observation_age_hours {age} is above the project default of {defaults['max_observation_age_hours']} (widened)")
    document["guardrails"] = guardrails
    name = str(document.get("name") or "proposal")
    document["name"] = name if name.startswith(COPILOT_RULE_PREFIX) else COPILOT_RULE_PREFIX + _clean_name(name)
    try:
        rule = parse_rule(document, currency=currency, known_competitor_ids=known_competitor_ids)
    except RuleValidationError as exc:
        raise RuleRefusal("rule_invalid", "; ".join(exc.problems)[:800]) from None
    return CheckedProposal(rule, rule_to_dict(rule), tuple(notes))
