"""Copilot calls: plan (offline grammar or a language model), contain, execute, audit.

Whatever backend produced them, tool calls go through :class:`ToolBox`, which binds the
caller's tenant and project (never taken from the model) and applies the containment
layers: the SQL policy and read-only executor for ``query_analytics``, the rule policy and
the existing rule services for ``propose_rule``. The first refusal ends the call. Every call
writes one ``copilot_audit`` row, whatever happens.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from calibr_pipeline.domain.copilot_rules import (
    COPILOT_RULE_PREFIX,
    RuleRefusal,
    check_proposal,
    check_tool_arguments,
)
from calibr_pipeline.domain.copilot_sql import SqlRefusal, rewrite_query
from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.domain.rules import expand_explain
from calibr_pipeline.services import rule_runs
from calibr_pipeline.services.copilot_query import DEFAULT_TIME_BUDGET_S, execute_readonly, json_value
from calibr_pipeline.warehouse.engine import get_engine, session_scope
from calibr_pipeline.warehouse.models import CopilotAudit, PricingRule, Project, RuleTarget, Variant
from calibr_pipeline.warehouse.tenancy import NotFoundError

log = logging.getLogger(__name__)

LLM_URL_ENV = "CALIBR_COPILOT_LLM_URL"
LLM_KEY_ENV = "CALIBR_COPILOT_API_KEY"
LLM_MODEL_ENV = "CALIBR_COPILOT_MODEL"
TIME_BUDGET_ENV = "CALIBR_COPILOT_TIME_BUDGET_S"
MAX_TOOL_CALLS = 4
COMMANDS = ("simulate", "propose")

_SECRET_PATTERNS = [
    re.compile(r"shp(?:at|ss|ca|pa)_[A-Za-z0-9_]{6,}"),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{6,}"),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._\-]{8,}"),
    re.compile(r"(?i)\b(password|passwd|secret|api[_-]?key|token)\s*[=:]\s*\S+"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
]


def redact(text: str | None, extra_secrets: tuple[str, ...] = ()) -> str | None:
    """Secrets never reach the audit table or an answer: known token shapes and given values."""
    if text is None:
        return None
    for secret in extra_secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "[redacted]")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub("[redacted]", text)
    return text


class Refused(CalibrError):
    def __init__(self, code: str, reason: str):
        self.code, self.reason = code, reason
        super().__init__(f"{code}: {reason}")


@dataclass
class ProjectContext:
    warehouse_url: str
    tenant_id: int
    project_id: int
    project_slug: str
    currency: str
    command: str
    actor: str


@dataclass
class ToolRecord:
    name: str
    raw_arguments: str
    status: str = "ok"
    refusal_code: str | None = None
    rewritten_sql: str | None = None
    row_count: int = 0
    duration_ms: int = 0

    def as_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class ToolBox:
    """The only way a backend touches data. Exactly two tools."""

    context: ProjectContext
    records: list[ToolRecord] = field(default_factory=list)
    executed_sql: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    rule: dict | None = None
    preview: dict | None = None
    rule_id: int | None = None
    preview_run_id: str | None = None
    guardrail_notes: list[str] = field(default_factory=list)

    NAMES = ("query_analytics", "propose_rule")

    def call(self, name: str, raw_arguments: str) -> dict:
        record = ToolRecord(name=str(name)[:64], raw_arguments=str(raw_arguments)[:20000])
        self.records.append(record)
        started = time.perf_counter()
        try:
            if len(self.records) > MAX_TOOL_CALLS:
                raise Refused("too_many_tool_calls", f"at most {MAX_TOOL_CALLS} tool calls per request")
            if name not in self.NAMES:
                raise Refused("unknown_tool", f"there is no tool {str(name)[:64]!r}; the tools are {', '.join(self.NAMES)}")
            try:
                arguments = json.loads(raw_arguments) if isinstance(raw_arguments, str) else raw_arguments
            except (json.JSONDecodeError, RecursionError):
                raise Refused("tool_args_invalid", "tool arguments are not valid JSON") from None
            if name == "query_analytics":
                return self._query(arguments, record)
            return self._propose(arguments, record)
        except (SqlRefusal, RuleRefusal) as exc:
            record.status, record.refusal_code = "refused", exc.code
            raise Refused(exc.code, exc.reason) from None
        except Refused as exc:
            record.status, record.refusal_code = "refused", exc.code
            raise
        finally:
            record.duration_ms = int((time.perf_counter() - started) * 1000)

    def _query(self, arguments, record: ToolRecord) -> dict:
        if not isinstance(arguments, dict) or set(arguments) != {"sql"} or not isinstance(arguments["sql"], str):
            raise Refused("tool_args_invalid", 'query_analytics takes exactly {"sql": string}')
        c = self.context
        dialect = "sqlite" if c.warehouse_url.startswith("sqlite") else "postgres"
        rewritten = rewrite_query(arguments["sql"], tenant_id=c.tenant_id, project_id=c.project_id, dialect=dialect)
        record.rewritten_sql = rewritten.sql
        self.executed_sql.append(rewritten.sql)
        result = execute_readonly(c.warehouse_url, rewritten.sql, tenant_id=c.tenant_id, project_id=c.project_id, time_budget_s=time_budget_s())
        record.row_count = result.row_count
        self.rows = result.rows
        return {"columns": result.columns, "rows": result.rows, "row_count": result.row_count, "truncated": result.truncated}

    def _propose(self, arguments, record: ToolRecord) -> dict:
        c = self.context
        if self.rule is not None:
            raise Refused("too_many_proposals", "one rule proposal per request")
        document = check_tool_arguments(arguments, project_slug=c.project_slug)
        with session_scope(c.warehouse_url) as session:
            known = rule_runs.known_competitor_ids(session, c.project_id)
        checked = check_proposal(document, project_slug=c.project_slug, currency=c.currency, known_competitor_ids=known)
        self.guardrail_notes.extend(checked.guardrail_notes)
        persist = c.command == "propose"
        session = Session(get_engine(c.warehouse_url), expire_on_commit=False)
        try:
            definition = dict(checked.document)
            definition["name"] = _free_rule_name(session, c.project_id, definition["name"])
            try:
                stored = rule_runs.save_rule(session, project_slug=c.project_slug, definition=definition, actor=f"copilot:{c.actor}")
            except IntegrityError:
                raise Refused("busy", "another rule of this name was saved at the same moment; ask again") from None
            stored.active = False  # saved disabled, in the same transaction: never committed enabled
            session.flush()
            run = rule_runs.create_run(session, project_slug=c.project_slug, rule_name=stored.name, actor=f"copilot:{c.actor}")
            try:
                stats = rule_runs.compute_targets(session, run.id)
            except CalibrError as exc:
                raise Refused("rule_matches_nothing" if "matches no SKU" in str(exc) else "preview_failed", str(exc)[:300]) from None
            self.preview = _preview_summary(session, run.id, stats)
            self.rule = {**stored.definition, "active": False, "id": stored.id if persist else None}
            if persist:
                self.rule_id, self.preview_run_id = stored.id, run.id
                self.preview["run_id"] = run.id
                session.commit()
            else:
                self.preview["run_id"] = None
                session.rollback()  # simulate: a preview that is not persisted
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
        return {"rule": self.rule, "preview": self.preview, "guardrail_notes": list(checked.guardrail_notes), "saved": persist}


def time_budget_s() -> float:
    """Per-query time budget (CALIBR_COPILOT_TIME_BUDGET_S, default 3 s, at most 30 s)."""
    raw = os.environ.get(TIME_BUDGET_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_TIME_BUDGET_S
    except ValueError:
        raise CalibrError(f"{TIME_BUDGET_ENV} must be a number of seconds, got {raw!r}") from None
    if not 0 < value <= 30:
        raise CalibrError(f"{TIME_BUDGET_ENV} must be above 0 and at most 30 seconds, got {value}")
    return value


def _free_rule_name(session: Session, project_id: int, name: str) -> str:
    """Never replace an existing rule (a merchant may have enabled an earlier proposal of that name).

    The project row is locked first (a no-op UPDATE takes SQLite's write lock; FOR UPDATE on
    PostgreSQL), so two proposals at the same moment cannot pick the same free name and have
    the second one's save replace the first: the lock is held until this transaction commits.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(Project.id).where(Project.id == project_id).with_for_update())
    else:
        session.execute(update(Project).where(Project.id == project_id).values(id=Project.id).execution_options(synchronize_session=False))
    name = name if name.startswith(COPILOT_RULE_PREFIX) else COPILOT_RULE_PREFIX + name
    taken = set(session.scalars(select(PricingRule.name).where(PricingRule.project_id == project_id, PricingRule.name.like(name[:150] + "%"))))
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name} ({n})", n + 1
    return candidate


