"""Concurrent copilot calls: proposals of the same name never replace each other, nothing is
lost from the audit, questions keep answering while proposals write."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import text

from calibr_pipeline.copilot.service import run_copilot
from calibr_pipeline.warehouse.engine import get_engine


def test_parallel_proposals_and_questions(copilot_world):
    url = copilot_world["url"]
    prompt = "Raise prices by 3% on tag outdoor, keep 20% margin"

    def call(i):
        if i % 2:
            return run_copilot(url, command="simulate", project_slug="acme-outdoor", prompt="How many SKUs do I have?", actor=f"c{i}")
        return run_copilot(url, command="propose", project_slug="acme-outdoor", prompt=prompt, actor=f"c{i}")

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(call, range(12)))
    questions = [r for i, r in enumerate(results) if i % 2]
    proposals = [r for i, r in enumerate(results) if not i % 2]
    assert all(r["status"] == "ok" and r["rows"] == [{"skus": 6}] for r in questions)
    saved = [r for r in proposals if r["status"] == "ok"]
    assert saved and all(r["refusal"]["code"] == "busy" for r in proposals if r["status"] != "ok")
    names = [r["rule"]["name"] for r in saved]
    assert len(set(names)) == len(names)
    with get_engine(url).connect() as connection:
        audited = connection.execute(text("SELECT COUNT(*) FROM copilot_audit WHERE actor LIKE 'c%' AND prompt IN (:a, :b)"),
                                     {"a": prompt, "b": "How many SKUs do I have?"}).scalar()
        active = connection.execute(text("SELECT COUNT(*) FROM pricing_rules WHERE name LIKE 'Copilot:%' AND active = :t"), {"t": True}).scalar()
    assert audited == 12 and active == 0
