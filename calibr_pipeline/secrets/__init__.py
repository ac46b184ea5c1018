"""The secrets vault: connector and webhook secrets encrypted at rest (Fernet / MultiFernet)."""

from calibr_pipeline.secrets.vault import (
    ENCRYPTED_PREFIX,
    KEY_FILE_ENV,
    KEYS_ENV,
    SecretsError,
    Vault,
    current_vault,
    reset_vault_cache,
)

__all__ = ["ENCRYPTED_PREFIX", "KEY_FILE_ENV", "KEYS_ENV", "SecretsError", "Vault", "current_vault", "reset_vault_cache"]
