"""Environment -> configuration: one pydantic-settings model for every ``CALIBR_*`` variable.

The embedded default needs nothing: the warehouse is SQLite under ``CALIBR_HOME``
(``./.calibr`` by default). Set ``CALIBR_WAREHOUSE_URL`` to a SQLAlchemy URL
(``postgresql+psycopg2://user@host:5432/db``) to put the warehouse on Postgres.

**Adding a variable** is one field on :class:`CalibrSettings` (type, default and a
``description``), then ``python -m calibr_pipeline.settings`` to regenerate
``.env.example``. ``calibr_pipeline_tests/test_settings.py`` scans the repository for
``CALIBR_*`` names and fails naming each variable that has no field and where it is used.

``calibr serve``, the demo (and the API) call :func:`require_valid_environment` first and
refuse to start with one line naming every bad variable; ``calibr doctor`` checks the
environment and the services it points at, with a fix for each problem.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import Literal, Mapping

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from calibr_pipeline.domain.errors import CalibrError

WAREHOUSE_URL_ENV = "CALIBR_WAREHOUSE_URL"
HOME_ENV = "CALIBR_HOME"
SANDBOX_ALLOWED_HOSTS_ENV = "CALIBR_SANDBOX_ALLOWED_HOSTS"
ENV_PREFIX = "CALIBR_"
REPO_ROOT = Path(__file__).resolve().parents[1]
ENV_EXAMPLE_PATH = REPO_ROOT / ".env.example"

Severity = Literal["info", "warning", "error", "critical"]
# Brokers and result backends the distributed path supports (Redis is the one tested; RabbitMQ as a broker works the same way).
CELERY_URL_SCHEMES = ("redis://", "rediss://", "amqp://", "amqps://", "pyamqp://", "rpc://")


class InvalidEnvironment(CalibrError):
    """The environment does not satisfy the settings model; the message names every bad variable."""


class CalibrSettings(BaseSettings):
    """Every ``CALIBR_*`` variable (plus the ``STRIPE_CONNECT_ENABLED`` flag), typed and documented."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="ignore", case_sensitive=True)

    # --- the write path (services/price_apply.py; docs/retry-logic.md §6) ---------------------
    APPLY_LEASE_SECONDS: float = Field(300.0, gt=0, description="How long a rule run's writer holds its claim without renewing it; an APPLYING run past its lease may be resumed.")
    PREVIEW_MAX_AGE_HOURS: float = Field(24.0, gt=0, description="A queued run previewed longer ago than this is not applied until it is previewed again.")
    DLQ_MAX_AGE_HOURS: float = Field(72.0, gt=0, description="The DLQ drain never retries a dead letter older than this.")
    APPLY_CONCURRENCY: int | None = Field(None, ge=1, le=10, description="Product writes one run writer keeps in flight (1-10). Unset: chosen from the shop's plan (Standard 1, Advanced 2, Plus 8).")
    APPLY_MODE: Literal["sync", "bulk"] | None = Field(None, description="Force every apply to sync or bulk (Shopify bulk operation). Unset: each run's preview chooses.")
    DLQ_MAX_RETRIES: int = Field(3, gt=0, description="The DLQ drain retries a dead letter at most this many times, then closes it as exhausted.")

    # --- HTTP API, console and vault (docs/api.md) ---------------------------------------------
    SECRETS_KEYS: SecretStr | None = Field(None, description="Fernet keys, newest first, comma-separated, that encrypt shop tokens at rest. Unset: the key file.")
    SECRETS_KEY_FILE: str | None = Field(None, description="File holding the vault's Fernet keys (calibr secrets init). Unset: $CALIBR_HOME/secrets.key.")
    API_RATE_LIMIT: int = Field(600, gt=0, description="API requests a minute per token (the default for `calibr tokens create`).")
    API_METRICS_TOKEN: SecretStr | None = Field(None, description="Bearer token `calibr api` /metrics requires from non-loopback clients. Unset: loopback only.")
    API_THREADS: int = Field(4, gt=0, description="Worker threads serving the API's synchronous routes (per worker process).")
    API_WORKERS: int = Field(1, ge=1, le=64, description="Worker processes of `calibr api` (--workers). Several use every core; they share /metrics, the rate limits and the console key.")
    API_SHARED_STATE: str | None = Field(None, description="Set by `calibr api` for its worker processes: their shared folder (not for people to set).")
    API_URL: str | None = Field(None, description="Where the API probes find `calibr api`; the API probe schedules run by default only when it is set.")
    API_PROBE_TOKEN: SecretStr | None = Field(None, description="Read-only API token the synthetic API probes use.")
    API_PROBE_PROJECT: str | None = Field(None, description="Project (of the probe token's tenant) the analytics-overview probe reads. Unset: acme-outdoor, the demo's.")
    API_PORT: int = Field(8000, ge=1, le=65535, description="The demo's API port.")

    SECRET_KEY: SecretStr | None = Field(None, description="Fernet key sealing stored Amazon SP-API credentials. Unset: $CALIBR_HOME/secret.key (created on first use).")

    DBT_SQLITE_PATH: str | None = Field(None, description="Set by the analytics assets for each dbt invocation: the SQLite warehouse file dbt-sqlite builds into (not for people to set).")

    # --- copilot (docs/copilot_simulation.md) ---------------------------------------------------
    COPILOT_LLM_URL: str | None = Field(None, description="OpenAI-compatible chat-completions base URL. Unset: the built-in offline planner.")
    COPILOT_API_KEY: SecretStr | None = Field(None, description="API key of the copilot's model endpoint.")
    COPILOT_MODEL: str | None = Field(None, description="Model name sent to the copilot's endpoint.")
    COPILOT_TIME_BUDGET_S: float = Field(3.0, gt=0, le=30, description="Time budget of one copilot SQL query, in seconds (at most 30).")

    # --- competitor data (docs/extraction.md) -------------------------------------------------
    FX_MAX_RATE_AGE_DAYS: int = Field(31, gt=0, description="An FX rate older than this excludes the snapshot (fx_rate_stale) instead of being used.")
    TRUST_THRESHOLD: float = Field(0.5, ge=0, le=1, description="Trust score under which a competitor snapshot is quarantined (a project's trust_threshold wins).")

    # --- core ---------------------------------------------------------------------------
    HOME: Path = Field(Path(".calibr"), description="Folder for the embedded SQLite warehouse, the demo and the event archive.")
    WAREHOUSE_URL: str | None = Field(
        None, description="SQLAlchemy URL of the warehouse, e.g. postgresql+psycopg2://user@host:5432/db. Unset: SQLite under CALIBR_HOME."
    )
    DAGSTER_PG_URL: str | None = Field(
        None, description="Put Dagster's run/event/schedule storage on Postgres (deploy/dagster.postgres.yaml). Unset: SQLite."
    )
    HISTORY_START: dt.date = Field(
        dt.date(2026, 1, 1), description="First day (UTC) of the deployment's data: daily, weekly and monthly partitions start here, "
        "so the Dagster UI's fill figures count only days that can have data. The demo sets it to the first day of its history."
    )
    WAREHOUSE_SESSION_ROLE: Literal["calibr_pipeline", "owner"] = Field(
        "calibr_pipeline", description="PostgreSQL: the role every pipeline, CLI and API transaction acts as (SET LOCAL ROLE): calibr_pipeline, "
        "which owns nothing and cannot bypass row-level security; `owner` keeps the URL's user (migrations and dbt always use it)."
    )
    # --- distributed execution (deploy/dagster.celery.yaml, docs/deployment.md) ---------
    EXECUTOR: Literal["in_process", "multiprocess", "celery"] | None = Field(
        None, description="Executor of every asset job (the pipeline): in_process, multiprocess or celery (dagster-celery; needs "
        "CALIBR_CELERY_BROKER_URL, a Postgres Dagster instance and warehouse). Unset: each job's own (pricing in-process, others multiprocess)."
    )
    CELERY_BROKER_URL: SecretStr | None = Field(
        None, description="Celery broker of the celery executor and of `deploy/celery-worker.sh`, e.g. redis://127.0.0.1:6379/0 (may hold a password)."
    )
    CELERY_BACKEND_URL: SecretStr | None = Field(
        None, description="Celery result backend (step results back to the run), e.g. redis://127.0.0.1:6379/1. Unset: the broker URL."
    )
    DEBUG: bool = Field(False, description="Show tracebacks for unexpected CLI errors.")
    SANDBOX_ALLOWED_HOSTS: str = Field(
        "", description="Comma-separated host or host:port that may be scraped although private/loopback (the sandbox only)."
    )
    PROBE_TARGETS: str | None = Field(
        None, description="Synthetic probe targets, comma-separated name=url pairs. Unset: calibr serve /health and the Dagster webserver."
    )
    SECRETS_KEY: SecretStr | None = Field(
        None, description="Legacy: the Fernet key that sealed Stripe Connect tokens before the secrets vault (CALIBR_SECRETS_KEYS / the key file) "
        "took them over. Needed only to read such tokens; `calibr secrets rotate` moves them under the vault, then unset it."
    )

    # --- events (docs/events.md) --------------------------------------------------------
    EVENTS_ARCHIVE_URL: str | None = Field(
        None, description="Where `calibr events archive` writes: a folder or any fsspec URL (s3://bucket/prefix). Unset: CALIBR_HOME/archive/events."
    )
    EVENTS_ARCHIVE_FORMAT: Literal["jsonl.gz", "parquet"] = Field("jsonl.gz", description="Archive file format: jsonl.gz or parquet.")
    EVENTS_ARCHIVE_OLDER_THAN: str = Field("90d", pattern=r"^[1-9][0-9]*[dhw]$", description="Age of the events the monthly archive schedule moves (e.g. 90d).")

    # --- alerts (calibr_pipeline/connectors/alerts.py) ---------------------------------
    ALERT_MIN_SEVERITY: Severity = Field("info", description="Lowest severity sent to any alert destination.")
    ALERT_SLACK_WEBHOOK_URL: SecretStr | None = Field(None, description="Slack incoming-webhook URL (a secret).")
    ALERT_WEBHOOK_URL: str | None = Field(None, description="Generic JSON webhook for alerts.")
    ALERT_WEBHOOK_AUTHORIZATION: SecretStr | None = Field(None, description="Authorization header sent to CALIBR_ALERT_WEBHOOK_URL.")
    ALERT_SMTP_HOST: str | None = Field(None, description="SMTP server for e-mail alerts (requires CALIBR_ALERT_SMTP_FROM and _TO).")
    ALERT_SMTP_PORT: int | None = Field(None, ge=1, le=65535, description="SMTP port. Unset: 465 with SSL, 587 with STARTTLS, else 25.")
    ALERT_SMTP_FROM: str | None = Field(None, description="Sender address of alert e-mails.")
    ALERT_SMTP_TO: str | None = Field(None, description="Comma-separated recipients of alert e-mails.")
    ALERT_SMTP_USER: str | None = Field(None, description="SMTP login.")
    ALERT_SMTP_PASSWORD: SecretStr | None = Field(None, description="SMTP password.")
    ALERT_SMTP_STARTTLS: bool = Field(False, description="Use STARTTLS.")
    ALERT_SMTP_SSL: bool = Field(False, description="Use implicit TLS (SMTPS).")
    ALERT_PAGERDUTY_ROUTING_KEY: SecretStr | None = Field(None, description="PagerDuty Events v2 routing key.")
    ALERT_PAGERDUTY_URL: str | None = Field(None, description="PagerDuty events endpoint (the sandbox or tests). Unset: PagerDuty's.")
    ALERT_PAGERDUTY_MIN_SEVERITY: Severity = Field("error", description="Lowest severity paged.")

    # --- monitoring configuration rendered outside Python ------------------------------
    ALERTMANAGER_SECRETS_DIR: str | None = Field(None, description="Folder of secret files read by Alertmanager (monitoring/alertmanager/render-config.sh).")
    GRAFANA_DASHBOARDS: str | None = Field(None, description="Absolute path of monitoring/grafana/dashboards for Grafana provisioning.")

    # --- Stripe connector (docs/stripe.md) ---------------------------------------------
    STRIPE_CONNECT_ENABLED: bool = Field(
        False, validation_alias=AliasChoices("STRIPE_CONNECT_ENABLED"),
        description="Feature flag (variable STRIPE_CONNECT_ENABLED): turn the Stripe connector on. Off: no Stripe asset, route or import.",
    )
    STRIPE_API_KEY: SecretStr | None = Field(None, description="The platform's Stripe secret key (sk_...). Required when the connector is on.")
    STRIPE_CLIENT_ID: str | None = Field(None, description="The platform's Connect client id (ca_...) for OAuth. Required when the connector is on.")
    STRIPE_WEBHOOK_SECRET: SecretStr | None = Field(None, description="Webhook endpoint signing secret (whsec_...). Required when the connector is on.")
    STRIPE_API_BASE: str | None = Field(None, description="Stripe API base URL (the loopback sandbox). Unset: https://api.stripe.com.")
    STRIPE_CONNECT_BASE: str | None = Field(None, description="Stripe Connect OAuth base URL (the sandbox). Unset: https://connect.stripe.com.")

    # --- test suite only ---------------------------------------------------------------
    TEST_POSTGRES_URL: str | None = Field(None, description="Test suite: admin URL of the PostgreSQL server. Unset: postgresql+psycopg2://postgres@127.0.0.1:5432/test.")
    REQUIRE_POSTGRES: bool = Field(False, description="Test suite: fail (not skip) when PostgreSQL is unreachable (CI).")
    REQUIRE_BROWSER: bool = Field(False, description="Test suite: fail (not skip) when chromium/chromedriver are missing (CI).")
    REQUIRE_MONITORING_TOOLS: bool = Field(False, description="Test suite: fail (not skip) when promtool/prometheus/alertmanager are missing (CI).")
    REQUIRE_CELERY: bool = Field(False, description="Test suite: fail (not skip) the celery end-to-end test when redis-server is missing (CI).")

    # --- validation across fields ------------------------------------------------------
    @field_validator("WAREHOUSE_URL", "DAGSTER_PG_URL", "TEST_POSTGRES_URL")
    @classmethod
    def _sqlalchemy_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(value)
        except ArgumentError:
            raise ValueError("is not a SQLAlchemy URL such as postgresql+psycopg2://user@host:5432/db or sqlite:////path/db.sqlite") from None
        return value

    @field_validator("ALERT_WEBHOOK_URL", "ALERT_PAGERDUTY_URL", "STRIPE_API_BASE", "STRIPE_CONNECT_BASE")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("CELERY_BROKER_URL", "CELERY_BACKEND_URL")
    @classmethod
    def _celery_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(CELERY_URL_SCHEMES):
            raise ValueError("must be a Celery URL starting with " + ", ".join(CELERY_URL_SCHEMES) + " (e.g. redis://127.0.0.1:6379/0)")
        return value

    @field_validator("PROBE_TARGETS")
    @classmethod
    def _probe_targets(cls, value: str | None) -> str | None:
        for item in (value or "").split(","):
            item = item.strip()
            if item and ("=" not in item or not item.split("=", 1)[1].startswith(("http://", "https://"))):
                raise ValueError(f"entry {item!r} must look like name=http://host:port/path")
        return value

    @field_validator("SECRETS_KEY")
    @classmethod
    def _fernet_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from cryptography.fernet import Fernet

            try:
                Fernet(value.get_secret_value().encode())
            except (ValueError, TypeError):
                raise ValueError("is not a Fernet key (32 url-safe base64-encoded bytes); generate one with `calibr env generate-key`") from None
        return value

    @model_validator(mode="after")
    def _dependent_variables(self) -> CalibrSettings:
        problems = []
        if self.ALERT_SMTP_HOST and not (self.ALERT_SMTP_FROM and self.ALERT_SMTP_TO):
            problems.append("CALIBR_ALERT_SMTP_HOST is set, so CALIBR_ALERT_SMTP_FROM and CALIBR_ALERT_SMTP_TO are required")
        if self.STRIPE_CONNECT_ENABLED:
            missing = [f"CALIBR_{n}" for n in ("STRIPE_API_KEY", "STRIPE_CLIENT_ID", "STRIPE_WEBHOOK_SECRET") if getattr(self, n) is None]
            if missing:
                problems.append(f"STRIPE_CONNECT_ENABLED is on, so {', '.join(missing)} must be set")
        if self.EXECUTOR == "celery" and self.CELERY_BROKER_URL is None:
            problems.append("CALIBR_EXECUTOR is celery, so CALIBR_CELERY_BROKER_URL must be set (e.g. redis://127.0.0.1:6379/0)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # --- derived values ------------------------------------------------------------------
    @property
    def home(self) -> Path:
        return self.HOME.resolve()

    @property
    def events_archive_url(self) -> str:
        return self.EVENTS_ARCHIVE_URL or str(self.home / "archive" / "events")


def env_name(field_name: str) -> str:
    field = CalibrSettings.model_fields[field_name]
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return ENV_PREFIX + field_name


def variable_names() -> list[str]:
    return sorted(env_name(name) for name in CalibrSettings.model_fields)


def _describe_error(error: dict) -> str:
    loc = error.get("loc") or ()
    name = str(loc[0]) if loc else ""
    variable = env_name(name) if name in CalibrSettings.model_fields else (name or "environment")
    message = error.get("msg", "invalid").removeprefix("Value error, ")
    given = error.get("input")
    secret = name in CalibrSettings.model_fields and CalibrSettings.model_fields[name].annotation in (SecretStr, SecretStr | None)
    shown = "" if not loc or secret or isinstance(given, dict) else f" (got {str(given)[:60]!r})"
    return f"{variable}: {message}{shown}" if loc else message


class _FromMapping(CalibrSettings):
    """The model fed from one explicit mapping (never an .env file): what runs is what the shell set."""

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        return (init_settings,)


def load_settings(environ: Mapping[str, str] | None = None) -> CalibrSettings:
    """The validated settings of ``environ`` (default ``os.environ``) or ``InvalidEnvironment``."""
    env = os.environ if environ is None else environ
    values = {}
    for name in CalibrSettings.model_fields:
        variable = env_name(name)
        raw = env.get(variable)
        if raw is not None and raw.strip() != "":
            values[variable if variable != ENV_PREFIX + name else name] = raw.strip()
    try:
        return _FromMapping(**values)
    except ValidationError as exc:
        problems = "; ".join(_describe_error(e) for e in exc.errors())
        raise InvalidEnvironment(f"invalid environment: {problems} (run `calibr doctor` for fixes)") from None


def require_valid_environment(environ: Mapping[str, str] | None = None) -> CalibrSettings:
    """Called by every long-running entry point before it starts (serve, demo, API)."""
    return load_settings(environ)


# --- the historical helpers, now backed by the model -----------------------------------------


def _lenient(environ) -> dict:
    return dict(os.environ if environ is None else environ)


def calibr_home(environ: os._Environ | dict | None = None) -> Path:
    env = _lenient(environ)
    return Path(env.get(HOME_ENV) or ".calibr").resolve()


def warehouse_url(environ: os._Environ | dict | None = None) -> str:
    env = _lenient(environ)
    url = env.get(WAREHOUSE_URL_ENV)
    if url:
        return url
    home = calibr_home(env)
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'warehouse.db'}"


