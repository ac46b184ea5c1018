"""The event registry: schemas, malformed payloads, upcasting, generated docs, and a proof that
every code path writing an event uses a registered type."""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
from sqlalchemy import func, select

from calibr_pipeline.events.docs import DOC_PATH, render
from calibr_pipeline.events.registry import (
    EVENT_TYPE_PATTERN,
    InvalidEventPayload,
    UnregisteredEventType,
    load_registry,
    registry,
)
from calibr_pipeline.events.upcasters import UPCASTERS, upcast
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import EventLog, OutboxEvent
from calibr_pipeline.warehouse.outbox import publish, record_event

PACKAGE = Path(__file__).resolve().parents[2] / "calibr_pipeline"
REG = registry()
ALL_SCHEMAS = sorted(REG.schemas)


def test_registry_covers_at_least_the_types_written_today():
    assert set(REG.event_types()) >= {
        "competitor.added", "job.rules.apply", "rule.saved", "automation.run.queued", "automation.run.applying", "automation.run.retry",
        "automation.run.completed", "price.applied", "price.reverted", "automation.reconciliation.mismatch", "automation.dlq.report",
    }
    for event_type in REG.event_types():
        assert EVENT_TYPE_PATTERN.match(event_type), event_type


@pytest.mark.parametrize("key", ALL_SCHEMAS, ids=lambda k: f"{k[0]}.v{k[1]}")
def test_every_schema_documents_itself_and_accepts_its_examples(key):
    schema = REG.schemas[key]
    assert schema.schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema.description and schema.producers and schema.consumers and schema.examples
    assert schema.schema.get("additionalProperties") is False
    for name, prop in schema.schema["properties"].items():
        assert prop.get("description"), f"{key}: field {name} has no description"
    for example in schema.examples:
        assert REG.validate(*key[:1], example, key[1]) == key[1]


def _malformed_variants(schema: dict, example: dict) -> list[tuple[str, object]]:
    """Generated from the schema: not an object, each required field missing, each field of a wrong type, an unknown field."""
    variants: list[tuple[str, object]] = [("a list instead of an object", [example]), ("a string", "payload")]
    for name in schema.get("required", []):
        broken = copy.deepcopy(example)
        del broken[name]
        variants.append((f"without {name}", broken))
    for name, prop in schema["properties"].items():
        types = prop.get("type")
        types = set(types if isinstance(types, list) else [types])
        candidates = [("string", "12"), ("integer", 12345), ("array", ["a", "list"]), ("object", {"an": "object"}), ("boolean", True), ("null", None)]
        for t, value in candidates:
            if t not in types and not (t == "integer" and "number" in types):
                broken = copy.deepcopy(example)
                broken[name] = value
                variants.append((f"{name} as {t}", broken))
                break
    broken = copy.deepcopy(example)
    broken["unexpected_field"] = 1
    variants.append(("an unknown field", broken))
    return variants


@pytest.mark.parametrize("key", ALL_SCHEMAS, ids=lambda k: f"{k[0]}.v{k[1]}")
def test_every_schema_refuses_malformed_payloads_with_the_schema_path(key):
    schema = REG.schemas[key]
    variants = _malformed_variants(dict(schema.schema), schema.examples[0])
    assert len(variants) >= 3
    for label, payload in variants:
        with pytest.raises(InvalidEventPayload) as caught:
            REG.validate(key[0], payload, key[1])
        assert caught.value.schema_path, label
        assert f"{key[0]} v{key[1]} payload invalid at $" in str(caught.value), label


def test_the_error_names_the_value_and_the_rule_it_breaks():
    payload = {"run_id": "r1", "outcome": "APPLIED", "counts": {"applied": 1, "failed": "0", "total": 1}}
    with pytest.raises(InvalidEventPayload) as caught:
        REG.validate("automation.run.completed", payload)
    assert caught.value.instance_path == "$.counts.failed"
    assert caught.value.schema_path == "properties/counts/properties/failed/type"


def test_version_chains_are_complete_and_every_old_example_upcasts_to_a_valid_current_event():
    for event_type in REG.event_types():
        versions = REG.versions(event_type)
        assert versions == list(range(1, len(versions) + 1)), f"{event_type}: versions must be 1..N, got {versions}"
        for old in versions[:-1]:
            assert (event_type, old) in UPCASTERS, f"{event_type}: no upcaster from v{old}"
            for example in REG.get(event_type, old).examples:
                version, current = REG.read(event_type, old, example)
                assert version == versions[-1]
                REG.validate(event_type, current)


def test_run_completed_v1_upcasts_to_v2():
    v1 = {"run_id": "r1", "state": "PARTIAL", "applied": 3, "failed": 1}
    assert REG.current_version("automation.run.completed") == 2
    assert REG.read("automation.run.completed", 1, v1) == (2, {"run_id": "r1", "outcome": "PARTIAL", "counts": {"applied": 3, "failed": 1, "total": 4}})
    # an invalid v1 row is refused as v1 (before upcasting), with v1's schema path
    with pytest.raises(InvalidEventPayload, match=r"automation.run.completed v1 payload invalid at \$.applied"):
        REG.read("automation.run.completed", 1, {**v1, "applied": -1})
    assert upcast("automation.run.completed", 2, 2, {"x": 1}) == {"x": 1}


