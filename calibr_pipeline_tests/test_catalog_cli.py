"""``calibr catalog sync --project SLUG``: the shop_catalog asset for today, from the command line."""

from __future__ import annotations

import datetime as dt
import socket
from decimal import Decimal

import dagster as dg
import pytest
from sqlalchemy import func, select

from calibr_pipeline.cli import main
from calibr_pipeline.defs.partitions import TENANT_PARTITIONS
from calibr_pipeline.domain.catalog import CatalogVariant
from calibr_pipeline.sandbox.demo_catalog import product_gid, variant_gid
from calibr_pipeline.sandbox.shopify_admin import ShopifyAdminSandbox
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import Variant
from calibr_pipeline.warehouse.tenancy import get_or_create_project, get_or_create_tenant, upsert_shop

pytestmark = pytest.mark.integration


def rows(n: int) -> list[CatalogVariant]:
    return [
        CatalogVariant(
            product_external_id=product_gid(8_300_000_000_000 + p),
            product_title=f"CLI product {p}",
            product_type="Test",
            vendor="Calibrate",
            tags=(),
            variant_external_id=variant_gid(48_000_000_000_000 + p),
            sku=f"CLI-{p}",
            variant_title="Default",
            price=Decimal("12.50"),
            compare_at_price=None,
            cost=Decimal("5.00"),
            currency="USD",
        )
        for p in range(n)
    ]


@pytest.fixture
def dagster_home(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for name in ("CALIBR_DEBUG", "CALIBR_WAREHOUSE_URL"):
        monkeypatch.delenv(name, raising=False)
    return home


def seed(url: str, *, endpoint: str | None, token: str | None, with_shop: bool = True) -> None:
    with session_scope(url) as session:
        tenant = get_or_create_tenant(session, "clisync")
        project = get_or_create_project(session, tenant, "clisync-store", currency="USD")
        if with_shop:
            upsert_shop(
                session, project, "flagship", platform="shopify", admin_endpoint=endpoint, api_version="2025-01",
                access_token=token, currency="USD",
            )


def run(capsys, url: str, *args: str) -> tuple[int, str, str]:
    code = main(["--warehouse-url", url, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 2, (code, out, err)
    assert out == "" and "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("calibr: error: "), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_catalog_sync_reads_the_shop_through_the_asset_and_registers_the_partition(sqlite_warehouse_url, dagster_home, capsys):
    url = sqlite_warehouse_url
    with ShopifyAdminSandbox() as admin:
        shop = admin.add_shop("clisync", rows(40), preset="standard", currency="USD")
        seed(url, endpoint=admin.endpoint("clisync"), token=shop.access_token)
        code, out, err = run(capsys, url, "catalog", "sync", "--project", "clisync-store")
        assert (code, err) == (0, ""), err
        assert out.startswith(f"catalog sync clisync {dt.datetime.now(dt.UTC).date()}: 40 variants from 1 shop(s)")
        assert "flagship: 40 variants from shopify_admin" in out
        # The same again: an upsert, not duplicates.
        assert run(capsys, url, "catalog", "sync", "--project", "clisync-store")[0] == 0
    with session_scope(url) as session:
        assert session.scalar(select(func.count()).select_from(Variant)) == 40
    instance = dg.DagsterInstance.get()
    assert instance.has_dynamic_partition(TENANT_PARTITIONS.name, "clisync")
    runs = instance.get_runs(dg.RunsFilter(job_name="catalog_sync"))
    assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert runs[0].tags.get("calibr/trigger") == "cli"


def test_catalog_sync_errors_are_one_line_and_exit_2(sqlite_warehouse_url, dagster_home, capsys):
    url = sqlite_warehouse_url
    code, out, err = run(capsys, url, "catalog", "sync", "--project", "nope")
    assert_one_line_error(code, out, err, "unknown project 'nope'")

    seed(url, endpoint=None, token=None, with_shop=False)
    code, out, err = run(capsys, url, "catalog", "sync", "--project", "clisync-store")
    assert_one_line_error(code, out, err, "project 'clisync-store' has no shop", "calibr shops add")

    # A port nothing listens on: the shop is unreachable.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    seed(url, endpoint=f"http://127.0.0.1:{port}/admin/api/2025-01/graphql.json", token="shpat_unreachable_0123456789")
    code, out, err = run(capsys, url, "catalog", "sync", "--project", "clisync-store")
    assert_one_line_error(code, out, err, "catalog sync of project 'clisync-store'", "shop 'flagship'", "connection")
    assert "shpat_unreachable" not in err


def test_catalog_sync_reports_a_refused_token(sqlite_warehouse_url, dagster_home, capsys):
    url = sqlite_warehouse_url
    with ShopifyAdminSandbox() as admin:
        admin.add_shop("clisync", rows(3), preset="standard", currency="USD")
        seed(url, endpoint=admin.endpoint("clisync"), token="shpat_wrong_token_0123456789")
        code, out, err = run(capsys, url, "catalog", "sync", "--project", "clisync-store")
    assert_one_line_error(code, out, err, "shop 'flagship'", "401")
    assert "shpat_wrong" not in err
