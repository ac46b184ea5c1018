"""A preview's targets as stored: one row per SKU written once (final id and idempotency key),
the explain trace split into the run's shared part and each target's own, read back whole."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.domain.rules import is_compact_explain
from calibr_pipeline.services.rule_runs import compute_targets, create_run, save_rule, target_explain
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import Product, RuleRun, RuleTarget, Variant
from calibr_pipeline.warehouse.types import utcnow
from calibr_pipeline_tests.benchmarks.bench_preview import RULE, TENANT, seed

SKUS = 80


@pytest.fixture
def previewed(warehouse_url):
    seed(warehouse_url, n_skus=SKUS, coverage=0.5, n_competitors=2, seed_value=5)
    with session_scope(warehouse_url) as session:
        save_rule(session, project_slug=TENANT, definition=RULE, actor="test")
        run_id = create_run(session, project_slug=TENANT, rule_name=RULE["name"], actor="test").id
    now = utcnow()
    with session_scope(warehouse_url) as session:
        stats = compute_targets(session, run_id, now=now, preset="standard")
    return warehouse_url, run_id, now, stats


def _targets(session, run_id):
    return session.scalars(select(RuleTarget).where(RuleTarget.run_id == run_id).order_by(RuleTarget.id)).all()


def test_each_target_stores_its_own_trace_and_reads_back_whole(previewed):
    url, run_id, now, stats = previewed
    with session_scope(url) as session:
        base = session.get(RuleRun, run_id).explain_base
        assert base == {"rule": RULE["name"], "currency": "USD", "computed_at": now.isoformat(), "transform": RULE["transform"],
                        "guardrails": {"respect_map": True, "max_observation_age_hours": 48, "min_margin_pct": "20", "max_change_pct": "15"}}
        targets = _targets(session, run_id)
        assert len(targets) == stats.total == SKUS
        assert [t.sku for t in targets] == sorted(t.sku for t in targets)  # ids in SKU order, as before
        for t in targets:
            assert t.idempotency_key == f"{run_id}:{t.id}"
            assert is_compact_explain(t.explain) and "transform" not in t.explain and "clamps" not in t.explain
            full = target_explain(session, t)
            assert {k: full[k] for k in ("rule", "currency", "computed_at", "transform", "guardrails")} == base
            assert (full["variant_id"], full["sku"], full["status"], full["reason"]) == (t.variant_id, t.sku, t.proposal_status, t.reason)
            assert Decimal(full["final_price"]) == t.to_price and Decimal(full["steps"][0]["current_price"]) == t.from_price
            assert full["steps"][-1] == {"step": 9, "name": "final", "status": t.proposal_status, "to_price": full["final_price"], "reason": t.reason}
            assert full["clamps"] == [{k: s[k] for k in ("step", "name", "before", "after", "bound")} for s in full["steps"] if s.get("clamped")]
        priced = [t for t in targets if t.proposal_status != "kept"]
        assert priced and any(target_explain(session, t)["clamps"] for t in priced)
        assert all(len(target_explain(session, t)["steps"][1]["used"]) >= 1 for t in priced)
        # The counts come from the rows written, not from reading them back: they must agree.
        by_status = dict(session.execute(select(RuleTarget.proposal_status, func.count()).where(RuleTarget.run_id == run_id).group_by(RuleTarget.proposal_status)).all())
        products = {t.product_external_id for t in targets if t.action == "write"}
        assert (stats.by_status, stats.to_write, stats.products) == (by_status, sum(t.action == "write" for t in targets), len(products))
        assert session.get(RuleRun, run_id).run_metadata["targets"] == SKUS


def test_a_refreshed_preview_and_a_second_run_get_new_ids_and_keys(previewed):
    url, run_id, now, _ = previewed
    with session_scope(url) as session:
        before = {t.id for t in _targets(session, run_id)}
    with session_scope(url) as session:
        compute_targets(session, run_id, refresh=True)
        other = create_run(session, project_slug=TENANT, rule_name=RULE["name"], actor="test").id
    with session_scope(url) as session:
        compute_targets(session, other)
    with session_scope(url) as session:
        refreshed, second = _targets(session, run_id), _targets(session, other)
        assert len(refreshed) == len(second) == SKUS
        # (SQLite may hand a refreshed preview the ids its old targets had, as a plain INSERT would.)
        assert len(before) == SKUS and not {t.id for t in refreshed} & {t.id for t in second}
        assert all(t.idempotency_key == f"{t.run_id}:{t.id}" for t in [*refreshed, *second])
        assert session.scalar(select(func.count()).select_from(RuleTarget)) == 2 * SKUS


def test_a_tag_scope_reads_tags_and_a_scope_matching_nothing_writes_nothing(warehouse_url):
    seed(warehouse_url, n_skus=SKUS, coverage=0.5, n_competitors=2, seed_value=5)
    tents = {**RULE, "name": "Tents only", "scope": {"kind": "tag", "values": [" TENTS "]}}
    nothing = {**RULE, "name": "No such tag", "scope": {"kind": "tag", "values": ["nope"]}}
    with session_scope(warehouse_url) as session:
        for rule in (tents, nothing):
            save_rule(session, project_slug=TENANT, definition=rule, actor="test")
        tents_run = create_run(session, project_slug=TENANT, rule_name=tents["name"], actor="test").id
        nothing_run = create_run(session, project_slug=TENANT, rule_name=nothing["name"], actor="test").id
    with session_scope(warehouse_url) as session:
        stats = compute_targets(session, tents_run)
    with session_scope(warehouse_url) as session:
        expected = session.scalar(select(func.count()).select_from(Variant).join(Product).where(Product.product_type == "Tents"))
        assert 0 < stats.total == expected == len(_targets(session, tents_run))
    with pytest.raises(CalibrError, match="matches no SKU"), session_scope(warehouse_url) as session:
        compute_targets(session, nothing_run)
    with session_scope(warehouse_url) as session:
        assert _targets(session, nothing_run) == []


def test_copy_under_row_level_security_and_as_the_owner_give_the_same_rows(previewed, monkeypatch):
    """On PostgreSQL the pipeline's role is under row-level security, which COPY FROM refuses:
    its rows go through a session temporary table and one INSERT … SELECT. As the owner
    (CALIBR_WAREHOUSE_SESSION_ROLE=owner) they are copied straight in. Both give the same
    rows. (On SQLite both runs take the one path.)"""
    from calibr_pipeline.services import rule_runs

    url, run_id, now, _ = previewed
    original = rule_runs._TargetWriter.__init__
    paths: list[bool] = []

    def recording(self, *args, **kwargs):
        original(self, *args, **kwargs)
        paths.append(self.staged)

    monkeypatch.setattr(rule_runs._TargetWriter, "__init__", recording)
    monkeypatch.setenv("CALIBR_WAREHOUSE_SESSION_ROLE", "owner")
    with session_scope(url) as session:
        other = create_run(session, project_slug=TENANT, rule_name=RULE["name"], actor="test").id
    with session_scope(url) as session:
        compute_targets(session, other, now=now)
    assert paths == [False]  # the owner: straight in (SQLite: the one path)
    columns = [c for c in RuleTarget.__table__.columns if c.name not in ("id", "run_id", "idempotency_key")]
    with session_scope(url) as session:
        staged = session.execute(select(*columns).where(RuleTarget.run_id == run_id).order_by(RuleTarget.sku)).all()
        direct = session.execute(select(*columns).where(RuleTarget.run_id == other).order_by(RuleTarget.sku)).all()
        assert len(staged) == SKUS and staged == direct
        assert all(t.idempotency_key == f"{other}:{t.id}" for t in _targets(session, other))
    if url.startswith("postgresql"):
        monkeypatch.delenv("CALIBR_WAREHOUSE_SESSION_ROLE")
        with session_scope(url) as session:
            third = create_run(session, project_slug=TENANT, rule_name=RULE["name"], actor="test").id
        with session_scope(url) as session:
            compute_targets(session, third, now=now)
        assert paths == [False, True]  # the pipeline's role: through the staging table
        with session_scope(url) as session:
            assert session.execute(select(*columns).where(RuleTarget.run_id == third).order_by(RuleTarget.sku)).all() == direct


def test_small_batches_land_in_order_and_a_failed_batch_fails_the_preview(warehouse_url, monkeypatch):
    """Batches of 20 rows: every batch lands, ids in SKU order; a batch that fails to write
    fails the whole preview and leaves no target behind."""
    from calibr_pipeline.services import rule_runs

    seed(warehouse_url, n_skus=SKUS, coverage=0.5, n_competitors=2, seed_value=5)
    monkeypatch.setattr(rule_runs, "_WRITE_CHUNK", 20)
    with session_scope(warehouse_url) as session:
        save_rule(session, project_slug=TENANT, definition=RULE, actor="test")
        good = create_run(session, project_slug=TENANT, rule_name=RULE["name"], actor="test").id
        bad = create_run(session, project_slug=TENANT, rule_name=RULE["name"], actor="test").id
    with session_scope(warehouse_url) as session:
        assert compute_targets(session, good).total == SKUS
    with session_scope(warehouse_url) as session:
        targets = _targets(session, good)
        assert [t.sku for t in targets] == sorted(t.sku for t in targets) and len(targets) == SKUS
        assert all(t.idempotency_key == f"{good}:{t.id}" for t in targets)

    original_flush = rule_runs._TargetWriter.flush

    def failing_flush(self):
        if self.written >= 40:
            raise RuntimeError("disk full")
        return original_flush(self)

    monkeypatch.setattr(rule_runs._TargetWriter, "flush", failing_flush)
    with pytest.raises(RuntimeError, match="disk full"), session_scope(warehouse_url) as session:
        compute_targets(session, bad)
    with session_scope(warehouse_url) as session:
        assert _targets(session, bad) == [] and session.get(RuleRun, bad).previewed_at is None
