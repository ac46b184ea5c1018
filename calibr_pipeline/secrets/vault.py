"""Fernet keys and encryption of secrets at rest.

Keys come from ``CALIBR_SECRETS_KEYS`` (comma-separated Fernet keys, newest first) or from
a key file (``CALIBR_SECRETS_KEY_FILE``, default ``$CALIBR_HOME/secrets.key``: one key per
line, newest first; ``calibr secrets init`` creates it with mode 0600). The newest key
encrypts; every key decrypts (MultiFernet), so during a rotation values written under the
old key still read. Stored values are ``fernet:<token>``; anything else is legacy plaintext
that migration 0006 (and ``calibr secrets rotate``) encrypts.

Nothing here ever puts a secret or a key into an exception message or a log line.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from calibr_pipeline import settings
from calibr_pipeline.domain.errors import CalibrError

KEYS_ENV = "CALIBR_SECRETS_KEYS"
KEY_FILE_ENV = "CALIBR_SECRETS_KEY_FILE"
ENCRYPTED_PREFIX = "fernet:"
log = logging.getLogger("calibr.secrets")


class SecretsError(CalibrError):
    """A key is missing or invalid, or a stored secret does not decrypt. Never carries the secret."""


def key_file_path(environ=None) -> Path:
    env = os.environ if environ is None else environ
    explicit = env.get(KEY_FILE_ENV)
    return Path(explicit).expanduser().resolve() if explicit else settings.calibr_home(env) / "secrets.key"


def _parse_keys(lines: list[str], source: str) -> list[bytes]:
    keys = [line.strip().encode() for line in lines if line.strip() and not line.strip().startswith("#")]
    for number, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise SecretsError(f"key {number} in {source} is not a Fernet key (32 url-safe base64-encoded bytes)") from None
    return keys


def write_key_file(path: Path, keys: list[bytes]) -> None:
    """Replace the key file atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("# Calibrate secrets keys, newest first (calibr secrets rotate). Keep this file private.\n")
        handle.write("".join(k.decode() + "\n" for k in keys))
    os.replace(tmp, path)


@dataclass(frozen=True)
class Vault:
    keys: tuple[bytes, ...]
    source: str

    @property
    def _fernet(self) -> MultiFernet:
        return MultiFernet([Fernet(k) for k in self.keys])

    def encrypt(self, plaintext: str) -> str:
        return ENCRYPTED_PREFIX + self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    @staticmethod
    def is_encrypted(value: str) -> bool:
        return value.startswith(ENCRYPTED_PREFIX)

    def decrypt(self, stored: str) -> str:
        if not self.is_encrypted(stored):
            return stored  # legacy plaintext, until migration 0006 / `calibr secrets rotate` encrypts it
        try:
            return self._fernet.decrypt(stored[len(ENCRYPTED_PREFIX):].encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError, UnicodeError):
            raise SecretsError(
                f"a stored secret does not decrypt with the keys from {self.source}: the key it was written with is missing"
            ) from None

    def reencrypt(self, stored: str) -> str:
        """Under the newest key (plaintext is encrypted)."""
        if not self.is_encrypted(stored):
            return self.encrypt(stored)
        try:
            return ENCRYPTED_PREFIX + self._fernet.rotate(stored[len(ENCRYPTED_PREFIX):].encode("ascii")).decode("ascii")
        except (InvalidToken, ValueError):
            raise SecretsError(f"a stored secret does not decrypt with the keys from {self.source}") from None

    @classmethod
    def from_environment(cls, environ=None, *, create: bool = True) -> "Vault":
        env = os.environ if environ is None else environ
        if env.get(KEYS_ENV):
            return cls(tuple(_parse_keys(env[KEYS_ENV].split(","), KEYS_ENV)), KEYS_ENV)
        path = key_file_path(env)
        if not path.exists():
            if not create:
                raise SecretsError(f"no secrets key: set {KEYS_ENV} or create {path} with `calibr secrets init`")
            init_key_file(path)
            log.warning("created a new secrets key file at %s (back it up: without it stored shop tokens cannot be read)", path)
        keys = _parse_keys(path.read_text().splitlines(), str(path))
        if not keys:
            raise SecretsError(f"the key file {path} holds no key; run `calibr secrets init --force`")
        return cls(tuple(keys), str(path))


def init_key_file(path: Path, *, force: bool = False) -> bool:
    """Create the key file with one new key; False when it already exists (and ``force`` is off)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if force:
        write_key_file(path, [Fernet.generate_key()])
        return True
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # exclusive: concurrent processes create it once
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write("# Calibrate secrets keys, newest first (calibr secrets rotate). Keep this file private.\n")
        handle.write(Fernet.generate_key().decode() + "\n")
    return True


_cache: dict[tuple, Vault] = {}
_lock = threading.Lock()


def current_vault() -> Vault:
    """The vault for this process's environment (re-read when the env or the key file changes)."""
    env_keys = os.environ.get(KEYS_ENV)
    path = None if env_keys else key_file_path()
    stamp = (env_keys, str(path), path.stat().st_mtime_ns if path is not None and path.exists() else None)
    with _lock:
        vault = _cache.get(stamp)
        if vault is None:
            vault = Vault.from_environment()
            _cache.clear()
            stamp = (env_keys, str(path), path.stat().st_mtime_ns if path is not None and path.exists() else None)
            _cache[stamp] = vault
        return vault


def reset_vault_cache() -> None:
    with _lock:
        _cache.clear()