def _preview_summary(session: Session, run_id: str, stats) -> dict:
    targets = session.execute(
        select(RuleTarget.sku, RuleTarget.variant_id, RuleTarget.from_price, RuleTarget.to_price, RuleTarget.proposal_status, RuleTarget.explain, Variant.cost)
        .join(Variant, Variant.id == RuleTarget.variant_id).where(RuleTarget.run_id == run_id).order_by(RuleTarget.sku)
    ).all()
    base = rule_runs.explain_bases(session, [run_id]).get(run_id)
    changes, hits = [], {}
    margin_before, margin_after, with_cost = Decimal(0), Decimal(0), 0
    for t in targets:
        for clamp in expand_explain(t.explain, base, variant_id=t.variant_id, sku=t.sku).get("clamps", []) or []:
            hits[clamp.get("name", "?")] = hits.get(clamp.get("name", "?"), 0) + 1
        if t.proposal_status == "blocked":
            hits["blocked"] = hits.get("blocked", 0) + 1
        if t.proposal_status == "change":
            changes.append({"sku": t.sku, "from": json_value(t.from_price), "to": json_value(t.to_price),
                            "change_pct": json_value(((t.to_price - t.from_price) * 100 / t.from_price).quantize(Decimal("0.01"))) if t.from_price else None})
        if t.cost is not None and t.from_price and t.to_price:
            with_cost += 1
            margin_before += (t.from_price - t.cost) * 100 / t.from_price
            margin_after += (t.to_price - t.cost) * 100 / t.to_price
    before = (margin_before / with_cost).quantize(Decimal("0.01")) if with_cost else None
    after = (margin_after / with_cost).quantize(Decimal("0.01")) if with_cost else None
    return {
        "skus_in_scope": stats.total,
        "skus_affected": stats.to_write,
        "by_status": stats.by_status,
        "price_changes": changes[:50],
        "average_margin_pct_before": json_value(before) if before is not None else None,
        "average_margin_pct_after": json_value(after) if after is not None else None,
        "margin_delta_pct_points": json_value(after - before) if before is not None else None,
        "guardrail_hits": dict(sorted(hits.items())),
    }


