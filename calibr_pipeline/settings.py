"""Environment -> configuration.

The embedded default needs nothing: the warehouse is SQLite under ``CALIBR_HOME``
(``./.calibr`` by default). Set ``CALIBR_WAREHOUSE_URL`` to a SQLAlchemy URL
(``postgresql+psycopg2://user@host:5432/db``) to put the warehouse on Postgres.
"""

from __future__ import annotations

import os
from pathlib import Path

WAREHOUSE_URL_ENV = "CALIBR_WAREHOUSE_URL"
HOME_ENV = "CALIBR_HOME"
SANDBOX_ALLOWED_HOSTS_ENV = "CALIBR_SANDBOX_ALLOWED_HOSTS"


def calibr_home(environ: os._Environ | dict | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get(HOME_ENV) or ".calibr").resolve()


def warehouse_url(environ: os._Environ | dict | None = None) -> str:
    env = os.environ if environ is None else environ
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
    env = os.environ if environ is None else environ
    raw = env.get(SANDBOX_ALLOWED_HOSTS_ENV, "")
    return tuple(h.strip().lower() for h in raw.split(",") if h.strip())


# -- the write path (docs/retry-logic.md, docs/runbook.md) ------------------------------------

APPLY_LEASE_SECONDS_ENV = "CALIBR_APPLY_LEASE_SECONDS"
PREVIEW_MAX_AGE_HOURS_ENV = "CALIBR_PREVIEW_MAX_AGE_HOURS"
DLQ_MAX_AGE_HOURS_ENV = "CALIBR_DLQ_MAX_AGE_HOURS"
DLQ_MAX_RETRIES_ENV = "CALIBR_DLQ_MAX_RETRIES"
APPLY_CONCURRENCY_ENV = "CALIBR_APPLY_CONCURRENCY"
APPLY_MODE_ENV = "CALIBR_APPLY_MODE"


def _positive_number(env, name: str, default: float) -> float:
    raw = env.get(name, "").strip()
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