def test_docs_events_md_is_generated_from_the_registry():
    assert DOC_PATH.read_text(encoding="utf-8") == render(), "docs/events.md is stale: run `python -m calibr_pipeline.events.docs`"
    for event_type in REG.event_types():
        assert f"### {event_type}" in DOC_PATH.read_text()


def test_a_badly_named_or_invalid_schema_file_is_refused():
    good = (PACKAGE / "events" / "schemas" / "rule.saved.v1.json").read_text()
    with pytest.raises(Exception, match="must be named"):
        load_registry([("rule-saved.json", good)])
    with pytest.raises(Exception):
        load_registry([("rule.saved.v1.json", good.replace('"type": "object"', '"type": "objekt"'))])


# --- every code path that writes an event uses a registered type -----------------------------

WRITERS = {"publish": "outbox", "record_event": "event_log", "record_events": "event_log"}
CONSUMERS = {"dispatch_outbox": 2}  # dispatch_outbox(context, warehouse, EVENT_TYPE, build)


class _Resolver:
    """Resolves an event-type argument to its string values: a literal, an if-expression of
    literals, or a module-level constant (in the same module or imported from another one)."""

    def __init__(self, root: Path):
        self.root = root
        self.modules: dict[str, ast.Module] = {}

    def module(self, dotted: str) -> ast.Module | None:
        path = self.root / (dotted.replace(".", "/") + ".py")
        if not path.exists():
            return None
        if dotted not in self.modules:
            self.modules[dotted] = ast.parse(path.read_text(), str(path))
        return self.modules[dotted]

    def constant(self, dotted: str, name: str) -> list[str] | None:
        tree = self.module(dotted)
        if tree is None:
            return None
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                return self.values(dotted, node.value)
            if isinstance(node, ast.ImportFrom) and node.module and any((a.asname or a.name) == name for a in node.names):
                original = next(a.name for a in node.names if (a.asname or a.name) == name)
                return self.constant(node.module, original)
        return None

    def values(self, dotted: str, node: ast.AST) -> list[str] | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, ast.IfExp):
            a, b = self.values(dotted, node.body), self.values(dotted, node.orelse)
            return None if a is None or b is None else a + b
        if isinstance(node, ast.Name):
            return self.constant(dotted, node.id)
        return None


def _event_type_uses(package: Path = PACKAGE) -> list[tuple[str, int, str, list[str] | None, str]]:
    """(file, line, function, resolved event types or None, channel) for every writer and consumer call."""
    resolver = _Resolver(package.parent)
    uses = []
    for path in sorted(package.rglob("*.py")):
        dotted = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        tree = resolver.module(dotted)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr if isinstance(node.func, ast.Attribute) else None
            if name in WRITERS:
                position, channel = 1, WRITERS[name]
                argument = node.args[position] if len(node.args) > position else next((k.value for k in node.keywords if k.arg == "event_type"), None)
            elif name in CONSUMERS:
                channel, argument = "outbox", node.args[CONSUMERS[name]] if len(node.args) > CONSUMERS[name] else None
            else:
                continue
            values = resolver.values(dotted, argument) if argument is not None else None
            uses.append((str(path.relative_to(package.parent)), node.lineno, name, values, channel))
    return uses


def _problems(uses) -> list[str]:
    problems = []
    for file, line, function, values, channel in uses:
        if file.endswith("warehouse/outbox.py"):
            continue  # the writers themselves (publish calls record_event with its own argument)
        if values is None:
            problems.append(f"{file}:{line}: {function}() event type must be a string literal or a module constant so it can be checked")
            continue
        for value in values:
            if not REG.is_registered(value):
                problems.append(f"{file}:{line}: {function}({value!r}) is not registered: add calibr_pipeline/events/schemas/{value}.v1.json")
            elif channel not in REG.current(value).channels:
                problems.append(f"{file}:{line}: {value!r} is used on the {channel} channel but its schema lists {REG.current(value).channels}")
    return problems


def test_every_event_written_or_consumed_in_the_code_is_registered_for_its_channel():
    uses = _event_type_uses()
    writers = [u for u in uses if u[2] in WRITERS]
    assert len(writers) >= 10, "the scan no longer finds the writer calls"
    problems = _problems(uses)
    assert not problems, "\n".join(problems)


