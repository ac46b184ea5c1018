"""The secrets vault: encryption at rest, key files, rotation, the encrypting migration,
https-only shop endpoints, and no secret in errors."""

from __future__ import annotations

import os
import stat

import pytest
from alembic import command
from cryptography.fernet import Fernet
from sqlalchemy import select, text

from calibr_pipeline.cli import main
from calibr_pipeline.domain.shop_endpoint import ShopEndpointError, validate_shop_endpoint
from calibr_pipeline.secrets.rotation import rotate
from calibr_pipeline.secrets.vault import KEYS_ENV, SecretsError, Vault, reset_vault_cache
from calibr_pipeline.warehouse.engine import alembic_config, get_engine, session_scope, upgrade_to_head
from calibr_pipeline.warehouse.models import Shop
from calibr_pipeline.warehouse.tenancy import get_or_create_project, get_or_create_tenant, upsert_shop

TOKEN = "shpat_0123456789abcdef0123456789abcdef"


def _shop(url: str, token: str = TOKEN) -> int:
    with session_scope(url) as session:
        tenant = get_or_create_tenant(session, "vaulted")
        project = get_or_create_project(session, tenant, "vaulted-store", currency="USD")
        return upsert_shop(session, project, "main", platform="shopify", admin_endpoint="https://x.myshopify.com/admin/api/2025-01/graphql.json",
                           access_token=token, currency="USD").id


def _raw(url: str) -> str:
    with get_engine(url).connect() as connection:
        return connection.execute(text("SELECT access_token FROM shops")).scalar_one()


@pytest.fixture
def key_file_env(tmp_path, monkeypatch):
    """Keys from $CALIBR_HOME/secrets.key instead of the session's CALIBR_SECRETS_KEYS."""
    monkeypatch.delenv(KEYS_ENV, raising=False)
    monkeypatch.setenv("CALIBR_HOME", str(tmp_path / "home"))
    reset_vault_cache()
    yield tmp_path / "home" / "secrets.key"
    reset_vault_cache()


def test_vault_round_trip_randomized_and_multi_key():
    old, new = Fernet.generate_key(), Fernet.generate_key()
    vault = Vault((old,), "test")
    first, second = vault.encrypt(TOKEN), vault.encrypt(TOKEN)
    assert first != second and first.startswith("fernet:") and TOKEN not in first
    assert vault.decrypt(first) == TOKEN
    rotated = Vault((new, old), "test")
    assert rotated.decrypt(first) == TOKEN  # the old key still decrypts during a rotation
    moved = rotated.reencrypt(first)
    assert Vault((new,), "test").decrypt(moved) == TOKEN
    with pytest.raises(SecretsError) as refused:
        Vault((new,), "test").decrypt(first)
    assert TOKEN not in str(refused.value) and first[8:20] not in str(refused.value)


def test_bad_key_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(KEYS_ENV, "not-a-key")
    with pytest.raises(SecretsError, match="not a Fernet key"):
        Vault.from_environment()


def test_shop_tokens_are_encrypted_at_rest_and_read_back(warehouse_url):
    _shop(warehouse_url)
    raw = _raw(warehouse_url)
    assert raw.startswith("fernet:") and TOKEN not in raw
    with session_scope(warehouse_url) as session:
        assert session.scalar(select(Shop)).access_token == TOKEN
        assert session.scalar(select(Shop.access_token)) == TOKEN  # Core selects decrypt too
        assert TOKEN not in repr(session.scalar(select(Shop)))


def test_migration_encrypts_existing_plaintext_tokens(warehouse_url):
    shop_id = _shop(warehouse_url)
    config = alembic_config(warehouse_url)
    with get_engine(warehouse_url).begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0005")
    assert _raw(warehouse_url) == TOKEN  # downgrade decrypts
    with get_engine(warehouse_url).begin() as connection:
        connection.execute(text("UPDATE shops SET access_token = :t WHERE id = :i"), {"t": "shpat_legacy_plaintext", "i": shop_id})
    upgrade_to_head(warehouse_url)
    raw = _raw(warehouse_url)
    assert raw.startswith("fernet:") and "legacy" not in raw
    with session_scope(warehouse_url) as session:
        assert session.get(Shop, shop_id).access_token == "shpat_legacy_plaintext"


def test_secrets_init_and_rotate_with_a_key_file(sqlite_warehouse_url, key_file_env, capsys):
    assert main(["--warehouse-url", sqlite_warehouse_url, "secrets", "init"]) == 0
    assert stat.S_IMODE(os.stat(key_file_env).st_mode) == 0o600
    first_key = [l for l in key_file_env.read_text().splitlines() if not l.startswith("#")]
    assert main(["secrets", "init"]) == 0 and "kept the existing" in capsys.readouterr().out
    _shop(sqlite_warehouse_url)
    before = _raw(sqlite_warehouse_url)
    assert Vault(tuple(k.encode() for k in first_key), "f").decrypt(before) == TOKEN

    assert main(["--warehouse-url", sqlite_warehouse_url, "secrets", "rotate"]) == 0
    assert "re-encrypted 1 secret(s)" in capsys.readouterr().out
    after = _raw(sqlite_warehouse_url)
    keys = [l for l in key_file_env.read_text().splitlines() if not l.startswith("#")]
    assert after != before and keys != first_key and len(keys) == 1
    with pytest.raises(SecretsError):
        Vault(tuple(k.encode() for k in first_key), "old").decrypt(after)  # the old key is gone
    with session_scope(sqlite_warehouse_url) as session:
        assert session.scalar(select(Shop)).access_token == TOKEN


