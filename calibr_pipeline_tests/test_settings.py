"""Environment validation: one settings model for every CALIBR_* variable, .env.example kept
current, `calibr doctor` on broken environments, entry points refusing an invalid environment."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from calibr_pipeline import settings
from calibr_pipeline.cli import main
from calibr_pipeline.services.doctor import FAIL, OK, WARN, run_doctor
from calibr_pipeline.settings import CalibrSettings, InvalidEnvironment, load_settings

REPO = Path(__file__).resolve().parents[1]
TYPO = "CALIBR_" + "WAREHOUS_URL"  # built, so that the repository scan below does not see it
VARIABLE = re.compile(r"\bCALIBR_[A-Z0-9_]*[A-Z0-9]\b")
SCANNED = ("*.py", "*.sh", "*.yaml", "*.yml", "*.ini", "Makefile", "run", "*.toml")


def _variables_used() -> dict[str, str]:
    """Every CALIBR_* name in code and configuration -> the first file:line using it."""
    found: dict[str, str] = {}
    roots = [REPO / "calibr_pipeline", REPO / "calibr_pipeline_tests", REPO / "monitoring", REPO / "deploy", REPO / "scripts", REPO / ".ci"]
    files = [REPO / "Makefile", REPO / "dagster.yaml", REPO / "pyproject.toml"]
    for root in roots:
        if root.exists():
            files += [p for pattern in SCANNED for p in root.rglob(pattern)]
    for path in sorted(set(files)):
        if not path.is_file() or "/.venv/" in str(path):
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for name in VARIABLE.findall(line):
                found.setdefault(name, f"{path.relative_to(REPO)}:{number}")
    return found


def _is_prefix(name: str, known: set[str]) -> bool:
    """``CALIBR_ALERT`` in ``k.startswith("CALIBR_ALERT")`` names a family of variables, not one."""
    return any(k.startswith(name + "_") for k in known)


def test_every_calibr_variable_in_the_repository_is_a_field_of_the_settings_model():
    used = _variables_used()
    assert len(used) >= 20, "the scan no longer finds the variables"
    known = set(settings.variable_names())
    missing = [f"{name} (used at {where}): add a field `{name.removeprefix('CALIBR_')}` with a description to CalibrSettings in calibr_pipeline/settings.py"
               for name, where in sorted(used.items()) if name not in known and not _is_prefix(name, known)]
    assert not missing, "\n".join(missing)


def test_every_field_has_a_description_and_a_default():
    for name, field in CalibrSettings.model_fields.items():
        assert field.description and len(field.description) > 10, name
        assert not field.is_required(), f"{name}: the embedded default must need no variable"


def test_env_example_is_generated_from_the_model():
    expected = settings.render_env_example()
    assert settings.ENV_EXAMPLE_PATH.read_text() == expected, ".env.example is stale: run `python -m calibr_pipeline.settings`"
    for name in settings.variable_names():
        assert f"# {name}=" in expected


def test_the_defaults_need_nothing():
    loaded = load_settings({})
    assert loaded.WAREHOUSE_URL is None and loaded.STRIPE_CONNECT_ENABLED is False and loaded.EVENTS_ARCHIVE_FORMAT == "jsonl.gz"


@pytest.mark.parametrize(
    "env, message",
    [
        ({"CALIBR_ALERT_SMTP_PORT": "smtp"}, "CALIBR_ALERT_SMTP_PORT: Input should be a valid integer"),
        ({"CALIBR_ALERT_SMTP_PORT": "70000"}, "CALIBR_ALERT_SMTP_PORT: Input should be less than or equal to 65535"),
        ({"CALIBR_ALERT_MIN_SEVERITY": "loud"}, "CALIBR_ALERT_MIN_SEVERITY: Input should be 'info', 'warning', 'error' or 'critical'"),
        ({"CALIBR_WAREHOUSE_URL": "warehouse"}, "CALIBR_WAREHOUSE_URL: is not a SQLAlchemy URL"),
        ({"CALIBR_PROBE_TARGETS": "health"}, "CALIBR_PROBE_TARGETS: entry 'health' must look like name=http://host:port/path"),
        ({"CALIBR_ALERT_SMTP_HOST": "smtp.example"}, "CALIBR_ALERT_SMTP_HOST is set, so CALIBR_ALERT_SMTP_FROM and CALIBR_ALERT_SMTP_TO are required"),
        ({"STRIPE_CONNECT_ENABLED": "true"}, "STRIPE_CONNECT_ENABLED is on, so CALIBR_STRIPE_API_KEY, CALIBR_STRIPE_CLIENT_ID"),
        ({"CALIBR_DEBUG": "perhaps"}, "CALIBR_DEBUG: Input should be a valid boolean"),
    ],
)
def test_an_invalid_environment_is_one_clear_message(env, message):
    with pytest.raises(InvalidEnvironment) as caught:
        load_settings(env)
    text = str(caught.value)
    assert text.startswith("invalid environment: ") and message in text and "\n" not in text


def test_a_bad_secret_is_named_but_never_echoed():
    with pytest.raises(InvalidEnvironment) as caught:
        load_settings({"CALIBR_SECRETS_KEY": "hunter2-not-a-key"})
    assert "CALIBR_SECRETS_KEY: is not a Fernet key" in str(caught.value) and "hunter2" not in str(caught.value)


def test_serve_and_demo_refuse_an_invalid_environment(monkeypatch, capsys):
    monkeypatch.setenv("CALIBR_ALERT_SMTP_PORT", "smtp")
    for argv in (["serve", "--port", "0"], ["demo", "--no-ui"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "calibr: error: invalid environment: CALIBR_ALERT_SMTP_PORT" in err


def test_doctor_on_a_broken_environment_names_each_problem_with_a_fix(tmp_path):
    env = {
        "CALIBR_HOME": str(tmp_path),
        "CALIBR_ALERT_SMTP_PORT": "smtp",
        "DAGSTER_HOME": str(tmp_path / "missing"),
        TYPO: "typo",
    }
    checks = {c.name: c for c in run_doctor(env, warehouse_url="postgresql+psycopg2://nobody@127.0.0.1:1/none")}
    assert checks["environment"].status == FAIL and "CALIBR_ALERT_SMTP_PORT" in checks["environment"].detail
    assert checks["database"].status == FAIL and "unreachable" in checks["database"].detail and checks["database"].fix
    assert checks["dagster instance"].status == FAIL and "mkdir -p" in checks["dagster instance"].fix
    assert all(c.fix for c in checks.values() if c.status != OK)


def test_doctor_on_a_healthy_environment(tmp_path, sqlite_warehouse_url):
    from cryptography.fernet import Fernet

    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {"CALIBR_HOME": str(tmp_path), "DAGSTER_HOME": str(dagster_home), "CALIBR_SECRETS_KEYS": Fernet.generate_key().decode(),
           TYPO: "typo"}
    checks = {c.name: c for c in run_doctor(env, warehouse_url=sqlite_warehouse_url)}
    assert checks["environment"].status == WARN and TYPO in checks["environment"].detail  # a typo is caught
    assert {n: c.status for n, c in checks.items() if n != "environment"} == {
        "database": OK, "dagster instance": OK, "secrets key": OK, "event archive": OK, "shops": WARN}
    assert checks["secrets key"].detail == "1 vault key(s) from CALIBR_SECRETS_KEYS"
    # Without a key (no variable, no key file) the vault cannot open any stored secret: said, with the fix.
    missing = {c.name: c for c in run_doctor({**env, "CALIBR_SECRETS_KEYS": ""}, warehouse_url=sqlite_warehouse_url)}["secrets key"]
    assert missing.status == WARN and "calibr secrets init" in missing.fix


def test_doctor_reports_an_unmigrated_database_and_an_unreachable_shop(tmp_path):
    from calibr_pipeline.warehouse.engine import session_scope, upgrade_to_head
    from calibr_pipeline.warehouse.tenancy import get_or_create_project, get_or_create_tenant, upsert_shop

    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    checks = {c.name: c for c in run_doctor({"CALIBR_HOME": str(tmp_path)}, warehouse_url=fresh)}
    assert checks["database"].status == FAIL and checks["database"].fix == "run `calibr db upgrade`"
    upgrade_to_head(fresh)
    with session_scope(fresh) as session:
        project = get_or_create_project(session, get_or_create_tenant(session, "acme"), "acme-store", currency="USD")
        upsert_shop(session, project, "main", platform="shopify", currency="USD", admin_endpoint="http://127.0.0.1:1/admin/api/2025-01/graphql.json")
    checks = {c.name: c for c in run_doctor({"CALIBR_HOME": str(tmp_path)}, warehouse_url=fresh)}
    assert checks["shop main"].status == FAIL and "make sandbox" in checks["shop main"].fix


def test_calibr_doctor_cli_exit_codes(tmp_path, sqlite_warehouse_url):
    env = {"PATH": "/usr/bin:/bin", "CALIBR_HOME": str(tmp_path), "CALIBR_ALERT_SMTP_PORT": "smtp"}
    bad = subprocess.run([sys.executable, "-m", "calibr_pipeline.cli", "--warehouse-url", sqlite_warehouse_url, "doctor"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "[FAIL] environment: CALIBR_ALERT_SMTP_PORT" in bad.stdout and "fix:" in bad.stdout
    assert "Traceback" not in bad.stderr


def test_partitions_start_on_the_first_day_of_history():
    import datetime as dt

    assert settings.history_start({}) == dt.date(2026, 1, 1)
    assert settings.history_start({"CALIBR_HISTORY_START": "2026-10-02"}) == dt.date(2026, 10, 2)
    with pytest.raises(InvalidEnvironment, match="CALIBR_HISTORY_START must be a date"):
        settings.history_start({"CALIBR_HISTORY_START": "yesterday"})
    # The partition definitions read it when the code location loads: daily from that day,
    # weekly from the first Monday on or after it, monthly from its month.
    probe = (
        "from calibr_pipeline.defs.partitions import DAILY_PARTITIONS;"
        "from calibr_pipeline.defs.analytics.digest import WEEKLY_PARTITIONS;"
        "from calibr_pipeline.defs.operations.definitions import MONTHLY;"
        "print(DAILY_PARTITIONS.get_first_partition_key(), WEEKLY_PARTITIONS.get_first_partition_key(), MONTHLY.get_first_partition_key())"
    )
    out = subprocess.run([sys.executable, "-c", probe], env={"PATH": "/usr/bin:/bin", "CALIBR_HISTORY_START": "2026-10-02"},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2026-10-02", "2026-10-05", "2026-10-01"]
