"""The OpenAI-compatible backend against the scripted loopback chat-completions server."""

from __future__ import annotations

import json

import pytest
import requests

from calibr_pipeline.connectors.llm import ChatCompletionsBackend
from calibr_pipeline.copilot.service import configured_backend, run_copilot
from calibr_pipeline.sandbox.llm import start_llm_sandbox

KEY = "sk-testkey-0123456789abcdef"


@pytest.fixture(scope="module")
def llm():
    server, app = start_llm_sandbox()
    yield server, app
    server.stop()


def test_a_benign_model_answers_through_the_two_tools(copilot_world, llm, monkeypatch):
    server, app = llm
    app.script("how expensive", [
        {"tool_calls": [{"name": "query_analytics", "arguments": {"sql": "SELECT sku, price FROM catalog ORDER BY price DESC LIMIT 2"}}]},
        {"content": f"TENT-2 is your most expensive SKU. (my key is {KEY})"},
    ])
    monkeypatch.setenv("CALIBR_COPILOT_LLM_URL", server.base_url + "/v1")
    monkeypatch.setenv("CALIBR_COPILOT_API_KEY", KEY)
    monkeypatch.setenv("CALIBR_COPILOT_MODEL", "scripted-1")
    backend = configured_backend()
    assert backend.name == "openai" and backend.model == "scripted-1"
    result = run_copilot(copilot_world["url"], command="simulate", project_slug="acme-outdoor", prompt="how expensive is my range?", actor="t")
    assert result["status"] == "ok" and result["rows"] == [{"sku": "TENT-2", "price": 200}, {"sku": "JACKET-2", "price": 120}]
    assert result["answer"].startswith("TENT-2 is your most expensive SKU") and KEY not in result["answer"]
    request = app.requests[-1]
    assert request["model"] == "scripted-1" and [t["function"]["name"] for t in request["tools"]] == ["query_analytics", "propose_rule"]
    tool_message = json.loads(request["messages"][-1]["content"])
    assert tool_message["untrusted_data"] is True and tool_message["result"]["row_count"] == 2


def test_a_model_proposal_is_saved_disabled_with_a_preview(copilot_world, llm):
    server, app = llm
    rule = {"name": "model rule", "transform": {"kind": "competitor", "reference": "median", "mode": "match"},
            "scope": {"kind": "product_type", "values": ["Jackets"]}, "guardrails": {"min_margin_pct": "20"}}
    app.script("match jackets", [{"tool_calls": [{"name": "propose_rule", "arguments": {"rule": rule}}]}, {"content": "Proposed."}])
    backend = ChatCompletionsBackend(base_url=server.base_url + "/v1", api_key=KEY, model="m")
    result = run_copilot(copilot_world["url"], command="propose", project_slug="acme-outdoor", prompt="match jackets to the median", actor="t", backend=backend)
    assert result["status"] == "ok" and result["rule"]["active"] is False and result["rule"]["name"] == "Copilot: model rule"
    assert {c["sku"]: c["to"] for c in result["preview"]["price_changes"]} == {"JACKET-1": 85, "JACKET-2": "127.5"}
    assert result["backend"] == "openai" and result["handoff"]["review_preview"].endswith(result["preview"]["run_id"])


def test_endpoint_down_or_rejecting_is_a_refusal_not_a_traceback(copilot_world, llm):
    server, _ = llm
    for url in ("http://127.0.0.1:9/v1", server.base_url + "/nowhere"):
        backend = ChatCompletionsBackend(base_url=url, api_key=KEY, model="m", timeout_s=2)
        result = run_copilot(copilot_world["url"], command="simulate", project_slug="acme-outdoor", prompt="anything", actor="t", backend=backend)
        assert result["status"] == "refused" and result["refusal"]["code"] == "model_unavailable"


def test_a_model_that_never_answers_is_stopped(copilot_world, llm):
    server, app = llm
    app.script("loop forever", [{"tool_calls": [{"name": "query_analytics", "arguments": {"sql": "SELECT COUNT(*) FROM catalog"}}]}])
    backend = ChatCompletionsBackend(base_url=server.base_url + "/v1", api_key=KEY, model="m")
    result = run_copilot(copilot_world["url"], command="simulate", project_slug="acme-outdoor", prompt="loop forever", actor="t", backend=backend)
    assert result["status"] == "refused" and result["refusal"]["code"] in ("too_many_tool_calls", "too_many_turns")


def test_sandbox_speaks_the_protocol(llm):
    server, _ = llm
    assert requests.post(server.base_url + "/v1/chat/completions", json={"model": "m", "messages": []}, timeout=5).status_code == 401
    response = requests.post(server.base_url + "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                             headers={"Authorization": "Bearer x"}, timeout=5)
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["role"] == "assistant"


def test_redaction_of_token_shapes_and_known_values():
    from calibr_pipeline.copilot.service import redact

    text = "use shpat_abcdef123456 or sk-proj-ABCDEFGH12345678, Bearer eyJhbGciOi.JIUzI1, password=hunter2 and custom-Tok3n-Value"
    out = redact(text, ("custom-Tok3n-Value",))
    for secret in ("shpat_abcdef123456", "sk-proj-ABCDEFGH12345678", "eyJhbGciOi", "hunter2", "custom-Tok3n-Value"):
        assert secret not in out
    assert out.count("[redacted]") == 5


def test_one_proposal_per_request(copilot_world, llm):
    server, app = llm
    rule = {"name": "twice", "transform": {"kind": "percent_change", "value": "1"}, "scope": {"kind": "project"}, "guardrails": {"min_margin_pct": "20"}}
    app.script("two rules", [{"tool_calls": [{"name": "propose_rule", "arguments": {"rule": rule}}, {"name": "propose_rule", "arguments": {"rule": rule}}]}])
    backend = ChatCompletionsBackend(base_url=server.base_url + "/v1", api_key=KEY, model="m")
    result = run_copilot(copilot_world["url"], command="simulate", project_slug="acme-outdoor", prompt="two rules", actor="t", backend=backend)
    assert result["status"] == "refused" and result["refusal"]["code"] == "too_many_proposals"


def test_an_unexpected_failure_is_audited_not_raised(copilot_world, monkeypatch):
    from sqlalchemy import text

    from calibr_pipeline.copilot import service
    from calibr_pipeline.warehouse.engine import get_engine

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(service, "execute_readonly", boom)
    result = run_copilot(copilot_world["url"], command="simulate", project_slug="acme-outdoor", prompt="How many SKUs do I have?", actor="t")
    assert result["status"] == "error" and result["refusal"] == {"code": "internal_error", "reason": "RuntimeError"}
    with get_engine(copilot_world["url"]).connect() as connection:
        assert connection.execute(text("SELECT status FROM copilot_audit WHERE id = :i"), {"i": result["audit_id"]}).scalar() == "error"