# --- entry point ------------------------------------------------------------------------------


def _project_context(warehouse_url: str, project_slug: str, *, command: str, actor: str, tenant_id: int | None) -> ProjectContext:
    with session_scope(warehouse_url) as session:
        project = session.scalar(select(Project).where(Project.slug == str(project_slug)))
        if project is None or (tenant_id is not None and project.tenant_id != tenant_id):
            # The same answer whether the project does not exist or belongs to another tenant.
            raise NotFoundError(f"unknown project {str(project_slug)[:64]!r}")
        return ProjectContext(warehouse_url, project.tenant_id, project.id, project.slug, project.currency, command, actor)


def configured_backend():
    """The OpenAI-compatible backend when CALIBR_COPILOT_LLM_URL is set, else the offline planner."""
    url = os.environ.get(LLM_URL_ENV, "").strip()
    if not url:
        return OfflineBackend()
    from calibr_pipeline.connectors.llm import ChatCompletionsBackend

    return ChatCompletionsBackend(base_url=url, api_key=os.environ.get(LLM_KEY_ENV, "") or "none", model=os.environ.get(LLM_MODEL_ENV, "") or "default")


class OfflineBackend:
    name = "offline"
    model = "grammar-v1"

    def run(self, *, prompt: str, context: ProjectContext, toolbox: ToolBox) -> str:
        from calibr_pipeline.copilot.planner import NotUnderstood, plan

        try:
            p = plan(prompt)
        except NotUnderstood as exc:
            raise Refused("not_understood", str(exc)) from None
        if context.command == "propose" and p.kind != "proposal":
            raise Refused("not_a_rule", "propose needs a rule request (e.g. \"beat the lowest competitor by 3 % on tents, keep 25 % margin\"); use simulate for questions")
        results = [toolbox.call(call.name, json.dumps(call.arguments)) for call in p.calls]
        return _offline_answer(p, results, toolbox)


