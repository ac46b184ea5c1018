"""Encryption of stored Amazon credentials, behind one pair of functions.

The project's secrets vault (``calibr_pipeline/secrets/``) is being built in parallel;
when it lands, :func:`seal` / :func:`unseal` delegate to it and nothing else changes.
Until then: Fernet (AES-128-CBC + HMAC-SHA256, ``cryptography``) with the key from
``CALIBR_SECRET_KEY`` (a urlsafe-base64 32-byte Fernet key) or, for the embedded default,
a key file ``$CALIBR_HOME/secret.key`` created with mode 0600 on first use.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from calibr_pipeline import settings
from calibr_pipeline.domain.errors import CalibrError

SECRET_KEY_ENV = "CALIBR_SECRET_KEY"


def _fernet() -> Fernet:
    key = os.environ.get(SECRET_KEY_ENV)
    if not key:
        path = Path(settings.calibr_home()) / "secret.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(Fernet.generate_key())
        key = path.read_text().strip()
    try:
        return Fernet(key.encode() if isinstance(key, str) else key)
    except ValueError as exc:
        raise CalibrError(f"{SECRET_KEY_ENV} is not a valid Fernet key (32 url-safe base64-encoded bytes)") from exc


def seal(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode("utf-8")).decode("ascii")


def unseal(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken as exc:
        raise CalibrError("stored credentials cannot be decrypted with the current key") from exc
