"""``calibr amazon connect|status|map`` on both backends (``seeded`` is parametrized).

Secrets come from files or stdin, are stored through the vault and never printed; user
errors are one ``calibr: error:`` line with exit 2 and write nothing.
"""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import select

from calibr_pipeline.secrets.vault import current_vault
from calibr_pipeline.services.amazon_sync import client_for_account
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import AmazonAccount, AmazonSkuMap, Shop
from calibr_pipeline_tests.test_cli import assert_user_error, cli, count

CLIENT_SECRET = "amzn1.oa2-cs.v1.c0ffee-very-secret"
REFRESH_TOKEN = "Atzr|IwEBIHsecretRefreshToken0123456789"


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    for name in ("CALIBR_SANDBOX_ALLOWED_HOSTS", "CALIBR_DEBUG", "CALIBR_WAREHOUSE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def secret_files(tmp_path):
    secret, token = tmp_path / "lwa-secret", tmp_path / "refresh-token"
    secret.write_text(CLIENT_SECRET + "\n")
    token.write_text(REFRESH_TOKEN)
    return str(secret), str(token)


def connect(capsys, url, secret, token, *extra, project="acme-store", endpoint="https://sellingpartnerapi-na.amazon.com"):
    return cli(capsys, url, "amazon", "connect", "--project", project, "--seller-id", "A1ACME", "--marketplace-id", "ATVPDKIKX0DER",
               "--endpoint", endpoint, "--lwa-client-id", "amzn1.application-oa2-client.abc", "--lwa-client-secret-file", secret,
               "--refresh-token-file", token, *extra)


def test_connect_stores_secrets_through_the_vault_and_status_shows_none(seeded, capsys, secret_files):
    url, _ = seeded
    code, out, err = connect(capsys, url, *secret_files)
    assert code == 0, err
    assert "seller A1ACME" in out and CLIENT_SECRET not in out + err and REFRESH_TOKEN not in out + err
    with session_scope(url) as session:
        account = session.scalars(select(AmazonAccount)).one()
        shop = session.get(Shop, account.shop_id)
        assert (shop.platform, shop.currency, shop.admin_endpoint) == ("amazon", "USD", "https://sellingpartnerapi-na.amazon.com")
        assert account.sealed_credentials.startswith("fernet:")
        assert CLIENT_SECRET not in account.sealed_credentials and REFRESH_TOKEN not in account.sealed_credentials
        assert json.loads(current_vault().decrypt(account.sealed_credentials)) == {"client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN}
        client = client_for_account(shop, account)  # what the amazon_orders asset builds
        assert (client._credentials.client_secret, client._credentials.refresh_token) == (CLIENT_SECRET, REFRESH_TOKEN)
        client.close()

    code, out, err = cli(capsys, url, "amazon", "status", "--project", "acme-store")
    assert code == 0, err
    assert "seller_id: A1ACME" in out and "credentials: stored, readable with the current keys" in out and "mapped_skus: 0" in out
    code, out, _ = cli(capsys, url, "amazon", "status", "--project", "acme-store", "--json")
    status = json.loads(out)
    assert status["connected"] is True and status["marketplace_id"] == "ATVPDKIKX0DER" and status["last_order_sync_day"] is None
    assert CLIENT_SECRET not in out and REFRESH_TOKEN not in out and "fernet:" not in out


def test_a_secret_may_come_from_stdin(seeded, capsys, secret_files, monkeypatch):
    url, _ = seeded
    monkeypatch.setattr("sys.stdin", io.StringIO(REFRESH_TOKEN + "\n"))
    code, _out, err = connect(capsys, url, secret_files[0], "-")
    assert code == 0, err
    with session_scope(url) as session:
        sealed = session.scalars(select(AmazonAccount.sealed_credentials)).one()
    assert json.loads(current_vault().decrypt(sealed))["refresh_token"] == REFRESH_TOKEN


def test_status_of_a_project_without_amazon(seeded, capsys):
    url, _ = seeded
    code, out, _ = cli(capsys, url, "amazon", "status", "--project", "acme-store", "--json")
    assert code == 0 and json.loads(out) == {"project": "acme-store", "connected": False}


def test_connect_refusals_are_one_line_and_write_nothing(seeded, capsys, secret_files, tmp_path, monkeypatch):
    url, _ = seeded
    secret, token = secret_files
    empty = tmp_path / "empty"
    empty.write_text("\n")
    cases = [
        (connect(capsys, url, secret, token, project="nope"), ["unknown project 'nope'"]),
        (connect(capsys, url, str(tmp_path / "missing"), token), ["--lwa-client-secret-file", "not a readable file"]),
        (connect(capsys, url, secret, str(empty)), ["--refresh-token-file", "one non-empty line"]),
        (connect(capsys, url, secret, token, endpoint="http://127.0.0.1:9/"), ["--endpoint", "plain http"]),
        (connect(capsys, url, secret, token, endpoint="https://user:pw@sp.example.com"), ["--endpoint", "must not contain credentials"]),
        (connect(capsys, url, secret, token, "--currency", "dollars"), ["--currency"]),
        (cli(capsys, url, "amazon", "connect", "--project", "acme-store", "--seller-id", "A1 ACME", "--marketplace-id", "X",
             "--endpoint", "https://sp.example.com", "--lwa-client-id", "c", "--lwa-client-secret-file", secret,
             "--refresh-token-file", token), ["--seller-id"]),
    ]
    monkeypatch.setattr("sys.stdin", io.StringIO("a\nb\n"))
    cases.append((connect(capsys, url, "-", "-"), ["only one secret can be read from stdin"]))
    for (code, out, err), fragments in cases:
        line = assert_user_error(code, out, err, *fragments)
        assert CLIENT_SECRET not in line and REFRESH_TOKEN not in line
    assert count(url, AmazonAccount) == 0
    assert count(url, Shop, Shop.platform == "amazon") == 0


def test_map_links_listings_and_a_reconnect_keeps_them(seeded, capsys, secret_files):
    url, _ = seeded
    code, out, err = cli(capsys, url, "amazon", "map", "--project", "acme-store", "--sku", "A", "--asin", "B00000000A")
    assert_user_error(code, out, err, "has no Amazon account", "calibr amazon connect")
    assert connect(capsys, url, *secret_files)[0] == 0

    assert cli(capsys, url, "amazon", "map", "--project", "acme-store", "--sku", "A", "--asin", "b00000000a")[0] == 0
    code, out, err = cli(capsys, url, "amazon", "map", "--project", "acme-store", "--sku", "B", "--asin", "B00000000B", "--seller-sku", "AMZ-B")
    assert code == 0, err
    assert "seller SKU AMZ-B / ASIN B00000000B -> B" in out
    # The seller SKU alone re-points an existing listing (its ASIN is kept).
    assert cli(capsys, url, "amazon", "map", "--project", "acme-store", "--sku", "C", "--seller-sku", "AMZ-B")[0] == 0
    for args, fragments in (
        (("--sku", "ZZZ", "--asin", "B00000000Z"), ["SKU 'ZZZ' is not in the catalog"]),
        (("--sku", "A", "--asin", "B0-bad"), ["ASIN 'B0-BAD'"]),
        (("--sku", "A", "--seller-sku", "NEW-1"), ["'NEW-1' is not mapped yet", "--asin"]),
        (("--sku", "A"), ["--asin, --seller-sku or both"]),
    ):
        assert_user_error(*cli(capsys, url, "amazon", "map", "--project", "acme-store", *args), *fragments)

    assert connect(capsys, url, *secret_files)[0] == 0  # rotating credentials does not lose the mapping
    code, out, _ = cli(capsys, url, "amazon", "status", "--project", "acme-store", "--json")
    assert json.loads(out)["mapped_skus"] == [
        {"sku": "A", "seller_sku": "A", "asin": "B00000000A"},
        {"sku": "C", "seller_sku": "AMZ-B", "asin": "B00000000B"},
    ]
    assert count(url, AmazonSkuMap) == 2


def test_rotation_reencrypts_amazon_credentials_and_legacy_seals_still_open(seeded, capsys, secret_files, monkeypatch):
    from cryptography.fernet import Fernet

    from calibr_pipeline.connectors.amazon_credentials import unseal
    from calibr_pipeline.secrets.rotation import rotate

    url, _ = seeded
    assert connect(capsys, url, *secret_files)[0] == 0
    with session_scope(url) as session:
        before = session.scalars(select(AmazonAccount.sealed_credentials)).one()
    assert rotate(url).reencrypted >= 1
    with session_scope(url) as session:
        account = session.scalars(select(AmazonAccount)).one()
        after = account.sealed_credentials
        assert after != before and after.startswith("fernet:")
        assert json.loads(unseal(after))["refresh_token"] == REFRESH_TOKEN
        # A value sealed before the vault (bare Fernet token under CALIBR_SECRET_KEY) still opens,
        # and a rotation moves its plaintext under the vault (the legacy key is no longer needed).
        legacy_key = Fernet.generate_key().decode()
        monkeypatch.setenv("CALIBR_SECRET_KEY", legacy_key)
        legacy = Fernet(legacy_key).encrypt(b'{"client_secret": "s", "refresh_token": "r"}').decode()
        account.sealed_credentials = legacy
    assert json.loads(unseal(legacy))["refresh_token"] == "r"
    code, out, _ = cli(capsys, url, "amazon", "status", "--project", "acme-store")
    assert "credentials: stored, readable with the current keys" in out
    monkeypatch.setenv("CALIBR_SECRET_KEY", Fernet.generate_key().decode())  # a wrong legacy key
    code, out, _ = cli(capsys, url, "amazon", "status", "--project", "acme-store")
    assert code == 0 and "credentials: stored, NOT readable with the current keys" in out
    monkeypatch.setenv("CALIBR_SECRET_KEY", legacy_key)
    rotate(url)
    monkeypatch.delenv("CALIBR_SECRET_KEY")
    with session_scope(url) as session:
        moved = session.scalars(select(AmazonAccount.sealed_credentials)).one()
    assert moved.startswith("fernet:") and json.loads(current_vault().decrypt(moved)) == {"client_secret": "s", "refresh_token": "r"}
    assert json.loads(unseal(moved))["refresh_token"] == "r"