def sandbox_allowed_hosts(environ: os._Environ | dict | None = None) -> tuple[str, ...]:
    """Hosts (``host`` or ``host:port``) that may be scraped although they are private/loopback.

    Only the sandbox needs this; production leaves it empty so that a competitor URL can
    never point the scraper at internal infrastructure.
    """
    env = _lenient(environ)
    raw = env.get(SANDBOX_ALLOWED_HOSTS_ENV, "")
    return tuple(h.strip().lower() for h in raw.split(",") if h.strip())


HISTORY_START_ENV = "CALIBR_HISTORY_START"
WAREHOUSE_SESSION_ROLE_ENV = "CALIBR_WAREHOUSE_SESSION_ROLE"


def warehouse_session_role(environ: Mapping[str, str] | None = None) -> str | None:
    """The role ORM transactions switch to on PostgreSQL, or None to stay the connecting user."""
    env = os.environ if environ is None else environ
    raw = (env.get(WAREHOUSE_SESSION_ROLE_ENV) or "calibr_pipeline").strip()
    if raw not in ("calibr_pipeline", "owner"):
        raise InvalidEnvironment(f"{WAREHOUSE_SESSION_ROLE_ENV} must be calibr_pipeline or owner, got {raw!r}")
    return None if raw == "owner" else raw


