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
