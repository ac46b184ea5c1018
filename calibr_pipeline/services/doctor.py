"""``calibr doctor``: check the environment and what it points at, with a fix for every problem.

Each check returns one :class:`Check` (``ok``, ``warn`` or ``fail``, a detail and a fix);
a check never raises and never prints a secret. ``fail`` makes ``calibr doctor`` exit 1.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlsplit

from calibr_pipeline import settings as settings_module
from calibr_pipeline.settings import CalibrSettings, InvalidEnvironment, load_settings

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"[{self.status.upper():4}] {self.name}: {self.detail}"
        return text + (f"\n       fix: {self.fix}" if self.fix and self.status != OK else "")


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


def check_environment(env: Mapping[str, str]) -> tuple[Check, CalibrSettings | None]:
    try:
        loaded = load_settings(env)
    except InvalidEnvironment as exc:
        return Check("environment", FAIL, str(exc).removeprefix("invalid environment: ").removesuffix(" (run `calibr doctor` for fixes)"),
                     "correct the variables named above; every variable, its type and default are listed in .env.example"), None
    unknown = sorted(k for k in env if k.startswith("CALIBR_") and k not in settings_module.variable_names())
    if unknown:
        return Check("environment", WARN, f"unknown variable(s) {', '.join(unknown)} (typo?)",
                     "remove them or correct the name; .env.example lists every variable"), loaded
    return Check("environment", OK, f"{sum(1 for k in env if k.startswith('CALIBR_'))} CALIBR_* variable(s) set, all valid"), loaded


def check_database(url: str) -> Check:
    from alembic.script import ScriptDirectory
    from sqlalchemy import text

    from calibr_pipeline.warehouse.engine import alembic_config, current_revision, get_engine

    shown = _redact(url)
    try:
        with get_engine(url).connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:200]
        return Check("database", FAIL, f"{shown} is unreachable: {reason}",
                     "start the database or correct CALIBR_WAREHOUSE_URL (unset it for the embedded SQLite warehouse)")
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    current = current_revision(url)
    if current != head:
        return Check("database", FAIL, f"{shown} is at migration {current or 'none'}, the code expects {head}", "run `calibr db upgrade`")
    return Check("database", OK, f"{shown} reachable, migrated to {head}")


def check_dagster_instance(env: Mapping[str, str]) -> Check:
    home = env.get("DAGSTER_HOME")
    if not home:
        return Check("dagster instance", WARN, "DAGSTER_HOME is not set: the CLI uses $CALIBR_HOME/dagster_home, `dagster dev` a temporary instance",
                     "export DAGSTER_HOME=/path/with/dagster.yaml so the daemon, the UI and the CLI share one instance")
    path = Path(home)
    if not path.is_dir():
        return Check("dagster instance", FAIL, f"DAGSTER_HOME={home} does not exist", f"mkdir -p {home} && cp dagster.yaml {home}/")
    config = path / "dagster.yaml"
    if not config.exists():
        return Check("dagster instance", WARN, f"{config} is missing: Dagster uses its defaults", f"cp dagster.yaml {home}/")
    try:
        import yaml

        yaml.safe_load(config.read_text())
    except Exception as exc:
        return Check("dagster instance", FAIL, f"{config} is not valid YAML: {' '.join(str(exc).split())[:160]}", "fix the file (see dagster.yaml in the repository)")
    if "CALIBR_DAGSTER_PG_URL" in config.read_text() and not env.get("CALIBR_DAGSTER_PG_URL"):
        return Check("dagster instance", FAIL, f"{config} reads CALIBR_DAGSTER_PG_URL, which is not set", "export CALIBR_DAGSTER_PG_URL or use the SQLite dagster.yaml")
    return Check("dagster instance", OK, f"DAGSTER_HOME={home} with dagster.yaml")


def check_secrets_key(loaded: CalibrSettings | None, env: Mapping[str, str]) -> Check:
    """The vault's keys (CALIBR_SECRETS_KEYS or the key file) that encrypt every connector secret."""
    from calibr_pipeline.secrets.vault import SecretsError, Vault

    if loaded is None:
        return Check("secrets key", WARN, "not checked: the environment is invalid", "fix the environment first")
    try:
        vault = Vault.from_environment(env, create=False)
    except SecretsError as exc:
        return Check("secrets key", WARN, str(exc), "run `calibr secrets init` (the demo does) and back up the key file")
    return Check("secrets key", OK, f"{len(vault.keys)} vault key(s) from {vault.source}")