def history_start(environ: Mapping[str, str] | None = None) -> dt.date:
    """The first day partitions cover; an invalid value is refused with the variable's name."""
    env = os.environ if environ is None else environ
    raw = (env.get(HISTORY_START_ENV) or "").strip()
    if not raw:
        return CalibrSettings.model_fields["HISTORY_START"].default
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise InvalidEnvironment(f"{HISTORY_START_ENV} must be a date like 2026-01-01, got {raw!r}") from None


# -- the write path (docs/retry-logic.md, docs/runbook.md) ------------------------------------

APPLY_LEASE_SECONDS_ENV = "CALIBR_APPLY_LEASE_SECONDS"
PREVIEW_MAX_AGE_HOURS_ENV = "CALIBR_PREVIEW_MAX_AGE_HOURS"
DLQ_MAX_AGE_HOURS_ENV = "CALIBR_DLQ_MAX_AGE_HOURS"
DLQ_MAX_RETRIES_ENV = "CALIBR_DLQ_MAX_RETRIES"
APPLY_CONCURRENCY_ENV = "CALIBR_APPLY_CONCURRENCY"
APPLY_MODE_ENV = "CALIBR_APPLY_MODE"


def _positive_number(env, name: str, default: float) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {raw!r}")
    return value


def apply_lease_seconds(environ: os._Environ | dict | None = None) -> float:
    """How long a run's writer holds its claim without renewing it (renewed before every
    product write); a run APPLYING past its lease may be resumed by another process."""
    return _positive_number(os.environ if environ is None else environ, APPLY_LEASE_SECONDS_ENV, 300.0)


