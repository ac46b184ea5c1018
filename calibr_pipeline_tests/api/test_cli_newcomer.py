"""What a newcomer tripped on (issue 13, item 7) and the tokens commands."""

from __future__ import annotations


from calibr_pipeline.cli import main
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.outbox import record_event
from calibr_pipeline.warehouse.tenancy import get_or_create_tenant


def test_rules_add_with_a_missing_file_is_a_one_line_user_error(sqlite_warehouse_url, capsys):
    code = main(["--warehouse-url", sqlite_warehouse_url, "rules", "add", "--project", "p", "--file", "missing.json"])
    err = capsys.readouterr().err
    assert code == 2 and "missing.json" in err and "unexpected" not in err and len(err.strip().splitlines()) == 1


def test_audit_of_an_unknown_tenant_is_an_error(sqlite_warehouse_url, capsys):
    code = main(["--warehouse-url", sqlite_warehouse_url, "audit", "--tenant", "nobody"])
    assert code == 2 and "unknown tenant 'nobody'" in capsys.readouterr().err


def test_audit_limit_shows_the_newest_events_with_a_header(sqlite_warehouse_url, capsys):
    with session_scope(sqlite_warehouse_url) as session:
        tenant = get_or_create_tenant(session, "acme")
        for i in range(8):
            # any registered type will do (the registry refuses unknown ones)
            record_event(session, "automation.run.retry", {"run_id": "r", "targets": [i + 1]}, tenant_id=tenant.id, actor="test")
    assert main(["--warehouse-url", sqlite_warehouse_url, "audit", "--tenant", "acme", "--limit", "3"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert lines[0].startswith("id\tat\ttenant") and [line.split("\t")[-1] for line in lines[1:]] == [f'{{"run_id": "r", "targets": [{n}]}}' for n in (8, 7, 6)]
    assert "newest first" in captured.err
    assert main(["--warehouse-url", sqlite_warehouse_url, "audit", "--tenant", "acme", "--limit", "3", "--oldest-first"]) == 0
    assert [line.split("\t")[-1] for line in capsys.readouterr().out.strip().splitlines()[1:]] == [f'{{"run_id": "r", "targets": [{n}]}}' for n in (1, 2, 3)]


def test_an_empty_new_warehouse_is_announced_with_a_hint(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CALIBR_HOME", str(tmp_path / "fresh"))
    monkeypatch.delenv("CALIBR_WAREHOUSE_URL", raising=False)
    code = main(["competitors", "list", "--project", "acme-outdoor"])
    err = capsys.readouterr().err
    assert code == 2
    assert "created a new, empty warehouse" in err and "make demo" in err and "CALIBR_HOME" in err


def test_tokens_create_list_revoke(sqlite_warehouse_url, capsys):
    args = ["--warehouse-url", sqlite_warehouse_url]
    assert main([*args, "tenants", "add", "acme"]) == 0
    assert main([*args, "tokens", "create", "--tenant", "acme", "--scope", "read", "--expires-in", "90d", "--name", "ci"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    token = out[-1]
    assert token.startswith("cal_") and len(token) > 40 and "scope read" in out[-3]
    assert main([*args, "tokens", "list"]) == 0
    listed = capsys.readouterr().out
    assert "\tactive\t" in listed and token not in listed and token[:10] in listed
    assert main([*args, "tokens", "revoke", "1"]) == 0
    assert main([*args, "tokens", "list", "--json"]) == 0
    assert '"status": "revoked"' in capsys.readouterr().out
    for bad in (["--expires-in", "soon"], ["--expires-in", "0d"], ["--rate-limit", "0"]):
        assert main([*args, "tokens", "create", "--tenant", "acme", "--scope", "read", *bad]) == 2
    assert main([*args, "tokens", "create", "--tenant", "nobody", "--scope", "read"]) == 2
    assert main([*args, "tokens", "revoke", "99"]) == 2