def _tcp(url: str, timeout: float) -> str | None:
    parts = urlsplit(url)
    if not parts.hostname:
        return "no host in the URL"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def check_endpoints(url: str | None, loaded: CalibrSettings | None, *, timeout: float = 2.0, probe: Callable[[str, float], str | None] = _tcp) -> list[Check]:
    """The shops' Admin endpoints (sandbox or real) and the Stripe API when the connector is on."""
    checks = []
    if url is not None:
        try:
            from sqlalchemy import select

            from calibr_pipeline.warehouse.engine import session_scope
            from calibr_pipeline.warehouse.models import Shop

            with session_scope(url) as session:
                shops = session.execute(select(Shop.name, Shop.admin_endpoint).where(Shop.admin_endpoint.is_not(None))).all()
        except Exception:
            shops = []
        for name, endpoint in shops:
            problem = probe(endpoint, timeout)
            checks.append(
                Check(f"shop {name}", OK, f"{endpoint} answers") if problem is None else
                Check(f"shop {name}", FAIL, f"{endpoint} is unreachable: {problem}",
                      "start the sandbox (`make sandbox`) or correct the shop endpoint (`calibr shops add --endpoint ...`)")
            )
        if not shops:
            checks.append(Check("shops", WARN, "no shop with an Admin endpoint is registered", "connect a shop: calibr shops add --project P --name N --endpoint URL"))
    if loaded is not None and loaded.STRIPE_CONNECT_ENABLED:
        base = loaded.STRIPE_API_BASE or "https://api.stripe.com"
        problem = probe(base, timeout)
        checks.append(Check("stripe api", OK, f"{base} answers") if problem is None else
                      Check("stripe api", FAIL, f"{base} is unreachable: {problem}", "start the Stripe sandbox or correct CALIBR_STRIPE_API_BASE"))
    return checks


def check_archive(loaded: CalibrSettings | None) -> Check:
    if loaded is None:
        return Check("event archive", WARN, "not checked: the environment is invalid", "fix the environment first")
    target = loaded.events_archive_url
    if "://" in target and not target.startswith("file://"):
        return Check("event archive", OK, f"{target} (remote; checked when `calibr events archive` runs)")
    path = Path(target.removeprefix("file://"))
    existing = next((p for p in [path, *path.parents] if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK):
        return Check("event archive", FAIL, f"{path} is not writable", "set CALIBR_EVENTS_ARCHIVE_URL to a writable folder or fsspec URL")
    return Check("event archive", OK, f"{path} writable")


_BROKER_PORTS = {"redis": 6379, "rediss": 6379, "amqp": 5672, "amqps": 5671, "pyamqp": 5672}


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def check_distributed(loaded: CalibrSettings | None, warehouse_url: str | None, *, timeout: float = 2.0,
                      probe: Callable[[str, float], str | None] = _tcp) -> list[Check]:
    """With CALIBR_EXECUTOR=celery: the broker answers, and warehouse and Dagster instance are
    on PostgreSQL (the workers on other machines reach both). Nothing to check otherwise."""
    if loaded is None or loaded.EXECUTOR != "celery" or loaded.CELERY_BROKER_URL is None:
        return []
    checks = []
    broker = loaded.CELERY_BROKER_URL.get_secret_value()
    parts = urlsplit(broker)
    target = f"tcp://{parts.hostname}:{parts.port or _BROKER_PORTS.get(parts.scheme, 6379)}" if parts.hostname else broker
    problem = probe(target, timeout)
    shown = _hide_password(broker)
    checks.append(Check("celery broker", OK, f"{shown} answers") if problem is None else
                  Check("celery broker", FAIL, f"{shown} is unreachable: {problem}",
                        "start redis-server (docs/deployment.md, \"Past one machine\") or correct CALIBR_CELERY_BROKER_URL"))
    if warehouse_url is None or warehouse_url.startswith("sqlite"):
        checks.append(Check("celery warehouse", FAIL, "the warehouse is SQLite: workers on other machines cannot reach it",
                            "set CALIBR_WAREHOUSE_URL to a PostgreSQL URL every worker reaches"))
    if loaded.DAGSTER_PG_URL is None:
        checks.append(Check("celery instance", FAIL, "CALIBR_DAGSTER_PG_URL is not set: the workers open each run's instance, which must be on PostgreSQL",
                            "export CALIBR_DAGSTER_PG_URL and use deploy/dagster.celery.yaml as $DAGSTER_HOME/dagster.yaml"))
    return checks


def run_doctor(env: Mapping[str, str] | None = None, warehouse_url: str | None = None) -> list[Check]:
    env = dict(os.environ if env is None else env)
    env_check, loaded = check_environment(env)
    checks = [env_check]
    url = warehouse_url
    if url is None and loaded is not None:
        url = loaded.WAREHOUSE_URL or settings_module.warehouse_url(env)
    db = check_database(url) if url else Check("database", WARN, "not checked: the environment is invalid", "fix the environment first")
    checks.append(db)
    checks.append(check_dagster_instance(env))
    checks.append(check_secrets_key(loaded, env))
    checks.append(check_archive(loaded))
    checks.extend(check_endpoints(url if db.status == OK else None, loaded))
    checks.extend(check_distributed(loaded, url))
    return checks