def test_the_scan_names_a_new_unregistered_event_type_where_it_is_written(tmp_path):
    package = tmp_path / "newarea"
    package.mkdir()
    (package / "constants.py").write_text('RUN_CLAIMED = "run.claimed"\n')
    (package / "service.py").write_text(
        "from newarea.constants import RUN_CLAIMED\n"
        "def f(session, kind):\n"
        "    record_event(session, RUN_CLAIMED, {}, tenant_id=None, actor='x')\n"
        "    publish(session, 'api.key.created' if kind else 'competitor.added', {}, tenant_id=None, actor='x')\n"
        "    record_event(session, kind, {}, tenant_id=None, actor='x')\n"
        "    record_event(session, 'competitor.added', {}, tenant_id=None, actor='x')\n"
    )
    problems = _problems(_event_type_uses(package))
    assert problems == [
        "newarea/service.py:3: record_event('run.claimed') is not registered: add calibr_pipeline/events/schemas/run.claimed.v1.json",
        "newarea/service.py:4: publish('api.key.created') is not registered: add calibr_pipeline/events/schemas/api.key.created.v1.json",
        "newarea/service.py:5: record_event() event type must be a string literal or a module constant so it can be checked",
    ]


def test_only_the_writers_construct_outbox_and_event_log_rows():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE.parent))
        if rel.endswith(("warehouse/outbox.py", "warehouse/models.py")):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("OutboxEvent", "EventLog"):
                offenders.append(f"{rel}:{node.lineno}: {node.func.id}(...) bypasses the validating writers")
    assert not offenders, "\n".join(offenders)


# --- the writers, on both backends -------------------------------------------------------------


def test_writers_refuse_unregistered_types_and_invalid_payloads_before_commit(seeded):
    url, tenant_id = seeded
    with pytest.raises(UnregisteredEventType, match="price.skipped_stale"):
        with session_scope(url) as session:
            record_event(session, "price.skipped_stale", {"sku": "A"}, tenant_id=tenant_id, actor="test")
    with pytest.raises(InvalidEventPayload, match=r"\$.listing_id") as caught:
        with session_scope(url) as session:
            publish(session, "competitor.added", {"listing_id": "7", "tenant_id": tenant_id, "project": "acme-store", "sku": "A",
                                                  "url": "https://rival.example/a", "competitor_id": 1}, tenant_id=tenant_id, actor="test")
    assert caught.value.schema_path == "properties/listing_id/type"
    with pytest.raises(Exception, match="not registered for the outbox channel"):
        with session_scope(url) as session:
            publish(session, "rule.saved", {"rule_id": 1, "name": "x"}, tenant_id=tenant_id, actor="test")
    with session_scope(url) as session:
        assert session.scalar(select(func.count()).select_from(EventLog)) == 0
        assert session.scalar(select(func.count()).select_from(OutboxEvent)) == 0


def test_the_code_paths_write_valid_events_with_their_schema_version(seeded):
    from calibr_pipeline.services.rule_runs import create_run, save_rule
    from calibr_pipeline.warehouse.competitor_store import add_competitor_listing

    url, tenant_id = seeded
    rule = {"name": "Beat by 5%", "transform": {"kind": "competitor", "reference": "lowest", "mode": "beat", "by_percent": "5"},
            "scope": {"kind": "project"}, "guardrails": {"min_margin_pct": "20"}}
    with session_scope(url) as session:
        add_competitor_listing(session, project_slug="acme-store", sku="A", url="https://rival.example/products/a", actor="test")
        save_rule(session, project_slug="acme-store", definition=rule, actor="test")
    with session_scope(url) as session:
        create_run(session, project_slug="acme-store", rule_name="Beat by 5%", actor="test", request_apply=True)
    with session_scope(url) as session:
        rows = session.scalars(select(EventLog)).all()
        outbox = session.scalars(select(OutboxEvent)).all()
    assert {r.event_type for r in rows} == {"competitor.added", "rule.saved", "automation.run.queued", "job.rules.apply"}
    for row in rows:
        assert row.schema_version == REG.current_version(row.event_type)
        REG.validate(row.event_type, row.payload, row.schema_version)
    assert {o.event_type for o in outbox} == {"competitor.added", "job.rules.apply"} and all(o.schema_version == 1 for o in outbox)


def test_cli_lists_types_and_validates_payloads(capsys):
    from calibr_pipeline.cli import main

    assert main(["events", "types"]) == 0
    listed = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == REG.event_types()
    assert main(["events", "validate", "job.rules.apply", "--payload", '{"run_id": "r1", "kind": "apply"}']) == 0
    assert "valid job.rules.apply v1" in capsys.readouterr().out
    assert main(["events", "validate", "job.rules.apply", "--payload", '{"run_id": "r1", "kind": "sideways"}']) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "payload invalid at $.kind" in err and "schema path: #/properties/kind/enum" in err
    assert main(["events", "validate", "no.such.type", "--payload", "{}"]) == 2
    assert "is not registered" in capsys.readouterr().err
    assert main(["events", "validate", "automation.run.completed", "--version", "1", "--payload", '{"run_id": "r", "state": "APPLIED", "applied": 1, "failed": 0}']) == 0