def _offline_answer(p, results: list[dict], toolbox: ToolBox) -> str:
    lines = [f"Understood ({p.form}): {p.summary}."]
    lines += list(p.notes)
    for result in results:
        if "rows" in result:
            rows = result["rows"]
            lines.append(f"{result['row_count']} row(s){' (truncated)' if result['truncated'] else ''}.")
            for row in rows[:10]:
                lines.append("  " + ", ".join(f"{k}={_quoted(v)}" for k, v in row.items()))
        elif "preview" in result:
            pv = result["preview"]
            lines.append(f"Preview: {pv['skus_affected']} of {pv['skus_in_scope']} SKUs would change; average margin "
                         f"{pv['average_margin_pct_before']} % -> {pv['average_margin_pct_after']} %; guardrail hits {pv['guardrail_hits'] or 'none'}.")
            lines += [f"Note: {n}" for n in result["guardrail_notes"]]
    return "\n".join(lines)


def _quoted(value) -> str:
    # Data is shown as quoted data (page titles are untrusted text).
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else str(value)


def handoff(project_slug: str, rule: dict, run_id: str) -> dict:
    """What a person runs to review and (only then) enable the proposal: the copilot never does."""
    import shlex

    definition = {k: v for k, v in rule.items() if k not in ("active", "id")}
    return {
        "review_rule": f"calibr rules list --project {shlex.quote(project_slug)}",
        "review_preview": f"calibr runs status {run_id}",
        "enable": f"calibr rules add --project {shlex.quote(project_slug)} --json {shlex.quote(json.dumps(definition, sort_keys=True))}",
        "preview_again": f"calibr runs preview --project {shlex.quote(project_slug)} --rule {shlex.quote(rule['name'])}",
        "api": f"POST /api/v1/copilot/propose returned this rule disabled; enable it through the rules API of project {project_slug}",
    }


