"""Connector secrets at rest: the one place that encrypts and decrypts them.

Today: Fernet (``cryptography``) keyed by ``CALIBR_SECRETS_KEY``. When the secrets vault
(``calibr_pipeline/secrets``) lands, these two functions switch to it and nothing else changes.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken

from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.settings import load_settings


class SecretsUnavailable(CalibrError):
    pass


def _fernet(key: str | None = None) -> Fernet:
    if key is None:
        configured = load_settings().SECRETS_KEY
        if configured is None:
            raise SecretsUnavailable("CALIBR_SECRETS_KEY is not set: generate one with `calibr env generate-key`")
        key = configured.get_secret_value()
    return Fernet(key.encode())


def seal_secret(plaintext: str, *, key: str | None = None) -> str:
    return _fernet(key).encrypt(plaintext.encode()).decode()


def unseal_secret(sealed: str, *, key: str | None = None) -> str:
    try:
        return _fernet(key).decrypt(sealed.encode()).decode()
    except InvalidToken:
        raise SecretsUnavailable("a stored Stripe token cannot be decrypted with CALIBR_SECRETS_KEY (was the key rotated?)") from None
