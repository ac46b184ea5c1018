"""Hypothesis state machine over archive / restore / new events: whatever the interleaving,
every event is in its table or in exactly one committed archive, and restores give back
exactly the rows that were written."""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from calibr_pipeline.events.archive import ArchiveError, archive_events, restore_events
from calibr_pipeline.warehouse.engine import get_engine, session_scope, upgrade_to_head
from calibr_pipeline.warehouse.outbox import record_event
from calibr_pipeline.warehouse.tenancy import get_or_create_tenant
from calibr_pipeline_tests.events.test_archive import _archived_rows, _snapshot

NOW = datetime(2026, 11, 20, tzinfo=timezone.utc)
MONTHS = ["2026-05", "2026-06", "2026-07", "2026-08"]


_TEMPLATE: list[str] = []


def _template() -> str:
    """One migrated warehouse with two tenants, copied for every example (migrating is slow)."""
    if not _TEMPLATE:
        folder = tempfile.mkdtemp(prefix="calibr-archive-sm-template-")
        url = f"sqlite:///{folder}/template.db"
        upgrade_to_head(url)
        with session_scope(url) as session:
            assert (get_or_create_tenant(session, "acme").id, get_or_create_tenant(session, "globex").id) == (1, 2)
        get_engine(url).dispose()
        _TEMPLATE.append(f"{folder}/template.db")
    return _TEMPLATE[0]


class ArchiveMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="calibr-archive-sm-")
        shutil.copy(_template(), f"{self.tmp}/w.db")
        self.url = f"sqlite:///{self.tmp}/w.db"
        self.tenants = [1, 2, None]
        self.written: dict[str, dict] = {}

    @rule(month=st.sampled_from(MONTHS), tenant=st.integers(0, 2), count=st.integers(1, 4))
    def write_events(self, month, tenant, count):
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=timezone.utc)
        with session_scope(self.url) as session:
            for i in range(count):
                row = record_event(session, "rule.saved", {"rule_id": i + 1, "name": f"r{i}"}, tenant_id=self.tenants[tenant], actor="sm")
                row.created_at = start + timedelta(days=i, minutes=len(self.written))
        for event_id, row in _snapshot(self.url)["event_log"].items():
            self.written.setdefault(event_id, row)  # a reused id would keep the first row and break the invariant

    @rule(days=st.sampled_from([30, 90, 150]), batch=st.sampled_from([1, 2, 50]))
    def archive(self, days, batch):
        archive_events(self.url, root=f"{self.tmp}/cold", older_than=timedelta(days=days), now=NOW, tables=("event_log",), batch_rows=batch)

    @rule(month=st.sampled_from(MONTHS), tenant=st.sampled_from([None, "acme", "globex", "_global"]))
    def restore(self, month, tenant):
        try:
            restore_events(self.url, month=month, tenant=tenant, tables=("event_log",))
        except ArchiveError as exc:
            assert "no archived events" in str(exc)

    @invariant()
    def every_event_once_in_table_or_archive(self):
        live = _snapshot(self.url)["event_log"]
        archived = [str(r["id"]) for r in _archived_rows(self.url)["event_log"]]
        assert len(archived) == len(set(archived))
        assert not set(archived) & set(live)
        assert set(archived) | set(live) == set(self.written)
        for event_id, row in live.items():
            assert row == self.written[event_id]  # a restored row is the row that was written

    def teardown(self):
        get_engine(self.url).dispose()
        shutil.rmtree(self.tmp, ignore_errors=True)


TestArchiveMachine = ArchiveMachine.TestCase
TestArchiveMachine.settings = settings(max_examples=30, stateful_step_count=6, deadline=None, suppress_health_check=list(HealthCheck))
