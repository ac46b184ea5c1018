"""A column type that stores a secret encrypted and hands the application the plaintext."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.types import TypeDecorator

from calibr_pipeline.secrets.vault import current_vault


class EncryptedSecret(TypeDecorator):
    """Encrypted with the vault's newest key on write, decrypted on read.

    Analysts querying the table see ``fernet:…`` ciphertext; code reading the model (or a
    Core select of the column) sees the plaintext. Comparing the column in SQL is not
    possible (Fernet is randomized), which is intended: nothing looks secrets up by value.
    """

    impl = String(500)
    cache_ok = True
    # Fernet adds a version, timestamp, IV and MAC and base64-encodes: a 280-byte secret
    # becomes ~470 characters with the prefix. Shopify Admin tokens are 38 characters.
    MAX_PLAINTEXT_BYTES = 280

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = str(value)
        if len(value.encode("utf-8")) > self.MAX_PLAINTEXT_BYTES:
            from calibr_pipeline.secrets.vault import SecretsError

            raise SecretsError(f"a secret may be at most {self.MAX_PLAINTEXT_BYTES} bytes")
        return current_vault().encrypt(value)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return current_vault().decrypt(value)
