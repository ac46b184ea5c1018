"""Alembic environment: the same migrations run on SQLite and Postgres."""

from alembic import context
from sqlalchemy import engine_from_config, pool

from calibr_pipeline.warehouse.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _drop_analyst_views_if_migrating(connection) -> None:
    """The analyst views (``warehouse/views.py``) are derived objects that depend on the tables:
    a migration that rebuilds a table (SQLite batch mode) or drops a column fails while a view
    reads it. When any migration is about to run, drop them; ``upgrade_to_head`` recreates them
    from ``views.py`` afterwards (the views hash is cleared so it does)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import inspect, text

    from calibr_pipeline.warehouse.views import VIEWS, VIEWS_HASH_KEY

    destination = context.get_revision_argument()
    script = ScriptDirectory.from_config(config)
    if destination in (None, "head", "heads"):
        destination = script.get_current_head()
    current = MigrationContext.configure(connection).get_current_revision()
    if current is None or current == destination:
        return
    for name in VIEWS:
        connection.execute(text(f"DROP VIEW IF EXISTS {name}"))
    if inspect(connection).has_table("warehouse_meta"):
        connection.execute(text("DELETE FROM warehouse_meta WHERE key = :key"), {"key": VIEWS_HASH_KEY})


def _run(connection) -> None:
    # Batch mode lets ALTER TABLE migrations work on SQLite, which cannot alter columns in place.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        _drop_analyst_views_if_migrating(connection)
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = engine_from_config(config.get_section(config.config_ini_section) or {}, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as connection:
        _run(connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