def run_copilot(warehouse_url: str, *, command: str, project_slug: str, prompt: str, actor: str, entry_point: str = "cli",
                tenant_id: int | None = None, backend=None) -> dict:
    """One copilot call -> the JSON result of the issue (status, answer, sql, rows, rule, preview, refusal, audit_id)."""
    if command not in COMMANDS:
        raise CalibrError(f"unknown copilot command {command!r}")
    if not isinstance(prompt, str) or not prompt.strip():
        raise CalibrError("the prompt is empty")
    started = time.perf_counter()
    try:
        context = _project_context(warehouse_url, project_slug, command=command, actor=actor, tenant_id=tenant_id)
    except NotFoundError:
        if tenant_id is not None:  # an authenticated caller named a project that is not theirs (or none): audited
            with session_scope(warehouse_url) as session:
                session.add(CopilotAudit(
                    tenant_id=tenant_id, project_id=None, actor=str(actor)[:200], entry_point=entry_point, command=command,
                    prompt=redact(prompt[:4000], _known_secrets(warehouse_url, None)), backend="none", model=None, status="refused", answer=None,
                    tool_calls=[], executed_sql=[], row_count=0, refusal_code="unknown_project",
                    refusal_reason=f"project {str(project_slug)[:64]!r} is not one of this tenant's", duration_ms=int((time.perf_counter() - started) * 1000)))
        raise
    backend = backend or configured_backend()
    toolbox = ToolBox(context)
    status, answer, refusal = "ok", None, None
    try:
        answer = backend.run(prompt=prompt[:4000], context=context, toolbox=toolbox)
        if command == "propose" and toolbox.rule_id is None:
            raise Refused("not_a_rule", "no rule was proposed")
    except Refused as exc:
        status, refusal = "refused", {"code": exc.code, "reason": exc.reason}
        answer = f"Refused ({exc.code}): {exc.reason}"
    except Exception as exc:  # still audited; the caller gets a status, not a traceback
        log.exception("copilot call failed")
        status, refusal = "error", {"code": "internal_error", "reason": type(exc).__name__}
        answer = f"The copilot failed ({type(exc).__name__}); the call is in the audit log."
    secrets = _known_secrets(warehouse_url, context.project_id)
    answer = redact(answer, secrets)
    result = {
        "status": status,
        "answer": answer,
        "sql": list(toolbox.executed_sql),
        "rows": toolbox.rows if status == "ok" else [],
        "rule": toolbox.rule if status == "ok" else None,
        "preview": toolbox.preview if status == "ok" else None,
        "guardrail_notes": list(toolbox.guardrail_notes),
        "refusal": refusal,
        "backend": getattr(backend, "name", "?"),
        "model": getattr(backend, "model", None),
    }
    if status == "ok" and command == "propose":
        result["handoff"] = handoff(context.project_slug, toolbox.rule, toolbox.preview_run_id)
    duration_ms = int((time.perf_counter() - started) * 1000)
    with session_scope(warehouse_url) as session:
        row = CopilotAudit(
            tenant_id=context.tenant_id, project_id=context.project_id, actor=str(actor)[:200], entry_point=entry_point, command=command,
            prompt=redact(prompt[:4000], secrets), backend=result["backend"], model=result["model"], status=status, answer=answer,
            tool_calls=[{**r.as_json(), "raw_arguments": redact(r.raw_arguments, secrets)} for r in toolbox.records],
            executed_sql=list(toolbox.executed_sql), row_count=sum(r.row_count for r in toolbox.records),
            refusal_code=refusal["code"] if refusal else None, refusal_reason=refusal["reason"] if refusal else None,
            rule_id=toolbox.rule_id, preview_run_id=toolbox.preview_run_id, duration_ms=duration_ms,
        )
        session.add(row)
        session.flush()
        result["audit_id"] = row.id
    result["duration_ms"] = duration_ms
    return result


def _known_secrets(warehouse_url: str, project_id: int | None) -> tuple[str, ...]:
    """Values redacted verbatim: the model API key and the project's shop tokens, whatever their format."""
    from calibr_pipeline.warehouse.models import Shop

    values = [os.environ.get(LLM_KEY_ENV, "")]
    if project_id is not None:
        with session_scope(warehouse_url) as session:
            values += [t for t in session.scalars(select(Shop.access_token).where(Shop.project_id == project_id)) if t]
    return tuple(v for v in values if v)


def list_copilot_audit(session: Session, *, tenant: str | None = None, project: str | None = None, limit: int = 50,
                       tenant_id: int | None = None) -> list[dict]:
    from calibr_pipeline.warehouse.models import Tenant

    query = (select(CopilotAudit, Tenant.slug, Project.slug).outerjoin(Tenant, Tenant.id == CopilotAudit.tenant_id)
             .outerjoin(Project, Project.id == CopilotAudit.project_id).order_by(CopilotAudit.id.desc()).limit(limit))
    if tenant:
        query = query.where(Tenant.slug == tenant)
    if tenant_id is not None:
        query = query.where(CopilotAudit.tenant_id == tenant_id)
    if project:
        query = query.where(Project.slug == project)
    out = []
    for row, tenant_slug, project_slug in session.execute(query).all():
        out.append({
            "id": row.id, "at": row.created_at.isoformat(), "tenant": tenant_slug, "project": project_slug, "actor": row.actor,
            "entry_point": row.entry_point, "command": row.command, "prompt": row.prompt, "backend": row.backend, "model": row.model,
            "status": row.status, "refusal_code": row.refusal_code, "tool_calls": row.tool_calls, "executed_sql": row.executed_sql,
            "row_count": row.row_count, "rule_id": row.rule_id, "preview_run_id": row.preview_run_id, "duration_ms": row.duration_ms,
        })
    return out
