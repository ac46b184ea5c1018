"""``calibr copilot simulate|propose`` and ``calibr audit --copilot``."""

from __future__ import annotations

import json

from calibr_pipeline.cli import main


def run(capsys, world, *argv):
    code = main(["--warehouse-url", world["url"], *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_simulate_json_has_the_issue_shape(copilot_world, capsys):
    code, out, _ = run(capsys, copilot_world, "copilot", "simulate", "--project", "acme-outdoor", "--prompt", "How many SKUs do I have?", "--json")
    body = json.loads(out)
    assert code == 0 and body["status"] == "ok" and body["rows"] == [{"skus": 6}]
    assert {"status", "answer", "sql", "rows", "rule", "preview", "refusal", "audit_id"} <= set(body)
    assert "copilot_catalog" in body["sql"][0] and "tenant_id =" in body["sql"][0]


def test_propose_prints_rule_preview_and_handoff(copilot_world, capsys):
    code, out, _ = run(capsys, copilot_world, "copilot", "propose", "--project", "acme-outdoor", "--prompt",
                       "undercut the cheapest competitor by 2 % on tents but keep 25 % margin, round to .99", "--actor", "alice")
    assert code == 0
    assert "Rule (saved DISABLED):" in out and "TENT-1: 100 -> 87.99" in out
    assert "calibr rules add --project acme-outdoor --json" in out and "calibr runs status " in out
    # the handoff's enable command is a valid, complete rule document
    enable = next(line for line in out.splitlines() if "enable: " in line)
    document = json.loads(enable.split("--json ", 1)[1].strip("'"))
    assert document["name"].startswith("Copilot: ") and document["guardrails"]["min_margin_pct"] == "25"


def test_refusal_exits_3_and_unknown_project_exits_2(copilot_world, capsys):
    code, out, _ = run(capsys, copilot_world, "copilot", "simulate", "--project", "acme-outdoor", "--prompt", "drop table shops please")
    assert code == 3 and "Refused (not_understood)" in out
    code, _, err = run(capsys, copilot_world, "copilot", "simulate", "--project", "nope", "--prompt", "How many SKUs do I have?")
    assert code == 2 and err.startswith("calibr: error: unknown project") and len(err.strip().splitlines()) == 1


def test_audit_shows_copilot_calls_and_keeps_the_event_listing(copilot_world, capsys):
    run(capsys, copilot_world, "copilot", "simulate", "--project", "acme-outdoor", "--prompt", "How many SKUs do I have?")
    run(capsys, copilot_world, "copilot", "simulate", "--project", "acme-outdoor", "--prompt", "my token is shpat_abcdef1234567890, how many SKUs?")
    code, out, _ = run(capsys, copilot_world, "audit", "--copilot", "--project", "acme-outdoor", "--json")
    calls = json.loads(out)["copilot_calls"]  # newest first
    assert code == 0 and calls[0]["refusal_code"] == "not_understood" and "[redacted]" in calls[0]["prompt"]
    assert "shpat_abcdef1234567890" not in out
    assert calls[1]["status"] == "ok" and "copilot_catalog" in calls[1]["executed_sql"][0]
    assert calls[1]["tool_calls"][0]["name"] == "query_analytics" and "FROM catalog" in calls[1]["tool_calls"][0]["raw_arguments"]
    code, out, _ = run(capsys, copilot_world, "audit", "--copilot", "--tenant", "acme")
    assert code == 0 and "\tsimulate\t" in out
    code, out, _ = run(capsys, copilot_world, "audit", "--json")
    assert code == 0 and "events" in json.loads(out)
