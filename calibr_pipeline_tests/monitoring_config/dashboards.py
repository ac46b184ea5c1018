"""Reading the PromQL out of the Grafana dashboards in monitoring/grafana/dashboards/.

``panel_queries`` is the one entry point: the structure/parse tests use it today, and an
integration test that feeds the dashboards real data can reuse it to assert every panel
returns something.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from calibr_pipeline_tests.monitoring_config.tools import GRAFANA_DIR

DASHBOARD_DIR = GRAFANA_DIR / "dashboards"
DASHBOARDS = sorted(DASHBOARD_DIR.glob("*.json"))

# Values Grafana would put in for its built-in variables, so an expression can be sent to
# Prometheus as it is. Template variables (``$tenant``) become the regex "all" value.
BUILTIN_VARIABLES = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "__interval_ms": "60000",
}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows; row panels themselves excluded."""
    found: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            found.extend(panels({"panels": panel.get("panels", [])}))
        else:
            found.append(panel)
    return found


def load(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def substitute_variables(expr: str, template_values: dict[str, str] | None = None) -> str:
    """Replace Grafana's ``$var`` / ``${var}`` / ``[[var]]`` by concrete values."""
    values = {**BUILTIN_VARIABLES, **(template_values or {})}

    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        name = name.split(":", 1)[0]  # ${var:regex} formats
        return values.get(name, ".*")

    return re.sub(r"\$\{([\w:]+)\}|\$(\w+)|\[\[(\w+)\]\]", replace, expr)


def panel_queries(path: Path, template_values: dict[str, str] | None = None, raw: bool = False) -> list[tuple[str, str]]:
    """``(panel title, PromQL)`` for every target of every panel of the dashboard at ``path``.

    Grafana variables are replaced (``$__rate_interval`` -> 5m, template variables -> ``.*``
    unless given in ``template_values``) unless ``raw`` is true. Titles repeat for panels
    with several targets; the refId is appended ("title [B]") from the second target on.
    """
    queries: list[tuple[str, str]] = []
    for panel in panels(load(path)):
        for index, target in enumerate(panel.get("targets", [])):
            expr = target.get("expr")
            if not expr:
                continue
            title = panel.get("title", "")
            if index:
                title = f"{title} [{target.get('refId', index)}]"
            queries.append((title, expr if raw else substitute_variables(expr, template_values)))
    return queries
