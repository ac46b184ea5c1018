"""The dbt analytics models as Dagster assets (dagster-dbt), built on the warehouse.

* the project lives in ``calibr_pipeline/analytics_dbt`` (SQL analysts read and extend);
* the manifest Dagster needs to know the models is parsed once, when missing or older
  than a project file (``dbt parse``, a few seconds), into the project's ``target/``;
* every build writes a profile for the warehouse it runs against: dbt-sqlite on the
  embedded SQLite file (the models become tables in the same database), dbt-postgres on
  the configured PostgreSQL database (schema ``public``); the profile file holds the
  password, so it lives in a private (0700) temporary directory;
* dbt sources carry ``meta.dagster.asset_key``, so each model sits downstream of the
  Python assets that fill its inputs; dbt tests are asset checks.
"""

import functools
import os
import shutil
import stat
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets
from sqlalchemy.engine import make_url

from calibr_pipeline.warehouse.engine import get_engine
from calibr_pipeline.warehouse.rls import apply_row_level_security
from calibr_pipeline.defs.resources import WarehouseResource

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "analytics_dbt"
MANIFEST_PATH = DBT_PROJECT_DIR / "target" / "manifest.json"
_parse_lock = threading.Lock()


def _project_files() -> list[Path]:
    return [p for p in DBT_PROJECT_DIR.rglob("*") if p.is_file() and "target" not in p.parts and "logs" not in p.parts]


def ensure_manifest() -> Path:
    """Parse the dbt project if its manifest is missing or stale; returns the manifest path."""
    with _parse_lock:
        newest = max(p.stat().st_mtime for p in _project_files())
        if MANIFEST_PATH.is_file() and MANIFEST_PATH.stat().st_mtime >= newest:
            return MANIFEST_PATH
        from dbt.cli.main import dbtRunner

        scratch = tempfile.mkdtemp(prefix="calibr-dbt-parse-")
        result = dbtRunner().invoke(
            ["parse", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", _profiles_dir(f"sqlite:///{scratch}/parse.db"),
             "--target-path", str(MANIFEST_PATH.parent), "--quiet"]
        )
        if not result.success:
            raise RuntimeError(f"dbt parse of {DBT_PROJECT_DIR} failed: {result.exception}")
        return MANIFEST_PATH


def dbt_target(warehouse_url: str) -> str:
    return "postgres" if make_url(warehouse_url).get_backend_name().startswith("postgres") else "sqlite"


def profile_for(warehouse_url: str) -> dict[str, Any]:
    """The dbt profile (``calibr_analytics``) for a warehouse SQLAlchemy URL."""
    url = make_url(warehouse_url)
    if dbt_target(warehouse_url) == "sqlite":
        path = str(Path(url.database or ":memory:").resolve())
        output = {
            "type": "sqlite",
            "threads": 1,
            "database": "database",
            "schema": "main",
            "schemas_and_paths": {"main": path},
            "schema_directory": str(Path(path).parent),
        }
        return {"calibr_analytics": {"target": "sqlite", "outputs": {"sqlite": output}}}
    output = {
        "type": "postgres",
        "threads": 2,
        "host": url.host or "127.0.0.1",
        "port": int(url.port or 5432),
        "user": url.username or "postgres",
        "password": url.password or "",
        "dbname": url.database,
        "schema": "public",
    }
    return {"calibr_analytics": {"target": "postgres", "outputs": {"postgres": output}}}


@functools.lru_cache(maxsize=32)
def _profiles_dir(warehouse_url: str) -> str:
    folder = tempfile.mkdtemp(prefix="calibr-dbt-profile-")
    os.chmod(folder, stat.S_IRWXU)
    path = Path(folder) / "profiles.yml"
    path.write_text(yaml.safe_dump(profile_for(warehouse_url)), encoding="utf-8")
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    return folder


def dbt_executable() -> str:
    """The ``dbt`` next to this interpreter (the virtualenv need not be on PATH)."""
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.is_file() else (shutil.which("dbt") or "dbt")


def dbt_cli(warehouse_url: str) -> DbtCliResource:
    return DbtCliResource(
        project_dir=str(DBT_PROJECT_DIR),
        profiles_dir=_profiles_dir(warehouse_url),
        target=dbt_target(warehouse_url),
        dbt_executable=dbt_executable(),
    )


class CalibrDbtTranslator(DagsterDbtTranslator):
    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "analytics"


TRANSLATOR = CalibrDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


@dbt_assets(manifest=ensure_manifest(), dagster_dbt_translator=TRANSLATOR, name="analytics_dbt_build")
def analytics_models(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """``dbt build``: every analytics model, then its tests (reported as asset checks)."""
    warehouse.ensure_schema()
    # Each invocation's artifacts go to a scratch directory removed afterwards (dagster-dbt
    # would otherwise keep one folder per run under the project's target/).
    with tempfile.TemporaryDirectory(prefix="calibr-dbt-run-") as scratch:
        yield from dbt_cli(warehouse.resolved_url).cli(["build"], context=context, target_path=Path(scratch)).stream()
    # dbt (as the owner) drops and recreates its tables, and a new table has neither the
    # pipeline/API roles' grants nor row-level security: give them back before any reader
    # (digest, API overview, metrics) runs as calibr_pipeline or calibr_api. PostgreSQL only.
    with get_engine(warehouse.resolved_url).begin() as connection:
        apply_row_level_security(connection)