def apply_concurrency(environ: os._Environ | dict | None = None) -> int | None:
    """Product writes one run writer keeps in flight (1-10: requests keeps 10 connections per host); unset: chosen from the shop's plan."""
    env = os.environ if environ is None else environ
    raw = env.get(APPLY_CONCURRENCY_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 10:
        raise ValueError(f"{APPLY_CONCURRENCY_ENV} must be a whole number from 1 to 10, got {raw!r}")
    return int(raw)


def apply_mode(environ: os._Environ | dict | None = None) -> str | None:
    """Force every apply to ``sync`` or ``bulk``; unset: each run's preview chooses."""
    env = os.environ if environ is None else environ
    raw = env.get(APPLY_MODE_ENV, "").strip().lower()
    if not raw:
        return None
    if raw not in ("sync", "bulk"):
        raise ValueError(f"{APPLY_MODE_ENV} must be sync or bulk, got {raw!r}")
    return raw


def preview_max_age_hours(environ: os._Environ | dict | None = None) -> float:
    """A QUEUED run whose preview is older than this is not applied until it is previewed again."""
    return _positive_number(os.environ if environ is None else environ, PREVIEW_MAX_AGE_HOURS_ENV, 24.0)


def dlq_max_age_hours(environ: os._Environ | dict | None = None) -> float:
    """The DLQ drain never retries a dead letter older than this: its price is out of date."""
    return _positive_number(os.environ if environ is None else environ, DLQ_MAX_AGE_HOURS_ENV, 72.0)


def dlq_max_retries(environ: os._Environ | dict | None = None) -> int:
    """The DLQ drain retries a dead letter at most this many times, then closes it as exhausted."""
    return int(_positive_number(os.environ if environ is None else environ, DLQ_MAX_RETRIES_ENV, 3))


def stripe_connect_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """The STRIPE_CONNECT_ENABLED flag (read without validating the rest of the environment)."""
    return _lenient(environ).get("STRIPE_CONNECT_ENABLED", "").strip().lower() in ("1", "true", "yes", "on")


def events_archive_url(environ: Mapping[str, str] | None = None) -> str:
    env = _lenient(environ)
    return env.get("CALIBR_EVENTS_ARCHIVE_URL") or str(calibr_home(env) / "archive" / "events")


# --- .env.example ------------------------------------------------------------------------------


def render_env_example() -> str:
    lines = [
        "# Calibrate environment variables. Generated from calibr_pipeline/settings.py",
        "# (`python -m calibr_pipeline.settings`); a test keeps it current. Every line is",
        "# commented out: the defaults need nothing. Check an environment with `calibr doctor`.",
        "",
    ]
    for name, field in CalibrSettings.model_fields.items():
        default = field.default
        if isinstance(default, Path):
            default = str(default)
        if isinstance(default, bool):
            default = "true" if default else "false"
        annotation = getattr(field.annotation, "__name__", None) or str(field.annotation).replace("typing.", "")
        lines.append(f"# {field.description} [{annotation}]")
        lines.append(f"# {env_name(name)}={'' if default is None else default}")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    ENV_EXAMPLE_PATH.write_text(render_env_example(), encoding="utf-8")
    print(f"wrote {ENV_EXAMPLE_PATH}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
