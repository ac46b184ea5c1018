"""Engines and sessions for the warehouse, and schema migration to head."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from functools import lru_cache
from importlib import resources
from typing import Iterator

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

_migrate_lock = threading.Lock()


@lru_cache(maxsize=16)
def get_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # A file on local disk: a pooled connection cannot have gone stale, so no ping before
        # each checkout; and room for every thread of a busy process (the API's workers, a
        # run's writers) so connections are reused instead of opened, set up and closed.
        engine = create_engine(url, connect_args={"timeout": 30}, pool_size=20, max_overflow=20)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the Dagster UI, sensors and concurrent runs read while one run writes;
    # busy_timeout makes a writer wait for the lock instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


@lru_cache(maxsize=16)
def _sessionmaker(url: str) -> sessionmaker[Session]:
    factory = sessionmaker(bind=get_engine(url), expire_on_commit=False)
    if not url.startswith("sqlite"):
        event.listen(factory, "after_begin", _act_as_session_role)
    return factory


def _act_as_session_role(session: Session, _transaction, connection) -> None:
    """PostgreSQL: every ORM transaction of the pipeline, the CLI and the API runs as a role
    that owns nothing and cannot bypass row-level security (warehouse/rls.py), not as the
    owner the URL names. Only migrations (``upgrade_to_head``) and dbt, which change the
    schema, use the owner's connection. A session given a tenant (``act_as_tenant``: the
    API's, as ``calibr_api``) starts every transaction as that role for that tenant."""
    from calibr_pipeline import settings
    from calibr_pipeline.warehouse.rls import ACTING_AS, enter_tenant

    acting_as = session.info.get(ACTING_AS)
    if acting_as is not None:
        # A tenant-scoped session (the API's): its role and tenant in the same round trip,
        # again at the start of every transaction it opens.
        role, tenant_id = acting_as
        enter_tenant(connection, tenant_id, role=role)
        return
    role = settings.warehouse_session_role()
    if role is not None:
        # set_config(…, true) is SET LOCAL ROLE: it ends with the transaction, so a pooled
        # connection goes back to the owner for the next user (a migration, dbt).
        connection.exec_driver_sql(f"SELECT set_config('role', '{role}', true)")


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A transaction: commits on success, rolls back on any error."""
    session = _sessionmaker(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str):
    from alembic.config import Config

    migrations = resources.files("calibr_pipeline.warehouse") / "migrations"
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_to_head(url: str) -> None:
    """Apply every Alembic migration not yet applied, then (re)create the analyst views.

    Views are derived objects, so they are "repeatable": recreated from
    ``warehouse/views.py`` on every upgrade rather than frozen into one migration, and a
    changed view never needs a migration of its own.
    """
    from alembic import command

    from calibr_pipeline.warehouse.rls import apply_row_level_security
    from calibr_pipeline.warehouse.views import recreate_views

    with _migrate_lock:
        config = alembic_config(url)
        with get_engine(url).begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            recreate_views(connection)
            apply_row_level_security(connection)  # PostgreSQL: policies for tables new migrations added


def current_revision(url: str) -> str | None:
    with get_engine(url).connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
