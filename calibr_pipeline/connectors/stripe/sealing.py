"""Stripe Connect tokens at rest: the one place that encrypts and decrypts them.

They go through the secrets vault (``calibr_pipeline/secrets``), like shop tokens: one set of
keys (``CALIBR_SECRETS_KEYS`` or the key file), rotated with ``calibr secrets rotate``.
Tokens sealed before the vault took them over (plain Fernet under ``CALIBR_SECRETS_KEY``,
without the vault's prefix) still open with that key; rotation moves them under the vault,
after which ``CALIBR_SECRETS_KEY`` can be unset.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken

from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.secrets.vault import current_vault
from calibr_pipeline.settings import load_settings


class SecretsUnavailable(CalibrError):
    pass


def seal_secret(plaintext: str) -> str:
    return current_vault().encrypt(plaintext)


def unseal_secret(sealed: str) -> str:
    vault = current_vault()
    if vault.is_encrypted(sealed):
        return vault.decrypt(sealed)
    return unseal_legacy(sealed)


def unseal_legacy(sealed: str) -> str:
    """A token sealed before the vault: Fernet under ``CALIBR_SECRETS_KEY``."""
    configured = load_settings().SECRETS_KEY
    if configured is None:
        raise SecretsUnavailable(
            "a Stripe token was sealed before the secrets vault and CALIBR_SECRETS_KEY, its key, is not set: "
            "set it and run `calibr secrets rotate` to move the token under the vault"
        )
    try:
        return Fernet(configured.get_secret_value().encode()).decrypt(sealed.encode()).decode()
    except (InvalidToken, ValueError):
        raise SecretsUnavailable("a stored Stripe token cannot be decrypted with CALIBR_SECRETS_KEY (was the key changed?)") from None
