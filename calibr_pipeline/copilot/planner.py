"""The offline planner: a lark grammar (``grammar.lark``) for the documented question and rule
forms, turned into the same tool calls a language model would make (``query_analytics`` with
SQL, ``propose_rule`` with a rule). Pure: it produces tool calls; the containment layers in
``copilot/service.py`` check and run them exactly as they check a model's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from importlib import resources

from lark import Lark, Token, Transformer, Tree
from lark.exceptions import LarkError

from calibr_pipeline.domain.errors import CalibrError

_REFERENCE = {"lowest": "lowest", "cheapest": "lowest", "average": "average", "mean": "average", "median": "median", "highest": "highest"}
LATEST = "position_date = (SELECT MAX(position_date) FROM market_position)"


class NotUnderstood(CalibrError):
    pass


@dataclass(frozen=True)
class ToolCall:
    name: str  # query_analytics | propose_rule
    arguments: dict


@dataclass(frozen=True)
class Plan:
    form: str  # the grammar form that matched (documented)
    kind: str  # question | what_if | proposal
    calls: tuple[ToolCall, ...]
    summary: str  # what the planner understood, in words
    notes: tuple[str, ...] = field(default=())


@lru_cache(maxsize=1)
def _parser() -> Lark:
    grammar = (resources.files("calibr_pipeline.copilot") / "grammar.lark").read_text(encoding="utf-8")
    return Lark(grammar, start="start", parser="earley", ambiguity="resolve")


def normalize(prompt: str) -> str:
    text = prompt.strip().lower()
    text = text.replace("\u2019", "'").replace("\u201c", '"').replace("\u201d", '"')
    text = re.sub(r"[$\u20ac\u00a3]\s*(\d+(?:\.\d+)?)", r"\1 dollars", text)
    text = re.sub(r"(\d+(?:\.\d+)?)\s*%", r"\1 percent", text)
    text = re.sub(r"(?<![\w.])\.(\d+)", r"0.\1", text)
    text = re.sub(r"\b(beat|undercut|match|matching|beating|lowest|cheapest|median|average|by|price)-", r"\1 ", text)
    text = re.sub(r"(?<=\d)-(?=[a-z])", " ", text)
    text = re.sub(r"[?!;:]+", " ", text)
    text = re.sub(r"\.(?=\s|$)", " ", text)
    text = re.sub(r",", " , ", text)
    return re.sub(r"\s+", " ", text).strip()


def _num(token) -> Decimal:
    return Decimal(str(token))


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _value(node) -> str:
    text = str(node)
    return text[1:-1] if text.startswith('"') else text


def plan(prompt: str) -> Plan:
    if len(prompt) > 2000:
        raise NotUnderstood("the prompt is longer than 2000 characters")
    text = normalize(prompt)
    try:
        tree = _parser().parse(text)
    except LarkError:
        raise NotUnderstood(
            "the offline planner did not understand that; see docs/copilot_simulation.md for the question and rule "
            "forms it knows, or connect a language model (CALIBR_COPILOT_LLM_URL)"
        ) from None
    return _Planner().build(tree)


def _tokens(tree: Tree, type_: str) -> list[Token]:
    return [t for t in tree.scan_values(lambda v: isinstance(v, Token) and v.type == type_)]


class _Planner:
    def build(self, tree: Tree) -> Plan:
        node = tree
        while node.data in ("start",) and len(node.children) == 1 and isinstance(node.children[0], Tree):
            node = node.children[0]
        handler = getattr(self, f"q_{node.data}", None)
        if handler is None:
            raise NotUnderstood(f"no plan for form {node.data}")
        return handler(node)

    # ---------------------------------------------------------------- questions
    def _q(self, form: str, sql: str, summary: str) -> Plan:
        return Plan(form, "question", (ToolCall("query_analytics", {"sql": sql}),), summary)

    def q_most_vs_market(self, node):
        extreme = str(_tokens(node, "EXTREME")[0])
        order = "DESC" if extreme in ("expensive", "highest priced") else "ASC"
        return self._q("most_vs_market", f"SELECT sku, product_title, our_price, lowest_price, median_price, price_index, position "
                       f"FROM market_position WHERE {LATEST} AND price_index IS NOT NULL ORDER BY price_index {order}, sku LIMIT 10",
                       f"SKUs ranked by price index (our price / median competitor price), {'highest' if order == 'DESC' else 'lowest'} first")

    def q_top_by_price(self, node):
        n = _tokens(node, "NUMBER")
        limit = min(int(_num(n[0])), 1000) if n else 10
        extreme = str(_tokens(node, "EXTREME")[0])
        order = "DESC" if extreme in ("expensive", "highest priced") else "ASC"
        return self._q("top_by_price", f"SELECT sku, product_title, price, currency FROM catalog ORDER BY price {order}, sku LIMIT {limit}",
                       f"the {limit} {'most expensive' if order == 'DESC' else 'cheapest'} SKUs by our price")

    def q_count_skus(self, node):
        return self._q("count_skus", "SELECT COUNT(*) AS skus FROM catalog", "the number of SKUs in the catalog")

    def q_count_position(self, node):
        phrase = str(_tokens(node, "POSITION_PHRASE")[0])
        position = {"the highest": "highest", "above the market": "highest", "the lowest": "lowest", "the cheapest": "lowest",
                    "below the market": "lowest", "in the middle": "middle"}[phrase]
        return self._q("count_position", f"SELECT COUNT(*) AS skus FROM market_position WHERE {LATEST} AND position = '{position}'",
                       f"SKUs whose price is the {position} among competitors today")

    def q_no_competitor_data(self, node):
        return self._q("no_competitor_data", f"SELECT sku, product_title FROM catalog WHERE sku NOT IN (SELECT sku FROM market_position WHERE {LATEST} "
                       "AND competitor_count > 0) ORDER BY sku", "SKUs without competitor prices today")

    def q_average_margin(self, node):
        return self._q("average_margin", "SELECT ROUND(AVG(margin_pct), 2) AS average_margin_pct, COUNT(margin_pct) AS skus_with_cost FROM catalog",
                       "the average margin over SKUs with a known cost")

    def q_margin_threshold(self, node):
        comparator = "<" if str(_tokens(node, "COMPARATOR")[0]) in ("below", "under") else ">"
        value = _num(_tokens(node, "NUMBER")[0])
        return self._q("margin_threshold", f"SELECT sku, product_title, price, cost, margin_pct FROM catalog WHERE margin_pct {comparator} {value} "
                       f"ORDER BY margin_pct, sku", f"SKUs with a margin {comparator} {value} %")

    def q_below_cost(self, node):
        return self._q("below_cost", "SELECT sku, product_title, price, cost FROM catalog WHERE price < cost ORDER BY sku", "SKUs priced below cost")

    def q_competitor_prices_for(self, node):
        sku = _value(node.children[-1]).upper()
        return self._q("competitor_prices_for", "SELECT snapshot_date, sku, competitor, price, currency, on_sale, availability FROM competitor_prices "
                       f"WHERE UPPER(sku) = {_quote(sku)} ORDER BY snapshot_date DESC, price LIMIT 50", f"competitor prices for SKU {sku}")

    def q_cheapest_competitor(self, node):
        return self._q("cheapest_competitor", f"SELECT lowest_competitor, COUNT(*) AS skus FROM market_position WHERE {LATEST} AND lowest_competitor IS NOT NULL "
                       "GROUP BY lowest_competitor ORDER BY skus DESC, lowest_competitor", "how often each competitor has the lowest price today")

    def q_count_by(self, node):
        column = "product_type" if str(_tokens(node, "GROUP")[0]) == "product type" else "vendor"
        return self._q("count_by", f"SELECT {column}, COUNT(*) AS skus FROM catalog GROUP BY {column} ORDER BY skus DESC, {column}", f"SKUs per {column}")

    def q_average_price_by(self, node):
        column = "product_type" if str(_tokens(node, "GROUP")[0]) == "product type" else "vendor"
        return self._q("average_price_by", f"SELECT {column}, ROUND(AVG(price), 2) AS average_price, COUNT(*) AS skus FROM catalog GROUP BY {column} ORDER BY {column}",
                       f"average price per {column}")

    def q_list_rules(self, node):
        return self._q("list_rules", "SELECT name, active, created_by, updated_at FROM rules ORDER BY name", "the project's pricing rules")

    def q_recent_runs(self, node):
        return self._q("recent_runs", "SELECT run_id, rule, kind, state, requested_by, queued_at FROM rule_runs ORDER BY queued_at DESC LIMIT 10", "the 10 most recent rule runs")

    def q_recent_changes(self, node):
        return self._q("recent_changes", "SELECT created_at, sku, from_price, to_price, currency, event_type FROM price_changes ORDER BY created_at DESC LIMIT 20",
                       "the 20 most recent price writes")

    def q_above_reference(self, node):
        pct = _num(_tokens(node, "NUMBER")[0])
        ref = _REFERENCE[str(_tokens(node, "REFERENCE")[0])]
        column = {"lowest": "lowest_price", "average": "median_price", "median": "median_price", "highest": "highest_price"}[ref]
        factor = 1 + pct / 100
        return self._q("above_reference", f"SELECT sku, product_title, our_price, {column}, ROUND((our_price / {column} - 1) * 100, 2) AS pct_above "
                       f"FROM market_position WHERE {LATEST} AND {column} > 0 AND our_price > {column} * {factor} ORDER BY pct_above DESC, sku",
                       f"SKUs priced more than {pct} % above the {ref} competitor price")

    def q_spread_for(self, node):
        value = _value(node.children[-1])
        return self._q("spread_for", f"SELECT sku, our_price, lowest_price, median_price, highest_price, spread_pct FROM market_position WHERE {LATEST} "
                       f"AND (LOWER(product_type) = {_quote(value.lower())} OR LOWER(sku) = {_quote(value.lower())}) ORDER BY spread_pct DESC, sku",
                       f"today's competitor price spread for {value}")

    def q_what_if(self, node):
        action = next(c for c in node.children if isinstance(c, Tree))
        proposal = self._rule_from(action, [], what_if=True)
        return Plan("what_if_" + action.data.replace("_gerund", "").replace("_noun", ""), "what_if", proposal.calls, proposal.summary, proposal.notes)

    # ---------------------------------------------------------------- proposals
    def q_proposal(self, node):
        children = [c for c in node.children if isinstance(c, Tree)]
        return self._rule_from(children[0], children[1:], what_if=False)

    def _rule_from(self, action: Tree, clauses: list[Tree], *, what_if: bool) -> Plan:
        rule: dict = {"scope": {"kind": "project", "values": []}, "guardrails": {}, "rounding": None}
        words: list[str] = []
        kind = action.data.replace("_gerund", "").replace("_noun", "")
        scopes = [c for c in action.children if isinstance(c, Tree) and c.data.endswith("scope")] + [c for c in clauses if c.data == "scope"]
        if kind == "beat":
            amount = next(c for c in action.children if isinstance(c, Tree) and c.data in ("percent_amount", "money_amount"))
            ref = _REFERENCE[str(_tokens(action, "REFERENCE")[0])]
            rule["transform"] = {"kind": "competitor", "reference": self._reference(ref), "mode": "beat", **self._by(amount)}
            words.append(f"beat the {ref} competitor price by {self._by_text(amount)}")
        elif kind == "match":
            ref = _REFERENCE[str(_tokens(action, "REFERENCE")[0])]
            rule["transform"] = {"kind": "competitor", "reference": self._reference(ref), "mode": "match"}
            words.append(f"match the {ref} competitor price")
        elif kind == "change":
            direction = str(_tokens(action, "DIRECTION")[0] if _tokens(action, "DIRECTION") else _tokens(action, "DIRECTION_NOUN")[0])
            sign = -1 if direction in ("lower", "decrease", "cut", "reduce") else 1
            amounts = [c for c in action.children if isinstance(c, Tree) and c.data in ("percent_amount", "money_amount")]
            if amounts and amounts[0].data == "money_amount":
                value = _num(_tokens(amounts[0], "NUMBER")[0]) * sign
                rule["transform"] = {"kind": "fixed_change", "value": str(value)}
                words.append(f"change prices by {value}")
            else:
                value = _num(_tokens(action, "NUMBER")[0]) * sign
                rule["transform"] = {"kind": "percent_change", "value": str(value)}
                words.append(f"change prices by {value} %")
        elif kind == "set_price":
            sku = _value(action.children[0]) if not isinstance(action.children[0], Token) or action.children[0].type in ("VALUE", "STRING") else _value(_tokens(action, "VALUE")[0])
            values = [c for c in action.children if isinstance(c, Token) and c.type in ("VALUE", "STRING")]
            sku = _value(values[0]).upper()
            price = _num(_tokens(action, "NUMBER")[-1])
            rule["transform"] = {"kind": "set_price", "value": str(price)}
            rule["scope"] = {"kind": "skus", "values": [sku]}
            words.append(f"set {sku} to {price}")
        else:  # pragma: no cover - the grammar has no other action
            raise NotUnderstood(f"unknown action {kind}")
        if ref_is_highest := (rule["transform"].get("reference") == "highest"):
            raise NotUnderstood("rules can follow the lowest, average or median competitor price, not the highest")
        del ref_is_highest
        for scope in scopes:
            rule["scope"] = self._scope(scope)
        g = rule["guardrails"]
        for clause in clauses:
            if clause.data == "margin":
                g["min_margin_pct"] = str(_num(_tokens(clause, "NUMBER")[0]))
                words.append(f"keep at least {g['min_margin_pct']} % margin")
            elif clause.data == "floor":
                g["absolute_floor"] = str(_num(_tokens(clause, "NUMBER")[0]))
                words.append(f"never below {g['absolute_floor']}")
            elif clause.data == "ceiling":
                g["ceiling"] = str(_num(_tokens(clause, "NUMBER")[0]))
                words.append(f"never above {g['ceiling']}")
            elif clause.data == "max_change":
                g["max_change_pct"] = str(_num(_tokens(clause, "NUMBER")[0]))
                words.append(f"change at most {g['max_change_pct']} %")
            elif clause.data == "rounding":
                value = _num(_tokens(clause, "NUMBER")[0])
                rule["rounding"] = {"mode": "charm", "ending": str(value)} if value < 1 else {"mode": "step", "step": str(value)}
                words.append(f"round to {'.' + str(value).split('.')[1] if value < 1 and '.' in str(value) else value}")
            elif clause.data == "ignore_map":
                g["respect_map"] = False
                words.append("ignore MAP")
        notes = []
        if "min_margin_pct" not in g and "absolute_floor" not in g:
            from calibr_pipeline.domain.copilot_rules import PROJECT_GUARDRAIL_DEFAULTS

            g["min_margin_pct"] = str(PROJECT_GUARDRAIL_DEFAULTS["min_margin_pct"])
            notes.append(f"no margin was given: the project default minimum margin of {g['min_margin_pct']} % applies")
        scope_text = self._scope_text(rule["scope"])
        rule["name"] = ", ".join(words)[:90] + (f" ({scope_text})" if rule["scope"]["kind"] != "project" else "")
        summary = ("simulate: " if what_if else "proposal: ") + ", ".join(words) + f" on {scope_text}"
        return Plan(kind if not what_if else "what_if", "what_if" if what_if else "proposal", (ToolCall("propose_rule", {"rule": rule}),), summary, tuple(notes))

    @staticmethod
    def _reference(ref: str) -> str:
        return ref

    @staticmethod
    def _by(amount: Tree) -> dict:
        number = _num(_tokens(amount, "NUMBER")[0])
        return {"by_percent": str(number)} if amount.data == "percent_amount" else {"by_amount": str(number)}

    @staticmethod
    def _by_text(amount: Tree) -> str:
        number = _num(_tokens(amount, "NUMBER")[0])
        return f"{number} %" if amount.data == "percent_amount" else f"{number}"

    @staticmethod
    def _scope(scope: Tree) -> dict:
        inner = scope.children[0] if scope.children and isinstance(scope.children[0], Tree) else scope
        values = [_value(t) for t in inner.scan_values(lambda v: isinstance(v, Token) and v.type in ("VALUE", "STRING"))]
        kind = {"project_scope": "project", "type_scope": "product_type", "vendor_scope": "vendor", "tag_scope": "tag", "sku_scope": "skus"}[inner.data]
        if kind == "project" or not values:
            return {"kind": "project", "values": []}
        if kind == "skus":
            values = [v.upper() for v in values]
        return {"kind": kind, "values": values}

    @staticmethod
    def _scope_text(scope: dict) -> str:
        if scope["kind"] == "project":
            return "every SKU"
        return f"{scope['kind'].replace('_', ' ')} {', '.join(scope['values'])}"