def test_rotate_keep_old_leaves_both_keys(sqlite_warehouse_url, key_file_env):
    _shop(sqlite_warehouse_url)
    result = rotate(sqlite_warehouse_url, keep_old=True)
    assert result.reencrypted == 1 and result.keys_in_use == 2


def test_cli_refuses_plain_http_shop_endpoints_outside_the_sandbox(sqlite_warehouse_url, capsys, monkeypatch):
    monkeypatch.setenv("SHOP_TOKEN", TOKEN)
    monkeypatch.setenv("CALIBR_SANDBOX_ALLOWED_HOSTS", "127.0.0.1:9999")
    args = ["--warehouse-url", sqlite_warehouse_url]
    assert main([*args, "tenants", "add", "t1"]) == 0 and main([*args, "projects", "add", "p1", "--tenant", "t1", "--currency", "USD"]) == 0
    capsys.readouterr()
    code = main([*args, "shops", "add", "--project", "p1", "--name", "main", "--currency", "USD", "--endpoint", "http://shop.example.com/admin/api/2025-01/graphql.json", "--token-env", "SHOP_TOKEN"])
    err = capsys.readouterr().err
    assert code == 2 and "plain http" in err and TOKEN not in err
    assert main([*args, "shops", "add", "--project", "p1", "--name", "main", "--currency", "USD", "--endpoint", "http://127.0.0.1:9999/admin/api/2025-01/graphql.json", "--token-env", "SHOP_TOKEN"]) == 0


@pytest.mark.parametrize("url", ["http://shop.example.com/x", "ftp://shop.example.com/x", "https://u:p@shop.example.com/x", "https:///x", "not a url", "http://127.0.0.1:1/x"])
def test_shop_endpoint_policy_refuses(url):
    with pytest.raises(ShopEndpointError):
        validate_shop_endpoint(url, allowed_hosts=("127.0.0.1:9999",))


def test_shop_endpoint_policy_accepts_https_and_sandbox_http():
    assert validate_shop_endpoint("https://x.myshopify.com/admin/api/2025-01/graphql.json") == "https://x.myshopify.com/admin/api/2025-01/graphql.json"
    assert validate_shop_endpoint("http://127.0.0.1:9999/graphql.json", allowed_hosts=("127.0.0.1:9999",))


def test_rotate_moves_stripe_tokens_sealed_before_the_vault_under_it(sqlite_warehouse_url, key_file_env, monkeypatch):
    """Stripe Connect tokens share the vault's keys; ones sealed under the old CALIBR_SECRETS_KEY
    are opened with it once and re-encrypted, so rotation covers every connector secret."""
    from calibr_pipeline.connectors.stripe.sealing import SecretsUnavailable, seal_secret, unseal_secret
    from calibr_pipeline.warehouse.models import StripeAccount, Tenant

    legacy_key = Fernet.generate_key().decode()
    legacy = Fernet(legacy_key.encode()).encrypt(b"sk_test_legacy").decode()
    with session_scope(sqlite_warehouse_url) as session:
        tenant = get_or_create_tenant(session, "striped")
        session.add(StripeAccount(tenant_id=tenant.id, account_id="acct_legacy", access_token_sealed=legacy, refresh_token_sealed=seal_secret("rt_new"),
                                  scope="read_write"))
    with session_scope(sqlite_warehouse_url) as session:
        account = session.scalar(select(StripeAccount))
        assert Vault.is_encrypted(account.refresh_token_sealed) and unseal_secret(account.refresh_token_sealed) == "rt_new"
        with pytest.raises(SecretsUnavailable, match="CALIBR_SECRETS_KEY, its key, is not set"):
            unseal_secret(account.access_token_sealed)
    # Without the legacy key rotation cannot read the old token: it stops, changing nothing.
    with pytest.raises(SecretsUnavailable):
        rotate(sqlite_warehouse_url)
    with session_scope(sqlite_warehouse_url) as session:
        assert session.scalar(select(StripeAccount)).access_token_sealed == legacy
    monkeypatch.setenv("CALIBR_SECRETS_KEY", legacy_key)
    result = rotate(sqlite_warehouse_url)
    assert result.reencrypted == 2
    monkeypatch.delenv("CALIBR_SECRETS_KEY")
    with session_scope(sqlite_warehouse_url) as session:
        account = session.scalar(select(StripeAccount))
        assert Vault.is_encrypted(account.access_token_sealed) and "sk_test_legacy" not in account.access_token_sealed
        assert unseal_secret(account.access_token_sealed) == "sk_test_legacy" and unseal_secret(account.refresh_token_sealed) == "rt_new"
