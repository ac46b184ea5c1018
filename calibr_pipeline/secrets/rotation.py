"""``calibr secrets init|rotate``: create the key file, rotate keys and re-encrypt every stored secret."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from cryptography.fernet import Fernet
from sqlalchemy import column, select, table, update

from calibr_pipeline.secrets.vault import KEYS_ENV, Vault, current_vault, key_file_path, reset_vault_cache, write_key_file

# Every column holding a vault-encrypted secret (table, primary key, column, and how to
# open a value written before the vault held it: None means such a value is plaintext). A
# new connector or webhook secret adds its column here so rotation re-encrypts it.
def _stripe_legacy(sealed: str) -> str:
    from calibr_pipeline.connectors.stripe.sealing import unseal_legacy

    return unseal_legacy(sealed)


def _amazon_legacy(sealed: str) -> str:
    from calibr_pipeline.connectors.amazon_credentials import unseal_legacy

    return unseal_legacy(sealed)


SECRET_COLUMNS: list[tuple[str, str, str, Callable[[str], str] | None]] = [
    ("shops", "id", "access_token", None),
    ("stripe_accounts", "id", "access_token_sealed", _stripe_legacy),
    ("stripe_accounts", "id", "refresh_token_sealed", _stripe_legacy),
    ("amazon_accounts", "shop_id", "sealed_credentials", _amazon_legacy),
]


@dataclass(frozen=True)
class RotationResult:
    reencrypted: int
    keys_in_use: int
    source: str


def reencrypt_all(connection, vault: Vault) -> int:
    """Rewrite every secret under the vault's newest key (plaintext ones are encrypted)."""
    count = 0
    for table_name, key_name, column_name, open_legacy in SECRET_COLUMNS:
        t = table(table_name, column(key_name), column(column_name))
        rows = connection.execute(select(t.c[key_name], t.c[column_name]).where(t.c[column_name].is_not(None))).all()
        for key, stored in rows:
            if open_legacy is not None and not vault.is_encrypted(stored):
                stored = open_legacy(stored)  # sealed with a pre-vault key: its plaintext goes under the vault
            connection.execute(update(t).where(t.c[key_name] == key).values({column_name: vault.reencrypt(stored)}))
            count += 1
    return count


def rotate(warehouse_url: str, *, keep_old: bool = False, environ=None) -> RotationResult:
    """Key file: add a new newest key, re-encrypt everything, then drop the old keys (unless
    ``keep_old``). While it runs, processes reading the key file decrypt with either key.

    ``CALIBR_SECRETS_KEYS``: put the new key first in the variable everywhere, then run this
    to re-encrypt under it; remove the old key from the variable afterwards.
    """
    import os

    from calibr_pipeline.warehouse.engine import get_engine

    env = os.environ if environ is None else environ
    engine = get_engine(warehouse_url)
    if env.get(KEYS_ENV):
        vault = Vault.from_environment(env)
        with engine.begin() as connection:
            count = reencrypt_all(connection, vault)
        return RotationResult(count, len(vault.keys), KEYS_ENV)
    path = key_file_path(env)
    old = Vault.from_environment(env, create=True)
    during = Vault((Fernet.generate_key(), *old.keys), str(path))
    write_key_file(path, list(during.keys))  # first: every process can read both generations
    reset_vault_cache()
    with engine.begin() as connection:
        count = reencrypt_all(connection, during)
    if not keep_old:
        write_key_file(path, [during.keys[0]])
    reset_vault_cache()
    return RotationResult(count, 1 if not keep_old else len(during.keys), str(path))


def init(*, force: bool = False, environ=None) -> tuple[bool, str]:
    from calibr_pipeline.secrets.vault import init_key_file

    path = key_file_path(environ)
    created = init_key_file(path, force=force)
    reset_vault_cache()
    return created, str(path)


__all__ = ["SECRET_COLUMNS", "RotationResult", "reencrypt_all", "rotate", "init", "current_vault"]
