"""Encryption of stored Amazon credentials, behind one pair of functions.

:func:`seal` encrypts through the project's secrets vault (``secrets/vault.py``,
``current_vault()``: the keys of ``CALIBR_SECRETS_KEYS`` or the key file), so stored
credentials are re-encrypted by ``calibr secrets rotate`` like shop tokens
(``amazon_accounts.sealed_credentials`` is in ``secrets.rotation.SECRET_COLUMNS``).

Values sealed before the vault was used (a bare Fernet token under ``CALIBR_SECRET_KEY`` or
``$CALIBR_HOME/secret.key``) still unseal; ``calibr secrets rotate`` moves them under the
vault (:func:`unseal_legacy` opens them), as does ``calibr amazon connect``.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from calibr_pipeline import settings
from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.secrets.vault import current_vault

SECRET_KEY_ENV = "CALIBR_SECRET_KEY"


def _legacy_fernet() -> Fernet:
    key = os.environ.get(SECRET_KEY_ENV)
    if not key:
        path = Path(settings.calibr_home()) / "secret.key"
        if not path.exists():
            raise CalibrError("stored Amazon credentials were sealed with a key that is missing; run `calibr amazon connect` again")
        key = path.read_text().strip()
    try:
        return Fernet(key.encode() if isinstance(key, str) else key)
    except ValueError as exc:
        raise CalibrError(f"{SECRET_KEY_ENV} is not a valid Fernet key (32 url-safe base64-encoded bytes)") from exc


def seal(plaintext: str) -> str:
    return current_vault().encrypt(plaintext)


def unseal(token: str) -> str:
    vault = current_vault()
    if vault.is_encrypted(token):
        token = vault.decrypt(token)
        if not token.startswith("gAAAAA"):  # a vault value (a legacy token wrapped by an older rotation opens below)
            return token
    return unseal_legacy(token)


def unseal_legacy(token: str) -> str:
    """A value sealed before the vault: a bare Fernet token under the legacy key."""
    try:
        return _legacy_fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken as exc:
        raise CalibrError("stored credentials cannot be decrypted with the current key") from exc
